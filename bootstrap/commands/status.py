"""``cluster-bootstrap status URL``: pretty-print a node's ``/bootstrap/status``."""

from __future__ import annotations

import argparse
import json
import sys

import httpx

from .security import add_security_arguments, status_client_options

__all__ = ["add_arguments", "format_status", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", help="a node's base URL, e.g. http://127.0.0.1:8558")
    parser.add_argument("--json", action="store_true", help="print the raw JSON")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds (default: 5)")
    add_security_arguments(parser, node=False)
    parser.set_defaults(parser=parser)


def format_status(body: dict[str, object]) -> str:
    """A human-readable rendering of a status document."""
    decision = body.get("decision")
    lines = [
        f"node        {body.get('selfNode')} at {body.get('selfContactPoint')}",
        f"phase       {body.get('phase')}   joined: {body.get('joined')}",
        f"decision    {json.dumps(decision)}",
        f"reason      {body.get('reason')}",
        "",
        f"{'contact point':<28} {'fresh':<6} {'last seen':>9} {'fails':>5}  seed nodes",
    ]
    points = body.get("contactPoints")
    for point in points if isinstance(points, list) else []:
        if not isinstance(point, dict):
            continue
        ago = point.get("lastObservedAgo")
        seen = "never" if ago is None else f"{ago:.1f} s"
        seeds = ", ".join(point.get("seedNodes") or []) or "-"
        # A node that cannot form probes only a few of the lowest (DESIGN section 9); say so,
        # or "fresh: no" would read as a peer that stopped answering. (Absent: an older node.)
        fresh = "-" if point.get("probed") is False else "yes" if point.get("fresh") else "no"
        if point.get("probed") is False:
            seeds = "(not probed by this node)"
        lines.append(
            f"{point.get('contactPoint')!s:<28} {fresh:<6} "
            f"{seen:>9} {point.get('consecutiveFailures')!s:>5}  {seeds}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    headers, tls = status_client_options(args.parser, args)
    url = args.url.rstrip("/")
    if not url.endswith("/bootstrap/status"):
        url += "/bootstrap/status"
    if "://" not in url:
        url = ("http://" if tls is None else "https://") + url
    try:
        response = httpx.get(
            url, timeout=args.timeout, headers=headers, verify=True if tls is None else tls
        )
        if response.status_code == 401:
            hint = (
                "the node refused the secret of --secret-file"
                if headers
                else "the node requires the cluster's secret: pass --secret-file"
            )
            print(f"cluster-bootstrap status: {url}: HTTP 401: {hint}", file=sys.stderr)
            return 1
        response.raise_for_status()
        body = response.json()
    except (httpx.HTTPError, ValueError) as error:
        print(f"cluster-bootstrap status: {url}: {error}", file=sys.stderr)
        return 1
    if not isinstance(body, dict):
        print(f"cluster-bootstrap status: {url}: not a status document", file=sys.stderr)
        return 1
    print(json.dumps(body, indent=2) if args.json else format_status(body))
    return 0
