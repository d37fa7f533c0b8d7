"""The formats the registries' schemas enforce read as the schema's other readers read them:
`date-time` (RFC 3339) and `uri` (RFC 3986), which jsonschema left unchecked without optional
packages ("" passed as a date-time), agree with jsonschema-rs, the validator schemathesis and
many clients use."""

from __future__ import annotations

import jsonschema_rs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.provisional import urls

from domain.common.schemas import compile_schema, is_date_time, is_uri, schema_errors

RS_DATE_TIME = jsonschema_rs.validator_for({"type": "string", "format": "date-time"},
                                           validate_formats=True)
RS_URI = jsonschema_rs.validator_for({"type": "string", "format": "uri"}, validate_formats=True)
AGREE = settings(max_examples=1000, deadline=None, database=None,
                 suppress_health_check=list(HealthCheck))

DATE_TIMES = [
    ("2026-11-28T09:00:00Z", True), ("2026-11-28t09:00:00z", True),
    ("2026-11-28T09:00:00.123456789+05:30", True), ("2026-11-28T09:00:00-00:00", True),
    ("2024-02-29T00:00:00Z", True), ("0000-01-01T00:00:00Z", True),
    ("1998-12-31T23:59:60Z", True), ("1998-12-31T15:59:60-08:00", True),
    ("", False), ("2026-11-28", False), ("2026-11-28 09:00:00Z", False),
    ("2026-11-28T09:00:00", False), ("2026-02-29T00:00:00Z", False),
    ("1998-12-31T22:59:60Z", False), ("2026-11-28T24:00:00Z", False),
    ("2026-11-28T09:00:00+24:00", False), ("2026-11-28T09:00:00.Z", False),
    ("2026-11-28T09:00:00Z\n", False), ("\u0662\u0660\u0662\u0666-11-28T09:00:00Z", False),
]
URIS = [
    ("http://a.com", True), ("HTTP://A.COM", True), ("a:", True), ("mailto:x@y", True),
    ("urn:isbn:1", True), ("http://user@host:80/p?q#f", True), ("http://[::1]/", True),
    ("http://[::ffff:1.2.3.4]/", True), ("http://[v1.x]/", True), ("x:%41", True),
    ("http://a.com:99999", True), ("a://", True),
    ("", False), ("0", False), ("//a.com", False), ("1a:b", False), ("a:b c", False),
    ("http://a.com/%zz", False), ("x:%4", False), ("http://ü.com", False),
    ("http://a.com:port", False), ("http://a.com/#frag#x", False), ("http://[::1/", False),
    ("http://[fe80::1%25eth0]/", False), ("http://a.com/[x]", False), ("http://a.com\n", False),
]


@pytest.mark.parametrize(("value", "valid"), DATE_TIMES)
def test_date_time(value, valid):
    assert is_date_time(value) is valid
    assert RS_DATE_TIME.is_valid(value) is valid


@pytest.mark.parametrize(("value", "valid"), URIS)
def test_uri(value, valid):
    assert is_uri(value) is valid
    assert RS_URI.is_valid(value) is valid


def test_a_compiled_schema_enforces_them():
    validator = compile_schema({"type": "object", "properties": {
        "at": {"type": "string", "format": "date-time"},
        "url": {"type": ["string", "integer"], "format": "uri"}}})
    assert schema_errors(validator, {"at": "2026-11-28T09:00:00Z", "url": "https://a.io/x"}) == []
    assert schema_errors(validator, {"url": 7}) == []  # a format speaks of strings only
    errors = schema_errors(validator, {"at": "", "url": "not a uri"})
    assert [e["path"] for e in errors] == ["at", "url"]


_DT_PIECES = st.sampled_from([*"0123456789-:T tzZ+.", "60", "59", "23", "29", "02"])
_URI_PIECES = st.sampled_from([*"aZ09:/?#[]@!$&'()*+,;=-._~%vV \\\"<>{}|^`ü", "%41", "%zz",
                               "::1", "//", "[::1]", "[v1.x]", "http://", "1.2.3.4"])


@AGREE
@given(st.one_of(
    st.datetimes().map(lambda d: d.isoformat() + "Z"),
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.lists(_DT_PIECES, max_size=25).map("".join),
    st.tuples(st.integers(0, 9999), st.integers(0, 13), st.integers(0, 32), st.integers(0, 24),
              st.integers(0, 60), st.integers(0, 61),
              st.sampled_from(["Z", "z", "+00:00", "-08:00", "+23:59", "+24:00", "-00:60"]))
    .map(lambda t: "{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}{}".format(*t))))
def test_date_time_agrees_with_jsonschema_rs(value):
    assert is_date_time(value) == RS_DATE_TIME.is_valid(value), value


@AGREE
@given(st.one_of(
    urls(), st.text(max_size=20), st.lists(_URI_PIECES, max_size=20).map("".join),
    st.tuples(urls(), st.lists(_URI_PIECES, max_size=4).map("".join), st.integers(0, 30))
    .map(lambda t: t[0][:t[2]] + t[1] + t[0][t[2]:])))
def test_uri_agrees_with_jsonschema_rs(value):
    assert is_uri(value) == RS_URI.is_valid(value), value
