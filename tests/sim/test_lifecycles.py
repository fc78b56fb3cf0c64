"""The simulation's tools for attacking safety: lags per node and per pair, restarts, rolling
replacement and full restart, and the report's account of who formed by which rule.

Testing policy: see ``test_model.py``. Exact virtual instants where the model makes them exact
(constant latencies); the split explanations are checked on synthetic records (the function
is pure) and on two whole runs whose mechanism is known.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from bootstrap.core.errors import UsageError
from bootstrap.core.settings import Settings
from bootstrap.sim import Latency, Partition, Scenario, contact_point_of, run_simulation
from bootstrap.sim.discovery import DiscoveryService
from bootstrap.sim.report import FounderReport, PromiseRecord, explain_split
from bootstrap.sim.scenario import full_restart, rolling_replacement

CP = [contact_point_of(index) for index in range(10)]


def exact(nodes: int, **kwargs: Any) -> Scenario:
    """Constant 1 ms latency, 2 ms lookups, polling: every instant of the run is predictable."""
    kwargs.setdefault("latency", Latency.constant(0.001))
    kwargs.setdefault("lookup_latency", Latency.constant(0.002))
    kwargs.setdefault("transport", "poll")
    return Scenario(nodes=nodes, **kwargs)


# --- discovery lags -----------------------------------------------------------------------


def test_pair_lags_are_drawn_per_observer_from_the_seed() -> None:
    """Per-pair lags lie in the range, are reproducible, and differ between observers and seeds."""
    scenario = Scenario(nodes=6, pair_lag=(0.5, 2.0), seed=3)
    lags = scenario.pair_lags(0)
    assert lags is not None
    assert len(lags) == 6
    assert all(0.5 <= lag <= 2.0 for lag in lags)
    assert Scenario(nodes=6, pair_lag=(0.5, 2.0), seed=3).pair_lags(0) == lags
    assert scenario.pair_lags(1) != lags
    assert Scenario(nodes=6, pair_lag=(0.5, 2.0), seed=4).pair_lags(0) != lags
    assert Scenario(nodes=6).pair_lags(0) is None


def test_node_lags_are_drawn_and_explicit_view_lags_win() -> None:
    """``node_lag`` draws one lag per node; a ``view_lags`` entry overrides its draw."""
    drawn = Scenario(nodes=4, node_lag=(1.0, 3.0), seed=2).resolved_view_lags()
    assert all(1.0 <= lag <= 3.0 for lag in drawn)
    assert len(set(drawn)) == 4
    mixed = Scenario(nodes=4, node_lag=(1.0, 3.0), view_lags={2: 0.25}, seed=2)
    assert mixed.resolved_view_lags() == (drawn[0], drawn[1], 0.25, drawn[3])
    assert Scenario(nodes=2, view_lag=0.5).resolved_view_lags() == (0.5, 0.5)


def service(**kwargs: Any) -> DiscoveryService:
    kwargs.setdefault("views", {})
    return DiscoveryService(
        contact_points=CP[:3],
        registered_at=[0.0, 1.0, 2.0],
        deregistered_at=[math.inf, 5.0, math.inf],
        **kwargs,
    )


def test_a_pair_lag_delays_one_observer_s_view_of_one_node() -> None:
    """Node 0 sees node 2 half a second after it registers, node 1 three seconds after."""
    lags = {0: (0.0, 0.0, 0.5), 1: (0.0, 0.0, 3.0), 2: (0.0, 0.0, 0.0)}
    discovery = service(pair_lags=lambda observer: lags[observer])
    assert discovery.lookup(0, 2.4, 0.0).contact_points == (CP[0], CP[1])
    assert discovery.lookup(0, 2.5, 0.0).contact_points == tuple(CP[:3])
    assert discovery.lookup(1, 4.9, 0.0).contact_points == (CP[0], CP[1])
    assert discovery.lookup(1, 5.0, 0.0).contact_points == (CP[0], CP[2])  # 1 left at 5.0
    # The observer's own view lag adds to the pair's lag.
    assert discovery.lookup(0, 2.9, 0.5).contact_points == (CP[0], CP[1])
    assert discovery.lookup(0, 3.0, 0.5).contact_points == tuple(CP[:3])


def test_lags_from_spares_the_changes_before_it() -> None:
    """Registrations before ``lags_from`` are seen at once; later changes with the lag."""
    discovery = service(lags_from=1.5)
    # Node 1 registered at 1.0, before 1.5: seen at once despite a 2 s view lag.
    assert discovery.lookup(0, 1.0, 2.0).contact_points == (CP[0], CP[1])
    # Node 2 registered at 2.0, after 1.5: seen at 4.0; node 1 left at 5.0: gone at 7.0.
    assert discovery.lookup(0, 3.9, 2.0).contact_points == (CP[0], CP[1])
    assert discovery.lookup(0, 4.0, 2.0).contact_points == tuple(CP[:3])
    assert discovery.lookup(0, 6.9, 2.0).contact_points == tuple(CP[:3])
    assert discovery.lookup(0, 7.0, 2.0).contact_points == (CP[0], CP[2])


def test_a_restarted_node_is_registered_again() -> None:
    """A second life registers again; one that begins before the old entry is removed stays."""
    discovery = service(later_registrations=[(1, 8.0, math.inf), (2, 1.5, 3.0)])
    assert discovery.registered(6.0) == {0, 2}
    assert discovery.registered(8.0) == {0, 1, 2}
    # Node 2's second registration (1.5-3.0) lies inside its first (2.0-inf): merged.
    assert discovery.registered(1.7) == {0, 1, 2}


# --- lifetimes ------------------------------------------------------------------------------


def test_restarts_give_a_node_several_lives() -> None:
    """Lives: the start, each restart's stop and start again, and the final stop."""
    scenario = Scenario(
        nodes=2, start_times=[0.0, 1.0], restarts=[(0, 5.0, 6.0), (0, 8.0, 9.5)], stop_times={0: 20}
    )
    assert scenario.resolved_lifetimes() == (
        ((0.0, 5.0), (6.0, 8.0), (9.5, 20.0)),
        ((1.0, math.inf),),
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"restarts": [(3, 1.0, 2.0)]}, "restarts names node 3"),
        ({"restarts": [(0, 2.0, 1.0)]}, "must stop before it starts again"),
        ({"restarts": [(0, 1.0, math.inf)]}, "must stop before it starts again"),
        ({"restarts": [(0, 1.0, 5.0), (0, 3.0, 6.0)]}, "stops at 3.0 before it starts at 5.0"),
        ({"restarts": [(0, 1.0, 5.0)], "stop_times": {0: 4.0}}, "stops at 4.0 before"),
        ({"pair_lag": (2.0, 1.0)}, "pair_lag must be a range"),
        ({"node_lag": (-1.0, 1.0)}, "node_lag must be a range"),
        ({"lags_from": -1.0}, "lags_from must be a finite"),
    ],
)
def test_lifetime_and_lag_values_are_validated(kwargs: dict[str, Any], message: str) -> None:
    """Each bad value raises UsageError naming what to change."""
    with pytest.raises(UsageError, match=message):
        Scenario(nodes=2, **kwargs)


