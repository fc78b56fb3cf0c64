"""The chart of ``benchmarks/scale.py``: what one node costs as N grows, by topology.

Left, the simulation: messages per node (each topology a line). Middle, the most connections a
node held open at once: the mean node and the busiest one (the founder, under the topology).
Right, real nodes: seconds from the last start to all joined, in one process and as processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

# (benchmarks.charts also selects the Agg backend, before pyplot is first used.)
from benchmarks.charts import DPI, STRATEGY_COLOURS

# The colours the churn charts give the same topologies (ours-mesh, ours-watch).
TOPOLOGY_COLOURS = {"full mesh": STRATEGY_COLOURS["ours-mesh"]}
DEFAULT_COLOUR = STRATEGY_COLOURS["ours-watch"]


def _series(
    results: Sequence[dict[str, Any]], part: str, topology: str | None, value: Any
) -> tuple[list[int], list[float]]:
    rows = sorted(
        (
            r
            for r in results
            if r["part"] == part and (topology is None or r["topology"] == topology)
        ),
        key=lambda r: r["nodes"],
    )
    points = [(r["nodes"], value(r)) for r in rows]
    points = [(n, v) for n, v in points if v is not None]
    return [n for n, _ in points], [v for _, v in points]


def write_chart(document: dict[str, Any], path: Path) -> Path:
    results = document["results"]
    topologies = sorted({r["topology"] for r in results if r["part"] == "sim"})
    figure, (messages, connections, real) = plt.subplots(1, 3, figsize=(15, 4.4))
    for topology in topologies:
        colour = TOPOLOGY_COLOURS.get(topology, DEFAULT_COLOUR)
        messages.plot(
            *_series(results, "sim", topology, lambda r: r["messages_per_node"]),
            marker="o",
            color=colour,
            label=topology,
        )
        connections.plot(
            *_series(
                results, "sim", topology, lambda r: r["max_open_connections_per_node"]["mean"]
            ),
            marker="o",
            color=colour,
            label=f"{topology}: mean node",
        )
        connections.plot(
            *_series(results, "sim", topology, lambda r: r["max_open_connections_per_node"]["max"]),
            marker="^",
            linestyle="--",
            color=colour,
            label=f"{topology}: busiest node",
        )
    real_cases = sorted(
        {(r["part"], r.get("probe_interval", 1.0)) for r in results if r["part"] != "sim"}
    )
    for part, interval in real_cases:
        rows = [
            r for r in results if r["part"] == part and r.get("probe_interval", 1.0) == interval
        ]
        nodes, seconds = _series(
            rows, part, None, lambda r: r.get("seconds_from_last_start_to_all_joined")
        )
        if nodes:
            label = f"{part.replace('-', ' ')}, probe interval {interval:g} s"
            real.plot(nodes, seconds, marker="o" if part == "in-process" else "s", label=label)
    messages.set_title("Simulation: messages per node")
    connections.set_title("Simulation: connections held open at once, per node")
    real.set_title("Real nodes: last start to all joined (s)")
    for axes in (messages, connections):
        axes.set_xscale("log")
        axes.set_yscale("log")
    real.set_xscale("log")
    real.set_ylim(bottom=0)
    for axes in (messages, connections, real):
        axes.set_xlabel("nodes")
        axes.grid(True, which="both", alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path
