"""Every lever on a schedule (pause, resume, run now) writes one audit entry: from the API, from
`manage.py schedules`, and from django-celery-beat's admin page (its enable, disable, toggle
and run actions, and the `enabled` switch of its form); a refused one writes none."""

from __future__ import annotations

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse
from django_celery_beat.models import PeriodicTask

from domain.access.models import ActorKind, AuditAction, AuditEntry
from scheduler.schedules import periodic_task_name
from scheduler.sync import schedules_sync
from tests.audit_utils import key_actor, summary, the_audit_entry
from tests.conftest import run_command

pytestmark = pytest.mark.django_db

LEVERS = [("pause", AuditAction.PAUSE), ("resume", AuditAction.RESUME),
          ("run", AuditAction.RUN)]
CHANGELIST = "admin:django_celery_beat_periodictask_changelist"


@pytest.fixture(autouse=True)
def _synced():
    schedules_sync(reset=True)


def _task(name: str) -> PeriodicTask:
    return PeriodicTask.objects.get(name=periodic_task_name(name))


@pytest.mark.parametrize(("lever", "action"), LEVERS)
def test_an_api_lever_is_one_entry_naming_the_key(make_client, lever, action, broker):
    client = make_client(["schedules:write"], name="scheduler")

    response = client.post(reverse(f"schedule-{lever}", args=["queue-health"]))

    assert response.status_code in (200, 202), response.content
    entry = the_audit_entry()
    assert summary(entry) == (ActorKind.API_KEY, action, "schedule", "queue-health", 1)
    assert entry.actor == key_actor(client)
    if lever == "run":
        assert entry.detail == {"slot": response.json()["slot"],
                                "task_id": response.json()["task_id"]}


def test_a_refused_lever_writes_no_entry(make_client):
    client = make_client(["schedules:write"])
    assert client.post(reverse("schedule-pause", args=["nope"])).status_code == 404
    assert not AuditEntry.objects.exists()


@pytest.mark.parametrize(("lever", "action"), LEVERS)
def test_a_command_lever_is_one_entry_naming_the_command(lever, action, broker):
    run_command("schedules", lever, "queue-health")

    entry = the_audit_entry()
    assert summary(entry) == (ActorKind.COMMAND, action, "schedule", "queue-health", 1)
    assert entry.actor.endswith(f"(manage.py schedules {lever})")


@pytest.mark.parametrize(("admin_action", "action", "count"), [
    ("disable_tasks", AuditAction.PAUSE, 2),   # both were enabled
    ("enable_tasks", AuditAction.RESUME, 0),   # both were enabled already
    ("run_tasks", AuditAction.RUN, 2),
])
def test_an_admin_action_is_one_entry_for_the_schedules_it_changed(operator, broker,
                                                                   admin_action, action, count):
    tasks = [_task("queue-health"), _task("outbox-relay")]

    operator.post(reverse(CHANGELIST), {
        "action": admin_action, ACTION_CHECKBOX_NAME: [str(t.pk) for t in tasks]})

    entry = the_audit_entry()
    assert summary(entry) == (ActorKind.USER, action, "schedules", "2 selected", count)
    assert sorted(entry.detail["names"]) == ["outbox-relay", "queue-health"]


def test_a_toggle_is_a_pause_and_a_resume(operator):
    on, off = _task("queue-health"), _task("outbox-relay")
    PeriodicTask.objects.filter(pk=off.pk).update(enabled=False)

    operator.post(reverse(CHANGELIST), {
        "action": "toggle_tasks", ACTION_CHECKBOX_NAME: [str(on.pk), str(off.pk)]})

    entries = {e.action: e for e in AuditEntry.objects.all()}
    assert set(entries) == {AuditAction.PAUSE, AuditAction.RESUME}
    assert entries[AuditAction.PAUSE].detail["names"] == ["queue-health"]
    assert entries[AuditAction.RESUME].detail["names"] == ["outbox-relay"]
    assert {e.count for e in entries.values()} == {1}


def test_the_forms_enabled_switch_is_a_pause(operator):
    task = _task("queue-health")
    page = operator.get(reverse("admin:django_celery_beat_periodictask_change",
                                args=[task.pk]))
    form = page.context["adminform"].form
    # the form as the page shows it, posted back with `enabled` unticked (not posted)
    data = {name: form[name].value() for name in form.fields if name != "enabled"}
    data = {name: value for name, value in data.items() if value not in (None, False)}

    response = operator.post(reverse("admin:django_celery_beat_periodictask_change",
                                     args=[task.pk]), {**data, "_save": "Save"})

    assert response.status_code == 302, response.context["adminform"].form.errors
    assert not PeriodicTask.objects.get(pk=task.pk).enabled
    entry = the_audit_entry()
    assert summary(entry) == (ActorKind.USER, AuditAction.PAUSE, "schedule", "queue-health", 1)