def test_a_restarted_promiser_forgets_its_promise_and_joins() -> None:
    """Node 1 promises node 0, crashes before node 0 forms, and its new process joins it."""
    # The margin expires at 5.002; node 0's proposal reaches node 1 at 5.003, the promise
    # (already on the wire when node 1 stops at 5.0035) reaches node 0 at 5.004.
    report = run_simulation(exact(2, restarts=[(1, 5.0035, 6.0)], max_time=60.0))
    assert report.violations == ()
    assert not report.split
    (founder,) = report.founders
    assert founder.node == 0
    assert founder.decided_at == pytest.approx(5.004)
    assert founder.promisers == ((1, 0),)
    given, lost = report.promises
    assert (given.node, given.life, given.to, given.round, given.stopped) == (1, 0, 0, 1, False)
    assert (lost.node, lost.life, lost.to, lost.previous, lost.stopped) == (1, 0, None, 0, True)
    assert lost.time == pytest.approx(5.0035)
    node = report.nodes[1]
    (first_start, first_stop), second = node.lives
    assert (first_start, second) == (0.0, (6.0, None))
    assert first_stop == pytest.approx(5.0035)
    assert node.started_at == 6.0
    assert node.decision == "join-seed-nodes"
    assert node.cluster_id == "sim://node-0"
    assert node.joined_at is not None
    assert node.joined_at > 6.0


