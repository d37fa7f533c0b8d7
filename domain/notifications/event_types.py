"""Operational events about webhook endpoints, published by the health lifecycle
(domain/notifications/health.py) under the endpoint owner's key: another endpoint subscribed
to them, or a client polling its events, learns that an endpoint fails before it is disabled.
"""

from domain.events.registry import EventType, register_event_type

_ENDPOINT_HEALTH_SCHEMA = {
    "type": "object",
    "properties": {
        "endpoint_id": {"type": "string", "format": "uuid"},
        "url": {"type": "string"},
        "state": {"type": "string", "enum": ["degraded", "disabled"]},
        "failing_since": {"type": ["string", "null"], "format": "date-time"},
        "consecutive_failures": {"type": "integer", "minimum": 0},
        "reason": {"type": "string"},
    },
    "required": ["endpoint_id", "url", "state", "reason"],
}

_EXAMPLE = {"endpoint_id": "0b5d3c8e-2f1a-4c2e-9d8b-6a1f0e4c7b21",
            "url": "https://hooks.example.com/conveyor", "failing_since": "2026-11-23T09:00:00Z",
            "consecutive_failures": 12}

WEBHOOK_ENDPOINT_DEGRADED = register_event_type(
    EventType(
        name="webhook_endpoint.degraded",
        description="A webhook endpoint has failed every attempt for a while: it still gets "
        "deliveries, and will be disabled if it keeps failing (published by the server).",
        schema=_ENDPOINT_HEALTH_SCHEMA,
        example={**_EXAMPLE, "state": "degraded",
                 "reason": "every attempt failed for 24 hours (12 in a row)"},
        publishable=False,
    )
)

WEBHOOK_ENDPOINT_DISABLED = register_event_type(
    EventType(
        name="webhook_endpoint.disabled",
        description="A webhook endpoint was disabled (it kept failing, or answered 410 Gone): "
        "its deliveries are parked until it is enabled again (published by the server).",
        schema=_ENDPOINT_HEALTH_SCHEMA,
        example={**_EXAMPLE, "state": "disabled",
                 "reason": "every attempt failed for 5 days (40 in a row)"},
        publishable=False,
    )
)
