"""Markdown tables of a churn run (``churn.json``), as ``docs/benchmarks.md`` shows them.

    python benchmarks/report.py benchmarks/results/churn/churn.json

The page's tables are pasted from this output, so every figure in them comes from one file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _seconds(outcome: dict[str, Any] | None) -> str:
    if not outcome:
        return "n/a"
    if not outcome["formed"]:
        return f"never (in {outcome['timeout']:g} s)"
    clusters = outcome["clusters_formed"]
    extra = "" if clusters == 1 else f", {clusters} clusters"
    return f"{outcome['seconds_after_last_start']:.2f} s{extra}"


def _figure(value: float | None) -> str:
    """A figure, or "n/a" where the node does not count it (a Pekko node counts nothing)."""
    return "n/a" if value is None else f"{value:g}"


def _founder_and_others(summary: dict[str, Any]) -> str:
    """The would-be founder's sockets beside the other nodes' (runs before the topology: n/a)."""
    if "tcp_sockets_founder" not in summary:
        return "n/a"
    return (
        f"{summary['tcp_sockets_founder']:g} / {summary['tcp_sockets_per_non_founder']:g} "
        f"(max {summary['tcp_sockets_per_non_founder_max']:g})"
    )


def stalled_table(document: dict[str, Any]) -> str:
    """One row per stalled run: sockets, TIME_WAIT, new connections, CPU, memory, late arrival."""
    runs = [run for run in document["runs"] if run["scenario"] == "stalled"]
    if not runs:
        return ""
    lines = [
        "| interval | strategy | TCP sockets per node (mean / at end) | "
        "TCP sockets: founder / other nodes (mean) | TIME_WAIT at end | "
        "connections opened per node | new connections /s per node after warm-up "
        "(driver / kernel) | CPU per node | RSS per node | requests served /s per node | "
        "late arrival: all joined after the last start |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in sorted(runs, key=lambda r: (r["probe_interval"], r["strategy"])):
        s = run["summary"]
        lines.append(
            f"| {run['probe_interval']:g} s | {run['strategy']} "
            f"| {s['tcp_sockets_per_node']:g} / {s['tcp_sockets_per_node_at_end']:g} "
            f"| {_founder_and_others(s)} "
            f"| {s['time_wait_per_node_at_end']:g} "
            f"| {s['connections_per_node_kernel']:g} "
            f"| {_figure(s['new_connections_per_node_per_second_driver'])} / "
            f"{s['new_connections_per_node_per_second_kernel']:g} "
            f"| {s['cpu_percent_per_node']:g} % "
            f"| {s['rss_mib_per_node']:g} MiB "
            f"| {_figure(s['requests_served_per_node_per_second'])} "
            f"| {_seconds(run.get('late_arrival'))} |"
        )
    return "\n".join(lines)


def ratio_table(document: dict[str, Any]) -> str:
    """The anchor's sockets and connections over ours, per interval (the headline figure)."""
    stalled = {
        (run["probe_interval"], run["strategy"]): run["summary"]
        for run in document["runs"]
        if run["scenario"] == "stalled"
    }
    intervals = sorted({interval for interval, _ in stalled})
    anchors = [a for a in ("anchor", "pekko") if any(s == a for _, s in stalled)]
    lines = [
        "| interval | "
        + " | ".join(
            f"{a} sockets (mean) / ours-watch | {a} sockets at end / ours-watch "
            f"| {a} connections / ours-watch"
            for a in anchors
        )
        + " |",
        "|---|" + "---|---|---|" * len(anchors),
    ]
    for interval in intervals:
        ours = stalled.get((interval, "ours-watch"))
        if ours is None or not anchors:
            continue
        cells = []
        for name in anchors:
            anchor = stalled.get((interval, name))
            if anchor is None:
                cells += ["", "", ""]
                continue
            mean = anchor["tcp_sockets_per_node"] / ours["tcp_sockets_per_node"]
            sockets = anchor["tcp_sockets_per_node_at_end"] / ours["tcp_sockets_per_node_at_end"]
            connections = (
                anchor["connections_per_node_kernel"] / ours["connections_per_node_kernel"]
            )
            cells += [f"{mean:.1f}x", f"{sockets:.1f}x", f"{connections:.1f}x"]
        lines.append(f"| {interval:g} s | " + " | ".join(cells) + " |")
    return "\n".join(lines) if len(lines) > 2 else ""


def formation_table(document: dict[str, Any]) -> str:
    """Formation time after the last start, strategies as columns, intervals as rows."""
    runs = [run for run in document["runs"] if run["scenario"] == "formation"]
    if not runs:
        return ""
    strategies = sorted({run["strategy"] for run in runs})
    intervals = sorted({run["probe_interval"] for run in runs})
    cell = {(run["probe_interval"], run["strategy"]): run["formation"] for run in runs}
    lines = [
        "| interval | " + " | ".join(strategies) + " |",
        "|---|" + "---|" * len(strategies),
    ]
    for interval in intervals:
        cells = [_seconds(cell.get((interval, strategy))) for strategy in strategies]
        lines.append(f"| {interval:g} s | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sim_scaling_table(document: dict[str, Any]) -> str:
    """Formation time and traffic per node from the simulation, by size, interval, transport."""
    results = document.get("sim_scaling", {}).get("results", [])
    if not results:
        return ""
    lines = [
        "| nodes | interval | transport | formed at | all joined at | messages per node | "
        "connections per node | wall time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(results, key=lambda r: (r["nodes"], r["probe_interval"], r["transport"])):
        joined = r["all_joined_time"]
        lines.append(
            f"| {r['nodes']} | {r['probe_interval']:g} s | {r['transport']} "
            f"| {r['formation_time']:.2f} s "
            f"| {'never' if joined is None else f'{joined:.2f} s'} "
            f"| {r['messages_per_node']:.0f} | {r['connections_per_node']:.0f} "
            f"| {r['wall_seconds']:.1f} s |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("churn_json", type=Path)
    args = parser.parse_args(argv)
    document = json.loads(args.churn_json.read_text())
    print(f"Command: `{document['command']}`  ")
    machine = document["machine"]
    print(f"Machine: {machine['platform']}, {machine['cpus']} CPUs, Python {machine['python']}")
    for title, table in (
        ("Stalled formation", stalled_table(document)),
        ("Churn ratio", ratio_table(document)),
        ("Formation", formation_table(document)),
        ("Simulation scaling", sim_scaling_table(document)),
    ):
        if table:
            print(f"\n### {title}\n\n{table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
