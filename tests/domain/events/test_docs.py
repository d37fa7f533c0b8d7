"""The README documents every event type's payload, generated from the registry: the text is
held equal to the code here, so it cannot drift."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.urls import reverse

from domain.events.docs import event_types_markdown
from domain.events.registry import EventType, event_types

README = Path(__file__).resolve().parents[3] / "README.md"


def test_the_readme_documents_every_event_type_as_the_registry_says():
    block = re.search(r"<!-- event-types:begin -->\n(.*)<!-- event-types:end -->",
                      README.read_text(), re.S)
    assert block, "README.md lost its event-types markers"
    assert block.group(1) == event_types_markdown(), (
        "README.md's event types differ from the registry: paste the output of "
        "`manage.py describe_event_types` between the markers")
    for event_type in event_types():
        assert f"#### `{event_type.name}`" in block.group(1)


def test_the_documentation_names_required_fields_and_rules():
    text = event_types_markdown()
    assert "| `product_id` | string | yes | format `uuid`; at least 1 character |" in text
    assert "| `category` | string | yes |" in text
    assert "| `message` | string | no | at most 1000 characters |" in text


def test_every_event_type_has_an_example_its_schema_accepts():
    for event_type in event_types():
        assert event_type.example is not None, event_type.name
        assert event_type.validate_payload(event_type.example) == [], event_type.name


def test_an_example_that_breaks_its_own_schema_is_refused_at_registration():
    with pytest.raises(ValueError, match="example does not match"):
        EventType(name="x.y", description="", example={"n": "not a number"},
                  schema={"type": "object", "properties": {"n": {"type": "integer"}}})


@pytest.mark.django_db
def test_the_api_serves_each_schema_with_its_example(client_all):
    body = client_all.get(reverse("event-type-list")).json()
    by_name = {t["name"]: t for t in body}
    for event_type in event_types():
        assert by_name[event_type.name]["schema"] == event_type.schema
        assert by_name[event_type.name]["example"] == event_type.example
