"""Log lines: secrets never reach one (request logs, the redaction filter, the handlers); the
JSON formatter writes one object per record on one line, with the correlation id, the log
context and `extra` fields; LOG_FORMAT picks the formatter."""

import copy
import io
import json
import logging
import re
import sys

import pytest
from django.urls import reverse

from domain.common.correlation import reset_correlation_id, set_correlation_id
from domain.common.logging import (
    CorrelationIdFilter,
    JsonFormatter,
    RedactSecretsFilter,
    log_context,
    redact,
)

pytestmark = pytest.mark.django_db

PING = {"type": "demo.ping", "payload": {"message": "hi"}}


def test_request_logs_do_not_contain_the_key_or_a_webhook_secret(make_client, caplog):
    client = make_client()
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    caplog.set_level(logging.DEBUG)
    # a publish carrying a webhook secret in its payload, a 401 with a wrong key, and a 422
    client.post(reverse("event-publish"), {"type": "demo.ping", "payload": {
        "message": "hi", "webhook_secret": secret}}, format="json",
        HTTP_AUTHORIZATION=f"Bearer {client.raw_key}")
    client.post(reverse("event-publish"), PING, format="json",
                HTTP_AUTHORIZATION=f"Bearer {client.raw_key}x")
    client.post(reverse("event-publish"), {"type": "nope", "payload": {"s": secret}},
                format="json")
    logged = caplog.text
    assert client.raw_key not in logged
    assert secret not in logged


