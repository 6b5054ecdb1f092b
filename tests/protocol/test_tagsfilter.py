# -*- test-case-name: tests.protocol.test_tagsfilter -*-
"""
L{httpstream.protocol.tagsfilter}: random filter trees and tag maps against a plain reference written here from
centrifuge's ``internal/filter/filter.go`` semantics (map-subscriptions.md 3.2), for both validation and matching.
"""

from __future__ import annotations

import random
from fractions import Fraction
from typing import Any, Optional

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from httpstream.protocol import JSON, PROTOBUF, DecodeError, client_pb2, encode_varint
from httpstream.protocol.schema import json_connect_request
from httpstream.protocol.tagsfilter import MAX_DEPTH, MAX_NODES, MAX_VALUES, FilterError, TagsFilter, parseFilter

CMPS = ["eq", "neq", "in", "nin", "ex", "nex", "sw", "ew", "ct", "lt", "lte", "gt", "gte"]
KEYS = ["", "a", "b", "team"]
VALUES = ["", "1", "-2.5", "10", "x", "xy", "abc", "eng", "1e3", "01", "+3", ".5", "5.", "-", "1.0000000000000000001",
          "1.00000000000000000001", "٣"]


# The reference: plain code from the written semantics, sharing nothing with the module under test.

def refDecimal(text: str) -> Optional[Fraction]:
    if not text or len(text) > 200:
        return None
    body = text[1:] if text[0] in "+-" else text
    whole, point, fraction = body.partition(".")
    digits = "0123456789"
    if not whole or any(c not in digits for c in whole):
        return None
    if point and (not fraction or len(fraction) > 19 or any(c not in digits for c in fraction)):
        return None
    value = Fraction(int(whole + fraction), 10 ** len(fraction))
    return -value if text[0] == "-" else value


def refMatch(node: dict[str, Any], tags: dict[str, str]) -> bool:
    op = node.get("op", "")
    children = node.get("nodes", [])
    if op == "and":
        return all(refMatch(child, tags) for child in children)
    if op == "or":
        return any(refMatch(child, tags) for child in children)
    if op == "not":
        return not refMatch(children[0], tags)
    key, cmp, val, vals = node.get("key", ""), node["cmp"], node.get("val", ""), node.get("vals", [])
    present = key in tags
    value = tags.get(key, "")
    if cmp == "eq":
        return present and value == val
    if cmp == "neq":
        return not present or value != val
    if cmp == "in":
        return value in vals
    if cmp == "nin":
        return value not in vals
    if cmp == "ex":
        return present
    if cmp == "nex":
        return not present
    if cmp == "sw":
        return present and value.startswith(val)
    if cmp == "ew":
        return present and value.endswith(val)
    if cmp == "ct":
        return present and val in value
    left, right = refDecimal(value), refDecimal(val)
    if not present or left is None or right is None:
        return False
    return {"lt": left < right, "lte": left <= right, "gt": left > right, "gte": left >= right}[cmp]


def refValid(node: Any, depth: int = 1, counts: Optional[list[int]] = None) -> bool:
    counts = counts if counts is not None else [0, 0]
    if not isinstance(node, dict) or depth > MAX_DEPTH:
        return False
    counts[0] += 1
    if counts[0] > MAX_NODES:
        return False
    op = node.get("op", "")
    children = node.get("nodes", [])
    if op in ("and", "or"):
        return len(children) > 0 and all(refValid(child, depth + 1, counts) for child in children)
    if op == "not":
        return len(children) == 1 and refValid(children[0], depth + 1, counts)
    if op != "":
        return False
    key, cmp, val, vals = node.get("key", ""), node.get("cmp", ""), node.get("val", ""), node.get("vals", [])
    if cmp in ("eq", "neq", "sw", "ew", "ct", "lt", "lte", "gt", "gte"):
        ok = val != "" and not vals
    elif cmp in ("in", "nin"):
        ok = bool(vals) and val == ""
    elif cmp in ("ex", "nex"):
        ok = val == "" and not vals
    else:
        return False
    if not ok or (key == "" and cmp not in ("ex", "nex")):
        return False
    counts[1] += len(vals)
    return counts[1] <= MAX_VALUES


# Strategies: any shape (mostly invalid ones), and valid trees only.

def _leaves(valid: bool) -> st.SearchStrategy[dict[str, Any]]:
    def leaf(cmp: str, key: str, val: str, vals: list[str]) -> dict[str, Any]:
        node: dict[str, Any] = {"cmp": cmp}
        if key:
            node["key"] = key
        if valid:
            if cmp in ("in", "nin"):
                node["vals"] = vals or [val]
            elif cmp not in ("ex", "nex"):
                node["val"] = val or "x"
            return node
        if val:
            node["val"] = val
        if vals:
            node["vals"] = vals
        return node

    keys = st.sampled_from(KEYS[1:] if valid else KEYS)
    cmps = st.sampled_from(CMPS if valid else CMPS + ["", "xx", "EQ"])
    return st.builds(leaf, cmps, keys, st.sampled_from(VALUES), st.lists(st.sampled_from(VALUES), max_size=3))


