"""etcd members formed by cluster-bootstrap sidecars, each in a network namespace of its own.

Member ``i`` is node ``i`` of a :class:`~tests.faults.cluster.FaultCluster`: its node listens on
``10.213.0.<i+1>:8558``, advertises the selfNode ``etcd://10.213.0.<i+1>:2379,2380`` and joins
with ``examples/etcd/etcd_hook.py`` as its ``--join-command``, which starts a real etcd on that
address (data directory ``etcd-<i>`` under the test's directory). The test process reads etcd
with ``etcdctl`` run inside the member's namespace, against that member's own client URL only:
what a member says is never mixed with what another says.

The etcd tests (``test_etcd_cluster.py``) and ``benchmarks/etcd_formation.py`` share this.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from ..faults.cluster import REPO, FaultCluster

HOOK = REPO / "examples" / "etcd" / "etcd_hook.py"
CLIENT_PORT, PEER_PORT = 2379, 2380
ETCDCTL_TIMEOUT = 15.0
POLL_INTERVAL = 0.5
_RETRIES = re.compile(rb"etcd-hook: member \S+ is healthy; member add retries: (\d+)")


def require_etcd() -> None:
    """Skip the module (fail under CI) unless ``etcd`` and ``etcdctl`` are on PATH."""
    missing = [name for name in ("etcd", "etcdctl") if shutil.which(name) is None]
    if not missing:
        return
    message = f"the etcd tests need {' and '.join(missing)} (Debian: etcd-server, etcd-client)"
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message, allow_module_level=True)


#: ``FaultCluster(tmp_path, count, **ETCD_NODES)``: every member's selfNode follows the hook's
#: convention, and a join may fail (the hook exits 1 when etcd refuses to start; the node then
#: decides again, and the hook runs again).
ETCD_NODES: dict[str, Any] = {
    "node_address": f"etcd://{{address}}:{CLIENT_PORT},{PEER_PORT}",
    "joins_may_fail": True,
}


class EtcdMembers:
    """Start members, read them, wait for them; use inside ``with FaultCluster(...)``."""

    def __init__(self, cluster: FaultCluster, directory: Path) -> None:
        self.cluster = cluster
        self.directory = directory
        self.started_at: dict[int, float] = {}

    def client_url(self, index: int) -> str:
        return f"http://{self.cluster.addresses[index]}:{CLIENT_PORT}"

    def peer_url(self, index: int) -> str:
        return f"http://{self.cluster.addresses[index]}:{PEER_PORT}"

    def data_dir(self, index: int) -> Path:
        return self.directory / f"etcd-{index}"

    def start(self, index: int, discovery: Iterable[int], *, required: int) -> None:
        """Start member ``index``'s node; static discovery lists the members ``discovery``."""
        hook = shlex.join(
            [
                "env",
                f"HOOK_DATA_DIR={self.data_dir(index)}",
                sys.executable,
                str(HOOK),
            ]
        )
        self.cluster.start(
            index,
            *self.cluster.static_discovery(discovery),
            *("--required-contact-points", str(required)),
            *("--join-command", hook),
        )
        self.started_at[index] = time.monotonic()

    def etcdctl(self, index: int, *args: str) -> subprocess.CompletedProcess[str]:
        """``etcdctl`` in member ``index``'s namespace, against its client URL only."""
        return subprocess.run(
            [
                *self.cluster.isolation.command_prefix(index),
                "etcdctl",
                f"--endpoints={self.client_url(index)}",
                "--dial-timeout=2s",
                "--command-timeout=5s",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=ETCDCTL_TIMEOUT,
            check=False,
        )

    def read_json(self, index: int, *args: str) -> Any:
        """``etcdctl ... -w json`` through member ``index``; None if it did not answer."""
        result = self.etcdctl(index, *args, "-w", "json")
        if result.returncode != 0:
            return None
        return json.loads(result.stdout)

    def cluster_id(self, index: int) -> int | None:
        """The cluster ID member ``index``'s ``endpoint status`` reports."""
        status = self.read_json(index, "endpoint", "status")
        return None if status is None else int(status[0]["Status"]["header"]["cluster_id"])

    def members(self, index: int) -> list[dict[str, Any]] | None:
        """``member list`` as member ``index`` sees it."""
        listed = self.read_json(index, "member", "list")
        return None if listed is None else list(listed["members"])

    def healthy(self, indices: Iterable[int]) -> str | None:
        """None if ``indices`` are exactly the members of one etcd cluster, all of them started
        voting members (no learner left) and answering, as each of them sees it; else what is
        not so yet."""
        expected = sorted(self.peer_url(i) for i in indices)
        cluster_ids = set()
        for index in indices:
            if self.etcdctl(index, "endpoint", "health").returncode != 0:
                return f"member {index} is not healthy"
            cluster_ids.add(self.cluster_id(index))
            members = self.members(index)
            if members is None:
                return f"member {index} does not list its members"
            listed = sorted(url for member in members for url in member.get("peerURLs", []))
            if listed != expected:
                return f"member {index} lists {listed}, not {expected}"
            if not all(member.get("name") and not member.get("isLearner") for member in members):
                return f"member {index} lists learners or members not started: {members}"
        if len(cluster_ids) != 1 or None in cluster_ids:
            return f"the members report the cluster IDs {cluster_ids}"
        return None

    def wait_healthy(self, indices: Iterable[int], *, timeout: float) -> float:
        """Wait until :meth:`healthy` and every member's node has joined (its hook said
        READY: ``/ready`` answers 200); when that was, on the monotonic clock."""
        indices = list(indices)
        deadline = time.monotonic() + timeout
        while (problem := self._not_joined(indices) or self.healthy(indices)) is not None:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"members {indices}: not one healthy etcd cluster within {timeout} s: "
                    f"{problem}\n{self.cluster.describe(log_lines=40)}"
                )
            time.sleep(POLL_INTERVAL)
        return time.monotonic()

    def _not_joined(self, indices: list[int]) -> str | None:
        # poll() also checks the nodes' invariants, and fails if a node has exited.
        statuses = self.cluster.poll()
        waiting = [i for i in indices if not statuses.get(i, {}).get("joined")]
        return f"the nodes of members {waiting} have not joined" if waiting else None

    def add_retries(self, index: int) -> int | None:
        """How many times member ``index``'s hook retried ``member add`` before it was healthy
        (0 for the founder); None if its hook has not said so."""
        found = _RETRIES.findall(self.cluster.nodes[index].log_path.read_bytes())
        return int(found[-1]) if found else None

    def hook_says(self, index: int, text: str) -> bool:
        return f"etcd-hook: {text}".encode() in self.cluster.nodes[index].log_path.read_bytes()
