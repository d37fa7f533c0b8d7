"""Django's SMTP email backend, keeping the server's reply to each message, and writing a
notification's email without the email package's generator.

Django's backend sends with `smtplib.SMTP.sendmail`, which drops the server's answer to DATA
("250 2.0.0 Ok: queued as 4F2A…"): the one fact that says a message was accepted, and under
which id the server knows it. Each email delivery's attempt row keeps it, so this subclass
wraps the connection's `data` call and remembers the last reply.

**Writing the message.** Django turns an EmailMessage into bytes by building the email
package's MIME objects (`message()`) and flattening them (`as_bytes()`), and parses the
envelope's addresses with the RFC 5322 header parser (`sanitize_address`). For a
notification (a text part and an HTML part, ASCII addresses) that was about 1.7 ms of a
worker's 2.4 ms of CPU per email (py-spy; the generator compiles a regular expression for
every boundary it makes, and folds every header through `email.header.Header`). The shape
every notification email has is written here directly (`message_bytes`): the same headers
in the same order, each value through Django's own `forbid_multi_line_headers` (so a newline
is still refused, and a non-ASCII value encoded as Django encodes it), parts in 7bit or 8bit
UTF-8 as Django sends them, CRLF line ends. Anything else (attachments, Cc, Reply-To, a body
line over 998 bytes, which Django sends quoted-printable, another charset, a subclass that
builds its own message) goes Django's way, unchanged.
tests/domain/notifications/test_email_backend.py holds the two to the same parsed message.

EMAIL_URL's smtp, smtp+tls and smtps schemes select this backend (config/settings/base.py);
the console and in-memory backends are Django's own.
"""

from __future__ import annotations

import functools
import re
import secrets
import smtplib
from email.header import Header
from email.utils import formatdate, make_msgid

from django.conf import settings
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.core.mail.backends import smtp
from django.core.mail.message import (
    RFC5322_EMAIL_LINE_LENGTH_LIMIT,
    forbid_multi_line_headers,
    sanitize_address,
)
from django.core.mail.utils import DNS_NAME

# An address Django's sanitize_address gives back unchanged: an ASCII dot-atom local part and
# an ASCII domain of non-empty labels (no display name, nothing to quote or to IDNA-encode).
_PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
    r"[A-Za-z0-9])?)*\Z")
_NEWLINES = re.compile(r"\r\n|\r|\n")
# Headers Django's message() writes from the message's own fields: set by extra headers, the
# message goes Django's way.
_OWN_HEADERS = frozenset({"from", "to", "cc", "reply-to", "subject", "content-type",
                          "mime-version", "content-transfer-encoding"})


def _header(name: str, value: str, encoding: str) -> bytes | None:
    """`Name: value` and its line end, the value as Django's SafeMIME classes set it (a
    newline refused with BadHeaderError, non-ASCII encoded, an ASCII subject through
    `Header.encode`); None if a line would be longer than SMTP allows (Django's generator
    would fold it)."""
    if value.isascii() and "\n" not in value and "\r" not in value:
        # What forbid_multi_line_headers does with an ASCII value, the subject's encoding
        # remembered (a notification's emails share their subject).
        if name.lower() == "subject":
            value = _ascii_subject(value)
    else:
        _, value = forbid_multi_line_headers(name, value, encoding)
    line = f"{name}: {value}".replace("\n", "\r\n").encode("ascii", "surrogateescape") + b"\r\n"
    if len(line) > RFC5322_EMAIL_LINE_LENGTH_LIMIT and max(
            len(part) for part in line.split(b"\r\n")) > RFC5322_EMAIL_LINE_LENGTH_LIMIT:
        return None
    return line


@functools.lru_cache(maxsize=256)
def _ascii_subject(value: str) -> str:
    return Header(value).encode()


def _part(subtype: str, text: str) -> tuple[bytes, bytes] | None:
    """A text part's headers and body as Django writes them for UTF-8 (7bit if ASCII, else
    8bit); None for a body Django would send quoted-printable (a line over 998 bytes) or
    cannot encode."""
    try:
        body = _NEWLINES.sub("\r\n", text).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: Django's way, and its error
        return None
    if len(body) > RFC5322_EMAIL_LINE_LENGTH_LIMIT and any(
            len(line) > RFC5322_EMAIL_LINE_LENGTH_LIMIT for line in body.split(b"\r\n")):
        return None
    encoding = b"7bit" if body.isascii() else b"8bit"
    head = (b'Content-Type: text/' + subtype.encode("ascii") + b'; charset="utf-8"\r\n'
            b"MIME-Version: 1.0\r\nContent-Transfer-Encoding: " + encoding + b"\r\n")
    return head, body


