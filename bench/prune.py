"""The `prune` scenario (issue 15, retention): the daily prune on a jobs table of
`prune_jobs` rows (5,000,000; 200,000 with --quick), in a real worker, while the API reads.

- **Rows**, inserted by INSERT … SELECT generate_series (random uuid4 keys, as the API makes
  them), each job with one attempt:
  - half the jobs old and finished (succeeded, dead or cancelled, 35 to 400 days ago): what
    the prune must delete, with their attempts;
  - `prune_live` old jobs still queued, running or retrying: they must stay;
  - `prune_events` old events each with a dead job and a running one: all three stay (a
    finished job waits for its event's live sibling);
  - the rest recent (finished 0 to 25 days ago): they must stay.
  Then VACUUM ANALYZE and a CHECKPOINT, as an old table would be.
- **The prune**: `conveyor.maintenance.prune` sent to a worker of its own consuming the
  `maintenance` queue with `--pool solo`, so the process measured is the one deleting; the
  default settings (PRUNE_BATCH_SIZE, PRUNE_PAUSE_SECONDS, PRUNE_MAX_SECONDS, 30 days for
  jobs). A run that stops at PRUNE_MAX_SECONDS is sent again until one says `complete`.
  Rows per second: rows deleted (jobs and attempts) over the wall time from the first send
  to the last answer, pauses included.
- **Memory**: the worker's peak RSS (VmHWM in /proc/<pid>/status, the kernel's own high-water
  mark) against its resident size idle before the first prune.
- **Read latency**: GET /api/v1/jobs/{id} of jobs that stay (recent ones, a different job
  each request), open loop at `prune_read_rate`/s for `prune_read_seconds`: before the prune
  (the baseline, same run) and while it runs (started just after the first send).
- **Check**: afterwards every live and recent row, and the events with their jobs, are
  counted again and must all be there; no old finished job (outside those events) and no
  attempt of a deleted job may be left.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING

from bench.stack import rss_now_and_peak

if TYPE_CHECKING:
    from bench.run import Suite

# Old rows are at least this old, recent ones at most RECENT_DAYS: far from the 30-day cutoff
# on either side, so a run that takes minutes cannot move a row across it.
OLD_DAYS, RECENT_DAYS = 35, 25
TERMINAL = ("succeeded", "dead", "cancelled")
LIVE = ("queued", "running", "retrying")


def seed(cursor, rows: int, live: int, pairs: int) -> dict:
    """Insert the scenario's jobs, events and attempts; answer how many of each group."""
    old_done = rows // 2
    recent = rows - old_done - live - 2 * pairs
    common = ("kind, handler, params, attempts, max_attempts, replays, progress_done, "
              "traceback, worker, correlation_id, status, created_at, finished_at, event_id")
    values = "'noop', '', '{}'::jsonb, 1, 5, 0, 0, '', 'bench', ''"
    # One job per event and handler: an event's two jobs are named after their statuses.
    pair_values = values.replace("'noop', ''", "'noop', h.status")
    cursor.execute(
        f"INSERT INTO events_job (id, {common}) "  # noqa: S608 - constants only
        f"SELECT gen_random_uuid(), {values}, "
        "(ARRAY['succeeded','succeeded','succeeded','succeeded','succeeded','succeeded',"
        "'succeeded','succeeded','dead','cancelled'])[1 + i %% 10], t, t + interval '1 minute', "
        "NULL FROM (SELECT i, now() - make_interval(days => %s + i %% 365, secs => i %% 86400) "
        "AS t FROM generate_series(1, %s) i) s", [OLD_DAYS, old_done])
    cursor.execute(
        f"INSERT INTO events_job (id, {common}) "  # noqa: S608
        f"SELECT gen_random_uuid(), {values}, "
        "(ARRAY['queued','running','retrying'])[1 + i %% 3], "
        "now() - make_interval(days => %s + i %% 365), NULL, NULL "
        "FROM generate_series(1, %s) i", [OLD_DAYS, live])
    cursor.execute(
        "INSERT INTO events_event (id, type, payload, occurred_at, created_at, status, "
        "request_hash, correlation_id) SELECT gen_random_uuid(), 'demo.ping', '{}'::jsonb, t, t, "
        "'dispatched', '', '' FROM (SELECT now() - make_interval(days => %s + i %% 365) AS t "
        "FROM generate_series(1, %s) i) s", [OLD_DAYS, pairs])
    cursor.execute(
        f"INSERT INTO events_job (id, {common}) "  # noqa: S608
        f"SELECT gen_random_uuid(), {pair_values}, h.status, "
        "e.created_at, CASE WHEN h.status = 'dead' THEN e.created_at + interval '1 minute' END, "
        "e.id FROM events_event e CROSS JOIN (VALUES ('dead'), ('running')) h(status)")
    cursor.execute(
        f"INSERT INTO events_job (id, {common}) "  # noqa: S608
        f"SELECT gen_random_uuid(), {values}, "
        "(ARRAY['succeeded','succeeded','succeeded','dead'])[1 + i %% 4], t, "
        "t + interval '1 minute', NULL FROM (SELECT i, now() - make_interval(days => i %% %s, "
        "secs => i %% 86400) AS t FROM generate_series(1, %s) i) s", [RECENT_DAYS, recent])
    cursor.execute(
        "INSERT INTO events_jobattempt (job_id, run, number, started_at, finished_at, outcome, "
        "error_type, error_message, traceback, worker) SELECT id, 0, 1, created_at, "
        "coalesce(finished_at, created_at), 'succeeded', '', '', '', 'bench' FROM events_job")
    return {"old_finished": old_done, "old_live": live, "event_pairs": pairs,
            "recent": recent, "jobs": rows, "attempts": rows}


