"""Sending email deliveries: a message's jobs (up to 100) over one SMTP connection.

Each delivery is checked first (gone, superseded by a newer job, delivered already, skipped,
opted out), rendered for its recipient (a digest's carrier renders every delivery that joined
its digest), and sent with Django's email backend (EMAIL_URL). Every message has its own
outcome on the shared connection:

- accepted (2xx): the delivery is `delivered`; the attempt keeps the server's reply;
- a 4xx reply, a refused or dropped connection, a timeout: a transient error, retried by the
  job's `email` retry policy; the connection is opened again for the next message;
- a 5xx reply: that delivery fails for good, and the others go on.

**The window.** What the SMTP server accepted and what our rows say can disagree in one
window only: from the server's 250 to an email's DATA until the record of that email
commits. While a batch sends, what it sent is recorded every RECORD_EVERY_SECONDS (0.2 s)
and at its end, so the window is that at most, plus one send and the record's own statement
(bench emails: p50 94-97 ms, max 385-450 ms). One send is quick against a healthy server; a
server that stops answering holds it up to EMAIL_TIMEOUT per SMTP command, and after two
failures in a row the rest of the batch is not tried, so a silent server stretches the
window to about twice EMAIL_TIMEOUT at worst. A
worker killed in it leaves the job `running`; the orphan rescue runs it again and the
recipient gets the email (and any other of its batch accepted since the last record) a
second time, with the same Message-ID (`<delivery id>@EMAIL_MESSAGE_ID_DOMAIN`), which mail
systems use to recognise a copy; the rows then hold one attempt, the second send's
(tests/faults/test_email_faults.py). A 250 that never reaches us (the connection drops or
times out while we wait for it) is the same window: the attempt is recorded as a transient
failure and the email sent again. Outside that window a delivery is sent once: a delivered
one is never sent again, whoever asks (a job run again after the record finds it delivered
and sends nothing).
"""

from __future__ import annotations

import contextlib
import smtplib
import socket
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from domain.common.errors import PermanentError, TransientError
from domain.jobs.lifecycle import Deferred, will_retry
from domain.jobs.models import Job
from domain.notifications import fastpaths, preferences
from domain.notifications.catalogue import (
    MissingVariable,
    UnknownTemplate,
    get_category,
    get_template,
)
from domain.notifications.deliveries import settled_answer
from domain.notifications.metrics import count_attempts_on_commit
from domain.notifications.models import (
    AttemptResult,
    Channel,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Digest,
    DigestState,
)

WORKER = socket.gethostname()
# The longest an email the server accepted waits for its record while its batch goes on
# sending (the window of the module's docstring). Recording once per batch of 100 left the
# first emails of a batch unrecorded until the last one was sent: bench emails measured
# p50 1.0-1.7 s, max 3.4-6.1 s from acceptance to the record on a loaded 2-core machine.
RECORD_EVERY_SECONDS = 0.2


@dataclass
class _Outgoing:
    index: int
    job: Job
    delivery: Delivery
    members: list[Delivery]  # every delivery this email carries (itself, or its digest's)
    message: EmailMultiAlternatives | None = None
    error: BaseException | None = None
    started_at: datetime | None = None
    latency_ms: int | None = None
    reply: tuple[int | None, str] = (None, "")
    sent: bool = False
    not_tried: bool = False  # the server was unreachable twice in a row before its turn
    extra: dict = field(default_factory=dict)


def message_id(delivery: Delivery) -> str:
    return f"<{delivery.pk}@{settings.EMAIL_MESSAGE_ID_DOMAIN}>"


def unsubscribe_url(recipient_id: str, category: str) -> str:
    if get_category(category).required or not settings.NOTIFICATIONS_PUBLIC_URL:
        return ""
    token = preferences.unsubscribe_token(recipient_id=recipient_id, category=category)
    return f"{settings.NOTIFICATIONS_PUBLIC_URL.rstrip('/')}/api/v1/unsubscribe/{token}"


