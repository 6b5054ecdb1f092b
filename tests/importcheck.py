"""
Run by tests/test_wheel.py with a clean venv's interpreter (``python -I``: only that venv on sys.path): import every
module the installed httpstream package and its twistd plugin import, on any code path (imports inside functions
too; not those under ``if TYPE_CHECKING:``), and print one line per module that does not import. Exit 1 if any.

Standard library only: it must not depend on anything the wheel might have failed to bring.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from pathlib import Path


def sources() -> list[Path]:
    package = importlib.util.find_spec("httpstream")
    assert package is not None and package.submodule_search_locations, "httpstream is not installed"
    root = Path(list(package.submodule_search_locations)[0])
    plugin = importlib.util.find_spec("twisted.plugins.httpstream_plugin")
    assert plugin is not None and plugin.origin, "the twistd plugin is not installed"
    return sorted(root.rglob("*.py")) + [Path(plugin.origin)]


def importedModules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            # "from twisted.internet import ssl" imports a submodule: check it as one.
            names.update(f"{node.module}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


def main() -> int:
    wanted: dict[str, str] = {}
    for path in sources():
        for name in importedModules(path):
            wanted.setdefault(name, path.name)
    failed = 0
    for name in sorted(wanted):
        parent, _, leaf = name.rpartition(".")
        try:
            if parent and importlib.util.find_spec(parent) is not None:
                module = importlib.import_module(parent)
                if hasattr(module, leaf) and not _isSubmodule(parent, leaf):
                    continue  # a name defined in the parent module, imported with it
            importlib.import_module(name)
        except ImportError as e:
            failed += 1
            print(f"{name} (imported by {wanted[name]}): {type(e).__name__}: {e}")
    return 1 if failed else 0


def _isSubmodule(parent: str, leaf: str) -> bool:
    try:
        return importlib.util.find_spec(f"{parent}.{leaf}") is not None
    except (ImportError, ValueError):
        return False


if __name__ == "__main__":
    sys.exit(main())
