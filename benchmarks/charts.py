"""Charts of the connection-churn benchmark: turn the JSON of ``benchmarks/churn.py`` into PNGs.

``write_charts`` draws, from the runs of one results document:

- ``sockets_per_node.png``: TCP sockets per node over time while formation stalls (all sockets
  solid, those in TIME_WAIT dashed), one panel per probe interval: the picture of the anchor's
  issue, where one new connection per probe piles up TIME_WAIT sockets;
- ``new_connections.png``: new TCP connections per second per node over the same stalled runs;
- ``formation_time.png``: how long formation took after the last node started, by probe
  interval and strategy, and (when the stalled runs measured it) how long a late arrival took;
- ``sim_scaling.png``: when the document carries a ``sim_scaling`` block, how formation time and
  traffic of the simulation grow with the cluster size.

A chart without any data is not written. Each strategy has a fixed colour, so the charts of
different runs compare at a glance. To re-render the charts of an existing results file::

    python benchmarks/charts.py benchmarks/results/churn.json --output /tmp/charts

The module is also run as a plain script, so it imports nothing relative to its package.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import matplotlib
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.colors import to_rgba
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import NullLocator

if TYPE_CHECKING:
    from matplotlib.typing import LineStyleType

# Agg draws into files and needs no display (benchmark hosts and CI have none); it has to be
# chosen before pyplot is imported.
matplotlib.use("Agg")

import matplotlib.pyplot as plt

DPI = 110
# Fixed per strategy so the same strategy looks the same in every chart of every run.
STRATEGY_COLOURS = {
    "ours-watch": "tab:green",
    "ours-poll": "tab:blue",
    "ours-mesh": "tab:olive",
    "anchor": "tab:red",
    "anchor-dotnet": "tab:orange",
    "pekko": "tab:purple",
}
# Strategies this module does not know still get a colour, one not used by the known ones.
SPARE_COLOURS = ("tab:brown", "tab:pink", "tab:gray", "tab:cyan")
# The simulation's transports are ours, so they take the colours of the matching strategies.
TRANSPORT_COLOURS = {"watch": STRATEGY_COLOURS["ours-watch"], "poll": STRATEGY_COLOURS["ours-poll"]}
STALL_END_LOOK: dict[str, Any] = {"color": "0.45", "linestyle": ":", "linewidth": 1.2}
INTERVAL_STYLES: tuple[tuple[LineStyleType, str], ...] = (
    ("-", "o"),
    ("--", "s"),
    (":", "^"),
    ("-.", "D"),
)
# Above this ratio of the largest to the smallest plotted (positive) value a linear axis
# flattens the small lines onto zero: the anchor's hundreds of sockets would hide our few.
LOG_RATIO = 20.0
PANEL_WIDTH = 4.6  # inches per subplot
LEGEND_WIDTH = 2.0  # inches for the legend right of the subplots
HEIGHT = 4.4
# Beside the panels (never over data), centred so it does not run into the figure's title.
LEGEND_PLACE: Final = "outside right center"

# One line of a chart: x values, y values (NaN where there is no sample, which breaks the
# line instead of bridging the gap), line style.
Trace: TypeAlias = "tuple[list[float], list[float], LineStyleType]"


def write_charts(document: dict[str, Any], directory: Path) -> list[Path]:
    """Write the charts ``document`` has data for into ``directory``; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    runs = [run for run in document.get("runs") or [] if isinstance(run, dict)]
    stalled = [run for run in runs if run.get("scenario") == "stalled"]
    formation = [run for run in runs if run.get("scenario") == "formation"]
    charts: list[tuple[str, Callable[[Path], bool]]] = [
        ("sockets_per_node.png", lambda path: _sockets_chart(stalled, path)),
        ("new_connections.png", lambda path: _new_connections_chart(stalled, path)),
        ("formation_time.png", lambda path: _formation_chart(formation, stalled, path)),
        ("sim_scaling.png", lambda path: _sim_scaling_chart(document.get("sim_scaling"), path)),
    ]
    written = []
    for name, draw in charts:
        path = directory / name
        if draw(path):
            written.append(path)
    return written


# --- reading the document -------------------------------------------------------------------


