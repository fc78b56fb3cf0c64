"""Unit tests of the simulation's model pieces: clock, network, discovery, membership, scenario.

Testing policy for ``tests/sim``: everything runs on virtual time, so assertions are on exact
virtual instants and exact counts wherever the model makes them exact (constant latencies,
scripted random draws); randomised behaviour is checked by hypothesis properties
(``test_properties.py``) at the project's profile (200 examples), with simulated durations
sized so that the whole directory runs in a few minutes on two cores.
"""

from __future__ import annotations

import math
import random

import attrs
import pytest

from bootstrap.core.contact_point import ContactPoint
from bootstrap.core.errors import UsageError
from bootstrap.core.settings import Settings
from bootstrap.sim import Latency, Partition, Scenario, formation_bound, late_join_bound
from bootstrap.sim.bounds import backoff_allowance, failure_streak, probe_rounds
from bootstrap.sim.discovery import DiscoveryService
from bootstrap.sim.membership import Membership
from bootstrap.sim.network import DATA_RTO, MAX_RTO, SYN_RTO, Connection, Network
from bootstrap.sim.scheduler import Scheduler
from bootstrap.sim.simulation import contact_point_of, node_name


class ScriptedRandom(random.Random):
    """A ``random.Random`` whose ``random()`` returns scripted values (for exact loss tests)."""

    def __init__(self, values: list[float]) -> None:
        super().__init__(0)
        self.values = list(values)

    def random(self) -> float:
        return self.values.pop(0)


def network(
    *, loss: float = 0.0, latency: float = 0.01, partitions: tuple[Partition, ...] = ()
) -> Network:
    return Network(
        latency=Latency.constant(latency),
        loss=loss,
        partitions=partitions,
        rng=random.Random(1),
    )


# --- scheduler ----------------------------------------------------------------------------


def test_scheduler_runs_in_time_order_and_ties_in_scheduling_order() -> None:
    """Events run by time; events at the same instant run in the order they were scheduled."""
    clock = Scheduler()
    seen: list[tuple[float, str]] = []
    for when, name in ((2.0, "c"), (1.0, "a"), (2.0, "d"), (1.0, "b")):
        clock.at(when, lambda name=name: seen.append((clock.now, name)))
    assert clock.run(until=10.0) == "idle"
    assert seen == [(1.0, "a"), (1.0, "b"), (2.0, "c"), (2.0, "d")]
    assert clock.events_processed == 4


def test_scheduler_refuses_the_past_and_stops_at_until() -> None:
    """Scheduling before now is a bug; the run stops at ``until`` and at ``max_events``."""
    clock = Scheduler()
    clock.at(5.0, lambda: None)
    assert clock.run(until=1.0) == "max-time"
    assert clock.now == 1.0
    with pytest.raises(ValueError, match="before now"):
        clock.at(0.5, lambda: None)
    with pytest.raises(ValueError, match="before now"):
        clock.at(math.nan, lambda: None)

    def again() -> None:
        clock.at(clock.now, again)

    clock.at(2.0, again)
    assert clock.run(until=100.0, max_events=10) == "max-events"
    assert clock.now == 2.0


def test_scheduler_finished_flag_ends_the_run() -> None:
    """A callback that sets ``finished`` ends the run after that event."""
    clock = Scheduler()

    def finish() -> None:
        clock.finished = True

    clock.at(1.0, finish)
    clock.at(2.0, lambda: None)
    assert clock.run(until=10.0) == "finished"
    assert clock.now == 1.0
    assert clock.pending() == 1


# --- network ------------------------------------------------------------------------------


def test_no_loss_means_one_latency_draw() -> None:
    """Without loss a segment takes exactly one latency draw."""
    assert network().transmission_delay(DATA_RTO) == pytest.approx(0.01)


def test_lost_data_segments_are_retransmitted_after_a_doubling_rto() -> None:
    """Two lost attempts of a data segment cost 0.2 s + 0.4 s before the delivering attempt."""
    net = Network(
        latency=Latency.constant(0.01),
        loss=0.5,
        partitions=(),
        rng=ScriptedRandom([0.1, 0.3, 0.9, 0.0]),  # lost, lost, delivered; then the latency
    )
    assert net.transmission_delay(DATA_RTO) == pytest.approx(0.2 + 0.4 + 0.01)


def test_lost_syns_start_at_one_second() -> None:
    """A SYN lost twice arrives after 1 s + 2 s: more than the default 3 s probe timeout."""
    net = Network(
        latency=Latency.constant(0.001),
        loss=0.3,
        partitions=(),
        rng=ScriptedRandom([0.0, 0.0, 0.5, 0.0]),
    )
    delay = net.transmission_delay(SYN_RTO)
    assert delay == pytest.approx(3.001)
    assert delay > Settings().probe_timeout


