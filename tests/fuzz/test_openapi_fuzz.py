"""Schemathesis against the API's own OpenAPI document, in process through WSGI.

Every operation in /api/schema gets two tests (``schema.parametrize()``), and every response
is checked: no 5xx, a documented status code, a documented content type, a body matching the
schema.

- test_api_conforms_to_its_schema: schemathesis as it is, examples, coverage and fuzzing
  phases, positive and negative data; here also schema-valid data must be accepted and
  schema-invalid data refused (UNSTATED_RULES lists the few refusals the schema cannot state);
- test_api_conforms_to_its_schema_on_real_rows: the fuzzing phase steered (with
  ``schema.given``) to existing ids, registered event types and job kinds and schema-valid
  payloads, so the success paths and their response bodies are checked too.

Both hold at most MAX_EXAMPLES generated cases per operation (the coverage phase adds its own
explicit cases to the first). Throttling is lifted for the run (conftest.py).

The requests go through Django's real WSGI handler (middleware, URL resolver, handler404/500),
not the test client, so an unhandled exception is the 500 a caller would get. They share the
test's database transaction; each case runs in a savepoint rolled back afterwards, so the rows
seeded for a test (a product, an event, jobs in several states) look the same to every case,
and a case that breaks the transaction cannot poison the next one.

How many cases ran for each operation, by status code, is printed at the end of the run
("schemathesis cases per operation", see conftest.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, timedelta
from typing import Any

import hypothesis
import orjson
import pytest
import schemathesis
from django.conf import settings as django_settings
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from hypothesis import HealthCheck
from hypothesis import strategies as st
from schemathesis import Case, Response
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

from domain.access.models import Scopes
from domain.access.services import api_key_create
from domain.common.fields import InstantField
from domain.common.parsers import INT_MAX, INT_MIN, json_depth
from domain.events import services as event_services
from domain.events.registry import event_types
from domain.jobs.models import AttemptOutcome, Job, JobAttempt, JobStatus
from domain.jobs.registry import job_kinds
from tests.factories import ProductFactory
from tests.fuzz.conftest import FUZZ_CASES
from tests.fuzz.strategies import PAYLOADS

pytestmark = [
    pytest.mark.django_db,
    # Fuzzed ?category= values end up in cache keys; Django warns they would break memcached.
    # The cache is Redis, where any bytes make a key.
    pytest.mark.filterwarnings("ignore::django.core.cache.backends.base.CacheKeyWarning"),
]

APP = get_wsgi_application()
schema = schemathesis.openapi.from_wsgi("/api/schema?format=json", APP)


# --- What the schema cannot say ---------------------------------------------------------------
# The schema states what JSON Schema can: types, enums, lengths, ranges, which payload goes with
# which event type (one branch per type) and which params with which job kind. A few rules it
# cannot state: limits on a whole body or payload, characters and numbers JSON carries but the
# server cannot keep, and one relation between two fields. They are in the README (Errors) and
# the schema's descriptions, and a schema-valid request that breaks one is refused with that
# rule's 422. The positive-data check lets exactly these refusals through, and each only when
# the request does break its rule.

def _walk(value: Any):
    """Every key and value in a JSON value, depth first."""
    stack = [value]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _payloads(case: Case) -> list:
    body = case.body if isinstance(case.body, dict) else {}
    if case.operation.label == "POST /api/v1/events/batch":
        return [e["payload"] for e in body.get("events", []) if isinstance(e, dict)
                and "payload" in e]
    return [body["payload"]] if "payload" in body else []


def _nul_in_query(case: Case, name: str, messages: Any) -> bool:
    return ("\x00" in str((case.query or {}).get(name, ""))
            and messages == ["Null characters are not allowed."])


def _until_not_after_since(case: Case, name: str) -> bool:
    body = case.body
    if (case.operation.label != "POST /api/v1/jobs/retry" or name != "until"
            or not isinstance(body, dict) or not ("since" in body and "until" in body)):
        return False
    try:
        since, until = (parse_datetime(str(body[n]).upper()) for n in ("since", "until"))
    except ValueError:  # well formatted, but no date (minute 60): refused for that
        return False
    return since is not None and until is not None and until <= since


def _outside_instant_range(value: Any, messages: Any) -> bool:
    """A date-time that is valid RFC 3339 but lies outside years 1-9999 once in UTC
    (domain/common/fields.InstantField), refused with the field's own message."""
    if messages != [str(InstantField.default_error_messages["overflow"])]:
        return False
    try:
        parsed = parse_datetime(str(value).upper())
    except ValueError:
        return False
    if parsed is None or parsed.tzinfo is None:
        return False
    try:
        parsed.astimezone(UTC)
    except OverflowError:
        return True
    return False


