"""A CSV run's input: streamed into a table of its own, checked row by row before the run may
start, read by line ranges as the run goes, dropped when it ends.

On PostgreSQL the request body goes straight into `COPY … FROM STDIN` (nothing is held in
memory but the socket's buffer) and every row is checked in one statement. Elsewhere
(SQLite, for local use) the same table is filled by Python's csv module in batches and the
same rules are checked per row: correct, but about ten times slower.

The table is one per run (`bulk_input_<run id>`, columns `line` and one text column per CSV
column). A table per run rather than a shared one keyed by run: COPY can fill it with no
rewriting of the stream (a shared table would need the run id added to every line in
Python), and dropping it at the end frees its space at once, with no vacuum.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import connection

from domain.bulk.registry import BadRow, CsvOperation
from domain.common.errors import RequestTooLarge, ValidationFailed
from domain.common.fastpaths import on_postgresql

if TYPE_CHECKING:
    from domain.bulk.models import BulkRun

# Bad rows listed in a refusal (every one is counted).
BAD_ROWS_SHOWN = 100
_INSERT_BATCH = 5000
_COPY_LINE = re.compile(r"line (\d+)")
# A line `\.` alone: COPY's end-of-data marker, even in CSV from STDIN (PostgreSQL takes the
# rows before it and drops the rest without a word). Watched for in the stream, and refused.
_END_OF_DATA = re.compile(rb"\n\\\.\r?\n")


INPUT_TABLE_PREFIX = "bulk_input_"


def input_table_name(run: BulkRun) -> str:
    return f"{INPUT_TABLE_PREFIX}{run.pk.hex}"


class CsvBody(io.RawIOBase):
    """The request body, read in pieces as COPY asks for them: refused (413) past
    BULK_CSV_MAX_BYTES, and hashed as it goes (the run's Idempotency-Key compares bodies by
    this digest). Bytes pushed back (what the header's read took past its line) come first."""

    def __init__(self, stream: Any) -> None:
        super().__init__()
        self._stream, self._limit = stream, settings.BULK_CSV_MAX_BYTES
        self._pushed, self.read_bytes = b"", 0
        self.digest = hashlib.sha256()
        self.too_large: RequestTooLarge | None = None
        # The line of the first `\.` (see _END_OF_DATA); the last bytes read, and the line
        # they end on, so that a marker split between two reads is seen.
        self.end_of_data_line: int | None = None
        self._tail, self._lines = b"\n", 0  # (a line begins before the first byte)

    def readable(self) -> bool:
        return True

    def push_back(self, data: bytes) -> None:
        self._pushed = data + self._pushed

    def read(self, size: int = -1) -> bytes:
        if self._pushed:
            data, self._pushed = self._pushed, b""
            return data
        data = self._stream.read(size if size and size > 0 else 65536)
        self.read_bytes += len(data)
        if self.read_bytes > self._limit:
            self.too_large = RequestTooLarge(f"The CSV is larger than {self._limit} bytes "
                                             "(BULK_CSV_MAX_BYTES).")
            raise self.too_large
        self.digest.update(data)
        self._watch(data)
        return data

    def _watch(self, data: bytes) -> None:
        if self.end_of_data_line is not None:
            return
        window = self._tail + (data or b"\n")  # (at the end, a last line without its \n)
        found = _END_OF_DATA.search(window)
        if found:
            self.end_of_data_line = self._lines + window.count(b"\n", 0, found.start() + 1)
            return
        self._lines += window[:-4].count(b"\n")
        self._tail = window[-4:]

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def drain(self) -> str:
        """Read what is left (a replay's body: only its digest matters); the digest."""
        while self.read(65536):
            pass
        return self.digest.hexdigest()


def _header(body: CsvBody, expected: tuple[str, ...]) -> None:
    """Read the header line and check it names the operation's columns, in order."""
    head = b""
    while b"\n" not in head and len(head) < 4096:
        piece = body.read(1024)
        if not piece:
            break
        head += piece
    line, newline, rest = head.partition(b"\n")
    text = line.decode("utf-8", "replace").lstrip("\ufeff").rstrip("\r")
    found = [c.strip().lower() for c in next(csv.reader([text]), [])]  # (quoted names too)
    if tuple(found) != expected:
        raise ValidationFailed(
            f"The CSV's first line must name its columns: {','.join(expected)}.",
            code="invalid_csv_header",
            details={"expected": list(expected), "found": found if line else []})
    if newline and rest:
        body.push_back(rest)


def input_load(run: BulkRun, operation: CsvOperation, body: CsvBody) -> int:
    """Create the run's input table and stream the CSV into it (in the caller's transaction);
    answer the number of rows. Any invalid row refuses the whole input (422 `invalid_rows`,
    every bad row counted, the first ones listed with their line numbers) and, as the caller's
    transaction rolls back, nothing of it stays."""
    _header(body, operation.header)
    run.input_table = input_table_name(run)
    table = connection.ops.quote_name(run.input_table)
    columns = ", ".join(connection.ops.quote_name(c) for c in operation.header)
    text_columns = ", ".join(f"{connection.ops.quote_name(c)} text" for c in operation.header)
    with connection.cursor() as cursor:
        if on_postgresql():
            cursor.execute(f"CREATE TABLE {table} (line integer GENERATED ALWAYS AS IDENTITY "
                           f"PRIMARY KEY, {text_columns})")
            rows, bad = _copy(cursor, table, columns, body), []
        else:
            cursor.execute(f"CREATE TABLE {table} (line integer PRIMARY KEY, {text_columns})")
            rows, bad = _insert_portably(cursor, table, columns, operation, body)
    if rows == 0:
        raise ValidationFailed("The CSV has a header and no rows.", code="invalid_csv",
                               details={"rows": 0})
    invalid, listed = operation.check_rows(run.input_table, BAD_ROWS_SHOWN,
                                           formats_checked=not on_postgresql())
    invalid += len(bad)
    listed = sorted([*bad, *listed], key=lambda r: r.line)[:BAD_ROWS_SHOWN]
    if invalid:
        raise ValidationFailed(
            f"{invalid} of the CSV's {rows} rows are invalid; nothing was started.",
            code="invalid_rows",
            details={"rows": rows, "invalid_rows": invalid,
                     "errors": [row.as_dict() for row in listed]})
    run.input_rows = rows
    return rows


def _copy(cursor: Any, table: str, columns: str, body: CsvBody) -> int:
    raw = cursor.cursor  # psycopg2's own cursor: Django's wrapper has no copy_expert
    try:
        raw.copy_expert(f"COPY {table} ({columns}) FROM STDIN WITH (FORMAT csv)", body)
    except Exception as exc:
        # psycopg2 reports an error raised by the body's read() as a cancelled COPY.
        if body.too_large:
            raise body.too_large from exc
        if str(getattr(exc, "pgcode", "") or "").startswith("22"):  # data exceptions
            raise _copy_refused(exc) from exc
        raise
    if body.end_of_data_line is not None:
        line = body.end_of_data_line
        message = "a line \\. (COPY's end of data) before the end of the CSV"
        raise ValidationFailed(
            f"The CSV could not be read at line {line}: {message}", code="invalid_csv",
            details={"errors": [{"line": line, "column": None, "value": "\\.",
                                 "error": message}]})
    return raw.rowcount


def _copy_refused(exc: Exception) -> ValidationFailed:
    """A row COPY could not read (a wrong column count, bytes that are not UTF-8): its line
    (COPY counts from the first data line; the header is line 1 of the file)."""
    cause = exc
    diag = getattr(cause, "diag", None)
    context = getattr(diag, "context", "") or str(cause)
    found = _COPY_LINE.search(context)
    line = int(found.group(1)) + 1 if found else None
    message = (getattr(diag, "message_primary", "") or str(cause)).strip()
    return ValidationFailed(
        f"The CSV could not be read{f' at line {line}' if line else ''}: {message}",
        code="invalid_csv", details={"errors": [{"line": line, "column": None, "value": None,
                                                 "error": message}]})


def _insert_portably(cursor: Any, table: str, columns: str, operation: CsvOperation,
                     body: CsvBody) -> tuple[int, list[BadRow]]:
    """The portable path: Python's csv reader, the operation's per-row check, batched
    INSERTs. Answers the rows stored and those that failed the per-row check."""
    names = operation.header
    placeholders = ", ".join(["%s"] * (len(names) + 1))
    sql = f"INSERT INTO {table} (line, {columns}) VALUES ({placeholders})"  # noqa: S608
    bad: list[BadRow] = []
    batch: list[list[Any]] = []
    rows = 0
    text = io.TextIOWrapper(io.BufferedReader(body), encoding="utf-8", newline="")
    try:
        for number, values in enumerate(csv.reader(text), start=1):
            rows = number
            line = number + 1
            if len(values) != len(names):
                bad.append(BadRow(line=line, error=f"{len(values)} values where "
                                  f"{len(names)} columns were expected"))
                continue
            problem = operation.check_row(dict(zip(names, values, strict=True)))
            if problem:
                column, error = problem
                bad.append(BadRow(line=line, column=column, error=error,
                                  value=values[names.index(column)]))
                continue  # (a row is reported once: the table's checks see only the others)
            batch.append([number, *values])
            if len(batch) >= _INSERT_BATCH:
                cursor.executemany(sql, batch)
                batch = []
    except UnicodeDecodeError as exc:
        raise ValidationFailed(f"The CSV is not UTF-8: {exc}", code="invalid_csv",
                               details={"errors": [{"line": None, "column": None,
                                                    "value": None, "error": str(exc)}]}) from exc
    if batch:
        cursor.executemany(sql, batch)
    return rows, bad


def input_drop(run: BulkRun) -> None:
    """Drop a run's input table (in the caller's transaction); the run forgets it."""
    if run.input_table:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {connection.ops.quote_name(run.input_table)}")
        run.input_table = ""
