"""The email baseline: what a Django project does without Conveyor, Django's `send_mail` called
once per message, which opens a connection to the SMTP server, sends the one message and
closes it.

`python -m bench.bare_email '{"n": N, "offset": K, "subject": …, "text": …, "html": …}'`
sends N messages (to base<K>@example.com, base<K+1>@…), one after the other, with Django's own
SMTP backend (`django.core.mail.backends.smtp.EmailBackend`, not the project's subclass) to
the server of EMAIL_URL, and prints `{"started", "elapsed_s", "sent"}` (epoch seconds).

The subject and both parts come rendered already (the same security_alert the scenario's
deliveries carry): no template rendering, no database row, no attempt record, only the send;
which can only make the baseline faster than a project's own code.
"""

from __future__ import annotations

import json
import sys
import time


def main(argv: list[str]) -> None:
    spec = json.loads(argv[1])
    import django

    django.setup()
    from django.conf import settings
    from django.core.mail import send_mail

    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    n, offset = int(spec["n"]), int(spec.get("offset", 0))
    started = time.time()
    sent = 0
    for i in range(offset, offset + n):
        sent += send_mail(spec["subject"], spec["text"], settings.DEFAULT_FROM_EMAIL,
                          [f"base{i}@example.com"], html_message=spec["html"])
    print(json.dumps({"started": started, "elapsed_s": time.time() - started, "sent": sent}),
          flush=True)


if __name__ == "__main__":
    main(sys.argv)
