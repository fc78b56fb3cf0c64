"""The command line: ``cluster-bootstrap`` and ``python -m bootstrap`` are the same program.

Each subcommand lives with the code it drives and contributes ``add_arguments(parser)`` and
``run(args) -> int``; this module only assembles them. Argument errors exit 2 (argparse's
convention) with a message that names the flag.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._version import __version__
from .sim import cli as simulate_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cluster-bootstrap",
        description="Let the replicas of a service find each other and form exactly one cluster.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    simulate = commands.add_parser(
        "simulate",
        help="run the deterministic many-node simulation; print formation times and traffic",
        description="Run the deterministic many-node simulation over the pure state machine.",
    )
    simulate_cli.add_arguments(simulate)
    simulate.set_defaults(run=simulate_cli.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit status."""
    args = build_parser().parse_args(argv)
    status: int = args.run(args)
    return status


if __name__ == "__main__":  # pragma: no cover - exercised through python -m bootstrap
    sys.exit(main())
