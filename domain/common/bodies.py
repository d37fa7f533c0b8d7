"""Request bodies that are refused: read and dropped, within a bound, before the answer.

Kept apart from the parser because both the parser (a 413) and the error handlers (a 401, 403,
415 or 429 answered before any parser ran; domain/common/errors.py, api_errors.py) drain.
"""

from __future__ import annotations

from typing import Protocol

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


def discard_unread_body(request, *, limit: int) -> None:
    """Drop a request body nothing read before an error was answered (a 401, 403, 415 or 429
    comes before any parser), up to DRAIN_FACTOR x `limit` in all; see discard_body for why.
    `request` is Django's HttpRequest: its `_read_started` flag is set by the first read, so a
    body a parser read (or drained before its 413) is left alone."""
    if getattr(request, "_read_started", False):
        return
    declared = declared_length(request.META)
    if declared:
        discard_body(request, read=0, bound=DRAIN_FACTOR * limit, declared=declared)
