"""The operator dashboard in a real browser: headless Chromium driven by Selenium against the
live server, logging in through the admin's login form as each role.

- A viewer sees the charts, the dead letters and the audit log, gets no replay form, and a
  POST forged from its own logged-in page (with a valid CSRF token) is refused with 403 and
  changes nothing; there is no pause or resume button either.
- An operator runs the dry run (the count shows), confirms, and the dead jobs of that filter,
  and only those, are queued again; the page then lists the audit entry. Then it pauses a
  queue from its row: the queue is paused and the pause audited.

Needs Debian's Chromium and its driver (`apt-get install chromium chromium-driver`); without
them the test skips, saying so. Selenium is pointed at /usr/bin/chromedriver, so its
selenium-manager downloads nothing; the flags keep Chromium off the network (as in
tests/config/test_docs_browser.py). Screenshots of each step land in the test's tmp_path.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.ui import WebDriverWait

from domain.access.audit import Actor, audit_record
from domain.access.models import AuditAction, AuditEntry
from domain.jobs.models import Job, JobStatus, QueuePause
from scheduler.dashboard.roles import OPERATORS, VIEWERS
from scheduler.models import RunOutcome, ScheduleRun
from tests.factories import JobFactory

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1400,2400",
]
PASSWORD = "browser-pw-1"
WAIT = 60  # seconds: the machine is shared and slow at times; never a timing assertion

pytestmark = [
    pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                       reason="needs Debian's Chromium and its driver at /usr/bin/chromium and "
                       "/usr/bin/chromedriver (apt-get install chromium chromium-driver)"),
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)),
                              options=options)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def seeded(django_user_model):
    """Two users, one per role; dead jobs of two kinds; an hour of health checks, some
    throughput and an audit entry."""
    now = timezone.now()
    for name, group in (("vera", VIEWERS), ("otto", OPERATORS)):
        user = django_user_model.objects.create_user(name, password=PASSWORD, is_staff=True)
        user.groups.add(Group.objects.get(name=group))
    dead = [JobFactory(kind="noop", status=JobStatus.DEAD,
                       created_at=now - dt.timedelta(hours=2),
                       finished_at=now - dt.timedelta(minutes=50 - i),
                       error={"type": "ConnectionError", "message": "refused"})
            for i in range(3)]
    other = [JobFactory(kind="noop", status=JobStatus.DEAD, finished_at=now,
                        error={"type": "ValueError", "message": "bad input"}),
             JobFactory(kind="cache_invalidation", status=JobStatus.DEAD, finished_at=now,
                        error={"type": "ConnectionError", "message": "refused"})]
    for minutes in range(0, 60, 10):
        slot = now - dt.timedelta(minutes=60 - minutes)
        ScheduleRun.objects.create(
            schedule="queue-health", slot=slot, started_at=slot, finished_at=slot,
            outcome=RunOutcome.SUCCEEDED, duration_ms=12,
            result={"queues": {"events": {"depth": minutes}, "cache": {"depth": 1}}})
        JobFactory(kind="noop", status=JobStatus.SUCCEEDED, created_at=slot,
                   finished_at=slot + dt.timedelta(seconds=1))
    audit_record(actor=Actor("command", "root (manage.py queues)"), action=AuditAction.PAUSE,
                 target_type="queue", target="bulk")
    return {"dead": dead, "other": other}


def _log_in(browser, live_server, username: str) -> None:
    browser.delete_all_cookies()
    browser.get(f"{live_server.url}/admin/login/?next=/admin/dashboard/")
    browser.find_element(By.ID, "id_username").send_keys(username)
    browser.find_element(By.ID, "id_password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "#login-form [type=submit]").click()
    WebDriverWait(browser, WAIT).until(
        expected_conditions.presence_of_element_located((By.ID, "panel-audit")))


def _text(browser, css: str) -> str:
    return browser.find_element(By.CSS_SELECTOR, css).text


def _statuses(jobs: list[Job]) -> list[str]:
    return [Job.objects.get(pk=job.pk).status for job in jobs]


def test_a_viewer_sees_the_dashboard_and_cannot_act(browser, live_server, seeded, tmp_path):
    _log_in(browser, live_server, "vera")
    browser.save_screenshot(str(tmp_path / "viewer.png"))

    # the charts are drawn in the page (inline SVG) and visible
    charts = browser.find_elements(By.CSS_SELECTOR, "svg.chart")
    assert len(charts) == 2 and all(c.is_displayed() for c in charts)
    assert browser.find_elements(By.CSS_SELECTOR, "#panel-queues svg polyline")
    assert browser.find_elements(By.CSS_SELECTOR, "#panel-throughput svg rect.bar")
    # the dead letters, the schedules and the audit log are listed
    assert _text(browser, '#dead-table tr[data-kind="noop"] .dead-count') == "4"
    assert "queue-health" in _text(browser, "#schedule-table")
    assert "root (manage.py queues)" in _text(browser, "#audit-table")
    # and there is nothing to act with
    assert not browser.find_elements(By.ID, "replay-form")
    assert not browser.find_elements(By.CSS_SELECTOR, "form.queue-action")
    assert "Read-only" in _text(browser, "#content-main")

    # a POST forged from the viewer's own page, CSRF token and all, is refused
    status = browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const token = document.querySelector('input[name=csrfmiddlewaretoken]').value;
        const body = new URLSearchParams({csrfmiddlewaretoken: token, action: 'replay',
            kind: 'noop', event_type: '', error_type: '', since: '',
            until: new Date().toISOString(), matched: '3'});
        fetch('/admin/dashboard/', {method: 'POST', body: body, credentials: 'same-origin'})
            .then(r => done(r.status), e => done(String(e)));
    """)
    assert status == 403
    assert _statuses(seeded["dead"] + seeded["other"]) == [JobStatus.DEAD] * 5
    assert AuditEntry.objects.count() == 1


