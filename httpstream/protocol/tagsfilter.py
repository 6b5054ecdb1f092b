# -*- test-case-name: tests.protocol.test_tagsfilter -*-
"""
Publication tags filters: the C{FilterNode} tree a client sends in C{SubscribeRequest.tf} (and a map subscription's
page requests), read into an immutable L{TagsFilter} that says whether a publication's C{tags} pass.

The semantics are centrifuge's (``internal/filter/filter.go``), checked when the filter is read rather than at
every match:

  - C{op} "" is a leaf comparing one tag, "and" needs every child to match, "or" any child, "not" negates its one
    child; "and"/"or" need at least one child.
  - Leaf C{cmp}: C{eq} (the tag is present and equal to C{val}), C{neq} (absent or different), C{in}/C{nin} (the
    tag's value, "" when absent, is / is not one of C{vals}), C{ex}/C{nex} (present / absent), C{sw}/C{ew}/C{ct}
    (present and starts with / ends with / contains C{val}), C{lt}/C{lte}/C{gt}/C{gte} (both the tag and C{val} read
    as decimals, C{[+-]digits[.digits]}, at most 19 digits after the point: false when the tag is absent or either
    is not such a number).
  - C{eq neq sw ew ct lt lte gt gte} need a non-empty C{val} and no C{vals}; C{in nin} a non-empty C{vals} and no
    C{val}; C{ex nex} neither. Every leaf but C{ex}/C{nex} needs a C{key}. Fields an op does not use (a leaf's
    C{nodes}, an "and"'s C{key}) are ignored, as upstream ignores them.

Our own limits (upstream has none but the message size): at most L{MAX_DEPTH} levels, L{MAX_NODES} nodes and
L{MAX_VALUES} strings in all the C{vals} of one filter. A tree beyond them is refused like a malformed one.

Two filters that always agree are often equal here: L{TagsFilter} compares and hashes by a canonical form (C{vals}
as a sorted set, the children of "and"/"or" as a sorted set), so subscribers of one channel with the same filter
can share one evaluation per publication.

May import: nothing of httpstream (the bottom layer).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, Callable, Mapping, Optional, final

__all__ = ["MAX_DEPTH", "MAX_NODES", "MAX_VALUES", "FilterError", "TagsFilter", "parseFilter"]

#: The deepest tree accepted (a leaf alone is 1 deep).
MAX_DEPTH = 16
#: The most nodes (leaves and "and"/"or"/"not") in one tree.
MAX_NODES = 128
#: The most strings in all the C{vals} lists of one tree together.
MAX_VALUES = 1000

_VALUE_CMPS = frozenset(("eq", "neq", "sw", "ew", "ct", "lt", "lte", "gt", "gte"))
_LIST_CMPS = frozenset(("in", "nin"))
_EXISTS_CMPS = frozenset(("ex", "nex"))
_OPS = ("", "and", "or", "not")

# udecimal.Parse's grammar (ASCII digits only, no exponent, no bare point), at most 200 characters.
_DECIMAL = re.compile(r"[+-]?[0-9]+(?:\.[0-9]{1,19})?", re.ASCII)
_MAX_DECIMAL_LENGTH = 200

Tags = Mapping[str, str]
_Match = Callable[[Tags], bool]


class FilterError(ValueError):
    """
    A filter that is not well-formed, or over the limits. The subscribe it came with is refused with 107 bad
    request. C{str()} names the node at fault (C{"tf.nodes[1].cmp: ..."}).
    """


def decimal(text: str) -> Optional[Decimal]:
    """C{text} as a decimal by upstream's grammar, or None when it is not one."""
    if len(text) > _MAX_DECIMAL_LENGTH or _DECIMAL.fullmatch(text) is None:
        return None
    return Decimal(text)