def trees(valid: bool) -> st.SearchStrategy[dict[str, Any]]:
    def inner(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
        ops = st.sampled_from(["and", "or", "not"] if valid else ["and", "or", "not", "", "xor"])

        def build(op: str, nodes: list[dict[str, Any]]) -> dict[str, Any]:
            if valid and op == "not":
                nodes = nodes[:1]
            node: dict[str, Any] = {"op": op}
            if nodes:
                node["nodes"] = nodes
            return node

        return st.builds(build, ops, st.lists(children, min_size=1 if valid else 0, max_size=3))

    return st.recursive(_leaves(valid), inner, max_leaves=12)


tagMaps = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=4)


class ReferenceTests(SynchronousTestCase):
    @given(trees(valid=False), tagMaps)
    @settings(max_examples=400, deadline=None)
    def test_anyShape(self, tree: dict[str, Any], tags: dict[str, str]) -> None:
        """Every shape the reference refuses is refused; every other is accepted and matches as the reference."""
        if refValid(tree):
            self.assertEqual(parseFilter(tree).matches(tags), refMatch(tree, tags))
        else:
            self.assertRaises(FilterError, parseFilter, tree)

    @given(trees(valid=True), st.lists(tagMaps, min_size=1, max_size=5))
    @settings(max_examples=400, deadline=None)
    def test_validTrees(self, tree: dict[str, Any], tagsList: list[dict[str, str]]) -> None:
        """Valid trees are accepted and match as the reference does."""
        self.assertTrue(refValid(tree))
        tagsFilter = parseFilter(tree)
        for tags in tagsList:
            self.assertEqual(tagsFilter.matches(tags), refMatch(tree, tags))

    @given(trees(valid=True), st.randoms(use_true_random=False), tagMaps)
    @settings(max_examples=200, deadline=None)
    def test_canonical(self, tree: dict[str, Any], rng: random.Random, tags: dict[str, str]) -> None:
        """
        The children of and/or and the vals in any order, repeated or not, give an equal filter (equal hash);
        the canonical form read back is equal and matches alike.
        """
        def shuffled(node: dict[str, Any]) -> dict[str, Any]:
            copy = dict(node)
            if "nodes" in copy:
                nodes = [shuffled(child) for child in copy["nodes"]]
                if copy.get("op") in ("and", "or"):
                    nodes = nodes + nodes[: rng.randint(0, len(nodes))]
                    rng.shuffle(nodes)
                copy["nodes"] = nodes
            if "vals" in copy:
                copy["vals"] = rng.sample(copy["vals"], len(copy["vals"])) + copy["vals"][:1]
            return copy

        original, other = parseFilter(tree), parseFilter(shuffled(tree))
        self.assertEqual(original, other)
        self.assertEqual(hash(original), hash(other))
        again = parseFilter(original.asDict())
        self.assertEqual(again, original)
        self.assertEqual(again.matches(tags), refMatch(tree, tags))


