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


# Keywords whose value is one schema, a list of schemas, or a mapping of names to schemas.
_ONE_SCHEMA = ("items", "not", "additionalProperties", "contains", "propertyNames")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs")


def openapi_schema(schema: Any) -> Any:
    """A registry's JSON Schema (draft 2020-12: job params, event payloads) in the OpenAPI 3.0
    dialect /api/schema is written in: a type list with "null" becomes `nullable`, `const` a
    one-value `enum`. The rest of what the registries use is common to both."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    for key in _ONE_SCHEMA:
        if key in out:
            out[key] = openapi_schema(out[key])
    for key in _SCHEMA_LISTS:
        if key in out:
            out[key] = [openapi_schema(item) for item in out[key]]
    for key in _SCHEMA_MAPS:
        if key in out:
            out[key] = {name: openapi_schema(item) for name, item in out[key].items()}
    if "const" in out:
        out["enum"] = [out.pop("const")]
    types = out.get("type")
    if isinstance(types, list):
        kept = [t for t in types if t != "null"]
        if len(kept) < len(types):
            out["nullable"] = True
        if len(kept) == 1:
            out["type"] = kept[0]
        else:
            del out["type"]
            out["anyOf"] = [*out.get("anyOf", []), *({"type": t} for t in kept)]
    return out
