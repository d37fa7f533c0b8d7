"""The paused queues in the admin: "Add" pauses a queue, "Resume selected queues" (or deleting
the row) resumes it, both through the services, audited as the admin user; Django's add and
delete permissions on the model decide who may."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from domain.access.models import AuditEntry
from domain.jobs.models import QueuePause
from tests.conftest import assert_changelist_loads

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:jobs_queuepause_changelist"


def test_an_operator_pauses_a_queue_with_the_add_form(operator):
    # the form offers the queues not paused yet
    QueuePause.objects.create(queue="cache", paused_by="someone")
    page = operator.get(reverse("admin:jobs_queuepause_add")).content.decode()
    assert 'value="bulk"' in page and 'value="cache"' not in page

    response = operator.post(reverse("admin:jobs_queuepause_add"),
                             {"queue": "bulk", "reason": "reindexing"})

    assert response.status_code == 302, response.content.decode()[-2000:]
    pause = QueuePause.objects.get(queue="bulk")
    assert (pause.paused_by, pause.reason) == ("ops", "reindexing")
    entry = AuditEntry.objects.get()
    assert (entry.actor_kind, entry.actor, entry.action, entry.target_type, entry.target) == (
        "user", "ops", "pause", "queue", "bulk")
    assert_changelist_loads(operator, "jobs/queuepause")


def test_an_operator_resumes_selected_queues_or_one_by_deleting_its_pause(operator):
    for queue in ("bulk", "cache", "events"):
        QueuePause.objects.create(queue=queue, paused_by="someone")

    response = operator.post(reverse(CHANGELIST), {
        "action": "resume_queues", "_selected_action": ["bulk", "cache"]})
    assert response.status_code == 302
    assert list(QueuePause.objects.values_list("queue", flat=True)) == ["events"]

    response = operator.post(reverse("admin:jobs_queuepause_delete", args=["events"]),
                             {"post": "yes"})
    assert response.status_code == 302
    assert not QueuePause.objects.exists()
    assert sorted(AuditEntry.objects.values_list("action", "target")) == [
        ("resume", "bulk"), ("resume", "cache"), ("resume", "events")]


def test_a_read_only_staff_user_sees_the_pauses_and_cannot_pause_or_resume(
        client, django_user_model):
    QueuePause.objects.create(queue="bulk", paused_by="someone")
    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_queuepause"))
    client.login(username="viewer", password="pw")

    page = client.get(reverse(CHANGELIST))
    assert page.status_code == 200 and "bulk" in page.content.decode()
    assert "resume_queues" not in page.content.decode()
    assert client.post(reverse("admin:jobs_queuepause_add"),
                       {"queue": "cache"}).status_code == 403
    client.post(reverse(CHANGELIST), {"action": "resume_queues",
                                      "_selected_action": ["bulk"]})
    assert QueuePause.objects.filter(queue="bulk").exists()
    assert not AuditEntry.objects.exists()
