"""``cluster-bootstrap doctor URL...``: read the nodes' statuses and say why no cluster formed.

The I/O lives here: reading ``/bootstrap/status`` from the nodes given, then (unless
``--no-follow``) from every contact point their statuses list, at most ``--max-nodes`` in all,
several at a time. The reasoning lives in :mod:`bootstrap.diagnosis`. Exit status: 0 when every
node read has joined one cluster and nothing is wrong, 1 otherwise.
"""

from __future__ import annotations

import argparse
import functools
import socket
import ssl

import attrs
import httpx
import trio

from ..diagnosis import Reading, Report, diagnose, listed_contact_points
from .security import add_security_arguments, status_client_options
from .status import read_status, split_url

__all__ = ["add_arguments", "format_report", "run"]

#: Statuses read at once: enough to read a large cluster's in a few round trips, few enough not
#: to look like a flood to the nodes' connection limits.
_CONCURRENT_READS = 8


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "urls", nargs="+", metavar="URL", help="nodes' base URLs, e.g. http://127.0.0.1:8558"
    )
    parser.add_argument(
        "--no-follow",
        action="store_true",
        help="read only the nodes given, not every contact point their statuses list",
    )
    parser.add_argument(
        "--max-nodes",
        type=int,
        default=64,
        metavar="N",
        help="read at most this many statuses (default 64)",
    )
    parser.add_argument(
        "--timeout", type=float, default=5.0, metavar="S", help="seconds per read (default 5)"
    )
    add_security_arguments(parser, node=False)
    parser.set_defaults(parser=parser)


def run(args: argparse.Namespace) -> int:
    if args.max_nodes < 1:
        args.parser.error("argument --max-nodes: must be at least 1")
    headers, tls = status_client_options(args.parser, args)
    starts = [split_url(url, tls) for url in args.urls]
    readings = trio.run(
        _read_all,
        starts,
        headers,
        tls,
        args.timeout,
        not args.no_follow,
        args.max_nodes,
    )
    report = diagnose(readings, resolve=_resolve)
    print(format_report(report))
    return 0 if report.formed else 1


async def _read_all(
    starts: list[tuple[str, str]],
    headers: dict[str, str],
    tls: ssl.SSLContext | None,
    read_timeout: float,
    follow: bool,
    max_nodes: int,
) -> list[Reading]:
    readings: dict[str, Reading] = {}
    limiter = trio.CapacityLimiter(_CONCURRENT_READS)
    async with httpx.AsyncClient(
        headers=headers, timeout=read_timeout, verify=True if tls is None else tls
    ) as client:

        async def read(contact_point: str, scheme: str, *, given: bool) -> None:
            # A contact point its status lists is read with the scheme this node was read with.
            async with limiter:
                reading = await read_status(client, contact_point, scheme)
            readings[contact_point] = attrs.evolve(reading, given=given)
            if follow and reading.status is not None:
                for point in listed_contact_points(reading.status):
                    if point not in readings and len(readings) < max_nodes:
                        readings[point] = Reading(point)  # claimed: read once
                        nursery.start_soon(functools.partial(read, point, scheme, given=False))

        async with trio.open_nursery() as nursery:
            for contact_point, start_scheme in starts[:max_nodes]:
                if contact_point not in readings:
                    readings[contact_point] = Reading(contact_point)
                    nursery.start_soon(
                        functools.partial(read, contact_point, start_scheme, given=True)
                    )
    return sorted(readings.values(), key=lambda reading: reading.contact_point)


def _resolve(host: str) -> frozenset[str]:
    """The addresses ``host`` resolves to here (empty if it does not)."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return frozenset()
    return frozenset(str(info[4][0]) for info in infos)


def format_report(report: Report) -> str:
    """The doctor's output: one line per node read, then each finding with what to change."""
    lines = [
        f"read {sum(r.status is not None for r in report.readings)} of {len(report.readings)} nodes"
    ]
    for reading in report.readings:
        status = reading.status
        if status is None:
            lines.append(f"  {reading.contact_point:<28} unreadable ({reading.error_kind})")
            continue
        phase = status.get("phase")
        joined = " joined" if status.get("joined") is True else ""
        waiting = status.get("waitingOn")
        tail = f" (waiting on {waiting})" if isinstance(waiting, str) and waiting else ""
        lines.append(f"  {reading.contact_point:<28} {phase}{joined}{tail}")
    lines.append("")
    if report.formed:
        seeds = ", ".join(sorted(report.clusters[0]))
        lines.append(f"FORMED: one cluster, seed nodes {seeds}")
    else:
        count = len(report.problems)
        lines.append(f"NOT FORMED: {count} finding{'s' if count != 1 else ''}")
    for number, finding in enumerate(report.problems, 1):
        lines.append("")
        lines.append(f"{number}. {finding.title}")
        lines.extend(f"   {detail}" for detail in finding.details)
        lines.append(f"   what to change: {finding.advice}")
    for finding in report.notes:
        lines.append("")
        lines.append(f"note: {finding.title}")
        lines.extend(f"   {detail}" for detail in finding.details)
        lines.append(f"   {finding.advice}")
    return "\n".join(lines)
