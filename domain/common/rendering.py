"""Rendering helpers the API modules share: timestamps and absolute URLs, as DRF would write
them, without its per-field machinery (see domain/jobs/apis.py, JobOutputSerializer)."""

from __future__ import annotations

from datetime import UTC, datetime

from django.urls import reverse

_URL_MARK = "00000000-0000-4000-8000-00000000c0de"


def iso(value: datetime | None) -> str | None:
    """DRF's DateTimeField output under USE_TZ with TIME_ZONE = "UTC" (the API never activates
    another zone): ISO 8601 in UTC, "Z". Converted directly rather than with
    `timezone.localtime`, whose lookup of the current zone was half of this function's time in
    a 500-event answer."""
    if value is None:
        return None
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC) if value.tzinfo is not None else value
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def absolute_url(request, name: str, pk) -> str:
    """The object's absolute URL. reverse() runs once per request and name (one batch renders
    a thousand URLs); the id is put into the reversed template."""
    cache = request.__dict__.setdefault("_url_templates", {})
    template = cache.get(name)
    if template is None:
        template = cache[name] = request.build_absolute_uri(reverse(name, args=[_URL_MARK]))
    return template.replace(_URL_MARK, str(pk))