@pytest.mark.parametrize("transport", ["poll", "watch"])
def test_members_restarted_one_by_one_rejoin_their_cluster(transport: str) -> None:
    """A rolling restart: each new process joins the cluster the others keep alive."""
    report = run_simulation(
        exact(
            3,
            transport=transport,
            restarts=[(0, 10.0, 11.0), (1, 15.0, 16.0), (2, 20.0, 21.0)],
            max_time=60.0,
        )
    )
    assert report.violations == ()
    assert report.cluster_ids == ("sim://node-0",)
    for node in report.nodes:
        assert node.decision == "join-seed-nodes"
        assert node.cluster_id == "sim://node-0"
        assert node.joined_at is not None
        assert node.joined_at > node.lives[-1][0]


@pytest.mark.parametrize("transport", ["poll", "watch"])
def test_a_node_restarted_after_forming_founds_a_new_cluster_only_alone(transport: str) -> None:
    """A full restart forms a second cluster after the first is gone: no split, no violation."""
    scenario = full_restart(
        3,
        stop_at=10.0,
        stop_spread=1.0,
        restart_at=12.0,
        restart_spread=2.0,
        transport=transport,
        seed=1,
    )
    report = run_simulation(scenario)
    assert report.violations == ()
    assert report.clusters_formed == 2
    assert report.cluster_ids[1].endswith("#2")  # a cluster of a second life
    assert not report.split
    assert report.most_clusters_at_once == 1
    assert report.end_reason == "all-joined"
    for node in report.nodes:
        assert len(node.lives) == 2
        assert node.cluster_id == report.cluster_ids[1]


@pytest.mark.parametrize("transport", ["poll", "watch"])
def test_a_rolling_replacement_keeps_one_cluster(transport: str) -> None:
    """Old nodes are replaced by new ones with new contact points; the cluster lives on."""
    scenario = rolling_replacement(
        4, begin=8.0, interval=3.0, batch=2, overlap=1.0, transport=transport, seed=5
    )
    starts = scenario.resolved_start_times()
    old = [index for index in range(8) if starts[index] < 8.0]
    new = [index for index in range(8) if starts[index] >= 8.0]
    assert len(old) == len(new) == 4
    assert sorted(starts[index] for index in new) == [8.0, 8.0, 11.0, 11.0]
    assert sorted(dict(scenario.stop_times)) == old
    assert sorted(dict(scenario.stop_times).values()) == [9.0, 9.0, 12.0, 12.0]
    assert min(new) < max(old)  # addresses interleave: a new node is lower than an old one
    report = run_simulation(scenario)
    assert report.violations == ()
    assert report.clusters_formed == 1
    assert all(report.nodes[index].cluster_id == report.cluster_ids[0] for index in new)


def test_rolling_replacement_draws_addresses_from_the_seed() -> None:
    """The same seed gives the same replacement; another seed another one."""
    first = rolling_replacement(5, begin=10.0, interval=2.0, seed=1)
    assert first == rolling_replacement(5, begin=10.0, interval=2.0, seed=1)
    assert first.start_times != rolling_replacement(5, begin=10.0, interval=2.0, seed=2).start_times
    assert first.lags_from == 10.0
    with pytest.raises(UsageError, match="begin"):
        rolling_replacement(3, begin=1.0, interval=2.0, old_start_spread=5.0)
    with pytest.raises(UsageError, match="restart_at"):
        full_restart(3, stop_at=5.0, stop_spread=2.0, restart_at=6.0)


class _SideView:
    """Discovery that follows a partition: until ``until``, a node sees only its own side."""

    def __init__(self, side: frozenset[int], until: float) -> None:
        self.side, self.until = side, until

    def __call__(self, now: float, seen: frozenset[int]) -> frozenset[int]:
        return seen & self.side if now < self.until else seen


