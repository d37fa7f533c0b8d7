"""The API keys a process authenticated recently (domain/access/auth.py reads it; the model
and the admin forget what they change)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from django.conf import settings

if TYPE_CHECKING:
    from domain.access.models import ApiKey


class _KeyCache:
    """The API keys this process authenticated recently, by hash, for API_KEY_CACHE_SECONDS.

    Why: the key lookup was a SELECT on every request (13% of a single publish). A key that
    is revoked, expires, loses a scope or is deleted stops working here within the TTL (1 s by
    default), in every process, with no message to send: each entry is simply too old then.
    In the process that made the change it stops at once: ApiKey.save() and delete(), and the
    admin's bulk revoke, forget the key here. Expiry is
    checked on every request against the clock, cached or not. Unknown keys are not cached
    (each one costs its SELECT, as before), and the cache holds at most MAX_ENTRIES keys.
    """

    MAX_ENTRIES = 10_000

    def __init__(self) -> None:
        self._entries: dict[str, tuple[ApiKey, float]] = {}

    def get(self, key_hash: str) -> ApiKey | None:
        entry = self._entries.get(key_hash)
        if entry is None or time.monotonic() - entry[1] >= settings.API_KEY_CACHE_SECONDS:
            return None
        return entry[0]

    def put(self, key: ApiKey) -> None:
        if settings.API_KEY_CACHE_SECONDS <= 0:
            return
        if len(self._entries) >= self.MAX_ENTRIES:
            self._entries.clear()
        self._entries[key.key_hash] = (key, time.monotonic())

    def forget(self, key_hash: str) -> None:
        self._entries.pop(key_hash, None)

    def clear(self) -> None:
        self._entries.clear()


key_cache = _KeyCache()
