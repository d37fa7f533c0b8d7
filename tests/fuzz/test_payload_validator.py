"""Properties of the event-payload validator (domain.events.services.event_validate and the
registry's EventType.validate_payload), and of the payload size/depth limits.

- Any JSON value under any type string: a draft or ValidationFailed (422) with one of the four
  codes, never another exception; and the code is always a justified one.
- Payloads generated from the registered schemas are always accepted, and the jobs their
  handlers would create carry params their job kind accepts.
- request_fingerprint does not depend on the order of object keys.
- settings.API_MAX_PAYLOAD_BYTES / API_MAX_PAYLOAD_DEPTH: 422 payload_too_large /
  payload_too_deep exactly past the limit, in the service and through POST /api/v1/events
  (and /events/batch), with nothing written.
"""

from __future__ import annotations

import random

import orjson
import pytest
from hypothesis import HealthCheck, assume, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from domain.common.errors import ValidationFailed
from domain.events.models import Event
from domain.events.registry import event_types
from domain.events.services import EventDraft, event_validate, request_fingerprint
from domain.jobs.models import Job
from domain.jobs.registry import get_job_kind
from tests.fuzz.strategies import (
    PAYLOADS,
    depth_of,
    json_values,
    nested,
    reordered,
)

VALIDATION_CODES = {"unknown_event_type", "invalid_payload", "payload_too_large",
                    "payload_too_deep"}
REGISTERED = sorted(t.name for t in event_types(publishable=True))

# Function-scoped fixtures (pytest-django's `settings`) are shared by every example of a
# test, which is what these tests want: the limits stay set for the whole test.
FUZZ = hsettings(
    max_examples=200, deadline=None, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large],
)

type_names = st.one_of(
    st.sampled_from(REGISTERED),
    st.text(max_size=120),
    st.sampled_from(REGISTERED).map(lambda t: t.upper()),
    st.sampled_from(REGISTERED).map(lambda t: f" {t}"),
)


def _size(payload) -> int:
    return len(orjson.dumps(payload))


def _encodable(payload) -> bool:
    try:
        orjson.dumps(payload)
    except orjson.JSONEncodeError:  # an integer beyond 64 bits
        return False
    return True


def _by_type():
    return {t.name: t for t in event_types(publishable=True)}


def _justified_codes(event_type: str, payload, max_bytes: int, max_depth: int) -> set[str]:
    """Every 422 code this input deserves (an oracle independent of the implementation)."""
    registered = _by_type().get(event_type)
    if registered is None:
        return {"unknown_event_type"}
    codes = set()
    if not _encodable(payload):
        codes.add("invalid_payload")  # cannot be stored as JSON
    elif _size(payload) > max_bytes:
        codes.add("payload_too_large")
    if depth_of(payload) > max_depth:
        codes.add("payload_too_deep")
    if registered.validate_payload(payload):
        codes.add("invalid_payload")
    return codes


def _outcome(event_type: str, payload) -> EventDraft | ValidationFailed:
    """event_validate's draft, or the ValidationFailed it raised (any other exception escapes
    and fails the test: that is the property)."""
    try:
        return event_validate(event_type=event_type, payload=payload, occurred_at=None)
    except ValidationFailed as exc:
        return exc


def _assert_outcome_is_justified(event_type, payload, outcome, max_bytes, max_depth):
    justified = _justified_codes(event_type, payload, max_bytes, max_depth)
    if isinstance(outcome, ValidationFailed):
        assert outcome.status_code == 422
        assert outcome.code in VALIDATION_CODES, outcome.code
        assert outcome.code in justified, (outcome.code, justified, payload)
        assert isinstance(outcome.message, str) and outcome.message
        assert isinstance(outcome.details, dict)
        orjson.dumps(outcome.details)  # rendered into the 422 body: must be JSON
    else:
        assert not justified, (justified, payload)
        assert isinstance(outcome, EventDraft)
        assert outcome.event_type.name == event_type
        assert outcome.payload is payload
        assert len(outcome.request_hash) == 64


# --- Any JSON value, any type string -----------------------------------------------------

@FUZZ
@given(event_type=type_names, payload=json_values(wide_ints=True))
@example(event_type="demo.ping", payload={})
@example(event_type="demo.ping", payload={"n": 2**64})
@example(event_type="demo.ping", payload=[])
@example(event_type="demo.ping", payload=None)
@example(event_type="demo.ping", payload={"message": 1})
@example(event_type="product.updated", payload={"product_id": "", "category": "c"})
@example(event_type="", payload={})
@example(event_type="demo.ping\x00", payload={})
def test_any_json_value_is_a_draft_or_a_422(event_type, payload, settings):
    # when any JSON value is validated under any type name (default limits)
    outcome = _outcome(event_type, payload)

    # then it is a draft or one of the four 422s, and never an unjustified one
    _assert_outcome_is_justified(event_type, payload, outcome,
                                 settings.API_MAX_PAYLOAD_BYTES, settings.API_MAX_PAYLOAD_DEPTH)


