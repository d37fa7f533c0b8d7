"""When a schedule is due: its slots, evaluated in the schedule's own time zone.

A *slot* is the instant (UTC) a schedule is due. Beat stamps each message with its slot and
the run ledger keeps at most one run per (schedule, slot), so the slot has to be a pure
function of the schedule and the clock: two Beats, or one Beat restarted, must name the same
instant.

Why not Celery's `crontab.is_due`: it answers "has a run come due since this Beat's
`last_run_at`", which is relative to each Beat's memory (and to the row it reloads from the
database), not a name for the instant. The ledger needs that name, the same in every Beat, so
the instants are computed here, in the schedule's zone. The cron *fields* are still parsed by
Celery (`crontab`'s parser), so every expression Beat and the admin accept means the same.
(django-celery-beat #337, #558 and #576 are the long-running reports of double runs that the
ledger, not this module, answers.)

The rules across a daylight-saving change (those for fixed times are Vixie cron's):
- a wall time that does not exist (spring forward, 02:00-02:59 in Europe/Berlin) runs once, at
  the first instant after the gap (03:00 local);
- a wall time that happens twice (fall back, 02:00-02:59 twice) runs once, at its first
  occurrence;
- except for a schedule whose hour field covers every hour (`*`, `*/1`, `0-23`): it is an
  "every n minutes" schedule, and real time decides: the times in a gap do not happen (no
  extra run at 03:00) and both occurrences of a repeated time run;
- slots that land on the same instant are one slot.

Interval schedules are not wall-clock at all: their slots are the multiples of the interval
since the Unix epoch, so every Beat computes the same ones.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from celery.schedules import crontab

UTC = dt.UTC
MINUTE = dt.timedelta(minutes=1)
# Yearly expressions on 29 February recur every four years, eight across a skipped leap year.
MAX_DAYS_SEARCHED = 8 * 366 + 1
# Longest daylight-saving gap anywhere is an hour (30 minutes on Lord Howe Island); a day's
# jump (Samoa, 2011) is a date that does not exist, which the day loop handles.
MAX_GAP = dt.timedelta(hours=3)


class InvalidSchedule(ValueError):
    pass


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidSchedule(f"unknown time zone {name!r}") from exc


@dataclass(frozen=True)
class Cron:
    """A five-field cron expression in a time zone."""

    minute: str
    hour: str
    day_of_month: str
    month_of_year: str
    day_of_week: str
    timezone: str = "UTC"

    @classmethod
    def parse(cls, expression: str, timezone: str = "UTC") -> Cron:
        fields = expression.split()
        if len(fields) != 5:
            raise InvalidSchedule(f"cron needs five fields, got {expression!r}")
        return cls(*fields, timezone=timezone)

    @property
    def expression(self) -> str:
        return " ".join((self.minute, self.hour, self.day_of_month, self.month_of_year,
                         self.day_of_week))

    def slots_on(self, day: dt.date) -> tuple[dt.datetime, ...]:
        return _cron_slots_on(self, day)

    def latest(self, at: dt.datetime) -> dt.datetime | None:
        """The last slot at or before `at`."""
        local_day = at.astimezone(zone(self.timezone)).date()
        # From the day after: a slot is filed under its wall date, and a gap at midnight moves
        # it later, past `at`'s local date.
        for offset in range(-1, MAX_DAYS_SEARCHED):
            found = [s for s in self.slots_on(local_day - dt.timedelta(days=offset)) if s <= at]
            if found:
                return found[-1]
        return None

    def next(self, after: dt.datetime) -> dt.datetime | None:
        """The first slot strictly after `after`."""
        local_day = after.astimezone(zone(self.timezone)).date()
        for offset in range(-1, MAX_DAYS_SEARCHED):
            found = [s for s in self.slots_on(local_day + dt.timedelta(days=offset)) if s > after]
            if found:
                return found[0]
        return None


@dataclass(frozen=True)
class Every:
    """Every `seconds`, on the multiples of `seconds` since the epoch."""

    seconds: int

    def __post_init__(self) -> None:
        if self.seconds < 1:
            raise InvalidSchedule("an interval must be at least one second")

    @property
    def expression(self) -> str:
        return f"every {self.seconds}s"

    def latest(self, at: dt.datetime) -> dt.datetime:
        epoch = int(at.timestamp()) // self.seconds * self.seconds
        return dt.datetime.fromtimestamp(epoch, UTC)

    def next(self, after: dt.datetime) -> dt.datetime:
        return self.latest(after) + dt.timedelta(seconds=self.seconds)


Spec = Cron | Every


@lru_cache(maxsize=256)
def _fields(cron: Cron) -> crontab:
    try:
        return crontab(minute=cron.minute, hour=cron.hour, day_of_month=cron.day_of_month,
                       month_of_year=cron.month_of_year, day_of_week=cron.day_of_week)
    except ValueError as exc:
        raise InvalidSchedule(f"invalid cron expression {cron.expression!r}: {exc}") from exc


@lru_cache(maxsize=4096)
def _cron_slots_on(cron: Cron, day: dt.date) -> tuple[dt.datetime, ...]:
    """The UTC instants a cron expression is due whose wall time falls on local `day`."""
    fields = _fields(cron)
    # Celery ANDs day-of-month and day-of-week (Vixie cron ORs them when both are given).
    if (day.month not in fields.month_of_year or day.day not in fields.day_of_month
            or (day.isoweekday() % 7) not in fields.day_of_week):
        return ()
    tz = zone(cron.timezone)
    every_hour = len(fields.hour) == 24
    slots: set[dt.datetime] = set()
    for hour in sorted(fields.hour):
        for minute in sorted(fields.minute):
            slots.update(_instants(dt.datetime.combine(day, dt.time(hour, minute)), tz,
                                   both_folds=every_hour))
    return tuple(sorted(slots))


def _instants(wall: dt.datetime, tz: ZoneInfo, *, both_folds: bool) -> list[dt.datetime]:
    first = wall.replace(tzinfo=tz, fold=0)
    second = wall.replace(tzinfo=tz, fold=1)
    if _exists(first, wall):
        if first.utcoffset() != second.utcoffset() and both_folds:  # happens twice
            return [first.astimezone(UTC), second.astimezone(UTC)]
        return [first.astimezone(UTC)]
    if both_folds:  # an every-hour schedule: real time skips the gap's times
        return []
    # In a gap: the first wall minute after it that exists.
    later = wall
    while later - wall <= MAX_GAP:
        later += MINUTE
        candidate = later.replace(tzinfo=tz)
        if _exists(candidate, later):
            return [candidate.astimezone(UTC)]
    return []


def _exists(aware: dt.datetime, wall: dt.datetime) -> bool:
    return aware.astimezone(UTC).astimezone(aware.tzinfo).replace(tzinfo=None) == wall
