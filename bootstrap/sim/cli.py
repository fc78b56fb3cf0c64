"""``cluster-bootstrap simulate``: run the deterministic simulation and print what happened.

The main CLI wires this in with :func:`add_arguments` and :func:`run`. Exit status: 0 when the
run found no violation, 1 when it did, 2 for a bad flag value (the message names the flag).

The machine's settings are the ``node`` command's settings flags, from the one derivation in
:mod:`bootstrap.commands.options`: same names, help, checks and error messages; a flag not given
is the setting's default, and a clash exits 2 instead of changing a flag the user did not give.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TextIO

import attrs

from bootstrap.commands.options import add_settings_arguments, build_settings, number_parser
from bootstrap.core.errors import UsageError

from .report import SimulationReport, format_report
from .scenario import Latency, Scenario
from .simulation import run_simulation

__all__ = ["add_arguments", "main", "run"]


def _probability(text: str) -> float:
    value = number_parser(0.0, inclusive=True)(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a probability in [0, 1)")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be an integer >= 1")
    return value


def _stop(text: str) -> tuple[int, float]:
    node, separator, when = text.partition("@")
    try:
        if not separator:
            raise ValueError
        return int(node), number_parser(0.0, inclusive=True)(when)
    except (ValueError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(f"{text!r} is not NODE@SECONDS (e.g. 0@2.5)") from None


def _latency(text: str) -> tuple[float, float]:
    low, separator, high = text.partition(":")
    try:
        parse = number_parser(0.0, inclusive=True)
        values = (parse(low), parse(high)) if separator else (parse(low), parse(low))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not LOW:HIGH in milliseconds") from None
    if values[1] < values[0]:
        raise argparse.ArgumentTypeError(f"{text!r}: HIGH must be >= LOW")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``simulate`` flags to ``parser``: the scenario's, then the settings flags."""
    add = parser.add_argument
    add("--nodes", type=_count, default=10, help="number of nodes (default 10)")
    add(
        "--transport",
        choices=("watch", "poll"),
        default="watch",
        help="watch: websocket pushes; poll: HTTP keep-alive requests (default watch)",
    )
    add("--seed", type=int, default=0, help="random seed; same seed, same run (default 0)")
    add(
        "--start-spread",
        type=number_parser(0.0, inclusive=True),
        default=1.0,
        metavar="S",
        help="nodes start at uniform times in [0, S] (default 1)",
    )
    add(
        "--loss",
        type=_probability,
        default=0.0,
        metavar="P",
        help="probability each TCP transmission is lost and retransmitted (default 0)",
    )
    add(
        "--latency-ms",
        type=_latency,
        default=None,
        metavar="LOW:HIGH",
        help="one-way latency, uniform in [LOW, HIGH] ms (default 0.5 ms + exponential tail)",
    )
    add(
        "--stop",
        type=_stop,
        action="append",
        default=[],
        metavar="NODE@S",
        help="stop node NODE at S seconds (repeatable)",
    )
    add(
        "--register-lag",
        type=number_parser(0.0, inclusive=True),
        default=0.0,
        metavar="S",
        help="discovery lists a node this long after it starts (default 0)",
    )
    add(
        "--view-lag",
        type=number_parser(0.0, inclusive=True),
        default=0.0,
        metavar="S",
        help="each lookup returns discovery as it was this long ago (default 0)",
    )
    add(
        "--discovery-failure",
        type=_probability,
        default=0.0,
        metavar="P",
        help="probability a lookup fails (default 0)",
    )
    add(
        "--keepalive-expiry",
        type=number_parser(0.0, inclusive=False),
        default=None,
        metavar="S",
        help="close idle poll connections after S seconds (the anchor's leak; default never)",
    )
    add(
        "--max-time",
        type=number_parser(0.0, inclusive=False),
        default=600.0,
        metavar="S",
        help="stop the run at this virtual time (default 600)",
    )
    add("--max-rows", type=_count, default=20, help="per-node rows to print (default 20)")
    add("--json", action="store_true", help="print the report as JSON instead of a table")
    add_settings_arguments(parser)


def scenario_from_args(args: argparse.Namespace) -> Scenario:
    """Build the scenario the flags describe (raises ``UsageError`` on inconsistent values)."""
    settings = build_settings(args)
    latency = Latency()
    if args.latency_ms is not None:
        low, high = args.latency_ms
        latency = Latency.uniform(low / 1000, high / 1000)
    return Scenario(
        nodes=args.nodes,
        settings=settings,
        transport=args.transport,
        seed=args.seed,
        start_spread=args.start_spread,
        stop_times=dict(args.stop),
        latency=latency,
        loss=args.loss,
        register_lag=args.register_lag,
        view_lag=args.view_lag,
        discovery_failure=args.discovery_failure,
        keepalive_expiry=args.keepalive_expiry,
        max_time=args.max_time,
    )


def report_as_json(report: SimulationReport) -> str:
    """The report as a JSON document (every field, plus the derived throughput)."""
    data = attrs.asdict(report)
    data["node_seconds_per_wall_second"] = report.node_seconds_per_wall_second
    return json.dumps(data, indent=2)


def run(args: argparse.Namespace, *, stdout: TextIO | None = None) -> int:
    """Run the simulation the parsed flags describe; 0 if no violation, 1 if any, 2 if misused."""
    out = sys.stdout if stdout is None else stdout
    try:
        scenario = scenario_from_args(args)
    except UsageError as error:
        print(f"cluster-bootstrap simulate: error: {error}", file=sys.stderr)
        return 2
    report = run_simulation(scenario)
    if args.json:
        print(report_as_json(report), file=out)
    else:
        print(format_report(report, max_rows=args.max_rows), file=out)
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point: ``python -m bootstrap.sim.cli``."""
    parser = argparse.ArgumentParser(
        prog="cluster-bootstrap simulate",
        description="Run the deterministic bootstrap simulation and print what happened.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
