"""The project's SMTP backend writes a notification's email itself (message_bytes) and must
write what Django's own message().as_bytes() writes: parsed, the two are the same message
(headers in the same order with the same values, the same parts with the same transfer
encodings and content). Anything outside that shape goes Django's way. The real SMTP server of
the tests receives it, and the backend keeps the server's reply to DATA."""

from __future__ import annotations

import email
import email.policy
import smtplib

import pytest
from django.core.mail import EmailMessage, EmailMultiAlternatives, get_connection
from django.core.mail.message import BadHeaderError, sanitize_address

from domain.notifications.email_backend import _PLAIN_ADDRESS, EmailBackend, message_bytes

HTML = "<!doctype html>\n<html><body>\n<h1>Hello</h1>\n<p>Dear Ada,</p>\n</body></html>\n"


def _parsed(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def _shape(raw: bytes) -> dict:
    """What a reader of the message sees: the top headers (order, names, values with their
    folding whitespace collapsed; the multipart boundary left out), and each part's headers
    and decoded content. (Django's generator folds long values right after the colon, which
    a parser reads as a leading space.)"""
    message = _parsed(raw)
    headers = [(name, " ".join(str(value).split())) for name, value in message.items()]
    headers = [(n, v.split(";")[0] if n == "Content-Type" else v) for n, v in headers]
    parts = [message] if not message.is_multipart() else list(message.iter_parts())
    return {"headers": headers,
            "parts": [([(n, str(v)) for n, v in part.items()], part.get_content())
                      for part in parts]}


def _django_bytes(message: EmailMessage) -> bytes:
    return message.message().as_bytes(linesep="\r\n")


def _notification(**overrides) -> EmailMultiAlternatives:
    fields = {"subject": "New sign-in to your account", "body": "Hello Ada,\n\nSomeone signed "
              "in.\n", "from_email": "Conveyor <notifications@example.com>",
              "to": ["ada@example.com"],
              "headers": {"Message-ID": "<0f7e6a1c@conveyor.localhost>",
                          "Date": "Sat, 28 Nov 2026 09:00:00 -0000",
                          "X-Conveyor-Delivery": "0f7e6a1c", "X-Conveyor-Template": "t"}}
    html = overrides.pop("html", HTML)
    fields.update(overrides)
    message = EmailMultiAlternatives(**fields)
    if html is not None:
        message.attach_alternative(html, "text/html")
    return message


CASES = {
    "ascii, text and html": {},
    "non-ascii subject, body and display name": {
        "subject": "Nouvelle connexion à votre compte ✓",
        "body": "Bonjour Zoë,\nquelqu'un s'est connecté à votre compte.\n",
        "html": "<p>Bonjour Zoë, quelqu'un s'est connecté.</p>\n",
        "from_email": "Équipe Conveyor <notifications@example.com>",
        "to": ["Zoë Martin <zoe@example.com>"]},
    "a long subject": {"subject": ("A subject " * 15).strip()},
    "a long non-ascii subject": {"subject": ("Réponse à votre commentaire " * 8).strip()},
    "text only": {"html": None},
    "CR and bare CR line ends": {"body": "one\r\ntwo\rthree\nfour", "html": "<p>a</p>\r\n"},
    "a line of 998 bytes": {"body": "x" * 998 + "\nend\n"},
    "a body line starting with a dot and From": {"body": ".hidden\nFrom here\n"},
    "List-Unsubscribe headers": {"headers": {
        "Message-ID": "<1@c>", "List-Unsubscribe": "<https://example.com/api/v1/unsubscribe/"
        + "t" * 150 + ">", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}},
    "several recipients": {"to": ["a@example.com", "b@example.com"]},
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_written_message_is_the_message_django_writes(case, settings):
    settings.EMAIL_USE_LOCALTIME = False
    message = _notification(**CASES[case])

    ours = message_bytes(message)
    theirs = _django_bytes(message)

    assert ours is not None
    expected = _shape(theirs)
    got = _shape(ours)
    if "Date" not in message.extra_headers:  # each generated at its own second
        expected["headers"] = [h for h in expected["headers"] if h[0] != "Date"]
        got["headers"] = [h for h in got["headers"] if h[0] != "Date"]
    if "Message-ID" not in message.extra_headers:
        expected["headers"] = [h for h in expected["headers"] if h[0] != "Message-ID"]
        got["headers"] = [h for h in got["headers"] if h[0] != "Message-ID"]
    assert got == expected
    # every line ends with CRLF, none is longer than SMTP allows
    assert b"\n" not in ours.replace(b"\r\n", b"")
    assert max(len(line) for line in ours.split(b"\r\n")) <= 998


def test_generated_date_and_message_id_are_there_when_not_given():
    message = _notification(headers={})
    parsed = _parsed(message_bytes(message))
    assert parsed["Date"] and parsed["Message-ID"].startswith("<")
    assert parsed["Message-ID"] != _parsed(message_bytes(message))["Message-ID"]


@pytest.mark.parametrize("change", [
    "attachment", "cc", "reply_to", "long line", "charset", "from header", "html subtype",
    "two alternatives", "empty body", "subclass"])
def test_anything_else_goes_djangos_way(change):
    message = _notification()
    if change == "attachment":
        message.attach("a.txt", "data", "text/plain")
    elif change == "cc":
        message.cc = ["c@example.com"]
    elif change == "reply_to":
        message.reply_to = ["r@example.com"]
    elif change == "long line":
        message.body = "x" * 999
    elif change == "charset":
        message.encoding = "iso-8859-1"
    elif change == "from header":
        message.extra_headers["From"] = "other@example.com"
    elif change == "html subtype":
        message.content_subtype = "html"
    elif change == "two alternatives":
        message.attach_alternative("<p>b</p>", "text/html")
    elif change == "empty body":
        message.body = ""
    elif change == "subclass":
        message = type("Custom", (EmailMultiAlternatives,), {})(
            subject="s", body="b", to=["a@example.com"])
    assert message_bytes(message) is None


def test_a_newline_in_a_header_is_refused_as_django_refuses_it():
    message = _notification(subject="Hello\nBcc: victim@example.com")
    with pytest.raises(BadHeaderError):
        message_bytes(message)
    with pytest.raises(BadHeaderError):
        _django_bytes(message)


@pytest.mark.parametrize("address", [
    "ada@example.com", "first.last+tag@mail.example.co.uk", "o'brien@example.com",
    "x_y-z@sub-domain.example", "UPPER@Example.COM", "a!#$%&*/=?^`{|}~@example.com"])
def test_a_plain_address_is_what_sanitize_address_gives_back(address):
    assert _PLAIN_ADDRESS.match(address)
    assert sanitize_address(address, "utf-8") == address


@pytest.mark.parametrize("address", [
    "Ada <ada@example.com>", "zoë@example.com", "ada@exämple.com", '"a b"@example.com',
    ".ada@example.com", "ada..b@example.com", "ada@-example.com", "ada@example..com",
    "ada@" + "a" * 64 + ".com"])
def test_anything_else_is_sanitized(address):
    assert not _PLAIN_ADDRESS.match(address)


def test_the_smtp_server_receives_the_written_message_and_its_reply_is_kept(smtp_sink):
    # given the project's backend (the smtp_sink fixture selects it) and a notification email
    connection = get_connection()
    message = _notification(subject="Nouvelle connexion ✓", body="Bonjour Zoë\n",
                            to=["Zoë <zoe@example.com>"])

    # when it is sent
    with connection:
        assert connection.send_messages([message]) == 1
        reply = connection.last_reply

    # then the server has it, both parts decoded, and the backend kept the server's answer
    [received] = smtp_sink.wait_for(1)
    assert received.rcpt_to == ["zoe@example.com"]
    assert received.mail_from == "notifications@example.com"
    assert received.subject == "Nouvelle connexion ✓"
    assert received.text.replace("\r\n", "\n") == "Bonjour Zoë\n"
    assert received.html.replace("\r\n", "\n") == HTML
    assert received["Message-ID"] == "<0f7e6a1c@conveyor.localhost>"
    assert reply[0] == 250 and b"queued" in reply[1]


# --- The reply to DATA, kept per message (what an email attempt row shows) ---------------

def _plain_message(to: str = "ada@example.com") -> EmailMessage:
    return EmailMessage(subject="Hello", body="Body", from_email="from@example.com", to=[to])


def test_the_reply_to_data_is_kept_for_each_plain_message(smtp_sink):
    backend = get_connection(fail_silently=False)
    assert isinstance(backend, EmailBackend)

    # when two messages go over one connection
    backend.open()
    try:
        backend.send_messages([_plain_message()])
        first = backend.last_reply
        backend.send_messages([_plain_message("bob@example.com")])
        second = backend.last_reply
    finally:
        backend.close()

    # then each reply is the server's own, with the id it queued the message under
    assert first == (250, b"2.0.0 Ok: queued as 1")
    assert second == (250, b"2.0.0 Ok: queued as 2")
    assert smtp_sink.connections == 1


def test_the_reply_is_kept_on_a_new_connection_too(smtp_sink):
    backend = get_connection(fail_silently=False)
    for expected in (b"2.0.0 Ok: queued as 1", b"2.0.0 Ok: queued as 2"):
        backend.open()
        try:
            backend.send_messages([_plain_message()])
        finally:
            backend.close()
        assert backend.last_reply == (250, expected)
    assert smtp_sink.connections == 2


def test_a_refusal_of_data_is_kept_and_raised(smtp_sink):
    smtp_sink.script("ada@example.com", data=["554 5.7.1 rejected as spam"])
    backend = get_connection(fail_silently=False)
    backend.open()
    try:
        with pytest.raises(smtplib.SMTPDataError) as raised:
            backend.send_messages([_plain_message()])
        assert backend.last_reply == (554, b"5.7.1 rejected as spam")
        assert raised.value.smtp_code == 554
        # and the connection still carries the next message
        backend.send_messages([_plain_message("bob@example.com")])
        assert backend.last_reply[0] == 250
    finally:
        backend.close()
    assert len(smtp_sink.received) == 1 and smtp_sink.connections == 1


def test_send_messages_opening_its_own_connection_sends(smtp_sink):
    # Django's way without open(): the backend opens and closes around the batch
    backend = get_connection(fail_silently=False)
    assert backend.send_messages([_plain_message(), _plain_message("bob@example.com")]) == 2
    assert len(smtp_sink.received) == 2 and smtp_sink.connections == 1
