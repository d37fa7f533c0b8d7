"""A CSV run's input: the header checked, every row validated before the run may start (bad
rows reported with their line numbers, the header being line 1), the size bounded, and a
refused input leaving nothing behind."""

from __future__ import annotations

import io

import pytest
from django.db import connection

from domain.bulk.inputs import BAD_ROWS_SHOWN, CsvBody
from domain.bulk.models import BulkRun, BulkRunStatus
from domain.catalog.models import Product
from domain.common.errors import RequestTooLarge, ValidationFailed
from domain.jobs.models import Job
from tests.bulk_utils import csv_bytes, fresh, input_tables, make_products, run_to_end, start

SET_PRICES = "catalog.set_prices"
ON_POSTGRESQL = pytest.mark.postgres
PORTABLE_ONLY = pytest.mark.skipif(
    connection.vendor == "postgresql",
    reason="checks the portable (SQLite) loader; PostgreSQL loads by COPY (tested above)")


def _refusal(body: bytes) -> ValidationFailed | RequestTooLarge:
    with pytest.raises((ValidationFailed, RequestTooLarge)) as refused:
        start(SET_PRICES, csv=body)
    return refused.value


def _nothing_stored() -> bool:
    return not BulkRun.objects.exists() and not Job.objects.exists() and not input_tables()


@pytest.fixture
def skus(db) -> list[str]:
    """Six products, SKU-1 … SKU-6."""
    return [make_products(1, sku=f"SKU-{n}")[0].sku for n in range(1, 7)]


# --- The header --------------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "found"), [
    (b"sku,cost\nSKU-1,1.00\n", ["sku", "cost"]),
    (b"price,sku\n1.00,SKU-1\n", ["price", "sku"]),
    (b"sku\nSKU-1\n", ["sku"]),
    (b"sku,price,note\nSKU-1,1.00,x\n", ["sku", "price", "note"]),
    (b"SKU-1,1.00\n", ["sku-1", "1.00"]),  # no header at all
    (b"", []),
])
def test_a_csv_whose_first_line_does_not_name_the_columns_is_refused(skus, body, found):
    error = _refusal(body)
    assert (error.status_code, error.code) == (422, "invalid_csv_header")
    assert error.details == {"expected": ["sku", "price"], "found": found}
    assert _nothing_stored()


def test_a_header_is_read_as_people_write_it(skus):
    # a byte order mark, spaces, capitals and Windows line ends
    run = start(SET_PRICES, csv=b"\xef\xbb\xbfSKU , Price\r\nSKU-1,1.50\r\n\"SKU-2\",\"2.50\"\r\n")
    assert fresh(run).input_rows == 2
    run = run_to_end(run)
    assert run.status == BulkRunStatus.SUCCEEDED and run.rows_changed == 2


def test_a_quoted_header_is_read_as_csv(skus):
    # (spreadsheets and csv writers quoting every field write the header so)
    run = start(SET_PRICES, csv=b'"sku","price"\r\n"SKU-1","1.50"\r\n')
    assert fresh(run).input_rows == 1
    assert run_to_end(run).status == BulkRunStatus.SUCCEEDED


# --- Rows --------------------------------------------------------------------------------------

def test_bad_rows_are_reported_with_their_line_numbers_and_refuse_the_whole_csv(skus):
    body = (b"sku,price\n"          # line 1
            b"SKU-1,1.00\n"         # 2 fine
            b"SKU-404,1.00\n"       # 3 no such product
            b"SKU-2,abc\n"          # 4 not an amount
            b"SKU-1,2.00\n"         # 5 SKU-1 again
            b",3.00\n"              # 6 no sku
            b"SKU-3,-1\n"           # 7 negative
            b"SKU-4,1.234\n"        # 8 three decimals
            b"SKU-5,\n"             # 9 no price
            b"SKU-6,2.50\n")        # 10 fine

    error = _refusal(body)

    assert (error.status_code, error.code) == (422, "invalid_rows")
    assert (error.details["rows"], error.details["invalid_rows"]) == (9, 7)
    assert "7 of the CSV's 9 rows are invalid" in error.message
    not_an_amount = "the price is not an amount of 0 or more with at most 2 decimals"
    assert [(e["line"], e["column"], e["error"]) for e in error.details["errors"]] == [
        (3, "sku", "no product has this sku"),
        (4, "price", not_an_amount),
        (5, "sku", "this sku is on an earlier line too"),
        (6, "sku", "the sku is empty"),
        (7, "price", not_an_amount),
        (8, "price", not_an_amount),
        (9, "price", not_an_amount),
    ]
    values = {e["line"]: e["value"] for e in error.details["errors"]}
    assert (values[3], values[4], values[5], values[7], values[8]) == (
        "SKU-404", "abc", "SKU-1", "-1", "1.234")
    assert _nothing_stored()


