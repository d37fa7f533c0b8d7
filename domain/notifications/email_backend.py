"""Django's SMTP email backend, keeping the server's reply to each message.

Django's backend sends with `smtplib.SMTP.sendmail`, which drops the server's answer to DATA
("250 2.0.0 Ok: queued as 4F2A…"): the one fact that says a message was accepted, and under
which id the server knows it. Each email delivery's attempt row keeps it, so this subclass
wraps the connection's `data` call and remembers the last reply. Nothing else changes:
EMAIL_URL's smtp, smtp+tls and smtps schemes select it (config/settings/base.py).
"""

from __future__ import annotations

from django.core.mail.backends import smtp


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
