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

Both hold at most MAX_EXAMPLES generated cases per operation that writes (POST, PUT, PATCH,
DELETE), and READ_EXAMPLES, half as many, per GET, whose input is a path id and a few query
parameters (the `_reads` twins of the two tests); the coverage phase adds its own explicit
cases to the first. Throttling is lifted for the run (conftest.py).

The requests go through Django's real WSGI handler (middleware, URL resolver, handler404/500),
not the test client, so an unhandled exception is the 500 a caller would get. They share the
test's database transaction; each case runs in a savepoint rolled back afterwards, so the rows
seeded for a test (a product, an event, jobs in several states, webhook endpoints with
deliveries and attempts, notifications with their email and in-app deliveries, an inbox and
one-click unsubscribe tokens) look the same to every case, and a case that breaks the
transaction cannot poison the next one. A test ping (POST …/test) is delivered for real, to a
receiver on 127.0.0.1 that the seeded endpoints point at; the webhook URLs the fuzzer makes are
never sent to, and their host names resolve through a fixed table, not the machine's DNS
(fuzz_dns).

How many cases ran for each operation, by status code, is printed at the end of the run
("schemathesis cases per operation", see conftest.py).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import uuid
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, timedelta
from typing import Any
from urllib.parse import urlsplit

import hypothesis
import orjson
import pytest
import schemathesis
from django.conf import settings as django_settings
from django.core import signals
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import URLValidator, validate_email
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
from domain.common.errors import ValidationFailed
from domain.common.fields import InstantField
from domain.common.parsers import INT_MAX, INT_MIN, json_depth
from domain.events import services as event_services
from domain.events.registry import event_types
from domain.jobs.models import AttemptOutcome, Job, JobAttempt, JobStatus
from domain.jobs.registry import job_kinds
from domain.notifications import inbox, preferences, ssrf
from domain.notifications.catalogue import categories, get_category
from domain.notifications.models import (
    AttemptResult,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    EndpointState,
    InboxItem,
    Message,
    WebhookEndpoint,
    new_secret,
)
from domain.notifications.sending import notification_send, notification_validate
from scheduler.models import RunOutcome, ScheduleRun
from scheduler.schedules import SCHEDULES
from scheduler.sync import schedules_sync
from tests.factories import OrderFactory, ProductFactory
from tests.fuzz.conftest import FUZZ_CASES
from tests.fuzz.strategies import PAYLOADS
from tests.webhook_receiver import Receiver

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
# server cannot keep, one relation between two fields, what a webhook URL's host must resolve
# to, and a recovery's endpoint being disabled. They are in the README (Errors) and the
# schema's descriptions, and a schema-valid request that breaks one is refused with that
# rule's 422 (409 for the disabled endpoint). The positive-data check lets exactly these
# refusals through, and each only when the request does break its rule.

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


# Operations whose body is a time range: `until` must be after `since`. For a recovery,
# `until` not given means now, so a `since` from now on is refused too (under `until`).
TIME_RANGE_OPERATIONS = ("POST /api/v1/jobs/retry",
                         "POST /api/v1/webhook-endpoints/{endpoint_id}/recover")
UNTIL_DEFAULTS_TO_NOW = ("POST /api/v1/webhook-endpoints/{endpoint_id}/recover",)


def _until_not_after_since(case: Case, name: str) -> bool:
    body = case.body
    if (case.operation.label not in TIME_RANGE_OPERATIONS or name != "until"
            or not isinstance(body, dict) or "since" not in body):
        return False
    try:
        since = parse_datetime(str(body["since"]).upper())
        until = parse_datetime(str(body["until"]).upper()) if "until" in body else None
    except ValueError:  # well formatted, but no date (minute 60): refused for that
        return False
    if since is None:
        return False
    if "until" not in body:
        # now, when the server read it: a little before this check
        return (case.operation.label in UNTIL_DEFAULTS_TO_NOW and since.tzinfo is not None
                and since > timezone.now() - timedelta(minutes=1))
    return until is not None and until <= since


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


