import json
from typing import Any

import orjson
from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser

from domain.common.bodies import DRAIN_FACTOR, declared_length, discard_body
from domain.common.errors import RequestTooLarge, ValidationFailed


def json_depth(value: Any) -> int:
    """Nesting depth of objects/arrays (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            deepest = max(deepest, depth)
            continue
        deepest = max(deepest, depth + 1)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _has_nul(value: Any) -> bool:
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if "\x00" in node:
                return True
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


# What orjson keeps as an int: a signed or an unsigned 64-bit integer. It turns a wider integer
# into a float (rounded: 2**64 + 1 is stored as 1.8446744073709552e+19), and a float past a
# double into a parse error.
INT_MIN, INT_MAX = -(2**63), 2**64 - 1
# Every integer of at most 18 digits fits; 2**63 has 19. A body with no run of 19 digits holds
# no integer orjson rounded, so only such a body is looked at again.
_LONG_DIGIT_RUN = b"0" * 19
_DIGITS_AS_ZERO = bytes(48 if 48 <= byte <= 57 else 32 for byte in range(256))


def _unsupported_number() -> ValidationFailed:
    return ValidationFailed(
        f"JSON integers must lie between {INT_MIN} and {INT_MAX} (64 bits), and other numbers "
        "within a double; send a wider number as a string.",
        # The bounds as strings too: a reader that loses wide integers would misread them.
        code="unsupported_number", details={"min": str(INT_MIN), "max": str(INT_MAX)})


def _check_int_literal(literal: str) -> int:
    """json's parse_int hook: an integer literal orjson could not have kept exactly. The
    length is checked first: int() of thousands of digits is slow (and refused past 4,300)."""
    digits = len(literal) - literal.startswith("-")
    if digits >= 19 and (digits > 20 or not INT_MIN <= int(literal) <= INT_MAX):
        raise _unsupported_number()
    return 0  # the value is not used: only the literal is checked


def _refuse_wide_ints(raw: bytes) -> None:
    """422 if the body holds an integer literal beyond 64 bits. A cheap byte scan first (a run
    of 19 digits anywhere, strings included: a translate and a find, linear whatever the
    bytes, about a tenth of the parse); only then the body's number tokens themselves, through
    json's parse_int hook, which sees integer literals and nothing inside strings."""
    if raw.translate(_DIGITS_AS_ZERO).find(_LONG_DIGIT_RUN) >= 0:
        json.loads(raw, parse_int=_check_int_literal)


class LimitedJSONParser(BaseParser):
    """JSON parser with hard limits on size, depth and content, backed by orjson.

    - Size: DRF reads the WSGI stream itself, bypassing Django's DATA_UPLOAD_MAX_MEMORY_SIZE,
      so the limit lives here: read at most limit+1 bytes, 413 past that, whatever the
      Content-Length claims. A view may raise its own limit with `max_body_bytes`. Before
      the 413, the rest of the body is read and dropped up to DRAIN_FACTOR x the limit in
      all (see discard_body), so the client can finish sending and read the answer.
    - Depth: orjson parses up to 1024 levels, but DRF's JSONField re-encodes values with the
      recursive json module (RecursionError near 1000), so bodies nest at most
      API_MAX_JSON_DEPTH levels (422).
    - NUL: PostgreSQL's jsonb cannot store U+0000; refuse it here (422), not at INSERT (500).
    - Numbers: orjson keeps integers of 64 bits and parses wider ones as floats, so 2**64 + 1
      would be stored as 1.8446744073709552e+19, silently another number; a number past a
      double is a parse error, not a malformed body. Both are 422 unsupported_number (orjson
      cannot write such an integer either, and most JSON readers lose it).
    The checks look past the parse only when cheap byte scans say they might fail.
    """

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        view = (parser_context or {}).get("view")
        limit = getattr(view, "max_body_bytes", None) or settings.API_MAX_BODY_BYTES
        if stream is None:
            raise ParseError("Request body is empty.")
        raw = stream.read(limit + 1)
        if len(raw) > limit:
            received = len(raw)
            del raw  # not kept while the rest is drained
            request = (parser_context or {}).get("request")
            declared = declared_length(request.META) if request is not None else None
            discard_body(stream, read=received, bound=DRAIN_FACTOR * limit, declared=declared)
            raise RequestTooLarge(f"Request body is larger than {limit} bytes.")
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            if str(exc).startswith("number is infinity"):  # well-formed, but past a double
                raise _unsupported_number() from exc
            raise ParseError(f"Malformed JSON: {exc}") from exc
        max_depth = settings.API_MAX_JSON_DEPTH
        if raw.count(b"[") + raw.count(b"{") > max_depth:
            depth = json_depth(data)
            if depth > max_depth:
                raise ValidationFailed(
                    f"The JSON body nests {depth} levels deep; the limit is {max_depth}.",
                    code="payload_too_deep", details={"limit": max_depth, "depth": depth})
        if b"\\u0000" in raw and _has_nul(data):
            raise ValidationFailed("Strings may not contain the NUL character (U+0000).",
                                   code="unsupported_character")
        _refuse_wide_ints(raw)  # after the depth check: json.loads recurses once per level
        return data
