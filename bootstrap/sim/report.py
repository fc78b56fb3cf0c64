"""What a simulation run produced: per-node records, totals, and the invariant violations found.

Reports are frozen values. Two runs of the same scenario compare equal: ``wall_seconds`` (the
only thing that depends on the host) is excluded from equality.
"""

from __future__ import annotations

from typing import Literal

import attrs

__all__ = ["NodeReport", "SimulationReport", "format_report"]

DecisionKind = Literal["join-self", "join-seed-nodes"]


@attrs.frozen(kw_only=True)
class NodeReport:
    """One node: its decision, traffic, and the connections it opened."""

    index: int
    contact_point: str
    self_node: str
    started_at: float | None  # None: its start time lies beyond the end of the run
    stopped_at: float | None
    # The latest decision and when it was made (a JoinFailed clears neither: they are history).
    decision: DecisionKind | None
    decided_at: float | None
    joined_at: float | None
    cluster_id: str | None
    # First lookup result that named a peer (the reference point of the late-joiner bound).
    discovered_at: float | None
    probes_sent: int  # Probe actions
    requests_sent: int  # HTTP requests, websocket handshakes and ``probe`` messages on a watch
    pushes_received: int  # documents received over a watch (the answers to handshakes included)
    lookups: int
    joins_failed: int
    connections_opened: int  # accepted by the peer; what a keep-alive transport really opens
    connections_first: int  # the first connection to that peer
    reconnects_after_failure: int  # the previous one broke: timeout, reset, peer stopped
    reconnects_after_stop: int  # the previous one was closed on StopProbing
    reconnects_after_expiry: int  # the previous one idled out (the anchor's leak)
    connections_refused: int  # connect attempts to a peer that was not listening
    peers_connected: int  # distinct peers this node ever opened a connection to
    max_open_connections: int
    reason: str  # the machine's status reason at the end

    @property
    def joined(self) -> bool:
        """True if the node was a cluster member when the run ended (or when it stopped)."""
        return self.joined_at is not None


@attrs.frozen(kw_only=True)
class SimulationReport:
    """A whole run: per-node records, global timings, traffic totals and violations."""

    nodes: tuple[NodeReport, ...]
    transport: str
    seed: int
    probe_interval: float
    clusters_formed: int
    cluster_ids: tuple[str, ...]
    formation_time: float | None  # the first JoinSelf decision
    all_joined_time: float | None  # when the last running node joined, if all did
    end_reason: str  # "all-joined", "max-time", "max-events" or "idle"
    simulated_seconds: float
    events_processed: int
    messages: int  # segments put on the simulated wire (each retransmitted one counted once)
    violations: tuple[str, ...]
    wall_seconds: float = attrs.field(eq=False)

    @property
    def ok(self) -> bool:
        """True if no violation was found."""
        return not self.violations

    @property
    def node_seconds(self) -> float:
        """Sum over nodes of the virtual time each ran: the work the run simulated."""
        total = 0.0
        for node in self.nodes:
            if node.started_at is None:
                continue
            end = self.simulated_seconds if node.stopped_at is None else node.stopped_at
            total += max(0.0, end - node.started_at)
        return total

    @property
    def node_seconds_per_wall_second(self) -> float:
        """Simulation throughput on this host."""
        return self.node_seconds / self.wall_seconds if self.wall_seconds > 0 else float("inf")


def _time(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


_COLUMNS = (
    ("node", 5),
    ("contact point", 17),
    ("decision", 15),
    ("decided", 8),
    ("joined", 8),
    ("probes", 7),
    ("requests", 8),
    ("pushes", 7),
    ("lookups", 7),
    ("conns", 5),
    ("reconn", 6),
    ("max open", 8),
)


def _row(node: NodeReport) -> str:
    reconnects = (
        node.reconnects_after_failure + node.reconnects_after_stop + node.reconnects_after_expiry
    )
    cells = (
        str(node.index),
        node.contact_point,
        node.decision or "-",
        _time(node.decided_at),
        _time(node.joined_at),
        str(node.probes_sent),
        str(node.requests_sent),
        str(node.pushes_received),
        str(node.lookups),
        str(node.connections_opened),
        str(reconnects),
        str(node.max_open_connections),
    )
    return "  ".join(cell.rjust(width) for cell, (_, width) in zip(cells, _COLUMNS, strict=True))


def format_report(report: SimulationReport, *, max_rows: int = 20) -> str:
    """A compact text table for the CLI: timings, per-node rows (trimmed), totals, violations."""
    count = len(report.nodes)
    lines = [
        f"simulated {count} nodes, transport {report.transport}, probe interval "
        f"{report.probe_interval:g} s, seed {report.seed}",
        f"clusters formed: {report.clusters_formed}"
        + (f" ({', '.join(report.cluster_ids)})" if report.cluster_ids else ""),
        f"formation time: {_time(report.formation_time)} s   all joined: "
        f"{_time(report.all_joined_time)} s   ended: {report.end_reason} at "
        f"{report.simulated_seconds:.3f} s",
        "",
        "  ".join(title.rjust(width) for title, width in _COLUMNS),
    ]
    # Large runs: the first and last rows, plus every node that did not join (the interesting ones).
    if count <= max_rows:
        shown = list(report.nodes)
    else:
        head = list(report.nodes[: max_rows // 2])
        tail = list(report.nodes[count - max_rows // 2 :])
        chosen = {node.index for node in head + tail}
        unjoined = [
            node
            for node in report.nodes
            if not node.joined and node.index not in chosen and node.stopped_at is None
        ][:max_rows]
        shown = sorted(head + tail + unjoined, key=lambda node: node.index)
    previous = -1
    for node in shown:
        if node.index != previous + 1:
            lines.append(f"{'...':>5}  ({node.index - previous - 1} rows omitted)")
        lines.append(_row(node))
        previous = node.index
    if previous != count - 1:
        lines.append(f"{'...':>5}  ({count - 1 - previous} rows omitted)")
    probes = sum(node.probes_sent for node in report.nodes)
    requests = sum(node.requests_sent for node in report.nodes)
    pushes = sum(node.pushes_received for node in report.nodes)
    opened = sum(node.connections_opened for node in report.nodes)
    per_node = max(count, 1)
    lines += [
        "",
        f"totals: probes {probes} ({probes / per_node:.1f}/node), requests {requests}, "
        f"pushes {pushes}, connections opened {opened} ({opened / per_node:.1f}/node), "
        f"messages {report.messages}",
        f"events {report.events_processed}, wall {report.wall_seconds:.2f} s, "
        f"{report.node_seconds_per_wall_second:,.0f} node-seconds per wall second",
    ]
    unjoined_nodes = [node for node in report.nodes if not node.joined and node.stopped_at is None]
    for node in unjoined_nodes[:5]:
        lines.append(f"node {node.index} not joined: {node.reason}")
    if report.violations:
        lines.append(f"violations ({len(report.violations)}):")
        lines.extend(f"  - {violation}" for violation in report.violations)
    else:
        lines.append("violations: none")
    return "\n".join(lines)
