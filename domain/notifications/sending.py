"""Sending a notification: validate everything first, then write the notification, one
delivery per (recipient, channel) and their jobs in one transaction.

**Idempotent by default where it can be.** A client's `Idempotency-Key` replays the first
notification (same key and body: 200; another body: 409), as for events. A notification an
event's handler sends is unique on its source (`<event id>:<notifier>`), so the handler's job
run twice sends once, with no key to remember. A delivery is unique on (notification,
recipient, channel): nothing makes a second.

**Digests.** The email delivery of a template with a digest rule joins its recipient's open
digest (per template and digest key) and gets no job of its own; the first one opens the
digest and carries it: its job runs when the window closes and sends one email for every
delivery that joined. Concurrent sends cannot open two digests for one recipient: a partial
unique constraint allows one open digest per (template, key, recipient), an arrival takes
the open digest's row lock before joining, and the carrier closes the digest with an UPDATE
that waits for those locks, so every delivery that joined is in the email and none joins
after it left (tests/domain/notifications/test_digests.py, concurrent publishers).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from domain.access.models import ApiKey
from domain.common.errors import Conflict, ValidationFailed
from domain.common.fastpaths import insert_rows_together
from domain.jobs.models import Job
from domain.jobs.services import job_build, jobs_add, jobs_inserted
from domain.notifications.catalogue import MissingVariable, NotificationTemplate, get_template
from domain.notifications.kinds import EMAIL_DELIVERY, INBOX_CHUNK, INBOX_DELIVERY
from domain.notifications.models import (
    Channel,
    Delivery,
    DeliveryStatus,
    Digest,
    DigestState,
    Notification,
)

NO_ADDRESS = "the recipient has no email address"
RECIPIENT_ID_MAX_LENGTH = Delivery._meta.get_field("recipient_id").max_length


@dataclass(frozen=True)
class Recipient:
    id: str
    email: str = ""


@dataclass(frozen=True)
class NotificationDraft:
    template: NotificationTemplate
    context: dict
    recipients: list[Recipient]
    channels: tuple[str, ...]

    @property
    def request_hash(self) -> str:
        body = {"template": self.template.name, "context": self.context,
                "channels": list(self.channels),
                "recipients": [[r.id, r.email] for r in self.recipients]}
        return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True)
class SendResult:
    notification: Notification
    deliveries: list[Delivery]
    created: bool  # False: an idempotent replay


def notification_validate(*, template: str, context: Any, recipients: list[dict],
                          channels: list[str] | None = None) -> NotificationDraft:
    """Everything a send can be refused for, before anything is written: the template, the
    channels it supports, every recipient, the context against the template's schema, and a
    rendering of every part (a variable the context lacks is 422 missing_variable here, not a
    retry loop in a worker)."""
    found = get_template(template)
    chosen = tuple(dict.fromkeys(channels)) if channels else found.channels
    unsupported = [c for c in chosen if c not in found.channels]
    if unsupported:
        raise ValidationFailed(
            f"Template {found.name!r} does not support {', '.join(unsupported)}.",
            code="unsupported_channel",
            details={"channels": unsupported, "supported": list(found.channels)})
    people = _recipients(recipients)
    if not isinstance(context, dict):
        raise ValidationFailed("The context must be a JSON object.", code="invalid_context")
    errors = found.validate_context(context)
    if errors:
        raise ValidationFailed(f"The context does not match template {found.name!r}'s schema.",
                               code="invalid_context", details={"errors": errors})
    first = people[0]
    try:
        found.render(context, recipient={"id": first.id, "email": first.email},
                     extra=_extra_example())
    except MissingVariable as exc:
        raise ValidationFailed(str(exc), code="missing_variable",
                               details={"variable": exc.variable, "part": exc.part}) from None
    return NotificationDraft(template=found, context=context, recipients=people,
                             channels=chosen)


def _extra_example() -> dict:
    return {"unsubscribe_url": ""}


def _recipients(recipients: list[dict]) -> list[Recipient]:
    limit = settings.NOTIFICATIONS_MAX_RECIPIENTS
    if not recipients:
        raise ValidationFailed("Give at least one recipient.", code="no_recipients")
    if len(recipients) > limit:
        raise ValidationFailed(f"A notification goes to at most {limit} recipients.",
                               code="too_many_recipients",
                               details={"limit": limit, "received": len(recipients)})
    people: list[Recipient] = []
    seen: dict[str, int] = {}
    errors: dict[str, Any] = {}
    for index, item in enumerate(recipients):
        problem = _recipient_problem(item)
        if problem:
            errors[str(index)] = {"code": "invalid_recipient", "message": problem}
            continue
        rid, email = str(item["id"]), item.get("email") or ""
        if rid in seen:
            errors[str(index)] = {"code": "duplicate_recipient",
                                  "message": f"Recipient {rid!r} is also number {seen[rid]}."}
            continue
        seen[rid] = index
        if email:
            try:
                if not isinstance(email, str):
                    raise DjangoValidationError("not a string")
                validate_email(email)
                if email.rpartition("@")[2].startswith("["):
                    # A domain literal (a@[10.0.0.5]) would have the mail relay connect to
                    # an address of the caller's choosing, internal ones included.
                    raise DjangoValidationError("an address literal")
            except DjangoValidationError:
                errors[str(index)] = {"code": "invalid_email",
                                      "message": f"{email!r} is not an email address."}
                continue
        people.append(Recipient(id=rid, email=email))
    if errors:
        raise ValidationFailed(f"{len(errors)} of {len(recipients)} recipients are invalid; "
                               "nothing was sent.", code="invalid_recipients",
                               details={"recipients": errors})
    return people


def _recipient_problem(item: Any) -> str:
    """What makes a recipient unusable, or "": every delivery, inbox item and preference is
    keyed by the id, so it must be text (a number is taken as its text) that fits the column;
    `str()` of anything else made a recipient "None" or "", and a longer one failed the
    INSERT."""
    if not isinstance(item, dict):
        return "A recipient is an object with an id and, optionally, an email."
    rid = item.get("id")
    if isinstance(rid, bool) or not isinstance(rid, str | int) or not str(rid):
        return "A recipient needs an id: a non-empty string."
    if len(str(rid)) > RECIPIENT_ID_MAX_LENGTH:
        return f"A recipient id has at most {RECIPIENT_ID_MAX_LENGTH} characters."
    return ""


def notification_send(*, draft: NotificationDraft, api_key: ApiKey | None = None,
                      idempotency_key: str | None = None, correlation_id: str = "",
                      event_id=None, source: str | None = None) -> SendResult:
    """Write the notification, its deliveries and their jobs; the jobs go to the broker
    after the commit. A replay (same Idempotency-Key, or the same source) answers the first
    notification as it is now."""
    now = timezone.now()
    notification = Notification(
        template=draft.template.name, category=draft.template.category,
        channels=list(draft.channels), context=draft.context,
        recipients_count=len(draft.recipients), api_key=api_key,
        idempotency_key=idempotency_key, request_hash=draft.request_hash,
        event_id=event_id, source=source, correlation_id=correlation_id, created_at=now)
    try:
        with transaction.atomic():
            # Alone first: a replay's unique violation comes before any other row is built.
            notification.save(force_insert=True)
            deliveries, jobs = _deliveries(notification, draft, now)
            if not insert_rows_together([(Delivery, deliveries), (Job, jobs)]):
                Delivery.objects.bulk_create(deliveries)
                jobs_add(jobs=jobs)
            else:
                jobs_inserted(jobs=jobs)
    except IntegrityError:
        existing = _existing(api_key=api_key, idempotency_key=idempotency_key, source=source)
        if existing is None:
            raise
        if idempotency_key and existing.request_hash != draft.request_hash:
            raise Conflict("This Idempotency-Key was already used with a different request "
                           "body.", code="idempotency_key_reused",
                           details={"notification": str(existing.pk)}) from None
        return SendResult(notification=existing, created=False,
                          deliveries=list(existing.deliveries.order_by("created_at", "id")))
    return SendResult(notification=notification, deliveries=deliveries, created=True)


def _existing(*, api_key, idempotency_key, source) -> Notification | None:
    if source:
        return Notification.objects.filter(source=source).first()
    if idempotency_key:
        return Notification.objects.filter(api_key=api_key,
                                           idempotency_key=idempotency_key).first()
    return None


def _deliveries(notification: Notification, draft: NotificationDraft,
                now: datetime) -> tuple[list[Delivery], list[Job]]:
    deliveries: list[Delivery] = []
    jobs: list[Job] = []
    digest_wanted: list[Delivery] = []
    tick = now
    for recipient in draft.recipients:
        for channel in draft.channels:
            tick += timedelta(microseconds=1)  # the request's order, in every listing
            delivery = Delivery(
                id=uuid.uuid4(), channel=channel, notification_id=notification.pk,
                recipient_id=recipient.id, api_key_id=notification.api_key_id,
                address=recipient.email if channel == Channel.EMAIL else "", created_at=tick)
            deliveries.append(delivery)
            if channel == Channel.EMAIL and not recipient.email:
                delivery.status, delivery.reason = DeliveryStatus.SKIPPED, NO_ADDRESS
            elif channel == Channel.EMAIL and draft.template.digest is not None:
                digest_wanted.append(delivery)
            elif channel == Channel.EMAIL:
                jobs.append(_job(delivery, notification, tick))
    in_app = [d for d in deliveries if d.channel == Channel.IN_APP]
    for start in range(0, len(in_app), INBOX_CHUNK):
        jobs.append(_chunk_job(in_app[start:start + INBOX_CHUNK], notification))
    if digest_wanted:
        for delivery, run_at in _join_digests(draft, digest_wanted, now):
            job = _job(delivery, notification, delivery.created_at)
            job.run_at = run_at
            jobs.append(job)
    return deliveries, jobs


def _job(delivery: Delivery, notification: Notification, created_at: datetime) -> Job:
    """An email delivery's own job: each recipient's server answers for itself, and each
    delivery retries on its own schedule."""
    job = job_build(kind=EMAIL_DELIVERY.name, params={"delivery": str(delivery.pk)},
                    created_at=created_at, correlation_id=notification.correlation_id)
    job.api_key_id = notification.api_key_id
    delivery.job_id = job.pk
    return job


def _chunk_job(deliveries: list[Delivery], notification: Notification) -> Job:
    """One job writes a chunk of in-app deliveries (kinds.INBOX_DELIVERY says why)."""
    job = job_build(kind=INBOX_DELIVERY.name,
                    params={"deliveries": [str(d.pk) for d in deliveries]},
                    created_at=deliveries[0].created_at,
                    correlation_id=notification.correlation_id)
    job.api_key_id = notification.api_key_id
    for delivery in deliveries:
        delivery.job_id = job.pk
    return job


def digest_window(template: NotificationTemplate) -> int:
    assert template.digest is not None
    return int(settings.NOTIFICATION_DIGEST_WINDOWS.get(template.name,
                                                         template.digest.window_seconds))


def _join_digests(draft: NotificationDraft, deliveries: list[Delivery],
                  now: datetime) -> list[tuple[Delivery, datetime]]:
    """Each delivery joins its recipient's open digest, or opens one and carries it: the
    carriers, with when their job runs. Runs in the send's transaction.

    One statement for every recipient: an INSERT of a new open digest each, whose conflict
    with an open one (the partial unique constraint) joins that one instead (DO UPDATE, which
    takes its row lock until the send commits, so the carrier's closing UPDATE waits for the
    join). Rows are taken in recipient order, so two sends to overlapping recipients wait for
    each other in the same order, and no send inserts while holding a lock another send's
    insert could be waiting behind (an insert, then a lock, then another insert for digests
    closed in between deadlocked against a concurrent send and the carrier, found in review).
    A digest the carrier closed has left the partial index: the INSERT opens the next one."""
    template = draft.template
    key = template.digest.key_for(draft.context)
    closes_at = now + timedelta(seconds=digest_window(template))
    owner = str(deliveries[0].api_key_id or "")
    ordered = sorted(deliveries, key=lambda d: (d.recipient_id, d.address))
    names = ["id", "template", "key", "recipient_id", "address", "owner", "state",
             "opened_at", "closes_at", "carrier_id", "items"]
    fields = [Digest._meta.get_field(name) for name in names]
    values: list[Any] = []
    for delivery in ordered:
        row = [uuid.uuid4(), template.name, key, delivery.recipient_id, delivery.address,
               owner, DigestState.OPEN.value, now, closes_at, delivery.pk, 1]
        values.extend(f.get_db_prep_save(v, connection) for f, v in zip(fields, row,
                                                                        strict=True))
    q = connection.ops.quote_name
    table = q(Digest._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({', '.join(q(n) for n in names)}) VALUES "  # noqa: S608 - the model's own names
            + ", ".join(["(" + ", ".join(["%s"] * len(names)) + ")"] * len(ordered))
            + f" ON CONFLICT ({q('template')}, {q('key')}, {q('recipient_id')}, {q('address')},"
            f" {q('owner')}) WHERE {q('state')} = 'open' "
            f"DO UPDATE SET {q('items')} = {table}.{q('items')} + 1 "
            f"RETURNING {q('id')}, {q('carrier_id')}, {q('recipient_id')}, {q('address')}",
            values)
        returned = {(rid, address): (uuid.UUID(str(digest_id)), uuid.UUID(str(carrier)))
                    for digest_id, carrier, rid, address in cursor.fetchall()}
    carriers: list[tuple[Delivery, datetime]] = []
    for delivery in ordered:
        delivery.digest_id, carrier = returned[(delivery.recipient_id, delivery.address)]
        if carrier == delivery.pk:
            carriers.append((delivery, closes_at))
    return carriers
