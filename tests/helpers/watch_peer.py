"""Peers' watch servers on in-memory streams: what a prober is given as ``connect_websocket``.

Every :meth:`InMemoryWatchPeers.connect` makes a ``trio.testing.memory_stream_pair`` and runs real
trio-websocket handshakes over it, so the prober's watch client meets exactly what a real peer
would send, without a socket or a clock of its own. A test subclasses :class:`InMemoryWatchPeers`
and plays the peer in :meth:`~InMemoryWatchPeers.serve` (accept or reject the request, push
documents, answer ``probe``).

The rules:

* the client side's background tasks run in the nursery the prober passes to ``connect``, as
  with a real connection; the server side's run in the nursery the peers were built with, which
  the test owns and cancels when it is done, so nothing is orphaned;
* every connect is recorded in :attr:`~InMemoryWatchPeers.calls`, so a test asserts what the
  prober asked for (whom, which resource, which headers, which message bound).
"""

from __future__ import annotations

import trio
import trio.testing
import trio_websocket

from bootstrap import ContactPoint

__all__ = ["InMemoryWatchPeers", "WatchCall"]

#: One connect as the prober asked for it: (contact point, resource, extra headers, max message).
WatchCall = tuple[ContactPoint, str, list[tuple[bytes, bytes]], int]


class InMemoryWatchPeers:
    """Watch servers on in-memory streams; subclass and override :meth:`serve` to play a peer."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self.calls: list[WatchCall] = []

    async def connect(
        self,
        nursery: trio.Nursery,
        contact_point: ContactPoint,
        *,
        resource: str,
        extra_headers: list[tuple[bytes, bytes]],
        max_message_size: int,
    ) -> trio_websocket.WebSocketConnection:
        """The prober's ``connect_websocket``: a websocket client on one end of a new pair."""
        self.calls.append((contact_point, resource, extra_headers, max_message_size))
        client, server = trio.testing.memory_stream_pair()
        self._nursery.start_soon(self._serve_stream, contact_point, server)
        return await trio_websocket.wrap_client_stream(
            nursery,
            client,  # type: ignore[arg-type]  # a trio Stream, which is all it uses
            str(contact_point),
            resource,
            extra_headers=extra_headers,
            max_message_size=max_message_size,
        )

    async def _serve_stream(self, contact_point: ContactPoint, stream: trio.abc.Stream) -> None:
        request = await trio_websocket.wrap_server_stream(self._nursery, stream)
        await self.serve(contact_point, request)

    async def serve(
        self, contact_point: ContactPoint, request: trio_websocket.WebSocketRequest
    ) -> None:
        """Play the peer at ``contact_point`` for one watch ``request`` (accept or reject it)."""
        raise NotImplementedError("a test's peers say what they answer")
