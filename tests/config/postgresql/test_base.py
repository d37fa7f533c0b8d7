"""config/postgresql: the health check polls the socket and queries only when the server has
said something (a terminated backend, a restart)."""

from __future__ import annotations

import select
import time

import psycopg2
import pytest
from django.db import connections

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


@pytest.fixture
def own_connection():
    """A connection of our own to the test database (not the test's transaction)."""
    wrapper = connections.create_connection("default")
    wrapper.ensure_connection()
    yield wrapper
    wrapper.close()



def _last_query(pid: int, params: dict) -> str:
    """What the server says the backend `pid` ran last (pg_stat_activity)."""
    admin = psycopg2.connect(**params)
    try:
        with admin.cursor() as cursor:
            cursor.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", [pid])
            return cursor.fetchone()[0]
    finally:
        admin.close()


def test_a_healthy_idle_connection_is_usable_without_a_query(own_connection):
    # given an idle connection the server has not closed, whose last query was ours
    pid = own_connection.connection.info.backend_pid
    with own_connection.cursor() as cursor:
        cursor.execute("SELECT 'health check marker'")
    params = own_connection.get_connection_params()
    assert "health check marker" in _last_query(pid, params)

    # when Django checks its health
    usable = own_connection.is_usable()

    # then it is usable, and the server ran nothing for the check (no SELECT 1 round trip)
    assert usable is True
    assert "health check marker" in _last_query(pid, params)
    assert own_connection.connection.info.backend_pid == pid


def test_a_connection_the_server_terminated_is_found_and_replaced(own_connection):
    # given a connection whose backend the server terminates while it is idle
    pid = own_connection.connection.info.backend_pid
    admin = psycopg2.connect(**own_connection.get_connection_params())
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    admin.close()
    deadline = time.monotonic() + 5
    while not select.select([own_connection.connection.fileno()], [], [], 0.05)[0]:
        assert time.monotonic() < deadline, "the server's notice never arrived"

    # then the health check finds it unusable
    assert own_connection.is_usable() is False

    # and Django's check before the next query replaces it, so the query succeeds
    own_connection.settings_dict["CONN_HEALTH_CHECKS"] = True
    own_connection.health_check_enabled = True
    own_connection.health_check_done = False
    own_connection.close_if_health_check_failed()
    with own_connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != pid
