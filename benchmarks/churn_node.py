"""One node of the churn benchmark in its own process: ours (watch or poll) or the anchor.

``benchmarks/churn.py`` starts one of these per node (inside the node's network namespace) with
``python -m benchmarks.churn_node`` from the repository root. The process prints JSON lines on
stdout, which the orchestrator reads:

* ``{"event": "listening", "wall": ...}`` once the management server listens (the node's start);
* ``{"event": "sample", "wall": ..., ...counters...}`` every ``--report-every`` seconds, at once
  when the node decides and joins, and once more when it stops.

Times are wall-clock (``time.time()``) so the orchestrator can compare nodes; the node itself
runs on trio's clock as always, converted once here.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

import trio

from benchmarks.anchor import AnchorNode, anchor_settings
from benchmarks.contact_points_file import ContactPointsFileDiscovery
from bootstrap.core import ContactPoint, JoinSelf, Settings
from bootstrap.core.settings import Formation
from bootstrap.discovery import Discovery, StaticDiscovery
from bootstrap.membership import LocalMembership
from bootstrap.node import Node
from bootstrap.prober import Transport

#: What this process can run. ``pekko`` (a real Pekko node, see ``benchmarks/pekko``) is one of
#: the benchmark's strategies too, but it runs in a JVM, not here.
#: ``ours-mesh`` is ``ours-watch`` with the first release's full mesh (``probe_fanout=None``):
#: every node probes every contact point, for comparison with the topology of DESIGN section 9.
STRATEGIES = ("ours-watch", "ours-poll", "ours-mesh", "anchor", "anchor-dotnet")


def build_node(args: argparse.Namespace) -> Node | AnchorNode:
    """The node for ``args.strategy``, with the settings every strategy shares."""
    me = ContactPoint(args.address, args.port)
    discovery: Discovery = (
        ContactPointsFileDiscovery(args.peers_file)
        if args.peers_file is not None
        else StaticDiscovery(ContactPoint.parse(peer) for peer in args.peers.split(","))
    )
    common: dict[str, Any] = {
        "required_contact_points": args.required,
        "stable_margin": args.stable_margin,
    }
    self_node = f"http://{me}"
    if args.strategy.startswith("anchor"):
        rule = "dotnet" if args.strategy == "anchor-dotnet" else "jvm"
        return AnchorNode(
            settings=anchor_settings(
                probe_interval=args.probe_interval, freshness_rule=rule, **common
            ),
            probe_interval=args.probe_interval,
            contact_point=me,
            self_node=self_node,
            discovery=discovery,
            membership=LocalMembership(self_node),
        )
    formation: Formation = args.formation
    settings = Settings(
        formation=formation,
        probe_interval=args.probe_interval,
        # The default cap (15 s) is below a 30 s interval; it must never be.
        probe_backoff_max=max(15.0, args.probe_interval),
        probe_fanout=None if args.strategy == "ours-mesh" else Settings().probe_fanout,
        **common,
    )
    transport: Transport = "poll" if args.strategy == "ours-poll" else "watch"
    return Node(
        settings=settings,
        contact_point=me,
        self_node=self_node,
        discovery=discovery,
        membership=LocalMembership(self_node),
        service_name=None,
        transport=transport,
        rng=None,
    )


def sample(node: Node | AnchorNode, wall_offset: float) -> dict[str, object]:
    """The node's counters now; trio times converted to wall-clock times."""
    statistics = node.statistics()
    server = node.app.statistics()
    decision = node.decision

    def wall(trio_time: float | None) -> float | None:
        return None if trio_time is None else trio_time + wall_offset

    return {
        "event": "sample",
        "wall": time.time(),
        "decided_at": wall(statistics.decided_at),
        "joined_at": wall(statistics.joined_at),
        "decision": None
        if decision is None
        else ("join-self" if isinstance(decision, JoinSelf) else "join-seed-nodes"),
        "connections_opened": statistics.prober.connections_opened,
        "connections_opened_by_peer": {
            str(peer): count for peer, count in statistics.prober.connections_opened_by_peer.items()
        },
        "probes_sent": statistics.prober.probes_sent,
        "watch_messages_received": statistics.prober.watch_messages_received,
        "requests_served": server.requests_served,
        "documents_pushed": server.documents_pushed,
    }


def emit(record: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


async def run(args: argparse.Namespace) -> None:
    node = build_node(args)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            wall_offset = time.time() - trio.current_time()
            emit({"event": "listening", "wall": time.time()})

            async def report_milestones() -> None:
                await node.wait_decided()
                emit(sample(node, wall_offset))
                await node.wait_joined()
                emit(sample(node, wall_offset))

            async def report_periodically() -> None:
                while True:
                    await trio.sleep(args.report_every)
                    emit(sample(node, wall_offset))

            nursery.start_soon(report_milestones)
            nursery.start_soon(report_periodically)
            async for _ in signals:
                emit(sample(node, wall_offset))
                nursery.cancel_scope.cancel()
                break


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", choices=STRATEGIES, required=True)
    parser.add_argument("--address", required=True, help="this node's IP")
    parser.add_argument("--port", type=int, required=True, help="every node's management port")
    peers = parser.add_mutually_exclusive_group(required=True)
    peers.add_argument("--peers", help="every node's host:port, comma-separated")
    peers.add_argument(
        "--peers-file", type=Path, help="a contact-points file, re-read at every lookup"
    )
    parser.add_argument("--required", type=int, required=True)
    parser.add_argument("--probe-interval", type=float, required=True)
    parser.add_argument("--stable-margin", type=float, default=5.0)
    parser.add_argument(
        "--formation",
        choices=("promise", "lowest-address"),
        default="promise",
        help="ours only: the founding round (default) or the anchor's rule",
    )
    parser.add_argument("--report-every", type=float, default=1.0)
    args = parser.parse_args(argv)
    # Warnings and errors only, on stderr (the orchestrator keeps them in a log file per node).
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    trio.run(run, args)


if __name__ == "__main__":
    main()