@FUZZ
@given(event_type=st.sampled_from(REGISTERED), payload=json_values(60, wide_ints=True),
       max_bytes=st.integers(min_value=0, max_value=400),
       max_depth=st.integers(min_value=0, max_value=6))
def test_any_json_value_under_small_limits_is_a_draft_or_a_justified_422(
        event_type, payload, max_bytes, max_depth, settings):
    # given small limits, so that both limits are often crossed
    settings.API_MAX_PAYLOAD_BYTES = max_bytes
    settings.API_MAX_PAYLOAD_DEPTH = max_depth

    # when any JSON value is validated under a registered type
    outcome = _outcome(event_type, payload)

    # then the outcome is justified by these limits
    _assert_outcome_is_justified(event_type, payload, outcome, max_bytes, max_depth)


@FUZZ
@given(payload=json_values())
def test_validate_payload_returns_a_bounded_list_of_json_errors(payload):
    # when the registry validates any JSON value against each registered schema
    for registered in event_types():
        errors = registered.validate_payload(payload)

        # then it answers a list (empty when valid) of {path, message}, at most 20, as JSON
        assert isinstance(errors, list) and len(errors) <= 20
        for error in errors:
            assert set(error) == {"path", "message"}
            assert isinstance(error["path"], str) and error["path"]
            assert isinstance(error["message"], str)
        orjson.dumps(errors)


# --- Payloads built from the registered schemas ------------------------------------------

def test_every_registered_event_type_has_a_payload_strategy():
    # a new event type needs a strategy in tests/fuzz/strategies.py to be fuzzed
    assert set(PAYLOADS) == set(REGISTERED)


@FUZZ
@given(data=st.data())
def test_payloads_generated_from_the_schemas_are_accepted(data):
    # given a registered type and a payload generated from its schema
    event_type = data.draw(st.sampled_from(REGISTERED), label="type")
    payload = data.draw(PAYLOADS[event_type], label="payload")
    assert _by_type()[event_type].validate_payload(payload) == []

    # when it is validated (default limits: these payloads are far below them)
    draft = event_validate(event_type=event_type, payload=payload, occurred_at=None)

    # then it is a draft of that type carrying that payload
    assert draft.event_type.name == event_type
    assert draft.payload == payload
    assert draft.request_hash == request_fingerprint(event_type=event_type, payload=payload,
                                                     occurred_at=None)


@FUZZ
@given(data=st.data())
def test_accepted_payloads_make_jobs_their_kind_accepts(data):
    # given an accepted payload of a registered type
    event_type = data.draw(st.sampled_from(REGISTERED), label="type")
    payload = data.draw(PAYLOADS[event_type], label="payload")
    draft = event_validate(event_type=event_type, payload=payload, occurred_at=None)

    # then every handler computes params that its job kind's own schema accepts (the same
    # check POST /api/v1/jobs applies to params given directly)
    for handler in draft.event_type.handlers:
        params = handler.params(draft.payload)
        get_job_kind(handler.kind).validate_params(params)
        orjson.dumps(params)


# --- The request fingerprint ---------------------------------------------------------------

@FUZZ
@given(event_type=type_names, payload=json_values(), seed=st.integers(0, 2**32 - 1),
       occurred_at=st.none() | st.datetimes(timezones=st.timezones()))
def test_fingerprint_is_stable_under_key_reordering(event_type, payload, seed, occurred_at):
    # given the same payload with its object keys in another order
    shuffled = reordered(payload, random.Random(seed))
    assert shuffled == payload

    # then both have the same fingerprint
    assert request_fingerprint(event_type=event_type, payload=payload, occurred_at=occurred_at) \
        == request_fingerprint(event_type=event_type, payload=shuffled, occurred_at=occurred_at)


@FUZZ
@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_draft_hash_is_stable_under_key_reordering(data, seed):
    # given an accepted payload and the same payload with its keys reordered
    event_type = data.draw(st.sampled_from(REGISTERED), label="type")
    payload = data.draw(PAYLOADS[event_type], label="payload")
    shuffled = reordered(payload, random.Random(seed))

    # then the drafts carry the same request hash (an Idempotency-Key replay of the same
    # body with keys in another order is a replay, not a 409)
    first = event_validate(event_type=event_type, payload=payload, occurred_at=None)
    second = event_validate(event_type=event_type, payload=shuffled, occurred_at=None)
    assert first.request_hash == second.request_hash


