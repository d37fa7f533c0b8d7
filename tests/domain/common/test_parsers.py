"""The JSON body parser keeps every number it accepts exactly: orjson parses an integer wider
than 64 bits as a rounded float, so such a body is refused (422 unsupported_number) instead
of being stored as another number; the bytes a client sends in strings are not numbers."""

from __future__ import annotations

import io

import orjson
import pytest

from domain.common.errors import ValidationFailed
from domain.common.parsers import INT_MAX, INT_MIN, LimitedJSONParser
from domain.events.models import Event
from domain.jobs.models import Job
from tests.conftest import assert_error


def _parse(raw: bytes):
    return LimitedJSONParser().parse(io.BytesIO(raw))


# --- the parser -------------------------------------------------------------------------------

@pytest.mark.parametrize("literal", [
    str(INT_MAX + 1), str(INT_MIN - 1), str(10**30), str(-(10**30)), "1" + "0" * 400,
    "1" + "0" * 5000,  # past Python's 4,300-digit int() limit: refused by length
])
@pytest.mark.parametrize("template", ["{}", '{{"a": [1, {{"n": {}}}]}}', "[0, {}]"])
def test_an_integer_beyond_64_bits_is_refused_wherever_it_sits(literal, template):
    # given a body holding an integer literal orjson cannot keep exactly
    raw = template.format(literal).encode()

    # when it is parsed
    with pytest.raises(ValidationFailed) as raised:
        _parse(raw)

    # then it is 422 unsupported_number, naming the range
    assert raised.value.code == "unsupported_number"
    assert raised.value.status_code == 422
    assert raised.value.details == {"min": str(INT_MIN), "max": str(INT_MAX)}
    assert str(INT_MAX) in raised.value.message


@pytest.mark.parametrize("number", [INT_MAX, INT_MIN, 2**63, -(2**63) + 1, 10**18, 0, -1])
def test_an_integer_within_64_bits_is_kept_exactly(number):
    # when a body holding a 64-bit integer is parsed, then the integer is kept, not rounded
    assert _parse(orjson.dumps({"n": number})) == {"n": number}
    assert type(_parse(orjson.dumps({"n": number}))["n"]) is int


@pytest.mark.parametrize("raw", [
    b'{"id": "123456789012345678901234567890"}',  # a long digit run inside a string
    b'{"f": 1.8446744073709551616e19}',           # a float written as a float
    b'{"f": 123456789012345678901.5}',            # a long integer part of a float
    b'{"f": 0.12345678901234567890123}',          # a long fraction
    b'{"f": 1e300}',
])
def test_long_digit_runs_that_are_no_wide_integer_pass(raw):
    # when a body whose long digit runs are strings or floats is parsed, then it is accepted
    assert _parse(raw) == orjson.loads(raw)


def test_a_number_past_a_double_is_unsupported_not_malformed():
    # given well-formed JSON whose number no double holds (orjson refuses it as "infinity")
    with pytest.raises(ValidationFailed) as raised:
        _parse(b'{"f": 1e400}')

    # then it is the same 422, not a 400 malformed_json
    assert raised.value.code == "unsupported_number"


# --- through the API ----------------------------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize(("path", "body"), [
    ("/api/v1/events", b'{"type": "demo.ping", "payload": {"n": 18446744073709551616}}'),
    ("/api/v1/events/batch",
     b'{"events": [{"type": "demo.ping", "payload": {"n": -9223372036854775809}}]}'),
    ("/api/v1/jobs", b'{"kind": "noop", "params": {"n": 100000000000000000000000}}'),
])
def test_a_wide_integer_is_422_and_nothing_is_stored(make_client, path, body):
    # given a client sending an integer beyond 64 bits (before: 202, stored as a float)
    client = make_client()

    # when it is posted
    response = client.post(path, data=body, content_type="application/json")

    # then it is 422 unsupported_number in the one error shape, and nothing is written
    assert_error(response, 422, "unsupported_number")
    assert Event.objects.count() == 0 and Job.objects.count() == 0


@pytest.mark.django_db
def test_a_64_bit_integer_is_stored_and_answered_exactly(make_client):
    # given a payload holding the largest unsigned 64-bit integer
    client = make_client()
    body = b'{"type": "demo.ping", "payload": {"n": 18446744073709551615}}'

    # when it is published, then the stored and answered payload holds that integer
    response = client.post("/api/v1/events", data=body, content_type="application/json")
    assert response.status_code == 202, response.content
    assert Event.objects.get().payload == {"n": INT_MAX}
