"""Conveyor's benchmark suite: `python -m bench [--quick]`.

Every figure is measured next to its baseline in the same run, on the same machine, and
reported with the ratio: absolute numbers drift on a shared 2-core machine, ratios much less.
Prints a table and writes bench/results/latest.json and bench/results/latest.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from bench.stack import BIN, ROOT, Stack, gunicorn_workers, rss_now_and_peak, tree_rss, wait_until

RESULTS = ROOT / "bench" / "results"

FULL = {
    "ingest_seconds": 8, "ingest_rounds": 3, "warmup_seconds": 2,
    "connections": 32, "batch_connections": 8,
    "batch_size": 500, "e2e_events": 20_000, "e2e_single_events": 5_000,
    "e2e_solo_events": 2_500, "latency_seconds": 10,
    "memory_small": 10_000, "memory_large": 100_000,
    "memory_batch": 10, "web_memory_batches": 3, "web_memory_rounds": 2,
    "webhook_endpoints": 10, "webhook_events": 2_000, "webhook_baseline": 600,
    "webhook_latency_seconds": 15,
    "email_sends": 10, "email_recipients": 1000, "email_baseline": 1000,
    "inbox_recipients": 1000, "inbox_rounds": 3,
    "bulk_products": 1_000_000, "bulk_rounds": 2, "bulk_read_rate": 50,
    "prune_jobs": 5_000_000, "prune_live": 50_000, "prune_events": 10_000,
    "prune_read_rate": 50, "prune_read_seconds": 60, "prune_timeout_s": 3600,
    "metrics_requests": 5000, "metrics_rounds": 5, "metrics_jobs": 500,
    "metrics_flush_series": 200, "metrics_table_rows": 1_000_000, "metrics_open_jobs": 5000,
}
QUICK = {
    "ingest_seconds": 4, "ingest_rounds": 2, "warmup_seconds": 1,
    "connections": 32, "batch_connections": 8,
    "batch_size": 500, "e2e_events": 5_000, "e2e_single_events": 1_500,
    "e2e_solo_events": 1_500, "latency_seconds": 4,
    "memory_small": 2_000, "memory_large": 20_000,
    "memory_batch": 10, "web_memory_batches": 1, "web_memory_rounds": 1,
    "webhook_endpoints": 10, "webhook_events": 500, "webhook_baseline": 200,
    "webhook_latency_seconds": 6,
    "email_sends": 3, "email_recipients": 1000, "email_baseline": 300,
    "inbox_recipients": 1000, "inbox_rounds": 2,
    "bulk_products": 100_000, "bulk_rounds": 2, "bulk_read_rate": 50,
    "prune_jobs": 200_000, "prune_live": 2_000, "prune_events": 1_000,
    "prune_read_rate": 50, "prune_read_seconds": 10, "prune_timeout_s": 600,
    "metrics_requests": 2000, "metrics_rounds": 3, "metrics_jobs": 500,
    "metrics_flush_series": 200, "metrics_table_rows": 100_000, "metrics_open_jobs": 1000,
}
SCENARIOS = ("ingest", "e2e", "webhooks", "emails", "memory", "web_memory", "bulk", "prune",
             "metrics")
# What a plain `python -m bench` runs: `bulk` (a million rows, about 7 minutes more), `prune`
# (5 million jobs seeded and pruned, about 20 minutes) and `metrics` (what the metrics cost,
# in this process, about a minute) only when named with --only.
OPT_IN_SCENARIOS = ("bulk", "prune", "metrics")
DEFAULT_SCENARIOS = tuple(s for s in SCENARIOS if s not in OPT_IN_SCENARIOS)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def loadgen(stack: Stack, spec: dict) -> dict:
    """Run the load generator in its own process and return what it measured."""
    out = subprocess.run([str(BIN / "python"), "-m", "bench.loadgen", json.dumps(spec)],
                         cwd=ROOT, env=stack.env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


class Suite:
    def __init__(self, stack: Stack, cfg: dict) -> None:
        self.stack = stack
        self.cfg = cfg
        self.results: dict[str, dict] = {}
        self.seq = 0  # keeps Idempotency-Keys unique across scenarios

    # --- setup --------------------------------------------------------------------------

    def setup(self) -> None:
        os.environ.update({k: v for k, v in self.stack.env.items() if k not in os.environ
                           or k in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL")})
        import django

        django.setup()
        from domain.access.models import Scopes
        from domain.access.services import api_key_create
        from domain.catalog.models import Product

        _, self.api_key = api_key_create(name="bench", scopes=[Scopes.ADMIN])
        Product.objects.bulk_create([
            Product(sku=f"BENCH-{i:04d}", name=f"Bench product {i}", category=f"cat-{i % 10}",
                    price="9.99") for i in range(200)])
        self.products = [(str(pk), cat) for pk, cat in
                         Product.objects.values_list("id", "category")]
        from django.db import connection

        connection.close()

    def reset(self) -> None:
        """Empty the broker and the event tables between scenarios (same state for each)."""
        import redis
        from django.db import connection

        redis.Redis(port=self.stack.redis_port).flushall()
        with connection.cursor() as cur:
            cur.execute("TRUNCATE events_jobattempt, events_job, events_event, "
                        "events_batchpublish, django_celery_results_taskresult, "
                        "notifications_deliveryattempt, notifications_delivery, "
                        "notifications_message CASCADE")
            cur.execute("VACUUM ANALYZE")
        connection.close()

    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.api_key}"}

    # --- helpers ------------------------------------------------------------------------

    def _ping_body(self) -> str:
        return json.dumps({"type": "demo.ping", "payload": {"message": "bench {seq}"}})

    def _batch_body(self, event_type: str, n: int) -> str:
        events = []
        for i in range(n):
            if event_type == "product.updated":
                pid, cat = self.products[i % len(self.products)]
                payload = {"product_id": pid, "category": cat, "changed": ["price"]}
            else:
                payload = {"message": f"bench {i}"}
            events.append({"type": event_type, "payload": payload})
        return json.dumps({"events": events})

    def _wait_jobs_done(self, expected: int, timeout: float) -> float:
        """Wait until `expected` jobs are terminal; return the last one's finish time (epoch)."""
        from django.db import connection
        from django.db.models import Max

        from domain.jobs.models import Job, JobStatus

        def done() -> bool:
            n = Job.objects.filter(status__in=(JobStatus.SUCCEEDED, JobStatus.DEAD)).count()
            return n >= expected

        wait_until(done, timeout, f"{expected} jobs to finish", interval=0.2)
        stats = Job.objects.aggregate(last=Max("finished_at"))
        dead = Job.objects.filter(status=JobStatus.DEAD).count()
        connection.close()
        if dead:
            raise RuntimeError(f"{dead} jobs died during the benchmark; see {self.stack.dir}")
        return stats["last"].timestamp()

    def _project_worker(self):
        from workers.profiles import PROFILES

        return self.stack.start_worker("worker", PROFILES["all"].command(
            hostname=f"bench-{uuid.uuid4().hex[:6]}@%h"))

    def _bare_worker(self, module: str, queue: str):
        return self.stack.start_worker(queue, [
            "celery", "-A", module, "worker", "-l", "INFO", "-Q", queue, "-c", "2",
            "-P", "prefork", "-O", "fair", "-n", f"{queue}-{uuid.uuid4().hex[:6]}@%h"])

    # --- scenarios ----------------------------------------------------------------------

    def ingest(self, port: int) -> None:
        """Single publish (with and without an Idempotency-Key) next to its baselines, then
        batch publish; no worker running.

        The baselines, on the same gunicorn and middleware (bench/urls.py): the minimal JSON
        view and the naive recipe (a plain Django view: `Event.objects.create` + `.delay()`).
        """
        c = self.cfg
        common = {"port": port, "connections": c["connections"], "duration": c["ingest_seconds"],
                  "warmup": c["warmup_seconds"], "method": "POST", "body": self._ping_body()}
        variants = {
            "baseline": ("minimal JSON view", lambda: {"path": "/bench/baseline"}),
            "naive": ("naive recipe", lambda: {"path": "/bench/naive"}),
            "publish": ("single publish", lambda: {"path": "/api/v1/events",
                                                   "headers": self.headers()}),
            "idem": ("single publish with an Idempotency-Key", lambda: {
                "path": "/api/v1/events",
                "headers": {**self.headers(), "Idempotency-Key": "bench-{seq}"},
                "seq_start": self._next_seq(10_000_000)}),
        }
        # The four alternate, and each figure is the median of its rounds: a neighbour's burst
        # on a shared 2-core machine then hits all of them, not one.
        runs: dict[str, list[dict]] = {key: [] for key in variants}
        for round_no in range(1, c["ingest_rounds"] + 1):
            for key, (what, spec) in variants.items():
                log(f"ingest round {round_no}/{c['ingest_rounds']}: {what}")
                run = loadgen(self.stack, {**common, **spec()})
                self._check(run, what)
                runs[key].append(run)
        m = {key: _median_run(rs) for key, rs in runs.items()}
        pub, idem, naive, base = (m[k] for k in ("publish", "idem", "naive", "baseline"))
        self.results["publish_single"] = {
            "rps": pub["ok_rps"], "p50_ms": pub["p50_ms"], "p99_ms": pub["p99_ms"],
            "naive_rps": naive["ok_rps"], "naive_p50_ms": naive["p50_ms"],
            "naive_p99_ms": naive["p99_ms"], "ratio_naive": _ratio(pub["ok_rps"],
                                                                   naive["ok_rps"]),
            "goal": ">= 1.0x naive recipe req/s, p99 <= naive p99",
            "met": pub["ok_rps"] >= naive["ok_rps"] and pub["p99_ms"] <= naive["p99_ms"],
            "baseline_rps": base["ok_rps"], "baseline_p50_ms": base["p50_ms"],
            "baseline_p99_ms": base["p99_ms"], "ratio": _ratio(pub["ok_rps"], base["ok_rps"]),
            "baseline_goal": ">= 0.5x minimal JSON view req/s",
            "baseline_met": pub["ok_rps"] >= 0.5 * base["ok_rps"],
            "idem_rps": idem["ok_rps"], "idem_p50_ms": idem["p50_ms"],
            "idem_p99_ms": idem["p99_ms"], "ratio_idem": _ratio(idem["ok_rps"], pub["ok_rps"]),
            "idem_goal": ">= 0.9x single publish without a key",
            "idem_met": idem["ok_rps"] >= 0.9 * pub["ok_rps"],
            "rounds": {f"{key}_rps": [r["ok_rps"] for r in rs] for key, rs in runs.items()},
            "raw": m}
        self.reset()
        n = c["batch_size"]
        batches = []
        for round_no in range(1, c["ingest_rounds"] + 1):
            log(f"ingest round {round_no}/{c['ingest_rounds']}: batch publish")
            batch = loadgen(self.stack, {
                "port": port, "connections": c["batch_connections"],
                "duration": c["ingest_seconds"], "warmup": c["warmup_seconds"],
                "method": "POST", "path": "/api/v1/events/batch",
                "body": self._batch_body("demo.ping", n), "headers": self.headers()})
            self._check(batch, "batch publish")
            batches.append(batch)
            self.reset()
        batch = _median_run(batches)
        events_per_s = round(batch["ok_rps"] * n, 1)
        self.results["publish_batch"] = {
            "events_per_s": events_per_s, "batch_size": n, "p50_ms": batch["p50_ms"],
            "p99_ms": batch["p99_ms"], "baseline_events_per_s": 10_000,
            "ratio": _ratio(events_per_s, 10_000), "goal": ">= 10,000 events/s (absolute)",
            "met": events_per_s >= 10_000,
            "rounds": {"events_per_s": [round(r["ok_rps"] * n, 1) for r in batches]},
            "raw": batch}
        self.reset()

    def _e2e_batches(self, port: int, event_type: str, n: int) -> dict:
        """n events of a type through the batch endpoint, from the first request until the
        last job is done (a worker running)."""
        c = self.cfg
        log(f"end to end: {n} x {event_type} through the batch endpoint")
        run = loadgen(self.stack, {
            "port": port, "connections": c["batch_connections"], "duration": 600,
            "requests": n // c["batch_size"], "method": "POST",
            "path": "/api/v1/events/batch", "body": self._batch_body(event_type, c["batch_size"]),
            "headers": self.headers()})
        self._check(run, f"end to end {event_type}")
        last = self._wait_jobs_done(n, timeout=600)
        elapsed = last - run["started_at"]
        return {"events": n, "events_per_s": round(n / elapsed, 1),
                "elapsed_s": round(elapsed, 2), "publish_elapsed_s": run["elapsed_s"]}

    def end_to_end(self, port: int) -> None:
        c = self.cfg
        n = c["e2e_events"]
        worker = self._project_worker()
        for event_type, key in (("demo.ping", "e2e_noop"), ("product.updated", "e2e_product")):
            self.results[key] = self._e2e_batches(port, event_type, n)
            self.reset()
        ns = c["e2e_single_events"]
        log(f"end to end: {ns} x demo.ping, one POST /api/v1/events each")
        run = loadgen(self.stack, {
            "port": port, "connections": 16, "duration": 600, "requests": ns, "method": "POST",
            "path": "/api/v1/events", "body": self._ping_body(), "headers": self.headers()})
        self._check(run, "e2e single")
        last = self._wait_jobs_done(ns, timeout=600)
        elapsed = last - run["started_at"]
        self.results["e2e_single"] = {"events": ns, "events_per_s": round(ns / elapsed, 1),
                                      "elapsed_s": round(elapsed, 2),
                                      "publish_elapsed_s": run["elapsed_s"]}
        self.reset()
        # A job alone on its message: the bench.solo kind has batch_size 1 (bench/solo.py).
        self.results["e2e_solo"] = self._e2e_batches(port, "bench.solo", c["e2e_solo_events"])
        self.reset()
        self.latency(port)
        self.stack.stop(worker)
        self.reset()
        # Two runs of each baseline; the faster one is used, which can only make our ratio
        # smaller.
        bare = _faster([self.bare_drain(n) for _ in range(2)])
        for key in ("e2e_noop", "e2e_product", "e2e_single"):
            r = self.results[key]
            r.update({"baseline_per_s": bare["per_s"], "ratio": _ratio(r["events_per_s"],
                                                                         bare["per_s"]),
                      "goal": ">= 1.0x bare Celery no-op drain rate",
                      "met": r["events_per_s"] >= bare["per_s"]})
        # One POST per event is the unbatched reference: what each event costs on its own.
        self.results["e2e_single"].update({"goal": "reference (no batching)", "met": None})
        self.results["bare_celery"] = bare
        stored = _faster([self.bare_drain(c["e2e_solo_events"], stored=True)
                          for _ in range(2)])
        solo = self.results["e2e_solo"]
        solo.update({"baseline_per_s": stored["per_s"],
                     "ratio": _ratio(solo["events_per_s"], stored["per_s"]),
                     "goal": ">= 1.0x bare Celery no-op with django-celery-results",
                     "met": solo["events_per_s"] >= stored["per_s"],
                     "bare_per_s": bare["per_s"],
                     "ratio_bare": _ratio(solo["events_per_s"], bare["per_s"])})
        self.results["bare_celery_results"] = stored

    def bare_drain(self, n: int, stored: bool = False) -> dict:
        """The baseline: n bare no-op tasks, sent with .delay() from another process, drained
        by a prefork worker with the project worker's pool and concurrency.

        `stored`: the app of bench/bare_results.py, whose worker stores every result with
        django-celery-results in the bench database (checked: n rows afterwards)."""
        import redis

        module, queue = ("bench.bare_results", "bare_results") if stored else ("bench.bare",
                                                                               "bare")
        if stored:
            self.reset()  # an empty result table each run
        log(f"baseline: {n} bare Celery no-op tasks{' storing results' if stored else ''}, "
            "prefork -c 2")
        worker = self._bare_worker(module, queue)
        client = redis.Redis(port=self.stack.redis_port)
        producer = subprocess.run(
            [str(BIN / "python"), "-c",
             "import time,sys; from " + module + " import noop; t=time.time(); "
             f"[noop.delay() for _ in range({n})]; print(t, time.time()-t)"],
            cwd=ROOT, env=self.stack.env, capture_output=True, text=True, check=True)
        started, send_s = (float(x) for x in producer.stdout.split())

        def drained() -> bool:
            return client.llen(queue) == 0 and client.hlen("unacked") == 0

        wait_until(drained, 600, f"the {queue} queue to drain", interval=0.01)
        elapsed = time.time() - started
        self.stack.stop(worker)
        result = {"tasks": n, "per_s": round(n / elapsed, 1), "elapsed_s": round(elapsed, 2),
                  "enqueue_per_s": round(n / send_s, 1)}
        if stored:
            from django.db import connection
            from django_celery_results.models import TaskResult

            result["results_stored"] = TaskResult.objects.filter(status="SUCCESS").count()
            connection.close()
            if result["results_stored"] != n:
                raise RuntimeError(f"baseline: {result['results_stored']} results stored for "
                                   f"{n} tasks; see {self.stack.dir / (queue + '.log')}")
        return result

    def latency(self, port: int) -> None:
        """Publish -> running at half the single-publish end-to-end rate, open loop."""
        from django.db import connection

        from domain.jobs.models import Job

        rate = max(10.0, round(self.results["e2e_single"]["events_per_s"] / 2))
        log(f"latency: single publishes at {rate:.0f}/s for {self.cfg['latency_seconds']}s")
        body = json.dumps({"type": "demo.ping", "occurred_at": "{now}",
                           "payload": {"message": "latency {seq}"}})
        run = loadgen(self.stack, {
            "port": port, "connections": 32, "rate": rate,
            "duration": self.cfg["latency_seconds"], "method": "POST",
            "path": "/api/v1/events", "body": body, "headers": self.headers()})
        self._check(run, "latency")
        self._wait_jobs_done(run["ok"], timeout=120)
        samples = sorted(
            (started - occurred).total_seconds() * 1000
            for started, occurred in Job.objects.values_list("started_at", "event__occurred_at"))
        connection.close()
        self.results["latency"] = {
            "rate_per_s": rate, "samples": len(samples),
            "p50_ms": round(_pct(samples, 50), 2), "p99_ms": round(_pct(samples, 99), 2),
            "max_ms": round(samples[-1], 2), "http_p99_ms": run["p99_ms"],
            "goal": "p99 <= 50 ms", "met": _pct(samples, 99) <= 50,
            "late_starts": run["late_starts"]}

    def memory(self) -> None:
        """Worker RSS (master + pool) after `small` and after `large` jobs.

        The jobs travel `memory_batch` to a message (10: 10,000 task executions for 100,000
        jobs). One message per job would take the single-job path's ~200 jobs/s on 2 cores,
        8 minutes for 100,000, past the suite's 10-minute budget.
        """
        from django.db import connection

        from domain.jobs import outbox
        from domain.jobs.kinds import NOOP
        from domain.jobs.models import Job

        small, large = self.cfg["memory_small"], self.cfg["memory_large"]
        worker = self._project_worker()
        chunk = 10_000
        done = 0
        readings = {}
        log(f"memory: {large} jobs ({self.cfg['memory_batch']} per message), RSS read after "
            f"{small} and {large}")
        for target in (small, large):
            while done < target:
                n = min(chunk, target - done)
                jobs = Job.objects.bulk_create([
                    Job(kind=NOOP.name, params={}, max_attempts=NOOP.retry.max_attempts)
                    for _ in range(n)])
                sent = outbox.outbox_send(jobs, max_batch=self.cfg["memory_batch"])
                if len(sent) != n:
                    raise RuntimeError("memory: the broker refused jobs")
                done += n
                self._wait_jobs_done(done, timeout=600)
            time.sleep(1)  # let the pool finish acknowledging
            readings[target] = tree_rss(worker.pid)
            log(f"memory: after {target} jobs {readings[target]}")
        connection.close()
        self.stack.stop(worker)
        growth = readings[large]["total_mib"] / readings[small]["total_mib"] - 1
        self.results["worker_memory"] = {
            "jobs_small": small, "jobs_large": large,
            "jobs_per_message": self.cfg["memory_batch"],
            "rss_small_mib": readings[small]["total_mib"],
            "rss_large_mib": readings[large]["total_mib"],
            "growth_pct": round(growth * 100, 2), "detail": readings,
            "ratio": round(readings[large]["total_mib"] / readings[small]["total_mib"], 3),
            "goal": "growth <= 10%", "met": growth <= 0.10}
        self.reset()

    def web_memory(self) -> None:
        """Peak RSS of each gunicorn worker while `batch_connections` connections send the
        largest batch the limits allow, with the full answer and with Prefer: return=minimal.

        The two alternate for `web_memory_rounds` rounds, each on a gunicorn of its own, started
        fresh: a worker's memory stays near its peak once reached, so a round on the same
        workers would start from the last one's. How the connections spread over the workers
        is the kernel's choice and varies from round to round; at least one worker always holds
        half of them, so the largest peak of a round is comparable between rounds. The baseline
        of the full answer is the workers' RSS before the load (after a warm-up of small
        batches); the minimal answer's is the full answer's peak.
        """
        c = self.cfg
        body, facts = worst_batch_body()
        body_file = self.stack.dir / "worst_batch.json"
        body_file.write_text(body)
        variants: dict[str, list[dict]] = {"full": [], "minimal": []}
        try:
            for round_no in range(1, c["web_memory_rounds"] + 1):
                for variant, prefer in (("full", {}), ("minimal", {"Prefer": "return=minimal"})):
                    log(f"web memory round {round_no}/{c['web_memory_rounds']} ({variant} "
                        f"answer): {c['batch_connections']} connections x "
                        f"{c['web_memory_batches']} batches of "
                        f"{facts['body_bytes'] / 2**20:.1f} MiB")
                    variants[variant].append(self._web_memory_round(body_file, prefer))
                    log(f"web memory ({variant} answer): {variants[variant][-1]}")
        finally:
            body_file.unlink()  # 16 MiB; the work directory is kept for its logs
        full, minimal = (_web_memory_summary(variants[v]) for v in ("full", "minimal"))
        self.results["web_memory"] = {
            **facts, "connections": c["batch_connections"],
            "batches_per_connection": c["web_memory_batches"], "full": full,
            "minimal": minimal, "ratio": _ratio(minimal["max_peak_mib"], full["max_peak_mib"]),
            "goal": "none (a measurement)", "met": None}

    def _web_memory_round(self, body_file: Path, prefer: dict) -> dict:
        c = self.cfg
        web, port = self.stack.start_web()
        workers = gunicorn_workers(web.pid)
        self._check(loadgen(self.stack, {
            "port": port, "connections": c["batch_connections"], "duration": 60,
            "requests": 2 * c["batch_connections"], "method": "POST",
            "path": "/api/v1/events/batch", "body": self._batch_body("demo.ping", 10),
            "headers": self.headers()}), "web memory warm-up")
        idle = [rss_now_and_peak(pid)[0] for pid in workers]
        run = loadgen(self.stack, {
            "port": port, "connections": c["batch_connections"], "duration": 600,
            "requests": c["batch_connections"] * c["web_memory_batches"], "method": "POST",
            "path": "/api/v1/events/batch", "body_file": str(body_file),
            "headers": {**self.headers(), **prefer}})
        self._check(run, "web memory")
        time.sleep(1)
        if gunicorn_workers(web.pid) != workers:
            raise RuntimeError("web memory: a gunicorn worker was replaced mid-measurement "
                               "(GUNICORN_MAX_REQUESTS below the scenario's requests)")
        readings = [rss_now_and_peak(pid) for pid in workers]
        self.stack.stop(web)
        self.reset()
        return {"idle_mib": idle, "peak_mib": [peak for _, peak in readings],
                "after_mib": [now for now, _ in readings],
                "answer_mib": round(run["mean_answer_bytes"] / 2**20, 3),
                "requests": run["ok"], "p50_ms": run["p50_ms"], "elapsed_s": run["elapsed_s"]}

    # --- bookkeeping --------------------------------------------------------------------

    def _next_seq(self, step: int) -> int:
        self.seq += step
        return self.seq

    @staticmethod
    def _check(run: dict, what: str) -> None:
        bad = {s: n for s, n in run["statuses"].items() if not s.startswith("2")}
        if bad or run["errors"] or not run["ok"]:
            raise RuntimeError(f"{what}: non-2xx answers {bad}, connection errors "
                               f"{run['errors']}; first error body: {run['sample_error_body']}")


