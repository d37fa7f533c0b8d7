from django.contrib import admin, messages
from django.db.models import Count, Q
from django.utils import timezone

from domain.access.audit import audit_admin_action
from domain.access.keycache import key_cache
from domain.access.models import ApiKey, AuditAction, AuditEntry
from domain.common.admin_actions import confirmation_page

# Names the confirmation page shows of the keys it will revoke (the count covers them all).
NAMES_SHOWN = 20


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

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke(self, request, queryset):
        """A revoked key is refused at once by every client holding it, and cannot be
        restored: so, as Django's "Delete selected", a page first says how many keys (and
        which, by name) the action will revoke, and posts the same selection back with
        `post=yes`. Two queries for the page, then one SELECT of the keys' hashes (to forget
        them in this process's key cache) and one UPDATE, whatever the selection's size
        (also "select all N" across pages)."""
        selection = ApiKey.objects.filter(pk__in=queryset.values("pk"))
        active = selection.filter(revoked_at__isnull=True)
        if request.POST.get("post") == "yes":
            hashes = list(active.values_list("key_hash", flat=True))
            count = active.update(revoked_at=timezone.now())
            for key_hash in hashes:  # refused at once in this process, within the cache
                key_cache.forget(key_hash)  # period (API_KEY_CACHE_SECONDS) in the others
            audit_admin_action(request, action=AuditAction.REVOKE, target_type="api_keys",
                               count=count)
            self.message_user(request, f"Revoked {count} key(s).", messages.SUCCESS)
            return None
        counts = selection.aggregate(total=Count("pk"),
                                     active=Count("pk", filter=Q(revoked_at__isnull=True)))
        if not counts["active"]:
            self.message_user(request, f"Nothing to revoke: the {counts['total']} selected "
                              "key(s) are revoked already.", messages.WARNING)
            return None
        return confirmation_page(
            self, request, "admin/access/apikey/revoke_confirmation.html",
            action="revoke", verb="Revoke", title=f"Revoke {counts['active']} API key(s)?",
            submit_label=f"Yes, revoke {counts['active']} key(s)",
            total=counts["total"], active=counts["active"],
            revoked_already=counts["total"] - counts["active"],
            names=list(active.order_by("name").values_list("name", flat=True)[:NAMES_SHOWN]))


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    """The audit log: who did what, on what, how many rows, when. Read only: entries are
    written by the interfaces as operators act (domain/access/audit.py), never here."""

    list_display = ("at", "actor_kind", "actor", "action", "target_type", "target", "count",
                    "correlation_id")
    list_filter = ("action", "actor_kind", "target_type", "at")
    search_fields = ("actor", "target", "=correlation_id")
    date_hierarchy = "at"
    readonly_fields = [f.name for f in AuditEntry._meta.fields]
    show_full_result_count = False  # no second COUNT(*) per page over a long log

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
