"""Liveness and readiness probes (plain Django views: no auth, no DRF overhead).

Readiness checks the database and the broker itself. Apps above this one add checks of their
own with `register_readiness_check` at start-up (domain/common imports no other app): the
worker runtime adds `queues`, whether each queue has a consumer (workers/apps.py). An added
check can make the answer `degraded`, never `not ready`: it runs only when the database and the
broker answered, and one that fails is reported as `unknown: …`.
"""

import logging
from collections.abc import Callable

from celery import current_app
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.http import require_GET

from domain.common.errors import error_body
from domain.common.redis import broker_problems

logger = logging.getLogger(__name__)


@require_GET
def healthz(request) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return "ok"


def _check_broker() -> str:
    """"ok", or "degraded: …" when the broker answers but cannot be trusted with messages (it
    is full, or its memory policy evicts keys): publishes are still accepted then (they wait
    in the outbox), so the API stays ready, and the answer says why it is degraded."""
    with current_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
        # ensure_connection alone can be satisfied by a pooled socket; a round trip proves it.
        client = getattr(conn.default_channel, "client", None)
        if client is None:
            return "ok"
        client.ping()
        problems = broker_problems(client)
    return f"degraded: {'; '.join(problems)}" if problems else "ok"


# A check answers its state ("ok", or "degraded: …"), or the state and a detail object that the
# answer carries under the check's name.
ReadinessCheck = Callable[[], "str | tuple[str, dict]"]
_added_checks: dict[str, ReadinessCheck] = {}


def register_readiness_check(name: str, check: ReadinessCheck) -> None:
    """Add (or replace) a readiness check of another app, by name."""
    if name in ("database", "broker", "status", "checks"):
        raise ValueError(f"{name!r} is readiness's own")
    _added_checks[name] = check


def _added(checks: dict[str, str], body: dict) -> None:
    for name, check in _added_checks.items():
        try:
            answer = check()
        except Exception as exc:  # noqa: BLE001 - an added check only ever degrades readiness
            logger.warning("readiness check failed check=%s error=%r", name, exc)
            answer = f"unknown: {type(exc).__name__}"
        state, detail = answer if isinstance(answer, tuple) else (answer, None)
        checks[name] = state
        if detail is not None:
            body[name] = detail


@require_GET
def readyz(request) -> JsonResponse:
    checks: dict[str, str] = {}
    for name, check in (("database", _check_database), ("broker", _check_broker)):
        try:
            checks[name] = check()
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready", reported by name
            logger.warning("readiness check failed check=%s error=%r", name, exc)
            checks[name] = f"down: {type(exc).__name__}"
    down = [name for name, state in checks.items() if state.startswith("down")]
    if down:
        return JsonResponse(
            error_body("not_ready", f"Not ready: {', '.join(down)} unreachable.", checks),
            status=503,
        )
    details: dict = {}
    _added(checks, details)
    degraded = any(state != "ok" for state in checks.values())
    return JsonResponse({"status": "degraded" if degraded else "ready", "checks": checks,
                         **details})