def _body_field(case: Case, name: str) -> Any:
    return case.body.get(name) if isinstance(case.body, dict) else None


# error code -> whether the case breaks that rule (given the error object)
UNSTATED_RULES: dict[str, Callable[[Case, dict], bool]] = {
    # U+0000 anywhere in a JSON body: PostgreSQL's jsonb cannot store it
    "unsupported_character": lambda case, _: any(
        isinstance(v, str) and "\x00" in v for v in _walk(case.body)),
    # an integer beyond 64 bits anywhere in a JSON body (domain/common/parsers.py)
    "unsupported_number": lambda case, _: any(
        isinstance(v, int) and not isinstance(v, bool) and not INT_MIN <= v <= INT_MAX
        for v in _walk(case.body)),
    # a body nested deeper than API_MAX_JSON_DEPTH, or a payload than API_MAX_PAYLOAD_DEPTH
    "payload_too_deep": lambda case, _: json_depth(case.body) > django_settings.API_MAX_JSON_DEPTH
    or any(json_depth(p) > django_settings.API_MAX_PAYLOAD_DEPTH for p in _payloads(case)),
    "payload_too_large": lambda case, _: any(
        len(orjson.dumps(p)) > django_settings.API_MAX_PAYLOAD_BYTES for p in _payloads(case)),
    # a cursor is opaque: only one the server wrote in a `next`/`previous` link is valid
    "invalid_cursor": lambda case, _: bool((case.query or {}).get("cursor")),
    # field errors: U+0000 in a query parameter (DRF's CharField refuses it), and the one
    # relation between two fields, POST /api/v1/jobs/retry's `until` after `since` (its
    # description says so)
    "validation_failed": lambda case, error: bool(error["details"]) and all(
        _nul_in_query(case, name, messages) or _until_not_after_since(case, name)
        or _outside_instant_range(_body_field(case, name), messages)
        for name, messages in error["details"].items()),
}


def _breaks_an_unstated_rule(case: Case, response: Response) -> bool:
    """A 422 that names a rule of UNSTATED_RULES (for a batch: every refused event names one),
    and the request does break that rule."""
    error = _error(response)
    if response.status_code != 422 or not error:
        return False
    if case.operation.label == "POST /api/v1/events/batch" and "events" in error["details"]:
        items = error["details"]["events"]
        sent = case.body.get("events") if isinstance(case.body, dict) else None
        return isinstance(items, dict) and isinstance(sent, list) and bool(items) and all(
            _event_breaks_an_unstated_rule(case, sent[int(index)], e)
            for index, e in items.items())
    return error.get("code") in UNSTATED_RULES and UNSTATED_RULES[error["code"]](case, error)


def _event_breaks_an_unstated_rule(case: Case, event: Any, error: Any) -> bool:
    """One refused event of a batch: an error object naming a rule of UNSTATED_RULES, or field
    errors each of which is a date-time outside the storable range."""
    if not isinstance(error, dict):
        return False
    if "code" in error:
        return error["code"] in UNSTATED_RULES and UNSTATED_RULES[error["code"]](case, error)
    return bool(error) and isinstance(event, dict) and all(
        _outside_instant_range(event.get(name), messages) for name, messages in error.items())


def positive_data_acceptance_but_unstated_rules(ctx, response, case):
    """schemathesis' positive_data_acceptance (schema-valid data is not refused), except a
    refusal under a rule the schema cannot state, when the request breaks it."""
    if _breaks_an_unstated_rule(case, response):
        return None
    return positive_data_acceptance(ctx, response, case)


