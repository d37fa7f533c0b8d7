"""The notifications admin: webhook endpoints, deliveries (every channel's) with their
attempts, messages; notifications to people with their deliveries, inbox items, digests and
recipients' preferences.

Operators read here and act through the same services the API uses: enable an endpoint
(its parked deliveries resume, oldest first), disable one (its waiting deliveries are parked,
its owner hears `webhook_endpoint.disabled`), recover failed or parked deliveries (sent again
with the same webhook-id). As the jobs' actions, each asks first with counts (a confirmation
page, domain/common/admin_actions.py), then acts and says what it did and what it left.

Secrets are never shown: endpoints are registered through the API, which shows the secret
once, and the admin has no field for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import BooleanField, Case, Count, QuerySet, Value, When
from django.template.response import TemplateResponse

from domain.access.audit import audit_admin_action
from domain.access.models import AuditAction
from domain.common.admin_actions import confirmation_page, with_event_id_match
from domain.notifications import health, services
from domain.notifications.deliveries import deliveries_requeue
from domain.notifications.models import (
    RECOVERABLE_DELIVERY_STATUSES,
    Channel,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Digest,
    EndpointState,
    InboxItem,
    Message,
    Notification,
    RecipientPreference,
    WebhookEndpoint,
)

OPERATOR_DISABLED = "disabled by an operator"
CONFIRMATION = "admin/notifications/action_confirmation.html"
SECRET_FIELDS = ("secret", "previous_secret")


def _counts(queryset: QuerySet, model, field: str) -> dict[str, int]:
    """{value of `field`: rows} of a selection, in one query whatever its size."""
    rows = (model.objects.filter(pk__in=queryset.values("pk")).order_by().values(field)
            .annotate(n=Count("pk")))
    return _in_order({row[field]: row["n"] for row in rows},
                     model._meta.get_field(field).choices)


def _in_order(counts: dict[str, int], choices) -> dict[str, int]:
    """The counts in the order of the field's choices (a value with a suffix after it)."""
    order = [value for value, _label in choices]
    return dict(sorted(counts.items(), key=lambda item: (
        next((i for i, v in enumerate(order) if item[0].startswith(v)), len(order)),
        item[0])))


