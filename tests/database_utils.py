"""Take the test process's database away for a while, as an outage would (for tests that are
`django_db(transaction=True)`: a test wrapped in a transaction cannot drop its connection)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection


@contextmanager
def database_unreachable() -> Iterator[None]:
    """Point the default connection where no database answers: PostgreSQL at a local port
    nothing listens on (connection refused), SQLite at a file in a directory that does not
    exist. Every query meanwhile raises Django's OperationalError, the way a stopped server
    makes it; afterwards the connection is closed and the next query reconnects for real."""
    saved = dict(connection.settings_dict)
    connection.close()
    if connection.vendor == "sqlite":
        connection.settings_dict["NAME"] = "/nonexistent-conveyor-dir/db.sqlite3"
    else:
        connection.settings_dict.update({"HOST": "127.0.0.1", "PORT": "1"})
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)