def test_retransmission_timeout_is_capped() -> None:
    """The RTO stops doubling at the Linux maximum of 120 s."""
    lost = 12  # 0.2 * 2**10 > 120: the later retries wait MAX_RTO each
    net = Network(
        latency=Latency.constant(0.0),
        loss=0.5,
        partitions=(),
        rng=ScriptedRandom([0.0] * lost + [0.9, 0.0]),
    )
    expected = 0.0
    rto = DATA_RTO
    for _ in range(lost):
        expected += rto
        rto = min(rto * 2, MAX_RTO)
    assert net.transmission_delay(DATA_RTO) == pytest.approx(expected)
    assert rto == MAX_RTO


def test_messages_on_one_connection_arrive_in_order() -> None:
    """A message never overtakes the one before it on the same connection and direction."""
    net = Network(
        latency=Latency.constant(0.01),
        loss=0.5,
        partitions=(),
        # First push: lost once (0.2 s RTO). Second push: through at once.
        rng=ScriptedRandom([0.1, 0.9, 0.0, 0.9, 0.0]),
    )
    conn = Connection(0, 1, 0.0)
    first = net.send_down(conn, 0.0)
    second = net.send_down(conn, 0.05)
    assert first == pytest.approx(0.21)
    assert second == first  # held behind the retransmitted segment
    # The other direction is independent.
    other = Network(
        latency=Latency.constant(0.01), loss=0.0, partitions=(), rng=ScriptedRandom([0.0])
    )
    assert other.send_up(conn, 0.05) == pytest.approx(0.06)


def test_partition_separates_groups_only_while_active() -> None:
    """Nodes in different groups are separated during [start, end); the rest is one group."""
    partition = Partition(start=1.0, end=2.0, groups=[{0, 1}, {2}])
    net = network(partitions=(partition,))
    assert net.separated(0, 2, 1.5)
    assert not net.separated(0, 1, 1.5)
    assert net.separated(0, 3, 1.5)  # 3 is in "the rest"
    assert not net.separated(3, 4, 1.5)  # both in "the rest"
    assert not net.separated(0, 2, 0.99)
    assert not net.separated(0, 2, 2.0)


def test_a_message_lost_to_a_partition_stalls_its_connection() -> None:
    """A message sent across a partition never arrives, nor does anything after it."""
    net = network(partitions=(Partition(start=1.0, end=2.0, groups=[{0}, {1}]),))
    conn = Connection(0, 1, 0.0)
    assert net.send_up(conn, 0.5) == pytest.approx(0.51)
    assert net.send_up(conn, 0.995) == math.inf  # would arrive inside the partition
    assert conn.stalled
    assert net.send_down(conn, 3.0) == math.inf  # healed, but the stream has a hole
    assert net.reset_arrival(conn, 3.0) == math.inf
    fresh = Connection(0, 1, 3.0)
    assert net.send_up(fresh, 3.0) == pytest.approx(3.01)


def test_latency_draws_stay_within_bounds() -> None:
    """Both latency shapes stay in [low, high]; the exponential tail is capped at high."""
    rng = random.Random(3)
    tail = Latency(low=0.001, high=0.004, mean_extra=0.002)
    uniform = Latency.uniform(0.002, 0.003)
    tail_draws = [tail.draw(rng) for _ in range(2000)]
    uniform_draws = [uniform.draw(rng) for _ in range(2000)]
    assert all(0.001 <= x <= 0.004 for x in tail_draws)
    assert max(tail_draws) == 0.004  # the cap is reached: the tail is really cut
    assert all(0.002 <= x <= 0.003 for x in uniform_draws)
    assert Latency.constant(0.25).draw(rng) == 0.25


# --- discovery ----------------------------------------------------------------------------


def discovery(views: dict[int, object] | None = None) -> DiscoveryService:
    return DiscoveryService(
        contact_points=[contact_point_of(index) for index in range(4)],
        registered_at=[0.5, 1.0, 2.0, 3.0],
        deregistered_at=[math.inf, 4.0, math.inf, 3.0],  # node 3 is never visible
        views=views or {},  # type: ignore[arg-type]
    )


def test_discovery_registry_follows_registration_times() -> None:
    """The registry holds exactly the nodes registered and not yet removed at each instant."""
    service = discovery()
    assert service.registered(0.4) == frozenset()
    assert service.registered(0.5) == {0}
    assert service.registered(2.0) == {0, 1, 2}
    assert service.registered(3.5) == {0, 1, 2}
    assert service.registered(4.0) == {0, 2}


