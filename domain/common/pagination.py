from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination

from domain.common.errors import ValidationFailed


class CreatedAtCursorPagination(CursorPagination):
    """Stable pages under concurrent inserts: a cursor, not an offset."""

    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 500

    def paginate_queryset(self, queryset, request, view=None):
        # DRF answers an undecodable cursor with 404 and lets a forged position reach the
        # database filter (a 500). Both are the caller's mistake: one 422.
        try:
            return super().paginate_queryset(queryset, request, view)
        except (NotFound, DjangoValidationError, ValueError) as exc:
            cursor = request.query_params.get(self.cursor_query_param)
            raise ValidationFailed("The cursor is not valid; start again without it.",
                                   code="invalid_cursor", details={"cursor": cursor}) from exc
