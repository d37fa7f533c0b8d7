"""Every operator action on jobs writes one audit entry (who, what, on what, how many): replay
and cancel from the API, the admin and the command line; a refused or dry-run action none."""

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse
from django.utils import timezone

from domain.access.models import ActorKind, AuditAction, AuditEntry
from domain.jobs.models import Job, JobStatus
from tests.audit_utils import key_actor, summary, the_audit_entry
from tests.conftest import run_command

pytestmark = pytest.mark.django_db
CHANGELIST = "admin:jobs_job_changelist"


def _jobs(count: int, status: str, kind: str = "noop", api_key=None) -> list[Job]:
    now = timezone.now()
    finished = now if status in (JobStatus.DEAD, JobStatus.CANCELLED) else None
    return Job.objects.bulk_create(
        Job(kind=kind, params={}, max_attempts=5, status=status, created_at=now,
            finished_at=finished, api_key=api_key) for _ in range(count))


@pytest.mark.parametrize(("url", "status", "action"), [
    ("job-retry", JobStatus.DEAD, AuditAction.REPLAY),
    ("job-cancel", JobStatus.QUEUED, AuditAction.CANCEL),
])
def test_an_api_action_on_one_job_is_one_entry_naming_the_key(client_all, url, status, action):
    [job] = _jobs(1, status, api_key=client_all.api_key)

    response = client_all.post(reverse(url, args=[job.pk]), HTTP_X_CORRELATION_ID="audit-7")

    assert response.status_code in (200, 202)
    entry = the_audit_entry()
    assert summary(entry) == (ActorKind.API_KEY, action, "job", str(job.pk), 1)
    assert entry.actor == key_actor(client_all)
    assert entry.correlation_id == "audit-7"


def test_a_refused_action_writes_no_entry(client_all):
    [job] = _jobs(1, JobStatus.SUCCEEDED, api_key=client_all.api_key)
    assert client_all.post(reverse("job-retry", args=[job.pk])).status_code == 409
    assert client_all.post(reverse("job-cancel", args=[job.pk])).status_code == 409
    assert not AuditEntry.objects.exists()


def test_a_replay_by_filter_is_one_entry_with_the_filter_and_how_many(client_all):
    _jobs(3, JobStatus.DEAD, api_key=client_all.api_key)
    _jobs(1, JobStatus.DEAD, kind="cache_invalidation", api_key=client_all.api_key)

    response = client_all.post(reverse("job-bulk-retry"), {"kind": "noop", "limit": 50},
                               format="json")

    assert response.json() == {"requeued": 3}
    entry = the_audit_entry()
    assert summary(entry) == (ActorKind.API_KEY, AuditAction.REPLAY, "jobs",
                              "status=dead kind=noop limit=50", 3)
    assert entry.detail == {"filter": {"status": "dead", "kind": "noop", "limit": 50}}


@pytest.mark.parametrize(("action", "status", "audited"), [
    ("replay_jobs", JobStatus.DEAD, AuditAction.REPLAY),
    ("cancel_jobs", JobStatus.QUEUED, AuditAction.CANCEL),
])
def test_a_confirmed_admin_action_is_one_entry_naming_the_user(operator, action, status,
                                                               audited):
    jobs = _jobs(2, status) + _jobs(1, JobStatus.RUNNING)
    ids = [str(job.pk) for job in jobs]
    selection = {"action": action, ACTION_CHECKBOX_NAME: ids, "select_across": "0"}

    # the confirmation page is not the action
    operator.post(reverse(CHANGELIST), {**selection, "index": "0"})
    assert not AuditEntry.objects.exists()
    operator.post(reverse(CHANGELIST), {**selection, "post": "yes"})

    entry = the_audit_entry()
    assert summary(entry) == (ActorKind.USER, audited, "jobs", "3 selected", 2)
    assert entry.actor == "ops"
    assert sorted(entry.detail["ids"]) == sorted(ids)


def test_select_all_across_pages_records_the_lists_filters(operator):
    dead = _jobs(3, JobStatus.DEAD)
    _jobs(2, JobStatus.SUCCEEDED)

    operator.post(reverse(CHANGELIST) + "?status__exact=dead&o=2", {
        "action": "replay_jobs", ACTION_CHECKBOX_NAME: [str(dead[0].pk)],
        "select_across": "1", "post": "yes"})

    entry = the_audit_entry()
    assert summary(entry) == (ActorKind.USER, AuditAction.REPLAY, "jobs",
                              "all matching status__exact=dead", 3)
    assert entry.detail == {"filters": "status__exact=dead"}


def test_the_replay_command_is_one_entry_naming_the_command_and_a_dry_run_none():
    _jobs(2, JobStatus.DEAD)

    run_command("replay_jobs", "--kind", "noop", "--dry-run")
    assert not AuditEntry.objects.exists()
    out, _ = run_command("replay_jobs", "--kind", "noop", "--since", "2020-01-01T00:00:00Z")

    assert out.strip() == "replayed 2 job(s)"
    entry = the_audit_entry()
    assert summary(entry) == (
        ActorKind.COMMAND, AuditAction.REPLAY, "jobs",
        "status=dead kind=noop since=2020-01-01T00:00:00+00:00 limit=10000", 2)
    assert entry.actor.endswith("(manage.py replay_jobs)")
