"""The events app's own event type. Domain apps register theirs in their `event_types.py`."""

from domain.events.registry import EventType, Handler, register_event_type
from domain.jobs.kinds import NOOP

DEMO_PING = register_event_type(
    EventType(
        name="demo.ping",
        description="A test event whose one handler does trivial work.",
        schema={
            "type": "object",
            "properties": {"message": {"type": "string", "maxLength": 1000}},
            "additionalProperties": True,
        },
        handlers=(Handler(name="demo.noop", kind=NOOP.name, params=lambda payload: {}),),
        example={"message": "hello"},
    )
)
