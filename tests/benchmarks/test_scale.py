"""The scale benchmark, reduced: ``benchmarks/scale.py`` at sizes CI can afford.

Counts only, from the JSON it writes (the timings are the benchmark's, not the test's):

* real nodes in one process, started lowest first and listed once they listen: every node
  that did not form opened at most ``probe_fanout`` connections (plus one per probe failure it
  saw, the transport's replacement of a failed peer), the founder one per peer, one cluster;
* the simulation: one cluster under both topologies, the mesh's connections and messages
  those of N - 1 peers, the topology's a small multiple of the fanout;
* separate processes: one cluster, every node joined.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bootstrap.core import Settings
from tests.helpers.benchmark_scripts import run_benchmark
from tests.helpers.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
SIM_NODES, IN_PROCESS_NODES, PROCESS_NODES = 200, 60, 8
_DEFAULT_FANOUT = Settings().probe_fanout
assert _DEFAULT_FANOUT is not None
FANOUT: int = _DEFAULT_FANOUT


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    output = tmp_path_factory.mktemp("scale")
    loaded = run_benchmark(
        "scale.py",
        f"--sim-nodes={SIM_NODES}",
        f"--mesh-max={SIM_NODES}",
        f"--in-process-nodes={IN_PROCESS_NODES}@1",
        f"--process-nodes={PROCESS_NODES}",
        f"--port={free_port()}",
        output=output,
        document="scale.json",
        timeout=600,
    )
    assert (output / "scale.png").stat().st_size > 0
    return loaded


def result(document: dict[str, Any], part: str, topology: str | None = None) -> dict[str, Any]:
    found: dict[str, Any]
    (found,) = [
        r
        for r in document["results"]
        if r["part"] == part and (topology is None or r["topology"] == topology)
    ]
    return found


def test_real_non_founders_open_no_more_than_the_fanout(document: dict[str, Any]) -> None:
    real = result(document, "in-process")
    assert real["nodes"] == IN_PROCESS_NODES
    assert real["one_cluster"]
    assert real["joined"] == IN_PROCESS_NODES
    (founder,) = real["founders"]
    assert founder.startswith("127.20.0.1:")  # the lowest
    assert real["non_founders_over_fanout_plus_failures"] == 0
    if real["probe_failures"] == 0:
        assert real["connections_opened_per_non_founder"]["max"] == FANOUT
    assert real["connections_opened_founder"] == [IN_PROCESS_NODES - 1]
    assert real["peak_fds"] <= real["fd_limit"]


def test_the_simulation_forms_one_cluster_under_both_topologies(
    document: dict[str, Any],
) -> None:
    mesh = result(document, "sim", "full mesh")
    topology = result(document, "sim", f"fanout {FANOUT}")
    for run in (mesh, topology):
        assert run["one_cluster"], run
        assert run["violations"] == []
    peers = SIM_NODES - 1
    assert mesh["max_open_connections_per_node"] == {"mean": peers, "max": peers}
    assert topology["max_open_connections_founder"] == peers
    # Nodes that started before any lower one was registered were the would-be founder for a
    # moment and probed more; the mean non-founder stays within one of the fanout.
    assert topology["max_open_connections_per_non_founder"]["mean"] <= FANOUT + 1
    assert topology["messages_per_node"] * 10 < mesh["messages_per_node"]


def test_node_processes_form_one_cluster(document: dict[str, Any]) -> None:
    processes = result(document, "processes")
    assert processes["one_cluster"], processes
    assert processes["joined"] == PROCESS_NODES
    assert processes["fds_per_process"]["max"] > 0
