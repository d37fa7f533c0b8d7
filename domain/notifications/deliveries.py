"""The two bodies of webhook work: fan an event out to its endpoints, and send deliveries.

Both take a message's jobs together (workers/base.py, `jobs_task`) and answer one outcome per
job, so a batch of events is fanned out, and a batch of deliveries sent, with a few statements
whatever its size.

**Effects once on our side.** A delivery is unique on (message, endpoint); the fan-out makes
only the deliveries that do not exist yet, so running it twice adds nothing. Sending checks
the delivery first: one already `delivered`, or carried by a newer job (a recovery or a
resume made one), is not sent again. What remains is the window between the receiver's
answer and our record of it: a worker killed there leaves the job `running`, the orphan
rescue runs it again, and the receiver gets the same message twice, with the same
`webhook-id` (at least once to the receiver; README "Webhooks for receivers").
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
from collections import defaultdict
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import close_old_connections, transaction
from django.db.models import F
from django.utils import timezone

from domain.access.models import Scopes
from domain.common.errors import PermanentError
from domain.common.fastpaths import insert_rows_together
from domain.events.models import Event
from domain.jobs.lifecycle import Deferred, will_retry
from domain.jobs.models import Job
from domain.jobs.services import job_build, jobs_add, jobs_cancel_selected, jobs_inserted
from domain.notifications import fastpaths, health
from domain.notifications.kinds import WEBHOOK_DELIVERY
from domain.notifications.metrics import count_attempts_on_commit
from domain.notifications.models import (
    AttemptResult,
    Channel,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    EndpointState,
    Message,
    WebhookEndpoint,
)
from domain.notifications.sender import EndpointGone, Send, SendResult, send_all, send_each
from domain.notifications.signing import message_body, signed_headers

logger = logging.getLogger(__name__)

WORKER = socket.gethostname()


def message_id_for_event(event_id) -> str:
    """An event's message id, fixed by the event: every delivery and retry of it says the
    same `webhook-id`."""
    return f"msg_{event_id.hex if hasattr(event_id, 'hex') else str(event_id).replace('-', '')}"


# --- Fan-out ---------------------------------------------------------------------------------

def webhooks_fan_out(jobs: list[Job]) -> list[Any]:
    """For each job's event: its message, and one delivery (with its job) per endpoint that
    subscribes to its type, existed when it was published and whose owner may see it (the
    publisher's own endpoints, and those of admin keys). A disabled endpoint's delivery is
    made `parked`, to be sent when it is enabled again."""
    events = {e.pk: e for e in Event.objects.filter(pk__in=[j.event_id for j in jobs if j.event_id])
              .only("id", "type", "payload", "occurred_at", "created_at", "correlation_id",
                    "api_key_id")}
    endpoints = list(WebhookEndpoint.objects.select_related("api_key"))
    now = timezone.now()
    answers: list[Any] = []
    with transaction.atomic():
        known = set(Message.objects.filter(event_id__in=list(events)).values_list("event_id",
                                                                                flat=True))
        messages = {e.pk: Message(id=message_id_for_event(e.pk), event_id=e.pk, type=e.type,
                                  data=e.payload, timestamp=e.occurred_at, created_at=now)
                    for e in events.values()}
        new_messages = [m for eid, m in messages.items() if eid not in known]
        existing = set(Delivery.objects.filter(
            message_id__in=[m.id for m in messages.values()]).values_list("message_id",
                                                                          "endpoint_id"))
        deliveries: list[Delivery] = []
        delivery_jobs: list[Job] = []
        for job in jobs:
            event = events.get(job.event_id)
            if event is None:
                answers.append(PermanentError("the job's event no longer exists"))
                continue
            message = messages[event.pk]
            made = 0
            for endpoint in endpoints:
                if (not endpoint.subscribes_to(event.type) or endpoint.created_at > event.created_at
                        or not _may_see(endpoint, event)
                        or (message.id, endpoint.pk) in existing):
                    continue
                delivery = Delivery(message_id=message.id, endpoint_id=endpoint.pk,
                                    created_at=now, api_key_id=endpoint.api_key_id,
                                    status=(DeliveryStatus.PARKED
                                            if endpoint.state == EndpointState.DISABLED
                                            else DeliveryStatus.PENDING))
                if delivery.status == DeliveryStatus.PENDING:
                    delivery_job = _delivery_job(delivery, now, event.correlation_id)
                    delivery_jobs.append(delivery_job)
                deliveries.append(delivery)
                made += 1
            answers.append({"message": message.id, "deliveries": made})
        _insert(new_messages, deliveries, delivery_jobs)
    return answers


def _insert(messages: list[Message], deliveries: list[Delivery], jobs: list[Job]) -> None:
    """The fan-out's rows in one statement on PostgreSQL (messages, their deliveries and the
    deliveries' jobs, as unnest arrays); the jobs go to the broker after the commit. Django's
    bulk_create of the deliveries alone, a placeholder and a field conversion per value, was
    13% of a notifications worker's CPU under the webhooks bench."""
    if insert_rows_together([(Message, messages), (Delivery, deliveries), (Job, jobs)]):
        jobs_inserted(jobs=jobs)
        return
    Message.objects.bulk_create(messages)
    Delivery.objects.bulk_create(deliveries)
    jobs_add(jobs=jobs)


def _may_see(endpoint: WebhookEndpoint, event: Event) -> bool:
    """Whether the endpoint's owner may see the event, by the rule of every read
    (domain/access/selectors.visible_to): a key sees the events it published; an `admin` key,
    or none (an endpoint an operator made), sees every key's. A webhook is a read pushed to
    the owner's URL: another key's events must not reach it."""
    owner = endpoint.api_key
    return owner is None or Scopes.ADMIN in owner.scopes or owner.pk == event.api_key_id


def _delivery_job(delivery: Delivery, now: datetime, correlation_id: str = "") -> Job:
    job = job_build(kind=WEBHOOK_DELIVERY.name, params={"delivery": str(delivery.pk)},
                    created_at=now, api_key=None, correlation_id=correlation_id)
    job.api_key_id = delivery.api_key_id
    delivery.job_id = job.pk
    return job


def deliveries_requeue(*, deliveries: list[Delivery]) -> int:
    """Send these deliveries again with new jobs, oldest first (a resume, a recovery): each
    becomes `pending`; its earlier job, if still waiting, is cancelled, and would find itself
    superseded anyway. Called inside the caller's transaction."""
    deliveries = sorted(deliveries, key=lambda d: (d.created_at, str(d.pk)))
    old_jobs = [d.job_id for d in deliveries if d.job_id]
    now = timezone.now()
    new_jobs = []
    for delivery in deliveries:
        job = _delivery_job(delivery, now)
        new_jobs.append(job)
        now += timedelta(microseconds=1)  # keeps their order in the jobs' listing
        job.created_at = now
    if old_jobs:
        jobs_cancel_selected(ids=old_jobs)
    jobs_add(jobs=new_jobs)
    for delivery in deliveries:
        delivery.status, delivery.next_attempt_at = DeliveryStatus.PENDING, None
    Delivery.objects.bulk_update(deliveries, ["status", "job_id", "next_attempt_at"],
                                 batch_size=1000)
    return len(deliveries)


# --- Sending ---------------------------------------------------------------------------------

def webhooks_deliver(jobs: list[Job]) -> list[Any]:
    """Send the jobs' deliveries, concurrently, and record every attempt."""
    now = timezone.now()
    wanted = {job.pk: str(job.params.get("delivery", "")) for job in jobs}
    found = {str(d.pk): d for d in Delivery.objects.select_related("message", "endpoint")
             .filter(pk__in=[w for w in wanted.values() if w])}
    answers: list[Any] = [None] * len(jobs)
    parked: list[Delivery] = []
    skipped: list[Delivery] = []
    waiting: dict[Any, list[Delivery]] = defaultdict(list)
    to_send: list[tuple[int, Job, Delivery]] = []
    for index, job in enumerate(jobs):
        delivery = found.get(wanted[job.pk])
        answer = _before_send(job, delivery, now)
        if answer is not None:
            answers[index] = answer
            if isinstance(answer, Deferred):
                waiting[answer.countdown].append(delivery)
            elif answer.get("delivery") == DeliveryStatus.PARKED:
                parked.append(delivery)
            elif answer.get("delivery") == DeliveryStatus.SKIPPED:
                skipped.append(delivery)
            continue
        to_send.append((index, job, delivery))
    _set_aside(parked, skipped, waiting, now)
    if not to_send:
        return answers
    Delivery.objects.filter(pk__in=[d.pk for _, _, d in to_send]).update(
        status=DeliveryStatus.SENDING)
    sending = send_each([_request(delivery) for _, _, delivery in to_send])
    futures.wait(sending, timeout=settings.WEBHOOK_BATCH_WAIT_SECONDS)
    if not all(f.done() for f in sending) and late.full():
        futures.wait(sending)  # too much is waiting on slow receivers already: wait here
    # One reading of which answers are in, for both sides: a send that completes while the
    # others are being recorded must go to `late`, not fall between the two (it was read
    # not done for the record, then done here: its job succeeded, its delivery stayed
    # `sending` with no attempt row, in the webhooks bench with two workers).
    answered = [f.done() for f in sending]
    done = [(item, f.result()) for item, f, in_time
            in zip(to_send, sending, answered, strict=True) if in_time]
    _record([item for item, _ in done], [result for _, result in done], answers)
    for item, sent, in_time in zip(to_send, sending, answered, strict=True):
        if not in_time:
            # A receiver still answering: the task moves on, and this delivery is recorded
            # (and its job settled by the worker) when its answer comes.
            answers[item[0]] = late.record_when_done(item, sent)
    return answers


class _Late:
    """Deliveries whose receiver answers after the batch's wait (WEBHOOK_BATCH_WAIT_SECONDS):
    each is recorded by a small pool of recording threads when its answer comes, so a slow
    receiver holds neither its batch's other deliveries nor the worker thread. At most
    WEBHOOK_MAX_IN_FLIGHT wait so in a process; past that a batch waits for its own answers
    (backpressure). At exit the process waits for them, up to the read timeout."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._pid = 0
        self._waiting: set[futures.Future] = set()
        atexit.register(self.drain)

    def full(self) -> bool:
        with self._lock:
            return len(self._waiting) >= settings.WEBHOOK_MAX_IN_FLIGHT

    def record_when_done(self, item: tuple[int, Job, Delivery],
                         sent: futures.Future) -> futures.Future:
        answer: futures.Future = futures.Future()
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                self._pool = ThreadPoolExecutor(max_workers=4,
                                                thread_name_prefix="webhook-recorder")
                self._pid, self._waiting = os.getpid(), set()
            pool = self._pool
            self._waiting.add(answer)
        answer.add_done_callback(self._forget)
        sent.add_done_callback(lambda _: pool.submit(self._record, item, sent, answer))
        return answer

    def _forget(self, answer: futures.Future) -> None:
        with self._lock:
            self._waiting.discard(answer)

    @staticmethod
    def _record(item: tuple[int, Job, Delivery], sent: futures.Future,
                answer: futures.Future) -> None:
        try:
            answers: list[Any] = [None]
            _record([(0, item[1], item[2])], [sent.result()], answers)
            answer.set_result(answers[0])
        except BaseException as exc:  # noqa: BLE001 - the job's failure: the worker decides
            answer.set_exception(exc)
        finally:
            close_old_connections()

    def drain(self) -> None:
        with self._lock:
            waiting = list(self._waiting) if self._pid == os.getpid() else []
        if waiting:
            futures.wait(waiting, timeout=settings.WEBHOOK_READ_TIMEOUT
                         + settings.WEBHOOK_CONNECT_TIMEOUT + 5)


late = _Late()


def settled_answer(job: Job, delivery: Delivery | None, *, gone: str) -> Any:
    """The job's answer when its delivery needs no send, whatever its channel: gone, carried
    by a newer job (a recovery or a resume made one), or delivered already (the job ran
    again after the record: effects once). None: go on."""
    if delivery is None:
        return {"skipped": f"the delivery no longer exists ({gone})"}
    if delivery.job_id != job.pk:
        return {"skipped": f"superseded: job {delivery.job_id} carries this delivery now"}
    if delivery.status == DeliveryStatus.DELIVERED:
        return {"delivery": DeliveryStatus.DELIVERED, "sent": False,
                "note": "delivered already; not sent again"}
    return None


def _before_send(job: Job, delivery: Delivery | None, now: datetime) -> Any:
    """None: send it. Otherwise the job's answer without a send."""
    settled = settled_answer(job, delivery, gone="its endpoint was deleted")
    if settled is not None:
        return settled
    endpoint = delivery.endpoint
    if endpoint.state == EndpointState.DISABLED:
        return {"delivery": DeliveryStatus.PARKED, "reason": "the endpoint is disabled"}
    if delivery.message.event_id and not endpoint.subscribes_to(delivery.message.type):
        return {"delivery": DeliveryStatus.SKIPPED,
                "reason": "the endpoint no longer subscribes to this event type"}
    wait = health.circuit_wait(endpoint, now)
    if wait is not None:
        return Deferred(max(int(wait + 0.999), 1), "the endpoint's circuit is open")
    return None


def _set_aside(parked: list[Delivery], skipped: list[Delivery],
               waiting: dict[Any, list[Delivery]], now: datetime) -> None:
    if parked:
        Delivery.objects.filter(pk__in=[d.pk for d in parked]).update(
            status=DeliveryStatus.PARKED, next_attempt_at=None)
    if skipped:
        Delivery.objects.filter(pk__in=[d.pk for d in skipped]).update(
            status=DeliveryStatus.SKIPPED, next_attempt_at=None)
    for countdown, deliveries in waiting.items():
        Delivery.objects.filter(pk__in=[d.pk for d in deliveries]).update(
            status=DeliveryStatus.PARKED, next_attempt_at=now + timedelta(seconds=countdown))


def _secrets(endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    secrets = [endpoint.secret]
    if endpoint.previous_secret and endpoint.previous_secret_expires_at and \
            endpoint.previous_secret_expires_at > now:
        secrets.append(endpoint.previous_secret)
    return secrets


_bodies: dict[str, bytes] = {}


def _body(message: Message) -> bytes:
    body = _bodies.get(message.id)
    if body is None:
        if len(_bodies) > 1000:
            _bodies.clear()
        body = _bodies[message.id] = message_body(type=message.type,
                                                  timestamp=message.timestamp,
                                                  data=message.data)
    return body


def _request(delivery: Delivery, *, rate_limited: bool = True) -> Send:
    endpoint, message = delivery.endpoint, delivery.message
    now = timezone.now()
    body = _body(message)
    return Send(key=delivery.pk, endpoint_id=endpoint.pk, url=endpoint.url, body=body,
                headers=signed_headers(message_id=message.id, sent_at=now, body=body,
                                       secrets=_secrets(endpoint, now)),
                rate_limit=endpoint.rate_limit if rate_limited else None)


def _record(to_send: list[tuple[int, Job, Delivery]], results: list[SendResult],
            answers: list[Any]) -> None:
    now = timezone.now()
    attempts: list[DeliveryAttempt] = []
    delivered: list[Delivery] = []
    rate_waits: dict[int, list[Delivery]] = defaultdict(list)
    failed: list[tuple[Delivery, SendResult, bool]] = []
    tallies: dict[Any, health.Tally] = defaultdict(health.Tally)
    for (index, job, delivery), result in zip(to_send, results, strict=True):
        tally = tallies[delivery.endpoint_id]
        if result.deferred is not None:
            countdown = max(int(result.deferred + 0.999), 1)
            rate_waits[countdown].append(delivery)
            answers[index] = Deferred(countdown, "the endpoint's rate limit")
            continue
        if result.delivered:
            tally.delivered += 1
            delivered.append(delivery)
            attempts.append(_attempt(delivery, result, AttemptResult.DELIVERED))
            answers[index] = {"delivery": DeliveryStatus.DELIVERED,
                              "http_status": result.http_status,
                              "latency_ms": result.latency_ms}
            continue
        tally.failed += 1
        tally.gone = tally.gone or isinstance(result.error, EndpointGone)
        # The 410 itself is permanent (gave up). Another delivery of the same endpoint that
        # failed in this batch keeps its retry: the disabling below parks it, to be resumed
        # when the endpoint is enabled again, and its job, retried, finds it parked.
        retry = will_retry(job=job, exc=result.error)
        failed.append((delivery, result, retry))
        attempts.append(_attempt(delivery, result,
                                 AttemptResult.FAILED if retry else AttemptResult.GAVE_UP))
        answers[index] = result.error
    # In a transaction even when it is one statement: a worker killed while the statement
    # waits (a lock) must leave nothing recorded, as the test of effects once expects (an
    # autocommit statement already sent would still commit after the kill).
    with transaction.atomic():
        fastpaths.attempts_record(attempts=attempts, delivered=[d.pk for d in delivered],
                                  now=now)
        for delivery, result, retry in failed:
            Delivery.objects.filter(pk=delivery.pk).update(
                status=DeliveryStatus.RETRYING if retry else DeliveryStatus.FAILED,
                last_attempt_at=now, attempts=F("attempts") + 1,
                last_error={"type": result.error_type, "message": result.error_message,
                            "http_status": result.http_status})
        for countdown, deliveries in rate_waits.items():
            Delivery.objects.filter(pk__in=[d.pk for d in deliveries]).update(
                status=DeliveryStatus.PENDING, next_attempt_at=now + timedelta(seconds=countdown))
        count_attempts_on_commit(Channel.WEBHOOK, attempts)
    health.endpoints_record(tallies, now)


def _attempt(delivery: Delivery, result: SendResult, outcome: str) -> DeliveryAttempt:
    return DeliveryAttempt(
        delivery_id=delivery.pk, number=delivery.attempts + 1, at=result.started_at,
        outcome=outcome, http_status=result.http_status, latency_ms=result.latency_ms,
        response_excerpt=result.excerpt, error_type=result.error_type,
        error_message=result.error_message, worker=WORKER)


def delivery_send_now(*, delivery: Delivery) -> DeliveryAttempt:
    """Send one delivery at once, outside the job machinery, and record the attempt (the
    endpoint's test ping: its outcome is the API's answer; no retry, no health change)."""
    result = send_all([_request(delivery, rate_limited=False)])[0]
    attempt = _attempt(delivery, result, AttemptResult.DELIVERED if result.delivered
                       else AttemptResult.GAVE_UP)
    now = timezone.now()
    with transaction.atomic():
        attempt.save(force_insert=True)
        delivery.status = DeliveryStatus.DELIVERED if result.delivered else DeliveryStatus.FAILED
        delivery.attempts += 1
        delivery.last_attempt_at = now
        delivery.delivered_at = now if result.delivered else None
        delivery.last_error = None if result.delivered else {
            "type": result.error_type, "message": result.error_message,
            "http_status": result.http_status}
        delivery.save(update_fields=["status", "attempts", "last_attempt_at", "delivered_at",
                                     "last_error"])
        count_attempts_on_commit(Channel.WEBHOOK, [attempt])
    return attempt
