import logging

from domain.common.correlation import get_correlation_id


class CorrelationIdFilter(logging.Filter):
    """Puts the current correlation id on every record (formatters print it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "correlation_id"):
            record.correlation_id = get_correlation_id()
        return True
