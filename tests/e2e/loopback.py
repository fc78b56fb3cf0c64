"""Helpers for end-to-end tests on loopback: contact points, mutable discovery, kernel socket
views. (A free port is :func:`tests.helpers.ports.free_port`.)"""

from __future__ import annotations

from collections.abc import Iterable

from benchmarks.procfs import tcp_sockets
from bootstrap import ContactPoint
from bootstrap.discovery import DiscoveryError


def loopback_points(count: int, port: int, first: int = 1) -> list[ContactPoint]:
    """``count`` contact points 127.0.0.<first>.. on ``port``."""
    return [ContactPoint(f"127.0.0.{i}", port) for i in range(first, first + count)]


class MutableDiscovery:
    """Discovery whose answer a test changes while the nodes run (or makes fail)."""

    def __init__(self, contact_points: Iterable[ContactPoint]) -> None:
        self.contact_points = list(contact_points)
        self.failure: str | None = None
        self.lookups = 0

    async def lookup(self) -> list[ContactPoint]:
        self.lookups += 1
        if self.failure is not None:
            raise DiscoveryError(self.failure)
        return list(self.contact_points)


def kernel_tcp_sockets() -> list[tuple[tuple[str, int], tuple[str, int], str]]:
    """Every IPv4 TCP socket the kernel knows in this namespace: (local, remote, state).

    IPv4 peers of dual-stack IPv6 sockets count as IPv4 (procfs prints them as a.b.c.d).
    """
    return [
        (sock.local, sock.remote, sock.state) for sock in tcp_sockets() if ":" not in sock.local[0]
    ]


def outgoing_connections(host: str, peer_port: int) -> set[tuple[int, str, int]]:
    """Connections ``host`` opened to management ports: (local port, remote host, remote port).

    A connection's 4-tuple stays visible in TIME_WAIT for 60 s after it closes, so sampling
    this every second over a shorter window sees every connection ever opened in it.
    """
    return {
        (local[1], remote[0], remote[1])
        for local, remote, state in kernel_tcp_sockets()
        if local[0] == host
        and remote[1] == peer_port
        and local[1] != peer_port
        and state in ("ESTABLISHED", "TIME_WAIT", "SYN_SENT", "CLOSE_WAIT")
    }
