"""/api/docs in a real browser: headless Chromium renders Swagger UI from the project's own
static files and shows every operation of the schema.

Needs Debian's Chromium at /usr/bin/chromium (`apt-get install chromium`); without it the test
skips, saying so. The flags keep Chromium off the network it would otherwise try to reach in
the background (on a closed network it then hangs); the page itself must need nothing but the
live server.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
from django.test import Client

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    # Virtual time runs until the page is idle (the schema fetched, Swagger UI rendered) or
    # the budget is spent, so the dump is of the rendered page, with no sleep to tune.
    "--virtual-time-budget=30000",
]
# Each operation's summary line: its method, then its path.
_OPERATION = re.compile(
    r'class="opblock-summary-method">(\w+)</span>.*?data-path="([^"]+)"', re.S)

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Debian's Chromium at /usr/bin/chromium (apt-get install chromium)")


def _rendered_dom(url: str, profile: Path) -> str:
    """The DOM after the page's scripts ran, from a headless Chromium of its own process
    group (so a hung Chromium and all its helpers are stopped, not left behind)."""
    process = subprocess.Popen(
        [str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"Chromium did not finish rendering {url} in 120 s")
    assert process.returncode == 0, err[-2000:]
    return out


def test_swagger_ui_renders_every_operation(live_server, tmp_path):
    # given the operations the schema documents
    schema = Client().get("/api/schema", HTTP_ACCEPT="application/json").json()
    documented = {(method.upper(), path) for path, item in schema["paths"].items()
                  for method in item if method in {"get", "post", "put", "patch", "delete"}}
    assert ("POST", "/api/v1/events") in documented

    # when a real browser opens the docs page on a live server
    dom = _rendered_dom(f"{live_server.url}/api/docs", tmp_path / "chromium-profile")

    # then Swagger UI ran (it could only load from our own static files) and drew one
    # operation block per documented operation, POST /api/v1/events among them
    assert 'id="swagger-ui"' in dom
    assert "Failed to load API definition" not in dom
    assert 'id="operations-v1-events_publish"' in dom
    assert set(_OPERATION.findall(dom)) == documented