@FUZZ
@given(data=st.data())
def test_fingerprint_tells_different_payloads_apart(data):
    # given two different payloads (as JSON) of the same type
    event_type = data.draw(st.sampled_from(REGISTERED), label="type")
    one = data.draw(PAYLOADS[event_type], label="one")
    other = data.draw(PAYLOADS[event_type], label="other")
    assume(orjson.dumps(one, option=orjson.OPT_SORT_KEYS)
           != orjson.dumps(other, option=orjson.OPT_SORT_KEYS))

    # then their fingerprints differ
    assert request_fingerprint(event_type=event_type, payload=one, occurred_at=None) \
        != request_fingerprint(event_type=event_type, payload=other, occurred_at=None)


# --- Payload limits in the service ---------------------------------------------------------

def _message_of_size(total: int) -> dict:
    """A demo.ping payload whose orjson form is exactly `total` bytes ({"message":"..."})."""
    overhead = _size({"message": ""})
    payload = {"message": "x" * (total - overhead)}
    assert _size(payload) == total
    return payload


@pytest.mark.parametrize("limit", [16, 64, 1000])
def test_payload_of_exactly_the_byte_limit_passes_and_one_more_byte_fails(limit, settings):
    settings.API_MAX_PAYLOAD_BYTES = limit

    # a payload of exactly the limit is accepted
    event_validate(event_type="demo.ping", payload=_message_of_size(limit), occurred_at=None)

    # one byte more is payload_too_large, naming the limit and the size
    with pytest.raises(ValidationFailed) as raised:
        event_validate(event_type="demo.ping", payload=_message_of_size(limit + 1),
                       occurred_at=None)
    assert raised.value.code == "payload_too_large"
    assert raised.value.status_code == 422
    assert raised.value.details.get("limit") == limit


@pytest.mark.parametrize("kinds", ["d", "a", "da", "ad"])
@pytest.mark.parametrize("limit", [1, 2, 5])
def test_payload_of_exactly_the_depth_limit_passes_and_one_level_more_fails(limit, kinds,
                                                                           settings):
    settings.API_MAX_PAYLOAD_DEPTH = limit
    # demo.ping needs an object at the top: {"deep": <limit-1 levels>} is `limit` deep
    at_limit = {"deep": nested(limit - 1, kinds=kinds)}
    past_limit = {"deep": nested(limit, kinds=kinds)}
    assert depth_of(at_limit) == limit and depth_of(past_limit) == limit + 1

    event_validate(event_type="demo.ping", payload=at_limit, occurred_at=None)
    with pytest.raises(ValidationFailed) as raised:
        event_validate(event_type="demo.ping", payload=past_limit, occurred_at=None)
    assert raised.value.code == "payload_too_deep"
    assert raised.value.details.get("limit") == limit


@FUZZ
@given(payload=PAYLOADS["demo.ping"], max_bytes=st.integers(min_value=2, max_value=300))
def test_byte_limit_is_the_orjson_size_of_the_payload(payload, max_bytes, settings):
    # given a schema-valid payload and a small byte limit
    settings.API_MAX_PAYLOAD_BYTES = max_bytes
    settings.API_MAX_PAYLOAD_DEPTH = 10_000

    # then it is refused exactly when its orjson form is larger than the limit
    outcome = _outcome("demo.ping", payload)
    if _size(payload) > max_bytes:
        assert isinstance(outcome, ValidationFailed) and outcome.code == "payload_too_large"
    else:
        assert isinstance(outcome, EventDraft)


@FUZZ
@given(deep=json_values(max_leaves=40), max_depth=st.integers(min_value=1, max_value=8))
def test_depth_limit_counts_nested_objects_and_arrays(deep, max_depth, settings):
    # given a schema-valid demo.ping payload holding any JSON value, and a small depth limit
    settings.API_MAX_PAYLOAD_DEPTH = max_depth
    payload = {"message": "m", "deep": deep}

    # then it is refused exactly when it nests deeper than the limit
    outcome = _outcome("demo.ping", payload)
    if depth_of(payload) > max_depth:
        assert isinstance(outcome, ValidationFailed) and outcome.code == "payload_too_deep"
    else:
        assert isinstance(outcome, EventDraft), outcome


# --- Payload limits through the HTTP API ---------------------------------------------------

def _counts() -> tuple[int, int]:
    return Event.objects.count(), Job.objects.count()


