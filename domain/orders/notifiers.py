"""What an `order.shipped` event sends the customer: the `order_shipped` template, by email and
in-app, to the customer whose id is the recipient id.

The notifier reads the order and its customer when its job runs, not when the event was
published: the shipment (carrier, tracking) comes from the event, which is what shipped, and
who is told comes from the rows as they are now. It sends nothing (the job succeeds, saying
so; a retry would not change the answer) when:
- the order no longer exists (an operator deleted it);
- the order is no longer shipped or delivered (cancelled by an operator before the job ran:
  telling the customer it shipped would be wrong);
- the customer is inactive (`is_active` false: deactivated customers get no notifications).
A customer without an email address gets the in-app item, and the email delivery is
`skipped` with the reason.
"""

from __future__ import annotations

from domain.events.models import Event
from domain.notifications.notifiers import Notifier, NotifierRequest, register_notifier
from domain.orders.models import Order, OrderStatus

NOTIFIED_STATUSES = (OrderStatus.SHIPPED, OrderStatus.DELIVERED)


def customer_shipped(event: Event) -> NotifierRequest | None:
    payload = event.payload
    order = Order.objects.select_related("customer").filter(pk=payload["order_id"]).first()
    if order is None or order.status not in NOTIFIED_STATUSES:
        return None
    customer = order.customer
    if not customer.is_active:
        return None
    context = {"order_number": order.number, "customer_name": customer.name,
               "carrier": payload["carrier"], "tracking_number": payload["tracking_number"]}
    if payload.get("tracking_url"):
        context["tracking_url"] = payload["tracking_url"]
    return NotifierRequest(template="order_shipped", context=context,
                           recipients=[{"id": str(customer.pk), "email": customer.email or None}])


CUSTOMER_SHIPPED = register_notifier(Notifier(
    name="orders.customer_shipped", build=customer_shipped,
    description="Email and in-app notification to the customer whose order shipped."))
