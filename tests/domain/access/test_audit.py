import pytest
from django.contrib.auth.models import User
from django.test import RequestFactory

from domain.access.audit import actor_for_command, actor_from_request, audit_record
from domain.access.models import ActorKind, AuditAction, AuditEntry
from domain.access.services import api_key_create
from domain.common.correlation import reset_correlation_id, set_correlation_id

pytestmark = pytest.mark.django_db


def test_an_api_keys_action_names_the_key_and_keeps_the_correlation_id():
    key, _ = api_key_create(name="ops-bot", scopes=["admin"])
    request = RequestFactory().post("/api/v1/queues/bulk/pause")
    request.auth = key
    token = set_correlation_id("corr-123")
    try:
        entry = audit_record(actor=actor_from_request(request), action=AuditAction.PAUSE,
                             target_type="queue", target="bulk", detail={"reason": "deploy"})
    finally:
        reset_correlation_id(token)
    entry.refresh_from_db()
    assert (entry.actor_kind, entry.actor) == (ActorKind.API_KEY, f"ops-bot ({key.prefix}…)")
    assert (entry.action, entry.target_type, entry.target, entry.count) == (
        "pause", "queue", "bulk", 1)
    assert entry.detail == {"reason": "deploy"}
    assert entry.correlation_id == "corr-123"


def test_an_admin_users_action_names_the_user():
    request = RequestFactory().post("/admin/")
    request.user = User.objects.create_user("olga", password="x")
    entry = audit_record(actor=actor_from_request(request), action=AuditAction.REPLAY,
                         target_type="jobs", target="status=dead kind=noop", count=42)
    assert (entry.actor_kind, entry.actor, entry.count) == (ActorKind.USER, "olga", 42)
    assert entry.correlation_id == ""


def test_a_command_names_the_os_user_and_the_command():
    actor = actor_for_command("queues pause")
    assert actor.kind == ActorKind.COMMAND
    assert actor.name.endswith("(manage.py queues pause)")
    audit_record(actor=actor, action=AuditAction.PAUSE, target_type="queue", target="bulk")
    assert AuditEntry.objects.get().actor == actor.name