def census(cursor) -> dict:
    """The groups of `seed`, counted as they are now."""
    old = f"created_at < now() - interval '{OLD_DAYS - 1} days'"
    terminal = ", ".join(f"'{s}'" for s in TERMINAL)
    live = ", ".join(f"'{s}'" for s in LIVE)
    counts = {}
    for name, sql in (
            ("old_finished", f"SELECT count(*) FROM events_job WHERE {old} AND event_id IS NULL "  # noqa: S608
                             f"AND status IN ({terminal})"),
            ("old_live", f"SELECT count(*) FROM events_job WHERE {old} AND event_id IS NULL "  # noqa: S608
                         f"AND status IN ({live})"),
            ("event_pairs", "SELECT count(*) FROM events_event e WHERE 2 = (SELECT count(*) "
                            "FROM events_job j WHERE j.event_id = e.id)"),
            ("recent", f"SELECT count(*) FROM events_job WHERE NOT ({old})"),  # noqa: S608
            ("jobs", "SELECT count(*) FROM events_job"),
            ("attempts", "SELECT count(*) FROM events_jobattempt"),
            ("orphan_attempts", "SELECT count(*) FROM events_jobattempt a WHERE NOT EXISTS "
                                "(SELECT 1 FROM events_job j WHERE j.id = a.job_id)")):
        cursor.execute(sql)
        counts[name] = cursor.fetchone()[0]
    return counts


def expected_after(seeded: dict) -> dict:
    kept = seeded["old_live"] + 2 * seeded["event_pairs"] + seeded["recent"]
    return {"old_finished": 0, "old_live": seeded["old_live"],
            "event_pairs": seeded["event_pairs"], "recent": seeded["recent"], "jobs": kept,
            "attempts": kept, "orphan_attempts": 0}


def _ratio(value: float, baseline: float) -> float:
    return round(value / baseline, 3) if baseline else 0.0