def _listed(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {value}" for value, n in counts.items())


class _AsksFirst:
    """The flow every action here shares: count the selection by state or status; without
    `post=yes`, the confirmation page (or a warning when nothing is eligible); with it, run
    the service and report. `noun` is the plural as the messages write it ("endpoint(s)")."""

    def _ask_or_act(self, request, *, action: str, verb: str, noun: str, column: str,
                    counts: dict[str, int], eligible_values, effect: str,
                    run: Callable[[], None], note: str = "") -> TemplateResponse | None:
        total = sum(counts.values())
        eligible = sum(counts.get(v, 0) for v in eligible_values)
        either = " or ".join(str(v) for v in eligible_values)
        if not eligible:
            self.message_user(request, f"Nothing to {verb.lower()}: none of the {total} "
                              f"selected {noun} is {either}."
                              + (f" Left as they are: {note}" if note else ""),
                              messages.WARNING)
            return None
        if request.POST.get("post") != "yes":
            return confirmation_page(
                self, request, CONFIRMATION, action=action, verb=verb,
                title=f"{verb} {eligible} {noun}?",
                submit_label=f"Yes, {verb.lower()} {eligible} {noun}",
                noun=noun, column=column, total=total, eligible=eligible,
                eligible_values=either, effect=effect, note=note,
                rows=[(value, n, value in eligible_values) for value, n in counts.items()])
        run()
        others = {v: n for v, n in counts.items() if v not in eligible_values}
        if others:
            self.message_user(request, f"Left as they were: {_listed(others)}.", messages.INFO)
        return None


# --- Endpoints -------------------------------------------------------------------------------

@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(_AsksFirst, admin.ModelAdmin):
    list_display = ("url", "state", "enabled", "consecutive_failures", "failing_since",
                    "circuit_open_until", "created_at")
    list_filter = ("state", "enabled")
    search_fields = ("url",)
    date_hierarchy = "created_at"
    exclude = SECRET_FIELDS
    readonly_fields = [f.name for f in WebhookEndpoint._meta.fields
                       if f.name not in SECRET_FIELDS]
    actions = ("enable_endpoints", "disable_endpoints")

    def has_add_permission(self, request) -> bool:
        # Registered through the API, which checks the URL and shows the secret once.
        return False

    @admin.action(description="Enable (resume parked deliveries)", permissions=["change"])
    def enable_endpoints(self, request, queryset):
        disabled = WebhookEndpoint.objects.filter(pk__in=queryset.values("pk"),
                                                  state=EndpointState.DISABLED)

        def run() -> None:
            enabled = resumed = 0
            for endpoint in disabled.order_by("created_at", "id"):
                resumed += services.endpoint_enable(endpoint=endpoint)
                endpoint.refresh_from_db(fields=["state"])
                enabled += endpoint.state != EndpointState.DISABLED
            audit_admin_action(request, action=AuditAction.RESUME,
                               target_type="webhook_endpoints", count=enabled,
                               detail={"deliveries_resumed": resumed})
            self.message_user(request, f"Enabled {enabled} endpoint(s); resumed {resumed} "
                              "parked delivery(ies), oldest first.", messages.SUCCESS)

        return self._ask_or_act(
            request, action="enable_endpoints", verb="Enable", noun="endpoint(s)", column="state",
            counts=_counts(queryset, WebhookEndpoint, "state"),
            eligible_values=(EndpointState.DISABLED,),
            effect="Each becomes active with a clean health record, and its parked "
            "deliveries are sent, oldest first.", run=run)

    @admin.action(description="Disable (park waiting deliveries)", permissions=["change"])
    def disable_endpoints(self, request, queryset):
        selection = WebhookEndpoint.objects.filter(pk__in=queryset.values("pk"))

        def run() -> None:
            parked_before = _parked(selection)
            disabled = sum(
                health.endpoint_disable(endpoint=endpoint, reason=OPERATOR_DISABLED)
                for endpoint in selection.exclude(state=EndpointState.DISABLED)
                .order_by("created_at", "id"))
            parked = _parked(selection) - parked_before
            audit_admin_action(request, action=AuditAction.PAUSE,
                               target_type="webhook_endpoints", count=disabled,
                               detail={"deliveries_parked": parked})
            self.message_user(request, f"Disabled {disabled} endpoint(s); parked "
                              f"{parked} waiting delivery(ies).", messages.SUCCESS)

        return self._ask_or_act(
            request, action="disable_endpoints", verb="Disable", noun="endpoint(s)", column="state",
            counts=_counts(queryset, WebhookEndpoint, "state"),
            eligible_values=(EndpointState.ACTIVE, EndpointState.DEGRADED),
            effect=f"Each is disabled (\"{OPERATOR_DISABLED}\"); its pending and retrying "
            "deliveries are parked without using an attempt, and its owner is told with a "
            "webhook_endpoint.disabled event. Enabling it again resumes them.", run=run)


def _parked(endpoints: QuerySet[WebhookEndpoint]) -> int:
    return Delivery.objects.filter(endpoint__in=endpoints.values("pk"),
                                   status=DeliveryStatus.PARKED).count()


# --- Deliveries ------------------------------------------------------------------------------

class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    fields = ("number", "at", "outcome", "http_status", "smtp_code", "latency_ms", "error_type",
              "error_message", "response_excerpt", "worker")
    readonly_fields = fields
    ordering = ("number", "id")

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(_AsksFirst, admin.ModelAdmin):
    list_display = ("id", "channel", "message_id", "endpoint", "recipient_id", "status",
                    "attempts", "created_at", "delivered_at")
    list_filter = ("channel", "status")
    search_fields = ("=message__id", "=recipient_id")
    date_hierarchy = "created_at"
    list_select_related = ("endpoint",)
    readonly_fields = [f.name for f in Delivery._meta.fields]
    inlines = [DeliveryAttemptInline]
    actions = ("recover_deliveries",)

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description="Recover (send again)", permissions=["change"])
    def recover_deliveries(self, request, queryset):
        selection = Delivery.objects.filter(pk__in=queryset.values("pk"))
        # As the API's recover: events' deliveries of endpoints that are not disabled.
        recoverable = selection.filter(status__in=RECOVERABLE_DELIVERY_STATUSES,
                                       channel=Channel.WEBHOOK,
                                       message__event_id__isnull=False).exclude(
            endpoint__state=EndpointState.DISABLED)
        counts = _delivery_counts(selection)
        skipped = {why: sum(n for key, n in counts.items() if key.endswith(why))
                   for why in SKIPPED}
        note = " ".join(f"{n} {SKIPPED[why]}" for why, n in skipped.items() if n)

        def run() -> None:
            eligible = sum(counts.get(s, 0) for s in RECOVERABLE_DELIVERY_STATUSES)
            with transaction.atomic():
                chosen = list(recoverable.select_for_update(skip_locked=True, of=("self",))
                              .order_by("created_at", "id"))
                sent = deliveries_requeue(deliveries=chosen)
            audit_admin_action(request, action=AuditAction.RECOVER, target_type="deliveries",
                               count=sent)
            self.message_user(request, f"Recovered {sent} delivery(ies): each is sent again "
                              "with its webhook-id.", messages.SUCCESS)
            if sent < eligible:
                self.message_user(request, f"{eligible - sent} failed or parked "
                                  "delivery(ies) were not recovered (changed or being sent "
                                  "meanwhile); run the action again for them.",
                                  messages.WARNING)
            for why, n in skipped.items():
                if n:
                    self.message_user(request, f"Skipped {n} {SKIPPED[why]}", messages.WARNING)

        return self._ask_or_act(
            request, action="recover_deliveries", verb="Recover", noun="delivery(ies)",
            column="status", counts=counts, eligible_values=RECOVERABLE_DELIVERY_STATUSES,
            effect="Each is sent again, oldest first, with the same webhook-id (a receiver "
            "that got it before can tell); its attempts so far are kept.", run=run,
            note=note)