def _number(value: Any) -> float | None:
    """``value`` as a float, or None for a missing sample (null, NaN, or not a number at all)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _samples(run: dict[str, Any], statistic: str, key: str) -> list[tuple[float, float | None]]:
    """(time, value) of one series of a run; value None where no node was live."""
    series = run.get("series") or {}
    times = series.get("t") or []
    values = (series.get(statistic) or {}).get(key) or []
    samples = []
    for time, value in zip(times, values, strict=False):
        moment = _number(time)
        if moment is not None:
            samples.append((moment, _number(value)))
    return samples


def _line(samples: Sequence[tuple[float, float | None]]) -> tuple[list[float], list[float]]:
    """Samples as plottable x and y lists, NaN marking the samples to skip."""
    return [time for time, _ in samples], [math.nan if v is None else v for _, v in samples]


def _rates(samples: Sequence[tuple[float, float | None]]) -> tuple[list[float], list[float]]:
    """Per-second rates of a count per sample (the connections first seen since the previous
    sample), each placed at the end of the interval it counts.

    The first sample has no previous one: it counts every connection already open, which is no
    rate, so it is left out (as the run's summary leaves it out).
    """
    xs: list[float] = []
    ys: list[float] = []
    for (before, _), (time, count) in itertools.pairwise(samples):
        xs.append(time)
        ys.append(math.nan if count is None or time <= before else count / (time - before))
    return xs, ys


def _has_data(values: Iterable[float]) -> bool:
    return any(not math.isnan(value) for value in values)


def _strategy_order(strategies: Iterable[str]) -> list[str]:
    """The known strategies in their fixed order, then any others alphabetically."""
    present = set(strategies)
    known = [strategy for strategy in STRATEGY_COLOURS if strategy in present]
    return known + sorted(present - set(known))


def _colour(strategy: str) -> str:
    if strategy in STRATEGY_COLOURS:
        return STRATEGY_COLOURS[strategy]
    # Derived from the name itself (not hash(), which changes per process), so an unknown
    # strategy keeps its colour from one chart and one run to the next.
    return SPARE_COLOURS[sum(strategy.encode()) % len(SPARE_COLOURS)]


def _interval(run: dict[str, Any]) -> float:
    return _number(run.get("probe_interval")) or 0.0


def _stalled_title(runs: Sequence[dict[str, Any]], what: str) -> str:
    """The figure's title; it names the stall ("N up of M required") when all runs share it."""
    counts = {(run.get("up"), run.get("nodes")) for run in runs}
    if len(counts) == 1:
        up, nodes = counts.pop()
        if up is not None and nodes is not None:
            return f"Stalled formation: {up} up of {nodes} required — {what}"
    return f"Stalled formation — {what}"


# --- drawing -----------------------------------------------------------------------------------


def _line_width(rank: int) -> float:
    """Lines drawn later are thinner, so one exactly on top of another (ours-watch and
    ours-poll often hold the same number of sockets) leaves the earlier one visible as a rim."""
    return (3.6, 2.0, 1.6)[rank] if rank < 3 else 1.3


def _apply_y_scale(axes: Sequence[Axes], values: Iterable[float], label: str) -> None:
    """Linear y axes from zero, or log axes when the values span more than ``LOG_RATIO``.

    A log axis cannot show zero, yet a zero line (no TIME_WAIT at all) is a result worth
    seeing; with zeros present the axis is "symlog", logarithmic from the smallest positive
    value on and linear below it, so zeros sit at the bottom. Call it after plotting: the
    limits follow the data. Either way zero sits a little above the axis, so that a line at
    zero is not hidden by the axis itself.
    """
    finite = [value for value in values if not math.isnan(value)]
    positive = [value for value in finite if value > 0]
    if positive and max(positive) / min(positive) > LOG_RATIO:
        label += " (log scale)"
        for ax in axes:
            if len(positive) < len(finite):
                threshold = 10.0 ** math.floor(math.log10(min(positive)))
                ax.set_yscale("symlog", linthresh=threshold, linscale=0.4)
                ax.set_ylim(bottom=-0.5 * threshold)
            else:
                ax.set_yscale("log")
    else:
        for ax in axes:
            top = ax.get_ylim()[1]
            if top <= 0:  # all zero
                top = 1.0
            ax.set_ylim(-0.02 * top, top)
    axes[0].set_ylabel(label)


def _plot_over_time(
    runs: Sequence[dict[str, Any]],
    path: Path,
    *,
    what: str,
    ylabel: str,
    traces: Callable[[dict[str, Any]], tuple[list[Trace], str]],
    styles: Sequence[tuple[LineStyleType, str]] = (),
) -> bool:
    """One subplot per probe interval, one colour per strategy; False (nothing written) if no
    run has any data.

    ``traces`` gives a run's lines and a note for its strategy's legend entry ("" for none);
    ``styles`` explains the line styles in the legend as (line style, meaning).
    """
    panels: dict[float, list[tuple[str, list[Trace]]]] = {}
    notes: dict[str, str] = {}
    # Where the stall ended and the missing nodes were started: the series go on past it, into
    # the late arrival. The runs of a panel stall for the same duration; the earliest end counts.
    stall_ends: dict[float, float] = {}
    for run in runs:
        lines, note = traces(run)
        lines = [line for line in lines if _has_data(line[1])]
        if not lines:
            continue
        strategy = str(run.get("strategy"))
        interval = _interval(run)
        panels.setdefault(interval, []).append((strategy, lines))
        if note:
            notes[strategy] = note
        stall_end = _number(run.get("stall_seconds"))
        if stall_end is not None and run.get("late_arrival"):
            stall_ends[interval] = min(stall_end, stall_ends.get(interval, stall_end))
    if not panels:
        return False
    intervals = sorted(panels)
    strategies = _strategy_order(strategy for panel in panels.values() for strategy, _ in panel)
    fig, grid = plt.subplots(
        1,
        len(intervals),
        # A single panel (a quick run) still needs room for the long title.
        figsize=(max(PANEL_WIDTH * len(intervals), 6.5) + LEGEND_WIDTH, HEIGHT),
        dpi=DPI,
        layout="constrained",
        squeeze=False,
    )
    try:
        axes = list(grid[0])
        for ax, interval in zip(axes, intervals, strict=True):
            # Drawn in the fixed strategy order so overlapping lines stack the same way each time.
            for strategy, lines in sorted(panels[interval], key=lambda e: strategies.index(e[0])):
                width = _line_width(strategies.index(strategy))
                for xs, ys, style in lines:
                    ax.plot(xs, ys, color=_colour(strategy), linestyle=style, linewidth=width)
            if interval in stall_ends:
                ax.axvline(stall_ends[interval], **STALL_END_LOOK)
            ax.set_title(f"probe interval {interval:g} s")
            ax.set_xlabel("seconds since start")
            ax.set_xlim(left=0)
            ax.grid(alpha=0.3)
        plotted = (
            y for panel in panels.values() for _, ls in panel for line in ls for y in line[1]
        )
        _apply_y_scale(axes, plotted, ylabel)
        fig.suptitle(_stalled_title(runs, what))
        handles: list[Artist] = [
            Line2D([], [], color=_colour(s), linewidth=2.5, label=s + notes.get(s, ""))
            for s in strategies
        ]
        handles += [Line2D([], [], color="black", linestyle=s, label=m) for s, m in styles]
        if stall_ends:
            handles.append(Line2D([], [], label="missing nodes\nstarted", **STALL_END_LOOK))
        fig.legend(handles=handles, loc=LEGEND_PLACE, fontsize=9)
        fig.savefig(path)
    finally:
        plt.close(fig)
    return True


def _sockets_chart(stalled: Sequence[dict[str, Any]], path: Path) -> bool:
    """All TCP sockets and those in TIME_WAIT per node over time, as in the anchor's issue."""

    def traces(run: dict[str, Any]) -> tuple[list[Trace], str]:
        sockets = _line(_samples(run, "mean", "tcp_sockets"))
        time_wait = _line(_samples(run, "mean", "time_wait"))
        return [(*sockets, "-"), (*time_wait, "--")], ""

    return _plot_over_time(
        stalled,
        path,
        what="TCP sockets per node",
        ylabel="TCP sockets per node, mean over nodes",
        traces=traces,
        styles=(("-", "all TCP sockets"), ("--", "in TIME_WAIT")),
    )


def _new_connections_chart(stalled: Sequence[dict[str, Any]], path: Path) -> bool:
    """New connections per second per node: the kernel's count, else the driver's own."""

    def traces(run: dict[str, Any]) -> tuple[list[Trace], str]:
        # The kernel sees every connection, also those a library opens behind the driver's
        # back; the driver's count is the fallback where the kernel's was not collected.
        kernel = _rates(_samples(run, "mean", "new_connections_kernel"))
        if _has_data(kernel[1]):
            return [(*kernel, "-")], ""
        driver = _rates(_samples(run, "mean", "new_connections_driver"))
        return [(*driver, "-")], " (driver's count)"

    return _plot_over_time(
        stalled,
        path,
        what="new TCP connections per node",
        ylabel="new connections per second per node (mean)",
        traces=traces,
    )


# An outcome as charted: (seconds, or None if it did not form; the run's timeout or None).
Outcome = tuple[float | None, float | None]


def _outcomes(runs: Sequence[dict[str, Any]], key: str) -> dict[float, dict[str, Outcome]]:
    """interval -> strategy -> outcome of the runs that measured ``key``; the first run of a
    (strategy, interval) pair counts, as a document holds one run per pair."""
    outcomes: dict[float, dict[str, Outcome]] = {}
    for run in runs:
        result = run.get(key)
        if not isinstance(result, dict):
            continue
        seconds = _number(result.get("seconds_after_last_start"))
        if not result.get("formed"):
            seconds = None
        by_strategy = outcomes.setdefault(_interval(run), {})
        by_strategy.setdefault(str(run.get("strategy")), (seconds, _number(result.get("timeout"))))
    return outcomes


def _draw_bars(ax: Axes, outcomes: dict[float, dict[str, Outcome]], title: str) -> None:
    """Grouped bars: a group per probe interval, a bar per strategy.

    Every group keeps a slot for every strategy (empty if it has no run there), so a strategy's
    bar sits at the same place in each group.
    """
    intervals = sorted(outcomes)
    strategies = _strategy_order(s for by_strategy in outcomes.values() for s in by_strategy)
    width = 0.8 / len(strategies)
    known = [value for o in outcomes.values() for pair in o.values() for value in pair if value]
    # A run that did not form and has no timeout recorded still needs a bar reaching "beyond".
    fallback_top = max(known, default=1.0)
    top = 0.0
    for group, interval in enumerate(intervals):
        for slot, strategy in enumerate(strategies):
            if strategy not in outcomes[interval]:
                continue
            seconds, timeout = outcomes[interval][strategy]
            x = group + (slot - (len(strategies) - 1) / 2) * width
            colour = _colour(strategy)
            if seconds is not None:
                ax.bar(x, seconds, width, color=colour)
                ax.text(x, seconds, f"{seconds:.1f}", ha="center", va="bottom", fontsize=8)
                top = max(top, seconds)
                continue
            height = timeout or fallback_top
            ax.bar(x, height, width, facecolor=to_rgba(colour, 0.2), edgecolor=colour, hatch="///")
            ax.text(
                x,
                height / 2,
                "did not form",
                rotation=90,
                ha="center",
                va="center",
                fontsize=8,
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 1.5},
            )
            top = max(top, height)
    ax.set_xticks(range(len(intervals)), [f"{interval:g} s" for interval in intervals])
    ax.set_xlabel("probe interval")
    ax.set_ylabel("seconds after the last node started")
    # Headroom for the value labels above the tallest bar.
    ax.set_ylim(0, (top or 1.0) * 1.1)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)