def test_discovery_view_lag_returns_an_older_registry() -> None:
    """A lookup with a view lag sees the registry as it was that long ago; results are shared."""
    service = discovery()
    lagging = service.lookup(0, 2.5, view_lag=1.0)
    assert lagging.contact_points == (contact_point_of(0), contact_point_of(1))
    assert service.lookup(1, 2.0, view_lag=0.0).contact_points == tuple(
        contact_point_of(index) for index in (0, 1, 2)
    )
    # Same registry version, same event object: a lookup is O(log n).
    assert service.lookup(2, 1.9, view_lag=0.0) is lagging


def test_discovery_views_can_disagree_per_node() -> None:
    """A per-node view filters the registry: node 2 never sees node 0."""
    service = discovery(views={2: lambda now, registered: registered - {0}})
    assert service.lookup(2, 5.0, view_lag=0.0).contact_points == (contact_point_of(2),)
    assert service.lookup(1, 3.0, view_lag=0.0).contact_points == tuple(
        contact_point_of(index) for index in (0, 1, 2)
    )


def test_discovery_view_returning_an_unknown_node_is_an_error() -> None:
    """A view that names a node that does not exist is a bug in the scenario."""
    service = discovery(views={0: lambda now, registered: [7]})
    with pytest.raises(ValueError, match="unknown node 7"):
        service.lookup(0, 1.0, view_lag=0.0)


# --- membership ---------------------------------------------------------------------------


def test_membership_seeds_are_the_lowest_running_members() -> None:
    """A member advertises its cluster's lowest running members, at most max_seed_nodes."""
    changed: list[int] = []
    names = [node_name(index, 6) for index in range(6)]
    membership = Membership(names, max_seed_nodes=2, on_document_changed=changed.append)
    cluster = membership.create(3)
    assert cluster == "sim://node-3"
    assert changed == [3]
    assert membership.seed_nodes(3) == ("sim://node-3",)
    assert membership.seed_nodes(0) == ()

    changed.clear()
    membership.join(5, cluster)  # enters the top two: everybody's document changes
    assert changed == [3, 5]
    changed.clear()
    membership.join(1, cluster)
    assert membership.seed_nodes(5) == ("sim://node-1", "sim://node-3")
    assert changed == [1, 3, 5]
    changed.clear()
    membership.join(4, cluster)  # not in the top two: only its own document changes
    assert changed == [4]
    assert membership.seed_nodes(4) == ("sim://node-1", "sim://node-3")

    changed.clear()
    membership.leave(1)
    assert membership.seed_nodes(3) == ("sim://node-3", "sim://node-4")
    assert changed == [3, 4, 5]
    assert membership.members(cluster) == (3, 4, 5)
    assert membership.created == [cluster]


def test_membership_forgets_a_restarted_node_and_names_later_clusters_by_life() -> None:
    """A stopped node keeps its cluster for the report until it restarts; clusters coexist."""
    names = [node_name(index, 3) for index in range(3)]
    membership = Membership(names, max_seed_nodes=5, on_document_changed=lambda _: None)
    first = membership.create(0)
    membership.join(1, first)
    membership.leave(0)
    assert membership.cluster_of == [first, first, None]  # 0: what it was in when it stopped
    with pytest.raises(ValueError, match="still a member"):
        membership.restarted(1)
    membership.restarted(0)
    assert membership.cluster_of == [None, first, None]
    assert membership.seed_nodes(0) == ()
    second = membership.create(0, life=1)
    assert second == "sim://node-0#2"
    assert membership.coexisting == {first: (), second: (first,)}  # node 1 still runs
    assert membership.founder_of == {first: 0, second: 0}
    membership.leave(1)
    assert membership.live_clusters() == (second,)


def test_membership_refuses_a_second_cluster_from_one_node() -> None:
    """Forming twice from the same node is a simulation bug, not a silent overwrite."""
    membership = Membership(["a", "b"], max_seed_nodes=5, on_document_changed=lambda _: None)
    membership.create(0)
    with pytest.raises(ValueError, match="twice"):
        membership.create(0)


# --- scenario -----------------------------------------------------------------------------


def test_contact_points_and_names_follow_the_node_index() -> None:
    """Node i has a distinct IP-literal contact point; both orders match the index order."""
    points = [contact_point_of(index) for index in range(600)]
    assert points[0] == ContactPoint("10.0.0.1", 8558)
    assert points[250] == ContactPoint("10.0.1.1", 8558)
    assert sorted(points) == points
    names = [node_name(index, 600) for index in range(600)]
    assert sorted(names) == names
    assert names[7] == "sim://node-007"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"nodes": 0}, "nodes must be an integer"),
        ({"nodes": 2, "transport": "udp"}, "transport must be"),
        ({"nodes": 2, "loss": 1.0}, "loss must be a probability"),
        ({"nodes": 2, "start_times": [0.0]}, "start_times has 1 entries for 2 nodes"),
        ({"nodes": 2, "stop_times": {5: 1.0}}, "stop_times names node 5"),
        ({"nodes": 2, "start_times": [0.0, 2.0], "stop_times": {1: 1.0}}, "stops at 1.0 before"),
        ({"nodes": 2, "max_time": 0}, "max_time must be > 0"),
        ({"nodes": 2, "keepalive_expiry": -1.0}, "keepalive_expiry must be"),
        ({"nodes": 2, "settings": {"probe_interval": 1}}, "settings must be"),
        ({"nodes": 2, "discovery_views": {0: 3}}, "must be callable"),
        ({"nodes": 2, "view_lag": math.inf}, "view_lag must be a finite"),
    ],
)
def test_scenario_rejects_bad_values_with_a_clear_message(
    kwargs: dict[str, object], message: str
) -> None:
    """Each bad scenario value raises UsageError naming what to change."""
    with pytest.raises(UsageError, match=message):
        Scenario(**kwargs)  # type: ignore[arg-type]


