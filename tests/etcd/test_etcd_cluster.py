"""Real etcd clusters formed by cluster-bootstrap sidecars (docs/etcd.md), in network namespaces.

No member is told whether to start a new etcd cluster or join one: each node decides, and its
``--join-command`` (``examples/etcd/etcd_hook.py``) carries the decision out. What must hold:
members started in random order form **one** etcd cluster (every member reports the same
cluster ID and lists all of them), data written through one is read through every other, a
member started later joins, and a member that died is replaced by a new one on a new address
once the operator has removed the dead member (``etcdctl member remove``), not before.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from ..faults.cluster import FaultCluster, require_fault_tools
from .members import ETCD_NODES, EtcdMembers, require_etcd

require_fault_tools()
require_etcd()

FORMATION_TIMEOUT = 120.0  # etcd 3.4 adds one member at a time, ~5 s apart (its health interval)


def start_in_random_order(members: EtcdMembers, count: int, seed: int) -> list[int]:
    """Start members ``0..count-1`` in a random order, at random moments within 5 s."""
    rng = random.Random(seed)
    order = rng.sample(range(count), count)
    moments = sorted(rng.uniform(0, 5) for _ in order)
    began = time.monotonic()
    for index, moment in zip(order, moments, strict=True):
        time.sleep(max(0.0, began + moment - time.monotonic()))
        members.start(index, range(count), required=count)
    return order


def assert_one_bootstrap_cluster(cluster: FaultCluster, indices: list[int]) -> None:
    cluster.poll()
    clusters = cluster.clusters()
    assert len(clusters) == 1, f"{clusters}\n{cluster.describe()}"
    assert sorted(clusters[0].members) == sorted(indices)


def assert_readable_everywhere(members: EtcdMembers, writer: int, indices: list[int]) -> None:
    """A key written through ``writer`` is read (linearizably) through every other member."""
    key, value = f"written-through-{writer}", f"value-{time.monotonic_ns()}"
    put = members.etcdctl(writer, "put", key, value)
    assert put.returncode == 0, put.stderr
    for index in indices:
        got = members.etcdctl(index, "get", key, "--print-value-only")
        assert (got.returncode, got.stdout.strip()) == (0, value), f"member {index}: {got}"


@pytest.mark.parametrize(("count", "seed"), [(3, 3), (5, 5)])
def test_members_started_in_random_order_form_one_etcd_cluster(
    tmp_path: Path, count: int, seed: int
) -> None:
    with FaultCluster(tmp_path, count, **ETCD_NODES) as cluster:
        members = EtcdMembers(cluster, tmp_path)
        order = start_in_random_order(members, count, seed)
        members.wait_healthy(range(count), timeout=FORMATION_TIMEOUT)

        assert_one_bootstrap_cluster(cluster, list(range(count)))
        # The node that formed the bootstrap cluster is the one whose hook formed etcd's.
        founder = cluster.clusters()[0].founder
        assert members.hook_says(founder, "forming a new etcd cluster")
        assert [i for i in range(count) if members.hook_says(i, "forming")] == [founder]
        assert [members.add_retries(i) for i in range(count)][founder] == 0
        assert None not in [members.add_retries(i) for i in range(count)], order
        assert_readable_everywhere(members, order[-1], list(range(count)))


def test_a_late_member_joins_and_a_dead_one_is_replaced_once_removed(tmp_path: Path) -> None:
    """Three members form; a fourth, started later, joins. Then member 1's machine dies
    (every process in its namespace killed); a new member on a new address, with a new data
    directory, keeps being refused (etcd refuses to add a member while one is down) until the
    operator removes the dead member; then it joins."""
    with FaultCluster(tmp_path, 5, **ETCD_NODES) as cluster:
        members = EtcdMembers(cluster, tmp_path)
        start_in_random_order(members, 3, seed=7)
        members.wait_healthy(range(3), timeout=FORMATION_TIMEOUT)

        members.start(3, range(4), required=3)
        members.wait_healthy(range(4), timeout=FORMATION_TIMEOUT)
        assert_one_bootstrap_cluster(cluster, [0, 1, 2, 3])
        assert_readable_everywhere(members, 3, [0, 1, 2, 3])

        cluster.kill_namespace(1)
        survivors = [0, 2, 3]
        members.start(4, [*survivors, 4], required=3)
        deadline = time.monotonic() + 60
        while not members.hook_says(4, "member add refused"):
            assert time.monotonic() < deadline, cluster.describe(log_lines=40)
            time.sleep(0.5)
        assert members.healthy([*survivors, 4]) is not None  # not joined: the dead one stays

        # The operator's part (docs/etcd.md): remove the dead member by its peer URL.
        listed = members.members(0)
        assert listed is not None
        dead = [m for m in listed if members.peer_url(1) in m["peerURLs"]]
        assert len(dead) == 1, listed
        removed = members.etcdctl(0, "member", "remove", f"{dead[0]['ID']:x}")
        assert removed.returncode == 0, removed.stderr

        members.wait_healthy([*survivors, 4], timeout=FORMATION_TIMEOUT)
        assert (members.add_retries(4) or 0) >= 1
        assert_readable_everywhere(members, 4, [*survivors, 4])
