"""Digests: a template with a digest rule (comment_added: one email per recipient and thread
per window) collects the email deliveries of its window into one email. The window, its key,
what comes after it closes, and concurrent arrivals on PostgreSQL (publishers in threads, each
on its own connection, and publishers racing with the carrier closing the digest)."""

from __future__ import annotations

import itertools
import re
from datetime import timedelta

import pytest
from django.db import transaction

from domain.common.errors import TransientError
from domain.jobs.models import Job
from domain.notifications.emails import emails_deliver
from domain.notifications.models import (
    AttemptResult,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Digest,
    DigestState,
    InboxItem,
)
from domain.notifications.sending import SendResult, notification_send, notification_validate
from tests.conftest import simultaneously
from tests.notification_utils import (
    comment_context,
    deliver_emails,
    deliver_inbox,
    email_deliveries,
    fresh,
    inapp_deliveries,
)

READER = {"id": "reader-1", "email": "reader@example.com"}


def _comment(excerpt: str, recipients=None, channels=("email",), **context):
    from tests.notification_utils import send

    return send("comment_added", context=comment_context(excerpt=excerpt, **context),
                recipients=recipients or [READER], channels=list(channels))


def _carrier_jobs() -> list[Job]:
    """The email jobs that exist: one per digest (its carrier's)."""
    return list(Job.objects.filter(kind="email_delivery").order_by("created_at"))


def _excerpts(text: str) -> list[str]:
    return re.findall(r"^Ada: (.+)$", text, flags=re.MULTILINE)


# --- The window ------------------------------------------------------------------------------

@pytest.mark.django_db
def test_sends_in_the_window_join_one_digest_sent_as_one_email_when_it_closes(smtp_sink):
    # given three comments for one recipient in one thread, within the window
    sent = [_comment(text) for text in ("first", "second", "third")]
    deliveries = [r.deliveries[0] for r in sent]

    # then they joined one open digest, carried by the first delivery
    [digest] = Digest.objects.all()
    assert digest.state == DigestState.OPEN and digest.items == 3
    assert (digest.template, digest.key, digest.recipient_id) == ("comment_added", "t-42",
                                                                  "reader-1")
    assert digest.carrier_id == deliveries[0].pk
    assert digest.closes_at - digest.opened_at == timedelta(seconds=600)
    assert [fresh(d).digest_id for d in deliveries] == [digest.pk] * 3
    # and only the carrier has a job, due when the window closes
    [job] = _carrier_jobs()
    assert fresh(deliveries[0]).job_id == job.pk
    assert job.run_at == digest.closes_at
    assert [fresh(d).job_id for d in deliveries[1:]] == [None, None]
    assert smtp_sink.received == []

    # when the carrier's job runs
    [answer] = emails_deliver([job])

    # then one email lists all three, oldest first, in both parts
    assert answer["delivery"] == DeliveryStatus.DELIVERED and answer["deliveries"] == 3
    [message] = smtp_sink.received
    assert message.subject == "3 new comments on Launch plan"
    assert _excerpts(message.text) == ["first", "second", "third"]
    assert message.html.count("<li>") == 3
    assert "<li><strong>Ada</strong>: second</li>" in message.html
    # and every delivery is delivered with its attempt; the digest is closed
    for delivery in deliveries:
        stored = fresh(delivery)
        assert stored.status == DeliveryStatus.DELIVERED and stored.attempts == 1
        [attempt] = DeliveryAttempt.objects.filter(delivery=delivery)
        assert (attempt.outcome, attempt.smtp_code) == (AttemptResult.DELIVERED, 250)
    assert Digest.objects.get().state == DigestState.CLOSED
    # and running the carrier again sends nothing more
    emails_deliver([job])
    assert len(smtp_sink.received) == 1


@pytest.mark.django_db
def test_a_digest_of_one_reads_as_one_comment(smtp_sink):
    result = _comment("only one")
    deliver_emails(result.deliveries)
    [message] = smtp_sink.received
    assert message.subject == "Ada commented on Launch plan"
    assert _excerpts(message.text) == ["only one"]


