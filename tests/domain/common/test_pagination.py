"""Cursor pagination answers a page the caller asked for, or 422: DRF's own reads a cursor that
decodes to nothing it knows as the first page and an unusable `limit` as the default size, and
a caller cannot tell such a page from the one it meant. Exercised through GET /api/v1/jobs, the
paginated list."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.conftest import assert_error
from tests.factories import JobFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def five_jobs(client_all) -> list[str]:
    """Five of the caller's jobs, newest first."""
    now = timezone.now()
    jobs = [JobFactory(api_key=client_all.api_key, created_at=now - timedelta(seconds=i))
            for i in range(5)]
    return [str(job.pk) for job in jobs]


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize("cursor", [
    pytest.param("!!!!", id="no-base64-letter"),       # b64decode dropped it all: page 1
    pytest.param("%%%", id="percent-signs"),
    pytest.param("YWJj", id="base64-of-abc"),          # decodes to a token DRF ignores
    pytest.param("", id="empty"),
    pytest.param(_b64("x=1"), id="unknown-token"),
    pytest.param(_b64("o=1&o=2"), id="repeated-token"),
    pytest.param(_b64("o=-1"), id="negative-offset"),
    pytest.param(_b64("o=abc"), id="offset-not-a-number"),
    pytest.param(_b64("r=2"), id="direction-not-0-or-1"),
    pytest.param(_b64("r=1") + "!", id="trailing-garbage"),
    pytest.param(_b64("\u00e9=1"), id="not-ascii"),
])
def test_a_cursor_that_is_no_cursor_is_422(client_all, five_jobs, cursor):
    # when the list is asked for with a cursor the server never wrote (before: page 1, 200)
    response = client_all.get(reverse("job-list"), {"cursor": cursor})

    # then it is 422 invalid_cursor, naming the cursor
    error = assert_error(response, 422, "invalid_cursor")
    assert error["details"] == {"cursor": cursor}


def test_the_cursors_the_server_writes_still_page_both_ways(client_all, five_jobs):
    # given the first page of two, and the `next` link it carries
    first = client_all.get(reverse("job-list"), {"limit": 2}).json()
    second = client_all.get(first["next"]).json()

    # when the second page's `previous` link is followed
    back = client_all.get(second["previous"])

    # then the pages are the jobs in order, and `previous` leads back to the first page
    assert [j["id"] for j in first["results"] + second["results"]] == five_jobs[:4]
    assert back.status_code == 200, back.content
    assert [j["id"] for j in back.json()["results"]] == five_jobs[:2]


@pytest.mark.parametrize("limit", ["-1", "0", "abc", "", "1.5", "501", "99999999999999999999"])
def test_a_limit_that_is_no_page_size_is_422(client_all, five_jobs, limit):
    # when the list is asked for with an unusable limit (before: 50 silently, or 500 capped)
    response = client_all.get(reverse("job-list"), {"limit": limit})

    # then it is 422 validation_failed, the limit's error under details.limit
    error = assert_error(response, 422, "validation_failed")
    assert list(error["details"]) == ["limit"]


@pytest.mark.parametrize(("limit", "count"), [("1", 1), ("500", 5), (None, 5)])
def test_a_limit_from_1_to_500_sizes_the_page(client_all, five_jobs, limit, count):
    # when the list is asked for with a limit in range, or none (50)
    response = client_all.get(reverse("job-list"), {"limit": limit} if limit else {})

    # then the page holds that many jobs
    assert response.status_code == 200, response.content
    assert len(response.json()["results"]) == count