@pytest.mark.parametrize("price", [
    "1.", ".5", "1e5", "+1.00", " 1.00", "12345678901", "NaN", "Infinity", "0x10",
    "\u0661\u0662.\u0665\u0660",  # Arabic-Indic digits: Python's Decimal reads them as 12.50
])
def test_a_price_is_plain_ascii_digits_on_every_database(skus, price):
    error = _refusal(f"sku,price\nSKU-1,{price}\n".encode())
    assert error.code == "invalid_rows"
    assert [(e["line"], e["column"], e["value"]) for e in error.details["errors"]] == [
        (2, "price", price)]


@pytest.mark.parametrize(("price", "stored"), [
    ("0", "0.00"), ("0.5", "0.50"), ("7.05", "7.05"), ("1234567890.99", "1234567890.99")])
def test_a_plain_price_is_taken_as_written(skus, price, stored):
    run = run_to_end(start(SET_PRICES, csv=f"sku,price\nSKU-1,{price}\n".encode()))
    assert run.status == BulkRunStatus.SUCCEEDED
    assert str(Product.objects.get(sku="SKU-1").price) == stored


def test_every_bad_row_is_counted_and_the_first_ones_listed(skus):
    body = csv_bytes([(f"NOPE-{n}", "1.00") for n in range(BAD_ROWS_SHOWN + 30)])
    error = _refusal(body)
    assert error.details["invalid_rows"] == BAD_ROWS_SHOWN + 30
    assert [e["line"] for e in error.details["errors"]] == list(range(2, BAD_ROWS_SHOWN + 2))
    assert _nothing_stored()


@pytest.mark.parametrize("body", [b"sku,price\n", b"sku,price"])
def test_a_csv_with_no_rows_is_refused(skus, body):
    error = _refusal(body)
    assert (error.code, error.details) == ("invalid_csv", {"rows": 0})
    assert _nothing_stored()


@ON_POSTGRESQL
@pytest.mark.parametrize(("bad_line", "says"), [
    (b"SKU-2,1.00,extra\n", "extra data after last expected column"),
    (b"SKU-2\n", "missing data for column"),
    (b"SKU-\xff\xfe,1.00\n", "invalid byte sequence for encoding \"UTF8\""),
])
def test_a_row_copy_cannot_read_is_refused_with_its_line(skus, bad_line, says):
    error = _refusal(b"sku,price\nSKU-1,1.00\n" + bad_line + b"SKU-3,3.00\n")
    assert (error.status_code, error.code) == (422, "invalid_csv")
    [found] = error.details["errors"]
    assert found["line"] == 3 and says in found["error"], found
    assert "at line 3" in error.message
    assert _nothing_stored()


@pytest.mark.parametrize("end", [b"\\.\n", b"\\.\r\n", b"\\.", b"\\.\nSKU-3,3.00\n"])
def test_a_line_of_copys_end_of_data_marker_refuses_the_csv_instead_of_ending_it(skus, end):
    # given a CSV with a line `\.` (COPY's end-of-data marker: PostgreSQL would take the rows
    # before it and drop the rest without a word)
    body = b"sku,price\nSKU-1,1.00\nSKU-2,2.00\n" + end

    # then the CSV is refused at that line, whichever loader reads it
    error = _refusal(body)
    assert error.code in ("invalid_csv", "invalid_rows")
    assert [e["line"] for e in error.details["errors"]] == [4]
    assert _nothing_stored()


