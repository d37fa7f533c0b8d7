"""OpenAPI pieces shared by the API modules."""

from __future__ import annotations

import re

from django.core.validators import RegexValidator
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

ERROR_RESPONSE = inline_serializer(
    "Error",
    {"error": inline_serializer("ErrorBody", {
        "code": serializers.CharField(), "message": serializers.CharField(),
        "details": serializers.DictField()})},
)


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    """The error shape under each status code; 429 (per-key throttling) and 503 (the database
    does not answer; with Retry-After) are always possible."""
    return {code: OpenApiResponse(ERROR_RESPONSE) for code in (*codes, 429, 503)}


# A filter or a name is taken as sent (`trim_whitespace=False`): DRF's trimming made the
# schema's minLength and maxLength count other characters than the server did (" " was
# refused as blank, 64 letters between spaces accepted past maxLength 64). What is refused
# instead, a string of spaces only, the schema says with this pattern (drf-spectacular writes
# a RegexValidator's as `pattern`). Whitespace is spelled out as JSON Schema's patterns (ECMA
# 262) define `\s`, not as Python's `\S`, which also counts U+001C-U+001F and U+0085 as space:
# "\x85" was refused here while a client validating against the schema would send it.
ECMA_WHITESPACE = "\t\n\x0b\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
NOT_BLANK = RegexValidator(f"[^{ECMA_WHITESPACE}]", "This field may not be blank.")
TAKEN_AS_SENT = {"trim_whitespace": False, "validators": [NOT_BLANK]}


def one_of_components(auto_schema, branches: dict[str, dict]) -> dict:
    """`oneOf` the given object schemas, each registered as a component of its own (named by
    the keys). Components, not inline branches: a one-value enum per branch would otherwise
    share one generated enum name, and the last branch's value would stand for all of them.
    The fields every branch requires are required at the top too: drf-spectacular reads them
    there to mark the request body required."""
    refs = []
    for name, schema in branches.items():
        component = ResolvedComponent(name=name, type=ResolvedComponent.SCHEMA, object=name,
                                      schema=schema)
        auto_schema.registry.register_on_missing(component)
        refs.append(component.ref)
    required = set.intersection(*(set(b.get("required", ())) for b in branches.values()))
    # No "type": "object" beside them: drf-spectacular drops an object component that has no
    # properties of its own.
    return {"required": sorted(required), "oneOf": refs}


def component_name(registered_name: str, suffix: str) -> str:
    """"cache_invalidation", "JobInput" -> "CacheInvalidationJobInput"."""
    parts = re.split(r"[^0-9A-Za-z]+", registered_name)
    return "".join(part[:1].upper() + part[1:] for part in parts) + suffix


def cursor_page(name: str, item: serializers.Serializer, **before) -> serializers.Serializer:
    """The schema of a CreatedAtCursorPagination page: `next`, `previous` (links, null at an
    end) and `results` (`item`, many=True); `before`: fields the page carries ahead of them
    (an inbox's `unread_count`)."""
    return inline_serializer(name, {**before,
                                    "next": serializers.URLField(allow_null=True),
                                    "previous": serializers.URLField(allow_null=True),
                                    "results": item})
