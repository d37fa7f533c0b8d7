"""Django's PostgreSQL backend with a health check that costs no round trip while the
connection is healthy.

Django's CONN_HEALTH_CHECKS sends `SELECT 1` before the first query of every request and
every task on a persistent connection: a round trip that was 8% of a single publish's time
(cProfile, bench/). A connection the server closed (a restart, a terminated backend, a server
gone) has something to read while idle: the server's FATAL message, or the end of the stream.
So the socket is polled first (no I/O when nothing is waiting), and only a connection with
something to read pays Django's real check. A server that vanished without closing anything
(a dropped network, a frozen host) is not detected here: the query fails instead, the request
answers 503 (domain/common/api_errors.py) and Django discards the connection after it, as it
does for any connection that raised.
"""

from __future__ import annotations

import select

from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    def is_usable(self) -> bool:
        if self.connection is None or self.connection.closed:
            return False
        try:
            readable, _, _ = select.select([self.connection.fileno()], [], [], 0)
        except (OSError, ValueError):  # the socket is gone
            return False
        if not readable:
            return True  # idle and nothing from the server: as connected as SELECT 1 knows
        return super().is_usable()
