"""JSON Schema for what the registries declare: event payloads and job params."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator


def compile_schema(schema: dict) -> Draft202012Validator:
    """A validator for `schema`, which must itself be valid (a bad schema fails at import)."""
    Draft202012Validator.check_schema(schema)
    # Draft 2020-12 treats "format" as a note unless a checker is given; enforce it (uuid,
    # date-time, email...) so a schema means what it says.
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def schema_errors(validator: Draft202012Validator, instance: Any) -> list[dict[str, str]]:
    """The first 20 errors, each with its JSON path, in path order (a stable answer)."""
    return [
        {"path": "/".join(str(p) for p in error.absolute_path) or "/", "message": error.message}
        for error in sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    ][:20]
