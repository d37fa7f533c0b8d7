from typing import Any, Protocol

import orjson
from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser

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


# How much of a refused body is read (and dropped) before the 413, in all, as a multiple of
# the limit (see discard_body). Twice the limit: a client that overshot by up to the limit
# again still reads its 413, and draining costs the server no more reading than accepting one
# body at the limit would; a client sending far more is not worth a thread for longer.
DRAIN_FACTOR = 2
_DRAIN_CHUNK = 64 * 1024


def declared_length(meta: dict) -> int | None:
    """The request's Content-Length, or None when it is absent or not a number."""
    try:
        return int(meta.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None


class Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


def discard_body(stream: Readable, *, read: int, bound: int, declared: int | None) -> bool:
    """Read and drop what is left of a refused request body, until `bound` bytes in all.

    Why: an answer sent while the client is still sending is followed by the server closing
    the socket with unread bytes in it, which the kernel turns into a TCP reset. The client
    then fails on its next write (broken pipe, connection reset) and never reads the answer.
    gunicorn itself drains only 64 KiB of an unread body before it closes. Reading the rest,
    up to a bound, lets an ordinary client that overshot the limit finish sending and read
    the 413 on a connection that stays usable. Past the bound (or when Content-Length says
    the body goes past it) the connection is left to close: reading on would let one client
    hold a thread for as long as it cares to send.

    No `Connection: close` is sent for that case: PEP 3333 forbids hop-by-hop headers from the
    application (wsgiref, under runserver, fails the response on one) and gunicorn drops it.
    gunicorn closes such a connection by itself once its own 64 KiB drain falls short.

    Memory stays at one chunk: nothing read here is kept. `read` is what was read already.
    True when the body ended within the bound (nothing is left unread).
    """
    if declared is not None and declared > bound:
        return False
    try:
        while read < bound:
            chunk = stream.read(min(_DRAIN_CHUNK, bound - read))
            if not chunk:
                return True
            read += len(chunk)
        return declared == read
    except OSError:  # the client went away mid-body: nothing is left to protect
        return False


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
