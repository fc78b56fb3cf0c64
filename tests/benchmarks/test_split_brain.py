"""The split-brain sweep on a few seeds: the JSON's shape, its counts, and the guarantees' rows.

Runs the script's own functions (and its command line once, on two processes) on rows small
enough to finish in seconds. It asserts counts, never times: rows inside S1 or S2 show no
split under ``promise``, and the premature-formation case of ``tests/sim/test_simulation.py``
splits under ``lowest-address`` and not under ``promise``, so the sweep can tell them apart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks import split_brain
from benchmarks.split_brain import Row
from bootstrap.core.settings import Settings
from bootstrap.sim import Latency, Scenario, run_simulation

SEEDS = 4
S2_ROW = Row("deployment", "per-node", 5, 0.1, "2", "poll")
S1_ROW = Row("deployment", "per-pair", 5, 0.1, "majority", "watch")
OUTSIDE_ROW = Row("deployment", "per-pair", 5, 0.1, "2", "poll")


@pytest.fixture(scope="module")
def summaries() -> list[dict[str, Any]]:
    return split_brain.sweep([S2_ROW, S1_ROW, OUTSIDE_ROW], SEEDS, jobs=1, progress=False)


def test_rows_carry_their_guarantees(summaries: list[dict[str, Any]]) -> None:
    """Per-node lags with contact-with-all meet S2, a majority meets S1, per-pair with 2 neither."""
    assert [summary["guarantees"] for summary in summaries] == [["S2"], ["S1"], []]
    assert summaries[1]["required_contact_points"] == 3


def test_the_json_holds_counts_per_rule(summaries: list[dict[str, Any]]) -> None:
    """Every row counts splits, stalls and times for both rules over all its seeds."""
    for summary in summaries:
        assert summary["seeds"] == SEEDS
        assert set(summary["rules"]) == {"promise", "lowest-address"}
        for rule in summary["rules"].values():
            assert 0 <= rule["splits"] == len(rule["split_seeds"]) <= SEEDS
            assert sum(rule["mechanisms"].values()) >= rule["splits"]
            assert 0 <= rule["nobody_formed"] <= rule["not_all_joined"] <= SEEDS
            times = rule["formation_time"]
            assert times["runs"] == SEEDS - rule["not_all_joined"]
            assert times["median"] is None or 0 <= times["median"] <= times["p95"]
            assert rule["founding_time"]["runs"] >= 1
            assert rule["violations"] == {}
        cost = summary["round_cost"]
        assert 0 <= cost["runs"] <= SEEDS
        assert cost["median"] is None or cost["median"] <= cost["p95"]
        json.dumps(summary)  # serialisable as it is


def test_rows_inside_a_guarantee_never_split_under_promise(
    summaries: list[dict[str, Any]],
) -> None:
    """S1 and S2 rows: zero runs with two clusters under the founding round."""
    for summary in summaries:
        if summary["guarantees"]:
            assert summary["rules"]["promise"]["splits"] == 0
    assert list(split_brain.broken_guarantees(summaries)) == []
    broken = {**summaries[0], "rules": {"promise": {"splits": 1, "split_seeds": [7]}}}
    (line,) = split_brain.broken_guarantees([broken])
    assert line.startswith("S2 row split under promise: deployment per-node N=5")
    assert "seeds [7]" in line


@pytest.mark.parametrize(("formation", "split"), [("lowest-address", True), ("promise", False)])
def test_the_premature_formation_splits_only_under_the_old_rule(
    formation: str, split: bool
) -> None:
    """The case pinned in test_simulation.py, through the sweep's per-run summary."""
    report = run_simulation(
        Scenario(
            nodes=8,
            transport="poll",
            settings=Settings(stable_margin=0.5, probe_jitter=0.0, formation=formation),  # type: ignore[arg-type]
            start_spread=1.0,
            latency=Latency.constant(0.0),
            seed=0,
        )
    )
    outcome = split_brain.outcome(report)
    assert outcome["split"] is split
    expected = ["the later founder decided on an answer older than the other's formation"]
    assert outcome["kinds"] == (expected if split else [])
    assert outcome["nobody_formed"] is False
    assert outcome["founding_time"] is not None


def test_the_grid_skips_repeated_rows() -> None:
    """A majority of 3 is 2: the N=3 majority row is the required-2 row, run once."""
    rows = split_brain.grid(
        families=("deployment",),
        lags=("per-node",),
        nodes=(3, 5),
        margins=(0.5,),
        transports=("poll",),
    )
    assert [(row.nodes, row.required_contact_points) for row in rows] == [(3, 2), (5, 2), (5, 3)]
    assert all(row in split_brain.full_rows() for row in split_brain.quick_rows())


def test_the_command_line_writes_json_and_markdown(tmp_path: Path) -> None:
    """One row, three seeds, two processes: the JSON document and the Markdown table."""
    output, table = tmp_path / "out.json", tmp_path / "table.md"
    status = split_brain.main(
        [
            "--families=full-restart",
            "--lags=per-node",
            "--nodes=3",
            "--margins=0.5",
            "--transports=watch",
            "--seeds=3",
            "--jobs=2",
            f"--output={output}",
            f"--markdown={table}",
            "--probe-fanout=none",
        ]
    )
    assert status == 0
    document = json.loads(output.read_text())
    assert document["benchmark"] == "split_brain"
    assert document["seeds"] == 3
    assert document["probe_fanout"] is None  # the full mesh, as asked
    (row,) = document["rows"]
    assert (row["family"], row["nodes"], row["guarantees"]) == ("full-restart", 3, ["S1"])
    lines = table.read_text().splitlines()
    assert lines[0].startswith("| family | lag | N | margin | required | transport | guarantee")
    assert lines[2].startswith("| full-restart | per-node | 3 | 0.5 s | 2 | watch | **S1** | 3 |")


@pytest.mark.parametrize("text", ["0", "-1", "three", ""])
def test_a_bad_probe_fanout_is_refused(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        split_brain.main([f"--probe-fanout={text}", "--seeds=1"])
    assert exit_info.value.code == 2
    assert "expected an integer >= 1 or 'none'" in capsys.readouterr().err
