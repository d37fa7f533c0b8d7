"""/api/v1/schedules: list, one, its ledger, pause, resume and run-now, through real keys."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from scheduler.models import RunOutcome, RunTrigger, ScheduleRun, SkipReason
from scheduler.schedules import MANAGED_PREFIX, SCHEDULES
from scheduler.sync import schedules_sync
from tests.broker_utils import UNREACHABLE_BROKER, broker_at
from tests.conftest import assert_error, queued_messages

pytestmark = pytest.mark.django_db

SCHEDULE_FIELDS = {"name", "task", "description", "enabled", "kind", "expression", "timezone",
                   "edited", "expires_seconds", "missed", "last_run", "next_run"}
RUN_FIELDS = {"slot", "trigger", "outcome", "reason", "started_at", "finished_at",
              "duration_ms", "worker", "task_id", "result", "error"}


@pytest.fixture
def reader(make_client):
    return make_client(["schedules:read"], name="reader")


@pytest.fixture
def writer(make_client):
    return make_client(["schedules:write"], name="writer")


@pytest.fixture(autouse=True)
def _synced():
    schedules_sync(reset=True)


def _run(schedule: str, slot: dt.datetime, outcome=RunOutcome.SUCCEEDED, **fields):
    now = timezone.now()
    return ScheduleRun.objects.create(schedule=schedule, slot=slot, outcome=outcome,
                                      started_at=now, finished_at=now, duration_ms=12, **fields)


def test_the_list_has_every_declared_schedule_with_its_last_and_next_run(reader):
    slot = dt.datetime(2026, 11, 28, 3, 0, tzinfo=dt.UTC)
    _run("outbox-relay", slot - dt.timedelta(seconds=5))
    _run("outbox-relay", slot, result={"sent": 3}, worker="w1")

    body = reader.get(reverse("schedule-list")).json()

    assert [s["name"] for s in body] == [s.name for s in SCHEDULES]
    relay = next(s for s in body if s["name"] == "outbox-relay")
    assert set(relay) == SCHEDULE_FIELDS
    assert relay["enabled"] is True and relay["kind"] == "interval"
    assert relay["expression"] == "every 5s" and relay["timezone"] == "UTC"
    assert relay["edited"] is False and relay["missed"] in ("skip", "run_once")
    assert set(relay["last_run"]) == RUN_FIELDS
    assert relay["last_run"]["slot"] == "2026-11-28T03:00:00Z"
    assert relay["last_run"]["outcome"] == "succeeded"
    assert relay["last_run"]["duration_ms"] == 12 and relay["last_run"]["result"] == {"sent": 3}
    next_run = dt.datetime.fromisoformat(relay["next_run"])
    assert timezone.now() < next_run <= timezone.now() + dt.timedelta(seconds=5)
    assert next_run.timestamp() % 5 == 0


def test_an_operators_edit_shows_as_edited_and_pausing_drops_the_next_run(reader, writer):
    task = PeriodicTask.objects.get(name=MANAGED_PREFIX + "orphan-rescue")
    task.interval, _ = IntervalSchedule.objects.get_or_create(every=1,
                                                              period=IntervalSchedule.MINUTES)
    task.save()

    paused = writer.post(reverse("schedule-pause", args=["orphan-rescue"]))

    assert paused.status_code == 200
    body = paused.json()
    assert body["enabled"] is False and body["next_run"] is None
    assert body["expression"] == "every 60s" and body["edited"] is True
    task.refresh_from_db()
    assert task.enabled is False
    assert reader.get(reverse("schedule-detail", args=["orphan-rescue"])).json()[
        "enabled"] is False
    # pausing twice is the same answer
    assert writer.post(reverse("schedule-pause", args=["orphan-rescue"])).status_code == 200

    resumed = writer.post(reverse("schedule-resume", args=["orphan-rescue"])).json()
    assert resumed["enabled"] is True and resumed["next_run"] is not None
    task.refresh_from_db()
    assert task.enabled is True


def test_steering_tells_beat_the_schedules_changed(writer):
    from django_celery_beat.models import PeriodicTasks

    before = PeriodicTasks.last_change()
    writer.post(reverse("schedule-pause", args=["outbox-relay"]))
    assert PeriodicTasks.last_change() and PeriodicTasks.last_change() != before


def test_the_runs_are_newest_first_filterable_and_paged(reader):
    base = dt.datetime(2026, 11, 28, 0, 0, tzinfo=dt.UTC)
    for minute in range(5):
        _run("orphan-rescue", base + dt.timedelta(minutes=minute))
    _run("orphan-rescue", base + dt.timedelta(minutes=9), outcome=RunOutcome.SKIPPED,
         reason=SkipReason.OVERLAP)
    _run("outbox-relay", base)  # another schedule's

    url = reverse("schedule-runs", args=["orphan-rescue"])
    page = reader.get(url, {"limit": 4}).json()
    assert [r["slot"][11:16] for r in page["results"]] == ["00:09", "00:04", "00:03", "00:02"]
    rest = reader.get(page["next"]).json()
    assert [r["slot"][11:16] for r in rest["results"]] == ["00:01", "00:00"]
    assert rest["next"] is None

    skipped = reader.get(url, {"outcome": "skipped"}).json()["results"]
    assert [(r["outcome"], r["reason"]) for r in skipped] == [("skipped", "overlap")]
    assert reader.get(url, {"trigger": "manual"}).json()["results"] == []


@pytest.mark.parametrize("query", [{"outcome": "exploded"}, {"trigger": "cron"},
                                   {"limit": 0}, {"cursor": "!!!"}])
def test_bad_filters_are_422(reader, query):
    assert_error(reader.get(reverse("schedule-runs", args=["outbox-relay"]), query), 422)


@pytest.mark.parametrize("name", ["nightly-nothing", "outbox_relay"])
def test_an_unknown_schedule_is_404_everywhere(reader, writer, name):
    assert_error(reader.get(reverse("schedule-detail", args=[name])), 404, "not_found")
    assert_error(reader.get(reverse("schedule-runs", args=[name])), 404, "not_found")
    for action in ("schedule-pause", "schedule-resume", "schedule-run"):
        assert_error(writer.post(reverse(action, args=[name])), 404, "not_found")


def test_a_schedule_not_synced_yet_cannot_be_paused(writer, reader):
    PeriodicTask.objects.filter(name=MANAGED_PREFIX + "outbox-relay").delete()
    assert reader.get(reverse("schedule-detail", args=["outbox-relay"])).json()[
        "enabled"] is False
    assert_error(writer.post(reverse("schedule-pause", args=["outbox-relay"])), 409,
                 "schedule_not_synced")


def test_scopes(make_client, reader):
    nobody = make_client(["jobs:read"], name="nobody")
    assert_error(nobody.get(reverse("schedule-list")), 403)
    assert_error(reader.post(reverse("schedule-pause", args=["outbox-relay"])), 403)
    assert_error(reader.post(reverse("schedule-run", args=["outbox-relay"])), 403)
    assert reader.get(reverse("schedule-list")).status_code == 200


def test_run_now_sends_the_task_with_a_manual_slot(writer, broker):
    before = timezone.now().replace(microsecond=0)
    response = writer.post(reverse("schedule-run", args=["orphan-rescue"]))

    assert response.status_code == 202
    body = response.json()
    assert body["schedule"] == "orphan-rescue" and body["trigger"] == "manual"
    slot = dt.datetime.fromisoformat(body["slot"])
    assert before <= slot <= timezone.now()
    assert body["runs_url"].endswith("/api/v1/schedules/orphan-rescue/runs?trigger=manual")
    [message] = [m for m in queued_messages(broker, "maintenance")
                 if m["headers"]["id"] == body["task_id"]]
    assert message["headers"]["task"] == "conveyor.maintenance.rescue_orphans"
    assert message["headers"]["conveyor_trigger"] == "manual"
    assert dt.datetime.fromisoformat(message["headers"]["conveyor_slot"]) == slot


def test_run_now_with_the_broker_down_is_503_and_sends_nothing(writer):
    with broker_at(UNREACHABLE_BROKER):
        response = writer.post(reverse("schedule-run", args=["orphan-rescue"]))
    body = assert_error(response, 503, "service_unavailable")
    assert response["Retry-After"] and body["details"] == {"unavailable": "broker"}


@pytest.mark.django_db(transaction=True)
def test_run_now_runs_through_the_ledger(writer, celery_worker_thread):
    from tests.conftest import wait_for

    schedules_sync(reset=True)
    body = writer.post(reverse("schedule-run", args=["orphan-rescue"])).json()
    assert wait_for(lambda: ScheduleRun.objects.filter(
        schedule="orphan-rescue", trigger=RunTrigger.MANUAL,
        outcome=RunOutcome.SUCCEEDED).exists())
    run = ScheduleRun.objects.get(schedule="orphan-rescue", trigger=RunTrigger.MANUAL)
    assert run.task_id == body["task_id"] and run.result is not None