def test_redaction_filter_masks_credentials():
    line = ("Authorization: Bearer cvk_abc-123_XYZ and key=cvk_other_key "
            "secret=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    cleaned = redact(line)
    assert "cvk_" not in cleaned and "whsec_" not in cleaned
    assert cleaned.count("[REDACTED]") == 3
    assert redact("nothing secret here") == "nothing secret here"


def test_redaction_applies_to_the_configured_handlers():
    from logging.config import dictConfig

    from django.conf import settings

    config = settings.LOGGING
    assert all("redact" in h.get("filters", []) for h in config["handlers"].values())
    dictConfig(config)  # the configuration loads with the filter


# --- The JSON formatter -------------------------------------------------------------------

def _json_lines(*records: logging.LogRecord) -> list[str]:
    """Each record through the configured filters and the JSON formatter, as a handler would."""
    formatter = JsonFormatter()
    lines = []
    for record in records:
        for log_filter in (CorrelationIdFilter(), RedactSecretsFilter()):
            log_filter.filter(record)
        lines.append(formatter.format(record))
    return lines


def _record(message: str = "hello", *args, level: int = logging.INFO, exc_info=None,
            **extra) -> logging.LogRecord:
    logger = logging.getLogger("conveyor.test")
    return logger.makeRecord(logger.name, level, __file__, 1, message, args, exc_info,
                             extra=extra or None)


def test_a_record_is_one_json_object_with_time_level_logger_and_message():
    [line] = _json_lines(_record("job started job_id=%s", "j-1"))
    parsed = json.loads(line)
    assert parsed["level"] == "INFO"
    assert parsed["logger"] == "conveyor.test"
    assert parsed["message"] == "job started job_id=j-1"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", parsed["time"])
    # nothing is known: no correlation id, no context fields, no empty keys
    assert set(parsed) == {"time", "level", "logger", "message"}


def test_the_correlation_id_and_the_log_context_are_fields():
    token = set_correlation_id("corr-42")
    try:
        with log_context(job_id="j-1", event_id="e-1", task="conveyor.demo.noop",
                         queue="events", worker="w1@host"):
            with log_context(job_id="j-2", event_id=None):  # inner: overrides, None keeps
                [inner] = _json_lines(_record())
            [outer] = _json_lines(_record())
        [after] = _json_lines(_record())
    finally:
        reset_correlation_id(token)
    assert json.loads(inner) | {"time": None} == {
        "time": None, "level": "INFO", "logger": "conveyor.test", "message": "hello",
        "correlation_id": "corr-42", "job_id": "j-2", "event_id": "e-1",
        "task": "conveyor.demo.noop", "queue": "events", "worker": "w1@host"}
    assert json.loads(outer)["job_id"] == "j-1"
    assert "job_id" not in json.loads(after)
    with pytest.raises(ValueError, match="not log context fields"):
        log_context(jobid="typo").__enter__()


def test_extra_fields_are_fields_of_their_own_and_odd_values_become_text():
    class Odd:
        def __str__(self) -> str:
            return "odd value"

    [line] = _json_lines(_record(rows=3, ratio=0.5, names=["a", "b"], odd=Odd(),
                                 huge=2 ** 70, job_id="given-explicitly"))
    parsed = json.loads(line)
    assert parsed["rows"] == 3 and parsed["ratio"] == 0.5 and parsed["names"] == ["a", "b"]
    assert parsed["odd"] == "odd value"
    assert parsed["huge"] in (2 ** 70, str(2 ** 70))  # past 64 bits: the fallback writes it
    assert parsed["job_id"] == "given-explicitly"  # an `extra` field wins over the context


def test_celerys_repeated_formatting_arguments_are_left_out():
    # Celery logs "Task %(name)s[%(id)s] succeeded …" with the same dict again as extra `data`
    context = {"name": "conveyor.demo.noop", "id": "t-1", "runtime": 0.01, "return_value": "1"}
    [line] = _json_lines(_record("Task %(name)s[%(id)s] succeeded in %(runtime)ss: "
                                 "%(return_value)s", context, data=context))
    parsed = json.loads(line)
    assert parsed["message"] == "Task conveyor.demo.noop[t-1] succeeded in 0.01s: 1"
    assert "data" not in parsed


def test_an_exception_is_one_field_with_its_whole_traceback_and_no_secret():
    try:
        raise RuntimeError("receiver said no to whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    except RuntimeError:
        record = _record("delivery failed", level=logging.ERROR, exc_info=sys.exc_info())
    [line] = _json_lines(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["level"] == "ERROR"
    assert parsed["exception"].startswith("Traceback (most recent call last):")
    assert "RuntimeError: receiver said no to [REDACTED]" in parsed["exception"]
    assert "whsec_" not in line


def test_newlines_in_a_message_stay_on_one_line():
    message = "first\nsecond\r\nthird\rfourth\u2028fifth\u2029sixth\x85seventh\x0beighth"
    [line] = _json_lines(_record(message))
    assert len(line.splitlines()) == 1
    assert json.loads(line)["message"] == message


def test_non_ascii_is_written_as_it_is_and_reads_back_the_same():
    message = "café ✓ 東京 🚚"
    [line] = _json_lines(_record("order shipped to %s", message))
    assert message in line  # UTF-8, not \\u escapes
    assert json.loads(line)["message"] == f"order shipped to {message}"
    assert line.encode("utf-8").decode("utf-8") == line


def test_a_stack_is_a_field():
    record = _record()
    record.stack_info = "Stack (most recent call last):\n  File \"x.py\", line 1"
    [line] = _json_lines(record)
    assert json.loads(line)["stack"].startswith("Stack (most recent call last):")


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_log_format_picks_the_configured_handlers_formatter(log_format, settings):
    from logging.config import dictConfig

    config = copy.deepcopy(settings.LOGGING)
    config["handlers"]["console"]["formatter"] = log_format
    stream = io.StringIO()
    config["handlers"]["console"]["stream"] = stream
    config["root"]["level"] = "INFO"
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        dictConfig(config)
        token = set_correlation_id("corr-7")
        try:
            logging.getLogger("conveyor.test").info("done rows=%d", 5)
        finally:
            reset_correlation_id(token)
    finally:  # the suite's own configuration back, with pytest's capture handlers
        dictConfig(settings.LOGGING)
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    line = stream.getvalue().strip()
    if log_format == "json":
        assert json.loads(line)["correlation_id"] == "corr-7"
    else:
        assert line == "level=INFO logger=conveyor.test correlation_id=corr-7 done rows=5"
