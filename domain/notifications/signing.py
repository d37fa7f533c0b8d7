"""Standard Webhooks signing (https://www.standardwebhooks.com), with the `standardwebhooks`
library's own signer, so what we send is what its verifier (and every receiver's) checks.

A message is signed once per secret: during a rotation's overlap both the new and the old
secret sign it, space-separated in one `webhook-signature` header, as the specification
allows, and a receiver still holding the old secret keeps verifying.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from functools import lru_cache

import orjson
from standardwebhooks import Webhook


@lru_cache(maxsize=4096)
def _signer(secret: str) -> Webhook:
    # Decoding a secret is base64 work; a worker signs with the same few secrets all day.
    return Webhook(secret)


def message_body(*, type: str, timestamp: datetime, data: dict) -> bytes:
    """The JSON body every receiver gets: `{"type", "timestamp", "data"}`."""
    return orjson.dumps({"type": type, "timestamp": timestamp, "data": data},
                        option=orjson.OPT_UTC_Z)


def signed_headers(*, message_id: str, sent_at: datetime, body: bytes,
                   secrets: Iterable[str]) -> dict[str, str]:
    """The three Standard-Webhooks headers for one send of `body` at `sent_at`."""
    text = body.decode()
    signatures = " ".join(_signer(s).sign(message_id, sent_at, text) for s in secrets if s)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": signatures,
        "content-type": "application/json",
        "user-agent": "Conveyor-Webhooks/1",
    }
