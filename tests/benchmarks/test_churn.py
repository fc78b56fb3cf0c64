"""The churn benchmark end to end: ``--quick --isolation loopback`` with a short stall.

Asserts counts from the JSON it writes, never times: how many connections each strategy opened
(by the driver and by the kernel), how many sockets a node holds, and that every scenario ends
in exactly one cluster for our node. The anchor's emulation must show its leak (about one new
connection per peer per probe interval), or the comparison would prove nothing.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from bootstrap.core import Settings
from tests.helpers.benchmark_scripts import run_benchmark
from tests.helpers.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
NODES, UP, STALL = 8, 6, 12.0
PEERS = UP - 1  # live peers of each node during the stall
FANOUT = Settings().probe_fanout
assert FANOUT is not None
assert FANOUT < PEERS  # (or the topology shows nothing here)
# The up nodes are the lowest six: node 0, the would-be founder, connects to every live peer,
# each other node to the FANOUT lowest besides itself (DESIGN section 9).
TOPOLOGY_CONNECTIONS = (PEERS + (UP - 1) * FANOUT) / UP


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    output = tmp_path_factory.mktemp("churn")
    loaded = run_benchmark(
        "churn.py",
        "--quick",
        "--isolation=loopback",
        "--strategies=ours-watch,ours-poll,ours-mesh,anchor",
        f"--duration={STALL}",
        f"--port={free_port()}",
        output=output,
        document="churn.json",
        timeout=400,
    )
    loaded["output"] = output
    return loaded


def run_of(document: dict[str, Any], scenario: str, strategy: str) -> dict[str, Any]:
    (run,) = [
        run
        for run in document["runs"]
        if run["scenario"] == scenario and run["strategy"] == strategy
    ]
    return run


def test_the_full_mesh_opens_one_connection_per_live_peer_during_a_stall(
    document: dict[str, Any],
) -> None:
    """``ours-mesh``: each node opens exactly one connection per live peer, as counted by itself
    and by the kernel, and none after the first round."""
    summary = run_of(document, "stalled", "ours-mesh")["summary"]
    assert summary["connections_per_node_driver"] == PEERS
    assert summary["connections_per_node_kernel"] == PEERS
    assert summary["new_connections_per_node_per_second_driver"] == 0
    assert summary["new_connections_per_node_per_second_kernel"] == 0
    assert summary["tcp_sockets_per_node_max"] <= 2 * PEERS + 2
    assert summary["decided_during_stall"] == 0


@pytest.mark.parametrize("strategy", ["ours-watch", "ours-poll"])
def test_ours_connects_only_to_the_peers_it_probes_during_a_stall(
    document: dict[str, Any], strategy: str
) -> None:
    """The topology: at least the FANOUT lowest per node (every live peer for node 0), never
    more than the mesh, the driver's count the kernel's, and no churn; fewer sockets held.

    (A node that started before a lower peer listened probes the next ones up until that peer
    answers, so the mean may exceed TOPOLOGY_CONNECTIONS by those first-round extras.)
    """
    summary = run_of(document, "stalled", strategy)["summary"]
    driver, kernel = summary["connections_per_node_driver"], summary["connections_per_node_kernel"]
    assert driver == kernel
    assert round(TOPOLOGY_CONNECTIONS, 1) <= driver <= PEERS  # (the summary rounds to 0.1)
    assert summary["new_connections_per_node_per_second_driver"] == 0
    assert summary["new_connections_per_node_per_second_kernel"] == 0
    assert summary["tcp_sockets_per_node_max"] <= 2 * PEERS + 2
    assert summary["decided_during_stall"] == 0
    mesh = run_of(document, "stalled", "ours-mesh")["summary"]
    assert summary["tcp_sockets_per_node_at_end"] < mesh["tcp_sockets_per_node_at_end"]


def test_only_the_founder_holds_a_socket_per_live_peer_in_both_directions(
    document: dict[str, Any],
) -> None:
    """The mesh's founder is like every node; the topology's holds more than any other node.

    In the mesh each node holds its own connection to each live peer and each peer's to it.
    Under the topology the founder still does (it probes everyone, everyone probes it), while
    another node holds its FANOUT and the few opened to it: fewer, at every sample.
    """
    mesh = run_of(document, "stalled", "ours-mesh")["summary"]
    assert mesh["tcp_sockets_founder_max"] <= 2 * PEERS + 2
    assert mesh["tcp_sockets_per_non_founder_max"] <= 2 * PEERS + 2
    assert mesh["tcp_sockets_founder"] >= 2 * PEERS
    topology = run_of(document, "stalled", "ours-watch")["summary"]
    assert topology["tcp_sockets_founder"] >= 2 * PEERS
    assert topology["tcp_sockets_per_non_founder_max"] < topology["tcp_sockets_founder"]


def test_connections_opened_on_metrics_equal_the_kernels_count(document: dict[str, Any]) -> None:
    """Every node of ours, scraped at the end of the stall: /metrics says what the kernel saw."""
    if os.geteuid() != 0 or shutil.which("nft") is None:
        pytest.skip("the kernel's exact count (nftables counters) needs root and nft, as CI has")
    for strategy in ("ours-watch", "ours-poll", "ours-mesh"):
        check = run_of(document, "stalled", strategy)["connections_cross_check"]
        assert check["nodes_checked"] == UP, (strategy, check)
        assert check["kernel_count"] == "nftables"
        for address, figures in check["per_node"].items():
            assert figures["settled"], (strategy, address, figures)  # two scrapes agreed
            opened, kernel, cancelled = figures["metrics"], figures["kernel"], figures["cancelled"]
            # Equal, but for connects cancelled in flight that the kernel had completed.
            assert 0 < opened <= kernel <= opened + cancelled, (strategy, address, figures)
            if cancelled == 0:
                assert opened == kernel
        assert check["nodes_consistent"] == UP
    assert run_of(document, "stalled", "anchor")["connections_cross_check"] is None  # no /metrics


def test_the_anchor_opens_a_connection_per_probe(document: dict[str, Any]) -> None:
    """The emulated anchor connects anew for every probe, so its sockets pile up in TIME_WAIT."""
    run = run_of(document, "stalled", "anchor")
    summary = run["summary"]
    interval = run["probe_interval"]
    # Every live peer every interval x (1 + U(0, 0.2)): at least PEERS / (1.2 interval) a second.
    floor = PEERS / (1.2 * interval)
    assert summary["new_connections_per_node_per_second_driver"] >= 0.8 * floor
    assert summary["new_connections_per_node_per_second_kernel"] >= 0.8 * floor
    # The kernel sees what the prober counts (up to the few still in flight at a sample).
    driver, kernel = summary["connections_per_node_driver"], summary["connections_per_node_kernel"]
    assert abs(driver - kernel) <= 0.1 * driver
    assert summary["time_wait_per_node_at_end"] >= 0.8 * floor * summary["window_seconds"]
    assert summary["decided_during_stall"] == 0


def test_the_churn_ratio(document: dict[str, Any]) -> None:
    """The anchor holds several times our sockets, and the gap grows with the stall's length."""
    ours = run_of(document, "stalled", "ours-watch")["summary"]
    anchor = run_of(document, "stalled", "anchor")["summary"]
    ratio = anchor["tcp_sockets_per_node_at_end"] / ours["tcp_sockets_per_node_at_end"]
    # After t seconds the anchor holds ~t x PEERS / interval sockets, ours 2 x PEERS: the
    # ratio is ~t / 2 for t < 60 s; half of that leaves room for a loaded machine.
    assert ratio >= STALL / 4
    connections = anchor["connections_per_node_kernel"] / ours["connections_per_node_kernel"]
    assert connections >= STALL / 2


