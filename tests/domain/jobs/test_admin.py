"""The jobs admin: lists and searches jobs and attempts, shows a job's attempts, needs a login;
its "Replay selected" and "Cancel selected" ask first and then act set-wise."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from pytest_django.asserts import assertContains

from domain.jobs.models import Job, JobStatus
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


# --- "Replay selected" and "Cancel selected": a confirmation page, then set-wise --------------

CHANGELIST = "admin:jobs_job_changelist"


def _jobs(count: int, status: str) -> list[Job]:
    now = timezone.now()
    return Job.objects.bulk_create(
        Job(kind="noop", params={}, max_attempts=5, status=status, created_at=now,
            finished_at=now if status in (JobStatus.DEAD, JobStatus.CANCELLED) else None)
        for _ in range(count))


def _act(operator, action: str, jobs: list[Job], *, confirm: bool, query: str = "",
         select_across: bool = False):
    """POST an action from the job list, as the list's form (or the confirmation's) does."""
    data = {"action": action, "_selected_action": [str(job.pk) for job in jobs],
            "select_across": "1" if select_across else "0"}
    if confirm:
        data["post"] = "yes"
    else:
        data["index"] = "0"
    return operator.post(reverse(CHANGELIST) + query, data)


def _statuses(jobs: list[Job]) -> list[str]:
    by_id = dict(Job.objects.filter(pk__in=[j.pk for j in jobs]).values_list("pk", "status"))
    return [by_id[job.pk] for job in jobs]


@pytest.mark.parametrize(("action", "eligible", "other", "verb"), [
    ("replay_jobs", [JobStatus.DEAD, JobStatus.CANCELLED], JobStatus.RUNNING, "Replay"),
    ("cancel_jobs", [JobStatus.QUEUED, JobStatus.RETRYING], JobStatus.SUCCEEDED, "Cancel"),
])
def test_an_action_asks_first_with_the_counts_and_changes_nothing(operator, action, eligible,
                                                                  other, verb):
    # given jobs the action changes and one it leaves alone
    jobs = _jobs(2, eligible[0]) + _jobs(1, eligible[1]) + _jobs(1, other)
    before = _statuses(jobs)

    # when the operator runs the action on them (before: done at once)
    response = _act(operator, action, jobs, confirm=False)

    # then a confirmation page counts them by status and posts the same selection back
    assert response.status_code == 200
    assertContains(response, f"<title>{verb} 3 job(s)? | Django site admin</title>", html=True)
    assertContains(response, "<strong>4</strong>", html=True)
    assertContains(response, "<strong>3</strong>", html=True)
    assertContains(response, f"<tr><td>{other}</td><td>1</td><td>left as it is</td></tr>",
                   html=True)
    assertContains(response, '<input type="hidden" name="post" value="yes">', html=True)
    assertContains(response, f'<input type="hidden" name="action" value="{action}">', html=True)
    for job in jobs:
        assertContains(response, f'<input type="hidden" name="_selected_action" '
                       f'value="{job.pk}">', html=True)
    # and nothing changed yet
    assert _statuses(jobs) == before


def test_confirmed_replay_replays_dead_and_cancelled_and_leaves_the_rest(
        operator, django_capture_on_commit_callbacks):
    # given dead, cancelled and running jobs
    dead, cancelled, running = _jobs(2, JobStatus.DEAD), _jobs(1, JobStatus.CANCELLED), \
        _jobs(1, JobStatus.RUNNING)

    # when the operator confirms "Replay selected" on all of them
    with django_capture_on_commit_callbacks(execute=True):
        response = operator.post(*_confirmed("replay_jobs", dead + cancelled + running),
                                 follow=True)

    # then the dead and cancelled run again (handed to the broker), the running one is left,
    # and the messages say so
    assert _statuses(dead + cancelled) == [JobStatus.QUEUED] * 3
    assert _statuses(running) == [JobStatus.RUNNING]
    replayed = Job.objects.filter(pk__in=[j.pk for j in dead + cancelled])
    assert all(j.replays == 1 and j.enqueued_at is not None for j in replayed)
    page = response.content.decode()
    assert "Replayed 3 job(s)." in page and "Left as they were: 1 running." in page


def test_confirmed_cancel_cancels_queued_and_retrying_and_leaves_the_rest(operator):
    # given queued, retrying and succeeded jobs, one of an event
    event = EventFactory()
    queued = [*_jobs(1, JobStatus.QUEUED), JobFactory(event=event, status=JobStatus.QUEUED)]
    retrying, done = _jobs(1, JobStatus.RETRYING), _jobs(1, JobStatus.SUCCEEDED)

    # when the operator confirms "Cancel selected"
    response = operator.post(*_confirmed("cancel_jobs", queued + retrying + done), follow=True)

    # then the queued and retrying are cancelled, the event rolled up, the succeeded left
    assert _statuses(queued + retrying) == [JobStatus.CANCELLED] * 3
    assert _statuses(done) == [JobStatus.SUCCEEDED]
    event.refresh_from_db()
    assert event.status == "completed" and event.completed_at is not None
    assert "Cancelled 3 job(s)." in response.content.decode()


def _confirmed(action: str, jobs: list[Job]) -> tuple[str, dict]:
    return reverse(CHANGELIST), {"action": action, "post": "yes", "select_across": "0",
                                 "_selected_action": [str(job.pk) for job in jobs]}


def test_an_action_with_nothing_to_change_says_so_without_a_page(operator):
    # given only running jobs
    running = _jobs(2, JobStatus.RUNNING)

    # when the operator asks to replay them
    response = _act(operator, "replay_jobs", running, confirm=False)

    # then it is back to the list with a warning, and nothing changed
    assert response.status_code == 302
    follow = operator.get(response["Location"]).content.decode()
    assert "Nothing to replay: none of the 2 selected job(s) is dead or cancelled." in follow
    assert _statuses(running) == [JobStatus.RUNNING] * 2


@pytest.mark.parametrize(("action", "status", "after"), [
    ("replay_jobs", JobStatus.DEAD, JobStatus.QUEUED),
    ("cancel_jobs", JobStatus.QUEUED, JobStatus.CANCELLED),
])
def test_select_across_pages_asks_and_acts_in_queries_that_do_not_grow_with_the_rows(
        operator, django_assert_max_num_queries, django_capture_on_commit_callbacks,
        action, status, after):
    # given few and many jobs in the status the list is filtered on, and others outside it
    query = f"?status__exact={status}"
    outside = _jobs(3, JobStatus.SUCCEEDED)
    queries = {}
    for rows in (3, 400):
        jobs = _jobs(rows, status)
        first_page = jobs[:1]  # the ticked box; "select all N" sends select_across=1

        # when the operator selects all across pages, sees the page, and confirms
        with CaptureQueriesContext(connection) as asked:
            page = _act(operator, action, first_page, confirm=False, query=query,
                        select_across=True)
        with django_assert_max_num_queries(12), \
                CaptureQueriesContext(connection) as done, \
                django_capture_on_commit_callbacks(execute=True):
            _act(operator, action, first_page, confirm=True, query=query, select_across=True)
        queries[rows] = (len(asked), len(done))

        # then the page counted every job the filter matches, not the one ticked
        assertContains(page, f"<strong>{rows}</strong>", html=True)
        assertContains(page, "every job matching the current filters, on all pages")
        assertContains(page, '<input type="hidden" name="select_across" value="1">', html=True)
        # and the confirmed action changed all of them, and nothing outside the filter
        assert set(_statuses(jobs)) == {after}
        assert set(_statuses(outside)) == {JobStatus.SUCCEEDED}
        Job.objects.filter(pk__in=[job.pk for job in jobs]).delete()  # the next round's own

    # and the page and the action took as many queries for 400 jobs as for 3
    assert queries[400] == queries[3], queries