@pytest.mark.parametrize("transport", ["poll", "watch"])
@pytest.mark.parametrize("heals_at", [20.0, math.inf])
def test_a_majority_forms_behind_a_partition_and_the_minority_waits(
    transport: str, heals_at: float
) -> None:
    """Promise, required 3 of 5: only the majority side forms; the minority joins on healing."""
    minority, majority = frozenset({0, 1}), frozenset({2, 3, 4})
    views = {
        node: _SideView(minority if node in minority else majority, heals_at) for node in range(5)
    }
    report = run_simulation(
        exact(
            5,
            transport=transport,
            settings=Settings(required_contact_points=3),
            partitions=[Partition(start=0.0, end=heals_at, groups=[minority, majority])],
            discovery_views=views,
            expect_formation=False,
            max_time=60.0,
        )
    )
    assert report.violations == ()
    assert report.cluster_ids == ("sim://node-2",)
    assert report.founders[0].partitioned_from == (0, 1)
    for index in majority:
        assert report.nodes[index].cluster_id == "sim://node-2"
    for index in minority:
        joined = report.nodes[index].joined_at
        if math.isinf(heals_at):
            assert joined is None
            # Node 0, the minority's lowest, counts; node 1 quotes it (DESIGN section 9).
            counted = "confirmed 2 of 3 required contact points"
            assert report.nodes[index].reason == (
                counted
                if index == 0
                else f"expecting 10.0.0.1:8558 to form the cluster; it reports: {counted}"
            )
        else:
            assert joined is not None
            assert joined > heals_at


# --- the guarantees' conditions -------------------------------------------------------------


def test_s1_needs_a_majority_of_every_node_and_no_overlapping_restart() -> None:
    """S1: required above half of all nodes; a full restart keeps it, a rolling restart not."""
    majority = Settings(required_contact_points=3)
    assert Scenario(nodes=5, settings=majority).meets_s1()
    assert not Scenario(nodes=6, settings=majority).meets_s1()
    assert full_restart(5, stop_at=5.0, restart_at=7.0, settings=majority).meets_s1()
    rolling_restart = Scenario(nodes=5, settings=majority, restarts=[(0, 5.0, 6.0)])
    assert not rolling_restart.meets_s1()
    # A rolling replacement of 5 by 5 has 10 nodes: a majority of 5 is not one of all.
    assert not rolling_replacement(5, begin=5.0, interval=1.0, settings=majority).meets_s1()


def test_s2_needs_contact_with_all_and_prefix_views() -> None:
    """S2: per-node lags and partitions keep it; pair lags, dropped views, stops do not."""
    assert Scenario(nodes=5, node_lag=(0.0, 3.0)).meets_s2()
    assert Scenario(
        nodes=5, partitions=[Partition(start=1.0, end=math.inf, groups=[{0, 1}])]
    ).meets_s2()
    assert not Scenario(nodes=5, pair_lag=(0.0, 3.0)).meets_s2()
    assert not Scenario(nodes=5, discovery_views={0: lambda now, seen: seen}).meets_s2()
    assert not Scenario(nodes=5, stop_times={0: 3.0}).meets_s2()
    assert not Scenario(
        nodes=5, settings=Settings(contact_with_all_contact_points=False)
    ).meets_s2()


# --- which rule let each founder form, and why two clusters ---------------------------------


def test_the_report_names_the_rule_and_the_mechanism_of_a_premature_formation() -> None:
    """Lowest-address: node 0 forms on an answer from node 1 taken before node 1 formed."""
    reports = {
        formation: run_simulation(
            Scenario(
                nodes=8,
                transport="poll",
                settings=Settings(stable_margin=0.5, probe_jitter=0.0, formation=formation),
                start_spread=1.0,
                latency=Latency.constant(0.0),
                seed=0,
            )
        )
        for formation in ("lowest-address", "promise")
    }
    old = reports["lowest-address"]
    assert old.split
    assert [founder.node for founder in old.founders] == [1, 0]
    assert all(founder.round is None for founder in old.founders)
    assert old.founders[1].rule.startswith("lowest-address: the lowest of 3 fresh answers")
    assert old.founders[1].reason.startswith("formed a new cluster")
    (mechanism,) = old.split_mechanisms
    assert (
        mechanism.kind == "the later founder decided on an answer older than the other's formation"
    )
    assert (mechanism.earlier, mechanism.later) == (1, 0)
    new = reports["promise"]
    assert not new.split
    (founder,) = new.founders
    assert founder.round == 1
    assert founder.rule == "promise: founding round 1, promised by 7"


