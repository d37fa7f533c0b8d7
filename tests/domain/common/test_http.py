from datetime import timedelta
from email.utils import format_datetime

import pytest
from django.utils import timezone

from domain.common.errors import PermanentError, TransientError
from domain.common.http import raise_for_http_status, retry_after_seconds
from domain.jobs.retry import EXTERNAL_HTTP


@pytest.mark.parametrize("status", [200, 201, 204])
def test_success_passes(status):
    raise_for_http_status(status)


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408, 429])
def test_server_errors_and_later_are_transient(status):
    with pytest.raises(TransientError):
        raise_for_http_status(status)


@pytest.mark.parametrize("status", [301, 400, 401, 403, 404, 410, 422])
def test_redirects_and_client_errors_are_permanent(status):
    with pytest.raises(PermanentError):
        raise_for_http_status(status)


def test_retry_after_in_seconds_drives_the_countdown():
    with pytest.raises(TransientError) as caught:
        raise_for_http_status(429, {"Retry-After": "42"})
    assert caught.value.retry_after == 42
    assert EXTERNAL_HTTP.countdown(1, caught.value) == 42


def test_retry_after_as_http_date():
    when = format_datetime(timezone.now() + timedelta(seconds=120), usegmt=True)
    assert 100 <= retry_after_seconds(when) <= 121


@pytest.mark.parametrize("value", [None, "", "soon", "-5"])
def test_unusable_retry_after_is_ignored(value):
    assert retry_after_seconds(value) is None
