"""The benchmark's own tools count what they claim to count. No timing is asserted here: the
load generator runs against a local HTTP server that records what it received."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench.report import chart, table
from bench.run import SCENARIOS, _median_run, _web_memory_summary, main, worst_batch_body
from bench.stack import gunicorn_command, rss_now_and_peak

ROOT = Path(__file__).resolve().parents[2]


class _Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the load generator expects
    received: list[tuple[str, str, dict]] = []
    lock = threading.Lock()
    # Answers per connection before the server closes it, saying so (`Connection: close`), as
    # gunicorn does for a worker's last request under --max-requests; 0: never.
    close_after = 0

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        with self.lock:
            self.received.append((self.path, body, dict(self.headers)))
        self.answered = getattr(self, "answered", 0) + 1  # one handler per connection
        status = 422 if "fail" in body else 202
        payload = b'{"ok": true}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        if self.close_after and self.answered % self.close_after == 0:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _Recorder.received = []
    _Recorder.close_after = 0
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


def test_connections_the_server_closes_after_an_answer_are_reopened_not_counted_as_errors(
        server):
    # given a server that closes every connection after its third answer, saying so in the
    # answer (gunicorn recycling a worker with --max-requests)
    _Recorder.close_after = 3

    # when the load generator sends 40 requests over 4 connections, closed loop and open loop
    closed = _loadgen({"port": server.server_address[1], "connections": 4, "duration": 30,
                       "requests": 40, "method": "POST", "path": "/x", "body": "{}"})
    opened = _loadgen({"port": server.server_address[1], "connections": 4, "rate": 40,
                       "duration": 1, "method": "POST", "path": "/x", "body": "{}"})

    # then every request was answered, none counted as an error, and the reopened connections
    # are counted apart
    for result in (closed, opened):
        assert result["ok"] == result["requests"] == 40, result
        assert result["errors"] == 0
        assert result["reconnects"] >= 40 // 3 - 4
    assert len(_Recorder.received) == 80


def test_a_body_file_is_sent_as_the_body(server, tmp_path):
    # given a body of 1 MiB in a file (larger than a command-line argument may be)
    body = '{"blob": "' + "x" * 2**20 + '"}'
    path = tmp_path / "body.json"
    path.write_text(body)

    # when the load generator sends it twice
    result = _loadgen({"port": server.server_address[1], "connections": 1, "duration": 30,
                       "requests": 2, "method": "POST", "path": "/x", "body_file": str(path)})

    # then the server received the file's content each time, and the answers were counted
    assert result["ok"] == 2
    assert [b for _, b, _ in _Recorder.received] == [body, body]
    assert result["mean_answer_bytes"] == len(b'{"ok": true}')


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
                  "worker RSS", "gunicorn worker peak RSS", "Prefer: return=minimal"):
        assert label in text
    # the web memory rows: each peak next to its same-run baseline (idle, then the full answer)
    assert "663 MiB (round peaks 663, 662; 604 a second after; answers 16.31 MiB)" in text
    assert "88 MiB idle before the load" in text and "7.58x" in text
    assert "632 MiB (round peaks 603, 632; 535 a second after; answers 0.11 MiB)" in text
    assert "663 MiB full answer, same run" in text and "0.95x" in text
    assert "0.12x" in text and "NO" in text and "yes" in text
    # and the chart is a PNG file
    png = tmp_path / "chart.png"
    chart(report, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_single_publish_is_set_against_each_of_its_baselines():
    # given a report as the suite writes it
    report = json.loads((Path(__file__).parent / "sample_report.json").read_text())
    lines = table(report).splitlines()

    def row(*parts: str) -> str:
        [line] = [line for line in lines if all(part in line for part in parts)]
        return line

    # then single publish without a key is set against the naive recipe (the goal) and the
    # minimal JSON view (the moonshot), each with its ratio
    publish = "273 req/s (p50 114.83 ms, p99 207.26 ms)"
    naive = row("naive recipe, create + .delay()")
    assert publish in naive and "610 req/s naive recipe, create + .delay() (p50 48.2 ms, " \
        "p99 95.71 ms)" in naive
    assert "0.45x" in naive and ">= 1.0x, p99 <= naive p99" in naive and "NO" in naive
    view = row("minimal JSON view")
    assert publish in view and "2,613 req/s minimal JSON view" in view
    assert "0.10x" in view and "moonshot" in view
    # and with an Idempotency-Key against without one
    idem = row("with an Idempotency-Key")
    assert "251 req/s (p50 120.4 ms, p99 230.15 ms)" in idem
    assert "273 req/s without a key" in idem
    assert "0.92x" in idem and ">= 0.9x" in idem and "yes" in idem


def test_a_job_alone_on_its_message_is_set_against_bare_celery_with_and_without_results():
    report = json.loads((Path(__file__).parent / "sample_report.json").read_text())
    lines = [line for line in table(report).splitlines() if "one job per message" in line]

    # then two rows: against the no-op storing its result (the goal), and without results
    assert len(lines) == 2
    stored, bare = lines
    assert "180 events/s (1,500 in 8.31 s)" in stored and "180 events/s" in bare
    assert "413 tasks/s bare Celery no-op storing its result" in stored
    assert "0.44x" in stored and ">= 1.0x" in stored and "NO" in stored
    assert "900 tasks/s bare Celery no-op, prefork -c 2" in bare
    assert "0.20x" in bare and "reference" in bare


def test_a_report_from_before_the_naive_recipe_still_renders(tmp_path):
    # given a single-publish figure as the suite wrote it before (only the JSON view)
    report = json.loads((Path(__file__).parent / "sample_report.json").read_text())
    p = report["results"]["publish_single"]
    report["results"] = {"publish_single": {
        k: p[k] for k in ("rps", "p50_ms", "p99_ms", "baseline_rps", "baseline_p50_ms",
                          "baseline_p99_ms", "ratio")} | {"met": False}}

    # then it is one row against the JSON view, and the chart is drawn
    text = table(report)
    assert len(text.splitlines()) == 3 + 1
    assert "minimal JSON view" in text and "0.10x" in text and ">= 0.5x" in text
    chart(report, tmp_path / "chart.png")
    assert (tmp_path / "chart.png").read_bytes()[:4] == b"\x89PNG"


def test_web_memory_summary_takes_the_worst_worker_of_the_worst_round():
    # given two rounds of two workers each
    rounds = [
        {"idle_mib": [80, 90], "peak_mib": [500, 300], "after_mib": [450, 280],
         "answer_mib": 16.3},
        {"idle_mib": [85, 70], "peak_mib": [200, 600], "after_mib": [190, 550],
         "answer_mib": 16.3},
    ]

    # then the figure is that worker's peak and what it held after, with each round's peak
    summary = _web_memory_summary(rounds)
    assert summary["max_peak_mib"] == 600 and summary["after_mib"] == 550
    assert summary["round_peaks_mib"] == [500, 600]
    assert summary["max_idle_mib"] == 90


def test_web_memory_alone_renders_a_table_and_a_chart(tmp_path):
    # given a report of the web memory scenario only (`--only web_memory`)
    report = json.loads((Path(__file__).parent / "sample_report.json").read_text())
    report["results"] = {"web_memory": report["results"]["web_memory"]}

    # then the table holds its two rows and nothing else, and the chart is still drawn
    assert len(table(report).splitlines()) == 3 + 2
    chart(report, tmp_path / "chart.png")
    assert (tmp_path / "chart.png").read_bytes()[:4] == b"\x89PNG"


def test_an_unknown_scenario_is_refused_before_anything_starts(capsys):
    # when --only names a scenario that does not exist
    with pytest.raises(SystemExit) as exit_info:
        main(["--only", "web_memory,nope"])

    # then the suite stops at once, naming the scenarios there are
    assert exit_info.value.code == 2
    assert "nope" in capsys.readouterr().err
    assert "web_memory" in SCENARIOS


@pytest.mark.django_db
def test_the_worst_batch_fills_the_body_limit_with_valid_events():
    # given the suite's worst batch for the limits in force
    from django.conf import settings

    from domain.events.services import event_validate

    body, facts = worst_batch_body()
    events = json.loads(body)["events"]

    # then it is just under the batch body limit, with the most events a batch may hold
    limit = settings.API_MAX_BATCH_BODY_BYTES
    assert facts["body_bytes"] == len(body.encode())
    assert 0.99 * limit < len(body.encode()) <= limit
    assert len(events) == facts["events_per_batch"] == settings.API_MAX_BATCH_EVENTS

    # and every event would be accepted (type, schema, payload size under its own limit)
    for event in events:
        event_validate(event_type=event["type"], payload=event["payload"], occurred_at=None)
    assert max(len(json.dumps(e["payload"])) for e in events) <= facts["payload_bytes"]
    assert facts["payload_bytes"] <= settings.API_MAX_PAYLOAD_BYTES


def test_the_stack_starts_gunicorn_with_compose_flags_and_defaults(tmp_path):
    # given compose/django/start's gunicorn flags whose value comes from the environment
    script = (ROOT / "compose" / "django" / "start").read_text()
    from_env = dict(re.findall(r'--([a-z-]+) "\$\{GUNICORN_[A-Z_]+:-([^}]*)\}"', script))
    assert {"workers", "threads", "max-requests", "max-requests-jitter"} <= set(from_env)
    assert "--worker-class gthread" in script

    # when the benchmark stack builds its gunicorn command with none of them set
    command = gunicorn_command(8000, tmp_path, env={})

    # then each flag has compose's default, and the worker class is the same
    flags = dict(zip(command[2::2], command[3::2], strict=False))
    for flag in ("workers", "threads", "max-requests", "max-requests-jitter"):
        assert flags[f"--{flag}"] == from_env[flag], flag
    assert flags["--worker-class"] == "gthread"

    # and a value set in the environment wins, as in compose
    assert "123" in gunicorn_command(8000, tmp_path, env={"GUNICORN_MAX_REQUESTS": "123"})


def test_rss_reading_catches_a_peak_that_is_gone():
    # given a process that held 200 MiB for a moment, then let go of it
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; b = bytearray(200 * 2**20); "
         "b[::4096] = b'x' * len(b[::4096]); del b; print('ok', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ok"

        # when its memory is read afterwards
        now, peak = rss_now_and_peak(proc.pid)
    finally:
        proc.kill()
        proc.wait()

    # then the peak still shows the 200 MiB, and "now" does not
    assert peak >= 200
    assert now < peak - 150
