"""The door through which the admin's job page asks why a job is not running
(domain/jobs/explainer.py): the workers app installs the answer; without it the jobs app still
works and says it has none."""

import pytest
from django.urls import reverse

from domain.jobs import explainer as job_explainer
from domain.jobs.explainer import Explanation, JobExplainer, explainer, install_explainer
from tests.factories import JobFactory


@pytest.fixture
def restore_explainer():
    before = job_explainer.explainer()
    yield
    install_explainer(before, replace=True)


def test_the_workers_app_installs_its_explainer():
    from workers.explain import WorkersExplainer

    assert isinstance(explainer(), WorkersExplainer)


@pytest.mark.django_db
def test_without_the_workers_app_the_admin_says_there_is_no_explanation(operator,
                                                                        restore_explainer):
    # given the default explainer (what the jobs app has on its own)
    install_explainer(JobExplainer(), replace=True)
    job = JobFactory()
    assert explainer().explain(job) is None

    # then the job's page still renders, and says it has no explanation
    page = operator.get(reverse("admin:jobs_job_change", args=[job.pk]))
    assert page.status_code == 200
    assert "No explanation available" in page.content.decode()


@pytest.mark.django_db
def test_the_admin_shows_what_the_installed_explainer_answers(operator, restore_explainer):
    class Fixed(JobExplainer):
        def explain(self, job):
            return Explanation(reason="scheduled", message=f"Job {job.pk} waits for noon.")

    install_explainer(Fixed(), replace=True)
    job = JobFactory()
    page = operator.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()
    assert f"scheduled: Job {job.pk} waits for noon." in page


def test_a_second_explainer_is_refused_unless_replacing(restore_explainer):
    class Other(JobExplainer):
        pass

    with pytest.raises(RuntimeError, match="installed already"):
        install_explainer(Other())
    install_explainer(Other(), replace=True)
    assert isinstance(explainer(), Other)


@pytest.mark.django_db
def test_the_add_form_has_nothing_to_explain(operator):
    page = operator.get(reverse("admin:jobs_job_add"))
    assert page.status_code == 200
    assert "Why (not) running" in page.content.decode()
