"""What each panel of the dashboard shows, read through the owners' selectors: every read is
an indexed range or a small aggregate, so the page costs the same on a table of ten million
jobs as on a fresh one (README, "Operator dashboard")."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from domain.access.selectors import audit_latest
from domain.jobs.selectors import dead_jobs_by_kind, job_throughput
from domain.notifications.selectors import endpoints_by_health
from scheduler.dashboard.charts import Chart, line_chart, stacked_bars
from scheduler.selectors import queue_depth_history, schedule_list
from workers.selectors import QueueState, queue_list

ENDPOINT_HEALTH_LABELS = {"healthy": "Healthy", "failing": "Failing",
                          "circuit_open": "Circuit open", "degraded": "Degraded",
                          "disabled": "Disabled"}
HOUR = dt.timedelta(hours=1)
BUCKET = dt.timedelta(minutes=5)
# Throughput reaches finished jobs through their creation time (domain/jobs/selectors.py,
# job_throughput): those created within this span before now, so the read costs what six hours
# of jobs cost, whatever the table's size. It covers the exponential presets (minutes) and
# email's whole schedule (about 4.6 hours); a webhook that ends on its 6th attempt or later
# (7.6 hours and more after its creation, by the default schedule), a replay of an older job
# or a run_at far ahead is not counted.
THROUGHPUT_CREATED_WITHIN = dt.timedelta(hours=6)


def hour_buckets(now: dt.datetime) -> list[dt.datetime]:
    """The 12 five-minute buckets that end with the one holding `now` (it is partial)."""
    last = now.replace(second=0, microsecond=0)
    last -= dt.timedelta(minutes=last.minute % 5)
    return [last - (11 - i) * BUCKET for i in range(12)]


@dataclass(frozen=True)
class QueueRow:
    state: QueueState  # now: pause, broker depth, due jobs waiting, consumers
    highest: int | None  # the deepest over the hour, from the health checks and now


@dataclass(frozen=True)
class QueuesPanel:
    chart: Chart
    rows: list[QueueRow]
    checks: int  # health checks in the hour

    @property
    def paused(self) -> list[QueueState]:
        return [row.state for row in self.rows if row.state.paused]


def queues_panel(*, now: dt.datetime) -> QueuesPanel:
    history = queue_depth_history(since=now - HOUR, until=now)
    states = queue_list()
    names = [state.name for state in states]
    names += sorted({name for _, depths in history for name in depths} - set(names))
    current = {state.name: state.depth for state in states}
    series = {name: [*((slot, depths.get(name)) for slot, depths in history),
                     (now, current.get(name))] for name in names}
    rows = [QueueRow(state, max((d for _, d in series[state.name] if d is not None),
                                default=None)) for state in states]
    chart = line_chart(title="Queue depth, last hour (messages waiting)", start=now - HOUR,
                       end=now, series=series)
    return QueuesPanel(chart, rows, len(history))


@dataclass(frozen=True)
class KindThroughput:
    kind: str
    succeeded: int
    dead: int


@dataclass(frozen=True)
class ThroughputPanel:
    chart: Chart
    rows: list[KindThroughput]
    since: dt.datetime
    created_within_hours: int


def throughput_panel(*, now: dt.datetime) -> ThroughputPanel:
    starts = hour_buckets(now)
    throughput = job_throughput(since=starts[0], until=now, bucket=BUCKET,
                                created_within=THROUGHPUT_CREATED_WITHIN)
    kinds = throughput.kinds
    rows = [KindThroughput(kind, sum(throughput.succeeded.get(kind, [])),
                           sum(throughput.dead.get(kind, []))) for kind in kinds]
    chart = stacked_bars(title="Jobs finished (succeeded or dead) per 5 minutes, by kind",
                         starts=starts, bucket=BUCKET,
                         series={kind: throughput.finished(kind) for kind in kinds})
    return ThroughputPanel(chart, rows, starts[0],
                           int(THROUGHPUT_CREATED_WITHIN.total_seconds() // 3600))


@dataclass(frozen=True)
class DeadKind:
    kind: str
    count: int
    error_types: list[tuple[str, int]]  # most frequent first


def dead_letters() -> list[DeadKind]:
    return [DeadKind(kind, sum(errors.values()),
                     sorted(errors.items(), key=lambda item: (-item[1], item[0])))
            for kind, errors in dead_jobs_by_kind().items()]


def dashboard_panels(*, now: dt.datetime) -> dict:
    """Every panel's data, for the template."""
    dead = dead_letters()
    counts, endpoints_unhealthy = endpoints_by_health(now=now)
    return {
        "now": now,
        "queues": queues_panel(now=now),
        "throughput": throughput_panel(now=now),
        "dead": dead,
        "dead_total": sum(row.count for row in dead),
        "error_types": sorted({error for row in dead for error, _ in row.error_types} - {""}),
        "schedules": schedule_list(now=now),
        "endpoint_counts": [(health, ENDPOINT_HEALTH_LABELS[health], count)
                            for health, count in counts.items()],
        "endpoints_unhealthy": endpoints_unhealthy,
        "audit": audit_latest(limit=20),
    }