@pytest.mark.django_db
def test_the_window_is_a_setting(settings):
    settings.NOTIFICATION_DIGEST_WINDOWS = {"comment_added": 120}
    _comment("first")
    [digest] = Digest.objects.all()
    assert digest.closes_at - digest.opened_at == timedelta(seconds=120)
    assert _carrier_jobs()[0].run_at == digest.closes_at


@pytest.mark.django_db
def test_another_thread_is_another_digest(smtp_sink):
    # given comments in two threads for the same recipient
    _comment("in 42, one")
    _comment("in 7", thread_id="t-7", thread_title="Budget")
    _comment("in 42, two")

    # then two digests, two carriers
    assert sorted(Digest.objects.values_list("key", "items")) == [("t-42", 2), ("t-7", 1)]
    jobs = _carrier_jobs()
    assert len(jobs) == 2

    # when both carriers run, then two emails, each with its thread's comments
    emails_deliver(jobs)
    subjects = sorted(m.subject for m in smtp_sink.received)
    assert subjects == ["2 new comments on Launch plan", "Ada commented on Budget"]


@pytest.mark.django_db
def test_each_recipient_has_a_digest_of_their_own(smtp_sink):
    other = {"id": "reader-2", "email": "other@example.com"}
    _comment("one", recipients=[READER, other])
    _comment("two", recipients=[READER, other])
    assert sorted(Digest.objects.values_list("recipient_id", "items")) == [
        ("reader-1", 2), ("reader-2", 2)]
    emails_deliver(_carrier_jobs())
    assert len(smtp_sink.received) == 2
    assert {m["To"] for m in smtp_sink.received} == {READER["email"], other["email"]}
    assert all(_excerpts(m.text) == ["one", "two"] for m in smtp_sink.received)


@pytest.mark.django_db
def test_a_send_after_the_carrier_closed_the_digest_opens_a_new_one(smtp_sink):
    # given a digest whose carrier has run
    first = _comment("before")
    deliver_emails(first.deliveries)
    assert Digest.objects.get().state == DigestState.CLOSED

    # when another comment comes
    later = _comment("after")

    # then it opened a new digest, with a carrier of its own, which sends only it
    [new] = Digest.objects.filter(state=DigestState.OPEN)
    assert new.carrier_id == later.deliveries[0].pk and new.items == 1
    deliver_emails(later.deliveries)
    assert [_excerpts(m.text) for m in smtp_sink.received] == [["before"], ["after"]]
    assert fresh(first.deliveries[0]).attempts == 1


@pytest.mark.django_db
def test_a_digest_that_fails_transiently_is_sent_whole_on_the_retry(smtp_sink):
    # given a digest of two, the server busy for the first try
    smtp_sink.script(READER["email"], rcpt=["450 4.2.1 busy"])
    deliveries = [_comment(t).deliveries[0] for t in ("one", "two")]
    [job] = _carrier_jobs()

    # when the carrier runs, then both wait for the retry
    [answer] = emails_deliver([job])
    assert isinstance(answer, TransientError)
    assert [fresh(d).status for d in deliveries] == [DeliveryStatus.RETRYING] * 2

    # and a comment arriving meanwhile starts a new digest (the first one closed)
    late = _comment("three").deliveries[0]
    assert fresh(late).digest_id != fresh(deliveries[0]).digest_id

    # when the carrier runs again, then the first digest goes out whole, once
    emails_deliver([job])
    [message] = smtp_sink.received
    assert _excerpts(message.text) == ["one", "two"]
    for delivery in deliveries:
        assert [a.outcome for a in DeliveryAttempt.objects.filter(delivery=delivery)
                .order_by("number")] == [AttemptResult.FAILED, AttemptResult.DELIVERED]


@pytest.mark.django_db
def test_in_app_deliveries_of_a_digest_template_are_not_digested(smtp_sink):
    # given three comments sent by email and in-app
    sent = [_comment(t, channels=("email", "in_app")) for t in ("one", "two", "three")]

    # then each in-app delivery has a job of its own notification's and no digest; the emails
    # share one
    in_app = [d for r in sent for d in inapp_deliveries(r)]
    assert all(fresh(d).digest_id is None and fresh(d).job_id for d in in_app)
    assert len({fresh(d).job_id for d in in_app}) == 3
    assert len({fresh(d).digest_id for r in sent for d in email_deliveries(r)}) == 1

    # when their jobs run, then each writes its one delivery: three inbox items, one email
    answers = deliver_inbox(in_app)
    assert answers == [{"delivered": 1, "skipped": 0, "failed": 0, "not_written": 0}] * 3
    assert [fresh(d).status for d in in_app] == [DeliveryStatus.DELIVERED] * 3
    assert InboxItem.objects.filter(recipient_id="reader-1").count() == 3
    emails_deliver(_carrier_jobs())
    assert len(smtp_sink.received) == 1


