"""How the simulation scales: formation time, traffic and simulation speed by cluster size.

Runs every combination of N = 10, 100, 1000 nodes, probe intervals of 1, 5 and 10 s and both
transports, with default settings otherwise and all nodes starting within 1 s, each until all
nodes joined (or 120 s of virtual time, which bounds the run). Writes
``benchmarks/results/sim_scaling.json``.

    python benchmarks/sim_scaling.py                  # everything (tens of minutes on 2 cores)
    python benchmarks/sim_scaling.py --nodes 10,100   # the quick part

Throughput is "node-seconds per wall second": the virtual time each node ran, summed over the
nodes, divided by the host time the run took. A full mesh exchanges O(N^2) messages per probe
period, so it falls roughly as 1/N.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from bootstrap.core.settings import Settings
from bootstrap.sim import Scenario, run_simulation

RESULTS = Path(__file__).parent / "results" / "sim_scaling.json"
SIZES = (10, 100, 1000)
INTERVALS = (1.0, 5.0, 10.0)
TRANSPORTS = ("watch", "poll")
# Bounds every run: all of them form well within this (formation takes about 7 s).
MAX_TIME = 120.0


def scenario(nodes: int, interval: float, transport: str) -> Scenario:
    """Default settings but the probe interval; every node starts within the first second."""
    return Scenario(
        nodes=nodes,
        transport=transport,  # type: ignore[arg-type]
        settings=Settings(probe_interval=interval, probe_backoff_max=max(15.0, interval)),
        start_spread=1.0,
        seed=0,
        max_time=MAX_TIME,
    )


def measure(nodes: int, interval: float, transport: str) -> dict[str, Any]:
    """Run one case and summarise its report."""
    report = run_simulation(scenario(nodes, interval, transport))
    count = len(report.nodes)
    return {
        "nodes": nodes,
        "transport": transport,
        "probe_interval": interval,
        "end_reason": report.end_reason,
        "formation_time": report.formation_time,
        "all_joined_time": report.all_joined_time,
        "simulated_seconds": report.simulated_seconds,
        "messages_per_node": report.messages / count,
        "requests_per_node": sum(node.requests_sent for node in report.nodes) / count,
        "pushes_per_node": sum(node.pushes_received for node in report.nodes) / count,
        "connections_per_node": sum(node.connections_opened for node in report.nodes) / count,
        "events": report.events_processed,
        "wall_seconds": report.wall_seconds,
        "node_seconds": report.node_seconds,
        "node_seconds_per_wall_second": report.node_seconds_per_wall_second,
        "violations": list(report.violations),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--nodes",
        default=",".join(map(str, SIZES)),
        help="comma-separated cluster sizes (default 10,100,1000)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="runs in parallel, one process each (default: one per CPU)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"default {RESULTS}")
    args = parser.parse_args(argv)
    sizes = sorted((int(size) for size in args.nodes.split(",")), reverse=True)
    # Largest first, so the long runs start at once and the short ones fill the gaps.
    cases = [(n, i, t) for n in sizes for i in INTERVALS for t in TRANSPORTS]
    began = time.perf_counter()
    results = []
    with concurrent.futures.ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {pool.submit(measure, *case): case for case in cases}
        for future in concurrent.futures.as_completed(futures):
            result = future.result()
            results.append(result)
            print(
                f"{result['nodes']:>5} nodes  {result['transport']:>5}  "
                f"{result['probe_interval']:>4g} s  formed {result['formation_time']:.2f} s  "
                f"all joined {result['all_joined_time']} s  "
                f"{result['messages_per_node']:.0f} msgs/node  "
                f"{result['connections_per_node']:.1f} conns/node  "
                f"wall {result['wall_seconds']:.1f} s  "
                f"{result['node_seconds_per_wall_second']:.0f} node-s/s",
                flush=True,
            )
    results.sort(key=lambda r: (r["nodes"], r["probe_interval"], r["transport"]))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": "sim_scaling",
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "jobs": args.jobs,
        "total_wall_seconds": time.perf_counter() - began,
        "results": results,
    }
    args.output.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 1 if any(result["violations"] for result in results) else 0


if __name__ == "__main__":
    sys.exit(main())