def _formation_chart(
    formation: Sequence[dict[str, Any]], stalled: Sequence[dict[str, Any]], path: Path
) -> bool:
    """Formation time of the "formation" runs; late-arrival time of the "stalled" runs."""
    panels = []
    formed = _outcomes(formation, "formation")
    if formed:
        nodes = {run.get("nodes") for run in formation if isinstance(run.get("formation"), dict)}
        size = f" of {nodes.pop()} nodes" if len(nodes) == 1 else ""
        panels.append((formed, f"Formation{size}"))
    late = _outcomes(stalled, "late_arrival")
    if late:
        panels.append((late, "Late arrival after a stalled formation"))
    if not panels:
        return False
    fig, grid = plt.subplots(
        1,
        len(panels),
        figsize=((PANEL_WIDTH + 0.8) * len(panels) + LEGEND_WIDTH, HEIGHT),
        dpi=DPI,
        layout="constrained",
        squeeze=False,
    )
    try:
        for ax, (outcomes, title) in zip(grid[0], panels, strict=True):
            _draw_bars(ax, outcomes, title)
        strategies = _strategy_order(s for o, _ in panels for by in o.values() for s in by)
        handles: list[Artist] = [Patch(color=_colour(s), label=s) for s in strategies]
        handles.append(
            Patch(
                facecolor="white",
                edgecolor="black",
                hatch="///",
                label="did not form\n(bar: timeout)",
            )
        )
        fig.legend(handles=handles, loc=LEGEND_PLACE, fontsize=9)
        fig.suptitle("Time to form one cluster, by probe interval")
        fig.savefig(path)
    finally:
        plt.close(fig)
    return True


