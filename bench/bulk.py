"""The `bulk` scenario (issue 14, "Speed"): bulk runs against the statement a DBA would write
by hand for the same rows, in the same run; and the API's read latency while a run goes.

- **Rows**: `bulk_products` products (1,000,000; 100,000 with --quick) in one category
  (`bench-bulk`), inserted by one INSERT … SELECT generate_series with random (uuid4) primary
  keys, as the API makes them, and prices of 1.00 to 99.99. The suite's 200 products stay in
  categories of their own, outside every run.
- **The same table state for each measurement**: before every measured statement or run,
  `VACUUM FULL ANALYZE catalog_product` and a `CHECKPOINT` (skipped, and said so, if the
  role may not). A plain VACUUM is not enough: it leaves free space inside pages wherever the
  last run's rows were, and an UPDATE finding room on its row's page is HOT (no index
  entries): measured, a raw UPDATE after two runs' worth of history made 52% of its updates
  HOT, after VACUUM FULL none. Each measurement starts from the rows packed in their heap
  order, every index fresh, no dirty page of the last one left to write.
- **Reprice** (`catalog.reprice`, +10% on the category: every row changes): POST
  /api/v1/bulk-operations on the suite's gunicorn, carried out by a worker of the `bulk`
  profile (workers/profiles.py) with the default throttle (adaptive chunks aiming at 0.5 s,
  no pause), a checkpoint and the job's progress committed with every chunk; from the
  request until the run's `finished_at`. Baseline: one `UPDATE catalog_product SET price =
  …, updated_at = now() WHERE category = …` in autocommit, compiled by Django from the
  operation's own expression (RoundHalfEven, domain/catalog/bulk_operations.py), so both
  round the same way and write the same columns.
- **Prices from CSV** (`catalog.set_prices`, a line for every product): the file POSTed as
  text/csv to the same API (COPYed into the run's input table and checked before the 202),
  then the worker's chunks; from the first byte sent until `finished_at`. Baseline: in one
  transaction, COPY of the same file into a temporary table (sku text, price numeric(12, 2)),
  ANALYZE, and one `UPDATE catalog_product … FROM` it by sku. Each measurement has a file of
  its own, with every price different from the last file's.
- **Rounds**: `bulk_rounds` of each pair, alternating which goes first (raw then run, run
  then raw, …); the best time of each side is reported, and every round.
- **Read latency**: GET /api/v1/products/{id}, open loop at `bulk_read_rate`/s, each request
  for a product not read before (a cache miss: PostgreSQL reads the row), for a window of
  0.7x the best reprice's time: idle, then while a reprice runs (started just before). p50
  and p99 of each; the goal is a p99 while the run goes within 2x of idle's.
- **Profile**: each operation once more, run in this process (the job's own body through
  the task's `apply`, the worker stopped), every statement and commit timed (Django's
  `execute_wrapper`): where a chunk's time goes (the bounds query, the operation's UPDATE,
  the run row and job progress writes, commits, the rest: Python), and EXPLAIN (ANALYZE,
  BUFFERS) of chunk number EXPLAIN_CHUNK's statements, run in a savepoint rolled back just
  before the chunk's own.
"""

from __future__ import annotations

import http.client
import json
import logging
import time
import uuid
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING, Any

from bench.stack import wait_until

if TYPE_CHECKING:
    from bench.run import Suite

CATEGORY = "bench-bulk"
PERCENT = 10
SKU = "BULK-{:07d}"
EXPLAIN_CHUNK = 6  # chunks double from BULK_CHUNK_SIZE (1,000): the 6th has 32,000 rows
REPRICE_GOAL = CSV_GOAL = 0.8
LATENCY_GOAL = 2.0


