"""`manage.py bulk_update OPERATION [--args JSON] [--csv FILE] [--dry-run] [--wait]`: start a
bulk run, as POST /api/v1/bulk-operations does, and with --wait follow it to its end."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from rest_framework.exceptions import APIException

from domain.bulk import selectors, services
from domain.bulk.models import FINISHED_STATUSES, BulkRun, BulkRunStatus
from domain.common.errors import ApplicationError

POLL_SECONDS = 0.5
BAR_WIDTH = 30


class Command(BaseCommand):
    help = ("Start a bulk run of a registered operation (see GET /api/v1/bulk-operation-types). "
            "With --wait, show its progress until it ends; Ctrl-C then detaches and the run "
            "goes on.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("operation", help="e.g. catalog.reprice")
        parser.add_argument("--args", dest="op_args", default="{}",
                            help="the operation's args as JSON")
        parser.add_argument("--csv", metavar="FILE",
                            help="the rows, for an operation that takes CSV ('-': stdin)")
        parser.add_argument("--dry-run", action="store_true",
                            help="count the rows that would change; change none")
        parser.add_argument("--wait", action="store_true",
                            help="show a progress bar until the run ends (Ctrl-C detaches)")
        parser.add_argument("--chunk-size", type=int, help="the first chunk's rows")
        parser.add_argument("--fixed-chunk-size", action="store_true",
                            help="keep --chunk-size (no adaptive sizing)")
        parser.add_argument("--pause-seconds", type=float, help="pause between chunks")
        parser.add_argument("--target-chunk-seconds", type=float,
                            help="what the adaptive chunk size aims at")
        parser.add_argument("--lock-timeout-seconds", type=float,
                            help="how long a chunk waits for rows others hold")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            run_args = json.loads(options["op_args"])
        except json.JSONDecodeError as exc:
            raise CommandError(f"--args is not JSON: {exc}") from exc
        throttle = services.Throttle(
            chunk_size=options["chunk_size"],
            adaptive=False if options["fixed_chunk_size"] else None,
            pause_seconds=options["pause_seconds"],
            target_chunk_seconds=options["target_chunk_seconds"],
            lock_timeout_seconds=options["lock_timeout_seconds"])
        run = self._start(options, run_args, throttle)
        self.stdout.write(f"bulk run {run.pk} {run.status}: {run.operation}"
                          f"{' (dry run)' if run.dry_run else ''}, job {run.job_id}")
        if not options["wait"]:
            self.stdout.write(f"follow it: GET /api/v1/bulk-operations/{run.pk}")
            return
        self._follow(run)

    def _start(self, options: dict, run_args: Any, throttle: services.Throttle) -> BulkRun:
        path = options["csv"]
        try:
            if path is None:
                return services.bulk_run_start(operation=options["operation"], args=run_args,
                                               dry_run=options["dry_run"], throttle=throttle)
            stream = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
            with stream:
                return services.bulk_run_start(
                    operation=options["operation"], args=run_args, dry_run=options["dry_run"],
                    throttle=throttle, csv_stream=stream)
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc}") from exc
        except ApplicationError as exc:
            details = json.dumps(exc.details, indent=2, default=str) if exc.details else ""
            raise CommandError(f"{exc.code}: {exc}\n{details}".rstrip()) from exc
        except APIException as exc:  # the CSV is larger than BULK_CSV_MAX_BYTES
            raise CommandError(f"{exc.default_code}: {exc.detail}") from exc

    def _follow(self, run: BulkRun) -> None:
        tty = self.stdout.isatty()
        last_line = ""
        try:
            while True:
                # (settled as the API's reads are: a run whose job ended without it ends)
                run = services.bulk_run_settle(
                    run=selectors.bulk_run_get(run_id=run.pk, api_key=None))
                line = progress_line(run)
                if tty:
                    self.stdout.write(f"\r{line}\x1b[K", ending="")
                    self.stdout.flush()
                elif line != last_line:
                    self.stdout.write(line)
                last_line = line
                if run.status in FINISHED_STATUSES or run.status == BulkRunStatus.PAUSED:
                    break
                time.sleep(POLL_SECONDS)
        except KeyboardInterrupt:
            self.stdout.write("")
            self.stdout.write(f"detached; bulk run {run.pk} goes on "
                              f"(cancel: POST /api/v1/bulk-operations/{run.pk}/cancel)")
            return
        if tty:
            self.stdout.write("")
        self._ended(run)

    def _ended(self, run: BulkRun) -> None:
        if run.status == BulkRunStatus.SUCCEEDED:
            what = "would change" if run.dry_run else "changed"
            self.stdout.write(self.style.SUCCESS(
                f"succeeded: {run.rows_changed:,} rows {what} of {run.rows_done:,} visited in "
                f"{run.chunks_done} chunks, {run.elapsed_seconds:.1f} s"))
            return
        if run.status == BulkRunStatus.PAUSED:
            self.stdout.write(f"paused at {run.checkpoint!r} after {run.rows_done:,} rows "
                              f"(resume: POST /api/v1/bulk-operations/{run.pk}/resume)")
            return
        error = f": {run.last_error.get('message')}" if run.last_error else ""
        raise CommandError(f"bulk run {run.pk} {run.status} after {run.rows_done:,} rows "
                           f"(checkpoint {run.checkpoint!r}){error}")


def progress_line(run: BulkRun) -> str:
    """`[#####.....]  45.2%  452,000/1,000,000 rows  310,512 rows/s  ETA 2s  running`"""
    total = run.rows_matched
    if total:
        share = min(run.rows_done / total, 1.0)
        filled = int(share * BAR_WIDTH)
        bar = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {share * 100:5.1f}%"
        rows = f"{run.rows_done:,}/{total:,} rows"
    else:
        bar, rows = f"[{'.' * BAR_WIDTH}]    -  ", f"{run.rows_done:,} rows"
    rate = selectors.bulk_run_rate(run)
    eta = selectors.bulk_run_eta(run)
    parts = [bar, rows, f"{rate:,.0f} rows/s" if rate else "", f"ETA {_duration(eta)}"
             if eta is not None else "", run.status + (f" ({run.requested} asked)"
                                                       if run.requested else "")]
    return "  ".join(p for p in parts if p)


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
