"""Slots (scheduler/slots.py): the instants a schedule is due, the same in every Beat."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from scheduler.slots import Cron, Every, InvalidSchedule, zone

UTC = dt.UTC
BERLIN = ZoneInfo("Europe/Berlin")
SECOND = dt.timedelta(seconds=1)


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def walls(slots, tz: ZoneInfo = BERLIN) -> list[str]:
    return [s.astimezone(tz).strftime("%H:%M %Z") for s in slots]


# --- intervals: multiples of the interval since the epoch -----------------------------------

def test_an_interval_slot_is_the_last_epoch_multiple_at_or_before_now():
    every = Every(2)
    assert every.latest(utc(2027, 5, 4, 12, 0, 3, 999_999)) == utc(2027, 5, 4, 12, 0, 2)
    assert every.latest(utc(2027, 5, 4, 12, 0, 4)) == utc(2027, 5, 4, 12, 0, 4)  # at: itself
    assert every.next(utc(2027, 5, 4, 12, 0, 4)) == utc(2027, 5, 4, 12, 0, 6)  # strictly after
    assert every.next(utc(2027, 5, 4, 12, 0, 3, 1)) == utc(2027, 5, 4, 12, 0, 4)


def test_interval_slots_are_the_same_whatever_zone_or_moment_asks():
    # Beats started at different times, or reading the clock in another zone, agree
    seven = Every(7)
    at = utc(2027, 5, 4, 12, 0, 0)
    slot = seven.latest(at)
    assert int(slot.timestamp()) % 7 == 0 and at - slot < dt.timedelta(seconds=7)
    assert seven.latest(at.astimezone(BERLIN)) == slot
    assert [seven.latest(slot + n * SECOND) for n in range(7)] == [slot] * 7
    # an hourly interval is on the hour (UTC), DST or not: real time, not wall time
    hourly = Every(3600)
    spring = utc(2027, 3, 28, 1, 30)  # 03:30 CEST, just after the gap
    assert hourly.latest(spring) == utc(2027, 3, 28, 1, 0)
    assert hourly.next(spring) - hourly.latest(spring) == dt.timedelta(hours=1)


def test_an_interval_under_a_second_is_invalid():
    with pytest.raises(InvalidSchedule):
        Every(0)


# --- cron: latest and next around a slot -------------------------------------------------

def test_cron_latest_and_next_at_and_around_a_slot():
    daily = Cron.parse("0 3 * * *")
    three = utc(2027, 5, 4, 3, 0)
    assert daily.latest(three) == three  # a slot is due at its own instant
    assert daily.latest(three - SECOND) == three - dt.timedelta(days=1)
    assert daily.next(three) == three + dt.timedelta(days=1)  # strictly after
    assert daily.next(three - SECOND) == three
    # across a month and a year
    assert daily.next(utc(2027, 12, 31, 4, 0)) == utc(2028, 1, 1, 3, 0)
    assert daily.latest(utc(2028, 1, 1, 2, 0)) == utc(2027, 12, 31, 3, 0)


def test_cron_fields_are_read_in_the_schedules_zone():
    nine_in_new_york = Cron.parse("0 9 * * *", "America/New_York")
    assert nine_in_new_york.next(utc(2027, 1, 15)) == utc(2027, 1, 15, 14, 0)  # EST
    assert nine_in_new_york.next(utc(2027, 7, 15)) == utc(2027, 7, 15, 13, 0)  # EDT


# --- DST: Vixie cron's rules ---------------------------------------------------------------

def test_a_wall_time_in_the_spring_gap_runs_once_at_the_first_instant_after_it():
    # 2027-03-28, Europe/Berlin: 02:00 CET -> 03:00 CEST; 02:30 does not exist
    cron = Cron.parse("30 2 * * *", "Europe/Berlin")
    day = dt.date(2027, 3, 28)
    assert cron.slots_on(day) == (utc(2027, 3, 28, 1, 0),)
    assert walls(cron.slots_on(day)) == ["03:00 CEST"]
    assert cron.next(utc(2027, 3, 27, 23, 0)) == utc(2027, 3, 28, 1, 0)
    assert cron.latest(utc(2027, 3, 28, 2, 0)) == utc(2027, 3, 28, 1, 0)
    # the nights around it are ordinary
    assert cron.latest(utc(2027, 3, 28, 0, 59)) == utc(2027, 3, 27, 1, 30)  # 02:30 CET
    assert cron.next(utc(2027, 3, 28, 1, 0)) == utc(2027, 3, 29, 0, 30)  # 02:30 CEST


def test_gap_slots_that_land_on_the_same_instant_are_one_slot():
    # 02:00, 02:30 (moved to 03:00) and 03:00 itself: one run at 03:00 CEST
    cron = Cron.parse("0,30 2,3 * * *", "Europe/Berlin")
    assert walls(cron.slots_on(dt.date(2027, 3, 28))) == ["03:00 CEST", "03:30 CEST"]


def test_a_wall_time_that_happens_twice_at_fall_back_runs_at_its_first_occurrence():
    # 2027-10-31, Europe/Berlin: 03:00 CEST -> 02:00 CET; 02:30 happens twice
    cron = Cron.parse("30 2 * * *", "Europe/Berlin")
    assert cron.slots_on(dt.date(2027, 10, 31)) == (utc(2027, 10, 31, 0, 30),)
    assert walls(cron.slots_on(dt.date(2027, 10, 31))) == ["02:30 CEST"]
    # Beat asking during the second 02:30 (CET) finds the first one, already past
    assert cron.latest(utc(2027, 10, 31, 1, 45)) == utc(2027, 10, 31, 0, 30)
    assert cron.next(utc(2027, 10, 31, 0, 30)) == utc(2027, 11, 1, 1, 30)  # 02:30 CET


def test_an_every_hour_schedule_runs_both_occurrences_of_the_repeated_hour():
    # "every hour": real time decides, so the repeated 02:xx runs twice
    assert walls(Cron.parse("30 * * * *", "Europe/Berlin").slots_on(dt.date(2027, 10, 31))
                 )[1:5] == ["01:30 CEST", "02:30 CEST", "02:30 CET", "03:30 CET"]
    half_hourly = Cron.parse("*/30 * * * *", "Europe/Berlin")
    slots = [s for s in half_hourly.slots_on(dt.date(2027, 10, 31))
             if utc(2027, 10, 30, 23, 0) <= s <= utc(2027, 10, 31, 2, 0)]
    assert slots == [utc(2027, 10, 30, 23, 0) + n * dt.timedelta(minutes=30) for n in range(7)]


def test_a_fixed_hour_runs_the_repeated_hour_once_even_with_a_minute_step():
    # the module's rule: only a schedule naming every hour runs the repeated hour twice
    cron = Cron.parse("*/30 2 * * *", "Europe/Berlin")
    assert walls(cron.slots_on(dt.date(2027, 10, 31))) == ["02:00 CEST", "02:30 CEST"]


def test_every_half_hour_has_one_three_oclock_after_spring_forward():
    cron = Cron.parse("*/30 * * * *", "Europe/Berlin")
    assert walls(s for s in cron.slots_on(dt.date(2027, 3, 28))
                 if s < utc(2027, 3, 28, 2, 0)) == [
        "00:00 CET", "00:30 CET", "01:00 CET", "01:30 CET", "03:00 CEST", "03:30 CEST"]


def test_an_every_hour_schedule_gets_no_extra_run_at_the_end_of_the_spring_gap():
    cron = Cron.parse("45 * * * *", "Europe/Berlin")
    assert walls(s for s in cron.slots_on(dt.date(2027, 3, 28))
                 if s < utc(2027, 3, 28, 2, 0)) == ["00:45 CET", "01:45 CET", "03:45 CEST"]


def test_a_gap_at_midnight_moves_the_slot_to_the_first_instant_of_the_day():
    # 2027-03-14, America/Havana: 00:00 CST -> 01:00 CDT; 00:30 does not exist
    cron = Cron.parse("30 0 * * *", "America/Havana")
    havana = ZoneInfo("America/Havana")
    assert walls(cron.slots_on(dt.date(2027, 3, 14)), havana) == ["01:00 CDT"]
    assert cron.next(utc(2027, 3, 14, 4, 0)) == utc(2027, 3, 14, 5, 0)
    assert cron.latest(utc(2027, 3, 14, 5, 0)) == utc(2027, 3, 14, 5, 0)


# --- days -----------------------------------------------------------------------------------

def test_day_of_week_ranges_and_names():
    weekdays = Cron.parse("0 12 * * 1-5")
    sunday = utc(2027, 5, 9, 15, 0)
    assert weekdays.latest(sunday) == utc(2027, 5, 7, 12, 0)  # Friday
    assert weekdays.next(sunday) == utc(2027, 5, 10, 12, 0)  # Monday
    assert Cron.parse("0 12 * * sun").next(utc(2027, 5, 4)) == utc(2027, 5, 9, 12, 0)
    assert Cron.parse("0 12 * * 0").next(utc(2027, 5, 4)) == utc(2027, 5, 9, 12, 0)


def test_day_of_month_and_day_of_week_both_given_must_both_match():
    # Celery's reading (Vixie cron ORs them): Friday the 13th, once in 2027
    friday_13th = Cron.parse("0 0 13 * 5")
    assert friday_13th.next(utc(2027, 1, 1)) == utc(2027, 8, 13)
    assert friday_13th.latest(utc(2027, 12, 31)) == utc(2027, 8, 13)


def test_the_first_of_the_month_and_a_month_list():
    quarterly = Cron.parse("15 6 1 1,4,7,10 *")
    assert quarterly.next(utc(2027, 4, 1, 6, 15)) == utc(2027, 7, 1, 6, 15)
    assert quarterly.latest(utc(2027, 6, 30)) == utc(2027, 4, 1, 6, 15)


def test_february_29th_is_yearly_on_leap_years_only():
    leap_day = Cron.parse("0 0 29 2 *")
    assert leap_day.next(utc(2027, 6, 1)) == utc(2028, 2, 29)
    assert leap_day.latest(utc(2027, 6, 1)) == utc(2024, 2, 29)
    assert leap_day.latest(utc(2028, 2, 29)) == utc(2028, 2, 29)
    # 2100 is not a leap year: eight years from one to the next
    assert leap_day.next(utc(2096, 3, 1)) == utc(2104, 2, 29)
    assert leap_day.latest(utc(2104, 2, 28)) == utc(2096, 2, 29)


def test_a_slot_beyond_the_search_horizon_is_none():
    # 29 February on a Monday: next in 2044, further than eight years from 2027
    rare = Cron.parse("0 0 29 2 1")
    assert rare.next(utc(2027, 1, 1)) is None
    assert rare.latest(utc(2027, 1, 1)) is None
    assert rare.next(utc(2040, 1, 1)) == utc(2044, 2, 29)


# --- what is refused --------------------------------------------------------------------

@pytest.mark.parametrize("expression", [
    "* * * *",  # four fields
    "0 0 * * * *",  # six
    "61 * * * *",  # minute out of range
    "0 24 * * *",  # hour out of range
    "0 0 32 * *",  # day of month out of range
    "0 0 * 13 *",  # month out of range
    "0 0 * * 8",  # day of week out of range
    "0 0 31 2 *",  # a date that never occurs
    "every day",
])
def test_an_invalid_cron_expression_raises_invalid_schedule(expression):
    with pytest.raises(InvalidSchedule):
        Cron.parse(expression).next(utc(2027, 1, 1))


def test_an_unknown_zone_raises_invalid_schedule():
    with pytest.raises(InvalidSchedule):
        zone("Mars/Olympus_Mons")
    with pytest.raises(InvalidSchedule):
        Cron.parse("0 3 * * *", "Europe/Atlantis").next(utc(2027, 1, 1))
    with pytest.raises(InvalidSchedule):
        zone("../../etc/passwd")
    assert zone("") == ZoneInfo("UTC")
