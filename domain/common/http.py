"""How an HTTP answer from the outside world maps onto retry decisions.

No retry on 3xx/4xx (the request is wrong and will stay wrong), except 408 and 429 which say
"later"; 5xx is the other side's trouble and retries. `Retry-After` (seconds or an HTTP date)
is honoured by the retry policy through TransientError.retry_after.
"""

from __future__ import annotations

from collections.abc import Mapping
from email.utils import parsedate_to_datetime

from django.utils import timezone

from domain.common.errors import PermanentError, TransientError

RETRY_LATER = {408, 425, 429}


def retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max((when - timezone.now()).total_seconds(), 0.0)


def raise_for_http_status(status: int, headers: Mapping[str, str] | None = None,
                          *, what: str = "request") -> None:
    """Return on 2xx; raise TransientError or PermanentError otherwise."""
    if 200 <= status < 300:
        return
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    if status in RETRY_LATER or status >= 500:
        raise TransientError(f"{what} answered {status}",
                             retry_after=retry_after_seconds(headers.get("retry-after")))
    raise PermanentError(f"{what} answered {status}")