class PruneScenario:
    def __init__(self, suite: Suite) -> None:
        self.suite = suite
        self.stack = suite.stack
        self.cfg = suite.cfg
        self.worker = None

    def run(self, port: int) -> None:
        from bench.run import log

        self.port = port
        try:
            seeded = self.setup()
            self.start_worker()
            figures = self.measure(seeded)
        finally:
            if self.worker is not None:
                self.stack.stop(self.worker)
            self.suite.reset()
        self.suite.results["prune"] = figures
        log(f"prune: {figures['rows_deleted']:,} rows deleted at {figures['rows_per_s']:,.0f} "
            f"rows/s; worker peak RSS {figures['worker_peak_mib']} MiB (idle "
            f"{figures['worker_idle_mib']} MiB); reads p99 {figures['busy']['p99_ms']} ms during, "
            f"{figures['idle']['p99_ms']} ms before ({figures['ratio']:.2f}x)")

    def setup(self) -> dict:
        from django.db import DatabaseError, connection

        from bench.run import log

        c = self.cfg
        log(f"prune: inserting {c['prune_jobs']:,} jobs with an attempt each")
        started = time.monotonic()
        with connection.cursor() as cursor:
            seeded = seed(cursor, c["prune_jobs"], c["prune_live"], c["prune_events"])
            cursor.execute("VACUUM ANALYZE events_job")
            cursor.execute("VACUUM ANALYZE events_jobattempt")
            cursor.execute("VACUUM ANALYZE events_event")
            try:
                cursor.execute("CHECKPOINT")
            except DatabaseError:
                log("prune: CHECKPOINT refused (not a superuser); going on without")
            cursor.execute("SELECT pg_total_relation_size('events_job'), "
                           "pg_total_relation_size('events_jobattempt')")
            sizes = cursor.fetchone()
        seeded["seed_s"] = round(time.monotonic() - started, 1)
        seeded["jobs_table_mib"] = round(sizes[0] / 2**20)
        seeded["attempts_table_mib"] = round(sizes[1] / 2**20)
        connection.close()
        log(f"prune: seeded in {seeded['seed_s']} s: {seeded}")
        return seeded

    def start_worker(self) -> None:
        self.worker = self.stack.start_worker("prune", [
            "celery", "-A", "config", "worker", "-l", "INFO", "-Q", "maintenance",
            "-P", "solo", "-c", "1", "-n", f"bench-prune-{uuid.uuid4().hex[:6]}@%h"])

    def _read_paths(self, count: int) -> list[str]:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT id FROM events_job TABLESAMPLE SYSTEM (2) WHERE created_at > "
                           "now() - make_interval(days => %s) LIMIT %s", [RECENT_DAYS + 1, count])
            ids = [str(row[0]) for row in cursor.fetchall()]
        connection.close()
        return [f"/api/v1/jobs/{pk}" for pk in ids]

    def _reads(self, paths: list[str], name: str) -> dict:
        from bench.run import loadgen

        path = self.stack.dir / f"prune-reads-{name}.txt"
        path.write_text("\n".join(paths))
        try:
            run = loadgen(self.stack, {
                "port": self.port, "connections": 16, "rate": self.cfg["prune_read_rate"],
                "duration": self.cfg["prune_read_seconds"], "method": "GET",
                "paths_file": str(path), "headers": self.suite.headers()})
        finally:
            path.unlink()
        self.suite._check(run, f"prune reads, {name}")
        return run

    def measure(self, seeded: dict) -> dict:
        import threading

        from django.db import connection

        from bench.run import log
        from config.celery import app  # noqa: F401 - the bench's broker and result backend
        from tasks.maintenance import prune

        c = self.cfg
        per_window = int(c["prune_read_rate"] * c["prune_read_seconds"] * 1.2) + 20
        paths = self._read_paths(2 * per_window)
        log(f"prune: GET /api/v1/jobs/{{id}} at {c['prune_read_rate']}/s for "
            f"{c['prune_read_seconds']} s, before the prune")
        idle = self._reads(paths[0::2], "before")
        idle_rss, _ = rss_now_and_peak(self.worker.pid)

        runs: list[dict] = []
        busy_box: dict = {}
        sent = time.time()

        def prune_until_complete() -> None:
            try:
                while True:
                    outcome = prune.apply_async().get(timeout=c["prune_timeout_s"],
                                                      interval=0.5)
                    runs.append(outcome)
                    log(f"prune: a run answered: rows {outcome.get('rows')}, complete "
                        f"{outcome.get('complete')}, {outcome.get('seconds')} s")
                    if outcome.get("complete") or "skipped" in outcome or len(runs) >= 20:
                        return
            finally:
                connection.close()  # this thread's own, opened by the result backend

        pruner = threading.Thread(target=prune_until_complete)
        pruner.start()
        log("prune: the same reads while the prune runs")
        busy_box["run"] = self._reads(paths[1::2], "during")
        pruner.join()
        ended = time.time()
        now_rss, peak_rss = rss_now_and_peak(self.worker.pid)

        with connection.cursor() as cursor:
            after = census(cursor)
        connection.close()
        expected = expected_after(seeded)
        if after != expected:
            raise RuntimeError(f"prune: after the prune found {after}, expected {expected}")
        deleted: dict[str, int] = {}
        for outcome in runs:
            for table, count in outcome.get("deleted", {}).items():
                deleted[table] = deleted.get(table, 0) + count
        rows = sum(deleted.values())
        elapsed = ended - sent
        busy = busy_box["run"]
        jobs_family = [o["families"]["jobs"] for o in runs if "jobs" in o.get("families", {})]

        def summary(r: dict) -> dict:
            return {"samples": r["ok"], "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"],
                    "max_ms": r["max_ms"], "late_starts": r["late_starts"]}

        overlap = min(1.0, max(0.0, (min(ended, busy["started_at"] + busy["elapsed_s"])
                                     - max(sent, busy["started_at"])) / busy["elapsed_s"]))
        from django.conf import settings

        return {
            "seeded": seeded, "after": after, "verified": True,
            "deleted": deleted, "rows_deleted": rows,
            "jobs_deleted": deleted.get("events_job", 0), "elapsed_s": round(elapsed, 1),
            "rows_per_s": round(rows / elapsed, 1), "runs": len(runs),
            "batches": sum(f.get("batches", 0) for f in jobs_family),
            "settings": {"PRUNE_BATCH_SIZE": settings.PRUNE_BATCH_SIZE,
                         "PRUNE_PAUSE_SECONDS": settings.PRUNE_PAUSE_SECONDS,
                         "PRUNE_MAX_SECONDS": settings.PRUNE_MAX_SECONDS,
                         "RETENTION_JOBS_DAYS": settings.RETENTION_JOBS_DAYS},
            "worker_idle_mib": idle_rss, "worker_peak_mib": peak_rss,
            "worker_after_mib": now_rss, "rss_ratio": _ratio(peak_rss, idle_rss),
            "endpoint": "/api/v1/jobs/{id}", "rate_per_s": c["prune_read_rate"],
            "window_s": c["prune_read_seconds"], "idle": summary(idle), "busy": summary(busy),
            "ratio": _ratio(busy["p99_ms"], idle["p99_ms"]),
            "ratio_p50": _ratio(busy["p50_ms"], idle["p50_ms"]), "overlap": round(overlap, 3),
            "goal": "none (a measurement); nothing live pruned", "met": None}
