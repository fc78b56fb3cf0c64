"""What a simulation run produced: per-node records, totals, and the invariant violations found.

Reports are frozen values. Two runs of the same scenario compare equal: ``wall_seconds`` (the
only thing that depends on the host) is excluded from equality.

Which rule let each founder form: every ``JoinSelf`` is kept as a :class:`FounderReport` (the
node, its rule, its founding round and promisers, its view and answers at that instant), and
every promise given, released or lost with its process as a :class:`PromiseRecord`. A run in
which two clusters coexisted (one created while the other had a running member) is a split;
:func:`explain_split` names its mechanism from those facts alone, one
:class:`SplitMechanism` per pair of coexisting clusters. Its ``kind`` is one of a few fixed
phrases (so many runs can be counted by it), checked in this order:

1. a node promised both founders: it restarted in between (its new process forgot the
   promise), or it released the first promise while that founder was gone from its view
   (``promise_hold``), or it released it otherwise (which the founding round forbids);
2. neither founder saw the other in discovery when it formed;
3. the later founder did not see the earlier one in discovery;
4. the later founder decided on an answer from the earlier one taken before that one formed;
5. the later founder formed without a fresh answer from the earlier one;
6. anything else is reported as unexplained, with the facts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import attrs

__all__ = [
    "FounderReport",
    "NodeReport",
    "PromiseRecord",
    "SimulationReport",
    "SplitMechanism",
    "explain_split",
    "format_report",
]

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
    # Every life: (start, stop), stop None while it runs. The fields above that describe a
    # decision (started_at ... discovered_at, reason) are those of its last life; the
    # counters add up over all of them.
    lives: tuple[tuple[float, float | None], ...] = ()

    @property
    def joined(self) -> bool:
        """True if the node was a cluster member when the run ended (or when it stopped)."""
        return self.joined_at is not None


@attrs.frozen(kw_only=True)
class FounderReport:
    """One ``JoinSelf`` decision, and the facts it was taken on."""

    node: int
    life: int  # 0: the node's first life; n: after its n-th restart
    decided_at: float
    formation: str  # the Settings.formation rule: "promise" or "lowest-address"
    round: int | None  # the founding round it formed in (None under lowest-address)
    reason: str  # the machine's status reason at the decision
    discovered: tuple[int, ...]  # its view (node indices) at the decision, itself included
    # Peers whose answer was fresh at the decision, with the instant that answer was observed.
    fresh: tuple[tuple[int, float], ...]
    # (node, life) of every running node that held a promise to it for that round.
    promisers: tuple[tuple[int, int], ...]
    partitioned_from: tuple[int, ...]  # nodes a partition separated it from at the decision
    cluster_id: str | None  # None: it stopped before its cluster existed

    @property
    def rule(self) -> str:
        """Which rule let it form, in one line."""
        if self.round is not None:
            promisers = ", ".join(str(node) for node, _ in self.promisers) or "nobody"
            return f"promise: founding round {self.round}, promised by {promisers}"
        return (
            f"{self.formation}: the lowest of {len(self.fresh) + 1} fresh answers "
            f"({len(self.discovered)} discovered)"
        )


@attrs.frozen(kw_only=True)
class PromiseRecord:
    """A node's promise changed: given, replaced, released, or lost when its process stopped."""

    time: float
    node: int
    life: int
    to: int | None  # the candidate it now promises (None: it holds no promise)
    round: int | None
    previous: int | None  # the candidate of the promise it held before, if any
    # Was that previous candidate in the node's discovered set at that instant?
    previous_discovered: bool
    stopped: bool = False  # the process stopped holding it: a restart forgets it


@attrs.frozen(kw_only=True)
class SplitMechanism:
    """Why a second cluster formed while another one lived."""

    kind: str  # a fixed phrase (see the module docstring), to count runs by
    detail: str  # the same, with node numbers, rounds and times
    earlier: int  # founder of the cluster formed first
    later: int


def _promise_life(founder: FounderReport, node: int) -> int | None:
    return next((life for promiser, life in founder.promisers if promiser == node), None)


