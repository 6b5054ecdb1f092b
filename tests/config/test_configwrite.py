"""Config documents written as JSON, YAML and TOML read back as they were (in memory, any document)."""

from __future__ import annotations

import tomllib
from typing import Any

import orjson
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from httpstream.config.write import dumpDocument, formatOf

# What config documents hold: strings (any text a file can carry), booleans, 64-bit integers, lists and objects.
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
scalars = st.one_of(text, st.booleans(), st.integers(-(2**63), 2**63 - 1))
values = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(text, children, max_size=4)),
    max_leaves=20,
)
documents = st.dictionaries(text, values, max_size=6)


@given(documents)
def test_tomlReadsBack(document: dict[str, Any]) -> None:
    assert tomllib.loads(dumpDocument(document, "toml", v6=False).decode("utf-8")) == document


@given(documents)
def test_yamlReadsBack(document: dict[str, Any]) -> None:
    assert yaml.safe_load(dumpDocument(document, "yaml", v6=False)) == document


@given(documents)
def test_jsonReadsBack(document: dict[str, Any]) -> None:
    assert orjson.loads(dumpDocument(document, "json", v6=False)) == document


def test_tomlTablesAndArraysOfTables() -> None:
    document = {
        "port": 8000,
        "channel": {"namespaces": [{"name": "a", "x": {"y": 1}}, {"name": "b"}], "without_namespace": {}},
        "mixed": [{"k": 1}, "s"],
        "odd key": "tab\tquote\"del\x7f",
    }
    written = dumpDocument(document, "toml", v6=False).decode("utf-8")
    assert "[[channel.namespaces]]" in written and '"odd key" = ' in written
    assert tomllib.loads(written) == document


@pytest.mark.parametrize("name,format", [("a.json", "json"), ("b.YAML", "yaml"), ("c.yml", "yaml"), ("d.toml", "toml")])
def test_formatByExtension(name: str, format: str) -> None:
    assert formatOf(name) == format


def test_otherExtensionsRefused() -> None:
    with pytest.raises(ValueError, match=r"\.json, \.yaml, \.yml, \.toml"):
        formatOf("config.ini")