@pytest.mark.parametrize("piece", [1, 2, 3, 5, 8192])
def test_the_end_of_data_marker_is_found_with_its_line_however_the_body_is_read(piece):
    body = CsvBody(io.BytesIO(b"sku,price\r\n" + b"SKU-1,1.00\r\n" * 3000
                              + b"\\.\r\nSKU-2,2.00\r\n"))
    while body.read(piece):
        pass
    assert body.end_of_data_line == 3002
    clean = CsvBody(io.BytesIO(b"sku,price\n" + b"SKU-1,1.00\n" * 3000 + b"\\.x\n\\\n"))
    while clean.read(piece):
        pass
    assert clean.end_of_data_line is None


@PORTABLE_ONLY
def test_the_portable_loader_reports_a_wrong_column_count_by_line_and_refuses_other_bytes(skus):
    error = _refusal(b"sku,price\nSKU-1,1.00\nSKU-2,1.00,extra\nSKU-3\n")
    assert (error.code, [(e["line"], e["error"]) for e in error.details["errors"]]) == (
        "invalid_rows", [(3, "3 values where 2 columns were expected"),
                         (4, "1 values where 2 columns were expected")])
    error = _refusal(b"sku,price\nSKU-1,1.00\nSKU-\xff\xfe,1.00\n")
    assert error.code == "invalid_csv" and "not UTF-8" in error.message
    assert _nothing_stored()


# --- Size --------------------------------------------------------------------------------------

@pytest.mark.parametrize("rows", [20, 20_000])
def test_a_csv_larger_than_the_limit_is_refused_with_413(settings, skus, rows):
    # given a limit of 200 bytes, and CSVs of about 300 bytes (read with the header) and of
    # about 300 kB (refused while it streams in)
    settings.BULK_CSV_MAX_BYTES = 200
    body = csv_bytes([("SKU-1", "1.00")] * rows)
    assert len(body) > 200

    error = _refusal(body)

    assert isinstance(error, RequestTooLarge) and error.status_code == 413
    assert "BULK_CSV_MAX_BYTES" in str(error.detail)
    assert _nothing_stored()


def test_a_csv_within_the_limit_is_taken(settings, skus):
    body = csv_bytes([("SKU-1", "1.00"), ("SKU-2", "2.00")])
    settings.BULK_CSV_MAX_BYTES = len(body)
    assert fresh(start(SET_PRICES, csv=body)).input_rows == 2


# --- The input table ---------------------------------------------------------------------------

def test_an_accepted_csv_waits_in_a_table_of_its_own_until_the_run_ends(skus):
    # given an accepted CSV run
    run = fresh(start(SET_PRICES, csv=csv_bytes([("SKU-2", "2.00"), ("SKU-1", "1.00")])))

    # then its rows wait in its input table, numbered by position
    assert input_tables() == [run.input_table] and run.input_rows == 2
    with connection.cursor() as cursor:
        table = connection.ops.quote_name(run.input_table)
        cursor.execute(f"SELECT line, sku, price FROM {table} ORDER BY line")  # noqa: S608
        assert cursor.fetchall() == [(1, "SKU-2", "2.00"), (2, "SKU-1", "1.00")]

    # and the table is dropped when the run ends
    run = run_to_end(run)
    assert run.status == BulkRunStatus.SUCCEEDED
    assert (run.input_table, input_tables()) == ("", [])


@pytest.mark.django_db(transaction=True)
def test_a_refused_csv_leaves_no_run_no_job_and_no_table_committed(settings, private_broker):
    # given products, and requests refused at each stage of loading: the header, a row COPY
    # cannot read (the portable loader: a row of the wrong width), bad rows, the size limit
    for n in range(1, 4):
        make_products(1, sku=f"SKU-{n}")
    refusals = [b"sku,cost\nSKU-1,1.00\n",
                b"sku,price\nSKU-1,1.00\nSKU-2,1.00,extra\n",
                b"sku,price\nSKU-1,1.00\nSKU-404,1.00\n",
                csv_bytes([("SKU-1", "1.00")] * 5000)]
    settings.BULK_CSV_MAX_BYTES = 50_000

    # when each is sent, each in its own transaction
    codes = [getattr(_refusal(body), "code", "413") for body in refusals]

    # then each was refused, and nothing of any of them was committed
    assert codes[0] == "invalid_csv_header" and codes[2] == "invalid_rows"
    assert codes[1] in ("invalid_csv", "invalid_rows") and codes[3] == "413"
    assert _nothing_stored()
    assert not private_broker.job_ids("bulk")
