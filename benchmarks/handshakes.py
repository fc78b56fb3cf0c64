"""The kernel's exact count of the TCP connections each node opened: nftables counters.

Sampling the socket table once a second (``procfs.ConnectionTracker``) sees every connection
that ends in TIME_WAIT, but not one reset within milliseconds of its start (a watch closed with
unread data, a connect cut short), and such resets happen when a node changes the peers it
probes. The kernel itself counts exactly: one named nftables counter per node, incremented by
every SYN-ACK the node receives from a management port, is one per TCP handshake the node
started and got an answer to (a refused connect gets a reset, not a SYN-ACK). On loopback and on
a bridge nothing is lost, so no SYN-ACK is sent twice.

The counters live in the node's own network namespace (one table per namespace), or, under
loopback isolation, in one table of the host's namespace with a rule per node address. The
table is removed when the run ends. Needs root and ``nft``; :meth:`HandshakeCounters.install`
returns ``None`` without them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence

from benchmarks.isolation import Isolation

__all__ = ["HandshakeCounters"]


class HandshakeCounters:
    """Per node, the SYN-ACKs it received from ``port``: the connections it opened."""

    def __init__(self, isolation: Isolation, port: int, table: str) -> None:
        self._isolation = isolation
        self._port = port
        self._table = table
        self._installed: list[int] = []

    @classmethod
    def install(cls, isolation: Isolation, port: int) -> HandshakeCounters | None:
        """Counters for every node of ``isolation``, or ``None`` without root or ``nft``."""
        if os.geteuid() != 0 or shutil.which("nft") is None:
            return None
        counters = cls(isolation, port, table=f"cbb_handshakes_{os.getpid()}_{port}")
        try:
            for index, address in enumerate(isolation.addresses):
                counters._nft(index, input=counters._rules(index, address))
                counters._installed.append(index)
        except BaseException:
            counters.remove()
            raise
        return counters

    def _rules(self, index: int, address: str) -> str:
        table = f"inet {self._table}"
        return "\n".join(
            [
                f"add table {table}",
                f"add chain {table} input {{ type filter hook input priority 0; }}",
                f"add counter {table} node{index}",
                f"add rule {table} input ip daddr {address} tcp sport {self._port} "
                f'tcp flags & (syn | ack) == (syn | ack) counter name "node{index}"',
            ]
        )

    def counts(self) -> dict[str, int]:
        """Connections opened so far, per node address."""
        counts = {}
        for index in self._installed:
            listing = self._nft(index, "-j", "list", "counter", "inet", self._table, f"node{index}")
            for item in json.loads(listing)["nftables"]:
                if "counter" in item:
                    counts[self._isolation.addresses[index]] = int(item["counter"]["packets"])
        return counts

    def remove(self) -> None:
        """Delete the table from every namespace it was added to (once per namespace)."""
        done: set[tuple[str, ...]] = set()
        for index in self._installed:
            prefix = tuple(self._isolation.command_prefix(index))
            if prefix not in done:
                done.add(prefix)
                self._nft(index, "delete", "table", "inet", self._table, check=False)
        self._installed.clear()

    def _nft(self, index: int, *args: str, input: str | None = None, check: bool = True) -> str:
        command: Sequence[str] = [
            *self._isolation.command_prefix(index),
            "nft",
            *(args or ("-f", "-")),
        ]
        result = subprocess.run(
            command, input=input, capture_output=True, text=True, timeout=30, check=False
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.strip()}")
        return result.stdout
