"""Problems the fuzz tests found, each kept as a small deterministic regression test.

How this file works: a new finding goes in as a test of the behaviour the API should have,
marked `@pytest.mark.xfail(strict=True, reason="BUG: ...")` (and, if the OpenAPI fuzzer trips
over it, with a narrow entry in test_openapi_fuzz.KNOWN_FINDINGS so the fuzzer keeps looking for
new ones). When a fix lands the test XPASSes, the strict marker fails the run, and the marker
and the KNOWN_FINDINGS entry come off: the test stays as the regression test.

F1-F8 below were found by tests/fuzz and have since been fixed (markers removed):

- F1 GET /api/v1/jobs?cursor=<undecodable> answered DRF's 404 "Invalid cursor", a status the
  schema does not document for jobs_list. Now 422 invalid_cursor (domain/common/pagination.py).
- F2 GET /api/v1/jobs?cursor=<base64 of "p=not-a-date"> was a 500: DRF filtered
  created_at__lt="not-a-date" and Django's ValidationError went unmapped. Now 422
  invalid_cursor.
- F3/F4 U+0000 anywhere in a JSON body (event payload, batch payload, job params; key or value)
  was a 500 on PostgreSQL (jsonb: "unsupported Unicode escape sequence" on INSERT). Now 422
  unsupported_character from the parser (domain/common/parsers.py).
- F5 a payload nested 255+ levels: event_validate measured the size with orjson.dumps before
  the depth, and orjson raises TypeError ("Recursion limit reached") past 254 levels: a
  TypeError in the service, a 500 over HTTP. Depth is now checked first.
- F6 a JSON body nested ~900-1023 levels parsed (orjson allows 1024) but DRF's
  serializers.JSONField re-encodes with the recursive json module: RecursionError, a 500 on
  POST /api/v1/events, /events/batch and /jobs. The parser now caps bodies at
  API_MAX_JSON_DEPTH levels (422 payload_too_deep).
- F7 (service only) an integer outside [-2**63, 2**64-1] in a payload made event_validate raise
  orjson.JSONEncodeError (a TypeError) instead of a draft or ValidationFailed. Now 422
  invalid_payload. (Over HTTP the parser refuses them first: 422 unsupported_number, see
  tests/domain/common/test_parsers.py; before, orjson parsed them as rounded floats.)
- F8 (low) product.updated declares product_id `format: uuid`, but the Draft 2020-12
  validator ran without a format checker: any string passed, and a product_id over 234
  characters made a cache_invalidation job whose key broke the kind's own maxLength 250. Formats
  are now enforced (domain/common/schemas.py, for event payloads and job params alike).

"Documented" below means: listed among the operation's responses in /api/schema.
"""

from __future__ import annotations

import base64
import json
from functools import cache

import pytest
from django.test import Client

from domain.common.errors import ValidationFailed
from domain.events.models import Event
from domain.events.registry import get_event_type
from domain.events.services import EventDraft, event_validate
from domain.jobs.models import Job
from domain.jobs.registry import get_job_kind

pytestmark = pytest.mark.django_db


@cache
def _documented(path: str, method: str) -> frozenset[int]:
    document = json.loads(Client().get("/api/schema?format=json").content)
    return frozenset(int(code) for code in document["paths"][path][method]["responses"])


def _assert_documented_client_error(response, path: str, method: str,
                                    code: str | None = None) -> None:
    """Not a 5xx, a status code the schema lists for this operation, the one error shape."""
    assert response.status_code < 500, response.content
    assert response.status_code in _documented(path, method), (
        response.status_code, sorted(_documented(path, method)), response.content)
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details"}
    if code is not None:
        assert error["code"] == code, error


def _deep_body(prefix: str, depth: int, suffix: str) -> str:
    """JSON text with a value `depth` objects deep between prefix and suffix (built as
    text: json.dumps itself would hit Python's recursion limit at these depths)."""
    return prefix + '{"n":' * depth + "1" + "}" * depth + suffix


def _deep(depth: int) -> dict:
    value: object = 1
    for _ in range(depth):
        value = {"n": value}
    return value


@pytest.fixture
def api(make_client):
    client = make_client()
    client.raise_request_exception = False  # a bug is the 500 a caller gets, not a traceback
    return client


# --- F1: an unparsable ?cursor= was an undocumented 404 -----------------------------------

@pytest.mark.parametrize("cursor", ["garbage", "undefined", "cD0", "\u00e9"])
def test_jobs_list_with_an_invalid_cursor_is_a_documented_client_error(api, cursor):
    response = api.get("/api/v1/jobs", {"cursor": cursor})

    _assert_documented_client_error(response, "/api/v1/jobs", "get", "invalid_cursor")


# --- F2: a well-formed cursor with a non-datetime position was a 500 ----------------------