ENDPOINT_DISABLED = " (endpoint disabled)"
TEST_PING = " (test ping)"
NOT_WEBHOOK = " (email or in-app)"
# Failed or parked deliveries that recover leaves, and why.
SKIPPED = {
    NOT_WEBHOOK: "failed email or in-app delivery(ies): recover sends webhook messages only.",
    ENDPOINT_DISABLED: "failed or parked delivery(ies) of a disabled endpoint: enable the "
    "endpoint first (that resumes its parked deliveries), then recover the failed ones.",
    TEST_PING: "failed test ping(s): a test ping's outcome was answered to whoever sent it; "
    "it is not sent again.",
}


def _delivery_counts(selection: QuerySet[Delivery]) -> dict[str, int]:
    """{status: deliveries} of a selection in one query, the failed or parked deliveries that
    recover skips counted apart: "failed (endpoint disabled)", "failed (test ping)"."""
    rows = (selection.order_by()
            .annotate(ping=Case(When(message__event_id__isnull=True, then=Value(True)),
                                default=Value(False), output_field=BooleanField()))
            .values("status", "channel", "endpoint__state", "ping").annotate(n=Count("pk")))
    counts: dict[str, int] = {}
    for row in rows:
        key = row["status"]
        if key in RECOVERABLE_DELIVERY_STATUSES:
            if row["channel"] != Channel.WEBHOOK:
                key += NOT_WEBHOOK
            elif row["endpoint__state"] == EndpointState.DISABLED:
                key += ENDPOINT_DISABLED
            elif row["ping"]:
                key += TEST_PING
        counts[key] = counts.get(key, 0) + row["n"]
    return _in_order(counts, DeliveryStatus.choices)


# --- Messages --------------------------------------------------------------------------------

class MessageDeliveryInline(admin.TabularInline):
    model = Delivery
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ("id", "endpoint", "status", "attempts", "delivered_at")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    """Read-only: what left the system, once per event, whatever its deliveries."""

    list_display = ("id", "type", "event_id", "timestamp", "created_at")
    list_filter = ("type",)
    search_fields = ("=id", "type")
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in Message._meta.fields]
    inlines = [MessageDeliveryInline]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request, obj: Any = None) -> bool:
        return False

    def get_search_results(self, request, queryset, search_term):
        """Also find an event's message by the event's id."""
        results, distinct = super().get_search_results(request, queryset, search_term)
        return with_event_id_match(results, queryset, search_term), distinct


# --- Notifications to people -----------------------------------------------------------------

class _ReadOnly:
    """What the notifications to people keep is a record: the API and the workers write it."""

    def has_add_permission(self, request, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request, obj: Any = None) -> bool:
        return False


class NotificationDeliveryInline(_ReadOnly, admin.TabularInline):
    model = Delivery
    fk_name = "notification"
    extra = 0
    show_change_link = True
    fields = ("id", "channel", "recipient_id", "address", "status", "reason", "attempts",
              "digest", "delivered_at")
    readonly_fields = fields
    ordering = ("created_at", "id")


@admin.register(Notification)
class NotificationAdmin(_ReadOnly, admin.ModelAdmin):
    list_display = ("id", "template", "category", "recipients_count", "api_key", "created_at")
    list_filter = ("template", "category")
    search_fields = ("=id", "=idempotency_key", "=source")
    date_hierarchy = "created_at"
    list_select_related = ("api_key",)
    readonly_fields = [f.name for f in Notification._meta.fields]
    inlines = [NotificationDeliveryInline]


@admin.register(InboxItem)
class InboxItemAdmin(_ReadOnly, admin.ModelAdmin):
    list_display = ("title", "recipient_id", "state", "template", "created_at", "read_at")
    list_filter = ("state", "category")
    search_fields = ("=recipient_id",)
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in InboxItem._meta.fields]


@admin.register(Digest)
class DigestAdmin(_ReadOnly, admin.ModelAdmin):
    list_display = ("template", "key", "recipient_id", "state", "items", "opened_at",
                    "closes_at")
    list_filter = ("state", "template")
    search_fields = ("=recipient_id", "=key")
    date_hierarchy = "opened_at"
    readonly_fields = [f.name for f in Digest._meta.fields]


@admin.register(RecipientPreference)
class RecipientPreferenceAdmin(admin.ModelAdmin):
    """An operator may read and correct a recipient's choices (a support request); a required
    category's "no" is ignored when sending whatever is stored."""

    list_display = ("recipient_id", "category", "channel", "enabled", "updated_at")
    list_filter = ("category", "channel", "enabled")
    search_fields = ("=recipient_id",)
