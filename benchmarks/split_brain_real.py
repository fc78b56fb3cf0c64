"""Split brain with real processes: Pekko's nodes beside ours, on the same schedules.

``benchmarks/split_brain.py`` counts splits in the simulation; this runs the two schedules that
matter most with real nodes, each a bounded number of times, under three rules in turn:

* ``pekko``: real Apache Pekko Management nodes (``benchmarks/pekko``, one JVM each), the anchor
  itself with its own rule;
* ``promise``: our node with the founding round (DESIGN section 8);
* ``lowest-address``: our node with the anchor's rule (``--formation lowest-address``).

Schedules:

``late-lowest``
    N = 5. Nodes 1-4 discover nodes 1-4; node 0, the lowest address, appears ``--late-delay``
    (0.5 s, about a stable margin) later and discovers all five: the start order of
    ``tests/faults/test_founding_round.py`` that splits under the anchor's rule.
``deployment``
    The sweep's worst Deployment row under the anchor's rule: N = 20, nodes start over 30 s,
    per-node discovery lag 0-3 s, stable margin 0.5 s, ``required_contact_points`` 2, probes
    polled every second. Each attempt is one seed of the simulation's scenario (the very start
    times and lags of ``split_brain.scenario``), and the simulation's own outcome for that seed
    is recorded beside the real ones. By default the seeds are the first ones on which the
    simulated anchor's rule splits (``--seeds sim-splits``): a bounded number of real runs says
    most where the rule is known to be exposed. ``--seeds first`` takes seeds 0, 1, 2...

How a node "starts" here: every process of an attempt is started first and waits, listening,
with an empty contact-points file (a JVM takes seconds of CPU to start, twenty of them on 2 cores
about 40 s, which would otherwise decide the schedule). Then a thread rewrites each node's file
(``benchmarks/contact_points_file.py``; Pekko's node reads the same format) as the schedule says:
node ``k`` starts when its file first lists its view, and node ``i`` is in ``k``'s view from
``start_i + lag_k``. Before it starts, a node is in nobody's view, so nobody probes it. Both kinds
of node re-read the file every second (their default discovery interval) and restart their
stable margin when the set changes, as with a registry.

A cluster is a ``join-self`` decision (``benchmarks/node_processes.py``): two of them in one
attempt are two clusters, since no node stops. Both schedules meet guarantee S2 (views are
prefixes of one registration order, contact with all): the script exits 1, saying
``GUARANTEE BROKEN``, if ``promise`` ever forms two.

    sudo python benchmarks/split_brain_real.py                       # 20 attempts of each
    python benchmarks/split_brain_real.py --isolation loopback --rules promise,lowest-address \\
        --schedules late-lowest --attempts 3                        # ours only, no root

Network namespaces (the default) give every node its own address and TCP stack; loopback
(127.x.0.y) works for both kinds of node too, since no socket is counted here. Writes
``split_brain_real.json`` into ``--output`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import platform
import shlex
import statistics
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Run as a script: make the repository importable (``bootstrap`` and ``benchmarks``).
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import split_brain
from benchmarks.isolation import Isolation, exit_on_sigterm, fresh_isolation, netns_available
from benchmarks.node_processes import (
    PEKKO_REMOTE_PORT,
    ChurnNodeProcess,
    NodeProcess,
    PekkoProcess,
)
from benchmarks.pekko.driver import PekkoNodeConfig, build_jar, java_available, write_contact_points
from bootstrap.sim import run_simulation

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "split_brain_real"
MANAGEMENT_PORT = 8558
RULES = ("pekko", "promise", "lowest-address")
SCHEDULES = ("late-lowest", "deployment")
#: The worst Deployment row of the simulated sweep under the anchor's rule with a margin > 0.
DEPLOYMENT_ROW = split_brain.Row("deployment", "per-node", 20, 0.5, "2", "poll")
LATE_NODES = 5
LATE_MARGIN = 0.5
PROBE_INTERVAL = 1.0  # both kinds of node: Pekko's default, and the sweep's
#: How long the nodes of a rule may take to listen: twenty JVMs starting at once on 2 cores
#: take about 40 s; our processes a few seconds.
LISTEN_TIMEOUT = {"pekko": 180.0}
DEFAULT_LISTEN_TIMEOUT = 60.0
#: After every process listens, how long before the schedule begins: a JVM keeps compiling for
#: a while after it is ready, and the schedule's timings should not compete with that.
SETTLE = {"pekko": 5.0}
#: After the schedule's last change, how long every node has to decide and join.
DEFAULT_DECIDE_TIMEOUT = 30.0
#: Once every node decided, how long the last may take to join before the attempt ends.
JOIN_GRACE = 10.0
#: How far the seed search for ``--seeds sim-splits`` may go (the row splits in ~7 % of seeds).
MAX_SEED_SEARCH = 5000


# --- schedules --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """When every node starts and what it discovers when: ``changes`` are
    ``(seconds, node, view)``, sorted, none before the node's start.

    A view only grows (S2's prefixes of one registration order). A node's view may still be
    empty when it starts (its discovery lags even its own registration); it runs, waiting.
    """

    name: str
    nodes: int
    stable_margin: float
    required: int
    seed: int | None
    starts: tuple[float, ...]
    changes: tuple[tuple[float, int, frozenset[int]], ...]

    def start_of(self, node: int) -> float:
        return self.starts[node]

    def view_at(self, node: int, seconds: float) -> frozenset[int]:
        """Node ``node``'s view ``seconds`` into the schedule (empty before it starts)."""
        view: frozenset[int] = frozenset()
        for at, index, changed in self.changes:
            if at > seconds:
                break
            if index == node:
                view = changed
        return view

    @property
    def duration(self) -> float:
        return self.changes[-1][0]


def late_lowest_schedule(delay: float) -> Schedule:
    """Nodes 1-4 see 1-4 at 0; node 0 sees 0-4 ``delay`` later."""
    early = frozenset(range(1, LATE_NODES))
    changes = [(0.0, node, early) for node in sorted(early)]
    changes.append((delay, 0, frozenset(range(LATE_NODES))))
    starts = (delay, *(0.0 for _ in early))
    return Schedule("late-lowest", LATE_NODES, LATE_MARGIN, 2, None, starts, tuple(changes))


def deployment_schedule(seed: int) -> Schedule:
    """The simulation's Deployment scenario for ``seed``: node ``k`` starts at ``start_k`` and
    sees node ``i`` from ``max(start_k, start_i + lag_k)``."""
    scenario = split_brain.scenario(DEPLOYMENT_ROW, seed, "promise")
    starts = scenario.resolved_start_times()
    lags = scenario.resolved_view_lags()
    changes = []
    for node, (start, lag) in enumerate(zip(starts, lags, strict=True)):
        seen_from = sorted(
            (max(start, other_start + lag), other) for other, other_start in enumerate(starts)
        )
        moments = sorted({at for at, _ in seen_from})
        for moment in moments:
            view = frozenset(other for at, other in seen_from if at <= moment)
            changes.append((moment, node, view))
    changes.sort(key=lambda change: (change[0], change[1]))
    return Schedule(
        "deployment",
        DEPLOYMENT_ROW.nodes,
        DEPLOYMENT_ROW.stable_margin,
        DEPLOYMENT_ROW.required_contact_points,
        seed,
        starts,
        tuple(changes),
    )


def simulated(seed: int) -> dict[str, bool]:
    """Whether the simulation splits ``DEPLOYMENT_ROW`` on ``seed``, under each of our rules."""
    return {
        formation: run_simulation(split_brain.scenario(DEPLOYMENT_ROW, seed, formation)).split
        for formation in split_brain.FORMATIONS
    }


def deployment_seeds(choice: str, attempts: int) -> list[int]:
    """``first``: 0, 1, ...; ``sim-splits``: the first seeds the simulated anchor's rule splits."""
    if choice == "first":
        return list(range(attempts))
    seeds = []
    for seed in range(MAX_SEED_SEARCH):
        if simulated(seed)["lowest-address"]:
            seeds.append(seed)
            if len(seeds) == attempts:
                return seeds
    raise RuntimeError(f"only {len(seeds)} splitting seeds among the first {MAX_SEED_SEARCH}")


# --- one attempt: one schedule under one rule -------------------------------------------------


class ViewWriter:
    """Rewrites every node's contact-points file as the schedule says, from ``begin``."""

    def __init__(self, schedule: Schedule, files: Sequence[Path], endpoints: Sequence[str]) -> None:
        self.schedule = schedule
        self.files = files
        self.endpoints = endpoints
        self.begin = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._write_all, daemon=True)

    def start(self) -> None:
        self.begin = time.time()
        self._thread.start()

    def _write_all(self) -> None:
        for at, node, view in self.schedule.changes:
            if self._stop.wait(max(0.0, self.begin + at - time.time())):
                return
            write_contact_points(self.files[node], [self.endpoints[i] for i in sorted(view)])

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


