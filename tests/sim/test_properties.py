"""Cluster-level properties of the machine, checked on the simulation (DESIGN invariants 5, 6).

Testing policy: see ``test_model.py``. Each example is a whole simulated deployment; its size
is kept within a message budget (``strategies.MESSAGE_BUDGET``) so 200 examples per property
fit the suite's time budget, and every run stops as soon as all nodes joined.

Worst ratio of formation time to :func:`~bootstrap.sim.formation_bound` found while tuning the
bound (about 2,600 runs drawn like ``formation_scenarios``, plus the hypothesis runs): 0.73
without loss (28 nodes, poll, 0.28 s interval, jitter 0), 0.52 with loss. The property uses
``target()`` to push towards the worst case; ``--hypothesis-show-statistics`` prints the highest
ratio a run reached.
"""

from __future__ import annotations

import attrs
from hypothesis import given, target
from hypothesis import strategies as st

from bootstrap.sim import (
    Scenario,
    formation_bound,
    late_join_bound,
    run_simulation,
)

from .strategies import formation_scenarios


@given(formation_scenarios())
def test_exactly_one_cluster_forms_within_the_bound(scenario: Scenario) -> None:
    """Invariant 5: one node forms, every node joins its cluster, within the formation bound."""
    report = run_simulation(scenario)
    assert report.violations == ()
    assert report.clusters_formed == 1
    assert report.end_reason == "all-joined"
    (cluster,) = report.cluster_ids
    assert all(node.cluster_id == cluster for node in report.nodes)
    bound = formation_bound(scenario)
    assert report.all_joined_time is not None
    ratio = report.all_joined_time / bound
    target(ratio, label="formation time / bound")
    assert report.all_joined_time <= bound


@given(
    formation_scenarios(max_nodes=10).map(lambda scenario: attrs.evolve(scenario, loss=0.0)),
    st.data(),
)
def test_late_starter_joins_within_a_round_trip_of_discovery(
    base: Scenario, data: st.DataObject
) -> None:
    """Invariant 5: a node started after formation joins right after it discovers the cluster."""
    late = data.draw(st.integers(0, base.nodes), label="late node")  # 0: the lowest address
    starts = list(base.resolved_start_times())
    late_start = formation_bound(base) + data.draw(st.floats(0.0, 5.0), label="delay")
    starts.insert(late, late_start)
    scenario = attrs.evolve(base, nodes=base.nodes + 1, start_times=starts)
    report = run_simulation(scenario)
    assert report.violations == ()
    assert report.formation_time is not None
    assert report.formation_time < late_start
    node = report.nodes[late]
    assert node.decision == "join-seed-nodes"
    assert node.discovered_at is not None
    assert node.joined_at is not None
    bound = late_join_bound(scenario, node.discovered_at)
    if bound > node.discovered_at:  # zero latency: joined at the instant of discovery
        target((node.joined_at - node.discovered_at) / (bound - node.discovered_at), label="late")
    assert node.joined_at <= bound
