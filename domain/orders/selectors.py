from __future__ import annotations

from domain.common.errors import NotFound
from domain.orders.models import Order


def order_get(*, order_id) -> Order:
    """One order. Orders belong to no API key (they are the shop's, not a client's): any key
    with an orders scope reads any order."""
    order = Order.objects.filter(pk=order_id).first()
    if order is None:
        raise NotFound("Order not found.")
    return order
