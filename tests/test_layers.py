# -*- test-case-name: tests.test_layers -*-
"""
The import contract of the package (docs/architecture.md): every module belongs to one layer, and imports only
from its own layer's subpackage or from layers below it. No import cycles at all, between modules or subpackages.

Imports under ``if TYPE_CHECKING:`` are not counted (they never run); imports inside functions are: a late import is
still an arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "httpstream"

# Bottom to top. A module may import modules of its own entry or of any entry above it in this list (lower layers).
LAYERS: list[tuple[str, ...]] = [
    ("httpstream", "httpstream.version"),
    ("httpstream.protocol",),
    ("httpstream.readers",),
    ("httpstream.interfaces",),
    ("httpstream.logs", "httpstream.metrics", "httpstream.origin"),
    ("httpstream.config",),
    ("httpstream.decisions", "httpstream.emulation", "httpstream.values"),
    ("httpstream.engines",),
    # The cluster and the policy reach the node through structural types (ControlledNode, PolicyHost): the node
    # holds its control plane and provides its policy, so both sit below it.
    ("httpstream.cluster",),
    ("httpstream.policy",),
    ("httpstream.node",),
    ("httpstream.client",),
    ("httpstream.transports",),
    ("httpstream.serverapi",),
    ("httpstream.web",),
    ("httpstream.listeners",),
    ("httpstream.workers",),
    ("httpstream.service", "httpstream.memoryserver", "httpstream.testing", "httpstream.tap", "httpstream.cli"),
]


def moduleName(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layerOf(module: str) -> int:
    """The index in L{LAYERS} of the longest prefix naming C{module}'s layer."""
    best, found = -1, -1
    for index, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best:
                best, found = len(name), index
    if found < 0:
        raise LookupError(f"{module} is in no layer: add it to LAYERS in {__file__}")
    return found


def _typeCheckingOnly(tree: ast.Module) -> set[int]:
    """The ids of import nodes under C{if TYPE_CHECKING:} (they never run)."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                for sub in ast.walk(inner):
                    skipped.add(id(sub))
    return skipped


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) for each httpstream module C{path} imports when it runs."""
    module = moduleName(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    skipped = _typeCheckingOnly(tree)
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "httpstream":
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != "httpstream":
                continue
            for alias in node.names:
                # "from httpstream.x import y": y may be a submodule (then that module is the target) or a name in x.
                candidate = f"{source}.{alias.name}"
                yield node.lineno, candidate if _isModule(candidate) else source


def _isModule(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def graph() -> dict[str, set[tuple[int, str]]]:
    return {moduleName(path): set(imports(path)) for path in sorted(PACKAGE.rglob("*.py"))}


def wrongArrows(edges: dict[str, set[tuple[int, str]]]) -> list[str]:
    """Each import that points up a layer, as 'module:line -> target (layer a -> layer b)'."""
    wrong = []
    for module, targets in sorted(edges.items()):
        for line, target in sorted(targets):
            if layerOf(target) > layerOf(module):
                wrong.append(f"{module}:{line} imports {target} (layer {LAYERS[layerOf(module)][0]} may not import "
                             f"from {LAYERS[layerOf(target)][0]}, above it)")
    return wrong


def cycles(edges: dict[str, set[tuple[int, str]]]) -> list[list[str]]:
    """The import cycles between modules (a package counts as its __init__), each once."""
    simple = {m: {t for _, t in ts if t != m} for m, ts in edges.items()}
    found: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(simple.get(m, ())):
            if state.get(t) == 1:
                found.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(simple):
        if m not in state:
            visit(m)
    return found


def test_everyModuleHasALayer() -> None:
    for module in graph():
        layerOf(module)


def test_arrowsPointDown() -> None:
    """transports -> client -> node -> engines, never back (and so for every layer in L{LAYERS})."""
    assert wrongArrows(graph()) == []


def test_noCycles() -> None:
    assert cycles(graph()) == []


def test_aWrongArrowIsFound() -> None:
    """The checker itself: an engine importing a transport, and a two-module cycle, are reported."""
    edges = {
        "httpstream.engines.memory": {(3, "httpstream.transports.websocket")},
        "httpstream.transports.websocket": {(5, "httpstream.engines.memory")},
    }
    assert wrongArrows(edges) == [
        "httpstream.engines.memory:3 imports httpstream.transports.websocket (layer httpstream.engines may not "
        "import from httpstream.transports, above it)"
    ]
    assert cycles(edges) == [["httpstream.engines.memory", "httpstream.transports.websocket",
                              "httpstream.engines.memory"]]


@pytest.mark.parametrize("subpackage", sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py")))
def test_subpackageSaysWhatItOwns(subpackage: str) -> None:
    """Each subpackage's docstring says what it owns and what it may import."""
    doc = ast.get_docstring(ast.parse((PACKAGE / subpackage / "__init__.py").read_text(encoding="utf-8")))
    assert doc and "May import" in doc, f"httpstream/{subpackage}/__init__.py: say what it owns and 'May import: ...'"


def test_modulesAreShort() -> None:
    """No module over 450 lines (generated code aside): one concept per module."""
    long = [f"{p.relative_to(PACKAGE.parent)}: {n}" for p in sorted(PACKAGE.rglob("*.py"))
            if not p.name.endswith("_pb2.py") and (n := len(p.read_text(encoding="utf-8").splitlines())) > 450]
    assert long == []