def _web_memory_summary(rounds: list[dict]) -> dict:
    """One variant's rounds: the largest worker peak of each, and of all (its worst case);
    the RSS that worst worker still held a second after the load; the largest idle RSS."""
    worst = max(rounds, key=lambda r: max(r["peak_mib"]))
    at = worst["peak_mib"].index(max(worst["peak_mib"]))
    return {"max_peak_mib": worst["peak_mib"][at], "after_mib": worst["after_mib"][at],
            "round_peaks_mib": [max(r["peak_mib"]) for r in rounds],
            "max_idle_mib": max(max(r["idle_mib"]) for r in rounds),
            "answer_mib": worst["answer_mib"], "rounds": rounds}


def worst_batch_body() -> tuple[str, dict]:
    """The largest batch the limits allow: API_MAX_BATCH_EVENTS demo.ping events whose
    payloads fill the body to 99.5% of API_MAX_BATCH_BODY_BYTES (each payload under
    API_MAX_PAYLOAD_BYTES, which binds first only if it is the smaller)."""
    from django.conf import settings

    n, limit = settings.API_MAX_BATCH_EVENTS, settings.API_MAX_BATCH_BODY_BYTES

    def body(filler: str) -> str:
        return json.dumps({"events": [
            {"type": "demo.ping", "payload": {"message": f"bench {i}", "blob": filler}}
            for i in range(n)]})

    room = (int(limit * 0.995) - len(body(""))) // n
    largest_payload = len(json.dumps({"message": f"bench {n}", "blob": ""}))
    size = min(room, settings.API_MAX_PAYLOAD_BYTES - largest_payload)
    text = body(("abcdefghijklmnopqrstuvwxyz0123456789" * (size // 36 + 1))[:size])
    return text, {"events_per_batch": n, "body_bytes": len(text.encode()),
                  "body_limit_bytes": limit, "payload_bytes": largest_payload + size,
                  "payload_limit_bytes": settings.API_MAX_PAYLOAD_BYTES}


def _faster(drains: list[dict]) -> dict:
    """The faster of a baseline's drains, with every run's rate."""
    best = max(drains, key=lambda d: d["per_s"])
    return {**best, "runs_per_s": [d["per_s"] for d in drains]}


def _median_run(runs: list[dict]) -> dict:
    """The run with the median rate (its latencies come with it)."""
    return sorted(runs, key=lambda r: r["ok_rps"])[(len(runs) - 1) // 2]


def _ratio(value: float, baseline: float) -> float:
    return round(value / baseline, 3) if baseline else 0.0


def _pct(values: list[float], q: float) -> float:
    index = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
    return values[index]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs, under 3 minutes")
    parser.add_argument("--only", default=",".join(DEFAULT_SCENARIOS),
                        help=f"comma-separated subset of {','.join(SCENARIOS)} (default: "
                        f"all but {','.join(sorted(set(SCENARIOS) - set(DEFAULT_SCENARIOS)))})")
    parser.add_argument("--out", default=None,
                        help="where the report goes (default: bench/results/latest.json; a run "
                        "of opt-in scenarios only: bench/results/<their names>.json)")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    only = set(args.only.split(","))
    if only - set(SCENARIOS):
        parser.error(f"unknown scenario(s) {','.join(sorted(only - set(SCENARIOS)))}; "
                     f"choose from {','.join(SCENARIOS)}")
    if args.out is None:  # an opt-in scenario's run does not replace the suite's latest.json
        name = "-".join(sorted(only)) if only <= set(OPT_IN_SCENARIOS) else "latest"
        args.out = str(RESULTS / f"{name}.json")
    database_url = os.environ.get("BENCH_DATABASE_URL",
                                  "postgres://postgres@127.0.0.1:5432/conveyor_bench")
    t0 = time.monotonic()
    # Every process the suite starts lives in its own session, out of reach of the terminal's
    # signals; a SIGTERM or SIGHUP (a `timeout`, a closed terminal) must still run the
    # `finally` below that stops them. Ctrl-C already does (KeyboardInterrupt).
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: sys.exit(128 + signum))
    stack = Stack(database_url)
    try:
        log(f"work dir (logs) {stack.dir}")
        stack.create_database()
        stack.start_redis()
        stack.manage("migrate", "--noinput")
        suite = Suite(stack, cfg)
        suite.setup()
        suite.reset()
        if only & {"ingest", "e2e", "webhooks", "emails", "bulk", "prune"}:
            web, port = stack.start_web()
            if "ingest" in only:
                suite.ingest(port)
            if "e2e" in only:
                suite.end_to_end(port)
            if "webhooks" in only:
                from bench.webhooks import WebhooksScenario

                WebhooksScenario(suite).run(port)
            if "emails" in only:
                from bench.emails import EmailsScenario

                EmailsScenario(suite).run(port)
            if "bulk" in only:
                from bench.bulk import BulkScenario

                BulkScenario(suite).run(port)
            if "prune" in only:
                from bench.prune import PruneScenario

                PruneScenario(suite).run(port)
            stack.stop(web)
        if "metrics" in only:
            from bench.metrics import MetricsScenario

            MetricsScenario(suite).run()
        if "memory" in only:
            suite.memory()
        if "web_memory" in only:
            suite.web_memory()
    finally:
        stack.stop_all()
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(), "postgres": stack.postgres_version,
                    "redis": stack.redis_version},
        "config": cfg,
        "wall_seconds": round(time.monotonic() - t0, 1),
        "results": suite.results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    from bench.report import chart, table

    print(table(report))
    png = out.with_suffix(".png")
    chart(report, png)
    log(f"wrote {out} and {png} in {report['wall_seconds']}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

