"""Split brain: how often two clusters form, under the founding round and under the anchor's rule.

A sweep of seeded simulated runs (``bootstrap.sim``). Every row is one kind of deployment; each
seed of a row is run twice, once with ``formation="promise"`` (the founding round, DESIGN
section 8) and once with ``formation="lowest-address"`` (the anchor's rule), on the same
scenario: the same start times, lags, latencies and partitions. Families:

``deployment``
    N nodes start uniformly over 30 s (a Kubernetes Deployment); discovery shows a node to the
    others after a lag of 0-3 s drawn per node (``per-node``: each node's view lags the
    registry by its own lag) or per pair (``per-pair``: node k sees node i after a lag drawn
    for the pair).
``rolling``
    An established deployment of N nodes (all started at 0) is replaced by N new nodes with
    new contact points, interleaved with the old ones in address order: from 10 s, every 2 s a
    batch of a quarter of N new nodes starts and 1 s later as many old nodes stop; endpoints
    linger 2 s after a node stops. The lags apply to the update.
``full-restart``
    An established deployment of N nodes stops (within 10-12 s), then new processes start on
    the same contact points over 10 s from 12.5 s; endpoints linger 2 s.
``restart-during-start``
    A deployment (as above) in which a fifth of the nodes (at least one) crash once while
    the cluster forms (at a random time before 35 s) and come back 0.5-5 s later with a fresh
    process: a node restarted mid-round forgets the promise it held.
``inconsistent-views``
    A deployment whose discovery never shows each node a random 20 % of its peers.
``partition-healing`` / ``partition-permanent``
    A deployment cut in two (a random minority of (N-1)/2 nodes against the rest) at a random
    time in the first 30 s, healing after 10-30 s or never; each side's discovery drops the
    other side 2 s after the cut (and shows it again 2 s after it heals).

Everything else is the default ``Settings`` but the stable margin (0.001 s stands for "zero":
it must be > 0) and ``required_contact_points`` (2, or a majority of N).

For each row and rule it counts the runs in which two clusters coexisted (one was created
while the other still had a running member), the runs in which nobody formed by the end (and
those in which some running node never joined), the formation time (the last join minus the
last start, over the runs in which every running node joined: median and 95th percentile),
the founding time (the decision of the last cluster's founder minus the first start among the
nodes then running), and the mechanism of each split (``bootstrap.sim.report.explain_split``).
The cost of the round is the founding time under ``promise`` minus that under
``lowest-address`` in the same scenario (runs in which neither split).

A row marked S1 (``required_contact_points`` above half of all its nodes, no restart that
overlaps a running peer) or S2 (``contact_with_all_contact_points`` and views that are
prefixes of one registration order: per-node lags, no dropped views, no node stopping) is
inside a guarantee of DESIGN section 8: the script exits 1 and says so if ``promise`` split in
any such row.

    python benchmarks/split_brain.py --quick          # 14 rows, 500 seeds: about 2 minutes
    python benchmarks/split_brain.py                  # the full sweep, 1,000 seeds per row
    python benchmarks/split_brain.py --families deployment --nodes 20 --seeds 200

Writes ``benchmarks/results/split_brain/split_brain.json`` (``--output``) and prints a Markdown
table (also written to ``--markdown FILE``).
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import math
import multiprocessing
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from bootstrap.core.settings import Formation, Settings
from bootstrap.sim import Partition, Scenario, run_simulation
from bootstrap.sim.report import SimulationReport
from bootstrap.sim.scenario import DiscoveryView, Transport, full_restart, rolling_replacement

RequiredLabel = Literal["2", "majority"]

RESULTS = Path(__file__).parent / "results" / "split_brain" / "split_brain.json"
FORMATIONS: tuple[Formation, ...] = ("promise", "lowest-address")
FAMILIES = (
    "deployment",
    "rolling",
    "full-restart",
    "restart-during-start",
    "inconsistent-views",
    "partition-healing",
    "partition-permanent",
)
LAGS = ("per-node", "per-pair")
NODES = (3, 5, 10, 20)
MARGINS = (0.001, 0.1, 0.5, 1.0, 2.0, 5.0)
REQUIRED: tuple[RequiredLabel, ...] = ("2", "majority")
TRANSPORTS: tuple[Transport, ...] = ("poll", "watch")
DEFAULT_SEEDS = 1000
QUICK_SEEDS = 500
# Seeds per task handed to a worker: large enough to amortise the hand-over, small enough to
# keep both cores busy to the end.
CHUNK = 20

START_SPREAD = 30.0  # a Deployment's pods start over this long
LAG = (0.0, 3.0)  # discovery lag range, per node or per pair
DROP = 0.2  # inconsistent views: share of its peers a node never sees
ENDPOINT_LAG = 2.0  # a stopped node's endpoint lingers; a partition shows in discovery after it
# Long enough for every family to form at every margin (the last start, the lag, the margin
# and a few probe periods); a run ends as soon as every running node has joined.
MAX_TIME = 90.0


@dataclass(frozen=True)
class Row:
    """One line of the table: a kind of deployment, run for many seeds under both rules."""

    family: str
    lag: str
    nodes: int
    stable_margin: float
    required: RequiredLabel
    transport: Transport

    @property
    def required_contact_points(self) -> int:
        return 2 if self.required == "2" else self.nodes // 2 + 1

    @property
    def label(self) -> str:
        return (
            f"{self.family} {self.lag} N={self.nodes} margin={self.stable_margin:g}s "
            f"required={self.required_contact_points} {self.transport}"
        )


class _Drop:
    """A discovery view that never shows some peers (inconsistent views)."""

    def __init__(self, hidden: frozenset[int]) -> None:
        self._hidden = hidden

    def __call__(self, now: float, registered: frozenset[int]) -> Iterable[int]:
        return registered - self._hidden


class _PartitionedView:
    """While cut off, a node's discovery drops the other side (a little after the cut)."""

    def __init__(self, other_side: frozenset[int], start: float, end: float) -> None:
        self._other_side = other_side
        self._from, self._until = start + ENDPOINT_LAG, end + ENDPOINT_LAG

    def __call__(self, now: float, registered: frozenset[int]) -> Iterable[int]:
        if self._from <= now < self._until:
            return registered - self._other_side
        return registered