def message_bytes(message: EmailMessage) -> bytes | None:
    """`message.message().as_bytes(linesep="\\r\\n")`, written directly, for a plain-text
    email with at most one HTML alternative in UTF-8 and no attachments, Cc or Reply-To; None
    for any other message (the caller then uses Django's own)."""
    if type(message) not in (EmailMessage, EmailMultiAlternatives):
        return None
    encoding = message.encoding or settings.DEFAULT_CHARSET
    alternatives = list(getattr(message, "alternatives", None) or [])
    if (str(encoding).lower().replace("_", "-") != "utf-8" or message.attachments
            or message.cc or message.reply_to or message.content_subtype != "plain"
            or not isinstance(message.body, str) or not message.body
            or len(alternatives) > 1
            or any(mimetype != "text/html" or not isinstance(content, str)
                   for content, mimetype in alternatives)):
        return None
    names = {name.lower() for name in message.extra_headers}
    if names & _OWN_HEADERS:
        return None
    text = _part("plain", message.body)
    html = _part("html", alternatives[0][0]) if alternatives else None
    if text is None or (alternatives and html is None):
        return None
    headers = [("Subject", message.subject), ("From", message.from_email)]
    if message.to:
        headers.append(("To", ", ".join(str(v) for v in message.to)))
    if "date" not in names:
        headers.append(("Date", formatdate(localtime=settings.EMAIL_USE_LOCALTIME)))
    if "message-id" not in names:
        headers.append(("Message-ID", make_msgid(domain=DNS_NAME)))
    headers.extend((name, value) for name, value in message.extra_headers.items())
    lines = []
    for name, value in headers:
        line = _header(name, str(value), encoding)
        if line is None:
            return None
        lines.append(line)
    if html is None:
        head, body = text
        return head + b"".join(lines) + b"\r\n" + body
    boundary = _boundary(text[1], html[1])
    return (b'Content-Type: multipart/alternative; boundary="' + boundary + b'"\r\n'
            b"MIME-Version: 1.0\r\n" + b"".join(lines) + b"\r\n"
            b"--" + boundary + b"\r\n" + text[0] + b"\r\n" + text[1]
            + b"\r\n--" + boundary + b"\r\n" + html[0] + b"\r\n" + html[1]
            + b"\r\n--" + boundary + b"--\r\n")


def _boundary(*bodies: bytes) -> bytes:
    """A random boundary (128 bits) that no part contains, as the email package checks."""
    while True:
        boundary = b"===============" + secrets.token_hex(16).encode("ascii") + b"=="
        if not any(b"--" + boundary in body for body in bodies):
            return boundary


class EmailBackend(smtp.EmailBackend):
    last_reply: tuple[int, bytes] | None = None

    def open(self) -> bool | None:
        created = super().open()
        connection = self.connection
        if connection is not None and not getattr(connection, "_keeps_replies", False):
            data = connection.data

            def data_keeping_reply(msg):
                reply = data(msg)
                self.last_reply = reply
                return reply

            connection.data = data_keeping_reply
            connection._keeps_replies = True
        return created

    def _send(self, email_message: EmailMessage) -> bool:
        """Django's `_send`, with the message written by `message_bytes` when it can be, and
        plain addresses taken as they are (sanitize_address returns them unchanged)."""
        raw = message_bytes(email_message)
        if raw is None or not email_message.recipients():
            return super()._send(email_message)
        encoding = email_message.encoding or settings.DEFAULT_CHARSET
        from_email = self._sender(email_message.from_email, encoding)
        recipients = [addr if isinstance(addr, str) and _PLAIN_ADDRESS.match(addr)
                      else sanitize_address(addr, encoding)
                      for addr in email_message.recipients()]
        try:
            self.connection.sendmail(from_email, recipients, raw)
        except smtplib.SMTPException:
            if not self.fail_silently:
                raise
            return False
        return True

    def _sender(self, from_email, encoding: str) -> str:
        """sanitize_address of the sender, once per backend (every message of a batch has the
        same one)."""
        cache = self.__dict__.setdefault("_senders", {})
        key = (from_email, encoding) if isinstance(from_email, str) else None
        if key is None:
            return sanitize_address(from_email, encoding)
        if key not in cache:
            cache[key] = sanitize_address(from_email, encoding)
        return cache[key]