def emails_deliver(jobs: list[Job]) -> list[Any]:
    """Send the jobs' email deliveries over one connection; record every attempt."""
    answers: list[Any] = [None] * len(jobs)
    wanted = {job.pk: str(job.params.get("delivery", "")) for job in jobs}
    found = {str(d.pk): d for d in Delivery.objects.select_related("notification")
             .filter(pk__in=[w for w in wanted.values() if w])}
    candidates: list[tuple[int, Job, Delivery]] = []
    for index, job in enumerate(jobs):
        delivery = found.get(wanted[job.pk])
        answer = _before_send(job, delivery)
        if answer is not None:
            answers[index] = answer
        else:
            candidates.append((index, job, delivery))
    refused = preferences.opted_out(
        (d.recipient_id, d.notification.category, Channel.EMAIL) for _, _, d in candidates)
    rendered_for: dict[Any, Any] = {}
    outgoing: list[_Outgoing] = []
    skipped: dict[str, list[Delivery]] = defaultdict(list)
    for index, job, delivery in candidates:
        members = _members(delivery)
        if (delivery.recipient_id, delivery.notification.category, Channel.EMAIL) in refused:
            reason = preferences.opted_out_reason(delivery.notification.category, "email")
            skipped[reason].extend(members)
            answers[index] = {"delivery": DeliveryStatus.SKIPPED, "reason": reason}
            continue
        item = _Outgoing(index, job, delivery, members)
        try:
            item.message = _build(delivery, members, rendered_for)
        except (MissingVariable, UnknownTemplate) as exc:
            # Never a retry loop: the stored context or the code must change first.
            item.error = PermanentError(str(exc))
        outgoing.append(item)
    for reason, deliveries in skipped.items():
        Delivery.objects.filter(pk__in=[d.pk for d in deliveries]).update(
            status=DeliveryStatus.SKIPPED, reason=reason, next_attempt_at=None)
    if outgoing:
        Delivery.objects.filter(pk__in=[m.pk for item in outgoing for m in item.members]
                                ).update(status=DeliveryStatus.SENDING)
        _send([item for item in outgoing if item.message is not None],
               record=lambda done: _record(done, answers))
        _record([item for item in outgoing if item.message is None], answers)
    return answers


def _before_send(job: Job, delivery: Delivery | None) -> Any:
    settled = settled_answer(job, delivery, gone="its notification was deleted")
    if settled is not None:
        return settled
    if delivery.status == DeliveryStatus.SKIPPED:
        return {"delivery": DeliveryStatus.SKIPPED, "reason": delivery.reason}
    return None


def _members(carrier: Delivery) -> list[Delivery]:
    """The deliveries one email carries: the delivery itself, or, for a digest's carrier,
    every delivery that joined the digest, oldest first. Closing the digest waits for the
    row locks of sends still joining it; after it, nothing joins."""
    if carrier.digest_id is None:
        return [carrier]
    with transaction.atomic():
        Digest.objects.filter(pk=carrier.digest_id, state=DigestState.OPEN).update(
            state=DigestState.CLOSED)
    members = list(Delivery.objects.select_related("notification").filter(
        digest_id=carrier.digest_id).exclude(status__in=[DeliveryStatus.DELIVERED,
                                                        DeliveryStatus.SKIPPED])
        .order_by("created_at", "id"))
    if not any(m.pk == carrier.pk for m in members):
        members.insert(0, carrier)
    return members


def _build(carrier: Delivery, members: list[Delivery],
           rendered_for: dict[Any, Any]) -> EmailMultiAlternatives:
    notification = carrier.notification
    template = get_template(notification.template)
    unsubscribe = unsubscribe_url(carrier.recipient_id, notification.category)
    # A template that names no recipient renders the same for each: once per notification
    # in a batch (a digest's items are its own).
    shared = not template.personal and carrier.digest_id is None
    rendered = rendered_for.get(notification.pk) if shared else None
    if rendered is None:
        rendered = template.render(
            notification.context,
            recipient={"id": carrier.recipient_id, "email": carrier.address},
            items=[m.notification.context for m in members] if carrier.digest_id else None,
            extra={"unsubscribe_url": unsubscribe})
        if shared:
            rendered_for[notification.pk] = rendered
    headers = {"Message-ID": message_id(carrier),
               "X-Conveyor-Delivery": str(carrier.pk),
               "X-Conveyor-Template": template.name}
    if unsubscribe:
        headers["List-Unsubscribe"] = f"<{unsubscribe}>"
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message = EmailMultiAlternatives(subject=rendered.subject, body=rendered.text,
                                     from_email=settings.DEFAULT_FROM_EMAIL,
                                     to=[carrier.address], headers=headers)
    if rendered.html is not None:
        message.attach_alternative(rendered.html, "text/html")
    return message