def reprice_statement() -> tuple[str, list]:
    """The baseline's one UPDATE of the whole category, compiled by Django from the
    operation's own new-price expression (RoundHalfEven) and its `updated_at`."""
    from django.db.models import Q
    from django.db.models.functions import Now
    from django.db.models.sql import UpdateQuery

    from domain.catalog.bulk_operations import REPRICE
    from domain.catalog.models import Product

    plan = REPRICE.plan({"category": CATEGORY, "percent": PERCENT})
    query = UpdateQuery(Product)
    query.add_update_values({"price": REPRICE._new_price(plan), "updated_at": Now()})
    query.add_q(Q(category=CATEGORY))
    sql, params = query.get_compiler(using="default").as_sql()
    return sql, list(params)


def write_prices(path: Path, rows: int, variant: int) -> int:
    """A CSV of every bench product's new price; two variants differ in every price's cents.
    Answers its size in bytes."""
    with open(path, "w", encoding="utf-8") as f:
        f.write("sku,price\n")
        step = 50_000
        for start in range(1, rows + 1, step):
            f.write("".join(f"{SKU.format(i)},{(i * 31) % 9000 + 100}.{(i + variant) % 100:02d}\n"
                            for i in range(start, min(start + step, rows + 1))))
    return path.stat().st_size


def statement_kind(sql: str) -> str:
    """Which part of a run a statement is: a chunk's `bounds` query (its last key) and its
    `write` (the operation's UPDATE); the `run row` (locked, checkpointed) and the `job row`
    (progress, claim, success); the chunk's `lock timeout`; the rows counted when the run
    begins (`count`), a CSV's checks (`csv check`) and the categories read when it ends
    (`finish`); `other`."""
    from domain.bulk.models import BulkRun
    from domain.catalog.models import Product
    from domain.jobs.models import Job

    head = " ".join(sql.split())[:60].upper()
    products = f'"{Product._meta.db_table}"'
    if head.startswith("SELECT COUNT(") and products in sql:
        return "bounds" if "FROM (SELECT" in sql.upper() else "count"
    if head.startswith(f"UPDATE {products.upper()}"):
        return "write"
    if f'"{BulkRun._meta.db_table}"' in sql:
        return "run row"
    if f'"{Job._meta.db_table}"' in sql:
        return "job row"
    if "set_config" in sql:
        return "lock timeout"
    if "PARTITION BY" in sql.upper():
        return "csv check"
    if head.startswith("SELECT DISTINCT") and "category" in sql:
        return "finish"
    return "other"


class StatementTimer:
    """Django's execute_wrapper: time spent in each kind of statement; the commits' time
    (install with `timing_commits`); EXPLAIN (ANALYZE, BUFFERS) of the `explain_at`-th bounds
    and write statement, in a savepoint rolled back, before the statement itself runs."""

    def __init__(self, explain_at: int = EXPLAIN_CHUNK) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.count: dict[str, int] = defaultdict(int)
        self.commit_s = 0.0
        self.commits = 0
        self.explain_at = explain_at
        self.explain_s = 0.0
        self.plans: dict[str, list[str]] = {}
        self._inside = False

    def __call__(self, execute, sql, params, many, context):
        if self._inside:
            return execute(sql, params, many, context)
        kind = statement_kind(sql)
        self.count[kind] += 1
        if kind in ("bounds", "write") and self.count[kind] == self.explain_at and not many:
            self._explain(kind, sql, params)
        started = perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds[kind] += perf_counter() - started

    def _explain(self, kind: str, sql: str, params) -> None:
        from django.db import connection, transaction

        self._inside = True
        started = perf_counter()
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
                self.plans[kind] = [row[0] for row in cursor.fetchall()]
                transaction.set_rollback(True)
        finally:
            self.explain_s += perf_counter() - started
            self._inside = False

    def timing_commits(self, connection):
        """Wrap the connection's commit (undone by the returned function)."""
        original = connection._commit

        def timed():
            started = perf_counter()
            try:
                return original()
            finally:
                self.commit_s += perf_counter() - started
                self.commits += 1

        connection._commit = timed
        return lambda: delattr(connection, "_commit")


