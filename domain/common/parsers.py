import orjson
from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser

from domain.common.errors import RequestTooLarge


class LimitedJSONParser(BaseParser):
    """JSON parser with a hard body-size limit, backed by orjson.

    DRF reads the WSGI stream itself, bypassing Django's DATA_UPLOAD_MAX_MEMORY_SIZE, so the
    limit lives here: read at most limit+1 bytes and refuse with 413 past that, whatever the
    Content-Length claims. A view may raise its own limit with `max_body_bytes`.
    """

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        view = (parser_context or {}).get("view")
        limit = getattr(view, "max_body_bytes", None) or settings.API_MAX_BODY_BYTES
        if stream is None:
            raise ParseError("Request body is empty.")
        raw = stream.read(limit + 1)
        if len(raw) > limit:
            raise RequestTooLarge(f"Request body is larger than {limit} bytes.")
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"Malformed JSON: {exc}") from exc
