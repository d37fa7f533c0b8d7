"""The webhook job kinds and their retry policy: a fixed schedule with jitter
(`RetryPolicy.scheduled`), Retry-After honoured and capped, and which failures retry."""

import pytest
from django.conf import settings

from domain.common.errors import PermanentError, TransientError, ValidationFailed
from domain.jobs.registry import get_job_kind
from domain.jobs.retry import RetryPolicy
from domain.notifications.kinds import WEBHOOK_DELIVERY, WEBHOOK_FANOUT, WEBHOOK_RETRY
from domain.notifications.sender import EndpointGone
from domain.notifications.ssrf import UnsafeAddress


def test_the_delivery_policy_is_the_setting_schedule_plus_the_first_attempt():
    # given the test settings' schedule (1 s, 2 s, 2 s)
    # then the policy has one attempt more than the schedule has waits
    assert WEBHOOK_RETRY.schedule == tuple(settings.WEBHOOK_RETRY_SCHEDULE) == (1, 2, 2)
    assert WEBHOOK_RETRY.max_attempts == 4
    assert WEBHOOK_DELIVERY.retry is WEBHOOK_RETRY


def test_the_production_schedule_is_about_a_day_in_eight_attempts():
    # given the default schedule of config/settings/base.py (5 s, 5 min, 30 min, 2 h, 5 h,
    # 10 h, 10 h)
    policy = RetryPolicy.scheduled("prod", [5, 300, 1800, 7200, 18000, 36000, 36000])

    # then 8 attempts over about 27.6 hours
    assert policy.max_attempts == 8
    assert sum(policy.schedule) / 3600 == pytest.approx(27.6, abs=0.05)


def test_each_wait_is_its_schedule_figure_within_ten_percent():
    # given a schedule with figures large enough for the jitter to show in whole seconds
    policy = RetryPolicy.scheduled("t", [100, 1000, 10000])

    # when the wait after each failed attempt is drawn many times
    waits = {n: [policy.countdown(n) for _ in range(300)] for n in (1, 2, 3, 4, 9)}

    # then each is within ±10% of its figure, the figures past the end repeat the last, and
    # the jitter spreads them (not one fixed value)
    for attempts, figure in ((1, 100), (2, 1000), (3, 10000), (4, 10000), (9, 10000)):
        assert all(0.9 * figure <= w <= 1.1 * figure for w in waits[attempts]), attempts
    assert len(set(waits[2])) > 20
    assert min(waits[3]) < 9800 and max(waits[3]) > 10200


def test_without_jitter_the_waits_are_the_figures():
    # given a schedule with no jitter
    policy = RetryPolicy.scheduled("t", [3, 7], jitter=0)

    # then the waits are exactly the figures (attempt 0, before any, counts as the first)
    assert [policy.countdown(n) for n in (0, 1, 2, 3)] == [3, 3, 7, 7]


def test_retry_after_is_honoured_and_capped_at_the_longest_wait():
    # given the test schedule (longest wait 2 s) and a long one
    long_policy = RetryPolicy.scheduled("t", [5, 300, 1800])

    # when a receiver says Retry-After
    # then the wait is what it asked, capped at the schedule's longest figure, never negative
    assert WEBHOOK_RETRY.countdown(1, TransientError("429", retry_after=2)) == 2
    assert WEBHOOK_RETRY.countdown(1, TransientError("429", retry_after=3600)) == 2
    assert long_policy.countdown(1, TransientError("429", retry_after=120)) == 120
    assert long_policy.countdown(1, TransientError("429", retry_after=10**9)) == 1800
    assert long_policy.countdown(2, TransientError("503", retry_after=-5)) == 0
    # and without Retry-After, the schedule
    assert 270 <= long_policy.countdown(2, TransientError("503")) <= 330


@pytest.mark.parametrize("schedule", [[], [5, -1]])
def test_a_schedule_must_have_non_negative_figures(schedule):
    # when a policy is made from an empty schedule or a negative figure, then it is refused
    with pytest.raises(ValueError, match="non-negative"):
        RetryPolicy.scheduled("bad", schedule)


def test_which_delivery_failures_retry():
    # given the delivery policy
    # then transient failures (5xx, 429, timeouts, refused connections) retry, and permanent
    # ones (4xx, a 410, an address the guard refused) do not
    assert WEBHOOK_RETRY.is_transient(TransientError("the receiver answered 503"))
    assert WEBHOOK_RETRY.is_transient(TimeoutError())
    assert WEBHOOK_RETRY.is_transient(ConnectionRefusedError())
    assert not WEBHOOK_RETRY.is_transient(PermanentError("the receiver answered 400"))
    assert not WEBHOOK_RETRY.is_transient(EndpointGone("410"))
    assert not WEBHOOK_RETRY.is_transient(UnsafeAddress("127.0.0.2"))


def test_the_kinds_are_registered_and_not_triggerable_by_clients():
    # given the two kinds
    # then they are registered under their names, on the notifications tasks, and clients
    # cannot start them with POST /api/v1/jobs
    assert get_job_kind("webhook_fanout") is WEBHOOK_FANOUT
    assert get_job_kind("webhook_delivery") is WEBHOOK_DELIVERY
    assert WEBHOOK_FANOUT.task_name.startswith("conveyor.notifications.")
    assert WEBHOOK_DELIVERY.task_name.startswith("conveyor.notifications.")
    for name in ("webhook_fanout", "webhook_delivery"):
        with pytest.raises(ValidationFailed) as refused:
            get_job_kind(name, triggerable=True)
        assert refused.value.code == "unknown_job_kind"


def test_a_delivery_job_names_one_delivery_by_its_uuid():
    # given the delivery kind's params schema
    # then one delivery id passes; a missing, malformed or extra field does not
    WEBHOOK_DELIVERY.validate_params({"delivery": "0b5d3c8e-2f1a-4c2e-9d8b-6a1f0e4c7b21"})
    for params in ({}, {"delivery": "x"}, {"delivery": "0b5d3c8e-2f1a-4c2e-9d8b-6a1f0e4c7b21",
                                           "url": "http://10.0.0.1/"}):
        with pytest.raises(ValidationFailed):
            WEBHOOK_DELIVERY.validate_params(params)