@final
class TagsFilter:
    """
    A validated filter: L{matches} a publication's tags. Immutable; equal (and of equal hash) to any filter with the
    same canonical form.

    @ivar canonical: a tuple of strings and tuples standing for the filter: C{("eq", key, val)}, C{("in", key,
        (val, ...))}, C{("ex", key)}, C{("and", (child, ...))}, C{("not", child)}, ...
    """

    __slots__ = ("_match", "canonical", "_hash")

    def __init__(self, match: _Match, canonical: tuple[Any, ...]) -> None:
        self._match = match
        self.canonical = canonical
        self._hash = hash(canonical)

    def matches(self, tags: Tags) -> bool:
        """Whether a publication with these C{tags} passes the filter."""
        return self._match(tags)

    def asDict(self) -> dict[str, Any]:
        """The canonical filter in the protocol's C{FilterNode} dict form (zero fields left out)."""
        return _asDict(self.canonical)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TagsFilter):
            return NotImplemented
        return self is other or (self._hash == other._hash and self.canonical == other.canonical)

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"TagsFilter({self.asDict()!r})"

    def __setattr__(self, name: str, value: Any) -> None:
        if hasattr(self, "_hash"):
            raise AttributeError("TagsFilter is immutable")
        object.__setattr__(self, name, value)


def parseFilter(node: Any, where: str = "tf") -> TagsFilter:
    """
    Read a C{FilterNode} in the codecs' dict form (absent fields are zero values: C{{}} is a leaf without a cmp).

    @param where: the name of the field it came in, for the error messages.
    @raise FilterError: a malformed filter, or one over L{MAX_DEPTH}, L{MAX_NODES} or L{MAX_VALUES}.
    """
    budget = _Budget()
    match, canonical = _parse(node, where, 1, budget)
    return TagsFilter(match, canonical)


class _Budget:
    __slots__ = ("nodes", "values")

    def __init__(self) -> None:
        self.nodes = 0
        self.values = 0


