"""Scale: who probes whom (DESIGN section 9) measured from 100 to 10,000 nodes.

Three parts, each case in a fresh child process (so peak RSS is that case's own):

* ``sim``: the deterministic simulation at N = 100, 1,000 and 10,000, the topology
  (``probe_fanout`` 3, the default) beside the full mesh (``probe_fanout`` None) up to
  ``--mesh-max`` nodes: above it the mesh holds N - 1 peers per node, O(N^2) in all. Every node
  starts within 1 s, watch transport, default settings. Wall time, virtual formation time,
  messages and connections per node (mean, max), peak RSS.
* ``in-process``: N real nodes in one process (``open_node``, real sockets on 127.20.x.y, real
  HTTP and websockets) started lowest first, as a StatefulSet starts its pods; each is added
  to a shared registry once it listens (discovery lists ready nodes, as Kubernetes does), and
  ``required_contact_points`` is N, so the founder must hear from every node. Each case names
  its probe interval (``1000@5``): all N nodes share one core here, where in production each
  has its own. Time from the last start to all joined, CPU seconds, peak RSS, peak file
  descriptors, connections each node opened, probe failures, exactly one cluster.
* ``processes``: N ``benchmarks.churn_node`` processes on 127.21.x.y, spawned together, each
  added to a contact-points file once it listens; the same figures, summed over processes.

    python benchmarks/scale.py                  # everything (about 25 minutes on 2 cores)
    python benchmarks/scale.py --quick          # sim 100 and 1,000; 100 in process; 20 processes
    python benchmarks/scale.py --parts sim --sim-nodes 10000

Writes ``scale.json`` and ``scale.png`` into ``--output`` (default ``benchmarks/results/scale``)
and exits 1 if any case formed other than exactly one cluster.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import resource
import shlex
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import trio

from benchmarks import procfs
from benchmarks.node_processes import ChurnNodeProcess
from benchmarks.pekko.driver import write_contact_points
from bootstrap.core import ContactPoint, JoinSelf, Settings
from bootstrap.core.contact_point import sort_key
from bootstrap.node import Node, open_node
from bootstrap.sim import Scenario, run_simulation

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "scale"
PARTS = ("sim", "in-process", "processes")
FANOUT = Settings().probe_fanout
SIM_MAX_TIME = 120.0  # virtual seconds; formation takes about 6
# Real time allowed for all nodes to start, and then from the last start to all joined
# (formation takes stable_margin plus a few probe periods; a loaded host takes longer). A case
# that overruns is recorded as such, not retried.
START_TIMEOUT = 300.0
JOIN_TIMEOUT = 180.0
# Descriptors per node at most: its listener, its outbound connections, the inbound ones of its
# peers (both ends live in this process), with room for the founder's fan-in.
FDS_PER_NODE = 12


def topology_name(fanout: int | None) -> str:
    return "full mesh" if fanout is None else f"fanout {fanout}"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def spread(values: Sequence[float]) -> dict[str, float]:
    """Mean and max (0 for none)."""
    return {
        "mean": round(sum(values) / len(values), 2) if values else 0.0,
        "max": max(values, default=0),
    }


def one_cluster(decisions: Sequence[object], joined: int, nodes: int) -> bool:
    """Exactly one node formed and every node joined: with a single founder there is a single
    cluster, since every other node joins through seed nodes that are members of some cluster."""
    return sum(isinstance(d, JoinSelf) for d in decisions) == 1 and joined == nodes


# --- the simulation ----------------------------------------------------------------------------


def measure_sim(nodes: int, fanout: int | None) -> dict[str, Any]:
    """One simulated formation, in this (fresh) process."""
    report = run_simulation(
        Scenario(
            nodes=nodes,
            transport="watch",
            settings=Settings(probe_fanout=fanout),
            start_spread=1.0,
            seed=0,
            max_time=SIM_MAX_TIME,
        )
    )
    founders = {founder.node for founder in report.founders}
    others = [node for node in report.nodes if node.index not in founders]
    founder_nodes = [node for node in report.nodes if node.index in founders]
    return {
        "part": "sim",
        "nodes": nodes,
        "topology": topology_name(fanout),
        "probe_fanout": fanout,
        "end_reason": report.end_reason,
        "clusters_formed": report.clusters_formed,
        "one_cluster": report.clusters_formed == 1 and report.end_reason == "all-joined",
        "formation_time": report.formation_time,
        "all_joined_time": report.all_joined_time,
        "messages_per_node": round(report.messages / nodes, 1),
        "connections_opened_per_node": spread([n.connections_opened for n in report.nodes]),
        "max_open_connections_per_node": spread([n.max_open_connections for n in report.nodes]),
        "max_open_connections_per_non_founder": spread([n.max_open_connections for n in others]),
        "max_open_connections_founder": max(
            (n.max_open_connections for n in founder_nodes), default=0
        ),
        "wall_seconds": round(report.wall_seconds, 1),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "violations": list(report.violations),
    }


# --- real nodes in one process -------------------------------------------------------------------


class Registry:
    """Discovery for nodes in one process: those whose server listens, in canonical order.

    Every node gets the same (immutable) tuple's contact points, so a lookup that finds nothing
    new costs the machine one identity comparison per contact point.
    """

    def __init__(self) -> None:
        self._points: tuple[ContactPoint, ...] = ()

    def register(self, contact_point: ContactPoint) -> None:
        self._points = tuple(sorted((*self._points, contact_point), key=sort_key))

    async def lookup(self) -> list[ContactPoint]:
        return list(self._points)


def loopback_address(second_octet: int, index: int) -> str:
    if not 0 <= index < 254 * 254:
        raise ValueError(f"at most {254 * 254} nodes on one 127.{second_octet}/16, got {index}")
    return f"127.{second_octet}.{index // 254}.{index % 254 + 1}"


def raise_fd_limit(wanted: int) -> int:
    """The soft descriptor limit raised to ``wanted`` (the hard one too, as root); the new one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, PermissionError):
            wanted = hard  # not root: as far as the hard limit allows
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return wanted


