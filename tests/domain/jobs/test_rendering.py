"""The job output serializer renders directly (for speed); its output must stay exactly what
DRF's declared fields produce, for every state a job can be in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.jobs.apis import JobOutputSerializer
from domain.jobs.models import JobStatus
from tests.conftest import drf_fields_output, drf_request
from tests.factories import EventFactory, JobFactory


@pytest.mark.django_db
@pytest.mark.parametrize("state", ["queued", "running", "retrying", "succeeded", "dead"])
def test_job_rendering_equals_the_declared_fields(state):
    # given a job in each state, with every optional field either set or empty
    t = datetime(2026, 11, 21, 8, 30, 15, 123456, tzinfo=UTC)
    extra = {
        "queued": {"run_at": t + timedelta(hours=1)},
        "running": {"started_at": t, "attempts": 1, "worker": "w@h"},
        "retrying": {"attempts": 2, "next_retry_at": t.replace(microsecond=0),
                     "error": {"type": "TimeoutError", "message": "slow"}},
        "succeeded": {"attempts": 1, "started_at": t, "finished_at": t + timedelta(seconds=1),
                      "result": {"ok": True, "n": [1, 2]}, "progress_done": 3,
                      "progress_total": 3},
        "dead": {"attempts": 5, "finished_at": t, "error": {"type": "ValueError",
                                                             "message": "bad"}},
    }[state]
    job = JobFactory(status=JobStatus(state), params={"keys": ["a"]}, event=EventFactory(),
                     handler="demo.noop", **extra)
    standalone = JobFactory(event=None)
    serializer = JobOutputSerializer(context={"request": drf_request()})

    # then the direct rendering equals DRF's, field for field
    for j in (job, standalone):
        j.refresh_from_db()
        assert serializer.to_representation(j) == drf_fields_output(serializer, j)
    assert serializer.to_representation(job)["url"] == (
        f"http://testserver/api/v1/jobs/{job.pk}")