def profile_summary(timer: StatementTimer, wall_s: float, chunks: int,
                    extra: dict[str, float] | None = None) -> dict:
    """Each part's seconds and share of the wall time, and per chunk; `extra` parts timed
    apart (a CSV's COPY); `python` is the rest (the runner, Django, the job's bookkeeping in
    Python; the EXPLAINs are taken out)."""
    parts = {kind: s for kind, s in timer.seconds.items()}
    parts["commit"] = timer.commit_s
    parts.update(extra or {})
    measured = wall_s - timer.explain_s
    parts["python"] = max(0.0, measured - sum(parts.values()))
    return {
        "wall_s": round(measured, 3), "chunks": chunks,
        "seconds": {k: round(v, 3) for k, v in sorted(parts.items(), key=lambda kv: -kv[1])},
        "share_pct": {k: round(100 * v / measured, 1) if measured else 0.0
                      for k, v in sorted(parts.items(), key=lambda kv: -kv[1])},
        "per_chunk_ms": {k: round(1000 * v / chunks, 2) if chunks else 0.0
                         for k, v in sorted(parts.items(), key=lambda kv: -kv[1])},
        "statements": dict(timer.count), "commits": timer.commits,
        "explain": timer.plans}


def run_in_process(run, timer: StatementTimer) -> tuple[Any, float]:
    """Carry out a stored run's job in this process (the task's real body, through `apply`)
    until the run ends, every statement and commit timed; a time slice hands the job back to
    the broker, and it is taken again from here. Answers the run and the wall time."""
    from django.db import connection

    from domain.bulk.models import FINISHED_STATUSES
    from tasks.bulk import run as bulk_task

    undo = timer.timing_commits(connection)
    started = perf_counter()
    try:
        with connection.execute_wrapper(timer), _quiet():
            while True:
                bulk_task.apply(args=[str(run.job_id)]).get()
                run.refresh_from_db()
                if run.status in FINISHED_STATUSES:
                    break
    finally:
        wall = perf_counter() - started
        undo()
    return run, wall


def overlap(window: tuple[float, float], run: tuple[float, float]) -> float:
    """How much of a load window (epoch start, end) fell while the run was going."""
    start, end = max(window[0], run[0]), min(window[1], run[1])
    return round(max(0.0, end - start) / (window[1] - window[0]), 3) if window[1] > window[0] \
        else 0.0


