"""The bulk-runs admin: runs listed with their progress, read only, steered by actions that go
through the same services as the API."""

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from domain.bulk.models import BulkRequest, BulkRun, BulkRunStatus
from domain.bulk.services import bulk_run_start
from domain.jobs.models import Job, JobStatus
from tests.conftest import assert_changelist_loads
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db
CHANGELIST = "admin:bulk_bulkrun_changelist"


def _run(**args) -> BulkRun:
    ProductFactory(category="tea")
    return bulk_run_start(operation="catalog.reprice",
                          args={"category": "tea", "percent": 5, **args})


def _act(operator, action: str, runs: list[BulkRun]):
    return operator.post(reverse(CHANGELIST), {
        "action": action, ACTION_CHECKBOX_NAME: [str(r.pk) for r in runs]}, follow=True)


def test_the_list_loads_with_progress_and_a_search(operator):
    run = _run()
    BulkRun.objects.filter(pk=run.pk).update(rows_matched=200, rows_done=50,
                                             elapsed_seconds=0.5)
    assert_changelist_loads(operator, "bulk/bulkrun")
    page = operator.get(reverse(CHANGELIST)).content.decode()
    assert "25.0%" in page and "50 / 200" in page and ">100<" in page  # rows/s


def test_a_run_page_is_read_only(operator):
    run = _run()
    page = operator.get(reverse("admin:bulk_bulkrun_change", args=[run.pk]))
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert operator.get(reverse("admin:bulk_bulkrun_add")).status_code == 403


def test_pause_resume_and_cancel_actions_steer_through_the_services(operator):
    # given a queued run (no worker has its job)
    run = _run()

    # when an operator pauses it, its job is cancelled and the run is paused at once
    page = _act(operator, "pause_runs", [run]).content.decode()
    run.refresh_from_db()
    assert run.status == BulkRunStatus.PAUSED and "Paused:" in page
    assert Job.objects.get(pk=run.job_id).status == JobStatus.CANCELLED

    # when it is resumed, a new job carries it from its checkpoint
    first_job = run.job_id
    _act(operator, "resume_runs", [run])
    run.refresh_from_db()
    assert run.status == BulkRunStatus.QUEUED and run.job_id != first_job

    # when it is cancelled, it ends; resuming it again is refused with the reason shown
    _act(operator, "cancel_runs", [run])
    run.refresh_from_db()
    assert run.status == BulkRunStatus.CANCELLED and run.requested == BulkRequest.NONE
    page = _act(operator, "resume_runs", [run]).content.decode()
    assert "Not resumed" in page and "cancelled bulk run cannot be resumed" in page
