"""End to end: a peer that answers garbage, and connection churn while formation stalls.

Policy: real sockets on 127.0.0.x, absolute ``trio.fail_after`` on every test. The churn test
counts connections from the kernel's own table (``/proc/net/tcp``, where a closed connection
lingers 60 s in TIME_WAIT, so sampling every second sees every connection ever opened), not
just from our statistics.
"""

from __future__ import annotations

import functools
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from bootstrap import ContactPoint, Settings
from bootstrap.discovery import StaticDiscovery
from bootstrap.node import open_node
from tests.helpers.ports import free_port
from tests.helpers.running import run

from .loopback import loopback_points, outgoing_connections


def garbage_app(body: bytes, content_type: bytes = b"application/json") -> Any:
    """An ASGI app answering every GET with ``body`` and refusing websockets (like Akka)."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": message["type"] + ".complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", content_type)],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"{not json", "protocol error"),
        (b'{"selfNode": 7, "seedNodes": []}', "selfNode"),
        (b'{"selfNode": "x", "seedNodes": [{"nodes": "y"}]}', "seedNodes[0].node"),
        (b"[" * 100_000, "protocol error"),
        (b'{"selfNode": "' + b"x" * 100_000 + b'", "seedNodes": []}', "65536"),
    ],
    ids=["malformed", "wrong-type", "wrong-shape", "deep-nesting", "oversized"],
)
def test_garbage_answers_become_probe_failures_and_the_node_keeps_running(
    body: bytes, expected: str
) -> None:
    """A peer serving malformed or oversized documents shows up as a failure with a reason."""

    async def main() -> None:
        port = free_port()
        me, fake = ContactPoint("127.0.0.61", port), ContactPoint("127.0.0.62", port)
        config = Config()
        config.bind = [str(fake)]
        config.accesslog = None
        settings = Settings(required_contact_points=1, stable_margin=0.5, probe_interval=0.2)
        async with trio.open_nursery() as nursery:
            await nursery.start(functools.partial(serve, garbage_app(body), config))
            async with open_node(
                contact_point=me, discovery=StaticDiscovery([me, fake]), settings=settings
            ) as node:
                # Past the stable margin and a few failed probes: "contact with all" speaks.
                await trio.sleep(1.5)
                assert any(p.consecutive_failures >= 2 for p in node.status.contact_points)
                assert node.decision is None
                reason = node.status.reason
                assert f"no fresh answer from {fake} (never answered; last failure:" in reason
                assert expected in reason
                async with httpx.AsyncClient() as client:
                    assert (await client.get(f"http://{me}/alive")).status_code == 200
            nursery.cancel_scope.cancel()

    run(main, seconds=30.0)


CHURN_SECONDS = 30.0


def test_stalled_formation_opens_at_most_one_connection_per_peer() -> None:
    """30 s stalled (3 of 5 up, 5 required): each node opens one connection per live peer.

    Runs a watch group and a poll group side by side; the kernel's view and the prober's own
    count must agree. (The anchor opened one per probe: ~2 x 30 here, times 5 peers.)
    """

    async def main() -> None:
        port = free_port()
        groups = {
            "watch": loopback_points(5, port, first=71),
            "poll": loopback_points(5, port, first=81),
        }
        settings = Settings(required_contact_points=5, probe_interval=1.0)
        seen: dict[str, set[tuple[int, str, int]]] = {}
        async with AsyncExitStack() as stack:
            nodes = []
            for transport, points in groups.items():
                for point in points[:3]:  # the last two never start
                    nodes.append(
                        await stack.enter_async_context(
                            open_node(
                                contact_point=point,
                                discovery=StaticDiscovery(points),
                                settings=settings,
                                transport=transport,  # type: ignore[arg-type]
                            )
                        )
                    )
            end = trio.current_time() + CHURN_SECONDS
            while trio.current_time() < end:
                for node in nodes:
                    host = node.contact_point.host
                    seen.setdefault(host, set()).update(outgoing_connections(host, port))
                await trio.sleep(1.0)
            for node in nodes:
                assert node.decision is None  # formation really stalled
                live_peers = {
                    p.host
                    for p in groups["watch" if node.contact_point in groups["watch"] else "poll"][
                        :3
                    ]
                } - {node.contact_point.host}
                to_live = {c for c in seen[node.contact_point.host] if c[1] in live_peers}
                assert len(to_live) == len(live_peers) == 2, (node.contact_point, to_live)
                assert node.statistics().prober.connections_opened == 2

    run(main, seconds=CHURN_SECONDS + 30.0)