# --- Concurrency (PostgreSQL: row locks and the partial unique constraint) -------------------

def _all_delivered_once(deliveries: list[Delivery], messages) -> None:
    """Every delivery is in exactly one email, and delivered with exactly one attempt."""
    listed = [excerpt for m in messages for excerpt in _excerpts(m.text)]
    expected = sorted(fresh(d).notification.context["excerpt"] for d in deliveries)
    assert sorted(listed) == expected, "an excerpt is missing or sent twice"
    for delivery in deliveries:
        stored = fresh(delivery)
        assert stored.status == DeliveryStatus.DELIVERED, stored
        assert stored.attempts == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_publishers_open_one_digest_and_all_join_it(smtp_sink, private_broker):
    # given 8 publishers, each on its own connection, sending to one recipient at once
    count = 8
    numbers = itertools.count()
    results = simultaneously(count, lambda: _comment(f"comment {next(numbers)}"))
    deliveries = [r.deliveries[0] for r in results]

    # then there is exactly one digest, open, and every delivery joined it
    [digest] = Digest.objects.all()
    assert digest.state == DigestState.OPEN and digest.items == count
    assert {fresh(d).digest_id for d in deliveries} == {digest.pk}
    # and exactly one job carries it
    [job] = _carrier_jobs()
    assert Delivery.objects.get(job_id=job.pk).pk == digest.carrier_id

    # when the carrier runs, then exactly one email lists all of them
    emails_deliver([job])
    [message] = smtp_sink.received
    assert message.subject == f"{count} new comments on Launch plan"
    _all_delivered_once(deliveries, smtp_sink.received)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("round_", range(4))
def test_sends_racing_with_the_carrier_closing_are_each_sent_once(smtp_sink, private_broker,
                                                                  round_):
    # given an open digest with one comment
    first = _comment("comment opener")
    [carrier_job] = _carrier_jobs()

    # when 6 publishers send while its carrier runs, all released together
    numbers = itertools.count()

    def act():
        n = next(numbers)
        if n == 0:
            return emails_deliver([Job.objects.get(pk=carrier_job.pk)])
        return _comment(f"comment {n}")

    results = simultaneously(7, act)

    # then at most one digest is open, and every delivery is in exactly one digest
    assert Digest.objects.filter(state=DigestState.OPEN).count() <= 1
    sends = [r for r in results if isinstance(r, SendResult)]
    assert len(sends) == 6
    deliveries = [first.deliveries[0]] + [r.deliveries[0] for r in sends]
    assert all(fresh(d).digest_id for d in deliveries)
    # and when every carrier still to run has run
    emails_deliver([j for j in _carrier_jobs() if j.pk != carrier_job.pk])
    # then each delivery went out in exactly one email: none twice, none lost
    _all_delivered_once(deliveries, smtp_sink.received)
    assert len(smtp_sink.received) == Digest.objects.count()
    assert not Digest.objects.filter(state=DigestState.OPEN).exists()
    print(f"round {round_}: {len(smtp_sink.received)} emails for 7 comments, "
          f"{[len(_excerpts(m.text)) for m in smtp_sink.received]} comments each")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_sends_to_the_same_recipients_in_opposite_orders_do_not_deadlock(private_broker):
    # given two sends to the same 300 recipients, one listing them in reverse, at once
    readers = [{"id": f"r-{i:03}", "email": f"r{i}@example.com"} for i in range(300)]
    drafts = iter([notification_validate(template="comment_added", context=comment_context(),
                                         recipients=order, channels=["email"])
                   for order in (readers, readers[::-1])])

    def publish():
        return notification_send(draft=next(drafts))

    # when both run together (each opening or joining 300 digests), then neither fails
    results = simultaneously(2, publish)

    # and every recipient has one open digest of two
    assert all(r.created for r in results)
    assert Digest.objects.filter(state=DigestState.OPEN).count() == 300
    assert set(Digest.objects.values_list("items", flat=True)) == {2}