def _send(items: list[_Outgoing], record: Callable[[list[_Outgoing]], None]) -> None:
    """Send each message on one connection, opened again after a connection failure, and
    `record` what was sent at least every RECORD_EVERY_SECONDS: an email the server accepted
    stays unrecorded that long at most (plus one send), not until the batch's last email."""
    if not items:
        return
    connection = get_connection(fail_silently=False)
    opened = False
    done: list[_Outgoing] = []
    recorded_at = time.monotonic()
    unreachable = 0  # connection failures in a row
    try:
        for item in items:
            if unreachable >= 2:
                # The server did not answer twice in a row (refused, or silent until
                # EMAIL_TIMEOUT): the rest of the batch waits for a later turn without
                # using an attempt, instead of paying the timeout once per message (100 x
                # 15 s ran past the task's time limit, found in review).
                item.not_tried = True
                done.append(item)
                continue
            item.started_at = timezone.now()
            start = time.perf_counter()
            try:
                if not opened:
                    connection.open()
                    opened = True
                connection.last_reply = None
                connection.send_messages([item.message])
                item.sent = True
                reply = getattr(connection, "last_reply", None)
                if reply:
                    item.reply = (reply[0], _text(reply[1]))
            except smtplib.SMTPRecipientsRefused as exc:
                code, text = next(iter(exc.recipients.values()))
                item.error, item.reply = _by_code(code, text), (code, _text(text))
                if code == 421:  # smtplib closed it: the next message must open another
                    opened = _close(connection)
            except smtplib.SMTPResponseException as exc:
                item.error, item.reply = (_by_code(exc.smtp_code, exc.smtp_error),
                                          (exc.smtp_code, _text(exc.smtp_error)))
                if exc.smtp_code in (421,):  # the server is closing the connection
                    opened = _close(connection)
            except (smtplib.SMTPException, OSError) as exc:
                item.error = TransientError(f"{type(exc).__name__}: {exc}")
                opened = _close(connection)
                unreachable += 1
            else:
                unreachable = 0
            if item.reply[0] is not None:
                unreachable = 0  # the server answered, even if it refused
            item.latency_ms = round((time.perf_counter() - start) * 1000)
            done.append(item)
            if time.monotonic() - recorded_at >= RECORD_EVERY_SECONDS:
                record(done)
                done, recorded_at = [], time.monotonic()
        record(done)
    finally:
        if opened:
            _close(connection)


def _close(connection) -> bool:
    with contextlib.suppress(Exception):  # closing a connection that already broke
        connection.close()
    return False


def _text(raw: Any) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return text[: settings.WEBHOOK_RESPONSE_EXCERPT_BYTES]


def _by_code(code: int, text: Any) -> Exception:
    message = f"SMTP {code} {_text(text)}"
    return TransientError(message) if 400 <= code < 500 else PermanentError(message)


def _record(items: list[_Outgoing], answers: list[Any]) -> None:
    if not items:
        return
    now = timezone.now()
    waiting = [item for item in items if item.not_tried]
    items = [item for item in items if not item.not_tried]
    if waiting:
        countdown = settings.EMAIL_RETRY_SCHEDULE[0]
        Delivery.objects.filter(pk__in=[m.pk for item in waiting for m in item.members]).update(
            status=DeliveryStatus.PENDING, next_attempt_at=now + timedelta(seconds=countdown))
        for item in waiting:
            answers[item.index] = Deferred(countdown, "the SMTP server is unreachable; not "
                                                      "tried in this turn")
    attempts: list[DeliveryAttempt] = []
    delivered: list[Any] = []
    failed: list[tuple[Delivery, BaseException, bool]] = []
    for item in items:
        if item.sent:
            outcome = AttemptResult.DELIVERED
            delivered.extend(m.pk for m in item.members)
            answers[item.index] = {"delivery": DeliveryStatus.DELIVERED,
                                   "smtp_code": item.reply[0], "latency_ms": item.latency_ms,
                                   "emails": 1, "deliveries": len(item.members)}
        else:
            retry = will_retry(job=item.job, exc=item.error)
            outcome = AttemptResult.FAILED if retry else AttemptResult.GAVE_UP
            failed.extend((m, item.error, retry) for m in item.members)
            answers[item.index] = item.error
        for member in item.members:
            attempts.append(DeliveryAttempt(
                delivery_id=member.pk, number=member.attempts + 1,
                at=item.started_at or now, outcome=outcome, smtp_code=item.reply[0],
                latency_ms=item.latency_ms, response_excerpt=item.reply[1],
                error_type="" if item.sent else type(item.error).__name__,
                error_message="" if item.sent else str(item.error), worker=WORKER))
    # One transaction: a worker killed before it commits leaves nothing recorded (the
    # window the module's docstring names).
    with transaction.atomic():
        fastpaths.attempts_record(attempts=attempts, delivered=delivered, now=now)
        for status, group in _by_status(failed).items():
            for (error_type, error_message), deliveries in group.items():
                Delivery.objects.filter(pk__in=[d.pk for d in deliveries]).update(
                    status=status, last_attempt_at=now, attempts=F("attempts") + 1,
                    last_error={"type": error_type, "message": error_message})
        count_attempts_on_commit(Channel.EMAIL, attempts)


def _by_status(failed: list[tuple[Delivery, BaseException, bool]]) -> dict:
    grouped: dict[str, dict[tuple[str, str], list[Delivery]]] = defaultdict(
        lambda: defaultdict(list))
    for delivery, error, retry in failed:
        status = DeliveryStatus.RETRYING if retry else DeliveryStatus.FAILED
        grouped[status][(type(error).__name__, str(error))].append(delivery)
    return grouped