def _negates_headers(case: Case) -> bool:
    """Whether schemathesis made this case invalid in its headers: every case is sent with the
    seeded key's Authorization header (the test replaces what was generated), so such a
    negation does not reach the server."""
    data = case.meta.phase.data if case.meta is not None else None
    locations = [getattr(data, "parameter_location", None),
                 *(m.parameter_location for m in getattr(data, "mutations", None) or ())]
    return any(getattr(location, "value", location) == "header" for location in locations)


def negative_data_rejection_as_sent(ctx, response, case):
    """schemathesis' negative_data_rejection (schema-invalid data is refused), for the cases
    whose invalid part is what the server receives."""
    if _negates_headers(case):
        return None
    return negative_data_rejection(ctx, response, case)


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# The cases sent as schemathesis generated them are also checked both ways: schema-valid data is
# accepted (or refused only under UNSTATED_RULES) and schema-invalid data is refused. The
# "real rows" cases are edited after generation (real ids, registered types), so there what
# schemathesis meant to be valid or invalid no longer holds.
DATA_CHECKS = [positive_data_acceptance_but_unstated_rules, negative_data_rejection_as_sent]
# Generated cases per operation and test; CONVEYOR_FUZZ_EXAMPLES=500 makes a deeper run.
MAX_EXAMPLES = int(os.environ.get("CONVEYOR_FUZZ_EXAMPLES", "50"))
JSON_BODY_OPERATIONS = ("POST /api/v1/events", "POST /api/v1/events/batch", "POST /api/v1/jobs")

# Problems this fuzzer already found and that are still open, each kept as a strict xfail in
# test_fuzz_findings.py. A response matching one is counted (as "<status> <code> known:<id>")
# but not failed again, so the fuzzer keeps looking for new ones. Keep each predicate as narrow
# as its finding, e.g.
#     "F1-invalid-cursor-404": (("GET /api/v1/jobs",), lambda case, r: r.status_code == 404
#                               and _error(r).get("message") == "Invalid cursor"),
# Empty: F1-F8 (see test_fuzz_findings.py) are fixed, so any of them coming back fails here.
KNOWN_FINDINGS: dict[str, tuple[tuple[str, ...], Callable[[Case, Response], bool]]] = {}


def _known_finding(case: Case, response: Response) -> str | None:
    label = case.operation.label
    for finding, (operations, matches) in KNOWN_FINDINGS.items():
        if label in operations and matches(case, response):
            return finding
    return None


def _error(response) -> dict:
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return {}
    return error if isinstance(error, dict) else {}


