"""The orjson renderer writes what DRF's JSONRenderer writes."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.utils.translation import gettext_lazy
from rest_framework.renderers import JSONRenderer
from rest_framework.utils.serializer_helpers import ReturnDict, ReturnList

from domain.common.renderers import OrjsonRenderer

VALUES = [
    {"id": uuid.UUID("12345678-1234-5678-1234-567812345678"), "n": 1, "f": 1.5, "t": True,
     "none": None, "text": "grüße ✓ \u2028", "nested": [{"a": [1, 2, {"b": "c"}]}]},
    {"when": datetime(2026, 11, 28, 12, 0, 0, 123456, tzinfo=UTC),
     "naive": datetime(2026, 11, 28, 12, 0, 0)},
    {"price": Decimal("9.99"), "lazy": gettext_lazy("This field is required.")},
    ReturnDict({"a": ReturnList([1, 2], serializer=None)}, serializer=None),
    [], {}, "plain", 0,
]


@pytest.mark.parametrize("data", VALUES)
def test_renders_what_drf_renders(data):
    ours = OrjsonRenderer().render(data, "application/json", {})
    drf = JSONRenderer().render(data, "application/json", {})
    assert json.loads(ours) == json.loads(drf)
    assert b"\n" not in ours and b": " not in ours  # compact, as DRF's default


def test_none_is_an_empty_body_and_indent_is_drf_pretty_printing():
    assert OrjsonRenderer().render(None) == b""
    pretty = OrjsonRenderer().render({"a": 1}, "application/json; indent=2", {})
    assert pretty == JSONRenderer().render({"a": 1}, "application/json; indent=2", {})