def _sim_scaling_chart(sim: Any, path: Path) -> bool:
    """Simulation by cluster size: time until all joined (left), messages per node (right)."""
    results = sim.get("results") if isinstance(sim, dict) else None
    lines: dict[tuple[str, float], list[tuple[float, float | None, float | None]]] = {}
    for result in results or []:
        if not isinstance(result, dict) or _number(result.get("nodes")) is None:
            continue
        messages = _number(result.get("messages_per_node"))
        point = (
            _number(result["nodes"]) or 0.0,
            _number(result.get("all_joined_time")),
            # The right panel is logarithmic: no traffic at all cannot be drawn there.
            messages if messages and messages > 0 else None,
        )
        key = (str(result.get("transport")), _number(result.get("probe_interval")) or 0.0)
        lines.setdefault(key, []).append(point)
    if not any(
        joined is not None or sent is not None for ps in lines.values() for _, joined, sent in ps
    ):
        return False
    transports = sorted({transport for transport, _ in lines}, key=lambda t: (t != "watch", t))
    intervals = sorted({interval for _, interval in lines})
    spare = iter(SPARE_COLOURS * 2)
    colours = {t: TRANSPORT_COLOURS.get(t) or next(spare) for t in transports}
    sizes = sorted({nodes for points in lines.values() for nodes, _, _ in points})
    fig, grid = plt.subplots(
        1, 2, figsize=(2 * PANEL_WIDTH + 2.2, HEIGHT), dpi=DPI, layout="constrained", squeeze=False
    )
    left, right = grid[0]
    try:
        handles: list[Artist] = []
        for rank, transport in enumerate(transports):
            # As in the other charts: a later transport's lines and markers are smaller, so
            # where both transports give the same value both stay visible.
            look: dict[str, Any] = {
                "color": colours[transport],
                "linewidth": _line_width(rank),
                "markersize": max(4.0, 8.5 - 3.0 * rank),
            }
            for index, interval in enumerate(intervals):
                points = sorted(lines.get((transport, interval), []), key=lambda p: p[0])
                if not points:
                    continue
                style, marker = INTERVAL_STYLES[index % len(INTERVAL_STYLES)]
                nodes = [p[0] for p in points]
                # NaN leaves out the sizes where not every node joined within the run's bound.
                joined = [math.nan if p[1] is None else p[1] for p in points]
                sent = [math.nan if p[2] is None else p[2] for p in points]
                left.plot(nodes, joined, linestyle=style, marker=marker, **look)
                right.plot(nodes, sent, linestyle=style, marker=marker, **look)
                label = f"{transport}, probe every {interval:g} s"
                handles.append(Line2D([], [], linestyle=style, marker=marker, label=label, **look))
        for ax in (left, right):
            ax.set_xscale("log")
            ax.set_xticks(sizes, [f"{size:g}" for size in sizes])
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_xlabel("nodes (log scale)")
            ax.grid(alpha=0.3)
        joined_times = [joined for ps in lines.values() for _, joined, _ in ps if joined]
        # From zero, and with room above the slowest so its line does not run along the frame.
        left.set_ylim(0, max(joined_times, default=1.0) * 1.12)
        left.set_ylabel("seconds (simulated time)")
        left.set_title("Time until every node joined")
        right.set_yscale("log")
        right.set_ylabel("messages per node (log scale)")
        right.set_title("Messages per node until the end of the run")
        fig.suptitle("Simulation: how formation scales with the cluster size")
        fig.legend(handles=handles, loc=LEGEND_PLACE, fontsize=9)
        fig.savefig(path)
    finally:
        plt.close(fig)
    return True


# --- command line ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Render the charts of an existing results file; exit status 1 if it had nothing to chart."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "results", type=Path, help="JSON written by benchmarks/churn.py (or by sim_scaling.py)"
    )
    parser.add_argument(
        "--output", type=Path, help="directory for the PNG files (default: the JSON's directory)"
    )
    parser.add_argument(
        "--sim-scaling",
        type=Path,
        metavar="JSON",
        help="also chart this output of benchmarks/sim_scaling.py (as sim_scaling.png)",
    )
    args = parser.parse_args(argv)
    document = json.loads(args.results.read_text())
    # A sim_scaling results file on its own has the shape of the "sim_scaling" block.
    if document.get("benchmark") == "sim_scaling":
        document = {"sim_scaling": document}
    if args.sim_scaling is not None:
        document = {**document, "sim_scaling": json.loads(args.sim_scaling.read_text())}
    written = write_charts(document, args.output or args.results.parent)
    for path in written:
        print(f"wrote {path}")
    if not written:
        print(f"{args.results}: no data to chart", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
