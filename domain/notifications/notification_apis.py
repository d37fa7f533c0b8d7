"""The thin HTTP layer for notifications to people: /api/v1/notification-templates and
-categories, /api/v1/notifications (send, read), /api/v1/inbox/{recipient_id},
/api/v1/recipients/{id}/preferences and the one-click /api/v1/unsubscribe/{token}. Validate
the shape, call one service or selector, render. (Every channel's deliveries are read through
/api/v1/deliveries, apis.py.)

Inboxes and preferences are kept by recipient id, an id the client chooses (its own user's):
any key with the scope reads or changes any recipient's. A key is the client's server acting
for its users; recipients hold no key. The one exception is the unsubscribe link, which a
recipient follows from an email with no key: its signed token names the one choice it may
change.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from domain.access.models import Scopes
from domain.common.errors import ValidationFailed
from domain.common.fields import StrictCharField
from domain.common.idempotency import (
    IDEMPOTENCY_HEADER,
    REPLAYED_PARAMETER,
    accepted_or_replayed,
    idempotency_key,
)
from domain.common.openapi import component_name, cursor_page, error_responses, one_of_components
from domain.common.pagination import CreatedAtCursorPagination
from domain.common.rendering import absolute_url, iso
from domain.common.schemas import openapi_schema

# The Idempotency-Key contract is the events' one: read the header the same way.
from domain.notifications import inbox, preferences, selectors
from domain.notifications.catalogue import (
    Category,
    NotificationTemplate,
    categories,
    get_category,
    notification_templates,
)
from domain.notifications.models import (
    PEOPLE_CHANNELS,
    Delivery,
    DeliveryStatus,
    InboxItem,
    InboxState,
    Notification,
)
from domain.notifications.sending import (
    digest_window,
    notification_send,
    notification_validate,
)

_errors = error_responses
_READ = (Scopes.NOTIFICATIONS_READ, Scopes.NOTIFICATIONS_WRITE)
_WRITE = (Scopes.NOTIFICATIONS_WRITE,)
_CHANNELS = [str(c) for c in PEOPLE_CHANNELS]
# A people channel's choice set, one enum in the schema (settings' ENUM_NAME_OVERRIDES). Its
# labels are its values: so is a template's `enum` in the send's schema, and drf-spectacular
# names an enum by a hash of both.
PEOPLE_CHANNEL_CHOICES = [(c, c) for c in _CHANNELS]
RECIPIENT_ID_MAX = 200  # Delivery.recipient_id, InboxItem.recipient_id

_CURSOR = OpenApiParameter("cursor", {"type": "string", "minLength": 1,
                                      "pattern": "^[A-Za-z0-9+/]+={0,2}$"},
                           description="from a page's `next` or `previous` link, as written "
                           "there (any other value is 422 invalid_cursor)")
_LIMIT_HELP = f"page size, {CreatedAtCursorPagination.page_size} if not given"
# A recipient id in a path: what a send accepts, less `/` (a path segment cannot hold one;
# such a recipient's inbox and preferences are not reachable here) and U+0000 (no database
# text can hold it).
_RECIPIENT_PATH = OpenApiParameter(
    "recipient_id", {"type": "string", "minLength": 1, "maxLength": RECIPIENT_ID_MAX,
                     "pattern": "^[^/\\u0000]+$"},
    OpenApiParameter.PATH, description="the recipient's id, as given when sending")
_REPLAYED = REPLAYED_PARAMETER


def _recipient_id(value: str) -> str:
    """A recipient id from a path, checked as a send checks it (and the schema states it)."""
    problem = ("Null characters are not allowed." if "\x00" in value else
               f"Ensure this field has no more than {RECIPIENT_ID_MAX} characters."
               if len(value) > RECIPIENT_ID_MAX else None)
    if problem:
        raise ValidationFailed("The request did not pass validation.",
                               details={"recipient_id": [problem]})
    return value


def _page_response(paginator: CreatedAtCursorPagination, results: list, **extra) -> Response:
    return Response({**extra, "next": paginator.get_next_link(),
                     "previous": paginator.get_previous_link(), "results": results})


# --- Templates and categories ----------------------------------------------------------------

@extend_schema_serializer(component_name="NotificationCategory")
class CategoryOutputSerializer(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField()
    required = serializers.BooleanField(help_text=(
        "sent whatever the recipient's preferences say; it cannot be opted out of, and its "
        "emails carry no List-Unsubscribe header"))

    def to_representation(self, category: Category) -> dict:
        return {"name": category.name, "description": category.description,
                "required": category.required}


@extend_schema_serializer(component_name="NotificationDigestRule")
class DigestRuleOutputSerializer(serializers.Serializer):
    window_seconds = serializers.IntegerField(help_text=(
        "a recipient's emails of this template within this many seconds of the first are "
        "sent as one (the window in force: NOTIFICATION_DIGEST_WINDOWS overrides the code's)"))
    key = serializers.CharField(allow_blank=True, help_text=(
        "the context field whose value separates digests (one per thread, say); empty: one "
        "digest per recipient"))


@extend_schema_serializer(component_name="NotificationTemplate")
class TemplateOutputSerializer(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField()
    category = CategoryOutputSerializer()
    channels = serializers.ListField(
        child=serializers.ChoiceField(choices=PEOPLE_CHANNEL_CHOICES))
    schema = serializers.JSONField(help_text="The context's JSON Schema (draft 2020-12).")
    example = serializers.JSONField(help_text="A context that passes it.")
    digest = DigestRuleOutputSerializer(allow_null=True, help_text=(
        "null: every email is sent on its own"))

    def to_representation(self, template: NotificationTemplate) -> dict:
        category = get_category(template.category)
        return {
            "name": template.name, "description": template.description,
            "category": CategoryOutputSerializer(category).data,
            "channels": list(template.channels), "schema": template.schema,
            "example": template.example,
            "digest": None if template.digest is None else {
                "window_seconds": digest_window(template), "key": template.digest.key},
        }


class TemplateListApi(APIView):
    required_scopes = {"GET": _READ}
    throttle_scope = "read"

    @extend_schema(operation_id="notification_templates_list",
                   responses={200: TemplateOutputSerializer(many=True), **_errors(401, 403)})
    def get(self, request):
        return Response(TemplateOutputSerializer(notification_templates(), many=True).data)


@extend_schema_serializer(component_name="NotificationCategoryWithTemplates")
class CategoryWithTemplatesSerializer(CategoryOutputSerializer):
    templates = serializers.ListField(child=serializers.CharField(),
                                      help_text="the templates of the category")

    def to_representation(self, category: Category) -> dict:
        return {**super().to_representation(category),
                "templates": [t.name for t in notification_templates()
                              if t.category == category.name]}


class CategoryListApi(APIView):
    """The categories preferences are set by (per category and channel)."""

    required_scopes = {"GET": _READ}
    throttle_scope = "read"

    @extend_schema(operation_id="notification_categories_list",
                   responses={200: CategoryWithTemplatesSerializer(many=True),
                              **_errors(401, 403)})
    def get(self, request):
        return Response(CategoryWithTemplatesSerializer(categories(), many=True).data)


# --- Notifications ---------------------------------------------------------------------------

@extend_schema_serializer(component_name="NotificationDelivery")
class NotificationDeliverySerializer(serializers.Serializer):
    """A notification's delivery to one recipient on one channel (the whole record, with its
    attempts, at `url`)."""

    id = serializers.UUIDField()
    channel = serializers.ChoiceField(choices=PEOPLE_CHANNEL_CHOICES)
    recipient_id = serializers.CharField()
    address = serializers.CharField(allow_null=True, help_text="email: the address")
    status = serializers.ChoiceField(choices=DeliveryStatus.choices)
    reason = serializers.CharField(allow_blank=True, help_text=(
        "why it was skipped (no email address, the recipient opted out)"))
    attempts = serializers.IntegerField()
    delivered_at = serializers.DateTimeField(allow_null=True)
    last_error = serializers.JSONField(allow_null=True)
    digest = serializers.UUIDField(allow_null=True, help_text=(
        "the digest this email joined: one email carries every delivery of a digest"))
    url = serializers.URLField()

    def to_representation(self, delivery: Delivery) -> dict:
        return {
            "id": str(delivery.pk), "channel": str(delivery.channel),
            "recipient_id": delivery.recipient_id,
            "address": delivery.address if delivery.channel == "email" else None,
            "status": str(delivery.status), "reason": delivery.reason,
            "attempts": delivery.attempts, "delivered_at": iso(delivery.delivered_at),
            "last_error": delivery.last_error,
            "digest": str(delivery.digest_id) if delivery.digest_id else None,
            "url": absolute_url(self.context["request"], "delivery-detail", delivery.pk),
        }


@extend_schema_serializer(component_name="NotificationSummary")
class NotificationSummarySerializer(serializers.Serializer):
    id = serializers.UUIDField()
    template = serializers.CharField()
    category = serializers.CharField()
    channels = serializers.ListField(
        child=serializers.ChoiceField(choices=PEOPLE_CHANNEL_CHOICES))
    context = serializers.JSONField()
    recipients_count = serializers.IntegerField()
    event = serializers.UUIDField(allow_null=True, help_text=(
        "the event it came from, when an event's handler sent it"))
    created_at = serializers.DateTimeField()
    url = serializers.URLField()

    def to_representation(self, notification: Notification) -> dict:
        return {
            "id": str(notification.pk), "template": notification.template,
            "category": notification.category, "channels": list(notification.channels),
            "context": notification.context,
            "recipients_count": notification.recipients_count,
            "event": str(notification.event_id) if notification.event_id else None,
            "created_at": iso(notification.created_at),
            "url": absolute_url(self.context["request"], "notification-detail",
                                notification.pk),
        }


@extend_schema_serializer(component_name="Notification")
class NotificationOutputSerializer(NotificationSummarySerializer):
    deliveries = NotificationDeliverySerializer(many=True, help_text=(
        "one per recipient and channel, in the request's order"))

    def to_representation(self, notification: Notification) -> dict:
        deliveries = self.context.get("deliveries")
        if deliveries is None:
            deliveries = selectors.notification_deliveries(notification=notification)
        rows = NotificationDeliverySerializer(context=self.context)
        return {**super().to_representation(notification),
                "deliveries": [rows.to_representation(d) for d in deliveries]}


@extend_schema_serializer(component_name="NotificationRecipient")
class RecipientInputSerializer(serializers.Serializer):
    # No "/" (nor NUL): the id is a path segment of its inbox and preferences, and an id a
    # send accepted must be one those paths can reach.
    id = StrictCharField(max_length=RECIPIENT_ID_MAX, trim_whitespace=False,
                         validators=[RegexValidator(r"^[^/\x00]+\Z",
                                                    "A recipient id cannot contain '/'.")],
                         help_text=(
        "your id for the recipient (their inbox and preferences are under it, so no '/'); "
        "unique in the request, otherwise 422 invalid_recipients (duplicate_recipient)"))
    email = StrictCharField(max_length=320, allow_null=True, allow_blank=True, required=False,
                            trim_whitespace=False, help_text=(
                                "an email address (Django's validator, otherwise 422 "
                                "invalid_recipients, invalid_email); null, empty or absent: "
                                "the email delivery is `skipped`"))


@extend_schema_serializer(component_name="NotificationInput")
class NotificationInputSerializer(serializers.Serializer):
    template = StrictCharField(max_length=100, trim_whitespace=False)  # a name, exact
    context = serializers.JSONField(help_text="what the template renders: its schema's")
    recipients = serializers.ListField(child=RecipientInputSerializer(), help_text=(
        "1 to NOTIFICATIONS_MAX_RECIPIENTS (1,000), all validated before anything is sent"))
    channels = serializers.ListField(
        child=StrictCharField(max_length=20), required=False, allow_null=True, help_text=(
            "some of the template's channels; absent, null or empty: all of them"))


class NotificationInputSchema(OpenApiSerializerExtension):
    """A send in the schema as the server checks it: `template` is a registered template,
    `context` follows its schema and `channels` are some of its channels (otherwise 422
    unknown_template / invalid_context / unsupported_channel): one branch per template, read
    from the registry when the schema is made."""

    target_class = NotificationInputSerializer

    def map_serializer(self, auto_schema, direction):
        base = auto_schema._map_serializer(self.target_class, direction, bypass_extensions=True)
        recipients = {**base["properties"]["recipients"], "minItems": 1,
                      "maxItems": settings.NOTIFICATIONS_MAX_RECIPIENTS}
        return one_of_components(auto_schema, {
            component_name(t.name, "NotificationInput"): {
                **base, "description": t.description,
                "properties": {
                    **base["properties"], "recipients": recipients,
                    "template": {"type": "string", "enum": [t.name]},
                    "context": openapi_schema(t.schema),
                    "channels": {**base["properties"]["channels"],
                                 "items": {"type": "string", "enum": list(t.channels)}}}}
            for t in notification_templates()})


def _too_many(data) -> None:
    """Refuse a send to more recipients than allowed before validating each of them."""
    items = data.get("recipients") if isinstance(data, dict) else None
    limit = settings.NOTIFICATIONS_MAX_RECIPIENTS
    if isinstance(items, list) and len(items) > limit:
        raise ValidationFailed(f"A notification goes to at most {limit} recipients.",
                               code="too_many_recipients",
                               details={"limit": limit, "received": len(items)})


class NotificationListSendApi(APIView):
    required_scopes = {"GET": _READ, "POST": _WRITE}
    throttle_scope = {"GET": "read", "POST": "publish"}

    @extend_schema_serializer(component_name="NotificationFilter")
    class FilterSerializer(serializers.Serializer):
        template = StrictCharField(required=False, max_length=100, trim_whitespace=False)
        category = StrictCharField(required=False, max_length=100, trim_whitespace=False)
        limit = serializers.IntegerField(
            required=False, min_value=1, max_value=CreatedAtCursorPagination.max_page_size,
            help_text=_LIMIT_HELP)

    @extend_schema(operation_id="notifications_list", parameters=[FilterSerializer, _CURSOR],
                   description="The notifications this key sent (every key's for an admin "
                   "key), newest first; each one's deliveries at its `url`.",
                   responses={200: cursor_page("NotificationPage",
                                               NotificationSummarySerializer(many=True)),
                       **_errors(401, 403, 422)})
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        paginator = CreatedAtCursorPagination()
        page = paginator.paginate_queryset(
            selectors.notification_list(api_key=request.auth,
                                        template=filters.validated_data.get("template"),
                                        category=filters.validated_data.get("category")),
            request, view=self)
        data = NotificationSummarySerializer(page, many=True,
                                             context={"request": request}).data
        return _page_response(paginator, data)

    @extend_schema(
        operation_id="notifications_send", request=NotificationInputSerializer,
        description="Send a template to up to NOTIFICATIONS_MAX_RECIPIENTS recipients on its "
        "channels: one delivery per recipient and channel. Everything is checked before "
        "anything is written (422: unknown_template, unsupported_channel, no_recipients, "
        "too_many_recipients, invalid_recipients with duplicate_recipient / invalid_email "
        "per index, invalid_context, missing_variable).",
        parameters=[OpenApiParameter(IDEMPOTENCY_HEADER, str, OpenApiParameter.HEADER,
                                     description="At most 255 characters (otherwise 422 "
                                     "invalid_idempotency_key). Replays within the same API "
                                     "key answer the first notification as it is now (200); "
                                     "a different body with the same key is 409 "
                                     "idempotency_key_reused."),
                    _REPLAYED],
        responses={202: NotificationOutputSerializer, 200: NotificationOutputSerializer,
                   **_errors(400, 401, 403, 409, 413, 422)})
    def post(self, request):
        _too_many(request.data)
        serializer = NotificationInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        draft = notification_validate(
            template=data["template"], context=data["context"],
            recipients=[{"id": r["id"], "email": r.get("email") or ""}
                        for r in data["recipients"]],
            channels=data.get("channels"))
        result = notification_send(draft=draft, api_key=request.auth,
                                   idempotency_key=idempotency_key(request),
                                   correlation_id=request.correlation_id)
        body = NotificationOutputSerializer(
            result.notification,
            context={"request": request, "deliveries": result.deliveries}).data
        return accepted_or_replayed(body, created=result.created)


class NotificationDetailApi(APIView):
    required_scopes = {"GET": _READ}
    throttle_scope = "read"

    @extend_schema(operation_id="notifications_retrieve",
                   description="A notification this key sent (any, for an admin key; 404 "
                   "otherwise), with its deliveries.",
                   responses={200: NotificationOutputSerializer, **_errors(401, 403, 404)})
    def get(self, request, notification_id):
        notification = selectors.notification_get(notification_id=notification_id,
                                                  api_key=request.auth)
        return Response(NotificationOutputSerializer(notification,
                                                     context={"request": request}).data)


# --- Inbox -----------------------------------------------------------------------------------

@extend_schema_serializer(component_name="InboxItem")
class InboxItemSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    recipient_id = serializers.CharField()
    notification = serializers.UUIDField(allow_null=True)
    template = serializers.CharField()
    category = serializers.CharField()
    title = serializers.CharField(help_text="the template's subject, rendered")
    body = serializers.CharField(allow_blank=True, help_text="its text part, rendered")
    data = serializers.JSONField(help_text="the notification's context")
    state = serializers.ChoiceField(choices=InboxState.choices)
    created_at = serializers.DateTimeField()
    read_at = serializers.DateTimeField(allow_null=True)
    archived_at = serializers.DateTimeField(allow_null=True)

    def to_representation(self, item: InboxItem) -> dict:
        return {
            "id": str(item.pk), "recipient_id": item.recipient_id,
            "notification": str(item.notification_id) if item.notification_id else None,
            "template": item.template, "category": item.category, "title": item.title,
            "body": item.body, "data": item.data, "state": str(item.state),
            "created_at": iso(item.created_at), "read_at": iso(item.read_at),
            "archived_at": iso(item.archived_at),
        }


_UNREAD = serializers.IntegerField(help_text="the recipient's unread items, now")


class InboxApi(APIView):
    required_scopes = {"GET": _READ}
    throttle_scope = "read"

    @extend_schema_serializer(component_name="InboxFilter")
    class FilterSerializer(serializers.Serializer):
        state = serializers.ChoiceField(choices=InboxState.choices, required=False, help_text=(
            "absent: unread and read items (not archived ones)"))
        limit = serializers.IntegerField(
            required=False, min_value=1, max_value=CreatedAtCursorPagination.max_page_size,
            help_text=_LIMIT_HELP)

    @extend_schema(operation_id="inbox_list", parameters=[_RECIPIENT_PATH, FilterSerializer,
                                                          _CURSOR],
                   description="A recipient's in-app notifications, newest first, with the "
                   "unread count (a recipient nothing was sent to has an empty inbox).",
                   responses={200: cursor_page("InboxPage", InboxItemSerializer(many=True),
                                               unread_count=_UNREAD),
                       **_errors(401, 403, 422)})
    def get(self, request, recipient_id):
        recipient_id = _recipient_id(recipient_id)
        filters = self.FilterSerializer(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        paginator = CreatedAtCursorPagination()
        page = paginator.paginate_queryset(
            inbox.inbox_items(recipient_id=recipient_id,
                              state=filters.validated_data.get("state")), request, view=self)
        return _page_response(paginator, InboxItemSerializer(page, many=True).data,
                              unread_count=inbox.inbox_unread(recipient_id=recipient_id))


_ITEM_ANSWER = inline_serializer("InboxItemChanged", {"item": InboxItemSerializer(),
                                                      "unread_count": _UNREAD})


class _InboxItemMarkApi(APIView):
    required_scopes = {"POST": _WRITE}
    throttle_scope = "write"
    action: str

    def mark(self, request, recipient_id, item_id) -> Response:
        item = inbox.inbox_item_mark(recipient_id=_recipient_id(recipient_id), item_id=item_id,
                                     action=self.action)
        return Response({"item": InboxItemSerializer(item).data,
                         "unread_count": inbox.inbox_unread(recipient_id=recipient_id)})


def _mark_api(action: str, description: str) -> type[APIView]:
    """One view per action, each its own operation in the schema (extend_schema marks the
    function it is given, so each view has a function of its own)."""

    def post(self, request, recipient_id, item_id):
        return self.mark(request, recipient_id, item_id)

    post = extend_schema(
        operation_id=f"inbox_item_{action}", request=None, description=description,
        parameters=[_RECIPIENT_PATH],
        responses={200: _ITEM_ANSWER, **_errors(401, 403, 404, 422)},
    )(post)
    return type(f"InboxItem{action.title()}Api", (_InboxItemMarkApi,),
                {"action": action, "post": post, "__module__": __name__})


InboxItemReadApi = _mark_api("read", "Mark the item read (already read or archived: "
                             "unchanged). 404 for an item of another recipient.")
InboxItemUnreadApi = _mark_api("unread", "Mark the item unread (an archived one comes back "
                               "unread). 404 for an item of another recipient.")
InboxItemArchiveApi = _mark_api("archive", "Archive the item (it leaves the default "
                                "listing; an unread one no longer counts). 404 for an item of "
                                "another recipient.")


class InboxReadAllApi(APIView):
    required_scopes = {"POST": _WRITE}
    throttle_scope = "write"

    @extend_schema(operation_id="inbox_read_all", request=None, parameters=[_RECIPIENT_PATH],
                   description="Mark every unread item of the recipient read.",
                   responses={200: inline_serializer("InboxReadAll", {
                       "marked_read": serializers.IntegerField(help_text="items it changed"),
                       "unread_count": _UNREAD}), **_errors(401, 403, 422)})
    def post(self, request, recipient_id):
        recipient_id = _recipient_id(recipient_id)
        marked = inbox.inbox_read_all(recipient_id=recipient_id)
        return Response({"marked_read": marked,
                         "unread_count": inbox.inbox_unread(recipient_id=recipient_id)})


# --- Preferences -----------------------------------------------------------------------------

@extend_schema_field({"type": "object", "properties": {c: {"type": "boolean"}
                                                       for c in _CHANNELS},
                      "required": _CHANNELS})
class _ChannelChoicesField(serializers.DictField):
    pass


@extend_schema_serializer(component_name="CategoryPreference")
class CategoryPreferenceSerializer(CategoryOutputSerializer):
    channels = _ChannelChoicesField(help_text="true: sent on that channel (a required "
                                    "category: always true)")


@extend_schema_serializer(component_name="RecipientPreferences")
class PreferencesOutputSerializer(serializers.Serializer):
    recipient_id = serializers.CharField()
    categories = CategoryPreferenceSerializer(many=True, help_text="every category")


@extend_schema_serializer(component_name="RecipientPreferencesInput")
class PreferencesInputSerializer(serializers.Serializer):
    categories = serializers.DictField(
        child=serializers.DictField(child=serializers.BooleanField()), help_text=(
            "{category: {channel: true or false}}; a category or channel not named is true "
            "(the PUT replaces every choice). An unknown category or channel is 422 "
            "invalid_preferences; false for a required category is 422 required_category."))


class PreferencesInputSchema(OpenApiSerializerExtension):
    """The categories and channels in the schema, read from the registry when it is made: a
    required category takes `true` only."""

    target_class = PreferencesInputSerializer

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_serializer(self.target_class, direction,
                                             bypass_extensions=True)
        per_category = {
            c.name: {"type": "object", "description": c.description,
                     "additionalProperties": False,
                     "properties": {ch: {"type": "boolean", **({"enum": [True]} if c.required
                                                                 else {})}
                                    for ch in _CHANNELS}}
            for c in categories()}
        schema["properties"]["categories"] = {
            **schema["properties"]["categories"], "additionalProperties": False,
            "properties": per_category}
        return schema


def _choices(raw) -> dict[str, dict[str, bool]]:
    """{category: {channel: bool}}, JSON booleans only (DRF's BooleanField also takes "yes",
    1 and "true", which the schema's `boolean` does not)."""
    errors: dict[str, str] = {}
    if not isinstance(raw, dict):
        raise ValidationFailed("The request did not pass validation.",
                               details={"categories": ["Expected an object of categories."]})
    for name, per_channel in raw.items():
        if not isinstance(per_channel, dict):
            errors[name] = "expected an object of channels"
            continue
        for channel, enabled in per_channel.items():
            if not isinstance(enabled, bool):
                errors[f"{name}.{channel}"] = "expected true or false"
    if errors:
        raise ValidationFailed("The request did not pass validation.",
                               details={"categories": errors})
    return raw


class PreferencesApi(APIView):
    required_scopes = {"GET": _READ, "PUT": _WRITE}
    throttle_scope = {"GET": "read", "PUT": "write"}

    @extend_schema(operation_id="recipient_preferences_retrieve",
                   parameters=[_RECIPIENT_PATH],
                   description="Whether the recipient gets each category on each channel "
                   "(no choice saved: yes).",
                   responses={200: PreferencesOutputSerializer, **_errors(401, 403, 422)})
    def get(self, request, recipient_id):
        return Response(preferences.preferences_get(recipient_id=_recipient_id(recipient_id)))

    @extend_schema(operation_id="recipient_preferences_update",
                   parameters=[_RECIPIENT_PATH], request=PreferencesInputSerializer,
                   description="Replace the recipient's choices, all checked before any is "
                   "saved; the answer is what GET answers now.",
                   responses={200: PreferencesOutputSerializer,
                              **_errors(400, 401, 403, 413, 422)})
    def put(self, request, recipient_id):
        recipient_id = _recipient_id(recipient_id)
        if not isinstance(request.data, dict) or "categories" not in request.data:
            raise ValidationFailed("The request did not pass validation.",
                                   details={"categories": ["This field is required."]})
        choices = _choices(request.data["categories"])
        return Response(preferences.preferences_put(recipient_id=recipient_id,
                                                    choices=choices))


# --- One-click unsubscribe (RFC 8058) --------------------------------------------------------

@extend_schema_field({"type": "string", "enum": ["email"]})
class _EmailChannelField(serializers.CharField):
    pass


@extend_schema_serializer(component_name="Unsubscribe")
class UnsubscribeOutputSerializer(serializers.Serializer):
    recipient_id = serializers.CharField()
    category = serializers.CharField()
    channel = _EmailChannelField()
    enabled = serializers.BooleanField(help_text=(
        "POST: false, as it is now. GET: the recipient's choice as it is (a POST makes it "
        "false)"))


_TOKEN = OpenApiParameter("token", {"type": "string", "minLength": 1},
                          OpenApiParameter.PATH,
                          description="from the email's List-Unsubscribe link (signed; any "
                          "other value is 422 invalid_unsubscribe_token)")


class UnsubscribeApi(APIView):
    """The link in a non-required category's email (`List-Unsubscribe`, with
    `List-Unsubscribe-Post: List-Unsubscribe=One-Click`). No API key: the signed token is the
    authority, and it says exactly one thing: this recipient, this category, by email. A mail
    client POSTs `List-Unsubscribe=One-Click` (form-encoded); the body is not read, so any
    body (or none) does the same."""

    authentication_classes = ()
    permission_classes = (AllowAny,)
    throttle_scope = {"GET": "read", "POST": "write"}

    @staticmethod
    def _target(token: str) -> tuple[str, str]:
        recipient_id, category = preferences.unsubscribe_read(token)
        if category not in {c.name for c in categories()}:
            # Signed when the category existed; it is gone from the code since.
            raise ValidationFailed("This unsubscribe link is not valid.",
                                   code="invalid_unsubscribe_token",
                                   details={"category": category})
        return recipient_id, category

    @extend_schema(operation_id="unsubscribe_preview", auth=[],
                   parameters=[_TOKEN],
                   description="What a POST to this URL does, changing nothing (a mail "
                   "client or a scanner that fetches the link unsubscribes no one). 422 "
                   "required_category for a category that cannot be turned off.",
                   responses={200: UnsubscribeOutputSerializer, **_errors(422)})
    def get(self, request, token):
        recipient_id, category = self._target(token)
        current = preferences.preferences_get(recipient_id=recipient_id)
        found = next(c for c in current["categories"] if c["name"] == category)
        if found["required"]:
            raise ValidationFailed("A required category cannot be turned off.",
                                   code="required_category")
        return Response({"recipient_id": recipient_id, "category": category,
                         "channel": "email", "enabled": found["channels"]["email"]})

    @extend_schema(operation_id="unsubscribe", auth=[], request=None, parameters=[_TOKEN],
                   description="One click (RFC 8058): the recipient no longer gets the "
                   "category by email; the same POST again changes nothing more.",
                   responses={200: UnsubscribeOutputSerializer,
                              **_errors(422)})
    def post(self, request, token):
        recipient_id, category = self._target(token)
        preferences.preference_set(recipient_id=recipient_id, category=category,
                                   channel="email", enabled=False)
        return Response({"recipient_id": recipient_id, "category": category,
                         "channel": "email", "enabled": False})
