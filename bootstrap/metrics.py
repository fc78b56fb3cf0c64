"""``GET /metrics``: a node's figures in the Prometheus text format (docs/operations.md).

Every figure is read, at scrape time, from the place that already counts it: the machine (phase,
contact points, founding rounds), the prober's counters (probes, failures, connections, watches
out), the management app's (requests, refusals, watches in) and the node's own (lookups,
joins). Nothing here counts anything itself, so ``/metrics`` and ``/bootstrap/status`` can
never disagree, and a node that nobody scrapes pays nothing.

Each node has a registry of its own (never prometheus-client's global one): many nodes in one
process (the demo, the tests, a simulation harness) keep separate figures.

Every series with a label lists all its label values from the start, zeros included (every
phase, every failure kind, every refusal kind), so a rate or an alert works before the first
failure rather than from it.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterable, Iterator, Mapping

import attrs
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .core import Phase
from .core.founding import RoundCounts
from .prober import FailureKind, ProberStatistics
from .server import ServerStatistics
from .server.limits import REFUSAL_KINDS

__all__ = ["PREFIX", "MetricsSnapshot", "NodeMetrics", "exposition", "metrics_registry"]

PREFIX = "cluster_bootstrap_"
FAILURE_KINDS: tuple[str, ...] = typing.get_args(FailureKind)


@attrs.frozen(kw_only=True)
class MetricsSnapshot:
    """What one node's series are made of, read from where each is counted (the node's
    :meth:`~bootstrap.node.Node.metrics_snapshot`)."""

    phase: Phase
    decided: bool
    formed_cluster: bool  # decided to form (JoinSelf): the founder
    joined: bool
    decision_seconds: float | None  # from the node's start to its decision
    contact_points_discovered: int
    contact_points_fresh: int
    clusters_at_decision: int
    formation_overdue: bool
    lookups: int
    lookup_failures: int
    join_failures: int
    rounds: RoundCounts
    prober: ProberStatistics
    server: ServerStatistics


class NodeMetrics(Collector):
    """The collector of one node: builds every series from a fresh snapshot when scraped."""

    def __init__(self, snapshot: Callable[[], MetricsSnapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        now = self._snapshot()
        prober, server, rounds = now.prober, now.server, now.rounds

        phase = GaugeMetricFamily(
            PREFIX + "phase", "1 for the phase the node is in, 0 for the others", labels=["phase"]
        )
        for each in Phase:
            phase.add_metric([each.value], 1.0 if now.phase is each else 0.0)
        yield phase
        yield gauge("decided", "1 once the node has decided (form or join)", now.decided)
        yield gauge("joined", "1 once the membership has joined", now.joined)
        yield gauge(
            "formed_cluster",
            "1 while this node's decision is to form a new cluster (the founder)",
            now.formed_cluster,
        )
        if now.decision_seconds is not None:
            yield gauge(
                "decision_seconds",
                "seconds from the node's start to its decision",
                now.decision_seconds,
            )
        yield gauge(
            "contact_points_discovered", "contact points discovered", now.contact_points_discovered
        )
        yield gauge(
            "contact_points_fresh",
            "discovered contact points answering fresh",
            now.contact_points_fresh,
        )

        yield gauge(
            "clusters_at_decision",
            "distinct clusters the answers showed when the node decided to join (2+: a split)",
            now.clusters_at_decision,
        )
        yield gauge(
            "formation_overdue",
            "1 while formation_deadline has passed without a decision (/alive answers 503)",
            now.formation_overdue,
        )

        yield counter(
            "probes_sent", "probes (requests, watch handshakes, probe messages)", prober.probes_sent
        )
        yield by_kind(
            "probe_failures", "failed probes, by kind", FAILURE_KINDS, prober.failures_by_kind
        )
        yield counter(
            "connections_opened", "TCP connections opened to peers", prober.connections_opened
        )
        yield counter(
            "connects_cancelled",
            "TCP connects to peers cancelled before they returned (not in connections_opened)",
            prober.connects_cancelled,
        )
        yield counter(
            "watch_messages_received",
            "documents received over watches",
            prober.watch_messages_received,
        )
        watches = GaugeMetricFamily(
            PREFIX + "watches_open",
            "open watches: to peers (out), from peers (in)",
            labels=["side"],
        )
        watches.add_metric(["out"], prober.open_watches)
        watches.add_metric(["in"], server.watches_open)
        yield watches

        yield counter("discovery_lookups", "discovery lookups started", now.lookups)
        yield counter("discovery_lookup_failures", "discovery lookups failed", now.lookup_failures)
        yield counter(
            "join_failures", "joins that failed (a new decision follows)", now.join_failures
        )

        yield counter("founding_rounds_started", "founding rounds opened", rounds.rounds_started)
        yield counter(
            "founding_rounds_withdrawn", "founding rounds withdrawn", rounds.rounds_withdrawn
        )
        yield counter("promises_given", "promises given to candidates", rounds.promises_given)

        yield counter(
            "requests_served", "HTTP responses sent, refusals included", server.requests_served
        )
        yield by_kind(
            "requests_refused",
            "requests refused by a limit, by kind",
            REFUSAL_KINDS,
            server.requests_refused,
        )
        yield counter("documents_pushed", "documents pushed over watches", server.documents_pushed)


def metrics_registry(snapshot: Callable[[], MetricsSnapshot]) -> CollectorRegistry:
    """A registry of one node's series alone."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeMetrics(snapshot))
    return registry


def exposition(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The registry's series in the text format, and that format's content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


def gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    """A gauge without labels (a truth is 1 or 0)."""
    return GaugeMetricFamily(PREFIX + name, documentation, value=float(value))


def counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    """A counter without labels (prometheus-client appends ``_total`` to its sample)."""
    return CounterMetricFamily(PREFIX + name, documentation, value=value)


def by_kind(
    name: str, documentation: str, kinds: Iterable[str], counts: Mapping[str, int]
) -> CounterMetricFamily:
    """A counter labelled ``kind``: every known kind, then any other the counts hold."""
    family = CounterMetricFamily(PREFIX + name, documentation, labels=["kind"])
    for kind in sorted({*kinds, *counts}):
        family.add_metric([kind], counts.get(kind, 0))
    return family
