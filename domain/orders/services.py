from __future__ import annotations

from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from domain.access.models import ApiKey
from domain.common.errors import Conflict, NotFound
from domain.customers.models import Customer
from domain.events.services import event_publish
from domain.orders.models import Order, OrderStatus


@transaction.atomic
def order_ship(*, order, carrier: str, tracking_number: str, tracking_url: str = "",
               api_key: ApiKey | None = None, correlation_id: str = "") -> Order:
    """Mark a placed order shipped and publish `order.shipped` in the same transaction.

    The order's row lock makes two concurrent ships of one order queue up: the second sees
    `shipped`. The event is the outbox (reliability contract #1): if the order is saved as
    shipped, its notification and webhooks will follow; if this rolls back, neither happened.
    The same shipment sent again (same carrier, tracking number and URL: a client retrying
    after a lost answer) answers the order as it is, with no second event; any other ship of
    an order that is not `placed` is 409 `order_not_shippable`.
    """
    order_id = order.pk if isinstance(order, Order) else order
    order = Order.objects.select_for_update().filter(pk=order_id).first()
    if order is None:
        raise NotFound("Order not found.")
    if order.status != OrderStatus.PLACED:
        if order.status == OrderStatus.SHIPPED and (
                order.carrier, order.tracking_number, order.tracking_url) == (
                carrier, tracking_number, tracking_url):
            return order
        details = {"order": str(order.pk), "status": order.status}
        if order.status == OrderStatus.SHIPPED:  # what it was shipped with, to compare
            details.update(carrier=order.carrier, tracking_number=order.tracking_number)
        raise Conflict(f"The order is {order.status}; only a placed order can be shipped.",
                       code="order_not_shippable", details=details)
    now = timezone.now()
    order.status, order.shipped_at, order.updated_at = OrderStatus.SHIPPED, now, now
    order.carrier, order.tracking_number, order.tracking_url = (
        carrier, tracking_number, tracking_url)
    order.save(update_fields=["status", "shipped_at", "updated_at", "carrier",
                              "tracking_number", "tracking_url"])
    payload = {"order_id": str(order.pk), "order_number": order.number,
               "customer_id": str(order.customer_id), "carrier": carrier,
               "tracking_number": tracking_number, "shipped_at": now.isoformat()}
    if tracking_url:
        payload["tracking_url"] = tracking_url
    # by_server: order.shipped is not publishable by clients (the order row is the truth);
    # the key is the caller's, so its webhook endpoints receive the event.
    event_publish(event_type="order.shipped", payload=payload, occurred_at=now,
                  api_key=api_key, correlation_id=correlation_id, by_server=True)
    return order


DEMO_CUSTOMERS = [
    ("ada@example.com", "Ada Lovelace"),
    ("grace@example.com", "Grace Hopper"),
    ("", "Alan Turing"),  # no email: in-app notifications only
]
DEMO_ORDERS = [
    ("ORD-1001", "ada@example.com", "49.80", "EUR"),
    ("ORD-1002", "ada@example.com", "9.90", "EUR"),
    ("ORD-1003", "grace@example.com", "149.00", "EUR"),
    ("ORD-1004", "Alan Turing", "25.00", "EUR"),
]


@transaction.atomic
def demo_orders_load() -> tuple[int, int]:
    """Create the demo customers (by email, or name when they have none) and placed orders
    (by number) that are missing; existing rows are left as they are. Answers how many
    customers and orders it created."""
    customers: dict[str, Customer] = {}
    created_customers = 0
    for email, name in DEMO_CUSTOMERS:
        lookup = {"email": email} if email else {"email": "", "name": name}
        customer, created = Customer.objects.get_or_create(**lookup, defaults={"name": name})
        customers[email or name] = customer
        created_customers += int(created)
    existing = set(Order.objects.filter(number__in=[o[0] for o in DEMO_ORDERS])
                   .values_list("number", flat=True))
    new = [Order(number=number, customer=customers[owner], total=Decimal(total),
                 currency=currency)
           for number, owner, total, currency in DEMO_ORDERS if number not in existing]
    Order.objects.bulk_create(new, ignore_conflicts=True)
    return created_customers, len(new)
