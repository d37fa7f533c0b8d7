"""The not-blank rule reads whitespace as the schema's pattern does (ECMA 262's `\\s`)."""

from __future__ import annotations

import jsonschema_rs  # ECMA 262 patterns, as schemathesis and JSON Schema read them
import pytest
from django.core.exceptions import ValidationError

from domain.common.openapi import NOT_BLANK

SCHEMA = {"type": "string", "pattern": NOT_BLANK.regex.pattern}


@pytest.mark.parametrize("value", ["a", " a ", "\x85", "\x1c", "\u200b"])
def test_what_the_schema_admits_the_server_admits(value):
    assert jsonschema_rs.is_valid(SCHEMA, value)
    NOT_BLANK(value)  # and the server takes it too


@pytest.mark.parametrize("value", ["", " ", "\t\n", "\u00a0\u3000\ufeff", "\u2028 \u2029"])
def test_what_the_schema_refuses_the_server_refuses(value):
    assert not jsonschema_rs.is_valid(SCHEMA, value)
    with pytest.raises(ValidationError):
        NOT_BLANK(value)
