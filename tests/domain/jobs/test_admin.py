"""The admin pages load for an operator: jobs, attempts, API keys, events, products, schedules."""

import pytest
from django.urls import reverse

from tests.factories import EventFactory, JobFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("model", ["events/event", "jobs/job", "jobs/jobattempt",
                                   "access/apikey", "catalog/product",
                                   "django_celery_beat/periodictask"])
def test_changelists_load_with_filters(operator, model):
    EventFactory()
    JobFactory(status="dead")
    app_label, model_name = model.split("/")
    url = reverse(f"admin:{app_label}_{model_name}_changelist")
    assert operator.get(url).status_code == 200
    assert operator.get(url + "?q=x").status_code == 200


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