def measure_in_process(nodes: int, interval: float, port: int) -> dict[str, Any]:
    """``nodes`` real nodes in this (fresh) process; see the module docstring."""
    fd_limit = raise_fd_limit(64 + FDS_PER_NODE * nodes)
    return trio.run(_in_process, nodes, interval, port, fd_limit)


async def _in_process(nodes: int, interval: float, port: int, fd_limit: int) -> dict[str, Any]:
    points = [ContactPoint(loopback_address(20, i), port) for i in range(nodes)]
    registry = Registry()
    settings = Settings(
        required_contact_points=nodes,
        probe_interval=interval,
        probe_backoff_max=max(Settings().probe_backoff_max, interval),
    )
    peak_fds = open_fds()
    cpu_before = cpu_seconds()
    started: list[Node] = []

    async def sample_fds() -> None:
        nonlocal peak_fds
        while True:
            peak_fds = max(peak_fds, open_fds())
            await trio.sleep(0.25)

    result: dict[str, Any] = {
        "part": "in-process",
        "nodes": nodes,
        "probe_interval": interval,
        "fd_limit": fd_limit,
    }
    stop = trio.Event()

    async def run_node(point: ContactPoint, *, task_status: trio.TaskStatus[Node]) -> None:
        async with open_node(contact_point=point, discovery=registry, settings=settings) as node:
            task_status.started(node)
            await stop.wait()

    began = time.monotonic()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sample_fds)
        async with trio.open_nursery() as node_tasks:
            for point in points:
                if time.monotonic() > began + START_TIMEOUT:
                    break
                started.append(await node_tasks.start(run_node, point))
                registry.register(point)  # listening: discovery may list it
            result["started"] = len(started)
            last_start = time.monotonic()
            with trio.move_on_after(JOIN_TIMEOUT):
                for node in started:
                    await node.wait_joined()
            all_joined = time.monotonic()
            result.update(_in_process_figures(started, points))
            result["seconds_to_start_all"] = round(last_start - began, 2)
            result["seconds_from_last_start_to_all_joined"] = (
                round(all_joined - last_start, 2) if result["one_cluster"] else None
            )
            # Every node stops at once (each within its own grace period), not one by one.
            stopping = time.monotonic()
            stop.set()
        result["seconds_to_stop"] = round(time.monotonic() - stopping, 2)
        nursery.cancel_scope.cancel()
    result["cpu_seconds"] = round(cpu_seconds() - cpu_before, 1)
    result["peak_rss_mib"] = round(peak_rss_mib(), 1)
    result["peak_fds"] = peak_fds
    result["fds_per_node"] = round(peak_fds / nodes, 2)
    return result