def spawn(
    rule: str,
    index: int,
    isolation: Isolation,
    schedule: Schedule,
    peers_file: Path,
    log: Path,
    args: argparse.Namespace,
) -> NodeProcess:
    address = isolation.addresses[index]
    prefix = isolation.command_prefix(index)
    if rule == "pekko":
        config = PekkoNodeConfig(
            host=address,
            remote_port=PEKKO_REMOTE_PORT,
            management_port=args.port,
            contact_points_file=peers_file,
            required_contact_points=schedule.required,
            stable_margin=schedule.stable_margin,
            probe_interval=PROBE_INTERVAL,
        )
        return PekkoProcess(index, config, args.jar, log, prefix)
    command = ChurnNodeProcess.command(
        prefix,
        strategy="ours-poll",
        formation=rule,
        address=address,
        port=args.port,
        peers_file=peers_file,
        required=schedule.required,
        probe_interval=PROBE_INTERVAL,
        stable_margin=schedule.stable_margin,
    )
    return ChurnNodeProcess(index, address, command, log)


def attempt(
    number: int,
    schedule: Schedule,
    rule: str,
    isolation: Isolation,
    args: argparse.Namespace,
    log_dir: Path,
) -> dict[str, Any]:
    """Start every node idle, play the schedule, wait for every decision and join; the outcome.

    ``number`` names the attempt's files in ``log_dir`` (logs and contact-points files).
    """
    seed = "" if schedule.seed is None else f"-seed{schedule.seed}"
    name = f"{number:03d}-{schedule.name}{seed}-{rule}"
    files = [log_dir / f"{name}-{index}.contact-points" for index in range(schedule.nodes)]
    for path in files:
        write_contact_points(path, [])
    endpoints = [f"{address}:{args.port}" for address in isolation.addresses]
    writer = ViewWriter(schedule, files, endpoints)
    nodes: list[NodeProcess] = []
    try:
        for index in range(schedule.nodes):
            log = log_dir / f"{name}-{index}.log"
            nodes.append(spawn(rule, index, isolation, schedule, files[index], log, args))
        for node in nodes:
            node.wait_listening(LISTEN_TIMEOUT.get(rule, DEFAULT_LISTEN_TIMEOUT))
        time.sleep(SETTLE.get(rule, 0.0))
        writer.start()
        wait_for_decisions(nodes, deadline=writer.begin + schedule.duration + args.decide_timeout)
        return outcome(schedule, rule, nodes, writer.begin)
    finally:
        writer.stop()
        for node in nodes:
            node.terminate()
        for node in nodes:
            node.stop()