@pytest.mark.parametrize("position", ["not-a-date", "2024-13-01", "", "1"])
def test_jobs_list_with_a_forged_cursor_position_is_a_client_error(api, position):
    cursor = base64.b64encode(f"p={position}".encode()).decode()

    response = api.get("/api/v1/jobs", {"cursor": cursor})

    _assert_documented_client_error(response, "/api/v1/jobs", "get", "invalid_cursor")


# --- F3/F4: a NUL character anywhere in a JSON body was a 500 on PostgreSQL ----------------
# (SQLite stores it; the refusal is in the parser, so these hold on both databases)

NUL_EVENTS = [
    pytest.param({"message": "a\x00b"}, id="in-a-value"),
    pytest.param({"a\x00": 1}, id="in-a-key"),
    pytest.param({"deep": [["\x00"]]}, id="nested"),
]


@pytest.mark.parametrize("payload", NUL_EVENTS)
def test_publish_with_a_nul_character_in_the_payload_is_not_a_500(api, payload):
    before = Event.objects.count()

    response = api.post("/api/v1/events", {"type": "demo.ping", "payload": payload},
                        format="json")

    _assert_documented_client_error(response, "/api/v1/events", "post",
                                    "unsupported_character")
    assert Event.objects.count() == before


def test_batch_with_a_nul_character_in_a_payload_is_not_a_500(api):
    before = Event.objects.count()
    events = [{"type": "demo.ping", "payload": {}},
              {"type": "demo.ping", "payload": {"message": "\x00"}}]

    response = api.post("/api/v1/events/batch", {"events": events}, format="json")

    _assert_documented_client_error(response, "/api/v1/events/batch", "post",
                                    "unsupported_character")
    assert Event.objects.count() == before


def test_job_create_with_a_nul_character_in_params_is_not_a_500(api):
    before = Job.objects.count()

    response = api.post("/api/v1/jobs", {"kind": "noop", "params": {"a": "\x00"}},
                        format="json")

    _assert_documented_client_error(response, "/api/v1/jobs", "post", "unsupported_character")
    assert Job.objects.count() == before


# --- F5: a payload nested 255+ levels was a TypeError / 500, not payload_too_deep ----------

@pytest.mark.parametrize("depth", [255, 300, 800, 5000])
def test_very_deep_payload_is_payload_too_deep_in_the_service(depth):
    with pytest.raises(ValidationFailed) as raised:
        event_validate(event_type="demo.ping", payload={"deep": _deep(depth - 1)},
                       occurred_at=None)
    assert raised.value.code == "payload_too_deep"


@pytest.mark.parametrize("depth", [255, 300, 800])
def test_very_deep_payload_is_422_over_http(api, depth):
    before = Event.objects.count()
    body = _deep_body('{"type": "demo.ping", "payload": ', depth, "}")

    response = api.post("/api/v1/events", body, content_type="application/json")

    _assert_documented_client_error(response, "/api/v1/events", "post", "payload_too_deep")
    assert Event.objects.count() == before


# --- F6: any JSON field nested ~900..1023 levels was a RecursionError / 500 ----------------

@pytest.mark.parametrize(("path", "prefix", "suffix"), [
    pytest.param("/api/v1/events", '{"type": "demo.ping", "payload": ', "}", id="events"),
    pytest.param("/api/v1/events/batch", '{"events": [{"type": "demo.ping", "payload": ',
                 "}]}", id="batch"),
    pytest.param("/api/v1/jobs", '{"kind": "noop", "params": ', "}", id="jobs"),
])
def test_json_nested_a_thousand_levels_is_a_client_error(api, path, prefix, suffix):
    before = (Event.objects.count(), Job.objects.count())
    body = _deep_body(prefix, 1000, suffix)

    response = api.post(path, body, content_type="application/json")

    _assert_documented_client_error(response, path, "post", "payload_too_deep")
    assert (Event.objects.count(), Job.objects.count()) == before


# --- F7: an integer wider than 64 bits made event_validate raise TypeError -----------------

@pytest.mark.parametrize("number", [2**64, -(2**63) - 1, 10**30])
def test_payload_with_a_huge_integer_is_a_draft_or_validation_failed(number):
    try:
        outcome = event_validate(event_type="demo.ping", payload={"n": number},
                                 occurred_at=None)
    except ValidationFailed as exc:
        outcome = exc
    assert isinstance(outcome, EventDraft | ValidationFailed)


# --- F8: an accepted product.updated payload could make a job its kind rejects -------------

@pytest.mark.parametrize("product_id", ["x" * 300, "not-a-uuid"])
def test_accepted_product_updated_payloads_make_valid_cache_invalidation_params(product_id):
    payload = {"product_id": product_id, "category": "coffee"}

    try:
        draft = event_validate(event_type="product.updated", payload=payload, occurred_at=None)
    except ValidationFailed as exc:
        assert exc.code == "invalid_payload"  # the declared uuid format refuses it
        return
    for handler in get_event_type("product.updated").handlers:
        get_job_kind(handler.kind).validate_params(handler.params(draft.payload))