@contextmanager
def _quiet():
    """The run's own INFO lines (started, succeeded, the task's) kept off the suite's output
    while it runs in this process."""
    loggers = [logging.getLogger(name) for name in ("domain", "workers", "celery")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _best(runs: list[dict]) -> dict:
    return min(runs, key=lambda r: r["elapsed_s"])


def _ratio(value: float, baseline: float) -> float:
    return round(value / baseline, 3) if baseline else 0.0


class BulkScenario:
    def __init__(self, suite: Suite) -> None:
        self.suite = suite
        self.stack = suite.stack
        self.cfg = suite.cfg
        self.rows = self.cfg["bulk_products"]
        self.worker = None
        self.variant = 0
        self.checkpoints = True

    # --- setup ---------------------------------------------------------------------------

    def setup(self) -> None:
        from django.db import connection

        from bench.run import log

        log(f"bulk: inserting {self.rows:,} products in category {CATEGORY}")
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO catalog_product (id, sku, name, price, stock, status, category, "
                "created_at, updated_at) "
                "SELECT gen_random_uuid(), 'BULK-' || lpad(i::text, 7, '0'), "
                "'Bulk product ' || i, (100 + (i::bigint * 7919) %% 9900) / 100.0, i %% 100, "
                "'active', %s, now(), now() FROM generate_series(1, %s) i",
                [CATEGORY, self.rows])
        self.fresh_table()
        connection.close()

    def teardown(self) -> None:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM catalog_product WHERE category = %s", [CATEGORY])
            cursor.execute("VACUUM ANALYZE catalog_product")
        connection.close()

    def fresh_table(self) -> None:
        """Rewrite the products table packed (no room left in any page), analyse it, and
        CHECKPOINT (if the role may)."""
        from django.db import DatabaseError, connection

        with connection.cursor() as cursor:
            cursor.execute("VACUUM FULL ANALYZE catalog_product")
            if self.checkpoints:
                try:
                    cursor.execute("CHECKPOINT")
                except DatabaseError:
                    self.checkpoints = False

    def start_worker(self) -> None:
        from workers.profiles import PROFILES

        self.worker = self.stack.start_worker("bulk", PROFILES["bulk"].command(
            hostname=f"bench-bulk-{uuid.uuid4().hex[:6]}@%h"))

    # --- the scenario ---------------------------------------------------------------------

    def run(self, port: int) -> None:
        from bench.run import log

        self.port = port
        results = self.suite.results
        self.setup()
        try:
            self.start_worker()
            reprice = self.reprice()
            log(f"bulk reprice: {reprice['per_s']:,.0f} rows/s against one UPDATE "
                f"{reprice['baseline_per_s']:,.0f} rows/s: {reprice['ratio']:.2f}x")
            prices = self.set_prices()
            log(f"bulk set_prices: {prices['per_s']:,.0f} rows/s against COPY + UPDATE … FROM "
                f"{prices['baseline_per_s']:,.0f} rows/s: {prices['ratio']:.2f}x")
            latency = self.read_latency(reprice["elapsed_s"])
            log(f"bulk read latency: p99 {latency['busy']['p99_ms']} ms while a reprice runs, "
                f"{latency['idle']['p99_ms']} ms idle: {latency['ratio']:.2f}x")
            self.stack.stop(self.worker)
            self.worker = None
            profile = {"reprice": self.profile_reprice(), "set_prices": self.profile_csv()}
            for name, p in profile.items():
                log(f"bulk profile, {name}: {p['per_s']:,.0f} rows/s in process, "
                    f"{p['chunks']} chunks; share of the time: "
                    + ", ".join(f"{k} {v}%" for k, v in p["share_pct"].items()))
                for kind, plan in p["explain"].items():
                    log(f"bulk profile, {name}: EXPLAIN (ANALYZE, BUFFERS) of chunk "
                        f"{EXPLAIN_CHUNK}'s {kind} statement:\n    " + "\n    ".join(plan))
        finally:
            if self.worker is not None:
                self.stack.stop(self.worker)
            self.teardown()
        self.suite.reset()
        reprice["checkpoint_between"] = prices["checkpoint_between"] = self.checkpoints
        results["bulk_reprice"] = reprice
        results["bulk_set_prices"] = prices
        results["bulk_read_latency"] = latency
        results["bulk_profile"] = profile

    # --- helpers --------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: Any = None,
                 headers: dict | None = None) -> tuple[int, dict]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=900,
                                          blocksize=1 << 16)
        try:
            conn.request(method, path, body=body,
                         headers={**self.suite.headers(), **(headers or {})})
            answer = conn.getresponse()
            data = answer.read()
            return answer.status, json.loads(data) if data else {}
        finally:
            conn.close()

    def _started(self, status: int, body: dict, what: str) -> str:
        if status != 202:
            raise RuntimeError(f"bulk: {what} answered {status}: {body}")
        return body["id"]

    def _wait_run(self, run_id: str):
        from django.db import connection

        from domain.bulk.models import FINISHED_STATUSES, BulkRun, BulkRunStatus

        def finished():
            run = BulkRun.objects.get(pk=run_id)
            return run if run.status in FINISHED_STATUSES else None

        run = wait_until(finished, max(600, self.rows / 500), f"bulk run {run_id}",
                         interval=0.1)
        connection.close()
        if run.status != BulkRunStatus.SUCCEEDED:
            raise RuntimeError(f"bulk: run {run_id} ended {run.status}: {run.last_error}; "
                               f"see {self.stack.dir / 'bulk.log'}")
        return run

    def _run_figures(self, run, sent_at: float, accepted_at: float) -> dict:
        elapsed = run.finished_at.timestamp() - sent_at
        return {"rows": run.rows_done, "rows_changed": run.rows_changed,
                "elapsed_s": round(elapsed, 3), "per_s": round(run.rows_done / elapsed, 1),
                "request_s": round(accepted_at - sent_at, 3),
                "queue_wait_s": round(run.started_at.timestamp() - accepted_at, 3),
                "running_s": round((run.finished_at - run.started_at).total_seconds(), 3),
                "chunk_seconds": round(run.elapsed_seconds, 3), "chunks": run.chunks_done,
                "last_chunk_size": run.chunk_size, "lock_retries": run.lock_retries}

    def _alternate(self, raw, real, what: str) -> tuple[list[dict], list[dict]]:
        """`bulk_rounds` rounds of (raw, real), the first going first in odd rounds."""
        from bench.run import log

        raws, reals = [], []
        for round_no in range(1, self.cfg["bulk_rounds"] + 1):
            order = (("raw", raw, raws), ("run", real, reals))
            for name, measure, into in (order if round_no % 2 else order[::-1]):
                self.fresh_table()
                log(f"bulk {what} round {round_no}/{self.cfg['bulk_rounds']}: {name}")
                into.append(measure())
                log(f"bulk {what} {name}: {into[-1]['per_s']:,.0f} rows/s "
                    f"({into[-1]['elapsed_s']} s)")
        return raws, reals

    # --- reprice ----------------------------------------------------------------------------

    def reprice(self) -> dict:
        raws, reals = self._alternate(self.raw_reprice, self.real_reprice, "reprice")
        best, base = _best(reals), _best(raws)
        return {**best, "baseline_per_s": base["per_s"],
                "baseline_elapsed_s": base["elapsed_s"],
                "ratio": _ratio(best["per_s"], base["per_s"]),
                "goal": f">= {REPRICE_GOAL}x one raw UPDATE", "met": best["per_s"] >=
                REPRICE_GOAL * base["per_s"], "percent": PERCENT,
                "rounds": {"run_s": [r["elapsed_s"] for r in reals],
                           "raw_s": [r["elapsed_s"] for r in raws]},
                "order": "alternating (raw first in odd rounds); best of each"}

    def raw_reprice(self) -> dict:
        from django.db import connection

        sql, params = reprice_statement()
        with connection.cursor() as cursor:
            started = time.time()
            cursor.execute(sql, params)  # autocommit: the commit is in the time
            elapsed = time.time() - started
            rows = cursor.rowcount
        connection.close()
        if rows != self.rows:
            raise RuntimeError(f"bulk: the raw UPDATE changed {rows} rows of {self.rows}")
        return {"rows": rows, "elapsed_s": round(elapsed, 3), "per_s": round(rows / elapsed, 1)}

    def _post_reprice(self) -> tuple[int, dict]:
        return self._request(
            "POST", "/api/v1/bulk-operations",
            json.dumps({"operation": "catalog.reprice",
                        "args": {"category": CATEGORY, "percent": PERCENT}}).encode(),
            {"Content-Type": "application/json"})

    def real_reprice(self) -> dict:
        sent, (status, body), accepted = time.time(), self._post_reprice(), time.time()
        run = self._wait_run(self._started(status, body, "the reprice"))
        figures = self._run_figures(run, sent, accepted)
        if figures["rows"] != self.rows or figures["rows_changed"] != self.rows:
            raise RuntimeError(f"bulk: the reprice run visited {figures['rows']} and changed "
                               f"{figures['rows_changed']} rows of {self.rows}")
        return figures

    # --- set_prices ---------------------------------------------------------------------------

    def _next_prices(self) -> tuple[Path, int]:
        self.variant += 1
        path = self.stack.dir / f"prices-{self.variant}.csv"
        return path, write_prices(path, self.rows, self.variant)

    def set_prices(self) -> dict:
        raws, reals = self._alternate(self.raw_prices, self.real_prices, "set_prices")
        best, base = _best(reals), _best(raws)
        return {**best, "baseline_per_s": base["per_s"],
                "baseline_elapsed_s": base["elapsed_s"],
                "ratio": _ratio(best["per_s"], base["per_s"]),
                "goal": f">= {CSV_GOAL}x COPY + one UPDATE … FROM",
                "met": best["per_s"] >= CSV_GOAL * base["per_s"],
                "rounds": {"run_s": [r["elapsed_s"] for r in reals],
                           "raw_s": [r["elapsed_s"] for r in raws]},
                "order": "alternating (raw first in odd rounds); best of each"}

    def raw_prices(self) -> dict:
        from django.db import connection, transaction

        path, size = self._next_prices()
        try:
            started = time.time()
            with transaction.atomic(), connection.cursor() as cursor, open(path, "rb") as f:
                cursor.execute("CREATE TEMPORARY TABLE bench_prices (sku text, "
                               "price numeric(12, 2)) ON COMMIT DROP")
                cursor.cursor.copy_expert(
                    "COPY bench_prices (sku, price) FROM STDIN WITH (FORMAT csv, HEADER true)",
                    f)
                copied = time.time()
                cursor.execute("ANALYZE bench_prices")
                cursor.execute("UPDATE catalog_product AS p SET price = t.price, "
                               "updated_at = now() FROM bench_prices t WHERE p.sku = t.sku")
                rows = cursor.rowcount
            elapsed = time.time() - started
        finally:
            path.unlink()
        connection.close()
        if rows != self.rows:
            raise RuntimeError(f"bulk: the raw UPDATE … FROM changed {rows} rows of {self.rows}")
        return {"rows": rows, "elapsed_s": round(elapsed, 3), "per_s": round(rows / elapsed, 1),
                "copy_s": round(copied - started, 3), "csv_bytes": size}

    def real_prices(self) -> dict:
        path, size = self._next_prices()
        try:
            with open(path, "rb") as f:
                sent = time.time()
                status, body = self._request(
                    "POST", "/api/v1/bulk-operations?operation=catalog.set_prices", f,
                    {"Content-Type": "text/csv", "Content-Length": str(size)})
            accepted = time.time()
        finally:
            path.unlink()
        run = self._wait_run(self._started(status, body, "the CSV upload"))
        figures = {**self._run_figures(run, sent, accepted), "csv_bytes": size}
        if figures["rows"] != self.rows:
            raise RuntimeError(f"bulk: the CSV run visited {figures['rows']} of {self.rows}")
        return figures

    # --- read latency -----------------------------------------------------------------------

    def read_latency(self, reprice_s: float) -> dict:
        from django.db import connection

        from bench.run import loadgen, log
        from domain.catalog.models import Product

        rate = self.cfg["bulk_read_rate"]
        window = max(1.0, round(0.7 * reprice_s, 1))
        per_window = int(rate * window * 1.2) + 20
        ids = [str(pk) for pk in Product.objects.filter(category=CATEGORY).order_by("pk")
               .values_list("pk", flat=True)[: 2 * per_window]]
        connection.close()
        files = {}
        for name, part in (("idle", ids[0::2]), ("busy", ids[1::2])):
            files[name] = self.stack.dir / f"read-{name}.txt"
            files[name].write_text("\n".join(f"/api/v1/products/{pk}" for pk in part))
        spec = {"port": self.port, "connections": 16, "rate": rate, "duration": window,
                "method": "GET", "headers": self.suite.headers()}
        self.fresh_table()
        log(f"bulk read latency: GET /api/v1/products/{{id}} at {rate}/s for {window}s, idle")
        idle = loadgen(self.stack, {**spec, "paths_file": str(files["idle"])})
        self.suite._check(idle, "bulk read latency, idle")
        self.fresh_table()
        log(f"bulk read latency: the same while a reprice of {self.rows:,} rows runs")
        sent, (status, body), accepted = time.time(), self._post_reprice(), time.time()
        run_id = self._started(status, body, "the reprice")
        busy = loadgen(self.stack, {**spec, "paths_file": str(files["busy"])})
        self.suite._check(busy, "bulk read latency, while a reprice runs")
        run = self._wait_run(run_id)
        for path in files.values():
            path.unlink()
        covered = overlap((busy["started_at"], busy["started_at"] + busy["elapsed_s"]),
                          (run.started_at.timestamp(), run.finished_at.timestamp()))
        figures = self._run_figures(run, sent, accepted)

        def summary(r: dict) -> dict:
            return {"samples": r["ok"], "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"],
                    "max_ms": r["max_ms"], "late_starts": r["late_starts"]}

        return {"rate_per_s": rate, "window_s": window, "endpoint": "/api/v1/products/{id}",
                "idle": summary(idle), "busy": summary(busy),
                "ratio": _ratio(busy["p99_ms"], idle["p99_ms"]),
                "ratio_p50": _ratio(busy["p50_ms"], idle["p50_ms"]),
                "goal": f"p99 while a run goes <= {LATENCY_GOAL:g}x idle",
                "met": busy["p99_ms"] <= LATENCY_GOAL * idle["p99_ms"],
                "overlap": covered, "run_per_s": figures["per_s"],
                "run_elapsed_s": figures["elapsed_s"]}

    # --- profile ------------------------------------------------------------------------------

    def profile_reprice(self) -> dict:
        from django.db import connection

        from bench.run import log
        from domain.bulk.services import bulk_run_start

        self.fresh_table()
        log(f"bulk profile: a reprice of {self.rows:,} rows in this process, statements timed")
        with _quiet():
            run = bulk_run_start(operation="catalog.reprice",
                                 args={"category": CATEGORY, "percent": PERCENT})
        timer = StatementTimer()
        run, wall = run_in_process(run, timer)
        connection.close()
        summary = profile_summary(timer, wall, run.chunks_done)
        return {**summary, "rows": run.rows_done, "status": run.status,
                "per_s": round(run.rows_done / summary["wall_s"], 1)}

    def profile_csv(self) -> dict:
        """The CSV's way in (COPY and the checks, as the API does them, from the file) and
        its chunks, in one profile: the COPY is the start's time the statements do not
        account for (psycopg2's copy_expert bypasses Django's execute wrappers)."""
        from django.db import connection

        from bench.run import log
        from domain.bulk.services import bulk_run_start

        path, _ = self._next_prices()
        self.fresh_table()
        log(f"bulk profile: prices of {self.rows:,} rows from CSV in this process")
        timer = StatementTimer()
        undo = timer.timing_commits(connection)
        started = perf_counter()
        try:
            with connection.execute_wrapper(timer), _quiet(), open(path, "rb") as f:
                run = bulk_run_start(operation="catalog.set_prices", args={}, csv_stream=f)
        finally:
            start_s = perf_counter() - started
            undo()
            path.unlink()
        copy_s = max(0.0, start_s - sum(timer.seconds.values()) - timer.commit_s)
        run, wall = run_in_process(run, timer)
        connection.close()
        summary = profile_summary(timer, start_s + wall, run.chunks_done, {"copy": copy_s})
        return {**summary, "rows": run.rows_done, "status": run.status,
                "per_s": round(run.rows_done / summary["wall_s"], 1),
                "start_s": round(start_s, 3)}
