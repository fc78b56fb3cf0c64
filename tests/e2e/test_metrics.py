"""``GET /metrics`` from real nodes on loopback, parsed as Prometheus parses it.

Three nodes form a cluster; a fourth contact point is discovered but nobody listens there, so
every node's probes of it fail ("refused"). The figures scraped must match what the scenario
did: connections opened equal the kernel's count (every TCP connection each node made, read
from the socket table, not from the node), probes and failures lie between the prober's own
counts just before and just after the scrape, and the phase, decision and contact points are
the machine's.
"""

from __future__ import annotations

from contextlib import AsyncExitStack

import attrs
import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families

from benchmarks import procfs
from bootstrap import ContactPoint, JoinSelf, Settings
from bootstrap.core.wire import METRICS_PATH
from bootstrap.discovery import StaticDiscovery
from bootstrap.node import Node
from bootstrap.prober import ProberStatistics
from bootstrap.server.limits import REFUSAL_KINDS
from tests.helpers.ports import free_port
from tests.helpers.running import run

from .loopback import loopback_points
from .test_nodes_in_process import FAST, TEST_TIMEOUT, start_nodes, wait_all_joined

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(point: ContactPoint) -> tuple[str, Samples]:
    """The content type and every sample, keyed by name and sorted labels."""
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://{point}{METRICS_PATH}", timeout=5)
    assert response.status_code == 200, response.text
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return response.headers["content-type"], samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(f"cluster_bootstrap_{name}", tuple(sorted(labels.items())))]


async def sample_connections(tracker: procfs.ConnectionTracker) -> None:
    # Once every 0.2 s: a closed connection stays in TIME_WAIT for 60 s, so none is missed.
    while True:
        tracker.observe(procfs.tcp_sockets())
        await trio.sleep(0.2)


def test_metrics_match_what_the_nodes_did() -> None:
    async def main() -> None:
        port = free_port()
        points = loopback_points(3, port, first=31)
        silent = ContactPoint("127.0.0.34", port)  # discovered, never listening
        tracker = procfs.ConnectionTracker(server_port=port)
        settings: Settings = attrs.evolve(
            FAST, required_contact_points=3, contact_with_all_contact_points=False
        )
        async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
            nursery.start_soon(sample_connections, tracker)
            nodes: list[Node] = await start_nodes(
                stack, points, StaticDiscovery([*points, silent]), settings=settings
            )
            await wait_all_joined(nodes)
            await trio.sleep(1.5)  # a few more probes, failures and pushes to count
            for node, point in zip(nodes, points, strict=True):
                before = node.statistics()
                content_type, samples = await scrape(point)
                after = node.statistics()
                assert content_type.startswith("text/plain")
                check_node(node, samples, before.prober, after.prober)
            tracker.observe(procfs.tcp_sockets())
            kernel = tracker.total_by_client
            for node, point in zip(nodes, points, strict=True):
                _, samples = await scrape(point)
                opened = value(samples, "connections_opened_total")
                assert opened == kernel.get(point.host, 0) > 0, (point, opened, kernel)
                assert opened == node.statistics().prober.connections_opened
            await stack.aclose()  # the nodes stop before the sampler does
            nursery.cancel_scope.cancel()

    run(main, seconds=TEST_TIMEOUT)


def check_node(
    node: Node, samples: Samples, before: ProberStatistics, after: ProberStatistics
) -> None:
    assert value(samples, "phase", phase="decided") == 1
    assert value(samples, "phase", phase="probing") == 0
    assert value(samples, "decided") == value(samples, "joined") == 1
    assert value(samples, "contact_points_discovered") == 4
    assert value(samples, "contact_points_fresh") == 3  # the silent one never answered
    assert value(samples, "decision_seconds") > 0
    # The founder decided to form (0); the others saw one cluster when they decided to join.
    assert value(samples, "clusters_at_decision") == (0 if node.decision == JoinSelf() else 1)
    assert value(samples, "formed_cluster") == (1 if node.decision == JoinSelf() else 0)
    assert value(samples, "formation_overdue") == 0
    probes = value(samples, "probes_sent_total")
    assert before.probes_sent <= probes <= after.probes_sent
    refused = value(samples, "probe_failures_total", kind="refused")
    assert before.failures_by_kind["refused"] <= refused <= after.failures_by_kind["refused"]
    assert refused >= 1
    assert value(samples, "probe_failures_total", kind="timeout") == 0  # listed, at zero
    assert value(samples, "watches_open", side="out") == after.open_watches
    assert value(samples, "watches_open", side="in") == node.app.statistics().watches_open
    assert value(samples, "discovery_lookups_total") >= 1
    assert value(samples, "discovery_lookup_failures_total") == 0
    assert value(samples, "join_failures_total") == 0
    for kind in REFUSAL_KINDS:
        assert value(samples, "requests_refused_total", kind=kind) == 0
    rounds = node.machine.round_counts
    assert value(samples, "founding_rounds_started_total") == rounds.rounds_started
    assert value(samples, "promises_given_total") == rounds.promises_given
