"""The real split-brain benchmark: its schedules, its counting, and a reduced run of our nodes.

The schedules must be the simulation's (the same starts and lags per seed) and stay inside S2
(views that only grow); a cluster is counted per ``join-self``. The end-to-end run is the
late-lowest schedule, ours only, on loopback: the founding round forms exactly one cluster in
every attempt. (That the anchor's rule splits on it is shown by
``tests/faults/test_founding_round.py``; the Pekko nodes run in ``tests/interop``.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchmarks import split_brain, split_brain_real
from benchmarks.split_brain_real import (
    DEPLOYMENT_ROW,
    deployment_schedule,
    deployment_seeds,
    late_lowest_schedule,
    outcome,
    promise_splits,
    summarise,
)
from tests.helpers.benchmark_scripts import run_benchmark
from tests.helpers.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_late_lowest_views() -> None:
    schedule = late_lowest_schedule(0.5)
    early = frozenset({1, 2, 3, 4})
    for node in early:
        assert schedule.start_of(node) == 0.0
        assert schedule.view_at(node, 100.0) == early
    assert schedule.start_of(0) == 0.5
    assert schedule.view_at(0, 0.49) == frozenset()
    assert schedule.view_at(0, 0.5) == frozenset(range(5))


@pytest.mark.parametrize("seed", [0, 7, 20])
def test_deployment_schedule_is_the_simulations_scenario(seed: int) -> None:
    """Node k sees node i from max(start_k, start_i + lag_k), nothing before start_k."""
    schedule = deployment_schedule(seed)
    scenario = split_brain.scenario(DEPLOYMENT_ROW, seed, "promise")
    starts, lags = scenario.resolved_start_times(), scenario.resolved_view_lags()
    assert schedule.nodes == DEPLOYMENT_ROW.nodes == len(starts)
    moments = [t / 10 for t in range(400)]
    for node in range(schedule.nodes):
        assert schedule.start_of(node) == pytest.approx(starts[node])
        previous: frozenset[int] = frozenset()
        for moment in moments:
            view = schedule.view_at(node, moment)
            expected = (
                frozenset(i for i, start in enumerate(starts) if start + lags[node] <= moment)
                if moment >= starts[node]
                else frozenset()
            )
            assert view == expected, (node, moment)
            assert previous <= view  # S2: a view only grows
            previous = view
        assert previous == frozenset(range(schedule.nodes))


def test_sim_split_seeds_split_in_the_simulation() -> None:
    seeds = deployment_seeds("sim-splits", 2)
    assert len(seeds) == 2
    for seed in seeds:
        assert split_brain_real.simulated(seed)["lowest-address"]
    assert deployment_seeds("first", 3) == [0, 1, 2]


class _Node:
    def __init__(self, decision: str | None, decided: float | None, joined: float | None) -> None:
        self.latest = {"decision": decision, "decided_at": decided, "joined_at": joined}


def test_two_self_joins_are_two_clusters_and_break_the_promise() -> None:
    schedule = late_lowest_schedule(0.5)
    begin = 1000.0
    split = [
        _Node("join-self", begin + 1.2, begin + 1.3),
        _Node("join-self", begin + 1.0, begin + 1.1),
        *(_Node("join-seed-nodes", begin + 1.4, None) for _ in range(3)),
    ]
    record = outcome(schedule, "promise", split, begin)  # type: ignore[arg-type]
    assert record["clusters"] == 2
    assert record["founders"] == [0, 1]
    assert record["nodes_decided"] == 5
    assert record["nodes_joined"] == 2
    assert record["decision_seconds"] == pytest.approx(0.9)  # 1.4 after 0.5, node 0's start
    assert record["formation_seconds"] is None
    one = [_Node("join-self", begin + 1.0, begin + 1.0)] + [
        _Node("join-seed-nodes", begin + 1.5, begin + 2.0) for _ in range(4)
    ]
    single = outcome(schedule, "promise", one, begin)  # type: ignore[arg-type]
    assert single["clusters"] == 1
    assert single["formation_seconds"] == pytest.approx(1.5)
    summary = summarise([record, single])
    (row,) = summary
    assert row["attempts"] == 2
    assert row["two_or_more_clusters"] == 1
    assert row["not_all_joined"] == 1
    assert row["not_all_decided"] == 0
    assert promise_splits(summary) == summary
    assert promise_splits(summarise([single])) == []


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    output = tmp_path_factory.mktemp("split_brain_real")
    return run_benchmark(
        "split_brain_real.py",
        "--isolation=loopback",
        "--rules=promise,lowest-address",
        "--schedules=late-lowest",
        "--attempts=3",
        f"--port={free_port()}",
        output=output,
        document="split_brain_real.json",
        timeout=300,
    )


def test_reduced_run_promise_forms_one_cluster_every_time(document: dict[str, Any]) -> None:
    runs = [run for run in document["runs"] if run["rule"] == "promise"]
    assert len(runs) == 3
    for run in runs:
        assert run["clusters"] == 1, run
        assert run["nodes_decided"] == run["nodes_joined"] == 5, run
        assert run["decisions"].count("join-seed-nodes") == 4, run


def test_reduced_run_old_rule_decides_and_any_split_is_node_0_beside_node_1(
    document: dict[str, Any],
) -> None:
    runs = [run for run in document["runs"] if run["rule"] == "lowest-address"]
    assert len(runs) == 3
    for run in runs:
        assert run["nodes_decided"] == 5, run
        assert 1 <= run["clusters"] <= 2, run
        assert set(run["founders"]) <= {0, 1}, run
    summary = {(s["schedule"], s["rule"]): s for s in document["summary"]}
    assert summary[("late-lowest", "lowest-address")]["two_or_more_clusters"] == sum(
        run["clusters"] >= 2 for run in runs
    )
    assert summary[("late-lowest", "promise")]["two_or_more_clusters"] == 0
