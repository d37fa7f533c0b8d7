"""JSON Schema for what the registries declare: event payloads, job params and notification
contexts."""

from __future__ import annotations

import calendar
import ipaddress
import re
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

# --- Formats ---------------------------------------------------------------------------------
# jsonschema checks `date-time` and `uri` only when optional packages are installed
# (rfc3339-validator, rfc3987); without them both passed anything, "" included, while the
# schema (and every client validating against it) said otherwise. These two follow the RFCs'
# grammars, as JSON Schema's test suite and other validators read them, with no package.

_DATE_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?"
    r"(?:[Zz]|([+-])(\d{2}):(\d{2}))", re.ASCII)


def is_date_time(value: Any) -> bool:
    """RFC 3339 section 5.6 `date-time`: calendar dates only, hours 00-23, offsets to 23:59,
    and a leap second (:60) only where it falls at 23:59 UTC."""
    if not isinstance(value, str):
        return True  # a format speaks of strings only
    match = _DATE_TIME.fullmatch(value)
    if match is None:
        return False
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    sign, offset_hour, offset_minute = match.group(7), match.group(8), match.group(9)
    offset = 0 if sign is None else (int(offset_hour) * 60 + int(offset_minute)) * (
        1 if sign == "+" else -1)
    if sign is not None and (int(offset_hour) > 23 or int(offset_minute) > 59):
        return False
    if not (1 <= month <= 12 and 1 <= day <= calendar.monthrange(year or 2000, month)[1]
            and hour <= 23 and minute <= 59 and second <= 60):
        return False
    return second < 60 or (hour * 60 + minute - offset) % 1440 == 23 * 60 + 59


_PCT = r"%[0-9A-Fa-f]{2}"
_PCHAR = rf"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|{_PCT})"
_URI = re.compile(
    r"[A-Za-z][A-Za-z0-9+\-.]*:"                                   # scheme
    r"(?:"
    rf"//(?:(?:[A-Za-z0-9\-._~!$&'()*+,;=:]|{_PCT})*@)?"            # //userinfo@
    rf"(?:\[(?P<literal>[^\]/?#@]*)\]|(?:[A-Za-z0-9\-._~!$&'()*+,;=]|{_PCT})*)"  # host
    r"(?::[0-9]*)?"                                                # :port
    rf"(?:/{_PCHAR}*)*"                                            # path-abempty
    rf"|/(?:{_PCHAR}+(?:/{_PCHAR}*)*)?"                            # path-absolute
    rf"|{_PCHAR}+(?:/{_PCHAR}*)*"                                  # path-rootless
    r"|)"                                                          # path-empty
    rf"(?:\?(?:{_PCHAR}|[/?])*)?"                                 # ?query
    rf"(?:#(?:{_PCHAR}|[/?])*)?", re.ASCII)                        # #fragment
_IP_FUTURE = re.compile(r"[Vv][0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+", re.ASCII)


def is_uri(value: Any) -> bool:
    """RFC 3986 `URI`: a scheme and what may follow it, ASCII only, percent-escapes whole; an
    IP literal is an IPv6 address (no zone) or an IPvFuture."""
    if not isinstance(value, str):
        return True
    match = _URI.fullmatch(value)
    if match is None:
        return False
    literal = match.group("literal")
    if literal is None or _IP_FUTURE.fullmatch(literal):
        return True
    if "%" in literal:  # Python reads "%zone" as a scope id; RFC 3986 has none
        return False
    try:
        ipaddress.IPv6Address(literal)
    except ValueError:
        return False
    return True


FORMAT_CHECKER = FormatChecker()
FORMAT_CHECKER.checkers = {**Draft202012Validator.FORMAT_CHECKER.checkers}
FORMAT_CHECKER.checks("date-time")(is_date_time)
FORMAT_CHECKER.checks("uri")(is_uri)


def compile_schema(schema: dict) -> Draft202012Validator:
    """A validator for `schema`, which must itself be valid (a bad schema fails at import)."""
    Draft202012Validator.check_schema(schema)
    # Draft 2020-12 treats "format" as a note unless a checker is given; enforce it (uuid,
    # date-time, uri, email...) so a schema means what it says.
    return Draft202012Validator(schema, format_checker=FORMAT_CHECKER)


def schema_errors(validator: Draft202012Validator, instance: Any) -> list[dict[str, str]]:
    """The first 20 errors, each with its JSON path, in path order (a stable answer)."""
    return [
        {"path": "/".join(str(p) for p in error.absolute_path) or "/", "message": error.message}
        for error in sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    ][:20]


# Keywords whose value is one schema, a list of schemas, or a mapping of names to schemas.
_ONE_SCHEMA = ("items", "not", "additionalProperties", "contains", "propertyNames")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs")


def openapi_schema(schema: Any) -> Any:
    """A registry's JSON Schema (draft 2020-12: job params, event payloads) in the OpenAPI 3.0
    dialect /api/schema is written in: a type list with "null" becomes `nullable`, `const` a
    one-value `enum`. The rest of what the registries use is common to both."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    for key in _ONE_SCHEMA:
        if key in out:
            out[key] = openapi_schema(out[key])
    for key in _SCHEMA_LISTS:
        if key in out:
            out[key] = [openapi_schema(item) for item in out[key]]
    for key in _SCHEMA_MAPS:
        if key in out:
            out[key] = {name: openapi_schema(item) for name, item in out[key].items()}
    if "const" in out:
        out["enum"] = [out.pop("const")]
    types = out.get("type")
    if isinstance(types, list):
        kept = [t for t in types if t != "null"]
        if len(kept) < len(types):
            out["nullable"] = True
        if len(kept) == 1:
            out["type"] = kept[0]
        else:
            del out["type"]
            out["anyOf"] = [*out.get("anyOf", []), *({"type": t} for t in kept)]
    return out