def test_partition_and_latency_validation() -> None:
    """Partitions must end after they start and have disjoint groups; latency high >= low."""
    with pytest.raises(UsageError, match="after its start"):
        Partition(start=2.0, end=1.0, groups=[{0}])
    with pytest.raises(UsageError, match="overlap on nodes"):
        Partition(start=0.0, end=1.0, groups=[{0, 1}, {1}])
    with pytest.raises(UsageError, match="must be >= low"):
        Latency(low=0.2, high=0.1)
    with pytest.raises(UsageError, match="partition groups names node 9"):
        Scenario(nodes=2, partitions=[Partition(start=0.0, end=1.0, groups=[{9}])])


def test_start_times_are_drawn_from_the_seed() -> None:
    """Without explicit start times, nodes start within the spread, reproducibly per seed."""
    scenario = Scenario(nodes=5, start_spread=2.0, seed=4)
    times = scenario.resolved_start_times()
    assert times == Scenario(nodes=5, start_spread=2.0, seed=4).resolved_start_times()
    assert times != Scenario(nodes=5, start_spread=2.0, seed=5).resolved_start_times()
    assert all(0 <= time <= 2.0 for time in times)
    assert Scenario(nodes=3).resolved_start_times() == (0.0, 0.0, 0.0)


# --- bounds -------------------------------------------------------------------------------


def test_formation_bound_adds_up_its_terms() -> None:
    """Without loss: last start + discovery + stable margin + two probe periods + joins."""
    scenario = Scenario(
        nodes=3,
        start_times=[0.0, 2.0, 1.0],
        latency=Latency.constant(0.01),
        lookup_latency=Latency.constant(0.05),
        register_lag=0.5,
        view_lag=0.25,
    )
    settings = scenario.settings
    expected = (
        2.0  # the last start
        + 0.5
        + 0.25
        + settings.discovery_interval * (1 + settings.discovery_jitter)
        + 2 * 0.05
        + settings.stable_margin
        + 2 * (settings.probe_interval * (1 + settings.probe_jitter) + settings.probe_timeout)
        + 6 * 0.01
    )
    probe_period = settings.probe_interval * (1 + settings.probe_jitter) + settings.probe_timeout
    # The founding round (the default) adds one probe period for the promises.
    assert formation_bound(scenario) == pytest.approx(expected + probe_period)
    anchor = attrs.evolve(scenario, settings=Settings(formation="lowest-address"))
    assert formation_bound(anchor) == pytest.approx(expected)
    assert late_join_bound(scenario, 10.0) == pytest.approx(10.07)


def test_loss_widens_the_bound() -> None:
    """Loss adds periods for the all-fresh window and an allowance for a failure streak."""
    assert probe_rounds(0.0, 30) == 2.0
    assert failure_streak(0.0, 30) == 0
    assert failure_streak(1e-200, 30) == 1  # a probability that rounds to zero
    assert failure_streak(0.3, 30) > failure_streak(0.1, 30) > 1
    lossless = Scenario(nodes=30)
    lossy = Scenario(nodes=30, loss=0.2)
    assert backoff_allowance(lossless) == 0.0
    assert formation_bound(lossy) > formation_bound(lossless) + backoff_allowance(lossy)


def test_bounds_refuse_scenarios_they_do_not_cover() -> None:
    """The bounds assume consistent discovery and a stable network, and say so."""
    with pytest.raises(UsageError, match="discovery failures, partitions, nodes that stop"):
        formation_bound(
            Scenario(
                nodes=2,
                discovery_failure=0.1,
                partitions=[Partition(start=0.0, end=1.0, groups=[{0}])],
                stop_times={1: 5.0},
            )
        )
    with pytest.raises(UsageError, match="only defined without loss"):
        late_join_bound(Scenario(nodes=2, loss=0.1), 1.0)
    with pytest.raises(UsageError, match="finite time"):
        late_join_bound(Scenario(nodes=2), math.inf)
