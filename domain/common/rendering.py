"""Rendering helpers the API modules share: timestamps and absolute URLs, as DRF would write
them, without its per-field machinery (see domain/jobs/apis.py, JobOutputSerializer)."""

from __future__ import annotations

from datetime import UTC, datetime

from django.urls import get_script_prefix, reverse

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
    """The object's absolute URL. reverse() and build_absolute_uri() run once per process for
    each URL name, scheme, host and script prefix (they were 10% of a single publish's CPU,
    two URLs per answer), and the id is put into that template. The hosts are those
    ALLOWED_HOSTS let through; the cache holds at most _MAX_TEMPLATES templates."""
    # Per request first: a 500-event answer renders 1,000 URLs, and the process-wide key
    # (the Host header checked against ALLOWED_HOSTS) is then made once per name, not per URL.
    mine = request.__dict__.setdefault("_url_templates", {})
    template = mine.get(name)
    if template is None:
        key = (name, request.scheme, request.get_host(), get_script_prefix())
        template = _templates.get(key)
        if template is None:
            if len(_templates) >= _MAX_TEMPLATES:
                _templates.clear()
            template = _templates[key] = request.build_absolute_uri(
                reverse(name, args=[_URL_MARK]))
        mine[name] = template
    return template.replace(_URL_MARK, str(pk))


_templates: dict[tuple, str] = {}
_MAX_TEMPLATES = 1000


def span(seconds: float) -> str:
    """A length of time in words for a sentence: "45 seconds", "12 minutes", "3.5 hours",
    "2.0 days" (the unit that keeps the number readable)."""
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.1f} hours"
    if seconds >= 120:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds:.0f} seconds"
