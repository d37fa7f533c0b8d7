import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import User
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from domain.access.audit import actor_for_command, actor_from_request, audit_record
from domain.access.models import ActorKind, ApiKey, AuditAction, AuditEntry
from domain.access.services import api_key_create
from domain.common.correlation import reset_correlation_id, set_correlation_id
from tests.audit_utils import summary, the_audit_entry
from tests.conftest import assert_changelist_loads, run_command

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


# --- Revoking keys is audited; the log's admin page is read only -------------------------------

def test_a_confirmed_admin_revoke_is_one_entry_counting_the_keys_it_revoked(operator):
    active, _ = api_key_create(name="old-ci", scopes=["jobs:read"])
    revoked, _ = api_key_create(name="older-ci", scopes=["jobs:read"])
    ApiKey.objects.filter(pk=revoked.pk).update(revoked_at=timezone.now())
    selection = {"action": "revoke", ACTION_CHECKBOX_NAME: [str(active.pk), str(revoked.pk)]}
    url = reverse("admin:access_apikey_changelist")

    operator.post(url, {**selection, "index": "0"})  # the confirmation page only
    assert not AuditEntry.objects.exists()
    operator.post(url, {**selection, "post": "yes"})

    entry = the_audit_entry()
    assert summary(entry) == (ActorKind.USER, AuditAction.REVOKE, "api_keys", "2 selected", 1)
    assert entry.actor == "ops"


def test_the_revoke_command_is_one_entry_naming_the_key():
    key, _ = api_key_create(name="ci-bot", scopes=["jobs:read"])

    run_command("revoke_api_key", "ci-bot")

    entry = the_audit_entry()
    assert summary(entry) == (ActorKind.COMMAND, AuditAction.REVOKE, "api_key", str(key.pk), 1)
    assert entry.actor.endswith("(manage.py revoke_api_key)")
    assert entry.detail == {"name": "ci-bot", "prefix": key.prefix}


def test_the_audit_log_admin_lists_filters_and_searches_but_changes_nothing(operator):
    entry = audit_record(actor=actor_for_command("schedules pause"), action=AuditAction.PAUSE,
                         target_type="schedule", target="outbox-relay")
    audit_record(actor=actor_for_command("replay_jobs"), action=AuditAction.REPLAY,
                 target_type="jobs", target="status=dead kind=noop", count=12)
    changelist = reverse("admin:access_auditentry_changelist")

    assert_changelist_loads(operator, "access/auditentry")
    paused = operator.get(changelist + "?action__exact=pause&actor_kind__exact=command"
                          "&target_type__exact=schedule").content.decode()
    assert "outbox-relay" in paused and "status=dead kind=noop" not in paused
    found = operator.get(changelist + "?q=kind%3Dnoop").content.decode()
    assert "status=dead kind=noop" in found and "outbox-relay" not in found
    page = operator.get(reverse("admin:access_auditentry_change", args=[entry.pk]))
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    assert operator.get(reverse("admin:access_auditentry_add")).status_code == 403
    assert operator.post(reverse("admin:access_auditentry_delete", args=[entry.pk]),
                         {"post": "yes"}).status_code == 403
    assert AuditEntry.objects.count() == 2
