"""Operators' tools: cancel, replay one, replay many, orphan rescue, stale re-send."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from domain.access.models import AuditEntry, Scopes
from domain.events.models import EventStatus
from domain.jobs.models import AttemptOutcome, Job, JobAttempt, JobStatus
from domain.jobs.outbox import outbox_relay
from domain.jobs.rescue import jobs_rescue_orphans
from domain.jobs.services import jobs_cancel_selected, jobs_replay_selected
from tests.conftest import queued_messages
from tests.factories import EventFactory, JobFactory

pytestmark = pytest.mark.django_db


def _dead_job(client, **fields) -> Job:
    fields.setdefault("error", {"type": "X", "message": "boom"})
    job = JobFactory(api_key=client.api_key, status=JobStatus.DEAD, attempts=5,
                     finished_at=timezone.now(), **fields)
    JobAttempt.objects.create(job=job, number=5, started_at=timezone.now(),
                              finished_at=timezone.now(), outcome=AttemptOutcome.FAILED)
    return job


# --- cancel ---------------------------------------------------------------------------

@pytest.mark.parametrize("status", [JobStatus.QUEUED, JobStatus.RETRYING])
def test_cancel_a_waiting_job(client_all, status):
    job = JobFactory(api_key=client_all.api_key, status=status)
    response = client_all.post(reverse("job-cancel", args=[job.pk]))
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "cancelled"
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED and job.finished_at is not None


@pytest.mark.parametrize("status", [JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.DEAD,
                                    JobStatus.CANCELLED])
def test_cancel_a_started_or_finished_job_is_409(client_all, status):
    job = JobFactory(api_key=client_all.api_key, status=status)
    response = client_all.post(reverse("job-cancel", args=[job.pk]))
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "job_not_cancellable"
    assert response.json()["error"]["details"] == {"status": status}
    job.refresh_from_db()
    assert job.status == status


def test_cancelling_the_last_open_job_closes_its_event(client_all):
    event = EventFactory(api_key=client_all.api_key, status=EventStatus.DISPATCHED)
    done = JobFactory(event=event, handler="a", status=JobStatus.SUCCEEDED)
    waiting = JobFactory(event=event, handler="b", status=JobStatus.QUEUED,
                         api_key=client_all.api_key)
    assert done.status == JobStatus.SUCCEEDED
    client_all.post(reverse("job-cancel", args=[waiting.pk]))
    event.refresh_from_db()
    assert event.status == EventStatus.COMPLETED


def test_cancel_needs_jobs_write_and_hides_other_keys_jobs(make_client):
    owner = make_client([Scopes.JOBS_READ, Scopes.JOBS_WRITE], name="owner")
    reader = make_client([Scopes.JOBS_READ], name="reader")
    stranger = make_client([Scopes.JOBS_WRITE], name="stranger")
    job = JobFactory(api_key=owner.api_key)
    assert reader.post(reverse("job-cancel", args=[job.pk])).status_code == 403
    assert stranger.post(reverse("job-cancel", args=[job.pk])).status_code == 404
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED


# --- replay one -----------------------------------------------------------------------

def test_replay_a_dead_job(client_all, broker, django_capture_on_commit_callbacks):
    event = EventFactory(api_key=client_all.api_key, status=EventStatus.FAILED,
                         completed_at=timezone.now())
    job = _dead_job(client_all, event=event, handler="h")
    with django_capture_on_commit_callbacks(execute=True):
        response = client_all.post(reverse("job-retry", args=[job.pk]))
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "queued" and body["attempts"] == 0 and body["replays"] == 1
    assert body["error"] is None
    job.refresh_from_db()
    assert job.max_attempts == 5 and job.enqueued_at is not None
    # history kept
    assert list(job.attempt_log.values_list("run", "number", "outcome")) == [(0, 5, "failed")]
    # the event is open again
    event.refresh_from_db()
    assert event.status == EventStatus.DISPATCHED and event.completed_at is None
    assert [m["headers"]["id"] for m in queued_messages(broker, "events")] == [str(job.pk)]


@pytest.mark.parametrize("status", [JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.RETRYING,
                                    JobStatus.SUCCEEDED])
def test_replay_of_a_live_or_succeeded_job_is_409(client_all, status):
    job = JobFactory(api_key=client_all.api_key, status=status)
    response = client_all.post(reverse("job-retry", args=[job.pk]))
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "job_not_replayable"
    job.refresh_from_db()
    assert job.status == status and job.replays == 0


def test_replay_of_unknown_job_is_404(client_all):
    import uuid

    response = client_all.post(reverse("job-retry", args=[uuid.uuid4()]))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


# --- replay many ----------------------------------------------------------------------

def test_bulk_replay_by_filter(client_all, make_client, django_capture_on_commit_callbacks):
    now = timezone.now()
    event = EventFactory(type="product.updated", api_key=client_all.api_key)
    match = _dead_job(client_all, kind="cache_invalidation", event=event, handler="h1")
    _dead_job(client_all, kind="noop")  # other kind
    old = _dead_job(client_all, kind="cache_invalidation")
    Job.objects.filter(pk=old.pk).update(finished_at=now - timedelta(days=2))
    JobFactory(api_key=client_all.api_key, kind="cache_invalidation", status=JobStatus.SUCCEEDED)
    other_key = make_client(name="other")
    theirs = _dead_job(other_key, kind="cache_invalidation")

    with django_capture_on_commit_callbacks(execute=True):
        response = client_all.post(reverse("job-bulk-retry"), {
            "kind": "cache_invalidation", "event_type": "product.updated",
            "since": (now - timedelta(hours=1)).isoformat()}, format="json")

    assert response.status_code == 202, response.content
    assert response.json() == {"requeued": 1}
    statuses = dict(Job.objects.values_list("pk", "status"))
    assert statuses[match.pk] == JobStatus.QUEUED
    assert statuses[old.pk] == JobStatus.DEAD
    assert statuses[theirs.pk] == JobStatus.DEAD


def test_bulk_replay_counts_everything_matching(client_all):
    for _ in range(4):
        _dead_job(client_all)
    response = client_all.post(reverse("job-bulk-retry"), {}, format="json")
    assert response.json() == {"requeued": 4}
    assert Job.objects.filter(status=JobStatus.QUEUED, replays=1).count() == 4


def test_bulk_replay_dry_run_counts_by_error_type_and_changes_nothing(client_all):
    # given dead jobs with two kinds of last error
    for _ in range(3):
        _dead_job(client_all, kind="noop", error={"type": "ConnectionError", "message": "x"})
    _dead_job(client_all, kind="noop", error={"type": "ValueError", "message": "bad"})

    # when an operator asks first, with a limit below the match
    dry = client_all.post(reverse("job-bulk-retry"), {
        "error_type": "ConnectionError", "limit": 2, "dry_run": True}, format="json")

    # then the answer counts, and nothing moved; no audit entry for a question
    assert dry.status_code == 200, dry.content
    assert dry.json() == {"matched": 3, "would_requeue": 2, "dry_run": True}
    assert Job.objects.filter(status=JobStatus.DEAD).count() == 4
    assert not AuditEntry.objects.exists()

    # when they replay the same filter, the ConnectionError jobs only go back to the queue
    done = client_all.post(reverse("job-bulk-retry"), {"error_type": "ConnectionError"},
                           format="json")
    assert (done.status_code, done.json()) == (202, {"requeued": 3})
    assert set(Job.objects.filter(status=JobStatus.DEAD).values_list(
        "error__type", flat=True)) == {"ValueError"}
    assert AuditEntry.objects.get().count == 3


def test_replay_jobs_command_filters_by_error_type(client_all):
    _dead_job(client_all, kind="noop", error={"type": "ConnectionError", "message": "x"})
    _dead_job(client_all, kind="noop")
    out = StringIO()
    call_command("replay_jobs", "--error-type", "ConnectionError", "--dry-run", stdout=out)
    assert "would replay 1 job(s)" in out.getvalue()
    call_command("replay_jobs", "--error-type", "ConnectionError", stdout=out)
    assert Job.objects.filter(status=JobStatus.QUEUED).count() == 1


@pytest.mark.parametrize("body", [{"status": "succeeded"}, {"status": "running"},
                                  {"since": "2026-01-02T00:00:00Z",
                                   "until": "2026-01-01T00:00:00Z"},
                                  {"limit": 0}])
def test_bulk_replay_rejects_bad_filters(client_all, body):
    _dead_job(client_all)
    response = client_all.post(reverse("job-bulk-retry"), body, format="json")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_failed"
    assert Job.objects.filter(status=JobStatus.DEAD).count() == 1


def test_replay_jobs_command(client_all):
    _dead_job(client_all, kind="noop")
    _dead_job(client_all, kind="cache_invalidation")
    out = StringIO()
    call_command("replay_jobs", "--kind", "noop", "--dry-run", stdout=out)
    assert "would replay 1 job(s)" in out.getvalue()
    assert Job.objects.filter(status=JobStatus.DEAD).count() == 2
    call_command("replay_jobs", "--status", "dead", "--kind", "noop",
                 "--since", (timezone.now() - timedelta(hours=1)).isoformat(), stdout=out)
    assert "replayed 1 job(s)" in out.getvalue()
    assert Job.objects.get(kind="noop").status == JobStatus.QUEUED


def test_replay_jobs_command_rejects_bad_dates():
    with pytest.raises(CommandError):
        call_command("replay_jobs", "--since", "yesterday")


# --- orphan rescue --------------------------------------------------------------------

def test_orphans_are_requeued_with_a_lost_attempt(broker, django_capture_on_commit_callbacks):
    long_ago = timezone.now() - timedelta(hours=1)
    orphan = JobFactory(status=JobStatus.RUNNING, attempts=1, started_at=long_ago,
                        worker="celery@gone")
    recent = JobFactory(status=JobStatus.RUNNING, attempts=1, started_at=timezone.now())
    with django_capture_on_commit_callbacks(execute=True):
        assert jobs_rescue_orphans() == {"requeued": 1, "dead": 0}
    orphan.refresh_from_db()
    recent.refresh_from_db()
    assert orphan.status == JobStatus.QUEUED and orphan.attempts == 1
    assert orphan.error["type"] == "WorkerLost"
    lost = orphan.attempt_log.get()
    assert lost.outcome == AttemptOutcome.LOST and "celery@gone" in lost.error_message
    assert recent.status == JobStatus.RUNNING
    assert [m["headers"]["id"] for m in queued_messages(broker, "events")] == [str(orphan.pk)]


def test_orphan_out_of_attempts_goes_dead_and_fails_its_event():
    event = EventFactory(status=EventStatus.DISPATCHED)
    job = JobFactory(event=event, handler="h", status=JobStatus.RUNNING, attempts=5,
                     max_attempts=5, started_at=timezone.now() - timedelta(hours=1))
    assert jobs_rescue_orphans() == {"requeued": 0, "dead": 1}
    job.refresh_from_db()
    event.refresh_from_db()
    assert job.status == JobStatus.DEAD and event.status == EventStatus.FAILED


def test_relay_resends_queued_jobs_whose_message_was_lost(broker):
    long_ago = timezone.now() - timedelta(hours=2)
    lost = JobFactory(status=JobStatus.QUEUED, created_at=long_ago, enqueued_at=long_ago)
    JobFactory(status=JobStatus.QUEUED, created_at=long_ago, enqueued_at=timezone.now())
    assert outbox_relay(grace_seconds=0, stale_seconds=3600) == 1
    assert [m["headers"]["id"] for m in queued_messages(broker, "events")] == [str(lost.pk)]
    lost.refresh_from_db()
    assert lost.enqueued_at > long_ago


def test_relay_outbox_command(broker):
    JobFactory(created_at=timezone.now() - timedelta(minutes=5))
    out = StringIO()
    call_command("relay_outbox", "--rescue-orphans", stdout=out)
    assert "orphans: requeued=0 dead=0" in out.getvalue()
    assert "relay: sent=1" in out.getvalue()


# --- a selection at once (the admin's actions) ---------------------------------------------

def test_replay_selected_replays_the_replayable_oldest_first_up_to_the_limit(
        client_all, broker, django_capture_on_commit_callbacks):
    # given three dead jobs of an event a minute apart, a cancelled one, and a running one
    event = EventFactory(status=EventStatus.FAILED)
    now = timezone.now()
    dead = [_dead_job(client_all, event=event, handler=f"h{i}",
                      created_at=now - timedelta(minutes=3 - i))
            for i in range(3)]
    cancelled = JobFactory(status=JobStatus.CANCELLED, created_at=now)
    running = JobFactory(status=JobStatus.RUNNING, created_at=now - timedelta(hours=1))
    selection = Job.objects.filter(pk__in=[j.pk for j in [*dead, cancelled, running]])

    # when they are replayed as a selection (a queryset of ids), at most 2 at a time
    with django_capture_on_commit_callbacks(execute=True):
        first = jobs_replay_selected(ids=selection.values("pk"), limit=2)
    first_round = set(Job.objects.filter(status=JobStatus.QUEUED).values_list("pk", flat=True))
    with django_capture_on_commit_callbacks(execute=True):
        second = jobs_replay_selected(ids=selection.values("pk"), limit=2)

    # then the two oldest replayable ran first, then the other two; the running one is left;
    # the event reopened, and every replayed job was handed to the broker
    assert (first, second) == (2, 2)
    assert first_round == {dead[0].pk, dead[1].pk}
    statuses = dict(Job.objects.values_list("pk", "status"))
    assert [statuses[j.pk] for j in [*dead, cancelled]] == [JobStatus.QUEUED] * 4
    assert statuses[running.pk] == JobStatus.RUNNING
    event.refresh_from_db()
    assert event.status == EventStatus.DISPATCHED
    assert Job.objects.filter(status=JobStatus.QUEUED, enqueued_at__isnull=True).count() == 0
    assert jobs_replay_selected(ids=selection.values("pk")) == 0


def test_cancel_selected_cancels_the_waiting_and_rolls_their_events_up():
    # given an event whose one job waits, another waiting job, and a running one
    event = EventFactory(status=EventStatus.DISPATCHED)
    waiting = [JobFactory(event=event, status=JobStatus.QUEUED),
               JobFactory(status=JobStatus.RETRYING, next_retry_at=timezone.now())]
    running = JobFactory(status=JobStatus.RUNNING)

    # when they are cancelled as a selection (a list of ids)
    count = jobs_cancel_selected(ids=[j.pk for j in [*waiting, running]])

    # then the waiting ones are cancelled, the running one is left, the event is completed
    assert count == 2
    for job in waiting:
        job.refresh_from_db()
        assert job.status == JobStatus.CANCELLED and job.finished_at is not None
        assert job.next_retry_at is None
    running.refresh_from_db()
    assert running.status == JobStatus.RUNNING
    event.refresh_from_db()
    assert event.status == EventStatus.COMPLETED


# --- admin actions --------------------------------------------------------------------

def test_admin_replay_and_cancel_actions(client, django_user_model, client_all):
    django_user_model.objects.create_superuser("ops", "ops@example.com", "pw")
    client.login(username="ops", password="pw")
    dead = _dead_job(client_all)
    waiting = JobFactory(status=JobStatus.QUEUED)
    running = JobFactory(status=JobStatus.RUNNING)
    url = reverse("admin:jobs_job_changelist")
    # (confirmed: each action asks first, see tests/domain/jobs/test_admin.py)
    client.post(url, {"action": "replay_jobs", "_selected_action": [dead.pk, running.pk],
                      "post": "yes"})
    client.post(url, {"action": "cancel_jobs", "_selected_action": [waiting.pk], "post": "yes"})
    statuses = dict(Job.objects.values_list("pk", "status"))
    assert statuses[dead.pk] == JobStatus.QUEUED
    assert statuses[waiting.pk] == JobStatus.CANCELLED
    assert statuses[running.pk] == JobStatus.RUNNING
