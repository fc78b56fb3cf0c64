"""The README's tutorial program runs as printed: three replicas form one cluster."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.helpers.ports import free_port
from tests.helpers.running import run

README = Path(__file__).resolve().parents[1] / "README.md"


def tutorial_source() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    (block,) = [b for b in blocks if "open_node" in b]
    # Everything but the last line, which starts one replica with fixed addresses.
    body, last = block.rstrip().rsplit("\n", 1)
    assert last.startswith("trio.run(main,")
    return body


def test_readme_tutorial_forms_a_cluster(capsys: pytest.CaptureFixture[str]) -> None:
    """Three copies of the tutorial's main() on 127.0.0.91..93 all print that they joined."""
    namespace: dict[str, Any] = {}
    exec(compile(tutorial_source(), "README.md", "exec"), namespace)
    port = free_port()
    everyone = [f"127.0.0.{i}:{port}" for i in (91, 92, 93)]

    async def replicas() -> None:
        async with trio.open_nursery() as nursery:
            for address in everyone:
                nursery.start_soon(namespace["main"], address, everyone)
            seen = ""
            while seen.count("joined:") < 3:
                await trio.sleep(0.1)
                seen += capsys.readouterr().out
            nursery.cancel_scope.cancel()
        assert seen.count("JoinSelf()") == 1
        assert seen.count("JoinSeedNodes(") == 2

    run(replicas, seconds=30)
