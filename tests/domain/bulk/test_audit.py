"""Every operator lever on a bulk run (pause, resume, cancel) writes one audit entry, from the
API and from the admin; a refused one writes none."""

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from domain.access.models import ActorKind, AuditAction, AuditEntry
from domain.bulk.models import BulkRun
from domain.bulk.services import bulk_run_pause, bulk_run_start
from tests.audit_utils import key_actor, summary, the_audit_entry
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db

# Each lever, and what the run must be for it to act: a queued run pauses, a paused one resumes
# or cancels.
LEVERS = [("pause", AuditAction.PAUSE, False), ("resume", AuditAction.RESUME, True),
          ("cancel", AuditAction.CANCEL, True)]


def _run(api_key=None, *, paused: bool) -> BulkRun:
    ProductFactory(category="tea")
    run = bulk_run_start(operation="catalog.reprice", args={"category": "tea", "percent": 5},
                         api_key=api_key)
    return bulk_run_pause(run=run) if paused else run


@pytest.mark.parametrize(("lever", "action", "paused"), LEVERS)
def test_an_api_lever_is_one_entry_naming_the_key(make_client, lever, action, paused):
    client = make_client(["bulk:write"], name="steerer")
    run = _run(client.api_key, paused=paused)

    assert client.post(reverse(f"bulk-run-{lever}", args=[run.pk])).status_code == 202

    entry = the_audit_entry()
    assert summary(entry) == (ActorKind.API_KEY, action, "bulk_run", str(run.pk), 1)
    assert entry.actor == key_actor(client)


def test_a_refused_lever_writes_no_entry(make_client):
    client = make_client(["bulk:write"])
    run = _run(client.api_key, paused=False)
    assert client.post(reverse("bulk-run-resume", args=[run.pk])).status_code == 409
    assert not AuditEntry.objects.exists()


@pytest.mark.parametrize(("lever", "action", "paused"), LEVERS)
def test_an_admin_lever_is_one_entry_for_the_runs_it_moved(operator, lever, action, paused):
    # (one run at a time holds the products: the first one ends before the second starts)
    done = _run(paused=False)
    BulkRun.objects.filter(pk=done.pk).update(status="succeeded", target="")
    runs = [_run(paused=paused), done]  # the one that ended is refused and left out

    operator.post(reverse("admin:bulk_bulkrun_changelist"), {
        "action": f"{lever}_runs", ACTION_CHECKBOX_NAME: [str(r.pk) for r in runs]})

    entry = the_audit_entry()
    assert summary(entry) == (ActorKind.USER, action, "bulk_runs", "2 selected", 1)
    assert entry.detail == {"ids": [str(r.pk) for r in runs], "refused": 1}
