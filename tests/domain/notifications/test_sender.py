"""How a receiver's answer is judged: 2xx delivered; 408/425/429/5xx retry with Retry-After;
410 gone; other 3xx and 4xx permanent. The same rules on a real receiver are in
tests/flows/test_webhook_delivery.py."""

import pytest

from domain.common.errors import PermanentError, TransientError
from domain.notifications.sender import EndpointGone, _judge


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_2xx_is_delivered(status):
    # when a 2xx is judged, then nothing is raised
    _judge(status, {})


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504, 599])
def test_retry_later_answers_and_5xx_are_transient(status):
    # when it is judged, then it is transient, without a Retry-After of its own
    with pytest.raises(TransientError) as raised:
        _judge(status, {})
    assert raised.value.retry_after is None


def test_retry_after_in_seconds_is_carried():
    # given a 429 asking for 2 seconds
    # when it is judged, then the error carries the 2 seconds for the retry policy
    with pytest.raises(TransientError) as raised:
        _judge(429, {"Retry-After": "2"})
    assert raised.value.retry_after == 2.0


def test_410_is_gone():
    # when a 410 is judged, then it is EndpointGone, which is permanent
    with pytest.raises(EndpointGone):
        _judge(410, {})
    assert issubclass(EndpointGone, PermanentError)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_are_permanent_and_say_so(status):
    # when a redirect is judged, then it is a permanent failure that names why
    with pytest.raises(PermanentError, match="redirects are not followed") as raised:
        _judge(status, {"Location": "http://10.0.0.1/"})
    assert not isinstance(raised.value, EndpointGone)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 409, 413, 422])
def test_other_4xx_are_permanent(status):
    with pytest.raises(PermanentError) as raised:
        _judge(status, {})
    assert not isinstance(raised.value, (EndpointGone, TransientError))