def wait_for_decisions(nodes: Sequence[NodeProcess], *, deadline: float) -> None:
    """Until every node joined, or every node decided ``JOIN_GRACE`` s ago, or ``deadline``.

    The decisions are what a split is counted from; joining takes a Pekko node longer (its
    leader moves a member to Up only once every member's gossip has converged), and twenty JVMs
    on 2 cores miss heartbeats, which can hold convergence off for longer than any timeout.
    """
    while time.time() < deadline:
        latest = [node.latest for node in nodes]
        if all(record.get("joined_at") is not None for record in latest):
            return
        decided: list[float] = [
            at for record in latest if (at := record.get("decided_at")) is not None
        ]
        if len(decided) == len(nodes) and time.time() > max(decided) + JOIN_GRACE:
            return
        time.sleep(0.1)


def outcome(
    schedule: Schedule, rule: str, nodes: Sequence[NodeProcess], begin: float
) -> dict[str, Any]:
    """Who decided what and when (seconds into the schedule), and how many clusters formed."""

    def since_begin(wall: float | None) -> float | None:
        return None if wall is None else round(wall - begin, 3)

    latest = [node.latest for node in nodes]
    founders = [
        index for index, record in enumerate(latest) if record.get("decision") == "join-self"
    ]
    joined = [since_begin(record.get("joined_at")) for record in latest]
    decided = [since_begin(record.get("decided_at")) for record in latest]
    last_start = max(schedule.start_of(index) for index in range(schedule.nodes))

    def after_last_start(times: list[float | None]) -> float | None:
        if any(value is None for value in times):
            return None
        return round(max(value for value in times if value is not None) - last_start, 3)

    return {
        "schedule": schedule.name,
        "seed": schedule.seed,
        "rule": rule,
        "clusters": len(founders),
        "founders": founders,
        "decisions": [record.get("decision") for record in latest],
        "decided_at": decided,
        "joined_at": joined,
        "nodes_decided": sum(value is not None for value in decided),
        "nodes_joined": sum(value is not None for value in joined),
        # From the last start to the last decision, and to the last join (None: not everyone).
        "decision_seconds": after_last_start(decided),
        "formation_seconds": after_last_start(joined),
    }


