"""Run one of ``benchmarks/*.py`` as a user would, and read the JSON it wrote."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def run_benchmark(
    script: str, *arguments: str, output: Path, document: str, timeout: float
) -> dict[str, Any]:
    """``python benchmarks/<script> <arguments> --output=<output>`` from the repository root;
    it must exit 0 (its output's tail is the failure message). Returns ``output/document``."""
    completed = subprocess.run(
        [sys.executable, f"benchmarks/{script}", *arguments, f"--output={output}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    loaded: dict[str, Any] = json.loads((output / document).read_text())
    return loaded
