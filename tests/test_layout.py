"""The package's shape stays what docs/architecture.md says: no import cycles, every import
pointing down the layers, a core that does no I/O, and every documented import working.

The module graph is read from the source with ``ast``: imports inside functions count
(they run), imports under ``if TYPE_CHECKING:`` do not (they never run), though they too
must point down the layers.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "bzzlite"

#: The layers, bottom first (docs/architecture.md): a module may import from its own layer's
#: units and from the layers below, never from above. A unit is a top-level module or package.
LAYERS: list[set[str]] = [
    {"errors", "signals"},
    {"models", "permissions", "query", "routing", "mocks", "cors", "settings"},
    {"registry"},
    {"stores", "openapi", "http"},
    {"runtime"},
    {"documents"},
    {"feeds"},
    {"handlers"},
    {"auth"},
    {"app"},
    {"asgi"},
    {"cli", "testing", "testclient", "fixtures", "bzzlite", "__main__"},
]
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}

#: Objects of one server that refer back to their owner for their type only: a connection to
#: the server that accepted it, an exchange to its connection. No such import runs.
TYPE_ONLY_CYCLES = [{"bzzlite.http.exchange", "bzzlite.http.protocol", "bzzlite.http.server"}]

#: What the core (declarations, the query language, the OpenAPI generator) and the operations
#: layer never load: no web framework, no server, no database driver.
IO_MODULES = ("tornado", "httptools", "uvloop", "motor", "pymongo", "sqlite3")
PURE_UNITS = ("errors", "signals", "models", "permissions", "query", "routing", "mocks", "cors", "settings", "registry",
              "openapi", "documents")


def _modules() -> dict[str, tuple[Path, bool]]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


MODULES = _modules()


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(module: str) -> tuple[set[str], set[str], set[str]]:
    """(bzzlite modules imported at run time, under TYPE_CHECKING, other top-level packages at run time)."""
    path, is_package = MODULES[module]
    run, typing_only, external = set(), set(), set()

    def add(target: str, into: set[str]) -> None:
        while target and target not in MODULES:
            target = target.rpartition(".")[0]
        if target and target != module:
            into.add(target)

    def visit(node: ast.AST, checking: bool) -> None:
        if isinstance(node, ast.If) and _type_checking(node.test):
            for child in node.body:
                visit(child, True)
            for child in node.orelse:
                visit(child, checking)
            return
        into = typing_only if checking else run
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "bzzlite":
                    add(alias.name, into)
                elif not checking:
                    external.add(alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == "bzzlite":
                for alias in node.names:
                    candidate = f"{target}.{alias.name}"
                    add(candidate if candidate in MODULES else target, into)
            elif not checking and target:
                external.add(target.split(".")[0])
        for child in ast.iter_child_nodes(node):
            visit(child, checking)

    visit(ast.parse(path.read_text()), False)
    return run, typing_only - run, external


GRAPH = {module: _imports(module) for module in MODULES}


def _cycles(edges: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in edges.get(node, ()):
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = set()
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.add(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in sorted(edges):
        if node not in index:
            connect(node)
    return found


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "bzzlite"


def test_no_import_cycles() -> None:
    """No module imports, directly or through others, a module that imports it back at run time
    (imports inside functions included)."""
    assert _cycles({m: run for m, (run, _, _) in GRAPH.items()}) == []


def test_type_only_imports_make_no_cycles_but_the_documented_one() -> None:
    cycles = _cycles({m: run | typing_only for m, (run, typing_only, _) in GRAPH.items()})
    assert cycles == TYPE_ONLY_CYCLES


def test_the_cycle_check_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]


def test_every_unit_has_a_layer() -> None:
    assert {_unit(m) for m in MODULES} == set(RANK)


def test_imports_point_down_the_layers() -> None:
    upward = sorted(
        f"{module} imports {target}"
        for module, (run, typing_only, _) in GRAPH.items()
        for target in run | typing_only
        if RANK[_unit(target)] > RANK[_unit(module)]
    )
    assert upward == []


def test_the_core_and_the_operations_layer_do_no_io() -> None:
    """What a pure module loads, following every bzzlite import (inside functions too)."""
    loaded: dict[str, set[str]] = {}

    def external(module: str, seen: set[str]) -> set[str]:
        if module in seen:
            return set()
        seen.add(module)
        run, _, outside = GRAPH[module]
        result = set(outside)
        for target in run:
            result |= external(target, seen)
        return result

    for module in MODULES:
        if _unit(module) in PURE_UNITS:
            io = external(module, set()) & set(IO_MODULES)
            if io:
                loaded[module] = io
    assert loaded == {}


def test_helpers_of_the_operations_layer_stay_inside_it() -> None:
    """Handlers, auth and the app reach documents through the package's names (Documents,
    NestedDocuments, transaction...), never through its helper modules; the change feeds
    alone render and match events with ``conversion`` and ``matcher``."""
    helpers = {"bzzlite.documents.conversion", "bzzlite.documents.references", "bzzlite.documents.paths",
               "bzzlite.documents.matcher", "bzzlite.documents.operations", "bzzlite.documents.nested",
               "bzzlite.documents.transactions"}
    reaching = sorted(
        f"{module} imports {target}"
        for module, (run, typing_only, _) in GRAPH.items()
        for target in (run | typing_only) & helpers
        if _unit(module) != "documents"
        and not (_unit(module) == "feeds" and target in {"bzzlite.documents.conversion", "bzzlite.documents.matcher"})
    )
    assert reaching == []


# -- every import the documentation shows ---------------------------------------------------

_FROM = re.compile(r"^\s*from (bzzlite(?:\.\w+)*) import ([^#\n(]+)$", re.M)
_IMPORT = re.compile(r"^\s*import (bzzlite(?:\.\w+)*)", re.M)
_DOTTED = re.compile(r"[`:]\s*(bzzlite(?:\.\w+)+)")  # `bzzlite.query.All`, ::: bzzlite.auth.Auth


def _documented() -> set[tuple[str, str | None]]:
    sources = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "examples").glob("*.py"))]
    names: set[tuple[str, str | None]] = set()
    for source in sources:
        text = source.read_text()
        for module, imported in _FROM.findall(text):
            for name in imported.split(","):
                name = name.strip().split(" as ")[0].strip()
                if name:
                    names.add((module, name))
        names |= {(module, None) for module in _IMPORT.findall(text)}
        names |= {(dotted, None) for dotted in _DOTTED.findall(text)}
    return names


DOCUMENTED = sorted(_documented(), key=lambda pair: (pair[0], pair[1] or ""))


def test_the_docs_show_imports() -> None:
    assert ("bzzlite.testclient", "TestClient") in DOCUMENTED
    assert ("bzzlite.testing", "serve") in DOCUMENTED
    assert len(DOCUMENTED) > 40


@pytest.mark.parametrize(("module", "name"), DOCUMENTED, ids=lambda value: str(value))
def test_every_documented_import_works(module: str, name: str | None) -> None:
    if name is not None:
        assert hasattr(importlib.import_module(module), name), f"from {module} import {name}"
        return
    # a dotted name: the longest importable module prefix, then attributes
    parts = module.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            value = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            assert hasattr(value, attribute), f"{module}: no {attribute}"
            value = getattr(value, attribute)
        return
    pytest.fail(f"{module} names nothing importable")
