"""
Hypothesis strategies from a field-type schema, the notation the fuzz tests write Centrifugo's messages in.

A type is a tag (C{"str"}, C{"user"}, C{"channel"}, C{"bool"}, C{"json"}: any JSON value, C{"b64"}: base64 text),
C{("int", (low, high))}, C{("list", type)}, C{("map", type)} (an object of that type), or a dict (a nested message
whose fields are all optional). L{valid} draws values of a type, L{wrong} values that are not, L{almostValid} a
valid message with one field (at any depth) wrong.
"""

from __future__ import annotations

import base64
from typing import Any, Callable

from hypothesis import strategies as st

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
UINT32 = (0, 2**32 - 1)
UINT64 = (0, 2**64 - 1)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(*INT64) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def valid(kind: Any) -> st.SearchStrategy[Any]:
    """Values of a field type (edges of integer ranges included)."""
    if isinstance(kind, dict):
        return st.fixed_dictionaries({}, optional={k: valid(v) for k, v in kind.items()})
    if isinstance(kind, tuple):
        tag, inner = kind
        if tag == "int":
            low, high = inner
            return st.integers(low, high) | st.sampled_from([low, high, 0, 1, -1 if low < 0 else 2])
        if tag == "list":
            return st.lists(valid(inner), max_size=4)
        return st.dictionaries(st.text(max_size=8), valid(inner), max_size=4)
    return {
        "str": st.text(max_size=12),
        "user": st.sampled_from(["alice", "bob"]) | st.text(max_size=6),
        "channel": st.sampled_from(["news", "chat:a", "chat:b", "plain:x", "nope:x", "", "$private"])
        | st.text(max_size=10),
        "bool": st.booleans(),
        "json": json_values,
        "b64": st.binary(max_size=16).map(lambda b: base64.b64encode(b).decode()) | st.text(max_size=8),
    }[kind]


def wrong(kind: Any) -> st.SearchStrategy[Any]:
    """Values that are not of a field type (or out of its range)."""
    if isinstance(kind, tuple) and kind[0] == "int":
        low, high = kind[1]
        return st.sampled_from([low - 1, high + 1, 1.5, "1", True, [], {}])
    if kind == "json":
        return st.nothing()  # any JSON value is a valid raw field
    others = {
        "bool": st.integers() | st.text(max_size=3) | st.none().map(lambda _: [True]),
        "str": st.integers() | st.booleans() | st.lists(st.text(max_size=3), max_size=2) | st.just({}),
    }
    if kind in ("str", "user", "channel", "b64"):
        return others["str"]
    if kind == "bool":
        return others["bool"]
    if isinstance(kind, tuple) and kind[0] == "list":
        return st.text(max_size=3) | st.integers() | st.just({}) | st.lists(wrong(kind[1]), min_size=1, max_size=2)
    if isinstance(kind, tuple) and kind[0] == "map":
        return st.lists(st.text(max_size=3), max_size=2) | st.text(max_size=3) | st.dictionaries(
            st.text(max_size=3), wrong(kind[1]), min_size=1, max_size=2)
    assert isinstance(kind, dict)
    return st.integers() | st.text(max_size=3) | st.lists(st.integers(), max_size=2) | (
        almostValid(kind) if kind else st.nothing())


def almostValid(schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A valid object with one field (at any depth) of the wrong type."""
    candidates = [k for k, v in schema.items() if v != "json"]
    if not candidates:
        return st.nothing()

    @st.composite
    def build(draw: Callable[..., Any]) -> dict[str, Any]:
        document = draw(valid(schema))
        key = draw(st.sampled_from(candidates))
        document[key] = draw(wrong(schema[key]))
        return document

    return build()