def test_views_that_never_meet_are_explained() -> None:
    """Two nodes that never see each other both form: neither saw the other."""
    alone = {index: (lambda now, seen, me=index: {me}) for index in (0, 1)}
    report = run_simulation(
        exact(2, discovery_views=alone, settings=Settings(required_contact_points=1))
    )
    assert report.most_clusters_at_once == 2
    (mechanism,) = report.split_mechanisms
    assert mechanism.kind == "neither saw the other in discovery when it formed"
    assert "founders 0 and 1" in mechanism.detail


def founder(node: int, at: float, **kwargs: Any) -> FounderReport:
    fields: dict[str, Any] = {
        "life": 0,
        "formation": "promise",
        "round": 1,
        "reason": "formed a new cluster",
        "discovered": (node,),
        "fresh": (),
        "promisers": (),
        "partitioned_from": (),
        "cluster_id": f"c{node}",
    }
    fields.update(kwargs)
    return FounderReport(node=node, decided_at=at, **fields)


@pytest.mark.parametrize(
    ("earlier", "later", "promises", "kind"),
    [
        (
            founder(0, 1.0, promisers=((2, 0),), discovered=(0, 2)),
            founder(1, 3.0, promisers=((2, 1),), discovered=(1, 2)),
            (),
            "a promiser restarted and forgot its promise",
        ),
        (
            founder(0, 1.0, promisers=((2, 0),)),
            founder(1, 30.0, promisers=((2, 0),)),
            (
                PromiseRecord(
                    time=20.0,
                    node=2,
                    life=0,
                    to=None,
                    round=None,
                    previous=0,
                    previous_discovered=False,
                ),
            ),
            "a promiser gave up on a vanished founder (promise_hold)",
        ),
        (
            founder(0, 1.0, promisers=((2, 0),)),
            founder(1, 3.0, promisers=((2, 0),)),
            (),
            "a promiser released a founder's promise without evidence",
        ),
        (
            founder(0, 1.0, discovered=(0, 1)),
            founder(1, 3.0, discovered=(1, 2)),
            (),
            "the later founder did not see the earlier one in discovery",
        ),
        (
            founder(0, 1.0, discovered=(0, 2)),
            founder(1, 3.0, discovered=(0, 1), fresh=((0, 0.5),)),
            (),
            "the later founder decided on an answer older than the other's formation",
        ),
        (
            founder(0, 1.0, discovered=(0, 2)),
            founder(1, 3.0, discovered=(0, 1)),
            (),
            "the later founder formed without a fresh answer from the earlier one",
        ),
        (
            founder(0, 1.0, discovered=(0, 1)),
            founder(1, 3.0, discovered=(0, 1), fresh=((0, 2.0),)),
            (),
            "unexplained",
        ),
    ],
)
def test_split_mechanisms_follow_from_the_recorded_facts(
    earlier: FounderReport, later: FounderReport, promises: tuple[PromiseRecord, ...], kind: str
) -> None:
    """Each mechanism is named from the founders' views, answers and promisers alone."""
    mechanism = explain_split(earlier, later, promises)
    assert mechanism.kind == kind
    assert mechanism.detail.startswith("founders 0 and 1: ")
    assert (mechanism.earlier, mechanism.later) == (0, 1)


def test_a_candidate_restarted_mid_round_does_not_block_formation() -> None:
    """Node 1 restarts holding promises of 2 and 3; lower node 0 arrives: someone must form."""
    # Node 1 (the lowest of 1-3) opens round 1 at 5.002; nodes 2 and 3 promise at 5.003; node 1
    # crashes at 5.0035, before their promises reach it, and is back at 5.5. Node 0 (started
    # at 5.1) is now the lowest: nodes 2 and 3 refuse it while they hold their promise to node 1.
    # Only the new node 1's documents can release them: its round counter starts past round 1
    # (the machine's first_round, from the clock), where a counter starting again at 0 would be
    # "stale" for ever and nobody would form.
    report = run_simulation(
        exact(4, start_times=[5.1, 0.0, 0.0, 0.0], restarts=[(1, 5.0035, 5.5)], max_time=120.0)
    )
    assert report.end_reason == "all-joined", report.nodes
    assert report.clusters_formed == 1
    assert [founder.node for founder in report.founders] == [0]
    released = [
        record
        for record in report.promises
        if record.node in (2, 3) and record.previous == 1 and record.to in (None, 0)
    ]
    assert {record.node for record in released} == {2, 3}
    assert all(record.time >= 5.5 for record in released)