#: The topology of DESIGN section 9 unless told otherwise (``--probe-fanout none``: full mesh).
DEFAULT_FANOUT = Settings().probe_fanout


def scenario(
    row: Row, seed: int, formation: Formation, *, probe_fanout: int | None = DEFAULT_FANOUT
) -> Scenario:
    """The scenario of ``row`` for ``seed``: identical under both rules but for ``formation``."""
    settings = Settings(
        stable_margin=row.stable_margin,
        required_contact_points=row.required_contact_points,
        formation=formation,
        probe_fanout=probe_fanout,
    )
    common: dict[str, Any] = {
        "settings": settings,
        "transport": row.transport,
        "seed": seed,
        "max_time": MAX_TIME,
        "expect_formation": False,  # liveness is counted, not a violation
        ("node_lag" if row.lag == "per-node" else "pair_lag"): LAG,
    }
    nodes = row.nodes
    rng = random.Random(f"{seed}/split-brain/{row.family}")
    if row.family == "rolling":
        return rolling_replacement(
            nodes,
            begin=10.0,
            interval=2.0,
            batch=max(1, nodes // 4),
            overlap=1.0,
            deregister_lag=ENDPOINT_LAG,
            **common,
        )
    if row.family == "full-restart":
        return full_restart(
            nodes,
            stop_at=10.0,
            stop_spread=2.0,
            restart_at=12.5,
            restart_spread=10.0,
            deregister_lag=ENDPOINT_LAG,
            **common,
        )
    deployment = Scenario(nodes=nodes, start_spread=START_SPREAD, **common)
    if row.family == "deployment":
        return deployment
    if row.family == "restart-during-start":
        starts = deployment.resolved_start_times()
        restarts = []
        for index in rng.sample(range(nodes), max(1, nodes // 5)):
            stop = rng.uniform(starts[index], START_SPREAD + 5.0)
            restarts.append((index, stop, stop + rng.uniform(0.5, 5.0)))
        return Scenario(nodes=nodes, start_spread=START_SPREAD, restarts=restarts, **common)
    if row.family == "inconsistent-views":
        views: dict[int, DiscoveryView] = {
            node: _Drop(
                frozenset(peer for peer in range(nodes) if peer != node and rng.random() < DROP)
            )
            for node in range(nodes)
        }
        return Scenario(nodes=nodes, start_spread=START_SPREAD, discovery_views=views, **common)
    if row.family in ("partition-healing", "partition-permanent"):
        # A strict minority, so that a majority ``required`` can form on the other side.
        minority = frozenset(rng.sample(range(nodes), (nodes - 1) // 2))
        majority = frozenset(range(nodes)) - minority
        start = rng.uniform(0.0, START_SPREAD)
        end = start + rng.uniform(10.0, 30.0) if row.family == "partition-healing" else math.inf
        cut_views: dict[int, DiscoveryView] = {
            node: _PartitionedView(majority if node in minority else minority, start, end)
            for node in range(nodes)
        }
        return Scenario(
            nodes=nodes,
            start_spread=START_SPREAD,
            partitions=(Partition(start=start, end=end, groups=[minority, majority]),),
            discovery_views=cut_views,
            **common,
        )
    raise ValueError(f"unknown family {row.family!r}")


def guarantees(row: Row) -> tuple[str, ...]:
    """The guarantees of DESIGN section 8 whose conditions the row meets (seed-independent)."""
    built = scenario(row, 0, "promise")
    return tuple(
        name for name, holds in (("S1", built.meets_s1()), ("S2", built.meets_s2())) if holds
    )


# --- one run ------------------------------------------------------------------------------------


def outcome(report: SimulationReport) -> dict[str, Any]:
    """What the sweep keeps of one run."""
    running = [
        node for node in report.nodes if node.started_at is not None and node.stopped_at is None
    ]
    last_start = max((start for node in report.nodes for start, _ in node.lives), default=0.0)
    all_joined = report.end_reason == "all-joined"
    mechanisms = report.split_mechanisms
    founding_time = None
    founded = [founder for founder in report.founders if founder.cluster_id is not None]
    if founded:
        # The last cluster's founding decision, from the first start among the nodes running
        # then: the time the rule took to found it (the founding round costs a round trip).
        decided = founded[-1].decided_at
        founding_time = decided - min(
            start
            for node in report.nodes
            for start, stop in node.lives
            if start <= decided and (stop is None or stop > decided)
        )
    return {
        "split": report.split,
        "kinds": sorted({mechanism.kind for mechanism in mechanisms}),
        "details": [mechanism.detail for mechanism in mechanisms],
        "rules": [f"node {founder.node}: {founder.rule}" for founder in report.founders],
        "nobody_formed": bool(running) and not any(node.cluster_id for node in running),
        "not_all_joined": not all_joined,
        "formation_time": (
            report.all_joined_time - last_start
            if all_joined and report.all_joined_time is not None
            else None
        ),
        "founding_time": founding_time,
        "wall_seconds": report.wall_seconds,
        # Breaches of the machine's contract (not the splits and stalls counted above).
        "violations": sorted(
            kind for kind, _ in report.violation_counts if kind not in ("clusters", "not-joined")
        ),
    }


def run_chunk(
    task: tuple[int, Row, int, int, int | None],
) -> tuple[int, list[tuple[int, dict[str, Any]]]]:
    """Seeds ``[first, last)`` of one row under both rules (a worker's unit of work)."""
    position, row, first, last, fanout = task
    results = []
    for seed in range(first, last):
        by_rule: dict[str, Any] = {
            formation: outcome(run_simulation(scenario(row, seed, formation, probe_fanout=fanout)))
            for formation in FORMATIONS
        }
        results.append((seed, by_rule))
    return position, results


# --- aggregation --------------------------------------------------------------------------------


def _percentile(values: Sequence[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1)]


def summarise(row: Row, runs: Sequence[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
    """One row of the JSON: the row, its guarantees, and per rule the counts and times."""
    rules: dict[str, Any] = {}
    for formation in FORMATIONS:
        outcomes = [(seed, by_rule[formation]) for seed, by_rule in sorted(runs)]
        times = [o["formation_time"] for _, o in outcomes if o["formation_time"] is not None]
        founding = [o["founding_time"] for _, o in outcomes if o["founding_time"] is not None]
        mechanisms = collections.Counter(kind for _, o in outcomes for kind in o["kinds"])
        violations = collections.Counter(v for _, o in outcomes for v in o["violations"])
        split_seeds = [seed for seed, o in outcomes if o["split"]]
        rules[formation] = {
            "splits": len(split_seeds),
            "split_seeds": split_seeds[:20],
            "split_examples": [
                {"seed": seed, "mechanisms": o["details"], "founders": o["rules"]}
                for seed, o in outcomes
                if o["split"]
            ][:3],
            "mechanisms": dict(mechanisms.most_common()),
            "nobody_formed": sum(o["nobody_formed"] for _, o in outcomes),
            "nobody_formed_seeds": [seed for seed, o in outcomes if o["nobody_formed"]][:20],
            "not_all_joined": sum(o["not_all_joined"] for _, o in outcomes),
            "not_all_joined_seeds": [seed for seed, o in outcomes if o["not_all_joined"]][:20],
            "formation_time": {
                "runs": len(times),
                "median": statistics.median(times) if times else None,
                "p95": _percentile(times, 0.95),
            },
            "founding_time": {
                "runs": len(founding),
                "median": statistics.median(founding) if founding else None,
                "p95": _percentile(founding, 0.95),
            },
            "violations": dict(violations),
            "wall_seconds": sum(o["wall_seconds"] for _, o in outcomes),
        }
    # The round's cost, paired: the same scenario's founding time under both rules (runs in
    # which either split are left out: they founded different clusters).
    costs = [
        by_rule["promise"]["founding_time"] - by_rule["lowest-address"]["founding_time"]
        for _, by_rule in runs
        if all(
            by_rule[formation]["founding_time"] is not None and not by_rule[formation]["split"]
            for formation in FORMATIONS
        )
    ]
    return {
        **asdict(row),
        "required_contact_points": row.required_contact_points,
        "seeds": len(runs),
        "guarantees": list(guarantees(row)),
        "rules": rules,
        "round_cost": {
            "runs": len(costs),
            "median": statistics.median(costs) if costs else None,
            "p95": _percentile(costs, 0.95),
        },
    }


def sweep(
    rows: Sequence[Row],
    seeds: int,
    jobs: int,
    *,
    progress: bool = True,
    probe_fanout: int | None = DEFAULT_FANOUT,
) -> list[dict[str, Any]]:
    """Run every row for ``seeds`` seeds on ``jobs`` processes; the rows' summaries, in order."""
    tasks = [
        (position, row, first, min(seeds, first + CHUNK), probe_fanout)
        for position, row in enumerate(rows)
        for first in range(0, seeds, CHUNK)
    ]
    collected: dict[int, list[tuple[int, dict[str, Any]]]] = {i: [] for i in range(len(rows))}
    remaining = collections.Counter(task[0] for task in tasks)
    summaries: dict[int, dict[str, Any]] = {}

    def finish(position: int, results: list[tuple[int, dict[str, Any]]]) -> None:
        collected[position].extend(results)
        remaining[position] -= 1
        if remaining[position] == 0:
            summary = summaries[position] = summarise(rows[position], collected[position])
            if progress:
                print(_progress_line(summary), flush=True)

    if jobs <= 1:
        for task in tasks:
            finish(*run_chunk(task))
    else:
        with multiprocessing.Pool(processes=jobs) as pool:
            for position, results in pool.imap_unordered(run_chunk, tasks):
                finish(position, results)
    return [summaries[position] for position in range(len(rows))]


def _progress_line(summary: dict[str, Any]) -> str:
    promise, lowest = summary["rules"]["promise"], summary["rules"]["lowest-address"]
    marks = "+".join(summary["guarantees"]) or "-"
    return (
        f"{summary['family']:>21} {summary['lag']:>8} N={summary['nodes']:<2} "
        f"margin={summary['stable_margin']:<5g} required={summary['required_contact_points']:<2} "
        f"{summary['transport']:>5} [{marks:>5}]  splits promise {promise['splits']:>4} "
        f"lowest-address {lowest['splits']:>4}  nobody formed {promise['nobody_formed']}/"
        f"{lowest['nobody_formed']}"
    )


# --- the table ----------------------------------------------------------------------------------


def _share(count: int, runs: int) -> str:
    if count == 0:
        return "0"
    return f"{count} ({100 * count / runs:.1f} %)"


def _times(rule: dict[str, Any], key: str) -> str:
    median, p95 = rule[key]["median"], rule[key]["p95"]
    if median is None:
        return "-"
    return f"{median:.2f} / {p95:.2f}"


def _milliseconds(cost: dict[str, Any]) -> str:
    if cost["median"] is None:
        return "-"
    return f"{1000 * cost['median']:.1f} / {1000 * cost['p95']:.1f}"


def _liveness(rule: dict[str, Any]) -> str:
    text = str(rule["nobody_formed"])
    extra = rule["not_all_joined"] - rule["nobody_formed"]
    return text + (f" (+{extra})" if extra else "")


def markdown(summaries: Sequence[dict[str, Any]]) -> str:
    """The results as a Markdown table, then the mechanisms of the splits."""
    lines = [
        "| family | lag | N | margin | required | transport | guarantee | runs "
        "| 2+ clusters: promise | 2+ clusters: lowest-address "
        "| nobody formed: promise / lowest-address "
        "| formation s, median / p95: promise | lowest-address "
        "| founding s, median / p95: promise | lowest-address "
        "| round cost ms, median / p95 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        promise, lowest = s["rules"]["promise"], s["rules"]["lowest-address"]
        guarantee = " ".join(f"**{g}**" for g in s["guarantees"]) or "-"
        lines.append(
            f"| {s['family']} | {s['lag']} | {s['nodes']} | {s['stable_margin']:g} s "
            f"| {s['required_contact_points']} | {s['transport']} | {guarantee} | {s['seeds']} "
            f"| {_share(promise['splits'], s['seeds'])} | {_share(lowest['splits'], s['seeds'])} "
            f"| {_liveness(promise)} / {_liveness(lowest)} "
            f"| {_times(promise, 'formation_time')} | {_times(lowest, 'formation_time')} "
            f"| {_times(promise, 'founding_time')} | {_times(lowest, 'founding_time')} "
            f"| {_milliseconds(s['round_cost'])} |"
        )
    mechanism_lines = []
    for s in summaries:
        for formation in FORMATIONS:
            for kind, count in s["rules"][formation]["mechanisms"].items():
                label = (
                    f"{s['family']} {s['lag']} N={s['nodes']} {s['stable_margin']:g} s "
                    f"required {s['required_contact_points']} {s['transport']}"
                )
                mechanism_lines.append(f"| {label} | {formation} | {kind} | {count} |")
    if mechanism_lines:
        lines += [
            "",
            "Mechanisms of the splits (a run with three clusters counts each pair):",
            "",
            "| row | rule | mechanism | runs |",
            "|---|---|---|---|",
            *mechanism_lines,
        ]
    return "\n".join(lines)


# --- the rows -----------------------------------------------------------------------------------


def grid(
    families: Sequence[str] = FAMILIES,
    lags: Sequence[str] = LAGS,
    nodes: Sequence[int] = NODES,
    margins: Sequence[float] = MARGINS,
    required: Sequence[RequiredLabel] = REQUIRED,
    transports: Sequence[Transport] = TRANSPORTS,
) -> list[Row]:
    """Every combination, without the rows that repeat another (a majority of 3 is 2)."""
    rows: list[Row] = []
    seen: set[tuple[Any, ...]] = set()
    for family, lag, n, margin, req, transport in itertools.product(
        families, lags, nodes, margins, required, transports
    ):
        row = Row(family, lag, n, margin, req, transport)
        key = (family, lag, n, margin, row.required_contact_points, transport)
        if key not in seen:
            seen.add(key)
            rows.append(row)
    return rows


def full_rows() -> list[Row]:
    """The default sweep: every deployment row, and a thinner grid of the other families.

    Rolling replacement and full restart with both kinds of lag (the lags decide what the new
    nodes see); the families that change something else (restarts, dropped views,
    partitions) with per-node lags only, so their own effect is what the row shows.
    """
    return (
        grid(families=("deployment",))
        + grid(families=("rolling", "full-restart"), nodes=(5, 20), margins=(0.1, 0.5, 5.0))
        + grid(families=FAMILIES[3:], lags=("per-node",), nodes=(5, 20), margins=(0.1, 0.5, 5.0))
    )


def quick_rows() -> list[Row]:
    """A few rows that show each guarantee, each family, and the splits outside them."""
    return [
        Row("deployment", "per-pair", 20, 0.5, "2", "poll"),
        Row("deployment", "per-pair", 20, 0.5, "2", "watch"),
        Row("deployment", "per-pair", 10, 0.5, "2", "poll"),
        Row("deployment", "per-node", 20, 0.5, "2", "poll"),
        Row("deployment", "per-node", 20, 0.001, "2", "watch"),
        Row("deployment", "per-pair", 5, 0.5, "majority", "poll"),
        Row("deployment", "per-pair", 10, 0.1, "majority", "watch"),
        Row("rolling", "per-pair", 5, 0.5, "2", "poll"),
        Row("full-restart", "per-pair", 5, 0.5, "2", "poll"),
        Row("restart-during-start", "per-node", 5, 0.5, "2", "poll"),
        Row("inconsistent-views", "per-node", 20, 0.5, "2", "poll"),
        Row("inconsistent-views", "per-node", 20, 0.5, "majority", "poll"),
        Row("partition-healing", "per-node", 5, 0.5, "2", "watch"),
        Row("partition-permanent", "per-node", 5, 0.5, "majority", "watch"),
    ]


def broken_guarantees(summaries: Iterable[dict[str, Any]]) -> Iterator[str]:
    """A line for every row inside S1 or S2 in which the founding round formed two clusters."""
    for s in summaries:
        promise = s["rules"]["promise"]
        if s["guarantees"] and promise["splits"]:
            row = Row(**_row_fields(s))
            yield (
                f"{'+'.join(s['guarantees'])} row split under promise: {row.label}, "
                f"seeds {promise['split_seeds']}"
            )


def _row_fields(summary: dict[str, Any]) -> dict[str, Any]:
    return {name: summary[name] for name in Row.__dataclass_fields__}


def _csv(text: str, cast: Any) -> list[Any]:
    return [cast(item) for item in text.split(",") if item]


def _fanout(text: str) -> int | None:
    if text.strip().lower() == "none":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1 or 'none', got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help=f"a few rows, {QUICK_SEEDS} seeds each"
    )
    parser.add_argument("--seeds", type=int, help=f"seeds per row (default {DEFAULT_SEEDS})")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--families", type=lambda t: _csv(t, str), help="comma-separated")
    parser.add_argument("--lags", type=lambda t: _csv(t, str), help="per-node,per-pair")
    parser.add_argument("--nodes", type=lambda t: _csv(t, int), help="e.g. 5,20")
    parser.add_argument("--margins", type=lambda t: _csv(t, float), help="e.g. 0.001,0.5")
    parser.add_argument("--required", type=lambda t: _csv(t, str), help="2,majority")
    parser.add_argument("--transports", type=lambda t: _csv(t, str), help="poll,watch")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"default {RESULTS}")
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    parser.add_argument(
        "--probe-fanout",
        type=_fanout,
        default=DEFAULT_FANOUT,
        help=f"probe_fanout of every node, or 'none' for the full mesh (default {DEFAULT_FANOUT})",
    )
    args = parser.parse_args(argv)
    filters = {
        name: getattr(args, name)
        for name in ("families", "lags", "nodes", "margins", "required", "transports")
        if getattr(args, name)
    }
    for name, values in filters.items():
        allowed = {
            "families": FAMILIES,
            "lags": LAGS,
            "required": REQUIRED,
            "transports": TRANSPORTS,
        }.get(name)
        if allowed is not None and not set(values) <= set(allowed):
            parser.error(f"--{name} must be among {', '.join(map(str, allowed))}")
    if filters:
        rows = grid(**filters)
    elif args.quick:
        rows = quick_rows()
    else:
        rows = full_rows()
    seeds = args.seeds or (QUICK_SEEDS if args.quick else DEFAULT_SEEDS)
    if seeds < 1 or args.jobs < 1:
        parser.error("--seeds and --jobs must be >= 1")
    print(f"{len(rows)} rows x {seeds} seeds x {len(FORMATIONS)} rules on {args.jobs} processes")
    began = time.perf_counter()
    summaries = sweep(rows, seeds, args.jobs, probe_fanout=args.probe_fanout)
    wall = time.perf_counter() - began
    table = markdown(summaries)
    document = {
        "benchmark": "split_brain",
        "command": " ".join(["python", "benchmarks/split_brain.py", *(argv or sys.argv[1:])]),
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "jobs": args.jobs,
        "seeds": seeds,
        "probe_fanout": args.probe_fanout,
        "total_wall_seconds": wall,
        "rows": summaries,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(document, indent=2) + "\n")
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(table + "\n")
    print()
    print(table)
    print()
    print(f"{len(rows)} rows in {wall:.0f} s; wrote {args.output}")
    broken = list(broken_guarantees(summaries))
    for line in broken:
        print(f"GUARANTEE BROKEN: {line}", file=sys.stderr)
    contract = [
        f"{s['family']} {s['lag']} N={s['nodes']} {formation}: {rule['violations']}"
        for s in summaries
        for formation, rule in s["rules"].items()
        if rule["violations"]
    ]
    for line in contract:
        print(f"contract violations: {line}", file=sys.stderr)
    return 1 if broken or contract else 0


if __name__ == "__main__":
    sys.exit(main())
