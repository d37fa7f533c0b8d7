"""Every event type's payload, written out from the registry for the README.

The README's "Event types" section is this function's output (`manage.py describe_event_types`
prints it), and a test holds the two equal, so the documentation cannot drift from the schemas
the API enforces. GET /api/v1/event-types serves the same schemas as JSON.
"""

from __future__ import annotations

import json
from typing import Any

from domain.events.registry import EventType, event_types


def _type_name(schema: dict) -> str:
    kind = schema.get("type", "any")
    if isinstance(kind, list):
        kind = " or ".join(kind)
    if kind == "array" and isinstance(schema.get("items"), dict) and "type" in schema["items"]:
        kind = f"array of {_type_name(schema['items'])}"
    return kind


def _rules(schema: dict) -> str:
    rules = []
    if "format" in schema:
        rules.append(f"format `{schema['format']}`")
    if "enum" in schema:
        rules.append("one of " + ", ".join(f"`{json.dumps(v)}`" for v in schema["enum"]))
    for key, words, unit in (("minLength", "at least", "character"),
                             ("maxLength", "at most", "character"),
                             ("minimum", "at least", ""), ("maximum", "at most", ""),
                             ("minItems", "at least", "item"), ("maxItems", "at most", "item")):
        if key in schema:
            n = schema[key]
            rules.append(f"{words} {n}" + (f" {unit}{'' if n == 1 else 's'}" if unit else ""))
    return "; ".join(rules) or "—"


def _fields(schema: dict) -> list[str]:
    required = set(schema.get("required", ()))
    rows = ["| field | type | required | rules |", "|---|---|---|---|"]
    for name, prop in schema.get("properties", {}).items():
        rows.append(f"| `{name}` | {_type_name(prop)} | {'yes' if name in required else 'no'} "
                    f"| {_rules(prop)} |")
    return rows


def _example(event_type: EventType) -> Any:
    return {"type": event_type.name, "payload": event_type.example}


def event_type_markdown(event_type: EventType) -> str:
    schema = event_type.schema
    lines = [f"#### `{event_type.name}`", "", event_type.description, ""]
    handlers = ", ".join(f"`{h.name}` → {'an' if h.kind[0] in 'aeiou' else 'a'} `{h.kind}` job"
                         for h in event_type.handlers)
    lines += [f"Handlers: {handlers or 'none (the event is stored and completed at once)'}.", ""]
    if not event_type.publishable:
        lines += ["Published by the server only: `POST /api/v1/events` refuses it "
                  "(`422 unknown_event_type`).", ""]
    if schema.get("properties"):
        lines += [*_fields(schema), ""]
    extra = schema.get("additionalProperties", True)
    lines += ["Other fields: " + ("accepted and stored." if extra is not False
                                  else "refused (`422 invalid_payload`)."), ""]
    if event_type.example is not None:
        lines += ["```json", json.dumps(_example(event_type)), "```", ""]
    return "\n".join(lines)


def event_types_markdown() -> str:
    """The README's block: every registered event type, by name."""
    return "\n".join(event_type_markdown(t) for t in event_types()).rstrip() + "\n"