def test_an_operator_replays_dead_jobs_by_filter(browser, live_server, seeded, tmp_path):
    _log_in(browser, live_server, "otto")

    # the dry run: noop jobs that died of ConnectionError in the last 24 hours
    Select(browser.find_element(By.ID, "id_kind")).select_by_value("noop")
    browser.find_element(By.ID, "id_error_type").send_keys("ConnectionError")
    Select(browser.find_element(By.ID, "id_window")).select_by_value("24h")
    browser.find_element(By.ID, "replay-preview").click()
    matched = WebDriverWait(browser, WAIT).until(
        expected_conditions.presence_of_element_located((By.ID, "replay-matched")))
    assert matched.text == "3 jobs match"
    browser.save_screenshot(str(tmp_path / "operator-dry-run.png"))
    assert _statuses(seeded["dead"]) == [JobStatus.DEAD] * 3  # a dry run changes nothing

    # the confirmation replays them, and only them
    browser.find_element(By.ID, "replay-confirm-button").click()
    WebDriverWait(browser, WAIT).until(
        expected_conditions.text_to_be_present_in_element((By.CSS_SELECTOR, ".messagelist"),
                                                          "Replayed 3 dead jobs"))
    browser.save_screenshot(str(tmp_path / "operator-replayed.png"))
    # (back in the queue, each replayed once; a worker the suite started earlier may already
    # have run them)
    replayed = Job.objects.filter(pk__in=[job.pk for job in seeded["dead"]])
    assert {(job.status in (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCEEDED),
             job.replays) for job in replayed} == {(True, 1)}
    assert _statuses(seeded["other"]) == [JobStatus.DEAD] * 2

    # and the page lists who did it, to how many
    first_row = browser.find_element(By.CSS_SELECTOR, "#audit-table tbody tr").text
    assert "otto" in first_row and "Replay" in first_row and "kind=noop" in first_row
    assert first_row.rstrip().endswith("3")
    assert _text(browser, '#dead-table tr[data-kind="noop"] .dead-count') == "1"

    # pausing a queue from its row: paused in the database and on the page, and audited
    browser.find_element(By.CSS_SELECTOR, 'tr[data-queue="bulk"] input[name=reason]') \
        .send_keys("reindexing")
    browser.find_element(By.ID, "pause-bulk").click()
    WebDriverWait(browser, WAIT).until(
        expected_conditions.presence_of_element_located((By.ID, "resume-bulk")))
    assert QueuePause.objects.get().queue == "bulk"
    assert _text(browser, 'tr[data-queue="bulk"] .queue-state') == "paused"
    assert "reindexing" in _text(browser, "#paused-queues")
    first_row = browser.find_element(By.CSS_SELECTOR, "#audit-table tbody tr").text
    assert "otto" in first_row and "Pause" in first_row and "queue: bulk" in first_row
    browser.save_screenshot(str(tmp_path / "operator-paused.png"))