def _in_process_figures(started: Sequence[Node], points: Sequence[ContactPoint]) -> dict[str, Any]:
    joined = sum(node.statistics().joined_at is not None for node in started)
    decisions = [node.decision for node in started]
    nodes = len(points)
    founders = [i for i, decision in enumerate(decisions) if isinstance(decision, JoinSelf)]
    figures = [node.statistics().prober for node in started]
    others = [f for i, f in enumerate(figures) if i not in founders]
    return {
        "joined": joined,
        "founders": [str(points[i]) for i in founders],
        "one_cluster": one_cluster(decisions, joined, nodes),
        "connections_opened_per_node": spread([f.connections_opened for f in figures]),
        "connections_opened_per_non_founder": spread([f.connections_opened for f in others]),
        # A peer that failed is replaced by the next one up (DESIGN section 9): what a node
        # may open beyond probe_fanout is bounded by the failures it saw.
        "non_founders_over_fanout_plus_failures": sum(
            f.connections_opened > (FANOUT or 0) + sum(f.failures_by_kind.values()) for f in others
        ),
        "probe_failures": sum(sum(f.failures_by_kind.values()) for f in figures),
        "probe_failures_by_kind": _summed([f.failures_by_kind for f in figures]),
        "connections_opened_founder": [figures[i].connections_opened for i in founders],
    }


