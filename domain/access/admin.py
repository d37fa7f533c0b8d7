from django.contrib import admin, messages
from django.utils import timezone

from domain.access.models import ApiKey


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("name", "prefix", "scopes", "created_at", "last_used_at", "expires_at",
                    "revoked_at")
    list_filter = ("revoked_at", "expires_at")
    search_fields = ("name", "prefix")
    readonly_fields = ("id", "prefix", "key_hash", "created_at", "last_used_at")
    actions = ("revoke",)

    def has_add_permission(self, request) -> bool:
        # A key's secret is shown once, at creation: use `manage.py create_api_key`.
        return False

    @admin.action(description="Revoke selected API keys")
    def revoke(self, request, queryset):
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"Revoked {count} key(s).", messages.SUCCESS)
