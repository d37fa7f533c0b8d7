"""The dashboard page: who sees it, who may act, the dry run, the replay, the audit row."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.utils import timezone

from domain.access.audit import Actor, audit_record
from domain.access.models import AuditAction, AuditEntry
from domain.jobs.models import Job, JobStatus, QueuePause
from scheduler.dashboard import views
from tests.factories import JobFactory
from tests.scheduler.dashboard.conftest import staff_user

pytestmark = pytest.mark.django_db

URL = "/admin/dashboard/"


def _dead(kind: str = "noop", *, error: str = "ConnectionError", hours_ago: float = 1) -> Job:
    finished = timezone.now() - dt.timedelta(hours=hours_ago)
    return JobFactory(kind=kind, status=JobStatus.DEAD, finished_at=finished,
                      created_at=finished - dt.timedelta(minutes=1),
                      error={"type": error, "message": "it failed"})


def _statuses(*jobs: Job) -> list[str]:
    return [Job.objects.get(pk=job.pk).status for job in jobs]


def _preview(client: Client, **fields) -> object:
    data = {"action": "preview", "kind": "", "event_type": "", "error_type": "",
            "window": "24h", **fields}
    return client.post(URL, data)


def _confirm_data(response) -> dict:
    form = response.context["confirm_form"]
    data = {name: form[name].value() for name in form.fields}
    return {**{k: "" if v is None else v for k, v in data.items()}, "action": "replay"}


def test_anyone_not_logged_in_is_sent_to_the_admin_login(client):
    response = client.get(URL)
    assert response.status_code == 302
    assert response["Location"] == f"/admin/login/?next={URL}"


def test_staff_without_a_role_may_not_see_it(django_user_model):
    client = Client()
    client.force_login(staff_user(django_user_model, "nobody", None))
    assert client.get(URL).status_code == 403
    # and the admin's index does not offer it
    assert b"Operator dashboard" not in client.get("/admin/").content


def test_a_viewer_sees_every_panel_and_no_form(viewer):
    _dead("noop")
    audit_record(actor=Actor("user", "someone"), action=AuditAction.PAUSE,
                 target_type="queue", target="bulk")

    response = viewer.get(URL)

    assert response.status_code == 200
    page = response.content.decode()
    for panel in ("panel-queues", "panel-throughput", "panel-dead", "panel-schedules",
                  "panel-endpoints", "panel-audit"):
        assert f'id="{panel}"' in page
    assert page.count('<svg class="chart"') == 2
    assert 'data-kind="noop"' in page
    assert "someone" in page and "queue: bulk" in page
    assert 'id="replay-form"' not in page
    assert 'value="pause"' not in page and 'value="resume"' not in page
    assert "Read-only" in page
    # the index links the dashboard
    assert f'href="{URL}"' in viewer.get("/admin/").content.decode()


@pytest.mark.parametrize("action", ["preview", "replay", "pause", "resume", "anything"])
def test_a_viewer_posting_an_action_gets_403_and_nothing_changes(viewer, action):
    job = _dead("noop")
    QueuePause.objects.create(queue="cache")
    until = timezone.now().isoformat()
    response = viewer.post(URL, {"action": action, "kind": "noop", "event_type": "",
                                 "error_type": "", "window": "all", "until": until,
                                 "matched": 1, "queue": "cache" if action == "resume" else "bulk"})
    assert response.status_code == 403
    assert _statuses(job) == [JobStatus.DEAD]
    assert list(QueuePause.objects.values_list("queue", flat=True)) == ["cache"]
    assert not AuditEntry.objects.exists()


def test_the_dry_run_counts_and_changes_nothing(operator_client):
    jobs = [_dead("noop"), _dead("noop"), _dead("noop", error="ValueError"),
            _dead("cache_invalidation"), _dead("noop", hours_ago=30)]

    response = _preview(operator_client, kind="noop", error_type="ConnectionError")

    assert response.status_code == 200
    assert response.context["matched"] == 2
    page = response.content.decode()
    assert "2 jobs match" in page
    assert 'id="replay-confirm-button"' in page
    assert _statuses(*jobs) == [JobStatus.DEAD] * 5
    assert not AuditEntry.objects.exists()


def test_the_confirmation_replays_exactly_the_counted_filter_and_audits_it(operator_client):
    # given dead jobs, and a dry run that counted two of them
    match = [_dead("noop"), _dead("noop")]
    others = [_dead("noop", error="ValueError"), _dead("cache_invalidation"),
              _dead("noop", hours_ago=30)]
    preview = _preview(operator_client, kind="noop", error_type="ConnectionError")
    # and a job of the filter that died after the dry run counted
    late = JobFactory(kind="noop", status=JobStatus.DEAD,
                      finished_at=timezone.now() + dt.timedelta(seconds=1),
                      error={"type": "ConnectionError", "message": "late"})

    # when the operator confirms
    response = operator_client.post(URL, _confirm_data(preview))

    # then those two are queued again, nothing else is
    assert response.status_code == 302 and response["Location"] == URL
    assert _statuses(*match) == [JobStatus.QUEUED] * 2
    assert _statuses(*others, late) == [JobStatus.DEAD] * 4
    # and the audit log says who did what to how many
    entry = AuditEntry.objects.get()
    assert (entry.actor_kind, entry.actor, entry.action, entry.target_type, entry.count) == \
        ("user", "otto", "replay", "jobs", 2)
    assert "kind=noop" in entry.target and "error_type=ConnectionError" in entry.target
    assert entry.detail["via"] == "dashboard"
    assert entry.detail["filter"]["kind"] == "noop"
    assert entry.detail["matched"] == 2
    # and the page it lands on says so and lists the entry
    page = operator_client.get(URL).content.decode()
    assert "Replayed 2 dead jobs" in page
    assert "otto" in page and "kind=noop" in page


def test_one_submit_replays_at_most_the_cap_oldest_first(operator_client, monkeypatch):
    monkeypatch.setattr(views, "REPLAY_LIMIT", 2)
    jobs = [_dead("noop", hours_ago=h) for h in (3, 2, 1)]
    preview = _preview(operator_client, kind="noop")
    assert preview.context["matched"] == 3
    assert "at most 2" in preview.content.decode()

    operator_client.post(URL, _confirm_data(preview))

    assert _statuses(*jobs) == [JobStatus.QUEUED, JobStatus.QUEUED, JobStatus.DEAD]
    assert AuditEntry.objects.get().count == 2


def test_a_filter_matching_nothing_offers_no_replay(operator_client):
    response = _preview(operator_client, kind="noop")
    assert response.context["matched"] == 0
    assert 'id="replay-confirm-button"' not in response.content.decode()


def test_an_invalid_filter_is_shown_again_with_its_error(operator_client):
    response = _preview(operator_client, kind="no-such-kind")
    assert response.status_code == 400
    assert "kind" in response.context["replay_form"].errors
    assert "confirm_form" not in response.context


@pytest.mark.parametrize("change", [
    {"until": ""},
    {"until": "yesterday"},
    {"since": "2030-01-01T00:00:00+00:00", "until": "2029-01-01T00:00:00+00:00"},
    {"kind": "no-such-kind"},
])
def test_a_forged_confirmation_is_400_and_replays_nothing(operator_client, change):
    job = _dead("noop")
    data = {"action": "replay", "kind": "noop", "event_type": "", "error_type": "",
            "since": "", "until": timezone.now().isoformat(), "matched": 1, **change}
    response = operator_client.post(URL, data)
    assert response.status_code == 400
    assert _statuses(job) == [JobStatus.DEAD]
    assert not AuditEntry.objects.exists()


def test_an_unknown_action_is_400(operator_client):
    assert operator_client.post(URL, {"action": "drop-tables"}).status_code == 400


def test_a_superuser_may_act_without_a_group(admin_client):
    job = _dead("noop")
    preview = _preview(admin_client, kind="noop")
    admin_client.post(URL, _confirm_data(preview))
    assert _statuses(job) == [JobStatus.QUEUED]
    assert AuditEntry.objects.get().actor == "admin"


def test_an_operator_pauses_and_resumes_a_queue_and_each_is_audited(operator_client):
    # the page offers a pause for each running queue
    page = operator_client.get(URL).content.decode()
    assert 'id="pause-bulk"' in page and 'id="resume-bulk"' not in page

    # pausing: the row, the audit entry (by the queues' own service), the page says so
    response = operator_client.post(URL, {"action": "pause", "queue": "bulk",
                                          "reason": "reindexing"})
    assert response.status_code == 302
    pause = QueuePause.objects.get()
    assert (pause.queue, pause.paused_by, pause.reason) == ("bulk", "otto", "reindexing")
    page = operator_client.get(URL).content.decode()
    assert "Paused the bulk queue" in page
    assert 'id="resume-bulk"' in page
    assert "bulk (since" in page and "by otto: reindexing" in page

    # resuming
    operator_client.post(URL, {"action": "resume", "queue": "bulk"})
    assert not QueuePause.objects.exists()
    entries = list(AuditEntry.objects.order_by("id").values_list("actor", "action", "target"))
    assert entries == [("otto", "pause", "bulk"), ("otto", "resume", "bulk")]
    assert "No queue is paused" in operator_client.get(URL).content.decode()


def test_pausing_an_unknown_queue_is_400(operator_client):
    response = operator_client.post(URL, {"action": "pause", "queue": "nope"})
    assert response.status_code == 400
    assert not QueuePause.objects.exists() and not AuditEntry.objects.exists()