def explain_split(
    earlier: FounderReport, later: FounderReport, promises: Sequence[PromiseRecord] = ()
) -> SplitMechanism:
    """The mechanism by which ``later`` formed while ``earlier``'s cluster lived."""
    a, b = earlier.node, later.node
    pair = f"founders {a} and {b}"
    gap = f"{b} formed {later.decided_at - earlier.decided_at:.3f} s after {a}"
    if a in later.partitioned_from:
        gap += ", partitioned from it"

    def found(kind: str, detail: str) -> SplitMechanism:
        return SplitMechanism(kind=kind, detail=f"{pair}: {detail} ({gap})", earlier=a, later=b)

    for node in sorted({node for node, _ in earlier.promisers} & {n for n, _ in later.promisers}):
        first, second = _promise_life(earlier, node), _promise_life(later, node)
        if first != second:
            return found(
                "a promiser restarted and forgot its promise",
                f"node {node} promised {a} (round {earlier.round}), restarted, then promised "
                f"{b} (round {later.round})",
            )
        release = next(
            (
                record
                for record in promises
                if record.node == node
                and record.life == first
                and record.previous == a
                and earlier.decided_at <= record.time <= later.decided_at
            ),
            None,
        )
        if release is not None and not release.previous_discovered:
            return found(
                "a promiser gave up on a vanished founder (promise_hold)",
                f"node {node} released its promise to {a} at {release.time:.3f} s, {a} being "
                f"gone from its view, then promised {b}",
            )
        return found(
            "a promiser released a founder's promise without evidence",
            f"node {node} promised {a} (round {earlier.round}) and then {b} "
            f"(round {later.round}) in the same life",
        )
    a_saw_b, b_saw_a = b in earlier.discovered, a in later.discovered
    if not a_saw_b and not b_saw_a:
        return found(
            "neither saw the other in discovery when it formed",
            f"{a} saw {len(earlier.discovered)} nodes without {b}, {b} saw "
            f"{len(later.discovered)} without {a}",
        )
    if not b_saw_a:
        return found(
            "the later founder did not see the earlier one in discovery",
            f"{b} saw {len(later.discovered)} nodes without {a}",
        )
    answered = dict(later.fresh).get(a)
    if answered is not None and answered < earlier.decided_at:
        return found(
            "the later founder decided on an answer older than the other's formation",
            f"{b}'s answer from {a} was taken {earlier.decided_at - answered:.3f} s before "
            f"{a} formed",
        )
    if answered is None:
        return found(
            "the later founder formed without a fresh answer from the earlier one",
            f"{b} saw {a} in discovery but held no fresh answer from it",
        )
    return found(
        "unexplained",
        f"{b} saw {a} and held an answer from it taken {answered - earlier.decided_at:.3f} s "
        f"after {a} formed; rules {earlier.rule!r} and {later.rule!r}",
    )


@attrs.frozen(kw_only=True)
class SimulationReport:
    """A whole run: per-node records, global timings, traffic totals and violations."""

    nodes: tuple[NodeReport, ...]
    transport: str
    seed: int
    probe_interval: float
    clusters_formed: int  # created over the whole run (a full restart legitimately makes two)
    cluster_ids: tuple[str, ...]
    formation_time: float | None  # the first JoinSelf decision
    all_joined_time: float | None  # when the last running node joined, if all did
    end_reason: str  # "all-joined", "max-time", "max-events" or "idle"
    simulated_seconds: float
    events_processed: int
    messages: int  # segments put on the simulated wire (each retransmitted one counted once)
    violations: tuple[str, ...]
    wall_seconds: float = attrs.field(eq=False)
    # How many violations of each kind ("clusters", "not-joined", "probe-outstanding", ...):
    # ``violations`` keeps only the first few messages of each.
    violation_counts: tuple[tuple[str, int], ...] = ()
    # Pairs (earlier, later) of cluster ids where the later was created while the earlier
    # still had a running member: each pair is a split brain.
    coexisting: tuple[tuple[str, str], ...] = ()
    founders: tuple[FounderReport, ...] = ()
    promises: tuple[PromiseRecord, ...] = ()

    @property
    def ok(self) -> bool:
        """True if no violation was found."""
        return not self.violations

    @property
    def most_clusters_at_once(self) -> int:
        """The largest number of clusters that had running members at the same time."""
        if not self.cluster_ids:
            return 0
        alongside: dict[str, int] = {}
        for _, later in self.coexisting:
            alongside[later] = alongside.get(later, 0) + 1
        return 1 + max(alongside.values(), default=0)

    @property
    def split(self) -> bool:
        """True if two clusters ever coexisted (a split brain)."""
        return bool(self.coexisting)

    @property
    def split_mechanisms(self) -> tuple[SplitMechanism, ...]:
        """One explanation per pair of coexisting clusters (see :func:`explain_split`)."""
        by_cluster = {f.cluster_id: f for f in self.founders if f.cluster_id is not None}
        return tuple(
            explain_split(by_cluster[earlier], by_cluster[later], self.promises)
            for earlier, later in self.coexisting
        )

    @property
    def node_seconds(self) -> float:
        """Sum over nodes of the virtual time each ran: the work the run simulated."""
        total = 0.0
        for node in self.nodes:
            lives = node.lives or (
                () if node.started_at is None else ((node.started_at, node.stopped_at),)
            )
            for start, stop in lives:
                end = self.simulated_seconds if stop is None else stop
                total += max(0.0, end - start)
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
        + (f" ({', '.join(report.cluster_ids)})" if report.cluster_ids else "")
        + (f", at most {report.most_clusters_at_once} at once" if report.split else ""),
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
    for founder in report.founders:
        lines.append(
            f"node {founder.node} formed at {founder.decided_at:.3f} s by {founder.rule}: "
            f"{founder.reason}"
        )
    for mechanism in report.split_mechanisms:
        lines.append(f"split: {mechanism.detail}")
    unjoined_nodes = [node for node in report.nodes if not node.joined and node.stopped_at is None]
    for node in unjoined_nodes[:5]:
        lines.append(f"node {node.index} not joined: {node.reason}")
    if report.violations:
        lines.append(f"violations ({len(report.violations)}):")
        lines.extend(f"  - {violation}" for violation in report.violations)
    else:
        lines.append("violations: none")
    return "\n".join(lines)
