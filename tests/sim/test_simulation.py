"""Whole-run tests of the simulation: exact timelines, accounting, regressions and violations.

Testing policy: see ``test_model.py``. Runs here use constant latencies where an exact virtual
time is asserted, and fixed seeds elsewhere; every run is bounded by ``max_time``.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Literal

import pytest

from bootstrap.core.events import (
    Action,
    ContactedBy,
    JoinSeedNodes,
    JoinSelf,
    Lookup,
    Probe,
    ProbeFailed,
    ProbeSucceeded,
    StopProbing,
)
from bootstrap.core.machine import BootstrapMachine
from bootstrap.core.settings import Settings
from bootstrap.sim import (
    Latency,
    Partition,
    Scenario,
    Simulation,
    SimulationReport,
    contact_point_of,
    format_report,
    run_simulation,
)
from bootstrap.sim import simulation as simulation_module

CP = [contact_point_of(index) for index in range(10)]


def exact(nodes: int, transport: str, **kwargs: Any) -> Scenario:
    """Constant 1 ms latency, 2 ms lookups: every instant of the run is predictable."""
    kwargs.setdefault("latency", Latency.constant(0.001))
    kwargs.setdefault("lookup_latency", Latency.constant(0.002))
    return Scenario(nodes=nodes, transport=transport, **kwargs)  # type: ignore[arg-type]


def traced(scenario: Scenario) -> tuple[SimulationReport, list[tuple[float, int, str, object]]]:
    log: list[tuple[float, int, str, object]] = []
    report = run_simulation(scenario, trace=lambda *entry: log.append(entry))
    return report, log


def assert_formed(report: SimulationReport) -> None:
    assert report.violations == ()
    assert report.clusters_formed == 1
    assert report.end_reason == "all-joined"
    assert all(node.joined for node in report.nodes if node.stopped_at is None)


# --- exact timelines ----------------------------------------------------------------------


def test_poll_probe_timeline_is_exact() -> None:
    """Poll: lookup 2 ms, SYN 1 ms, SYN-ACK 1 ms, request 1 ms, response 1 ms.

    Under the anchor's rule, which forms at the margin's instant; the founding round's one
    extra round trip is pinned by the next test.
    """
    report, log = traced(exact(2, "poll", settings=Settings(formation="lowest-address")))
    node0 = [(t, item) for t, node, kind, item in log if node == 0 and kind in ("event", "action")]
    assert node0[0] == (0.0, Lookup())
    assert node0[1][0] == pytest.approx(0.002)  # ContactPointsDiscovered
    assert node0[2] == (pytest.approx(0.002), Probe(CP[1]))
    answer = next(item for item in node0 if isinstance(item[1], ProbeSucceeded))
    assert answer[0] == pytest.approx(0.006)
    contacted = [t for t, node, kind, item in log if node == 1 and item == ContactedBy(CP[0])]
    assert contacted[0] == pytest.approx(0.005)  # the request reached node 1
    # The lowest node forms when the stable margin since its discovery at 0.002 expires.
    assert report.formation_time == pytest.approx(5.002)
    assert report.nodes[0].joined_at == pytest.approx(5.003)
    assert_formed(report)


def test_founding_round_costs_one_round_trip() -> None:
    """Promise: the round opens when the margin expires; the promise comes back 2 ms later."""
    report, log = traced(exact(2, "poll"))
    node0 = [(t, item) for t, node, kind, item in log if node == 0 and kind in ("event", "action")]
    proposals = [(t, item) for t, item in node0 if isinstance(item, Probe) and item.round]
    assert proposals == [(pytest.approx(5.002), Probe(CP[1], round=1))]
    promise = [
        (t, item)
        for t, node, kind, item in log
        if node == 1 and isinstance(item, ContactedBy) and item.proposal_round == 1
    ]
    assert [t for t, _ in promise] == [pytest.approx(5.003)]  # the proposal reached node 1
    assert report.formation_time == pytest.approx(5.004)  # its promise came back
    assert report.nodes[0].joined_at == pytest.approx(5.005)
    assert_formed(report)
    for node in report.nodes:
        assert node.connections_opened == node.connections_first == 1
        assert node.max_open_connections == 1
        assert node.requests_sent == node.probes_sent
        assert node.pushes_received == 0


def test_watch_pushes_replace_polls() -> None:
    """Watch: one handshake per peer, then pushes every watch_push_interval and no polls.

    (The anchor's rule: the founding round adds one ``propose`` message, counted below.)
    """
    report, log = traced(exact(2, "watch", settings=Settings(formation="lowest-address")))
    pushes = [
        t
        for t, node, kind, item in log
        if node == 0 and kind == "event" and isinstance(item, ProbeSucceeded)
    ]
    interval = Settings().watch_push_interval
    # First document on connect (sent by node 1 at 0.005), then every interval after it.
    assert pushes[:4] == pytest.approx([0.006 + k * interval for k in range(4)])
    assert_formed(report)
    assert [node.probes_sent for node in report.nodes] == [1, 1]
    assert report.nodes[0].pushes_received == len(pushes)


def test_watch_founding_round_adds_one_proposal() -> None:
    """Promise, watch: the handshake, then one ``propose`` over the same watch; no reconnect."""
    report = run_simulation(exact(2, "watch"))
    assert_formed(report)
    assert [node.probes_sent for node in report.nodes] == [2, 1]
    assert [node.connections_opened for node in report.nodes] == [1, 1]


def test_watch_member_pushes_its_new_document_at_once() -> None:
    """When node 0 forms, its watcher gets the seed nodes one latency later, not a tick later."""
    report, log = traced(exact(2, "watch", settings=Settings(formation="lowest-address")))
    joined = next(t for t, node, kind, _ in log if node == 0 and kind == "joined")
    seeded = next(
        t
        for t, node, kind, item in log
        if node == 1 and isinstance(item, ProbeSucceeded) and item.seed_nodes
    )
    assert seeded == pytest.approx(joined + 0.001)
    assert report.nodes[1].decided_at == pytest.approx(seeded)
    assert report.nodes[1].joined_at == pytest.approx(seeded + 0.002)


def test_watch_founder_document_says_founding_at_once() -> None:
    """Promise: the founder's next document says "founding"; its promiser joins on it."""
    report, log = traced(exact(2, "watch"))
    decided = next(t for t, node, kind, item in log if node == 0 and isinstance(item, JoinSelf))
    founding = next(
        t
        for t, node, kind, item in log
        if node == 1 and isinstance(item, ProbeSucceeded) and item.founding
    )
    assert founding == pytest.approx(decided + 0.001)
    assert report.nodes[1].decided_at == pytest.approx(founding)
    assert_formed(report)


def test_a_cancelled_request_is_never_answered() -> None:
    """After StopProbing, the answer of the request that was in flight is not fed."""
    # 0.4 s one way: a poll is in flight most of the time. Node 0 loses sight of node 1 at 3 s.
    scenario = Scenario(
        nodes=3,
        transport="poll",
        latency=Latency.constant(0.4),
        lookup_latency=Latency.constant(0.002),
        discovery_views={0: lambda now, registered: registered - {1} if now > 3 else registered},
        seed=2,  # a seed for which a request is in flight at the StopProbing (asserted below)
        max_time=8.0,
        expect_formation=False,
    )
    stopped_at: list[float] = []
    in_flight: list[bool] = []
    late: list[float] = []

    def trace(now: float, node: int, kind: str, item: object) -> None:
        if node != 0:
            return
        if item == StopProbing(CP[1]):
            stopped_at.append(now)
            in_flight.append(1 in simulation.nodes[0].outstanding)
        if (
            stopped_at
            and isinstance(item, ProbeSucceeded | ProbeFailed)
            and item.contact_point == CP[1]
        ):
            late.append(now)

    simulation = Simulation(scenario, trace=trace)
    report = simulation.run()
    assert stopped_at
    assert in_flight == [True]
    assert late == []
    assert not any(v for v in report.violations if "stop-probing" in v)


def test_a_stopped_peer_resets_then_refuses() -> None:
    """Stopping resets the peer's watch one latency later; reconnecting is refused after one RTT."""
    scenario = exact(
        3,
        "watch",
        stop_times={2: 1.0},
        deregister_lag=100.0,  # discovery keeps listing it: its peers keep trying
        max_time=4.0,
        expect_formation=False,
    )
    report, log = traced(scenario)
    failures = [
        (t, item.reason)
        for t, node, kind, item in log
        if node == 0 and isinstance(item, ProbeFailed) and kind == "event"
    ]
    assert failures[0] == (pytest.approx(1.001), "connection reset")
    retry = next(t for t, node, kind, item in log if node == 0 and item == Probe(CP[2]) and t > 1.0)
    assert failures[1] == (pytest.approx(retry + 0.002), "connection refused")
    node0 = report.nodes[0]
    assert node0.connections_refused >= 1
    assert node0.connections_opened == 2  # refused attempts are not connections
    assert report.nodes[2].stopped_at == 1.0


def test_push_at_probe_due_time_keeps_one_probe_outstanding() -> None:
    """A push that arrives as the peer's probe falls due must not lead to a second Probe."""
    # Jitter 0 and zero latency: every push arrives exactly when the next probe is due; 30 %
    # loss delays the probe's own answer past the next due time. Found by the invariant-5
    # property (seed 6).
    report = run_simulation(
        Scenario(
            nodes=2,
            transport="watch",
            settings=Settings(probe_interval=0.1, probe_jitter=0.0),
            latency=Latency.constant(0.0),
            loss=0.3,
            seed=6,
        )
    )
    assert not [violation for violation in report.violations if "outstanding" in violation]


def test_lowest_node_starting_after_a_premature_formation_joins_it() -> None:
    """The lowest node, started after others formed without it, joins instead of forming."""

    # The stable margin (0.5 s) is shorter than the gap between starts, so node 1 forms from a
    # partial view at 0.62 s. Under the anchor's rule node 0 (started at 0.24 s) probed node 1
    # (no seed nodes yet) and forms a second cluster at 0.75 s on that 0.5 s old answer. Under
    # the founding round node 1 cannot have promised node 0 (it founded) and node 0 joins it.
    def run(formation: Literal["promise", "lowest-address"]) -> SimulationReport:
        return run_simulation(
            Scenario(
                nodes=8,
                transport="poll",
                settings=Settings(stable_margin=0.5, probe_jitter=0.0, formation=formation),
                start_spread=1.0,
                latency=Latency.constant(0.0),
                seed=0,
            )
        )

    assert run("lowest-address").clusters_formed == 2  # the old rule fails here
    report = run("promise")
    assert report.clusters_formed == 1


# --- accounting and invariant 6 -------------------------------------------------------------


@pytest.mark.parametrize("interval", [1.0, 5.0, 10.0])
@pytest.mark.parametrize("transport", ["poll", "watch"])
def test_stalled_formation_opens_one_connection_per_peer(interval: float, transport: str) -> None:
    """Invariant 6: however long formation stalls, a node opens one connection per peer it probes.

    And it probes only the peers DESIGN section 9 gives it: the lowest node (the would-be
    founder) every peer, every other node the ``probe_fanout`` (3) lowest besides itself.
    """
    nodes, duration = 5, 600.0
    scenario = Scenario(
        nodes=nodes,
        transport=transport,  # type: ignore[arg-type]
        settings=Settings(
            probe_interval=interval,
            probe_backoff_max=max(15.0, interval),
            required_contact_points=nodes + 1,  # can never be met: formation stalls
        ),
        start_spread=1.0,
        seed=int(interval),
        max_time=duration,
        expect_formation=False,
    )
    report = run_simulation(scenario)
    assert report.violations == ()
    assert report.end_reason == "max-time"
    fanout = scenario.settings.probe_fanout
    assert fanout == 3
    for node in report.nodes:
        peers = nodes - 1 if node.index == 0 else fanout
        # (A node that started before a lower peer listened probes one more until it does.)
        assert node.max_open_connections == peers
        assert node.connections_opened == node.peers_connected <= nodes - 1
        polls_per_peer = (node.probes_sent - peers) / peers
        if transport == "poll":
            # One probe per jittered interval (mean: the interval) plus a round trip.
            assert duration / interval * 0.9 <= polls_per_peer <= duration / interval * 1.02
        else:
            # The watch refreshes the answer before a poll falls due.
            assert polls_per_peer <= 0.01 * duration / interval
            assert node.pushes_received >= peers * duration / interval


def test_idle_expiry_reconnects_are_flagged() -> None:
    """The anchor's leak (keep-alive expiry below the probe period) is an invariant-6 violation."""
    report = run_simulation(
        Scenario(
            nodes=3,
            transport="poll",
            settings=Settings(probe_interval=10.0, required_contact_points=4),
            keepalive_expiry=5.0,
            max_time=100.0,
            expect_formation=False,
        )
    )
    assert any("invariant 6" in violation for violation in report.violations)
    assert all(node.reconnects_after_expiry >= 8 for node in report.nodes)


def test_a_failed_join_returns_to_probing_and_reconnects() -> None:
    """A join whose seed is unreachable fails after the probe timeout; the node joins later."""
    base = exact(3, "poll", seed=3)
    first = run_simulation(base)
    decided = first.nodes[2].decided_at
    assert decided is not None
    assert first.nodes[2].decision == "join-seed-nodes"
    # Same run, but node 2 is cut off from the others just after it decided.
    cut = Partition(start=decided + 0.0005, end=decided + 6.0, groups=[{2}])
    report = run_simulation(exact(3, "poll", seed=3, partitions=[cut]))
    node = report.nodes[2]
    assert node.joins_failed == 1
    assert node.joined_at is not None
    assert node.joined_at > decided + 6.0
    assert node.reconnects_after_stop >= 1  # StopProbing at the decision, probing resumed
    assert_formed(report)


@pytest.mark.parametrize("transport", ["poll", "watch"])
def test_expected_contact_points_forms_within_a_round_trip(transport: str) -> None:
    """With the fast path, the lowest node forms as soon as every peer has answered once."""
    report = run_simulation(
        exact(
            5,
            transport,
            settings=Settings(expected_contact_points=5, formation="lowest-address"),
            max_time=60.0,
        )
    )
    assert_formed(report)
    # Lookup 2 ms, then connect (2 ms) and the first answer (2 ms).
    assert report.formation_time == pytest.approx(0.006)
    assert report.all_joined_time is not None
    assert report.all_joined_time < 0.006 + Settings().probe_interval * 1.2 + 0.01
    # The founding round: one more round trip for the promises.
    promised = run_simulation(
        exact(5, transport, settings=Settings(expected_contact_points=5), max_time=60.0)
    )
    assert_formed(promised)
    assert promised.formation_time == pytest.approx(0.008)


# --- regressions from the anchors ---------------------------------------------------------


@pytest.mark.parametrize("interval", [5.0, 10.0])
@pytest.mark.parametrize("transport", ["poll", "watch"])
def test_long_probe_intervals_form(interval: float, transport: str) -> None:
    """The anchor never formed at 5 s (freshness window 3 s): here 5 s and 10 s form."""
    report = run_simulation(
        Scenario(
            nodes=10,
            transport=transport,  # type: ignore[arg-type]
            settings=Settings(probe_interval=interval, probe_backoff_max=max(15.0, interval)),
            start_spread=3.0,
            seed=5,
        )
    )
    assert_formed(report)


@pytest.mark.parametrize("transport", ["poll", "watch"])
def test_maximum_jitter_forms(transport: str) -> None:
    """Jitter 0.9 (probe delays from 0.1 to 1.9 intervals) still forms."""
    report = run_simulation(
        Scenario(
            nodes=10,
            transport=transport,  # type: ignore[arg-type]
            settings=Settings(probe_jitter=0.9, discovery_jitter=0.9, probe_interval=2.0),
            start_spread=2.0,
            seed=9,
        )
    )
    assert_formed(report)


@pytest.mark.parametrize("transport", ["poll", "watch"])
def test_lowest_node_stopped_before_forming_lets_the_next_form(transport: str) -> None:
    """The lowest node dies before forming; once discovery drops it the next lowest forms."""
    stop, deregister_lag = 2.0, 3.0
    scenario = Scenario(
        nodes=5,
        transport=transport,  # type: ignore[arg-type]
        stop_times={0: stop},
        deregister_lag=deregister_lag,
        seed=2,
    )
    report = run_simulation(scenario)
    assert_formed(report)
    assert report.cluster_ids == ("sim://node-1",)
    margin = scenario.settings.stable_margin
    assert report.formation_time is not None
    assert report.formation_time >= stop + deregister_lag + margin
    assert report.nodes[0].joined_at is None


def test_partition_delays_formation_until_it_heals() -> None:
    """With every contact point required, no side of a partition forms; after healing one does."""
    scenario = Scenario(
        nodes=6,
        transport="watch",
        # Answers from before the partition are fresh for observation_ttl (4.2 s): starting it
        # at 0.5 s, they are all stale before the stable margin (5 s) expires.
        partitions=[Partition(start=0.5, end=20.0, groups=[{0, 1, 2}, {3, 4, 5}])],
        seed=4,
    )
    report = run_simulation(scenario)
    assert_formed(report)
    assert report.formation_time is not None
    assert report.formation_time >= 20.0
    assert any(node.reconnects_after_failure for node in report.nodes)


def test_disagreeing_views_can_form_two_clusters_and_are_flagged() -> None:
    """Nodes that never see each other form two clusters: reported as a violation."""
    alone = {index: (lambda now, registered, me=index: {me}) for index in (0, 1)}
    report = run_simulation(
        exact(2, "poll", discovery_views=alone, settings=Settings(required_contact_points=1))
    )
    assert report.clusters_formed == 2
    assert any("2 clusters formed" in violation for violation in report.violations)


# --- determinism and the end of a run -----------------------------------------------------


def busy_scenario(seed: int) -> Scenario:
    return Scenario(
        nodes=8,
        transport="poll",
        seed=seed,
        start_spread=3.0,
        loss=0.1,
        stop_times={7: 4.0},
        deregister_lag=1.0,
        partitions=[Partition(start=2.0, end=6.0, groups=[{0, 1}])],
        latency=Latency(low=0.001, high=0.05, mean_extra=0.005),
    )


def test_same_seed_same_report() -> None:
    """Two runs of one scenario give equal reports; another seed gives another report."""
    first = run_simulation(busy_scenario(11))
    again = run_simulation(busy_scenario(11))
    assert first == again
    assert format_report(first).splitlines()[:3] == format_report(again).splitlines()[:3]
    assert run_simulation(busy_scenario(12)) != first


def test_run_ends_when_everyone_joined() -> None:
    """The run stops as soon as all running nodes joined, long before max_time."""
    report = run_simulation(exact(3, "watch", max_time=1000.0))
    assert report.end_reason == "all-joined"
    assert report.all_joined_time == report.simulated_seconds < 10.0


def test_an_unformable_run_ends_at_max_time_with_violations() -> None:
    """A cluster that cannot form ends at max_time and names the nodes that did not join."""
    report = run_simulation(
        exact(3, "poll", settings=Settings(required_contact_points=4), max_time=30.0)
    )
    assert report.end_reason == "max-time"
    assert report.simulated_seconds == 30.0
    assert report.all_joined_time is None
    not_joined = [v for v in report.violations if "not joined" in v]
    assert len(not_joined) == 3
    assert "confirmed 3 of 4 required contact points" in not_joined[0]


# --- the simulation catches a misbehaving machine -----------------------------------------


def misbehaving(
    monkeypatch: pytest.MonkeyPatch, rewrite: Any, deadline: Any = None
) -> type[BootstrapMachine]:
    """Install a machine whose actions (and optionally deadline) are rewritten."""

    class Misbehaving(BootstrapMachine):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.extra: deque[Action] = deque()

        def next_action(self) -> Action | None:
            if self.extra:
                return self.extra.popleft()
            action = super().next_action()
            if action is None:
                return None
            replaced = rewrite(self, action)
            self.extra.extend(replaced[1:])
            return replaced[0]  # type: ignore[no-any-return]

        def next_deadline(self) -> float:
            real = super().next_deadline()
            return real if deadline is None else deadline(self, real)  # type: ignore[no-any-return]

    monkeypatch.setattr(simulation_module, "BootstrapMachine", Misbehaving)
    return Misbehaving


@pytest.mark.parametrize(
    ("rewrite", "expected"),
    [
        (lambda m, a: [a, a] if isinstance(a, Probe) else [a], "while one is outstanding"),
        (lambda m, a: [a, a] if isinstance(a, Lookup) else [a], "Lookup at"),
        (lambda m, a: [a, a] if isinstance(a, JoinSelf) else [a], "without JoinFailed"),
        (
            lambda m, a: (
                [JoinSeedNodes((m._self_node, *(f"x{k}" for k in range(6))))]
                if isinstance(a, JoinSeedNodes)
                else [a]
            ),
            "contains itself",
        ),
        (
            lambda m, a: (
                [JoinSeedNodes(tuple(f"x{k}" for k in range(6)))]
                if isinstance(a, JoinSeedNodes)
                else [a]
            ),
            "max_seed_nodes 5",
        ),
        (
            lambda m, a: [a, StopProbing(a.contact_point)] if isinstance(a, Probe) else [a],
            "without a decision while it still probes it",
        ),
    ],
)
def test_contract_breaches_are_reported(
    monkeypatch: pytest.MonkeyPatch, rewrite: Any, expected: str
) -> None:
    """Each breach of the machine's contract shows up as a violation."""
    misbehaving(monkeypatch, rewrite)
    report = run_simulation(exact(3, "poll", max_time=60.0))
    assert any(expected in violation for violation in report.violations), report.violations


@pytest.mark.parametrize(
    ("deadline", "expected"),
    [
        (lambda m, real: math.nan, "is NaN"),
        (lambda m, real: min(real, 0.5), "in the past"),
        (lambda m, real: 1.0 if m._now <= 1.0 else real, "still 1.0 after handle_timer"),
    ],
)
def test_broken_deadlines_are_reported_and_do_not_hang(
    monkeypatch: pytest.MonkeyPatch, deadline: Any, expected: str
) -> None:
    """A NaN, past or stuck deadline is a violation, and the run still ends."""
    misbehaving(monkeypatch, lambda m, a: [a], deadline)
    report = run_simulation(exact(3, "watch", max_time=20.0))
    assert any(expected in violation for violation in report.violations), report.violations
    assert report.end_reason in ("all-joined", "max-time")


def test_a_machine_that_raises_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception out of the machine is a violation; the other nodes carry on."""

    def explode(machine: BootstrapMachine, action: Action) -> list[Action]:
        if isinstance(action, Probe) and machine._self_node.endswith("2"):
            raise RuntimeError("boom")
        return [action]

    misbehaving(monkeypatch, explode)
    # The anchor's rule: under the founding round the broken node could promise nothing, and
    # (rightly) nobody would form without it.
    report = run_simulation(
        exact(3, "poll", max_time=30.0, settings=Settings(formation="lowest-address"))
    )
    assert any("RuntimeError('boom')" in violation for violation in report.violations)
    assert report.nodes[0].joined
    assert report.nodes[1].joined
