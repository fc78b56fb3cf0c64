"""The prober's public types: what it can be given, what it counts, and the error it raises.

Everything here is re-exported from :mod:`bootstrap.prober`. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from types import MappingProxyType
from typing import Literal, Protocol

import attrs
import trio

from ..core import ContactPoint, UsageError

__all__ = [
    "ConnectWebsocket",
    "ConnectionChurnError",
    "Counters",
    "FailureKind",
    "ProberStatistics",
    "Transport",
    "WatchConnection",
]

#: How the prober reaches peers: a watch per peer (websocket, falling back to polling for a peer
#: that speaks no websocket), or polling only.
Transport = Literal["watch", "poll"]

#: What a probe failed of, for the statistics and for rate-limiting the log.
FailureKind = Literal[
    "refused",  # nothing listens at the contact point (yet)
    "reset",  # the peer reset or broke the connection
    "timeout",  # no answer within probe_timeout (the wait for a probe slot included)
    "dns",  # the contact point's host name does not resolve
    "connect",  # any other failure to connect (unreachable, bad local address, ...)
    "network",  # any other transport error after connecting
    "http_status",  # the peer answered, but not 200 (a redirect included: never followed)
    "protocol",  # the document (or the HTTP / websocket exchange) broke the protocol
    "service_name",  # the peer serves another service (a recycled address)
    "watch_closed",  # the watch ended
    "unauthorized",  # the peer refused our secret, or requires one we lack (HTTP 401)
    "tls",  # the TLS handshake failed: certificate not trusted, client certificate refused, ...
    "flood",  # the peer sent more over its watch than any server would; it is polled for a while
]


class ConnectionChurnError(UsageError):
    """The keep-alive settings would make the prober open a new connection for every probe."""


class WatchConnection(Protocol):
    """The part of :class:`trio_websocket.WebSocketConnection` the prober uses."""

    async def get_message(self) -> str | bytes:
        """The next message; raises :class:`trio_websocket.ConnectionClosed` once closed."""

    async def send_message(self, message: str | bytes) -> None:
        """Send one message; raises :class:`trio_websocket.ConnectionClosed` if closed."""

    async def aclose(self) -> None:
        """Close the watch (idempotent)."""


class ConnectWebsocket(Protocol):
    """Opens a watch: connect to ``contact_point`` and complete the websocket handshake.

    Background tasks (the websocket's reader) run in ``nursery``, which the prober owns. A
    rejected handshake surfaces as :class:`trio_websocket.ConnectionRejected` from that nursery
    (that is how trio-websocket reports it); the prober then polls the peer instead.
    """

    def __call__(
        self,
        nursery: trio.Nursery,
        contact_point: ContactPoint,
        *,
        resource: str,
        extra_headers: list[tuple[bytes, bytes]],
        max_message_size: int,
    ) -> Awaitable[WatchConnection]: ...


@attrs.frozen(kw_only=True)
class ProberStatistics:
    """Counters of one prober (DESIGN invariant 6: connections opened stay <= peers + reconnects).

    Connections are counted at our side, each new TCP connection once, keyed by the contact point
    connected to (with its port). ``probes_sent`` counts GET requests, watch handshakes and
    ``probe`` messages. ``failures_by_kind`` is keyed by :data:`FailureKind`.
    """

    connections_opened: int
    connections_opened_by_peer: Mapping[ContactPoint, int] = attrs.field(hash=False)
    probes_sent: int
    watch_messages_received: int
    failures_by_kind: Mapping[str, int] = attrs.field(hash=False)
    peers: int
    open_watches: int
    #: TCP connects cancelled before they returned (a probe cut short by a decision or a change
    #: of the probe set). Not in ``connections_opened``, though the kernel may have completed
    #: some of them: the kernel's count of this node's connections lies between the two sums.
    connects_cancelled: int = 0


@attrs.define
class Counters:
    """The running counts behind :class:`ProberStatistics`, updated by the transports and the
    worker as things happen; :meth:`snapshot` freezes them."""

    connections_opened: int = 0
    connections_by_peer: dict[ContactPoint, int] = attrs.Factory(dict)
    probes_sent: int = 0
    watch_messages: int = 0
    open_watches: int = 0
    failures: dict[str, int] = attrs.Factory(dict)
    connects_cancelled: int = 0

    def connection_opened(self, address: ContactPoint) -> None:
        self.connections_opened += 1
        self.connections_by_peer[address] = self.connections_by_peer.get(address, 0) + 1

    def failed(self, kind: FailureKind) -> None:
        self.failures[kind] = self.failures.get(kind, 0) + 1

    def snapshot(self, *, peers: int) -> ProberStatistics:
        return ProberStatistics(
            connections_opened=self.connections_opened,
            connections_opened_by_peer=MappingProxyType(dict(self.connections_by_peer)),
            probes_sent=self.probes_sent,
            watch_messages_received=self.watch_messages,
            failures_by_kind=MappingProxyType(dict(self.failures)),
            peers=peers,
            open_watches=self.open_watches,
            connects_cancelled=self.connects_cancelled,
        )
