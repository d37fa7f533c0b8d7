"""The per-endpoint rate limit's Lua script, against the real Redis: a sliding one-second
window shared by every caller, taken atomically, answering how long until the next slot."""

import threading
import time
import uuid

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry

from domain.notifications import ratelimit


def _take(endpoint, rate: int, wanted: int) -> tuple[int, float]:
    """How many slots `take` granted, and the wait it answered."""
    slots, wait = ratelimit.take(endpoint, rate, wanted)
    return len(slots), wait


def test_a_burst_gets_the_rate_and_learns_when_the_next_slot_frees():
    # given an endpoint allowed 3 messages a second, nothing sent yet
    endpoint = uuid.uuid4()

    # when 5 sends are asked for at once, then 1 more
    granted, wait = _take(endpoint, 3, 5)
    again, wait_again = _take(endpoint, 3, 1)

    # then 3 are granted, none after, and both answers say the window frees within a second
    # (and the margin a slot is held past it, WEBHOOK_RATE_MARGIN_SECONDS)
    window = 1.0 + settings.WEBHOOK_RATE_MARGIN_SECONDS
    assert granted == 3 and again == 0
    assert 0 < wait <= window and 0 < wait_again <= wait


def test_a_slot_frees_when_the_window_moves_on():
    # given an endpoint that used its 2 slots
    endpoint = uuid.uuid4()
    assert _take(endpoint, 2, 2)[0] == 2
    refused, wait = _take(endpoint, 2, 1)
    assert refused == 0

    # when the wait it was told has passed
    time.sleep(wait + 0.02)

    # then its slots are back
    assert _take(endpoint, 2, 2)[0] == 2


def test_endpoints_have_windows_of_their_own():
    # given one endpoint at its limit
    busy, other = uuid.uuid4(), uuid.uuid4()
    assert _take(busy, 1, 1)[0] == 1
    assert _take(busy, 1, 1)[0] == 0

    # when another endpoint asks, then it is not held back
    assert _take(other, 1, 1) == (1, 0.0)


def test_asking_for_nothing_takes_nothing():
    # given an endpoint, when 0 sends are asked for, then nothing is granted or counted
    endpoint = uuid.uuid4()
    assert _take(endpoint, 1, 0) == (0, 0.0)
    assert _take(endpoint, 1, 1)[0] == 1


def test_callers_at_the_same_moment_share_the_rate():
    # given 8 callers (as many worker processes would) released together, each wanting 2
    # sends of an endpoint allowed 5 a second
    endpoint = uuid.uuid4()
    barrier = threading.Barrier(8)
    granted: list[int] = []
    lock = threading.Lock()

    def caller() -> None:
        barrier.wait(timeout=10)
        got, _ = _take(endpoint, 5, 2)
        with lock:
            granted.append(got)

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    # then together they got exactly the rate: each call is one atomic script
    assert len(granted) == 8
    assert sum(granted) == 5


def test_no_window_of_one_second_holds_more_than_the_rate():
    # given an endpoint allowed 4 a second, asked for one send at a time as fast as it
    # answers, for 2.2 seconds
    endpoint, rate = uuid.uuid4(), 4
    grants: list[float] = []
    deadline = time.monotonic() + 2.2
    while time.monotonic() < deadline:
        before = time.monotonic()
        got, wait = _take(endpoint, rate, 1)
        if got:
            grants.append(before)
        else:
            time.sleep(min(wait, 0.05))

    # then it sent in every second (about 3 windows' worth), and any `rate + 1` consecutive
    # grants span at least a second (a little less: the times are read here, not in Redis)
    assert rate * 2 <= len(grants) <= rate * 3 + rate
    for first, last in zip(grants, grants[rate:], strict=False):
        assert last - first >= 0.98, (first, last)


def test_a_redis_that_does_not_answer_lets_the_sends_through(monkeypatch):
    # given the script bound to a Redis nobody listens on (port 1 on this machine)
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5,
                       retry=Retry(NoBackoff(), 0))
    monkeypatch.setattr(ratelimit, "_script", dead.register_script)
    monkeypatch.setattr(ratelimit, "_failing", False)

    # when sends are asked for, then all are granted (Redis is the broker too: with it down,
    # nothing could be claimed anyway), and the outage is remembered for one log line
    assert _take(uuid.uuid4(), 1, 3) == (3, 0.0)
    assert ratelimit._failing is True
