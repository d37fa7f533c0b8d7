from django.core.management.base import BaseCommand

from domain.orders.models import Order, OrderStatus
from domain.orders.services import DEMO_CUSTOMERS, DEMO_ORDERS, demo_orders_load


class Command(BaseCommand):
    help = ("Create the demo customers and placed orders that are missing (idempotent), to "
            "try POST /api/v1/orders/{id}/ship.")

    def handle(self, *args, **options):
        customers, orders = demo_orders_load()
        self.stdout.write(f"demo customers: {customers} created, {len(DEMO_CUSTOMERS)} total")
        self.stdout.write(f"demo orders: {orders} created, {len(DEMO_ORDERS)} total")
        placed = Order.objects.filter(number__in=[o[0] for o in DEMO_ORDERS],
                                      status=OrderStatus.PLACED).order_by("number")
        for order in placed:
            self.stdout.write(f"  {order.number} placed: /api/v1/orders/{order.pk}/ship")
