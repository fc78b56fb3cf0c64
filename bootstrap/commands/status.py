"""``cluster-bootstrap status URL``: pretty-print a node's ``/bootstrap/status``.

:func:`read_status` is also how ``doctor`` reads every node it looks at.
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
from collections.abc import Mapping

import httpx
import trio

from ..core.wire import STATUS_PATH
from ..diagnosis import Reading
from ..error_chain import causes
from ..prober import tls_failure_reason
from .security import add_security_arguments, status_client_options

__all__ = ["add_arguments", "format_status", "read_status", "run", "split_url"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", help="a node's base URL, e.g. http://127.0.0.1:8558")
    parser.add_argument("--json", action="store_true", help="print the raw JSON")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds (default: 5)")
    add_security_arguments(parser, node=False)
    parser.set_defaults(parser=parser)


def format_status(body: Mapping[str, object]) -> str:
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


def split_url(url: str, tls: ssl.SSLContext | None) -> tuple[str, str]:
    """A node's URL (its base URL or its status URL) as its contact point and scheme;
    ``http`` without a scheme (``https`` when a ``--tls-*`` flag is given)."""
    if "://" not in url:
        url = ("http://" if tls is None else "https://") + url
    scheme, _, rest = url.partition("://")
    return rest.split("/", 1)[0], scheme


async def read_status(client: httpx.AsyncClient, contact_point: str, scheme: str) -> Reading:
    """``contact_point``'s status document, or why there is none (a 401, a TLS failure, ...)."""
    url = f"{scheme}://{contact_point}{STATUS_PATH}"
    try:
        response = await client.get(url)
    except httpx.HTTPError as error:
        tls_reason = tls_failure_reason(causes(error))
        if tls_reason is not None:
            return Reading(contact_point, error_kind="tls", error=f"{url}: {tls_reason}")
        return Reading(contact_point, error_kind="unreachable", error=f"{url}: {error!r}")
    if response.status_code == 401:
        hint = (
            "it refused the secret of --secret-file"
            if "Authorization" in client.headers
            else "it requires the cluster's secret"
        )
        return Reading(contact_point, error_kind="unauthorized", error=f"{url}: HTTP 401: {hint}")
    try:
        response.raise_for_status()
        body = response.json()
    except (httpx.HTTPError, ValueError) as error:
        return Reading(contact_point, error_kind="invalid", error=f"{url}: {error}")
    if not isinstance(body, dict):
        return Reading(contact_point, error_kind="invalid", error=f"{url}: not a status document")
    return Reading(contact_point, status=body)


def run(args: argparse.Namespace) -> int:
    headers, tls = status_client_options(args.parser, args)
    contact_point, scheme = split_url(args.url, tls)

    async def read() -> Reading:
        verify: ssl.SSLContext | bool = True if tls is None else tls
        async with httpx.AsyncClient(
            headers=headers, timeout=args.timeout, verify=verify
        ) as client:
            return await read_status(client, contact_point, scheme)

    reading = trio.run(read)
    if reading.status is None:
        message = reading.error
        if reading.error_kind == "unauthorized":
            hint = (
                "the node refused the secret of --secret-file"
                if headers
                else "the node requires the cluster's secret: pass --secret-file"
            )
            message = f"{scheme}://{contact_point}{STATUS_PATH}: HTTP 401: {hint}"
        print(f"cluster-bootstrap status: {message}", file=sys.stderr)
        return 1
    print(json.dumps(reading.status, indent=2) if args.json else format_status(reading.status))
    return 0