def _not_a_url_for_django(case: Case, name: str, messages: Any) -> bool:
    """A webhook URL that `format: uri` admits and Django's URL validator (DRF's URLField)
    does not: its host is not a domain name whose last label has two letters or more,
    `localhost` or an IP address, or is longer than DNS allows (253 characters), … The url
    field's description says so."""
    url = _body_field(case, name)
    if name != "url" or messages != ["Enter a valid URL."] or not isinstance(url, str):
        return False
    try:
        URLValidator()(url)
    except DjangoValidationError:
        return True
    return False


# --- Webhook URLs: what the SSRF guard refuses -------------------------------------------------
# A webhook URL's host must resolve to public addresses only (or to WEBHOOK_ALLOWED_NETWORKS,
# 127.0.0.1/32 in the tests); JSON Schema says `format: uri` and no more. The fuzz run resolves
# names through a fixed table instead of the machine's DNS (ssrf.lookup is the one place a
# name becomes addresses): the same name gets the same answer on every machine, none of them
# is a network request, and every outcome occurs: no address, a public one, a private one,
# and both at once.
# A global address and a private one. Nothing connects to either: no delivery is ever sent to
# a URL the fuzzer made.
PUBLIC_ADDRESS = "93.184.215.14"
PRIVATE_ADDRESS = "10.20.30.40"


def fuzz_dns(host: str, port: int) -> list[str]:
    """The table: `localhost` is 127.0.0.1; another name, by a hash of it, does not resolve,
    or resolves to a public address, a private one, or both."""
    host.encode("idna")  # as getaddrinfo does: a UnicodeError for a name it cannot encode
    name = host.lower().rstrip(".")
    if name == "localhost":
        return ["127.0.0.1"]
    answer = zlib.crc32(name.encode()) % 4
    if answer == 0:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return [[PUBLIC_ADDRESS], [PRIVATE_ADDRESS], [PUBLIC_ADDRESS, PRIVATE_ADDRESS]][answer - 1]


def _public(address: str) -> bool:
    """Allowed as a webhook's address: in WEBHOOK_ALLOWED_NETWORKS, or global and unicast and
    no cloud metadata service."""
    ip = ipaddress.ip_address(address.strip("[]"))
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in ipaddress.ip_network(n, strict=False)
           for n in django_settings.WEBHOOK_ALLOWED_NETWORKS):
        return True
    return ip.is_global and not ip.is_multicast and ip not in ssrf.METADATA_ADDRESSES


def _url_refusal(url: Any) -> str | None:
    """What the guard must answer a URL the field accepted: "unsafe_url" (not http(s), no
    host, a user or password, a port out of range, or an address that is not public),
    "unresolvable_url" (the name has no address), or None (it may be registered)."""
    if not isinstance(url, str):
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or \
            parts.password:
        return "unsafe_url"
    try:
        parts.port  # noqa: B018 - it raises for a port out of range
    except ValueError:
        return "unsafe_url"
    try:
        addresses = [str(ipaddress.ip_address(parts.hostname.strip("[]")))]
    except ValueError:
        try:
            addresses = fuzz_dns(parts.hostname, 0)
        except (OSError, UnicodeError):
            return "unresolvable_url"
    return None if addresses and all(_public(a) for a in addresses) else "unsafe_url"


def _refuses_its_url(code: str) -> Callable[[Case, dict], bool]:
    """The case sends a URL (registering, or changing an endpoint's) that the guard refuses
    with `code`."""
    return lambda case, error: (
        error.get("details", {}).get("url") == _body_field(case, "url")
        and _url_refusal(_body_field(case, "url")) == code)


def _recovers_a_disabled_endpoint(case: Case, error: dict) -> bool:
    """A recovery (not a dry run) of an endpoint that is disabled."""
    endpoint_id = (case.path_parameters or {}).get("endpoint_id")
    return (case.operation.label == "POST /api/v1/webhook-endpoints/{endpoint_id}/recover"
            and _body_field(case, "dry_run") is not True
            and WebhookEndpoint.objects.filter(pk=str(endpoint_id),
                                               state=EndpointState.DISABLED).exists())


UNSUBSCRIBE_OPERATIONS = ("GET /api/v1/unsubscribe/{token}", "POST /api/v1/unsubscribe/{token}")


