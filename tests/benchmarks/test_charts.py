"""The churn benchmark's charts: which PNGs a results document yields, and that they are PNGs.

The documents are synthetic (no benchmark runs here) and shaped like ``benchmarks/churn.py``'s
JSON, gaps and a run that did not form included. Pixels are not compared: only that each file
is a PNG of plausible size, and that a chart without data is not written.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

# matplotlib is a dependency of the benchmarks only, not of the package's test environment.
pytest.importorskip("matplotlib", reason="the benchmark charts need matplotlib")

from benchmarks.charts import main, write_charts

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NODES, UP, STALL = 20, 18, 60.0
STRATEGIES = ("ours-watch", "ours-poll", "anchor")


def stalled_run(strategy: str, interval: float) -> dict[str, Any]:
    """A stalled run: the anchor opens a connection per peer per probe, ours hold theirs."""
    peers = UP - 1
    t = [float(second) for second in range(int(STALL) + 30)]
    new = [peers if second == 0 else 0.0 for second in range(len(t))]
    if strategy == "anchor":
        new = [peers / interval for _ in t]
        # Closed connections linger 60 s in TIME_WAIT, so they pile up for the first minute.
        time_wait = [min(second, 60.0) * peers / interval for second in range(len(t))]
    else:
        time_wait = [0.0 if strategy == "ours-watch" else 0.5 for _ in t]
    established = [float(peers) for _ in t]
    mean = {
        "tcp_sockets": [e + w for e, w in zip(established, time_wait, strict=True)],
        "established": established,
        "time_wait": time_wait,
        "new_connections_driver": new,
        "new_connections_kernel": new,
    }
    # A sample where no node was live: every series has a gap there.
    for values in mean.values():
        values[10] = None
    return {
        "scenario": "stalled",
        "strategy": strategy,
        "probe_interval": interval,
        "nodes": NODES,
        "up": UP,
        "series": {"t": t, "mean": mean, "max": mean},
        "summary": {},
        "stall_seconds": STALL,
        "late_arrival": {"formed": True, "seconds_after_last_start": 2.0 * interval, "timeout": 30},
    }


def formation_run(strategy: str, interval: float) -> dict[str, Any]:
    """A formation run; the anchor's at the longest interval does not form in time."""
    formed = not (strategy == "anchor" and interval == 5.0)
    return {
        "scenario": "formation",
        "strategy": strategy,
        "probe_interval": interval,
        "nodes": NODES,
        "up": NODES,
        "series": {"t": [], "mean": {}, "max": {}},
        "summary": {},
        "formation": {
            "formed": formed,
            "seconds_after_last_start": 5.0 + interval if formed else None,
            "timeout": 60.0,
        },
        "late_arrival": None,
    }


def sim_scaling() -> dict[str, Any]:
    """A ``sim_scaling.json`` in miniature, one size without an all-joined time."""
    return {
        "results": [
            {
                "nodes": nodes,
                "transport": transport,
                "probe_interval": interval,
                "formation_time": 6.05,
                "all_joined_time": None if nodes == 1000 and interval == 5.0 else 6.0 + interval,
                "messages_per_node": nodes * (9.0 if transport == "watch" else 12.0) / interval,
            }
            for nodes in (10, 100, 1000)
            for transport in ("watch", "poll")
            for interval in (1.0, 5.0)
        ]
    }


def full_document() -> dict[str, Any]:
    runs = [
        make(strategy, interval)
        for make in (stalled_run, formation_run)
        for interval in (1.0, 5.0)
        for strategy in STRATEGIES
    ]
    return {"benchmark": "churn", "runs": runs, "sim_scaling": sim_scaling()}


def png_size(path: Path) -> tuple[int, int]:
    """Width and height of a PNG file, from its header (IHDR, the first chunk)."""
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE), path
    assert data[12:16] == b"IHDR", path
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def assert_plausible_png(path: Path) -> None:
    width, height = png_size(path)
    assert 500 <= width <= 3000, (path.name, width)
    assert 300 <= height <= 1200, (path.name, height)
    assert width > height, (path.name, width, height)


def test_a_full_document_yields_all_four_charts(tmp_path: Path) -> None:
    """Stalled, formation and simulation data yield all four charts, each a plausible PNG."""
    written = write_charts(full_document(), tmp_path / "charts")
    names = [path.name for path in written]
    assert names == [
        "sockets_per_node.png",
        "new_connections.png",
        "formation_time.png",
        "sim_scaling.png",
    ]
    assert sorted(path.name for path in (tmp_path / "charts").iterdir()) == sorted(names)
    for path in written:
        assert_plausible_png(path)


def test_only_formation_runs_yield_only_the_formation_chart(tmp_path: Path) -> None:
    """Without stalled runs or simulation data only formation_time.png is written."""
    document = {
        "benchmark": "churn",
        "runs": [formation_run(strategy, 1.0) for strategy in STRATEGIES],
    }
    written = write_charts(document, tmp_path)
    assert [path.name for path in written] == ["formation_time.png"]
    assert not (tmp_path / "sockets_per_node.png").exists()
    assert_plausible_png(written[0])


def test_the_command_line_re_renders_charts_from_a_results_file(tmp_path: Path) -> None:
    """``charts.py RESULTS --output DIR`` writes the charts; a file without data exits 1."""
    results = tmp_path / "churn.json"
    results.write_text(json.dumps(full_document()))
    assert main([str(results), "--output", str(tmp_path / "out")]) == 0
    assert len(list((tmp_path / "out").glob("*.png"))) == 4
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"benchmark": "churn", "runs": []}))
    assert main([str(empty), "--output", str(tmp_path / "none")]) == 1
    assert not list((tmp_path / "none").glob("*.png"))
