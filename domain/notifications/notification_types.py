"""The notification categories every deployment has, and the templates that belong to no
other app: a security notice (a required category) and a comment digest. Apps register their
own templates beside their event types (domain/orders/notification_types.py)."""

from domain.notifications.catalogue import (
    Category,
    DigestRule,
    NotificationTemplate,
    register_category,
    register_template,
)

SECURITY = register_category(Category(
    name="security", required=True,
    description="Sign-ins, password and key changes: always sent, on every channel."))
ORDERS = register_category(Category(
    name="orders", description="What happens to a customer's orders."))
COMMENTS = register_category(Category(
    name="comments", description="Replies and comments in threads the recipient follows."))

SECURITY_ALERT = register_template(NotificationTemplate(
    name="security_alert", category=SECURITY.name, channels=("email", "in_app"),
    description="Something happened to the recipient's account that they must know about.",
    schema={
        "type": "object",
        "properties": {
            "title": {"type": "string", "minLength": 1, "maxLength": 200},
            "message": {"type": "string", "minLength": 1, "maxLength": 2000},
            "ip_address": {"type": "string", "maxLength": 64},
            "occurred_at": {"type": "string", "format": "date-time"},
        },
        "required": ["title", "message", "occurred_at"],
        "additionalProperties": False,
    },
    example={"title": "New sign-in to your account",
             "message": "Someone signed in from a new device.", "ip_address": "203.0.113.7",
             "occurred_at": "2026-11-28T09:00:00Z"},
))

COMMENT_ADDED = register_template(NotificationTemplate(
    name="comment_added", category=COMMENTS.name, channels=("email", "in_app"),
    description="A comment in a thread the recipient follows. By email, at most one message "
    "per recipient and thread per 10 minutes, listing every comment of the window.",
    schema={
        "type": "object",
        "properties": {
            "thread_id": {"type": "string", "minLength": 1, "maxLength": 100},
            "thread_title": {"type": "string", "minLength": 1, "maxLength": 200},
            "author": {"type": "string", "minLength": 1, "maxLength": 200},
            "excerpt": {"type": "string", "maxLength": 1000},
            "url": {"type": "string", "format": "uri", "maxLength": 2000},
        },
        "required": ["thread_id", "thread_title", "author", "excerpt"],
        "additionalProperties": False,
    },
    example={"thread_id": "t-42", "thread_title": "Launch plan", "author": "Ada",
             "excerpt": "Looks good to me.", "url": "https://app.example.com/threads/t-42"},
    digest=DigestRule(window_seconds=600, key="thread_id"),
))
