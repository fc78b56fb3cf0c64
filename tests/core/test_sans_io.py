"""The core stays sans-IO: no I/O library, no clock, randomness only from an injected Random.

Checked twice: statically (every import and every ``time``/``random`` call in bootstrap/core's
source) and dynamically (importing ``bootstrap.core`` in a fresh interpreter loads none of the
I/O libraries).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "bootstrap" / "core"

# Libraries that perform I/O or read a clock; the core must import none of them.
FORBIDDEN = {
    "anyio",
    "asyncio",
    "datetime",
    "dns",
    "http",
    "httpcore",
    "httpx",
    "hypercorn",
    "os",
    "select",
    "selectors",
    "socket",
    "ssl",
    "subprocess",
    "threading",
    "time",
    "trio",
    "trio_websocket",
    "urllib",
    "wsproto",
}


def core_modules() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def imported_roots(tree: ast.AST) -> set[str]:
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: p.name)
def test_core_module_imports_no_io_library(path: Path) -> None:
    """No module of bootstrap/core imports an I/O or clock library."""
    roots = imported_roots(ast.parse(path.read_text(), str(path)))
    assert roots & FORBIDDEN == set()


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: p.name)
def test_core_module_draws_randomness_only_from_an_injected_random(path: Path) -> None:
    """Only the ``random.Random`` type is named; module-level random functions are never used."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "random"
        ):
            assert node.attr == "Random", f"{path.name}:{node.lineno} uses random.{node.attr}"


def test_forbidden_check_detects_a_violation() -> None:
    """The static check is live: it flags a module that imports trio or reads the clock."""
    assert imported_roots(ast.parse("import trio\nfrom time import monotonic\n")) >= {
        "trio",
        "time",
    }


def test_importing_the_core_loads_no_io_library() -> None:
    """A fresh interpreter importing bootstrap.core has none of the I/O libraries loaded."""
    probe = (
        "import sys, bootstrap.core\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'trio','httpx','httpcore','hypercorn','trio_websocket','wsproto','dns','anyio'}))"
    )
    root = CORE.parents[1]
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=root, check=True
    )
    assert result.stdout.strip() == "[]"
