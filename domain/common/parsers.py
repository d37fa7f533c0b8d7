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
    Both checks look at the parsed value only when cheap byte counts say they might fail.
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
        return data