def _assert_refused(response, code: str) -> dict:
    """A 422 in the one error shape, with `code`; returns the error object."""
    assert response.status_code == 422, response.content
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == code, error
    return error


@pytest.mark.django_db
def test_http_publish_too_large_is_422_and_writes_nothing(make_client, settings):
    client = make_client()
    settings.API_MAX_PAYLOAD_BYTES = 64
    before = _counts()

    response = client.post("/api/v1/events", {"type": "demo.ping",
                                              "payload": _message_of_size(65)}, format="json")

    _assert_refused(response, "payload_too_large")
    assert _counts() == before
    # and a payload of exactly the limit is accepted
    ok = client.post("/api/v1/events", {"type": "demo.ping", "payload": _message_of_size(64)},
                     format="json")
    assert ok.status_code == 202, ok.content


@pytest.mark.django_db
def test_http_publish_too_deep_is_422_and_writes_nothing(make_client, settings):
    client = make_client()
    settings.API_MAX_PAYLOAD_DEPTH = 3
    before = _counts()

    response = client.post("/api/v1/events", {"type": "demo.ping",
                                              "payload": {"deep": nested(3)}}, format="json")

    _assert_refused(response, "payload_too_deep")
    assert _counts() == before
    ok = client.post("/api/v1/events", {"type": "demo.ping", "payload": {"deep": nested(2)}},
                     format="json")
    assert ok.status_code == 202, ok.content


@pytest.mark.django_db
@pytest.mark.parametrize(("setting", "value", "bad", "code"), [
    ("API_MAX_PAYLOAD_BYTES", 64, _message_of_size(65), "payload_too_large"),
    ("API_MAX_PAYLOAD_DEPTH", 3, {"deep": nested(3)}, "payload_too_deep"),
])
def test_http_batch_with_one_payload_over_a_limit_is_422_and_writes_nothing(
        make_client, settings, setting, value, bad, code):
    client = make_client()
    setattr(settings, setting, value)
    before = _counts()
    events = [{"type": "demo.ping", "payload": {"message": "ok"}},
              {"type": "demo.ping", "payload": bad},
              {"type": "demo.ping", "payload": {}}]

    response = client.post("/api/v1/events/batch", {"events": events}, format="json")

    # a batch is refused as a whole (validation_failed), each bad event under its index
    error = _assert_refused(response, "validation_failed")
    assert error["details"]["events"]["1"]["code"] == code
    assert set(error["details"]["events"]) == {"1"}
    assert _counts() == before


@pytest.mark.django_db
def test_http_default_limits_refuse_what_the_body_limit_lets_through(make_client, settings):
    # the body limit (API_MAX_BODY_BYTES) is far larger than the payload limit: a payload just
    # past the payload limit parses, and is then refused with the payload code
    client = make_client()
    limit = settings.API_MAX_PAYLOAD_BYTES
    assert limit + 100 < settings.API_MAX_BODY_BYTES
    before = _counts()

    too_large = client.post("/api/v1/events", {"type": "demo.ping",
                                               "payload": _message_of_size(limit + 1)},
                            format="json")
    too_deep = client.post(
        "/api/v1/events",
        {"type": "demo.ping",
         "payload": {"deep": nested(settings.API_MAX_PAYLOAD_DEPTH)}},
        format="json")

    _assert_refused(too_large, "payload_too_large")
    _assert_refused(too_deep, "payload_too_deep")
    assert _counts() == before


@pytest.mark.django_db
@FUZZ
@given(payload=PAYLOADS["demo.ping"], max_bytes=st.integers(min_value=10, max_value=200))
def test_http_publish_respects_the_byte_limit(payload, max_bytes, make_client, settings):
    # given a small byte limit and any schema-valid payload, sent through the API
    settings.API_MAX_PAYLOAD_BYTES = max_bytes
    client = make_client(name="limits")
    before = _counts()

    response = client.post("/api/v1/events", {"type": "demo.ping", "payload": payload},
                           format="json")

    # then it is 202 exactly when it fits, otherwise 422 payload_too_large with nothing written
    # (a U+0000 anywhere is refused first, by the parser: PostgreSQL's jsonb cannot store it)
    if b"\\u0000" in orjson.dumps(payload):
        assert response.status_code == 422, response.content
        assert response.json()["error"]["code"] == "unsupported_character"
        assert _counts() == before
    elif _size(payload) > max_bytes:
        assert response.status_code == 422, response.content
        assert response.json()["error"]["code"] == "payload_too_large"
        assert _counts() == before
    else:
        assert response.status_code == 202, response.content
        assert response.json()["payload"] == payload
