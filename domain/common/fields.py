"""DRF fields the APIs share."""

from __future__ import annotations

from rest_framework import serializers

INSTANT_RANGE = "years 1 to 9999 in UTC"


class InstantField(serializers.DateTimeField):
    """An RFC 3339 date-time given by a client. Stored and compared in UTC, so it has to fall
    within `INSTANT_RANGE` once converted: `0001-01-01T00:30:00+01:00` is a valid date-time
    but lies before year 1 in UTC. JSON Schema's `format: date-time` cannot state that range,
    so it is in the field's description and refused with its own message (DRF's is "Datetime
    value out of range.", which does not say which range)."""

    default_error_messages = {
        "overflow": f"This time is outside what can be stored: {INSTANT_RANGE}.",
    }

    def __init__(self, **kwargs):
        help_text = kwargs.pop("help_text", "")
        kwargs["help_text"] = (f"{help_text}; " if help_text else "") + (
            f"RFC 3339, within {INSTANT_RANGE}")
        super().__init__(**kwargs)


class StrictCharField(serializers.CharField):
    """A string, only: DRF's CharField also takes a JSON number and turns it into text
    (`"event_type": -2202235` filtered by "-2202235"), which the schema's `type: string`
    refuses. The fuzzer found it on POST /api/v1/jobs/retry."""

    default_error_messages = {"invalid": "Not a valid string."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class NumberField(serializers.FloatField):
    """A JSON number, only: DRF's FloatField also takes `true`/`false` (as 1.0/0.0) and
    numeric strings, which the schema's `type: number` refuses. The fuzzer found it on
    POST /api/v1/bulk-operations (`"pause_seconds": false` was accepted as 0)."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        return super().to_internal_value(data)


class JsonBooleanField(serializers.BooleanField):
    """`true` or `false`, only: DRF's BooleanField also takes 0, 1, "yes", "on" and the like
    (HTML forms' habit), which the schema's `type: boolean` refuses. The fuzzer found it on
    POST /api/v1/bulk-operations (`"adaptive": 0`). For JSON bodies; query strings keep DRF's."""

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data
