"""The orders app's notification templates (category `orders`, registered by the
notifications app: a customer may opt out of it per channel)."""

from domain.notifications.catalogue import NotificationTemplate, register_template
from domain.notifications.notification_types import ORDERS

ORDER_SHIPPED = register_template(NotificationTemplate(
    name="order_shipped", category=ORDERS.name, channels=("email", "in_app"),
    description="The customer's order is on its way, with the carrier and tracking number.",
    schema={
        "type": "object",
        "properties": {
            "order_number": {"type": "string", "minLength": 1, "maxLength": 32},
            "customer_name": {"type": "string", "maxLength": 200},
            "carrier": {"type": "string", "minLength": 1, "maxLength": 64},
            "tracking_number": {"type": "string", "minLength": 1, "maxLength": 100},
            "tracking_url": {"type": "string", "minLength": 1, "maxLength": 2000},
        },
        "required": ["order_number", "customer_name", "carrier", "tracking_number"],
        "additionalProperties": False,
    },
    example={"order_number": "ORD-1001", "customer_name": "Ada Lovelace", "carrier": "DHL",
             "tracking_number": "JD014600006281234567",
             "tracking_url": "https://www.dhl.com/track?id=JD014600006281234567"},
))
