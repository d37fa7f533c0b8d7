from django.contrib import admin

from domain.catalog.models import Product
from domain.catalog.services import UPDATABLE_FIELDS, product_update


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ("sku", "name", "category", "price", "stock", "status", "updated_at")
    list_filter = ("status", "category")
    search_fields = ("sku", "name")
    readonly_fields = ("id", "created_at", "updated_at")

    def get_readonly_fields(self, request, obj=None):
        # The sku identifies a product to clients and caches; it is fixed once created.
        return (*self.readonly_fields, "sku") if obj else self.readonly_fields

    def save_model(self, request, obj, form, change):
        if not change:
            super().save_model(request, obj, form, change)
            return
        # An edit in the admin goes through the same service as the API, so it publishes
        # product.updated and the cached copies are dropped too.
        changes = {f: form.cleaned_data[f] for f in form.changed_data if f in UPDATABLE_FIELDS}
        if changes:
            product_update(product_id=obj.pk, changes=changes)
            obj.refresh_from_db()
