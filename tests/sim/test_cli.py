"""Tests of ``cluster-bootstrap simulate`` (bootstrap.sim.cli): flags, output, exit status.

Testing policy: see ``test_model.py``; runs here are small (a few nodes, bounded max time).
"""

from __future__ import annotations

import argparse
import io
import json

import pytest

from bootstrap import Settings
from bootstrap.sim import cli


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cluster-bootstrap simulate")
    cli.add_arguments(parser)
    return parser.parse_args(argv)


def test_a_healthy_run_prints_a_table_and_exits_0() -> None:
    """A forming run prints formation times, rows, totals, no violations; exit status 0."""
    out = io.StringIO()
    status = cli.run(parse("--nodes", "4", "--seed", "3", "--transport", "poll"), stdout=out)
    text = out.getvalue()
    assert status == 0
    assert "clusters formed: 1 (sim://node-0)" in text
    assert "formation time:" in text
    assert "10.0.0.4:8558" in text
    assert "violations: none" in text


def test_violations_exit_1() -> None:
    """A run that cannot form reports the nodes that did not join and exits 1."""
    out = io.StringIO()
    args = parse("--nodes", "3", "--required-contact-points", "4", "--max-time", "20")
    assert cli.run(args, stdout=out) == 1
    assert "node 0 not joined: confirmed 3 of 4 required contact points" in out.getvalue()


def test_large_runs_trim_the_rows() -> None:
    """With more nodes than --max-rows, the table shows the first and last rows only."""
    out = io.StringIO()
    args = parse("--nodes", "30", "--max-rows", "6", "--probe-interval", "5")
    assert cli.run(args, stdout=out) == 0
    text = out.getvalue()
    assert "(24 rows omitted)" in text
    assert "10.0.0.30:8558" in text


def test_json_output_is_the_whole_report() -> None:
    """--json prints every report field, per node too, plus the throughput."""
    out = io.StringIO()
    args = parse("--nodes", "3", "--json", "--stop", "2@30", "--latency-ms", "1:2")
    assert cli.run(args, stdout=out) == 0
    data = json.loads(out.getvalue())
    assert data["clusters_formed"] == 1
    assert len(data["nodes"]) == 3
    assert data["nodes"][2]["stopped_at"] == 30.0
    assert data["node_seconds_per_wall_second"] > 0


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--loss", "1.5"], "--loss"),
        (["--probe-interval", "0"], "--probe-interval"),
        (["--nodes", "zero"], "--nodes"),
        (["--stop", "3"], "--stop"),
        (["--latency-ms", "5:1"], "--latency-ms"),
        (["--transport", "udp"], "--transport"),
        (["--probe-jitter", "1"], "argument --probe-jitter: probe_jitter must be in [0, 1)"),
        (["--fallback-port", "0"], "argument --fallback-port: fallback_port must be a port"),
    ],
)
def test_bad_flag_values_exit_2_naming_the_flag(
    argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad flag value exits 2 with a message that names the flag."""
    with pytest.raises(SystemExit) as exited:
        parse(*argv)
    assert exited.value.code == 2
    assert flag in capsys.readouterr().err


def test_inconsistent_values_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """Values that only clash together (a stop for a node that does not exist) exit 2."""
    assert cli.run(parse("--nodes", "3", "--stop", "7@1")) == 2
    assert "stop_times names node 7, but nodes are 0..2" in capsys.readouterr().err


def test_main_runs_standalone(capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m bootstrap.sim.cli`` parses argv and returns the exit status."""
    assert cli.main(["--nodes", "2", "--probe-interval", "10"]) == 0
    assert "clusters formed: 1" in capsys.readouterr().out


def test_a_setting_that_clashes_with_a_default_exits_2_naming_both_flags(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--probe-interval 20 alone is refused as by ``node``, not run with a raised backoff cap."""
    assert cli.run(parse("--nodes", "2", "--probe-interval", "20")) == 2
    assert capsys.readouterr().err == (
        "cluster-bootstrap simulate: error: --probe-interval 20 clashes with the default "
        "--probe-backoff-max 15: probe_backoff_max (15.0) must be >= probe_interval (20.0); "
        "give --probe-backoff-max as well\n"
    )


def test_settings_flags_not_given_are_the_settings_defaults() -> None:
    """The scenario runs exactly the settings given, every other one at its default."""
    args = parse("--probe-interval", "20", "--probe-backoff-max", "20", "--no-new-cluster")
    assert cli.scenario_from_args(args).settings == Settings(
        probe_interval=20.0, probe_backoff_max=20.0, new_cluster_enabled=False
    )
    assert cli.scenario_from_args(parse()).settings == Settings()


def test_every_setting_is_a_simulate_flag() -> None:
    """The settings the sim had no flag for before (the backoff caps among them) are flags."""
    args = parse("--discovery-backoff-max", "30", "--max-seed-nodes", "3", "--fallback-port", "9")
    assert cli.scenario_from_args(args).settings == Settings(
        discovery_backoff_max=30.0, max_seed_nodes=3, fallback_port=9
    )
