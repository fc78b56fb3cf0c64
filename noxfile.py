"""The only way tests, lint, type checks and benchmarks are run (locally and in CI)."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "typecheck", "tests"]

PYPROJECT = nox.project.load_toml("pyproject.toml")

# The sans-IO core is the part every decision rests on; keep it (almost) fully exercised.
CORE_COVERAGE_FLOOR = 95


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite with branch coverage; fail if the core drops below its floor."""
    session.install("-e", ".", *nox.project.dependency_groups(PYPROJECT, "tests"))
    session.run("coverage", "erase")
    session.run("coverage", "run", "-m", "pytest", *session.posargs)
    session.run("coverage", "report", "--include=bootstrap/*")
    session.run(
        "coverage",
        "report",
        "--include=bootstrap/core/*",
        f"--fail-under={CORE_COVERAGE_FLOOR}",
    )


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint rules and formatting."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package."""
    session.install("-e", ".", *nox.project.dependency_groups(PYPROJECT, "typecheck"))
    session.run("mypy", "--strict", "bootstrap")


@nox.session
def bench(session: nox.Session) -> None:
    """The connection-churn benchmark; pass its options after ``--`` (e.g. ``-- --quick``).

    Network namespaces need root and iproute2; ``-- --isolation loopback`` runs without them.
    """
    session.install("-e", ".", *nox.project.dependency_groups(PYPROJECT, "bench"))
    session.run("python", "benchmarks/churn.py", *session.posargs)