class ExamplesTests(SynchronousTestCase):
    def test_leaves(self) -> None:
        tags = {"team": "eng", "n": "10", "empty": ""}
        table = [
            ({"key": "team", "cmp": "eq", "val": "eng"}, True),
            ({"key": "team", "cmp": "eq", "val": "sales"}, False),
            ({"key": "missing", "cmp": "neq", "val": "x"}, True),
            ({"key": "missing", "cmp": "in", "vals": ["", "x"]}, True),
            ({"key": "empty", "cmp": "ex"}, True),
            ({"key": "missing", "cmp": "nex"}, True),
            ({"key": "team", "cmp": "sw", "val": "en"}, True),
            ({"key": "team", "cmp": "ew", "val": "ng"}, True),
            ({"key": "team", "cmp": "ct", "val": "n"}, True),
            ({"key": "n", "cmp": "gt", "val": "9.5"}, True),
            ({"key": "n", "cmp": "lte", "val": "10.000"}, True),
            ({"key": "n", "cmp": "lt", "val": "1e3"}, False),  # no exponents
            ({"key": "team", "cmp": "lt", "val": "1"}, False),  # not a number
            ({"key": "n", "cmp": "gt", "val": "9.9999999999999999999"}, True),  # 19 digits after the point
            ({"key": "n", "cmp": "gt", "val": "9.99999999999999999999"}, False),  # 20: not a number
            ({"key": "n", "cmp": "gt", "val": "+9"}, True),
            ({"key": "n", "cmp": "gt", "val": "9."}, False),
            ({"op": "not", "nodes": [{"key": "team", "cmp": "eq", "val": "eng"}]}, False),
            ({"op": "or", "nodes": [{"key": "x", "cmp": "ex"}, {"key": "n", "cmp": "gte", "val": "10"}]}, True),
        ]
        for node, expected in table:
            self.assertEqual(parseFilter(node).matches(tags), expected, node)

    def test_errors(self) -> None:
        """Each refusal names the node at fault."""
        table = [
            ({}, "tf.cmp: a leaf needs a cmp"),
            ({"op": "and"}, "tf.nodes: 'and' needs at least one child"),
            ({"op": "not", "nodes": [{}, {}]}, 'tf.nodes: "not" needs exactly one child, got 2'),
            ({"op": "or", "nodes": [{"key": "a", "cmp": "eq", "val": "1"}, {"cmp": "eq", "val": "1"}]},
             "tf.nodes[1].key: 'eq' needs a key"),
            ({"key": "a", "cmp": "in", "vals": ["x"], "val": "y"}, "tf.val: 'in' takes vals, not val"),
            ({"key": "a", "cmp": "eq", "val": 1}, "tf.val: expected a string"),
            ({"key": "a", "cmp": "in", "vals": "x"}, "tf.vals: expected a list"),
            ({"op": "xor", "nodes": [{}]}, "tf.op: unknown op 'xor'"),
            ([], "tf: expected a FilterNode object"),
        ]
        for node, message in table:
            with self.assertRaises(FilterError) as caught:
                parseFilter(node)
            self.assertIn(message, str(caught.exception))

    def test_limits(self) -> None:
        """Depth, nodes and values are bounded: one more than each limit is refused."""
        leaf = {"key": "a", "cmp": "ex"}
        deep: dict[str, Any] = leaf
        for _ in range(MAX_DEPTH - 1):
            deep = {"op": "not", "nodes": [deep]}
        parseFilter(deep)
        self.assertRaises(FilterError, parseFilter, {"op": "not", "nodes": [deep]})
        wide = {"op": "or", "nodes": [{"key": f"k{i}", "cmp": "ex"} for i in range(MAX_NODES - 1)]}
        parseFilter(wide)
        wide["nodes"].append({"key": "one more", "cmp": "ex"})
        self.assertRaises(FilterError, parseFilter, wide)
        many = {"key": "a", "cmp": "in", "vals": [str(i) for i in range(MAX_VALUES)]}
        parseFilter(many)
        many["vals"].append("one more")
        self.assertRaises(FilterError, parseFilter, many)

    def test_immutable(self) -> None:
        tagsFilter = parseFilter({"key": "a", "cmp": "ex"})
        self.assertIsInstance(tagsFilter, TagsFilter)
        self.assertRaises(AttributeError, setattr, tagsFilter, "canonical", ())
        self.assertNotEqual(tagsFilter, parseFilter({"key": "a", "cmp": "nex"}))
        self.assertEqual(repr(tagsFilter), "TagsFilter({'cmp': 'ex', 'key': 'a'})")


class DecodingTests(SynchronousTestCase):
    """A filter tree as the codecs read it: nested too deep for the reader is a decode error, not a traceback."""

    def test_deepJSON(self) -> None:
        for depth in (300, 500):
            body = (b'{"id":1,"subscribe":{"channel":"a","tf":' + b'{"op":"not","nodes":[' * depth + b"{}"
                    + b"]}" * depth + b"}}")
            self.assertRaises(DecodeError, JSON.decode_commands, body)
            connect = b'{"subs":{"a":{"tf":' + b'{"op":"not","nodes":[' * depth + b"{}" + b"]}" * depth + b"}}}"
            self.assertRaises(DecodeError, json_connect_request, connect)

    def test_bothCodecs(self) -> None:
        """Both codecs give the same dict, which parseFilter reads."""
        tree = {"op": "and", "nodes": [{"key": "team", "cmp": "eq", "val": "eng"},
                                       {"key": "n", "cmp": "in", "vals": ["1", "2"]}]}
        fromJSON = JSON.decode_commands(b'{"id":1,"subscribe":{"channel":"a","tf":%s}}'
                                        % repr(tree).replace("'", '"').encode())[0]["subscribe"]["tf"]
        command = client_pb2.Command(id=1)
        command.subscribe.channel = "a"
        command.subscribe.tf.op = "and"
        first, second = command.subscribe.tf.nodes.add(), command.subscribe.tf.nodes.add()
        first.key, first.cmp, first.val = "team", "eq", "eng"
        second.key, second.cmp = "n", "in"
        second.vals.extend(["1", "2"])
        data = command.SerializeToString()
        fromProtobuf = PROTOBUF.decode_commands(encode_varint(len(data)) + data)[0]["subscribe"]["tf"]
        self.assertEqual(fromJSON, tree)
        self.assertEqual(fromProtobuf, tree)
        self.assertEqual(parseFilter(fromProtobuf), parseFilter(tree))
