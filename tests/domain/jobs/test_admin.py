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


