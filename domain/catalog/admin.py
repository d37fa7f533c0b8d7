from django.contrib import admin

from domain.catalog.models import Product


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ("sku", "name", "category", "price", "stock", "status", "updated_at")
    list_filter = ("status", "category")
    search_fields = ("sku", "name")
    readonly_fields = ("id", "created_at", "updated_at")
