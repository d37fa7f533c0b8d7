"""Liveness and readiness probes (plain Django views: no auth, no DRF overhead)."""

import logging

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
    degraded = any(state != "ok" for state in checks.values())
    return JsonResponse({"status": "degraded" if degraded else "ready", "checks": checks})
