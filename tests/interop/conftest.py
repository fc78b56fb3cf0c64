"""The interop tests' shared fixture: the Pekko node's jar."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks.pekko.driver import build_jar, jar_is_fresh, java_available, maven_available


@pytest.fixture(scope="session")
def pekko_jar() -> Path:
    """The Pekko node's jar, built by Maven if missing or stale; skips where Java is missing."""
    if not java_available():
        pytest.skip("no `java` on PATH: these tests run real Apache Pekko nodes (install JDK 17)")
    if not jar_is_fresh() and not maven_available():
        reason = "no `mvn` on PATH to build benchmarks/pekko/ (install Maven)"
        if os.environ.get("CI"):
            pytest.fail(f"CI has java but cannot build the Pekko node: {reason}")
        pytest.skip(reason)
    return build_jar()
