import logging
import re

from domain.common.correlation import get_correlation_id

# Credentials that must never reach a log line, even if some code logs a header or a payload:
# bearer tokens, our API keys (cvk_...) and Standard Webhooks secrets (whsec_...).
_SECRETS = re.compile(r"(Bearer\s+)\S+|cvk_[A-Za-z0-9_\-]+|whsec_[A-Za-z0-9+/=_\-]+",
                      re.IGNORECASE)


def redact(text: str) -> str:
    return _SECRETS.sub(lambda m: (m.group(1) or "") + "[REDACTED]", text)


class CorrelationIdFilter(logging.Filter):
    """Puts the current correlation id on every record (formatters print it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "correlation_id"):
            record.correlation_id = get_correlation_id()
        return True


class RedactSecretsFilter(logging.Filter):
    """Masks credentials in the rendered message (defence in depth: nothing logs them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True