@pytest.mark.parametrize("strategy", ["ours-watch", "ours-poll", "ours-mesh", "anchor"])
def test_late_arrivals_end_in_one_cluster(document: dict[str, Any], strategy: str) -> None:
    """When the missing nodes start, every node joins and exactly one of them formed."""
    late = run_of(document, "stalled", strategy)["late_arrival"]
    assert late["formed"] is True
    assert late["nodes_joined"] == NODES
    assert late["clusters_formed"] == 1


@pytest.mark.parametrize("strategy", ["ours-watch", "ours-poll", "ours-mesh"])
def test_formation_ends_in_one_cluster(document: dict[str, Any], strategy: str) -> None:
    """All nodes starting within the spread form one cluster that every node joins."""
    formation = run_of(document, "formation", strategy)["formation"]
    assert formation["formed"] is True
    assert formation["nodes_joined"] == NODES
    assert formation["clusters_formed"] == 1


def test_series_and_charts_are_written(document: dict[str, Any]) -> None:
    """Every run keeps a sample a second for every node, and the charts are PNG files."""
    for run in document["runs"]:
        series = run["series"]
        assert len(series["per_node"]) == NODES
        assert all(address.startswith("127.") for address in series["per_node"])
        for metric_series in series["per_node"].values():
            assert all(len(values) == len(series["t"]) for values in metric_series.values())
    stalled = run_of(document, "stalled", "ours-watch")
    assert len(stalled["series"]["t"]) >= STALL - 1
    output: Path = document["output"]
    for chart in ("sockets_per_node.png", "new_connections.png", "formation_time.png"):
        assert (output / chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pekko_is_refused_on_loopback(capsys: pytest.CaptureFixture[str]) -> None:
    """A Pekko node's probes leave from 127.0.0.1 on loopback, so its sockets cannot be told
    apart: the benchmark refuses the strategy there rather than print figures it cannot count,
    and leaves it out of the default strategies."""
    from benchmarks.churn import parse_args

    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--isolation=loopback", "--strategies=ours-watch,pekko"])
    assert exit_info.value.code == 2
    assert "strategy pekko needs --isolation netns" in capsys.readouterr().err
    assert "pekko" not in parse_args(["--isolation=loopback"]).strategies
