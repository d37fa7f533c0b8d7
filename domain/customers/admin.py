from django.contrib import admin

from domain.customers.models import Customer


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ("name", "email", "is_active", "last_active_at", "created_at")
    list_filter = ("is_active",)
    search_fields = ("name", "email")
    readonly_fields = ("id", "created_at", "updated_at")
