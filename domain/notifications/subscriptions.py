"""Which event types have a webhook endpoint subscribed: asked by every publish.

The events app asks its subscribers for the extra handlers an event gets
(domain/events/registry.py, `register_subscriber`). An event of a type some endpoint
subscribes to gets one `webhook_fanout` job; any other event gets nothing, so publishing
costs nothing more when no endpoint listens. The answer is read from the database once per
WEBHOOK_SUBSCRIPTIONS_CACHE_SECONDS per process, and forgotten at once in the process that
changes an endpoint: an endpoint created elsewhere starts receiving within that time.
Disabled endpoints count: their deliveries are made and parked, so re-enabling one resumes
what it missed.
"""

from __future__ import annotations

import threading
import time

from django.conf import settings

from domain.events.registry import Handler
from domain.notifications.kinds import WEBHOOK_FANOUT
from domain.notifications.models import WebhookEndpoint

FANOUT_HANDLER = Handler(name="notifications.webhooks", kind=WEBHOOK_FANOUT.name,
                         params=lambda payload: {})


class _Subscriptions:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._read_at = float("-inf")
        self._every_type = False
        self._types: frozenset[str] = frozenset()

    def forget(self) -> None:
        with self._lock:
            self._read_at = float("-inf")

    def subscribed(self, event_type: str) -> bool:
        now = time.monotonic()
        with self._lock:
            if now - self._read_at >= settings.WEBHOOK_SUBSCRIPTIONS_CACHE_SECONDS:
                every, types = False, set()
                for subscribed in WebhookEndpoint.objects.values_list("event_types", flat=True):
                    if not subscribed:
                        every = True
                        break
                    types.update(subscribed)
                self._every_type, self._types, self._read_at = every, frozenset(types), now
            return self._every_type or event_type in self._types


subscriptions = _Subscriptions()


def webhook_handlers(event_type: str) -> tuple[Handler, ...]:
    """The subscriber the events app asks at each publish."""
    return (FANOUT_HANDLER,) if subscriptions.subscribed(event_type) else ()
