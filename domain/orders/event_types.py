from domain.events.registry import EventType, register_event_type
from domain.notifications.notifiers import notifier_handler

ORDER_SHIPPED = register_event_type(
    EventType(
        name="order.shipped",
        description="An order left the warehouse: its customer gets an email and an in-app "
        "notification with the tracking number (published by the server when the order is "
        "shipped: `POST /api/v1/orders/{id}/ship`).",
        schema={
            "type": "object",
            "properties": {
                "order_id": {"type": "string", "format": "uuid"},
                "order_number": {"type": "string", "minLength": 1, "maxLength": 32},
                "customer_id": {"type": "string", "format": "uuid"},
                "carrier": {"type": "string", "minLength": 1, "maxLength": 64},
                "tracking_number": {"type": "string", "minLength": 1, "maxLength": 100},
                "tracking_url": {"type": "string", "minLength": 1, "maxLength": 2000},
                "shipped_at": {"type": "string", "format": "date-time"},
            },
            "required": ["order_id", "order_number", "customer_id", "carrier",
                         "tracking_number", "shipped_at"],
        },
        # Only the ship service announces a shipment: the order row is the truth, and a
        # client publishing order.shipped would tell a customer of a parcel that never left.
        publishable=False,
        handlers=(notifier_handler("orders.customer_shipped"),),
        example={"order_id": "5c0b6f0e-8a4e-4d43-9a51-2f7a3c1d9e10", "order_number": "ORD-1001",
                 "customer_id": "0b5d3c8e-2f1a-4c2e-9d8b-6a1f0e4c7b21", "carrier": "DHL",
                 "tracking_number": "JD014600006281234567",
                 "tracking_url": "https://www.dhl.com/track?id=JD014600006281234567",
                 "shipped_at": "2026-11-28T09:00:00Z"},
    )
)
