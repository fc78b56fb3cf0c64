"""The import graph of ``bootstrap``: no cycle, and the core imports nothing from the rest.

The graph is read from the source with ``ast``; nothing is imported, so a cycle is found even
where the order modules happen to load in hides it. Its rules, and why:

* Every ``.py`` file under ``bootstrap/`` is a module (``bootstrap/x/__init__.py`` is
  ``bootstrap.x``). Only imports of ``bootstrap`` modules are edges; relative imports are
  resolved against the importing module's package.
* ``import bootstrap.a.b`` is an edge to ``bootstrap.a.b`` and to each package on the way
  (``bootstrap.a``): importing a module runs its packages' ``__init__`` first.
* ``from bootstrap.a import y`` is an edge to ``bootstrap.a.y`` when that is a module, and to
  ``bootstrap.a`` (whose ``__init__`` runs, and, unless ``y`` is a module, is read from).
* A package that *contains* the importing module is not an edge when it is only passed
  through or imported from as a package of modules (``from . import y`` with ``y`` a module):
  Python has already started it before any of its modules runs, so that import runs nothing.
  Reading a *name* from it (``from . import Name``, ``from .. import Name``) is an edge: it
  needs that ``__init__`` to have got that far, which is the cycle that fails at run time.
* Imports under ``if TYPE_CHECKING:`` count too, for both rules, although they never run:
  two modules that name each other's types know each other, which is the circle the layers
  exist to prevent (``security.py <-> server.py`` was one, made only of such an import). A
  failure marks them ``TYPE_CHECKING``, so the fix is clear: move the type to the lower
  layer, or depend on a protocol there.
* Imports inside functions count like any other: a cycle broken by importing late is still a
  cycle between the layers.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import attrs
import pytest

PACKAGE = "bootstrap"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE
CORE = "bootstrap.core"


@attrs.frozen
class Import:
    """One module an import statement reaches."""

    importer: str
    target: str
    line: int
    #: Under ``if TYPE_CHECKING:``: never runs.
    type_checking_only: bool
    #: The target is a package containing the importer, only passed through (runs nothing).
    runs_nothing: bool


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Module name -> file, for every ``.py`` file under ``root`` (the package ``package``)."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _statements(
    body: Sequence[ast.AST], type_checking: bool = False
) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement in ``body`` at any depth, and whether it is TYPE_CHECKING-only."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, type_checking
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _statements(node.body, True)
            yield from _statements(node.orelse, type_checking)
        else:
            yield from _statements(list(ast.iter_child_nodes(node)), type_checking)


def _packages_of(module: str) -> set[str]:
    """The packages containing ``module`` (``a.b.c`` -> ``a``, ``a.b``)."""
    parts = module.split(".")
    return {".".join(parts[:end]) for end in range(1, len(parts))}


def imports_of(module: str, path: Path, modules: Mapping[str, Path]) -> list[Import]:
    """The ``bootstrap`` modules that ``module`` (the file ``path``) imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    containing = _packages_of(module) | ({module} if path.name == "__init__.py" else set())
    found: list[Import] = []

    def add(target: str, node: ast.stmt, type_checking: bool, *, reads_names: bool) -> None:
        if target not in modules or target == module:
            return
        runs_nothing = target in containing and not reads_names
        found.append(Import(module, target, node.lineno, type_checking, runs_nothing))

    for node, type_checking in _statements(tree.body):
        if isinstance(node, ast.Import):
            for alias in node.names:
                for parent in _packages_of(alias.name):
                    add(parent, node, type_checking, reads_names=False)
                add(alias.name, node, type_checking, reads_names=False)
            continue
        if node.level:
            base_parts = package.split(".")
            base_parts = base_parts[: len(base_parts) - (node.level - 1)]
            base = ".".join([*base_parts, *([node.module] if node.module else [])])
        else:
            base = node.module or ""
        for parent in _packages_of(base):
            add(parent, node, type_checking, reads_names=False)
        submodules = [f"{base}.{alias.name}" for alias in node.names]
        names_read = [name for name in submodules if name not in modules]
        add(base, node, type_checking, reads_names=bool(names_read))
        for submodule in submodules:
            add(submodule, node, type_checking, reads_names=False)
    return found


