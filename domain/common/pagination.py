import binascii
from base64 import b64decode
from urllib import parse

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework.exceptions import NotFound
from rest_framework.pagination import Cursor, CursorPagination

from domain.common.errors import ValidationFailed

# What DRF's encode_cursor writes: an offset, a direction, a position.
_CURSOR_TOKENS = {"o", "r", "p"}


class CreatedAtCursorPagination(CursorPagination):
    """Stable pages under concurrent inserts: a cursor, not an offset.

    Strict where DRF is lenient, because a lenient answer is a wrong one the caller cannot
    tell from a right one: DRF reads `?limit=-1`, `0` or `abc` as the default size, and a
    cursor that decodes to nothing it knows (`!!!!`, or base64 of any other text) as the first
    page. Here each of those is 422.
    """

    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 500

    def get_page_size(self, request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        try:
            size = int(raw)
        except ValueError:
            size = None
        if size is None or not 1 <= size <= self.max_page_size:
            raise ValidationFailed(
                "The request did not pass validation.",
                details={self.page_size_query_param: [
                    f"Give a whole number from 1 to {self.max_page_size}."]})
        return size

    def decode_cursor(self, request) -> Cursor | None:
        encoded = request.query_params.get(self.cursor_query_param)
        if encoded is None:
            return None
        try:
            text = b64decode(encoded.encode("ascii"), validate=True).decode("ascii")
            tokens = parse.parse_qs(text, keep_blank_values=True, strict_parsing=True)
        except (ValueError, binascii.Error) as exc:  # UnicodeError is a ValueError
            raise self._invalid(encoded) from exc
        if (not tokens or set(tokens) - _CURSOR_TOKENS
                or any(len(values) > 1 for values in tokens.values())):
            raise self._invalid(encoded)
        try:
            offset = int(tokens.get("o", ["0"])[0])
            reverse = tokens.get("r", ["0"])[0]
        except ValueError as exc:
            raise self._invalid(encoded) from exc
        if offset < 0 or reverse not in ("0", "1"):
            raise self._invalid(encoded)
        return Cursor(offset=min(offset, self.offset_cutoff), reverse=reverse == "1",
                      position=tokens.get("p", [None])[0])

    def paginate_queryset(self, queryset, request, view=None):
        # A forged position reaches the database filter (a 500 from Django's ValidationError):
        # the caller's mistake, the same 422 as an undecodable cursor.
        try:
            return super().paginate_queryset(queryset, request, view)
        except (NotFound, DjangoValidationError, ValueError) as exc:
            raise self._invalid(request.query_params.get(self.cursor_query_param)) from exc

    def _invalid(self, cursor: str | None) -> ValidationFailed:
        return ValidationFailed("The cursor is not valid; start again without it.",
                                code="invalid_cursor", details={"cursor": cursor})
