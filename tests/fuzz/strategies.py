"""Hypothesis strategies for event payloads, hand-written from the registered JSON schemas.

(hypothesis-jsonschema is not installed; these follow domain/events/event_types.py and
domain/catalog/event_types.py. `PAYLOADS` must name every registered event type:
test_payload_validator.py fails when a new type has no strategy here.)
"""

from __future__ import annotations

import random
from typing import Any

from hypothesis import strategies as st

# orjson (the API's JSON parser and the payload-size measure) handles integers in
# [-2**63, 2**64 - 1]; the parser refuses a wider literal in a request body (422
# unsupported_number, domain/common/parsers.py), so what goes through HTTP stays in that range.
# JSON itself has no bound, and the service-level properties use any integer.
JSON_INT_MIN, JSON_INT_MAX = -(2**63), 2**64 - 1


def json_scalars(wide_ints: bool = False) -> st.SearchStrategy[Any]:
    ints = (st.integers() | st.integers(min_value=JSON_INT_MAX - 5, max_value=2**70)
            if wide_ints else st.integers(min_value=JSON_INT_MIN, max_value=JSON_INT_MAX))
    return st.one_of(
        st.none(),
        st.booleans(),
        ints,
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=40),
    )


def json_values(max_leaves: int = 30, wide_ints: bool = False) -> st.SearchStrategy[Any]:
    """Any JSON value: scalars, and arrays/objects of JSON values (NaN and infinities are not
    JSON; integers beyond orjson's 64-bit range only with wide_ints)."""
    return st.recursive(
        json_scalars(wide_ints),
        lambda children: st.one_of(
            st.lists(children, max_size=6),
            st.dictionaries(st.text(max_size=12), children, max_size=6),
        ),
        max_leaves=max_leaves,
    )


def _extra_properties(reserved: set[str]) -> st.SearchStrategy[dict]:
    """Properties a schema without `additionalProperties: false` lets through."""
    return st.dictionaries(
        st.text(max_size=12).filter(lambda k: k not in reserved), json_values(10), max_size=3)


def _with_optional(required: dict[str, st.SearchStrategy], optional: dict[str, st.SearchStrategy],
                   extra: bool) -> st.SearchStrategy[dict]:
    base = st.fixed_dictionaries(required, optional=optional)
    if not extra:
        return base
    reserved = set(required) | set(optional)
    return st.tuples(_extra_properties(reserved), base).map(lambda pair: {**pair[0], **pair[1]})


# demo.ping: {"type": "object", "properties": {"message": {"type": "string", "maxLength": 1000}},
#             "additionalProperties": true}
demo_ping_payloads = _with_optional(
    {}, {"message": st.text(max_size=1000)}, extra=True)

# product.updated: product_id (uuid) and category (1..64) required; sku 1..64;
# previous_category string (<=64) or null; changed: array of strings; others allowed.
product_updated_payloads = _with_optional(
    {
        "product_id": st.uuids().map(str),
        "category": st.text(min_size=1, max_size=64),
    },
    {
        "sku": st.text(min_size=1, max_size=64),
        "previous_category": st.none() | st.text(max_size=64),
        "changed": st.lists(st.sampled_from(["name", "price", "stock", "status", "category"])
                            | st.text(max_size=20), max_size=5),
    },
    extra=True,
)

PAYLOADS: dict[str, st.SearchStrategy[dict]] = {
    "demo.ping": demo_ping_payloads,
    "product.updated": product_updated_payloads,
}


def reordered(value: Any, rnd: random.Random) -> Any:
    """The same JSON value with every object's keys in another (random) insertion order."""
    if isinstance(value, dict):
        items = list(value.items())
        rnd.shuffle(items)
        return {k: reordered(v, rnd) for k, v in items}
    if isinstance(value, list):
        return [reordered(v, rnd) for v in value]
    return value


def depth_of(value: Any) -> int:
    """Levels of nested objects/arrays: a scalar is 0, `{}` and `[]` are 1, `{"a": []}` is 2."""
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    return 0


def nested(depth: int, leaf: Any = 1, kinds: str = "da") -> Any:
    """A value exactly `depth` levels deep, alternating objects ("d") and arrays ("a")."""
    value = leaf
    for level in range(depth):
        value = {"n": value} if kinds[level % len(kinds)] == "d" else [value]
    return value