def _string(node: Mapping[str, Any], field: str, where: str) -> str:
    value = node.get(field, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise FilterError(f"{where}.{field}: expected a string")
    return value


def _list(node: Mapping[str, Any], field: str, where: str) -> list[Any]:
    value = node.get(field, ())
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise FilterError(f"{where}.{field}: expected a list")
    return list(value)


def _parse(node: Any, where: str, depth: int, budget: _Budget) -> tuple[_Match, tuple[Any, ...]]:
    if not isinstance(node, Mapping):
        raise FilterError(f"{where}: expected a FilterNode object")
    if depth > MAX_DEPTH:
        raise FilterError(f"{where}: the filter is more than {MAX_DEPTH} levels deep")
    budget.nodes += 1
    if budget.nodes > MAX_NODES:
        raise FilterError(f"{where}: the filter has more than {MAX_NODES} nodes")
    op = _string(node, "op", where)
    if op == "":
        return _leaf(node, where, budget)
    if op not in _OPS:
        raise FilterError(f"{where}.op: unknown op {op!r} (expected \"\", \"and\", \"or\" or \"not\")")
    children = _list(node, "nodes", where)
    if op == "not":
        if len(children) != 1:
            raise FilterError(f"{where}.nodes: \"not\" needs exactly one child, got {len(children)}")
        inner, canonical = _parse(children[0], f"{where}.nodes[0]", depth + 1, budget)
        return (lambda tags: not inner(tags)), ("not", canonical)
    if not children:
        raise FilterError(f"{where}.nodes: {op!r} needs at least one child")
    parsed = [_parse(child, f"{where}.nodes[{i}]", depth + 1, budget) for i, child in enumerate(children)]
    # Equal children decide alike: one of each, in a fixed order, so the canonical form ignores order and repeats.
    unique = {canonical: match for match, canonical in parsed}
    order = sorted(unique)
    matches = tuple(unique[canonical] for canonical in order)
    if len(matches) == 1:
        only = matches[0]
        return only, (op, tuple(order))
    if op == "and":
        def every(tags: Tags) -> bool:
            for match in matches:
                if not match(tags):
                    return False
            return True

        return every, ("and", tuple(order))

    def anyOf(tags: Tags) -> bool:
        for match in matches:
            if match(tags):
                return True
        return False

    return anyOf, ("or", tuple(order))


def _leaf(node: Mapping[str, Any], where: str, budget: _Budget) -> tuple[_Match, tuple[Any, ...]]:
    cmp = _string(node, "cmp", where)
    key = _string(node, "key", where)
    val = _string(node, "val", where)
    vals = _list(node, "vals", where)
    if not cmp:
        raise FilterError(f"{where}.cmp: a leaf needs a cmp")
    for i, item in enumerate(vals):
        if not isinstance(item, str):
            raise FilterError(f"{where}.vals[{i}]: expected a string")
    if cmp in _VALUE_CMPS:
        if not val:
            raise FilterError(f"{where}.val: {cmp!r} needs a non-empty val")
        if vals:
            raise FilterError(f"{where}.vals: {cmp!r} takes val, not vals")
    elif cmp in _LIST_CMPS:
        if not vals:
            raise FilterError(f"{where}.vals: {cmp!r} needs a non-empty vals")
        if val:
            raise FilterError(f"{where}.val: {cmp!r} takes vals, not val")
    elif cmp in _EXISTS_CMPS:
        if val or vals:
            raise FilterError(f"{where}: {cmp!r} takes neither val nor vals")
    else:
        raise FilterError(f"{where}.cmp: unknown cmp {cmp!r}")
    if not key and cmp not in _EXISTS_CMPS:
        raise FilterError(f"{where}.key: {cmp!r} needs a key")
    budget.values += len(vals)
    if budget.values > MAX_VALUES:
        raise FilterError(f"{where}.vals: the filter has more than {MAX_VALUES} values")
    return _compile(cmp, key, val, frozenset(vals))


def _compile(cmp: str, key: str, val: str, vals: frozenset[str]) -> tuple[_Match, tuple[Any, ...]]:
    match: _Match
    if cmp == "eq":
        # val is never empty, so an absent tag (None) never equals it.
        match = lambda tags: tags.get(key) == val  # noqa: E731
    elif cmp == "neq":
        match = lambda tags: tags.get(key) != val  # noqa: E731
    elif cmp == "in":
        match = lambda tags: tags.get(key, "") in vals  # noqa: E731
    elif cmp == "nin":
        match = lambda tags: tags.get(key, "") not in vals  # noqa: E731
    elif cmp == "ex":
        return (lambda tags: key in tags), ("ex", key)
    elif cmp == "nex":
        return (lambda tags: key not in tags), ("nex", key)
    elif cmp == "sw":
        match = lambda tags: (v := tags.get(key)) is not None and v.startswith(val)  # noqa: E731
    elif cmp == "ew":
        match = lambda tags: (v := tags.get(key)) is not None and v.endswith(val)  # noqa: E731
    elif cmp == "ct":
        match = lambda tags: (v := tags.get(key)) is not None and val in v  # noqa: E731
    else:
        match = _numeric(cmp, key, val)
    if vals:
        return match, (cmp, key, tuple(sorted(vals)))
    return match, (cmp, key, val)


def _numeric(cmp: str, key: str, val: str) -> _Match:
    bound = decimal(val)
    if bound is None:
        # Upstream parses val at every match and answers false when it cannot: never true.
        return lambda tags: False
    test: Callable[[Decimal], bool] = {
        "lt": lambda v: v < bound,
        "lte": lambda v: v <= bound,
        "gt": lambda v: v > bound,
        "gte": lambda v: v >= bound,
    }[cmp]

    def compare(tags: Tags) -> bool:
        text = tags.get(key)
        if text is None:
            return False
        value = decimal(text)
        return value is not None and test(value)

    return compare


def _asDict(canonical: tuple[Any, ...]) -> dict[str, Any]:
    head = canonical[0]
    if head in ("and", "or"):
        return {"op": head, "nodes": [_asDict(child) for child in canonical[1]]}
    if head == "not":
        return {"op": "not", "nodes": [_asDict(canonical[1])]}
    node: dict[str, Any] = {"cmp": head}
    if canonical[1]:
        node["key"] = canonical[1]
    if head in _LIST_CMPS:
        node["vals"] = list(canonical[2])
    elif head in _VALUE_CMPS:
        node["val"] = canonical[2]
    return node