def _unsubscribe_target(case: Case) -> tuple[str, str] | None:
    """The (recipient, category) an unsubscribe case's token names, if it is one the server
    signed for a category that is registered."""
    if case.operation.label not in UNSUBSCRIBE_OPERATIONS:
        return None
    try:
        recipient, category = preferences.unsubscribe_read(
            str((case.path_parameters or {}).get("token", "")))
    except ValidationFailed:
        return None
    return (recipient, category) if category in {c.name for c in categories()} else None


def _not_a_signed_token(case: Case, _error: dict) -> bool:
    return case.operation.label in UNSUBSCRIBE_OPERATIONS and _unsubscribe_target(case) is None


def _turns_a_required_category_off(case: Case, _error: dict) -> bool:
    """An unsubscribe token for a required category, or a PUT of preferences saying false for
    one (the schema says `true` only there, so this one is also schema-invalid)."""
    target = _unsubscribe_target(case)
    if target is not None:
        return get_category(target[1]).required
    chosen = _body_field(case, "categories")
    return (case.operation.label == "PUT /api/v1/recipients/{recipient_id}/preferences"
            and isinstance(chosen, dict) and any(
                c.required and isinstance(chosen.get(c.name), dict)
                and False in chosen[c.name].values() for c in categories()))


def _invalid_email(email: Any) -> bool:
    try:
        validate_email(email)
    except DjangoValidationError:
        return True
    return False


def _refused_recipients(case: Case, error: dict) -> bool:
    """Every recipient the send refused repeats an earlier one's id, or has an email address
    Django's validator refuses (the recipient's fields say so; JSON Schema can state neither:
    `uniqueItems` compares whole objects, and no `format` is Django's email rule)."""
    sent = _body_field(case, "recipients")
    refused = error.get("details", {}).get("recipients")
    if not isinstance(sent, list) or not isinstance(refused, dict) or not refused:
        return False
    for index, problem in refused.items():
        item = sent[int(index)]
        earlier = [r.get("id") for r in sent[:int(index)] if isinstance(r, dict)]
        code = problem.get("code") if isinstance(problem, dict) else None
        duplicate = code == "duplicate_recipient" and item.get("id") in earlier
        if not (duplicate or (code == "invalid_email" and _invalid_email(item.get("email")))):
            return False
    return True


def _names_an_unknown_sku(case: Case, _: dict) -> bool:
    body = case.body if isinstance(case.body, dict) else {}
    skus = (body.get("args") or {}).get("skus") if isinstance(body.get("args"), dict) else None
    if not isinstance(skus, list) or not skus:
        return False
    from domain.catalog.models import Product

    return len(set(Product.objects.filter(sku__in=skus).values_list("sku", flat=True))) < len(
        set(skus))


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
    # field errors: U+0000 in a query parameter (DRF's CharField refuses it), the one
    # relation between two fields, `until` after `since` (POST /api/v1/jobs/retry and a
    # webhook endpoint's recover; their descriptions say so), and a webhook URL that is an
    # RFC 3986 URI but not a URL for Django's validator (a host without a top-level domain)
    "validation_failed": lambda case, error: bool(error["details"]) and all(
        _nul_in_query(case, name, messages) or _until_not_after_since(case, name)
        or _outside_instant_range(_body_field(case, name), messages)
        or _not_a_url_for_django(case, name, messages)
        for name, messages in error["details"].items()),
    # a webhook URL whose host is (or resolves to) an address that is not public, or whose
    # scheme is not http(s); and one whose host does not resolve (ssrf.py, the url field's
    # description)
    "unsafe_url": _refuses_its_url("unsafe_url"),
    "unresolvable_url": _refuses_its_url("unresolvable_url"),
    # 409: recovering the deliveries of a disabled endpoint (enable it first)
    "endpoint_disabled": _recovers_a_disabled_endpoint,
    # a notification's recipients: an id given twice, an email address Django refuses (the
    # recipient fields' descriptions say so)
    "invalid_recipients": _refused_recipients,
    # an unsubscribe link's token is the server's signature: only one it made is valid
    "invalid_unsubscribe_token": _not_a_signed_token,
    # an unsubscribe link of a required category (the server makes none, but a token can be
    # signed for one)
    "required_category": _turns_a_required_category_off,
    # catalog.set_status by SKUs: each SKU must name a product (the operation's description)
    "unknown_skus": _names_an_unknown_sku,
}
# The codes above that only their rule may give: any answer with one of them, in either test,
# must come from a request that breaks that rule (a 409 is never a schema-valid request
# refused for schemathesis, so without this the rule for endpoint_disabled would hold nothing).
ONLY_UNDER_THEIR_RULE = ("unsafe_url", "unresolvable_url", "endpoint_disabled",
                         "invalid_recipients", "invalid_unsubscribe_token", "required_category",
                         "unknown_skus")


