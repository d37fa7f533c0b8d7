"""A real HTTP receiver for webhook tests: it listens on 127.0.0.1 (or on every address, for
a test that must see a request to another loopback address arrive), verifies every request's
Standard-Webhooks signature with the `standardwebhooks` library's verifier (against each
secret it is told), records what arrived, and answers what a test scripts: a status (with
headers such as Retry-After), a sequence of them (500 then 200), or a hang past the client's
read timeout.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.time()
    verified_with: list[str]  # the secrets whose signature verified

    @property
    def message_id(self) -> str:
        return self.headers.get("webhook-id", "")

    @property
    def json(self) -> dict:
        return json.loads(self.body)

    @property
    def signatures(self) -> list[str]:
        return self.headers.get("webhook-signature", "").split()


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    delay: float = 0.0  # seconds before answering (a hang, with a delay past the timeout)


class Receiver:
    def __init__(self, bind: str = "127.0.0.1") -> None:
        """`bind="0.0.0.0"` listens on every address: 127.0.0.0/8 is all loopback on Linux,
        so a request a guard should have stopped (to 127.0.0.2, say) would arrive here."""
        self.received: list[Received] = []
        self.secrets: list[str] = []
        self._script: dict[str, list[Answer]] = {}
        self._default = Answer()
        self._lock = threading.Lock()
        self.on_request: Callable[[Received], None] | None = None
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                item = Received(path=self.path, headers=headers, body=body, at=time.time(),
                                verified_with=receiver._verify(body, headers))
                with receiver._lock:
                    receiver.received.append(item)
                    answer = receiver._next(self.path)
                if receiver.on_request is not None:
                    receiver.on_request(item)
                if answer.delay:
                    time.sleep(answer.delay)
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)
                except OSError:
                    pass  # the client gave up (a timeout test)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer((bind, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        # A short poll: shutdown() waits for the loop to notice, 0.5 s by default, per test.
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def trust(self, *secrets: str) -> None:
        """Verify with these secrets too (a receiver holding old and new during a rotation)."""
        self.secrets.extend(secrets)

    def script(self, path: str, answers: Iterable[Answer | int]) -> None:
        """Answer requests to `path` with these, in turn; the last one repeats."""
        self._script[path] = [a if isinstance(a, Answer) else Answer(a) for a in answers]

    def _next(self, path: str) -> Answer:
        answers = self._script.get(path)
        if not answers:
            return self._default
        return answers.pop(0) if len(answers) > 1 else answers[0]

    def _verify(self, body: bytes, headers: dict[str, str]) -> list[str]:
        ok = []
        for secret in self.secrets:
            try:
                Webhook(secret).verify(body, headers)
            except WebhookVerificationError:
                continue
            ok.append(secret)
        return ok

    def at(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path == path]