def import_graph(root: Path, package: str) -> list[Import]:
    modules = module_names(root, package)
    return [found for name, path in modules.items() for found in imports_of(name, path, modules)]


def dependencies(imports: Sequence[Import]) -> dict[str, dict[str, Import]]:
    """importer -> {target: the first import reaching it}; a package's own modules excluded."""
    graph: dict[str, dict[str, Import]] = {}
    for found in imports:
        if not found.runs_nothing:
            graph.setdefault(found.importer, {}).setdefault(found.target, found)
    return graph


def find_cycle(graph: Mapping[str, Sequence[str] | Mapping[str, object]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or None; deterministic (sorted order).

    Depth-first search with the usual three colours: reaching a node that is still on the
    path closes a cycle, which is that part of the path.
    """
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(node: str) -> list[str] | None:
        path.append(node)
        on_path.add(node)
        for successor in sorted(graph.get(node, ())):
            if successor in on_path:
                return [*path[path.index(successor) :], successor]
            if successor not in done:
                cycle = visit(successor)
                if cycle is not None:
                    return cycle
        path.pop()
        on_path.discard(node)
        done.add(node)
        return None

    for start in sorted(graph):
        if start not in done:
            cycle = visit(start)
            if cycle is not None:
                return cycle
    return None


def describe_cycle(cycle: Sequence[str], graph: Mapping[str, Mapping[str, Import]]) -> str:
    def step(importer: str, target: str) -> str:
        found = graph[importer][target]
        where = "line" if not found.type_checking_only else "TYPE_CHECKING, line"
        return f"  {importer} -> {target} ({where} {found.line})"

    steps = [step(importer, target) for importer, target in itertools.pairwise(cycle)]
    return "import cycle: " + " -> ".join(cycle) + "\n" + "\n".join(steps)


# --- the rules, on bootstrap itself -------------------------------------------------------------


def test_the_graph_is_read() -> None:
    """Sanity: the graph has the edges it obviously has (a vacuous graph would pass anything)."""
    graph = dependencies(import_graph(ROOT, PACKAGE))
    assert "bootstrap.core.settings" in graph["bootstrap.core.machine"]
    assert "bootstrap.core.errors" in graph["bootstrap.core.settings"]
    assert "bootstrap.discovery.base" in graph["bootstrap.discovery.dns"]
    assert "bootstrap.core" in graph["bootstrap.commands.options"]


def test_bootstrap_has_no_import_cycle() -> None:
    """No chain of imports inside bootstrap leads back to where it started."""
    graph = dependencies(import_graph(ROOT, PACKAGE))
    cycle = find_cycle(graph)
    assert cycle is None, describe_cycle(cycle, graph)


def test_the_core_imports_nothing_from_the_rest_of_bootstrap() -> None:
    """bootstrap.core depends on no driver, command or simulation (TYPE_CHECKING included)."""
    outside = [
        f"{found.importer} imports {found.target} (line {found.line})"
        for found in import_graph(ROOT, PACKAGE)
        if (found.importer == CORE or found.importer.startswith(CORE + "."))
        and not (found.target == CORE or found.target.startswith(CORE + "."))
        and not found.runs_nothing
    ]
    assert outside == []


# --- the checks can fail ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("graph", "cycle"),
    [
        ({}, None),
        ({"a": ["b", "c"], "b": ["c"], "c": []}, None),  # a diamond is no cycle
        ({"a": ["a"]}, ["a", "a"]),
        ({"a": ["b"], "b": ["a"]}, ["a", "b", "a"]),
        ({"x": ["a"], "a": ["b"], "b": ["c"], "c": ["a"]}, ["a", "b", "c", "a"]),
        ({"a": ["b"], "b": [], "c": ["d"], "d": ["c"]}, ["c", "d", "c"]),
    ],
)
def test_find_cycle_on_small_graphs(graph: dict[str, list[str]], cycle: list[str] | None) -> None:
    """The cycle finder reports a cycle exactly when there is one, as the path around it."""
    assert find_cycle(graph) == cycle


def write_package(root: Path, files: Mapping[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_a_cycle_through_relative_imports_is_found(tmp_path: Path) -> None:
    """A made-up package whose modules import each other fails the no-cycle rule."""
    root = write_package(
        tmp_path / "pkg",
        {
            "__init__.py": "from .server import serve\n",
            "security.py": "from . import server\n",
            "server/__init__.py": "from .app import serve\n",
            "server/app.py": "from ..security import secret\n\ndef serve(): ...\n",
        },
    )
    graph = dependencies(import_graph(root, "pkg"))
    cycle = find_cycle(graph)
    assert cycle == ["pkg.server", "pkg.server.app", "pkg.security", "pkg.server"]
    assert describe_cycle(cycle, graph).splitlines() == [
        "import cycle: pkg.server -> pkg.server.app -> pkg.security -> pkg.server",
        "  pkg.server -> pkg.server.app (line 1)",
        "  pkg.server.app -> pkg.security (line 1)",
        "  pkg.security -> pkg.server (line 1)",
    ]


def test_the_packages_a_module_sits_in_are_no_edge_but_types_are(tmp_path: Path) -> None:
    """Passing through the packages a module sits in is no edge; names read and types are."""
    root = write_package(
        tmp_path / "pkg",
        {
            "__init__.py": "from .a import A\nfrom .b import B\n",
            "a.py": (
                "from typing import TYPE_CHECKING\n"
                "import pkg.b\n"
                "from . import b\n"
                "if TYPE_CHECKING:\n"
                "    from .c import C\n"
            ),
            "b.py": "import pkg\n",
            "c.py": "from .a import A\n",
        },
    )
    graph = dependencies(import_graph(root, "pkg"))
    assert graph["pkg.a"] == {
        "pkg.b": Import("pkg.a", "pkg.b", 2, False, False),
        "pkg.c": Import("pkg.a", "pkg.c", 5, True, False),
    }
    assert "pkg.b" not in graph  # its ``import pkg`` only passes through its own package
    # a and c name each other, c only for its types: a cycle all the same, marked as such.
    cycle = find_cycle(graph)
    assert cycle == ["pkg.a", "pkg.c", "pkg.a"]
    assert describe_cycle(cycle, graph).splitlines()[1:] == [
        "  pkg.a -> pkg.c (TYPE_CHECKING, line 5)",
        "  pkg.c -> pkg.a (line 1)",
    ]
    # Without it, no cycle: b's ``import pkg`` only passes through the package b sits in...
    (root / "c.py").write_text("", encoding="utf-8")
    assert find_cycle(dependencies(import_graph(root, "pkg"))) is None
    # ...but reading a name from it needs its __init__ to have got that far: a cycle.
    (root / "b.py").write_text("from . import A\n", encoding="utf-8")
    assert find_cycle(dependencies(import_graph(root, "pkg"))) == ["pkg", "pkg.a", "pkg.b", "pkg"]


def test_a_core_module_importing_a_driver_is_found(tmp_path: Path) -> None:
    """The core rule sees relative, absolute and TYPE_CHECKING imports out of the core."""
    root = write_package(
        tmp_path / "bootstrap",
        {
            "__init__.py": "",
            "node.py": "",
            "core/__init__.py": "from .machine import Machine\n",
            "core/machine.py": (
                "from typing import TYPE_CHECKING\n"
                "from . import settings\n"
                "if TYPE_CHECKING:\n"
                "    from ..node import Node\n"
            ),
            "core/settings.py": "import bootstrap.node\n",
        },
    )
    outside = {
        (found.importer, found.target)
        for found in import_graph(root, "bootstrap")
        if found.importer.startswith(CORE) and not found.target.startswith(CORE)
        if not found.runs_nothing
    }
    assert outside == {
        ("bootstrap.core.machine", "bootstrap.node"),
        ("bootstrap.core.settings", "bootstrap.node"),
    }