# --- What a digest is of ---------------------------------------------------------------------

@pytest.mark.django_db
def test_another_address_or_another_api_key_makes_another_digest(smtp_sink):
    from domain.access.services import api_key_create

    # given comments for one recipient: two to one address, one to another, and one sent by
    # another API key to the first address
    first, second = _comment("one"), _comment("two")
    moved = _comment("three", recipients=[{"id": "reader-1", "email": "new@example.com"}])
    other_key, _ = api_key_create(name="other tenant", scopes=["notifications:write"])
    draft = notification_validate(template="comment_added",
                                  context=comment_context(excerpt="four"),
                                  recipients=[READER], channels=["email"])
    foreign = notification_send(draft=draft, api_key=other_key)

    # then three digests: (address, key) decides, so no email goes to an address another
    # send did not give, and no key's comments appear in another key's email
    digests = {(d.address, d.owner): d.items for d in Digest.objects.all()}
    assert digests == {("reader@example.com", ""): 2, ("new@example.com", ""): 1,
                       ("reader@example.com", str(other_key.pk)): 1}

    # and when every carrier runs, each email goes to its own address with its own comments
    emails_deliver(_carrier_jobs())
    by_address = sorted((m.rcpt_to[0], sorted(_excerpts(m.text))) for m in smtp_sink.received)
    assert by_address == [("new@example.com", ["three"]), ("reader@example.com", ["four"]),
                          ("reader@example.com", ["one", "two"])]
    for result in (first, second, moved, foreign):
        assert fresh(result.deliveries[0]).status == DeliveryStatus.DELIVERED


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_sends_to_many_recipients_racing_digests_closing_neither_deadlock_nor_fail(
        private_broker):
    import random
    import threading
    import time

    from django.db import connection

    # given 12 recipients with an open digest each
    readers = [{"id": f"r-{i:02}", "email": f"r{i}@example.com"} for i in range(12)]
    _comment("opener", recipients=readers)
    stop = time.monotonic() + 4
    errors: list[str] = []
    sends = [0]

    def publisher(n: int) -> None:
        # each sends to all 12 (in a different order) again and again
        try:
            while time.monotonic() < stop:
                order = readers[n:] + readers[:n]
                try:
                    _comment(f"from {n}", recipients=order)
                    sends[0] += 1
                except Exception as exc:  # noqa: BLE001 - what the test counts
                    errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            connection.close()

    def closer() -> None:
        # as carriers do: close one random open digest every 20 ms
        try:
            while time.monotonic() < stop:
                try:
                    with transaction.atomic():
                        Digest.objects.filter(recipient_id=random.choice(readers)["id"],
                                              state=DigestState.OPEN).update(
                            state=DigestState.CLOSED)
                except Exception as exc:  # noqa: BLE001 - what the test counts
                    errors.append(f"closer {type(exc).__name__}: {exc}")
                time.sleep(0.02)
        finally:
            connection.close()

    # when 4 publishers and a closer run together for 4 seconds
    threads = [threading.Thread(target=publisher, args=(n,)) for n in range(4)]
    threads.append(threading.Thread(target=closer))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # then nothing failed (before, a send that found a digest closed between its insert and
    # its lock deadlocked with another send: 43 of 91 sends failed in review), at most one
    # digest is open per recipient, and every delivery is in a digest
    assert errors == [], errors[:5]
    assert sends[0] > 0
    open_per_recipient = Digest.objects.filter(state=DigestState.OPEN).values_list(
        "recipient_id", flat=True)
    assert len(list(open_per_recipient)) == len(set(open_per_recipient)) <= 12
    assert not Delivery.objects.filter(channel="email", digest__isnull=True).exists()
    total = Delivery.objects.filter(channel="email").count()
    assert sum(Digest.objects.values_list("items", flat=True)) == total
    print(f"{sends[0]} sends of 12 recipients racing a closer: {total} deliveries in "
          f"{Digest.objects.count()} digests, no error")
