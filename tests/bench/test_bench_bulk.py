"""The `bulk` scenario's tools do what they claim: the baseline UPDATE rounds as the
operation does; the price files list every product once with a new, valid price; the
statement timer sees every chunk of a real run, and its EXPLAIN ANALYZE changes nothing;
the report sets each figure against its baseline. No timing is asserted."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection

from bench.bulk import (
    CATEGORY,
    SKU,
    StatementTimer,
    overlap,
    profile_summary,
    reprice_statement,
    run_in_process,
    write_prices,
)
from bench.report import chart, table
from domain.bulk.models import BulkRunStatus
from domain.bulk.services import Throttle, bulk_run_start
from domain.catalog.bulk_operations import SET_PRICES, round_half_even
from domain.catalog.models import Product
from tests.bench.test_bench_tools import _Recorder, server  # noqa: F401 - the fixture
from tests.factories import ProductFactory

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(connection.vendor != "postgresql",
                                reason="the bulk scenario measures PostgreSQL's statements")


@pytest.mark.django_db
def test_the_raw_update_rounds_half_even_as_the_operation_does():
    # given prices whose +10% falls on half a cent (0.055, 0.165, 11.055, 1.375) and others
    prices = ["0.05", "0.15", "10.05", "1.25", "99.99", "0.00", "7.30"]
    for n, price in enumerate(prices):
        ProductFactory(sku=f"R-{n}", category=CATEGORY, price=price)
    other = ProductFactory(category="elsewhere", price="0.05")

    # when the baseline's statement runs
    sql, params = reprice_statement()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        assert cursor.rowcount == len(prices)

    # then each price is the operation's half-even rounding of +10%, and only the category's
    for n, price in enumerate(prices):
        stored = Product.objects.get(sku=f"R-{n}").price
        assert stored == round_half_even(Decimal(price) * Decimal("1.1")), price
    assert Product.objects.get(pk=other.pk).price == Decimal("0.05")
    assert Product.objects.get(sku="R-0").price == Decimal("0.06")  # 0.055: ties to even
    assert Product.objects.get(sku="R-1").price == Decimal("0.16")  # 0.165


def test_each_price_file_lists_every_product_once_with_a_valid_new_price(tmp_path):
    # given two consecutive variants of the file for 1,234 products
    first, second = tmp_path / "1.csv", tmp_path / "2.csv"
    write_prices(first, 1234, 1)
    size = write_prices(second, 1234, 2)
    read = [list(csv.reader(path.open())) for path in (first, second)]

    # then each has the header and one line per product, in sku order
    assert size == second.stat().st_size
    for rows in read:
        assert rows[0] == ["sku", "price"]
        assert [sku for sku, _ in rows[1:]] == [SKU.format(i) for i in range(1, 1235)]
        assert all(SET_PRICES.check_row({"sku": s, "price": p}) is None for s, p in rows[1:])
    # and every price differs from the previous file's
    assert all(a[1] != b[1] for a, b in zip(read[0][1:], read[1][1:], strict=True))


@pytest.mark.django_db(transaction=True)
def test_the_timer_sees_every_chunk_of_a_real_run_and_its_explain_changes_nothing():
    # given 40 products in the category and a run of fixed 10-row chunks
    for n in range(40):
        ProductFactory(sku=f"T-{n:02d}", category=CATEGORY, price=f"{n + 1}.00")
    run = bulk_run_start(operation="catalog.reprice",
                         args={"category": CATEGORY, "percent": 10},
                         throttle=Throttle(chunk_size=10, adaptive=False))

    # when it runs in this process with every statement timed, the 2nd chunk explained
    timer = StatementTimer(explain_at=2)
    run, wall = run_in_process(run, timer)

    # then it saw the rows counted once, 4 chunks' bounds and writes (and the empty bounds
    # that ended it), and a commit for each chunk
    assert run.status == BulkRunStatus.SUCCEEDED and run.chunks_done == 4
    assert timer.count["count"] == 1
    assert timer.count["bounds"] == 5 and timer.count["write"] == 4
    assert timer.commits >= 4
    # and the explained statements were really run, with their plans kept
    assert set(timer.plans) == {"bounds", "write"}
    assert any("Index" in line or "Scan" in line for line in timer.plans["write"])
    assert any("Execution Time" in line for line in timer.plans["bounds"])
    # yet every price went up 10% once (the EXPLAIN ANALYZE was rolled back, not kept)
    for product in Product.objects.filter(category=CATEGORY):
        assert product.price == Decimal(int(product.sku[2:]) + 1) * Decimal("1.1")
    # and the summary shares add up to the whole
    summary = profile_summary(timer, wall, run.chunks_done)
    assert summary["chunks"] == 4
    assert sum(summary["share_pct"].values()) == pytest.approx(100, abs=0.5)


@pytest.mark.django_db(transaction=True)
def test_the_timer_tells_a_csv_runs_checks_chunks_and_finish_apart(tmp_path):
    # given 30 bench products and a price file for them, run in 10-line chunks
    for n in range(1, 31):
        ProductFactory(sku=SKU.format(n), category=CATEGORY, price="1.00")
    path = tmp_path / "prices.csv"
    write_prices(path, 30, 1)
    timer = StatementTimer(explain_at=2)
    with connection.execute_wrapper(timer), path.open("rb") as f:
        run = bulk_run_start(operation="catalog.set_prices", args={}, csv_stream=f,
                             throttle=Throttle(chunk_size=10, adaptive=False))

    # when it runs in this process
    run, _ = run_in_process(run, timer)

    # then the checks ran once when it started, a write per chunk, the categories once at
    # the end, and the 2nd chunk's write was explained
    assert run.status == BulkRunStatus.SUCCEEDED and run.rows_changed == 30
    assert timer.count["csv check"] == 1 and timer.count["finish"] == 1
    assert timer.count["write"] == 3 and set(timer.plans) == {"write"}
    # and every price is the file's (the explained chunk was rolled back, then applied)
    rows = dict(list(csv.reader(path.open()))[1:])
    assert {p.sku: str(p.price) for p in Product.objects.filter(category=CATEGORY)} == rows


def test_overlap_is_the_share_of_the_load_window_inside_the_run():
    assert overlap((10.0, 20.0), (0.0, 30.0)) == 1.0
    assert overlap((10.0, 20.0), (15.0, 30.0)) == 0.5
    assert overlap((10.0, 20.0), (21.0, 30.0)) == 0.0


def test_the_load_generator_sends_each_request_to_the_next_path_of_a_file(server, tmp_path):  # noqa: F811
    # given a file of 5 paths
    paths = tmp_path / "paths.txt"
    paths.write_text("\n".join(f"/api/v1/products/{n}" for n in range(5)))

    # when 10 requests go out over 2 connections
    out = subprocess.run([sys.executable, "-m", "bench.loadgen", json.dumps({
        "port": server.server_address[1], "connections": 2, "duration": 30, "requests": 10,
        "method": "POST", "paths_file": str(paths), "body": "{}"})],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=60)

    # then each path got two
    assert json.loads(out.stdout.strip().splitlines()[-1])["ok"] == 10
    got = sorted(path for path, _, _ in _Recorder.received)
    assert got == sorted(f"/api/v1/products/{n}" for n in range(5) for _ in range(2))


def test_the_report_sets_bulk_runs_against_raw_sql_and_latency_against_idle(tmp_path):
    # given a report with the bulk scenario's figures
    run = {"rows": 1_000_000, "elapsed_s": 20.0, "per_s": 50_000.0, "chunks": 40,
           "last_chunk_size": 30_000, "request_s": 4.0, "running_s": 16.0}
    report = {"date": "2026-11-28T21:00:00+00:00", "mode": "full",
              "machine": {"cpus": 2, "python": "3.11", "postgres": "15", "redis": "7"},
              "results": {
                  "bulk_reprice": {**run, "percent": 10, "baseline_per_s": 60_000.0,
                                   "ratio": 0.833, "met": True,
                                   "rounds": {"run_s": [20.0, 21.5], "raw_s": [16.7, 17.0]}},
                  "bulk_set_prices": {**run, "baseline_per_s": 80_000.0, "ratio": 0.625,
                                      "met": False,
                                      "rounds": {"run_s": [20.0, 22.0], "raw_s": [12.5, 13]}},
                  "bulk_read_latency": {
                      "rate_per_s": 50, "endpoint": "/api/v1/products/{id}",
                      "busy": {"samples": 800, "p50_ms": 9.1, "p99_ms": 40.2},
                      "idle": {"samples": 800, "p50_ms": 8.0, "p99_ms": 30.0},
                      "ratio": 1.34, "met": True, "overlap": 1.0, "run_per_s": 41_000.0},
                  "bulk_profile": {"reprice": {
                      "chunks": 41, "per_s": 52_000.0,
                      "share_pct": {"write": 85.0, "bounds": 9.0, "python": 5.8,
                                    "lock timeout": 0.2}}}}}

    # then each is a row with its baseline, ratio and verdict, and the profile its shares
    lines = table(report).splitlines()
    [reprice] = [line for line in lines if "catalog.reprice" in line]
    assert "50,000 rows/s" in reprice and "60,000 rows/s" in reprice
    assert "0.83x" in reprice and "yes" in reprice and "20 s, 21.5 s" in reprice
    [prices] = [line for line in lines if "catalog.set_prices" in line]
    assert "80,000 rows/s COPY" in prices and "0.62x" in prices and "NO" in prices
    [reads] = [line for line in lines if "while a reprice runs" in line]
    assert "p99 40.2 ms" in reads and "idle p50 8.0 ms, p99 30.0 ms" in reads
    assert "1.34x (p99)" in reads
    [profile] = [line for line in lines if "where the time goes" in line]
    assert "write 85.0%, bounds 9.0%, python 5.8%" in profile
    assert "lock timeout" not in profile  # under half a percent
    chart(report, tmp_path / "chart.png")
    assert (tmp_path / "chart.png").read_bytes()[:4] == b"\x89PNG"
