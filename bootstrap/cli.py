"""The command line: ``cluster-bootstrap`` and ``python -m bootstrap`` are the same program.

Each subcommand lives in ``bootstrap/commands`` (or with the code it drives) and contributes
``add_arguments(parser)`` and ``run(args) -> int``; this module only assembles them. Argument
errors exit 2 (argparse's convention) with a message that names the flag.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._version import __version__
from .commands import demo, doctor, node, status
from .commands.options import apply_environment
from .sim import cli as simulate

__all__ = ["build_parser", "main"]

_COMMANDS = {
    "node": (node, "run one bootstrap node until SIGINT/SIGTERM"),
    "demo": (demo, "run N nodes on 127.0.0.x in one process and watch them form a cluster"),
    "status": (status, "pretty-print a node's /bootstrap/status"),
    "doctor": (doctor, "read the nodes' statuses and say why the cluster has not formed"),
    "simulate": (simulate, "run the deterministic many-node simulation"),
}


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(
        prog="cluster-bootstrap",
        description="Let the replicas of a service find each other and form exactly one cluster.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    subparsers = {}
    for name, (module, summary) in _COMMANDS.items():
        subparser = commands.add_parser(name, help=summary, description=summary)
        module.add_arguments(subparser)
        subparser.set_defaults(run=module.run)
        subparsers[name] = subparser
    return parser, subparsers


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, subparsers = build_parser()
    if argv and argv[0] == "node":
        # Every node flag may come from BOOTSTRAP_<FLAG>; flags on the command line win.
        argv = ["node", *apply_environment(subparsers["node"], argv[1:])]
    args = parser.parse_args(argv)
    exit_status: int = args.run(args)
    return exit_status


if __name__ == "__main__":  # pragma: no cover - exercised through python -m bootstrap
    sys.exit(main())
