"""``cluster-bootstrap demo``: N real nodes on 127.0.0.1..N in one process, forming one cluster.

Every node is a full node (management server, prober, discovery, machine) on its own loopback
address, talking over real TCP. The demo shows live progress, then a table of who formed and
who joined, when, and how many connections each node opened; it exits 0 once every node has
joined the one cluster, 1 if that did not happen within ``--timeout``.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import AsyncExitStack

import trio

from ..core import ContactPoint, JoinSelf, Settings, UsageError
from ..discovery import StaticDiscovery
from ..logs import configure_logging
from ..node import Node, open_node

__all__ = ["add_arguments", "run"]

MAX_DEMO_NODES = 250  # 127.0.0.1 .. 127.0.0.250

# The settings the demo's own flags set; every other setting keeps its default.
_FLAGS = {
    "required_contact_points": "--nodes",
    "stable_margin": "--stable-margin",
    "probe_interval": "--probe-interval",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nodes", type=int, default=5, help="how many nodes (default: 5)")
    parser.add_argument("--port", type=int, default=8558, help="management port (default: 8558)")
    parser.add_argument(
        "--stable-margin", type=float, default=2.0, help="seconds (default: 2.0 for the demo)"
    )
    parser.add_argument("--probe-interval", type=float, default=1.0, help="seconds")
    parser.add_argument("--transport", choices=["watch", "poll"], default="watch")
    parser.add_argument("--timeout", type=float, default=60.0, help="give up after (s)")
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING"], default="WARNING")
    parser.set_defaults(parser=parser)


def _in_flag_terms(error: UsageError) -> str:
    """The message of a refused setting, led by the demo flags it is about.

    As ``node`` does (``commands/options.py``), a value that clashes with a default is refused,
    never made to fit by changing a setting the user cannot see: ``--probe-interval 20`` exits 2
    because ``probe_backoff_max`` (15 s, a flag the demo does not have) must be at least it.
    """
    flags = [_FLAGS[name] for name in error.fields if name in _FLAGS]
    if not flags:
        return str(error)
    message = f"argument {' and '.join(flags)}: {error}"
    defaults = [name for name in error.fields if name not in _FLAGS]
    if defaults:
        message += f"; the demo keeps {' and '.join(defaults)} at the default"
    return message


def _describe(node: Node, started: float) -> str:
    status = node.status
    stats = node.statistics()
    joined = "joined" if node.joined else status.phase.value
    when = "" if stats.joined_at is None else f" at {stats.joined_at - started:5.2f} s"
    return f"  {node.contact_point!s:<18} {joined + when:<22} {status.reason}"


def run(args: argparse.Namespace) -> int:
    parser: argparse.ArgumentParser = args.parser
    if not 1 <= args.nodes <= MAX_DEMO_NODES:
        parser.error(f"argument --nodes: must be in 1..{MAX_DEMO_NODES}, got {args.nodes}")
    try:
        settings = Settings(
            required_contact_points=args.nodes,
            stable_margin=args.stable_margin,
            probe_interval=args.probe_interval,
        )
        points = [ContactPoint(f"127.0.0.{i}", args.port) for i in range(1, args.nodes + 1)]
    except UsageError as error:
        parser.error(_in_flag_terms(error))
    configure_logging(level=args.log_level)
    return trio.run(_demo, settings, points, args.transport, args.timeout)


async def _demo(
    settings: Settings, points: list[ContactPoint], transport: str, give_up_after: float
) -> int:
    live = sys.stdout.isatty()
    started = trio.current_time()
    print(f"starting {len(points)} nodes on {points[0]} .. {points[-1]} ({transport})")
    async with AsyncExitStack() as stack:
        nodes = [
            await stack.enter_async_context(
                open_node(
                    settings=settings,
                    contact_point=point,
                    discovery=StaticDiscovery(points),
                    transport="watch" if transport == "watch" else "poll",
                )
            )
            for point in points
        ]
        last_frame: list[str] = []
        last_states: list[tuple[str, str, bool]] = []
        with trio.move_on_after(give_up_after):
            while not all(node.joined for node in nodes):
                frame = [_describe(node, started) for node in nodes]
                # Without a terminal to redraw, print only when some node changes state (the
                # reasons carry live ages that change every frame).
                states = [(n.status.phase.value, n.status.waiting_on, n.joined) for n in nodes]
                if live:
                    if last_frame:
                        print(f"\x1b[{len(last_frame)}F", end="")
                    print("\n".join(line + "\x1b[K" for line in frame))
                elif states != last_states:
                    print(f"t={trio.current_time() - started:6.2f} s")
                    print("\n".join(frame))
                last_frame, last_states = frame, states
                await trio.sleep(0.25)
        return _summary(nodes, started)


def _summary(nodes: list[Node], started: float) -> int:
    formed = [node for node in nodes if isinstance(node.decision, JoinSelf)]
    print()
    print(f"{'node':<20} {'decision':<16} {'decided':>8} {'joined':>8} {'connections':>11}")
    for node in nodes:
        stats = node.statistics()
        decision = {None: "-", "JoinSelf": "formed"}.get(
            None if node.decision is None else type(node.decision).__name__, "joined seeds"
        )
        decided = "-" if stats.decided_at is None else f"{stats.decided_at - started:.2f} s"
        joined = "-" if stats.joined_at is None else f"{stats.joined_at - started:.2f} s"
        print(
            f"{node.contact_point!s:<20} {decision:<16} {decided:>8} {joined:>8} "
            f"{stats.prober.connections_opened:>11}"
        )
    everyone = all(node.joined for node in nodes)
    if len(formed) == 1 and everyone:
        last = max(node.statistics().joined_at or 0.0 for node in nodes) - started
        print(
            f"\none cluster formed by {formed[0].contact_point}; all {len(nodes)} nodes "
            f"joined within {last:.2f} s"
        )
        return 0
    print(
        f"\nnot formed: {len(formed)} node(s) formed a cluster, "
        f"{sum(n.joined for n in nodes)} of {len(nodes)} joined",
        file=sys.stderr,
    )
    return 1
