"""Who probes whom (DESIGN section 9) on whole simulated deployments.

The machine's own choice of peers is checked call by call in ``tests/core`` (the model of
``test_machine_properties.py``); here the consequences for a deployment: connections per node,
one cluster when the lowest nodes are dead (the founder dying around its round, under every
fanout, is ``test_safety_properties``' crash property), and the traffic the full mesh costs
beside the fanout. Each property also runs under ``probe_fanout=None`` (the full mesh), so
a difference between the two is the topology's.
"""

from __future__ import annotations

from hypothesis import given, note
from hypothesis import strategies as st

from bootstrap.core.settings import Settings
from bootstrap.sim import Latency, Scenario, formation_bound, run_simulation

FANOUTS = st.sampled_from([1, 2, 3, None])


@given(
    st.integers(2, 12),
    FANOUTS,
    st.sampled_from(["poll", "watch"]),
    st.integers(0, 2**16),
)
def test_only_the_founder_connects_to_everyone(
    nodes: int, fanout: int | None, transport: str, seed: int
) -> None:
    """Healthy simultaneous start: one cluster; a non-founder connects to ``probe_fanout`` peers."""
    settings = Settings(stable_margin=1.0, probe_interval=0.5, probe_fanout=fanout)
    report = run_simulation(
        Scenario(
            nodes=nodes,
            settings=settings,
            transport=transport,  # type: ignore[arg-type]
            seed=seed,
            latency=Latency.uniform(0.001, 0.01),
        )
    )
    assert report.violations == ()
    assert report.clusters_formed == 1
    (founder,) = [node for node in report.nodes if node.decision == "join-self"]
    assert founder.index == 0  # the lowest contact point
    assert founder.max_open_connections == nodes - 1
    probed = nodes - 1 if fanout is None else min(fanout, nodes - 1)
    for node in report.nodes[1:]:
        # (A join that fails, here on a founder not yet formed, closes and reopens one.)
        assert node.max_open_connections == node.peers_connected == probed, node


@given(
    st.integers(1, 3),
    st.integers(1, 5),
    st.sampled_from(["poll", "watch"]),
    st.integers(0, 2**16),
)
def test_the_lowest_probe_fanout_dead_and_still_discovered(
    fanout: int, alive: int, transport: str, seed: int
) -> None:
    """The ``probe_fanout`` lowest crash at once and stay in discovery (a stale registry).

    Without contact_with_all_contact_points the lowest live node is the lowest fresh one, so it
    must form: it can only learn that if it probes past the dead (they fail, so the next ones
    up are probed) and, seeing every peer below it fail, becomes the would-be founder that
    probes everyone. The other live nodes must find that cluster past the same dead peers.
    """
    nodes = fanout + 1 + alive
    settings = Settings(
        stable_margin=1.0,
        probe_interval=0.5,
        probe_timeout=1.0,
        probe_backoff_max=2.0,
        probe_fanout=fanout,
        contact_with_all_contact_points=False,
    )
    dead = range(fanout)
    report = run_simulation(
        Scenario(
            nodes=nodes,
            settings=settings,
            transport=transport,  # type: ignore[arg-type]
            seed=seed,
            latency=Latency.uniform(0.001, 0.01),
            stop_times=dict.fromkeys(dead, 0.001),
            deregister_lag=10_000.0,  # never deregistered within the run
            max_time=120.0,
        )
    )
    note(f"clusters {report.cluster_ids}; reasons {[n.reason for n in report.nodes]}")
    assert report.violations == ()
    assert report.clusters_formed == 1
    live = [node for node in report.nodes if node.index >= fanout]
    assert all(node.joined for node in live)
    (founder,) = [node for node in live if node.decision == "join-self"]
    assert founder.index == fanout  # the lowest live contact point


def test_the_fanout_cuts_connections_and_messages_at_fifty_nodes() -> None:
    """N = 50, stalled for 60 s: the full mesh's connections and messages against the fanout's.

    Formation never happens (more contact points required than exist), so every node probes for
    the whole run: the full mesh holds N(N - 1) connections, the fanout about 3N plus the
    founder's N - 1, and the messages on the wire shrink in the same ratio.
    """
    nodes = 50

    def stalled(fanout: int | None) -> tuple[int, int]:
        report = run_simulation(
            Scenario(
                nodes=nodes,
                settings=Settings(required_contact_points=nodes + 1, probe_fanout=fanout),
                transport="watch",
                seed=1,
                max_time=60.0,
                expect_formation=False,
            )
        )
        assert report.violations == ()
        return sum(node.max_open_connections for node in report.nodes), report.messages

    mesh_connections, mesh_messages = stalled(None)
    fanout_connections, fanout_messages = stalled(3)
    assert mesh_connections == nodes * (nodes - 1)
    assert fanout_connections == (nodes - 1) + 3 * (nodes - 1)
    # Messages follow connections: each watch pushes one document per probe period.
    assert fanout_messages * 8 < mesh_messages


def test_a_lost_proposal_to_a_watched_peer_does_not_stall_the_round() -> None:
    """The formation property's counterexample, kept: 25 nodes, fanout 1, 20 % loss, a 26 s
    probe interval with jitter 0.9, watches. The founder's proposal to one peer was lost, and
    that peer's pushes kept postponing the probe that would have repeated it: round 1 waited
    for ever (no cluster in 10,000 s). The proposal is now repeated from the pushes."""
    interval = 25.790339917193062
    scenario = Scenario(
        nodes=25,
        settings=Settings(
            required_contact_points=2,
            stable_margin=2.0,
            probe_interval=interval,
            probe_jitter=0.9,
            probe_backoff_max=interval,
            probe_fanout=1,
        ),
        transport="watch",
        seed=0,
        start_spread=3.0,
        latency=Latency(low=0.019334431971547435, high=0.019334431971547435, mean_extra=1e-06),
        loss=0.203125,
        lookup_latency=Latency(low=0.001, high=0.05, mean_extra=0.002),
    )
    report = run_simulation(scenario)
    assert report.violations == ()
    assert report.end_reason == "all-joined"
    assert report.clusters_formed == 1
    assert report.all_joined_time is not None
    assert report.all_joined_time <= formation_bound(scenario)