@pytest.fixture
def _wsgi_in_test_transaction():
    """Django's handler closes "old" connections when a request starts and finishes; inside
    the test's transaction that would close the connection under the test. The test client
    disconnects these receivers for the same reason; so do we, for WSGI calls."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@pytest.fixture
def seeded(_wsgi_in_test_transaction) -> dict:
    """An all-scopes key and rows it owns, so GET/POST by id sometimes hit a real row."""
    key, raw = api_key_create(name="fuzz", scopes=list(Scopes.values))
    now = timezone.now()
    product = ProductFactory()
    published = event_services.event_publish(
        event_type="demo.ping", payload={"message": "seed"}, api_key=key,
        correlation_id="fuzz-seed")
    queued = published.jobs[0]
    dead = Job.objects.create(
        kind="noop", params={}, max_attempts=2, attempts=2, status=JobStatus.DEAD,
        api_key=key, error={"type": "RuntimeError", "message": "boom"},
        traceback="Traceback (most recent call last):\n  ...\nRuntimeError: boom\n",
        started_at=now - timedelta(minutes=2), finished_at=now - timedelta(minutes=1),
        worker="celery@fuzz")
    for number, outcome in ((1, AttemptOutcome.RETRY), (2, AttemptOutcome.FAILED)):
        JobAttempt.objects.create(
            job=dead, run=0, number=number, started_at=now - timedelta(minutes=3 - number),
            finished_at=now - timedelta(minutes=2 - number), outcome=outcome,
            error_type="RuntimeError", error_message="boom", traceback="...",
            worker="celery@fuzz")
    cancelled = Job.objects.create(kind="noop", params={}, max_attempts=5, api_key=key,
                                   status=JobStatus.CANCELLED, finished_at=now)
    succeeded = Job.objects.create(
        kind="cache_invalidation", params={"keys": ["k"]}, max_attempts=5, api_key=key,
        status=JobStatus.SUCCEEDED, attempts=1, result={"deleted": 1}, started_at=now,
        finished_at=now, progress_done=1, progress_total=1)
    return {
        "headers": {"Authorization": f"Bearer {raw}"},
        "event_types": [t.name for t in event_types(publishable=True)],
        "job_kinds": [k.name for k in job_kinds(triggerable=True)],
        "ids": {
            "event_id": [str(published.event.pk)],
            "job_id": [str(j.pk) for j in (queued, dead, cancelled, succeeded)],
            "product_id": [str(product.pk)],
        },
    }


FUZZ_SETTINGS = hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,  # no .hypothesis/ directory in the project
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.filter_too_much, HealthCheck.data_too_large],
)


def _send_and_check(case: Case, seeded: dict, variant: str) -> None:
    # when the case is sent through the WSGI app, in a savepoint rolled back afterwards
    savepoint = transaction.savepoint()
    try:
        response = case.call(headers=seeded["headers"])
    finally:
        transaction.savepoint_rollback(savepoint)
    known = _known_finding(case, response)
    outcome = str(response.status_code)
    if response.status_code >= 400:
        outcome += f" {_error(response).get('code', '?')}"
    FUZZ_CASES[(case.operation.label, variant)][
        f"{outcome} known:{known}" if known else outcome] += 1
    if known:
        return

    # then it is no 5xx, and its status, content type and body are the documented ones (and,
    # for the cases sent as generated, valid data is accepted and invalid data refused)
    checks = CHECKS + DATA_CHECKS if variant == "schema" else CHECKS
    case.validate_response(response, checks=checks, headers=seeded["headers"])


@schema.parametrize()
@FUZZ_SETTINGS
def test_api_conforms_to_its_schema(case, seeded):
    """Schemathesis as it is: examples, coverage (boundaries, missing/invalid parameters,
    content-type probes) and fuzzing phases, positive and negative data."""
    _send_and_check(case, seeded, "schema")


@schema.parametrize()
@schema.given(data=st.data())
@FUZZ_SETTINGS
def test_api_conforms_to_its_schema_on_real_rows(case, data, seeded):
    """The fuzzing phase steered to the success paths: existing ids, registered event types
    and job kinds, schema-valid payloads (schemathesis runs no coverage phase with `given`)."""
    # given, half of the time, an id that exists in place of a generated one
    for name in list(case.path_parameters or {}):
        known = seeded["ids"].get(name)
        if known and data.draw(st.booleans(), label=f"use a seeded {name}"):
            case.path_parameters[name] = data.draw(st.sampled_from(known), label=name)

    # and, in two cases out of three, registered event types (then, half of the time, with
    # payloads generated from their schemas) / job kinds in place of random strings, for every
    # item of a batch at once: a random type or kind is always 422 unknown_event_type /
    # unknown_job_kind, and the success paths and their bodies would never be checked
    body = case.body
    if case.operation.label in JSON_BODY_OPERATIONS and isinstance(body, dict):
        mode = data.draw(st.sampled_from(["as generated", "registered", "registered+payload"]),
                         label="mode")
        items = body.get("events") if "events" in body else [body]
        for item in items if mode != "as generated" and isinstance(items, list) else []:
            if not isinstance(item, dict):
                continue
            if "type" in item:
                item["type"] = data.draw(st.sampled_from(seeded["event_types"]), label="type")
                if mode == "registered+payload":
                    item["payload"] = data.draw(PAYLOADS[item["type"]], label="payload")
            if "kind" in item:
                item["kind"] = data.draw(st.sampled_from(seeded["job_kinds"]), label="kind")

    _send_and_check(case, seeded, "real rows")
