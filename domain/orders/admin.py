from django.contrib import admin

from domain.orders.models import Order

# Set only by the ship service, which publishes order.shipped with the change: an edit here
# would mark an order shipped and tell nobody.
SHIPMENT_FIELDS = ("status", "carrier", "tracking_number", "tracking_url", "shipped_at")


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ("number", "customer", "status", "total", "currency", "carrier",
                    "tracking_number", "shipped_at", "created_at")
    list_filter = ("status", "carrier")
    search_fields = ("number", "tracking_number", "customer__email", "customer__name")
    list_select_related = ("customer",)
    raw_id_fields = ("customer",)
    readonly_fields = ("id", *SHIPMENT_FIELDS, "created_at", "updated_at")

    def get_readonly_fields(self, request, obj=None):
        # The number is what the customer was told; fixed once the order exists.
        return (*self.readonly_fields, "number") if obj else self.readonly_fields