def _summed(counts: Sequence[Mapping[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for count in counts:
        for kind, number in count.items():
            total[kind] = total.get(kind, 0) + number
    return total


# --- separate processes --------------------------------------------------------------------------


def measure_processes(nodes: int, port: int, log_dir: Path) -> dict[str, Any]:
    """``nodes`` node processes on loopback, each listed once it listens."""
    addresses = [loopback_address(21, i) for i in range(nodes)]
    peers_file = log_dir / "scale-processes.contact-points"
    write_contact_points(peers_file, [])
    processes: list[ChurnNodeProcess] = []
    listed: list[str] = []
    result: dict[str, Any] = {"part": "processes", "nodes": nodes, "probe_interval": 1.0}
    began = time.time()
    try:
        for index, address in enumerate(addresses):
            command = ChurnNodeProcess.command(
                [],
                strategy="ours-watch",
                address=address,
                port=port,
                peers_file=peers_file,
                required=nodes,
                probe_interval=1.0,
                report_every=2.0,
            )
            processes.append(
                ChurnNodeProcess(index, address, command, log_dir / f"scale-node-{index}.log")
            )
        deadline = time.time() + 60 + nodes  # start-up: imports on a shared CPU
        while len(listed) < nodes and time.time() < deadline:
            fresh = [p.address for p in processes if p.listening_at and p.address not in listed]
            if fresh:
                listed.extend(fresh)
                write_contact_points(peers_file, [f"{a}:{port}" for a in listed])
            if any(not p.alive for p in processes):
                raise RuntimeError("a node process exited early; see the logs in " + str(log_dir))
            time.sleep(0.1)
        last_start = max(p.listening_at or began for p in processes)
        deadline = time.time() + JOIN_TIMEOUT
        while time.time() < deadline and not all(p.latest.get("joined_at") for p in processes):
            time.sleep(0.2)
        joined_at = [p.latest.get("joined_at") for p in processes]
        cpu = sum(procfs.cpu_seconds(p.pid) for p in processes if p.alive)
        rss = [procfs.rss_bytes(p.pid) / 2**20 for p in processes if p.alive]
        fds = [len(os.listdir(f"/proc/{p.pid}/fd")) for p in processes if p.alive]
        decisions = [p.latest.get("decision") for p in processes]
        opened = [p.latest.get("connections_opened") or 0 for p in processes]
        joined = sum(j is not None for j in joined_at)
        result.update(
            {
                "listed": len(listed),
                "joined": joined,
                "one_cluster": decisions.count("join-self") == 1 and joined == nodes,
                "seconds_to_start_all": round(last_start - began, 2),
                "seconds_from_last_start_to_all_joined": (
                    round(max(j for j in joined_at if j) - last_start, 2)
                    if joined == nodes
                    else None
                ),
                "cpu_seconds": round(cpu, 1),
                "rss_mib_per_process": spread([round(r, 1) for r in rss]),
                "rss_mib_total": round(sum(rss), 1),
                "fds_per_process": spread(fds),
                "connections_opened_per_node": spread(opened),
            }
        )
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.stop()
    return result


# --- running the parts --------------------------------------------------------------------------


def in_fresh_process(jobs: int) -> concurrent.futures.ProcessPoolExecutor:
    # One case per child: its peak RSS and descriptor count are its own.
    return concurrent.futures.ProcessPoolExecutor(max_workers=jobs, max_tasks_per_child=1)


def run_cases(
    cases: Sequence[tuple[Callable[..., dict[str, Any]], tuple[Any, ...]]],
    jobs: int,
    results: list[dict[str, Any]],
    print_row: Callable[[dict[str, Any]], None],
) -> None:
    with in_fresh_process(jobs) as pool:
        futures = [pool.submit(function, *arguments) for function, arguments in cases]
        for future in concurrent.futures.as_completed(futures):
            result = future.result()
            results.append(result)
            print_row(result)


def print_row(result: dict[str, Any]) -> None:
    if result["part"] == "sim":
        print(
            f"sim        {result['nodes']:>6} {result['topology']:<10} "
            f"all joined {result['all_joined_time']} s  "
            f"{result['messages_per_node']} msgs/node  max open "
            f"{result['max_open_connections_per_node']}  wall {result['wall_seconds']} s  "
            f"RSS {result['peak_rss_mib']} MiB  one cluster: {result['one_cluster']}",
            flush=True,
        )
    else:
        print(
            f"{result['part']:<10} {result['nodes']:>6}  "
            + "  ".join(f"{key} {value}" for key, value in result.items() if key != "part"),
            flush=True,
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the smaller sizes (see above)")
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated: sim, ...")
    parser.add_argument("--sim-nodes", help="default 100,1000,10000 (quick: 100,1000)")
    parser.add_argument("--mesh-max", type=int, default=1000, help="largest simulated full mesh")
    parser.add_argument(
        "--in-process-nodes",
        help="N@probe-interval, comma-separated (default 100@1,300@1,1000@1,1000@5; quick 100@1)",
    )
    parser.add_argument("--process-nodes", help="default 100 (quick: 20)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="sim cases at once")
    parser.add_argument("--port", type=int, default=18558, help="every real node's port")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--no-charts", action="store_true", help="write the JSON only")
    args = parser.parse_args(argv)

    def sizes(text: str | None, default: str, quick: str) -> list[int]:
        chosen = text if text is not None else (quick if args.quick else default)
        return [int(size) for size in chosen.split(",") if size]

    args.parts = args.parts.split(",")
    for part in args.parts:
        if part not in PARTS:
            parser.error(f"unknown part {part!r}; choose from {', '.join(PARTS)}")
    args.sim_nodes = sizes(args.sim_nodes, "100,1000,10000", "100,1000")
    args.in_process_cases = [
        (int(nodes), float(interval or 1.0))
        for nodes, _, interval in (
            case.partition("@")
            for case in (
                args.in_process_nodes
                if args.in_process_nodes is not None
                else ("100@1" if args.quick else "100@1,300@1,1000@1,1000@5")
            ).split(",")
        )
    ]
    args.process_nodes = sizes(args.process_nodes, "100", "20")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    began = time.perf_counter()
    if "sim" in args.parts:
        cases: list[tuple[Callable[..., dict[str, Any]], tuple[Any, ...]]] = []
        for nodes in sorted(args.sim_nodes, reverse=True):  # the long runs first
            cases.append((measure_sim, (nodes, FANOUT)))
            if nodes <= args.mesh_max:
                cases.append((measure_sim, (nodes, None)))
            else:
                skipped.append(
                    {
                        "part": "sim",
                        "nodes": nodes,
                        "topology": topology_name(None),
                        "why": f"above --mesh-max {args.mesh_max}: every node holds N - 1 peers "
                        "and exchanges N - 1 answers a period, O(N^2) memory and time",
                    }
                )
        run_cases(cases, args.jobs, results, print_row)
    # Real nodes one case at a time: they measure the host, which must not be shared.
    if "in-process" in args.parts:
        run_cases(
            [(measure_in_process, (n, i, args.port)) for n, i in args.in_process_cases],
            1,
            results,
            print_row,
        )
    if "processes" in args.parts:
        log_dir = args.output / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        for nodes in args.process_nodes:
            result = measure_processes(nodes, args.port, log_dir)
            results.append(result)
            print_row(result)
    results.sort(
        key=lambda r: (
            PARTS.index(r["part"]),
            r["nodes"],
            str(r.get("topology")),
            r.get("probe_interval", 0),
        )
    )
    document = {
        "benchmark": "scale",
        "command": " ".join(shlex.quote(part) for part in [sys.executable, *sys.argv]),
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "probe_fanout": FANOUT,
        "total_wall_seconds": round(time.perf_counter() - began, 1),
        "results": results,
        "skipped": skipped,
    }
    (args.output / "scale.json").write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {args.output / 'scale.json'}")
    if not args.no_charts:
        from benchmarks.scale_chart import write_chart

        print(f"wrote {write_chart(document, args.output / 'scale.png')}")
    broken = [r for r in results if not r.get("one_cluster")]
    for result in broken:
        print(f"NOT ONE CLUSTER: {result['part']} at {result['nodes']} nodes", file=sys.stderr)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
