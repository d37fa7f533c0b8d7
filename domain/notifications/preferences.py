"""Recipients' preferences: per category and channel, yes unless they said no.

A category registered as `required` (security notices) is sent whatever a recipient said, and
cannot be set to no. The senders ask once per batch (`opted_out`), when a delivery's turn
comes, so a change made while a delivery waits for a retry or a digest is honoured.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.core import signing
from django.db import connection, transaction
from django.utils import timezone

from domain.common.errors import ValidationFailed
from domain.notifications.catalogue import categories, get_category
from domain.notifications.models import PEOPLE_CHANNELS, RecipientPreference

_UNSUBSCRIBE_SALT = "conveyor.notifications.unsubscribe"


def opted_out(wanted: Iterable[tuple[str, str, str]]) -> set[tuple[str, str, str]]:
    """Of the (recipient, category, channel) asked, those the recipient said no to and whose
    category is not required: one query."""
    wanted = {w for w in wanted if not get_category(w[1]).required}
    if not wanted:
        return set()
    rows = RecipientPreference.objects.filter(
        recipient_id__in={w[0] for w in wanted}, enabled=False).values_list(
        "recipient_id", "category", "channel")
    return {row for row in rows if row in wanted}


def opted_out_reason(category: str, channel: str) -> str:
    return f"the recipient opted out of {category} notifications by {channel}"


def preferences_get(*, recipient_id: str) -> dict:
    saved = {(p.category, p.channel): p.enabled
             for p in RecipientPreference.objects.filter(recipient_id=recipient_id)}
    return {
        "recipient_id": recipient_id,
        "categories": [
            {"name": c.name, "description": c.description, "required": c.required,
             "channels": {str(ch): True if c.required else saved.get((c.name, str(ch)), True)
                          for ch in PEOPLE_CHANNELS}}
            for c in categories()
        ],
    }


def preferences_put(*, recipient_id: str, choices: dict[str, dict[str, bool]]) -> dict:
    """Replace the recipient's preferences: a category or channel not named is yes. Every
    choice is checked before any is written."""
    known = {c.name: c for c in categories()}
    channels = {str(ch) for ch in PEOPLE_CHANNELS}
    if not isinstance(choices, dict):
        raise ValidationFailed("Give an object of categories, each an object of channels.",
                               code="invalid_preferences")
    errors: dict[str, str] = {}
    for name, per_channel in choices.items():
        category = known.get(name)
        if category is None:
            errors[name] = f"unknown category; known: {', '.join(sorted(known))}"
            continue
        if not isinstance(per_channel, dict):
            errors[name] = "give an object of channels, each true or false"
            continue
        for channel, enabled in per_channel.items():
            if channel not in channels:
                errors[f"{name}.{channel}"] = ("unknown channel; known: "
                                               + ", ".join(sorted(channels)))
            elif not isinstance(enabled, bool):
                # Not left to the BooleanField: "no" raised Django's ValidationError and null
                # the NOT NULL constraint, both 500s.
                errors[f"{name}.{channel}"] = "true or false"
            elif category.required and not enabled:
                errors[f"{name}.{channel}"] = "a required category: it cannot be turned off"
    if errors:
        code = ("required_category" if all("required" in e for e in errors.values())
                else "invalid_preferences")
        raise ValidationFailed("These preferences cannot be saved; nothing was changed.",
                               code=code, details={"preferences": errors})
    now = timezone.now()
    with transaction.atomic():
        _lock_recipient(recipient_id)
        RecipientPreference.objects.filter(recipient_id=recipient_id).delete()
        RecipientPreference.objects.bulk_create([
            RecipientPreference(recipient_id=recipient_id, category=name, channel=channel,
                                enabled=enabled, updated_at=now)
            for name, per_channel in choices.items() for channel, enabled in per_channel.items()
        ])
    return preferences_get(recipient_id=recipient_id)


def _lock_recipient(recipient_id: str) -> None:
    """Serialize the changes of one recipient's preferences (PostgreSQL: a transaction-level
    advisory lock on the id's hash). Two PUTs at once both deleted nothing under READ
    COMMITTED, and the second insert hit the unique constraint (a 500, found in review).
    SQLite runs one writing transaction at a time already."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))",
                           [f"conveyor.preferences:{recipient_id}"])


def preference_set(*, recipient_id: str, category: str, channel: str, enabled: bool) -> None:
    """One choice, leaving the others (the one-click unsubscribe)."""
    if get_category(category).required and not enabled:
        raise ValidationFailed("A required category cannot be turned off.",
                               code="required_category")
    with transaction.atomic():
        _lock_recipient(recipient_id)
        RecipientPreference.objects.update_or_create(
            recipient_id=recipient_id, category=category, channel=channel,
            defaults={"enabled": enabled, "updated_at": timezone.now()})


def unsubscribe_token(*, recipient_id: str, category: str) -> str:
    """What an email's List-Unsubscribe link carries: signed with SECRET_KEY, so it opts out
    exactly that recipient of exactly that category by email, and nothing else."""
    return signing.dumps({"r": recipient_id, "c": category}, salt=_UNSUBSCRIBE_SALT,
                         compress=True)


def unsubscribe_read(token: str) -> tuple[str, str]:
    try:
        data = signing.loads(token, salt=_UNSUBSCRIBE_SALT)
        return str(data["r"]), str(data["c"])
    except (signing.BadSignature, KeyError, TypeError) as exc:
        raise ValidationFailed("This unsubscribe link is not valid.",
                               code="invalid_unsubscribe_token") from exc