# --- the benchmark ----------------------------------------------------------------------------


@contextlib.contextmanager
def isolation_for(args: argparse.Namespace, nodes: int, run_number: int) -> Iterator[Isolation]:
    """Fresh addresses (and namespaces) for every attempt."""
    with fresh_isolation(args.isolation, nodes, "s", run_number) as isolation:
        yield isolation


def summarise(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per schedule and rule: attempts, splits, attempts where someone never joined, times."""
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = collections.defaultdict(list)
    for run in runs:
        grouped[(run["schedule"], run["rule"])].append(run)
    summaries = []
    for (schedule, rule), group in grouped.items():
        decisions = [
            run["decision_seconds"] for run in group if run["decision_seconds"] is not None
        ]
        times = [run["formation_seconds"] for run in group if run["formation_seconds"] is not None]
        summaries.append(
            {
                "schedule": schedule,
                "rule": rule,
                "attempts": len(group),
                "two_or_more_clusters": sum(run["clusters"] >= 2 for run in group),
                "no_cluster": sum(run["clusters"] == 0 for run in group),
                "not_all_decided": sum(run["decision_seconds"] is None for run in group),
                "not_all_joined": sum(run["formation_seconds"] is None for run in group),
                "decision_median": round(statistics.median(decisions), 2) if decisions else None,
                "decision_max": max(decisions) if decisions else None,
                "formation_median": round(statistics.median(times), 2) if times else None,
                "formation_max": max(times) if times else None,
                "split_seeds": [run["seed"] for run in group if run["clusters"] >= 2],
                "simulated_splits": (
                    sum(run["simulated"][rule] for run in group)
                    if rule in split_brain.FORMATIONS and all("simulated" in run for run in group)
                    else None
                ),
            }
        )
    return summaries


def promise_splits(summaries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The summaries in which the founding round formed two clusters: S2 holds in every
    schedule here, so each is a broken guarantee."""
    return [s for s in summaries if s["rule"] == "promise" and s["two_or_more_clusters"]]


def markdown(summaries: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| schedule | rule | attempts | 2+ clusters | no cluster | not all decided "
        "| not all joined | last decision s, median / max | last join s, median / max "
        "| the simulation, same seeds: 2+ clusters |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def spread(median: float | None, highest: float | None) -> str:
        return "-" if median is None or highest is None else f"{median:.2f} / {highest:.2f}"

    for s in summaries:
        sim = "n/a" if s["simulated_splits"] is None else str(s["simulated_splits"])
        lines.append(
            f"| {s['schedule']} | {s['rule']} | {s['attempts']} | {s['two_or_more_clusters']} "
            f"| {s['no_cluster']} | {s['not_all_decided']} | {s['not_all_joined']} "
            f"| {spread(s['decision_median'], s['decision_max'])} "
            f"| {spread(s['formation_median'], s['formation_max'])} | {sim} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--isolation", choices=("netns", "loopback"), default="netns")
    parser.add_argument("--rules", default=",".join(RULES), help=f"of {', '.join(RULES)}")
    parser.add_argument(
        "--schedules", default=",".join(SCHEDULES), help=f"of {', '.join(SCHEDULES)}"
    )
    parser.add_argument("--attempts", type=int, default=20, help="per schedule (default 20)")
    parser.add_argument(
        "--deployment-attempts", type=int, help="deployment only (default --attempts)"
    )
    parser.add_argument(
        "--seeds",
        choices=("sim-splits", "first"),
        default="sim-splits",
        help="deployment seeds: where the simulated anchor's rule splits (default), or 0, 1...",
    )
    parser.add_argument("--late-delay", type=float, default=0.5)
    parser.add_argument("--decide-timeout", type=float, default=DEFAULT_DECIDE_TIMEOUT)
    parser.add_argument("--port", type=int, default=MANAGEMENT_PORT)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.rules = args.rules.split(",")
    args.schedules = args.schedules.split(",")
    for rule in args.rules:
        if rule not in RULES:
            parser.error(f"unknown rule {rule!r}; choose from {', '.join(RULES)}")
    for schedule in args.schedules:
        if schedule not in SCHEDULES:
            parser.error(f"unknown schedule {schedule!r}; choose from {', '.join(SCHEDULES)}")
    if args.attempts < 1:
        parser.error("--attempts must be at least 1")
    args.deployment_attempts = args.deployment_attempts or args.attempts
    if args.isolation == "netns" and (reason := netns_available()) is not None:
        parser.error(f"--isolation netns is not possible here: {reason}; try --isolation loopback")
    args.jar = None
    if "pekko" in args.rules:
        if not java_available():
            parser.error("rule pekko runs Pekko nodes: install a JDK (17) or leave pekko out")
        args.jar = build_jar()  # once, and only when missing or stale
    return args


def schedules_of(args: argparse.Namespace) -> Iterator[Schedule]:
    if "late-lowest" in args.schedules:
        for _ in range(args.attempts):
            yield late_lowest_schedule(args.late_delay)
    if "deployment" in args.schedules:
        for seed in deployment_seeds(args.seeds, args.deployment_attempts):
            yield deployment_schedule(seed)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    exit_on_sigterm()
    log_dir = args.output / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {
        "benchmark": "split_brain_real",
        "command": " ".join(shlex.quote(part) for part in [sys.executable, *sys.argv]),
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "parameters": {
            key: (str(value) if isinstance(value, Path) else value)
            for key, value in vars(args).items()
        },
        "runs": [],
    }
    began = time.time()
    run_number = 0
    for schedule in schedules_of(args):
        sim = simulated(schedule.seed) if schedule.seed is not None else None
        # The rules in turn on the same schedule, so all see the same machine load.
        for rule in args.rules:
            run_number += 1
            with isolation_for(args, schedule.nodes, run_number) as isolation:
                record = attempt(run_number, schedule, rule, isolation, args, log_dir)
            if sim is not None:
                record["simulated"] = sim
            document["runs"].append(record)
            print(
                f"{schedule.name} seed={schedule.seed} {rule:<14} clusters={record['clusters']} "
                f"founders={record['founders']} decided={record['nodes_decided']} "
                f"joined={record['nodes_joined']}/{schedule.nodes} "
                f"last decision={record['decision_seconds']} "
                f"last join={record['formation_seconds']}",
                flush=True,
            )
    document["wall_seconds"] = round(time.time() - began, 1)
    document["summary"] = summarise(document["runs"])
    output = args.output / "split_brain_real.json"
    output.write_text(json.dumps(document) + "\n")
    print(f"wrote {output}\n")
    print(markdown(document["summary"]))
    broken = promise_splits(document["summary"])
    for s in broken:
        print(
            f"GUARANTEE BROKEN: promise formed two clusters in {s['schedule']} "
            f"(S2 holds there), seeds {s['split_seeds']}",
            file=sys.stderr,
        )
    return 1 if broken else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; namespaces and nodes were cleaned up", file=sys.stderr)
        sys.exit(130)
