"""The benchmarks' node processes: ours or the emulated anchor (``churn_node``), or a Pekko JVM.

Both kinds look the same to an orchestrator (``benchmarks/churn.py``,
``benchmarks/split_brain_real.py``):

* ``listening_at``: when the node's management server listened (wall clock), or ``None``;
* ``latest``: the node's latest record, with at least ``decided_at``, ``joined_at`` (wall clock
  or ``None``) and ``decision`` (``"join-self"``, ``"join-seed-nodes"`` or ``None``), and the
  node's own counters where it has any (``connections_opened``, ``requests_served``: a Pekko
  node reports none, so those keys are absent, not zero);
* ``pid`` (the node's own process, also under ``ip netns exec``), ``alive``,
  ``wait_listening(timeout)``, ``terminate()`` (signal only, so many nodes shut down at once) and
  ``stop()`` (bounded: SIGTERM, then SIGKILL).

A cluster formed twice shows as two ``join-self`` decisions among the nodes: the only way a
node of either kind starts a cluster is its bootstrap's self-join.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, TextIO

from benchmarks.pekko.driver import PekkoNode, PekkoNodeConfig, PekkoNodeError

__all__ = ["PEKKO_REMOTE_PORT", "ChurnNodeProcess", "NodeProcess", "PekkoProcess"]

ROOT = Path(__file__).resolve().parent.parent
#: Pekko's cluster (artery TCP) port on every node; only management traffic is measured.
PEKKO_REMOTE_PORT = 25520
# How long a stopping node may take before SIGKILL: Pekko leaves its cluster gracefully first.
_STOP_GRACE = 10.0


class NodeProcess(Protocol):
    index: int
    address: str
    spawned_at: float

    @property
    def listening_at(self) -> float | None: ...

    @property
    def latest(self) -> dict[str, Any]: ...

    @property
    def pid(self) -> int: ...

    @property
    def alive(self) -> bool: ...

    def wait_listening(self, timeout: float) -> None: ...

    def terminate(self) -> None: ...

    def stop(self) -> None: ...


class ChurnNodeProcess:
    """A running ``benchmarks/churn_node.py`` and the latest of what it printed."""

    def __init__(self, index: int, address: str, command: list[str], log: Path) -> None:
        self.index = index
        self.address = address
        self.spawned_at = time.time()
        self.listening_at: float | None = None
        self.latest: dict[str, Any] = {}
        self._log = log.open("w")
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True)
        self._reader.start()

    @classmethod
    def command(cls, prefix: Sequence[str], **flags: object) -> list[str]:
        """``python -m benchmarks.churn_node --flag=value...`` behind ``prefix``; a flag whose
        value is ``None`` is left out."""
        return [
            *prefix,
            sys.executable,
            "-m",
            "benchmarks.churn_node",
            *(
                f"--{name.replace('_', '-')}={value}"
                for name, value in flags.items()
                if value is not None
            ),
        ]

    def _read(self, stream: TextIO) -> None:
        for line in stream:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            with self._changed:
                if record.get("event") == "listening":
                    self.listening_at = float(record["wall"])
                else:
                    self.latest = record
                self._changed.notify_all()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_listening(self, timeout: float) -> None:
        with self._changed:
            if not self._changed.wait_for(
                lambda: self.listening_at is not None or not self.alive, timeout
            ):
                raise RuntimeError(f"node {self.address} did not start within {timeout} s")
        if self.listening_at is None:
            raise RuntimeError(
                f"node {self.address} exited with {self.process.poll()} before listening; "
                f"see {self._log.name}"
            )

    def terminate(self) -> None:
        if self.alive:
            self.process.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        self.terminate()
        try:
            self.process.wait(timeout=_STOP_GRACE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=5)
        self._log.close()


class PekkoProcess:
    """A running Pekko node (:class:`benchmarks.pekko.driver.PekkoNode`) seen as a node process.

    ``latest`` is read from its output: ``decision`` and ``decided_at`` from the bootstrap's
    decision line, ``joined_at`` from ``EVENT self-up`` (the node is Up in a cluster). Its output
    goes to ``log`` when it stops.
    """

    def __init__(
        self, index: int, config: PekkoNodeConfig, jar: Path, log: Path, prefix: Sequence[str]
    ) -> None:
        self.index = index
        self.address = config.host
        self.spawned_at = time.time()
        self._log = log
        self.node = PekkoNode.start(config, jar=jar, prefix=prefix)

    @property
    def listening_at(self) -> float | None:
        return self.node.ready_at

    @property
    def latest(self) -> dict[str, Any]:
        decision = self.node.decision
        up = next((event for event in self.node.events if event.kind == "self-up"), None)
        return {
            "decision": None if decision is None else decision[0],
            "decided_at": None if decision is None else decision[1],
            "joined_at": None if up is None else up.wall,
        }

    @property
    def pid(self) -> int:
        return self.node.pid

    @property
    def alive(self) -> bool:
        return self.node.returncode is None

    def wait_listening(self, timeout: float) -> None:
        try:
            self.node.wait_ready(timeout)
        except PekkoNodeError as error:
            raise RuntimeError(f"Pekko node {self.address}: {error}") from error

    def terminate(self) -> None:
        self.node.terminate()

    def stop(self) -> None:
        self.node.stop(grace=_STOP_GRACE)
        self._log.write_text("\n".join(self.node.lines) + "\n")
