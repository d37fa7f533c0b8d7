"""The benchmark's own tools count what they claim to count. No timing is asserted here: the
load generator runs against a local HTTP server that records what it received."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench.report import chart, table
from bench.run import _median_run

ROOT = Path(__file__).resolve().parents[2]


class _Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the load generator expects
    received: list[tuple[str, str, dict]] = []
    lock = threading.Lock()

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        with self.lock:
            self.received.append((self.path, body, dict(self.headers)))
        status = 422 if "fail" in body else 202
        payload = b'{"ok": true}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _Recorder.received = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _loadgen(spec: dict) -> dict:
    out = subprocess.run([sys.executable, "-m", "bench.loadgen", json.dumps(spec)], cwd=ROOT,
                         capture_output=True, text=True, check=True, timeout=60)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_closed_loop_sends_exactly_the_budget_with_unique_templated_values(server):
    # given a budget of 60 requests over 4 connections, with templated body and header
    result = _loadgen({
        "port": server.server_address[1], "connections": 4, "duration": 30, "requests": 60,
        "method": "POST", "path": "/api/v1/events", "seq_start": 100,
        "headers": {"Idempotency-Key": "k-{seq}"},
        "body": '{"n": {seq}, "at": "{now}"}'})

    # then the server saw exactly 60, each with its own number in body and header
    assert result["requests"] == result["ok"] == 60
    assert result["statuses"] == {"202": 60}
    bodies = [json.loads(body) for _, body, _ in _Recorder.received]
    assert sorted(b["n"] for b in bodies) == list(range(100, 160))
    keys = {headers["Idempotency-Key"] for _, _, headers in _Recorder.received}
    assert len(keys) == 60
    assert all(b["at"].endswith("Z") and "T" in b["at"] for b in bodies)
    assert result["p50_ms"] is not None and result["p50_ms"] <= result["p99_ms"]


def test_non_2xx_answers_are_counted_and_sampled(server):
    result = _loadgen({"port": server.server_address[1], "connections": 2, "duration": 30,
                       "requests": 10, "method": "POST", "path": "/x", "body": '{"fail": 1}'})
    assert result["ok"] == 0 and result["statuses"] == {"422": 10}
    assert result["sample_error_body"] == '{"ok": true}'


def test_open_loop_issues_requests_on_schedule_until_the_duration_ends(server):
    # given 50 requests/s for 1 second
    result = _loadgen({"port": server.server_address[1], "connections": 4, "rate": 50,
                       "duration": 1, "method": "POST", "path": "/x", "body": "{}"})
    # then 50 were scheduled and all answered (the count does not depend on speed)
    assert result["requests"] == len(_Recorder.received) == 50


def test_loadgen_refuses_any_host_but_loopback():
    proc = subprocess.run([sys.executable, "-m", "bench.loadgen",
                           json.dumps({"host": "example.com", "port": 80})], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "only to 127.0.0.1" in proc.stderr


def test_median_run_picks_the_middle_rate():
    runs = [{"ok_rps": 300.0}, {"ok_rps": 100.0}, {"ok_rps": 200.0}]
    assert _median_run(runs)["ok_rps"] == 200.0
    assert _median_run(runs[:2])["ok_rps"] == 100.0  # even count: the lower, conservative


def test_report_renders_every_figure_with_its_baseline_and_ratio(tmp_path):
    # given a report as the suite writes it
    report = json.loads((Path(__file__).parent / "sample_report.json").read_text())

    # then the table has a row per figure, each with baseline, ratio and verdict
    text = table(report)
    for label in ("single publish", "batch publish", "demo.ping -> noop job",
                  "product.updated", "one POST per event", "publish -> running",
                  "worker RSS"):
        assert label in text
    assert "0.12x" in text and "NO" in text and "yes" in text
    # and the chart is a PNG file
    png = tmp_path / "chart.png"
    chart(report, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