def _breaks_an_unstated_rule(case: Case, response: Response) -> bool:
    """A 422 (or 409) that names a rule of UNSTATED_RULES (for a batch: every refused event
    names one), and the request does break that rule."""
    error = _error(response)
    if response.status_code not in (409, 422) or not error:
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


def refused_only_under_its_rule(ctx, response, case):
    """An answer with a code of ONLY_UNDER_THEIR_RULE comes from a request that breaks that
    rule (an unsafe_url for a public URL, a 409 for an endpoint that is not disabled, fail)."""
    code = _error(response).get("code")
    if code in ONLY_UNDER_THEIR_RULE and not UNSTATED_RULES[code](case, _error(response)):
        raise AssertionError(f"{response.status_code} {code} for a request that does not "
                             f"break its rule: {_error(response)}")
    return None


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
    refused_only_under_its_rule,
]
# The cases sent as schemathesis generated them are also checked both ways: schema-valid data is
# accepted (or refused only under UNSTATED_RULES) and schema-invalid data is refused. The
# "real rows" cases are edited after generation (real ids, registered types), so there what
# schemathesis meant to be valid or invalid no longer holds.
DATA_CHECKS = [positive_data_acceptance_but_unstated_rules, negative_data_rejection_as_sent]
# Generated cases per operation and test; CONVEYOR_FUZZ_EXAMPLES=400 makes a deeper run. A GET
# takes a path id and a few query parameters, a small input next to a write's body: half as
# many.
MAX_EXAMPLES = int(os.environ.get("CONVEYOR_FUZZ_EXAMPLES", "50"))
READ_EXAMPLES = max(MAX_EXAMPLES // 2, 1)
WRITES = schema.exclude(method="GET")
READS = schema.include(method="GET")
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


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    """A real webhook receiver on 127.0.0.1 (allowed in the tests), for the test pings."""
    with Receiver() as running:
        yield running


@pytest.fixture
def _fuzz_dns(monkeypatch):
    monkeypatch.setattr(ssrf, "lookup", fuzz_dns)


@pytest.fixture
def seeded(_wsgi_in_test_transaction, _fuzz_dns, receiver) -> dict:
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
    endpoints, deliveries = _seed_webhooks(key, receiver, published.event, now)
    # a placed order (a ship succeeds) and a shipped one (a ship is 409, or 200 when the case
    # sends the same shipment)
    placed = OrderFactory()
    shipped = OrderFactory(status="shipped", carrier="DHL", tracking_number="JD01",
                           shipped_at=now)
    notifications = _seed_notifications(key)
    # the schedules, synced, with a ledger: a run and a skipped slot
    schedules_sync(reset=True)
    for offset, outcome in ((0, RunOutcome.SUCCEEDED), (5, RunOutcome.SKIPPED)):
        ScheduleRun.objects.create(schedule="outbox-relay", slot=now - timedelta(seconds=offset),
                                   outcome=outcome, started_at=now, finished_at=now,
                                   duration_ms=4, result={"sent": 0})
    return {
        "headers": {"Authorization": f"Bearer {raw}"},
        "event_types": [t.name for t in event_types(publishable=True)],
        "job_kinds": [k.name for k in job_kinds(triggerable=True)],
        "ids": {
            "event_id": [str(published.event.pk)],
            "job_id": [str(j.pk) for j in (queued, dead, cancelled, succeeded)],
            "product_id": [str(product.pk)],
            "endpoint_id": [str(e.pk) for e in endpoints],
            "delivery_id": [str(d.pk) for d in deliveries] + notifications["delivery_id"],
            "order_id": [str(placed.pk), str(shipped.pk)],
            "name": [schedule.name for schedule in SCHEDULES],
            **{name: ids for name, ids in notifications.items() if name != "delivery_id"},
        },
        # an inbox item's recipient: its id goes with the item's in a path
        "item_owners": {str(i.pk): i.recipient_id
                        for i in InboxItem.objects.filter(recipient_id__in=SEEDED_RECIPIENTS)},
    }


def _seed_webhooks(key, receiver: Receiver, event, now) -> tuple[list, list]:
    """Two endpoints at the real receiver (an active one, so a test ping is delivered at once,
    and a disabled one, whose recovery is 409), and deliveries in several statuses, with
    attempts: the seeded event's, delivered after a retry and failed; later ones, retrying
    (its next attempt read from its job) and parked (a recovery sends it again)."""
    day = timedelta(days=1)
    active = WebhookEndpoint.objects.create(
        url=receiver.url("/fuzz"), api_key=key, event_types=["demo.ping"], secret=new_secret(),
        description="seeded", rate_limit=1000, last_success_at=now, created_at=now - day,
        updated_at=now)
    disabled = WebhookEndpoint.objects.create(
        url=receiver.url("/fuzz-disabled"), api_key=key, secret=new_secret(), enabled=False,
        state=EndpointState.DISABLED, disabled_reason="every attempt failed for 5.0 days "
        "(20 in a row)", consecutive_failures=20, failing_since=now - 6 * day,
        last_failure_at=now - day, created_at=now - 7 * day, updated_at=now - day)
    message = Message.objects.create(event_id=event.pk, type=event.type, data=event.payload,
                                     timestamp=event.occurred_at, created_at=now)
    # (messages of events published before; the events themselves are not needed)
    later = Message.objects.create(event_id=uuid.uuid4(), type=event.type,
                                   data={"message": "later"}, timestamp=now, created_at=now)
    delivered = Delivery.objects.create(
        message=message, endpoint=active, status=DeliveryStatus.DELIVERED, attempts=2,
        last_attempt_at=now, delivered_at=now, api_key=key, created_at=now - timedelta(hours=2))
    failed = Delivery.objects.create(
        message=message, endpoint=disabled, status=DeliveryStatus.FAILED, attempts=1,
        last_attempt_at=now - day, api_key=key, created_at=now - timedelta(hours=2),
        last_error={"type": "PermanentError", "message": "the receiver answered 400",
                    "http_status": 400})
    retrying = Delivery.objects.create(message=later, endpoint=active, api_key=key,
                                       status=DeliveryStatus.RETRYING, attempts=1,
                                       last_attempt_at=now, created_at=now)
    job = Job.objects.create(kind="webhook_delivery", params={"delivery": str(retrying.pk)},
                             max_attempts=8, attempts=1, status=JobStatus.RETRYING,
                             next_retry_at=now + timedelta(minutes=5), api_key=key)
    Delivery.objects.filter(pk=retrying.pk).update(job_id=job.pk)
    parked = Delivery.objects.create(
        message=Message.objects.create(event_id=uuid.uuid4(), type=event.type,
                                       data={"message": "parked"}, timestamp=now,
                                       created_at=now - day),
        endpoint=active, api_key=key, status=DeliveryStatus.PARKED, created_at=now - day)
    for delivery, number, outcome, status, excerpt, error_type in (
            (delivered, 1, AttemptResult.FAILED, 503, "busy", "TransientError"),
            (delivered, 2, AttemptResult.DELIVERED, 200, "ok", ""),
            (failed, 1, AttemptResult.GAVE_UP, 400, "bad request", "PermanentError"),
            (retrying, 1, AttemptResult.FAILED, None, "", "TimeoutError")):
        DeliveryAttempt.objects.create(
            delivery=delivery, number=number, at=now - timedelta(minutes=10 - number),
            outcome=outcome, http_status=status, latency_ms=12 if status else 15000,
            response_excerpt=excerpt, error_type=error_type,
            error_message=f"{error_type}: the receiver answered {status}" if error_type else "",
            worker="celery@fuzz")
    return [active, disabled], [delivered, failed, retrying, parked]


SEEDED_RECIPIENTS = ("fuzz-recipient", "fuzz-other")


def _seed_notifications(key) -> dict[str, list[str]]:
    """A security alert and a comment (a digest's email) to two recipients, one without an
    email address (its email delivery skipped), the in-app deliveries written to the inboxes
    (one item read, one archived), a recipient's preferences, and one-click unsubscribe tokens
    (one of a required category, which the server refuses)."""
    sent = []
    for template, context in (
            ("security_alert", {"title": "New sign-in", "message": "From a new device.",
                                "occurred_at": "2026-11-28T09:00:00Z"}),
            ("comment_added", {"thread_id": "t-1", "thread_title": "Plan", "author": "Ada",
                               "excerpt": "Looks good."})):
        draft = notification_validate(template=template, context=context, recipients=[
            {"id": SEEDED_RECIPIENTS[0], "email": "fuzz@example.com"},
            {"id": SEEDED_RECIPIENTS[1]}])
        sent.append(notification_send(draft=draft, api_key=key))
    deliveries = [d for result in sent for d in result.deliveries]
    inbox.inbox_deliver(list(Job.objects.filter(
        kind="inbox_delivery", pk__in={d.job_id for d in deliveries})))
    items = list(InboxItem.objects.filter(recipient_id__in=SEEDED_RECIPIENTS))
    inbox.inbox_item_mark(recipient_id=items[0].recipient_id, item_id=items[0].pk,
                          action="read")
    inbox.inbox_item_mark(recipient_id=items[1].recipient_id, item_id=items[1].pk,
                          action="archive")
    preferences.preferences_put(recipient_id=SEEDED_RECIPIENTS[0],
                                choices={"comments": {"email": False}})
    return {
        "notification_id": [str(result.notification.pk) for result in sent],
        "delivery_id": [str(d.pk) for d in deliveries],
        "recipient_id": list(SEEDED_RECIPIENTS),
        "item_id": [str(i.pk) for i in items],
        "token": [preferences.unsubscribe_token(recipient_id=r, category=c)
                  for r in SEEDED_RECIPIENTS for c in ("comments", "orders", "security")],
    }


FUZZ_SETTINGS = hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,  # no .hypothesis/ directory in the project
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
READ_SETTINGS = hypothesis.settings(FUZZ_SETTINGS, max_examples=READ_EXAMPLES)


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


@WRITES.parametrize()
@FUZZ_SETTINGS
def test_api_conforms_to_its_schema(case, seeded):
    """Schemathesis as it is: examples, coverage (boundaries, missing/invalid parameters,
    content-type probes) and fuzzing phases, positive and negative data."""
    _send_and_check(case, seeded, "schema")


@READS.parametrize()
@READ_SETTINGS
def test_api_conforms_to_its_schema_reads(case, seeded):
    """test_api_conforms_to_its_schema for the GET operations (READ_EXAMPLES)."""
    _send_and_check(case, seeded, "schema")


@WRITES.parametrize()
@WRITES.given(data=st.data())
@FUZZ_SETTINGS
def test_api_conforms_to_its_schema_on_real_rows(case, data, seeded):
    """The fuzzing phase steered to the success paths: existing ids, registered event types
    and job kinds, schema-valid payloads (schemathesis runs no coverage phase with `given`)."""
    _steer_to_real_rows(case, data, seeded)
    _send_and_check(case, seeded, "real rows")


@READS.parametrize()
@READS.given(data=st.data())
@READ_SETTINGS
def test_api_conforms_to_its_schema_on_real_rows_reads(case, data, seeded):
    """test_api_conforms_to_its_schema_on_real_rows for the GET operations (READ_EXAMPLES)."""
    _steer_to_real_rows(case, data, seeded)
    _send_and_check(case, seeded, "real rows")


def _steer_to_real_rows(case: Case, data, seeded: dict) -> None:
    # given, half of the time, an id that exists in place of a generated one
    for name in list(case.path_parameters or {}):
        known = seeded["ids"].get(name)
        if known and data.draw(st.booleans(), label=f"use a seeded {name}"):
            case.path_parameters[name] = data.draw(st.sampled_from(known), label=name)
    # and an inbox item's own recipient with a seeded item (another's is a 404)
    owner = seeded["item_owners"].get((case.path_parameters or {}).get("item_id"))
    if owner is not None and "recipient_id" in case.path_parameters:
        case.path_parameters["recipient_id"] = owner

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
