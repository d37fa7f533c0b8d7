"""Beat's liveness file: the scheduler touches it at every tick, a container probe reads its age.

Celery Beat has no liveness probe of its own, and what it does is not visible from outside
without a worker: the run ledger's rows are written by the workers that run Beat's messages, so
a Beat whose workers are down would look dead while it is sending. A file touched at the end of
every tick is what only a running, ticking Beat does: LedgerScheduler ticks at least every 5 s
(django-celery-beat's max_interval) and touches `BEAT_HEARTBEAT_FILE` after each tick
(scheduler/beat.py); a Beat stuck in a tick, or gone, stops touching it. A file, not a Redis
key: the probe asks about this container's Beat, and should not fail with the network.

    python -m scheduler.heartbeat /tmp/conveyor-beat.heartbeat --max-age 60

exits 0 when the file was touched in the last 60 seconds, 1 otherwise (the compose file's Beat
healthcheck). It imports nothing of Django, so a probe costs a few milliseconds of CPU.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

logger = logging.getLogger(__name__)

DEFAULT_MAX_AGE = 60.0  # seconds: twelve of Beat's longest waits between ticks
_failed: set[str] = set()  # paths already reported unwritable, so a tick does not log each time


def heartbeat_touch(path: str) -> None:
    """Set the file's modification time to now, creating it if needed. A file that cannot be
    written is logged once per process and Beat keeps going: its probe then reports it."""
    try:
        with open(path, "a"):
            os.utime(path)
    except OSError as exc:
        if path not in _failed:
            _failed.add(path)
            logger.error("beat heartbeat not written path=%s error=%r", path, exc)


def heartbeat_age(path: str, *, now: float | None = None) -> float | None:
    """Seconds since the file was last touched; None when there is no file."""
    try:
        modified = os.stat(path).st_mtime
    except FileNotFoundError:
        return None
    return (time.time() if now is None else now) - modified


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scheduler.heartbeat",
        description="Exit 0 when Beat's heartbeat file is fresh (a liveness probe).")
    parser.add_argument("path", help="the file Beat touches (BEAT_HEARTBEAT_FILE)")
    parser.add_argument("--max-age", type=float, default=DEFAULT_MAX_AGE,
                        help=f"seconds (default {DEFAULT_MAX_AGE:.0f})")
    args = parser.parse_args(argv)
    if not args.path:
        print("beat heartbeat: no path given (is BEAT_HEARTBEAT_FILE set?)", file=sys.stderr)
        return 1
    age = heartbeat_age(args.path)
    if age is None:
        print(f"beat heartbeat: {args.path} does not exist (Beat has not ticked)",
              file=sys.stderr)
        return 1
    if age > args.max_age:
        print(f"beat heartbeat: last tick {age:.0f} s ago, over {args.max_age:.0f} s",
              file=sys.stderr)
        return 1
    print(f"beat heartbeat: last tick {age:.1f} s ago")
    return 0


if __name__ == "__main__":
    sys.exit(main())
