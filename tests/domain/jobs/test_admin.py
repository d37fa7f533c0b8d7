"""The jobs admin: lists and searches jobs and attempts, shows a job's attempts, needs a login."""

import pytest
from django.urls import reverse

from tests.conftest import assert_changelist_loads
from tests.factories import EventFactory, JobFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("model", ["jobs/job", "jobs/jobattempt"])
def test_changelists_load_with_filters(operator, model):
    JobFactory(event=EventFactory(), status="dead")
    assert_changelist_loads(operator, model)


def test_job_change_page_shows_its_attempts(operator):
    job = JobFactory()
    response = operator.get(reverse("admin:jobs_job_change", args=[job.pk]))
    assert response.status_code == 200
    assert str(job.pk) in response.content.decode()


def test_admin_requires_login(client):
    response = client.get(reverse("admin:jobs_job_changelist"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_jobs_are_found_by_their_event_id(operator):
    # given two events' jobs
    event = EventFactory()
    mine, other = JobFactory(event=event, handler="a"), JobFactory(event=EventFactory())

    # when an operator searches the jobs by the event's id
    response = operator.get(reverse("admin:jobs_job_changelist") + f"?q={event.pk}")

    # then the event's job is listed, and the other is not
    page = response.content.decode()
    assert response.status_code == 200
    assert str(mine.pk) in page and str(other.pk) not in page
