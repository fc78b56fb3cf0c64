"""Client streams for a watch: the TLS handshake, and a websocket handshake that fails fast.

Rules:

* The peer is verified as the contact point's host (an IP address or a name): that is what its
  certificate must name. The stream is ``https_compatible`` (a peer may end it without a TLS
  close_notify), as HTTPS clients' streams are.
* A connection that breaks during the websocket handshake raises the error that broke it, at
  once, instead of trio-websocket's wait for an answer until the caller's timeout: over TLS 1.3
  that error is how a server refuses a client certificate, and its reason is what the operator
  needs (see :func:`wrap_websocket`).
"""

from __future__ import annotations

import ssl
from typing import cast

import trio
import trio_websocket

__all__ = ["open_tls_stream", "wrap_websocket"]


async def open_tls_stream(
    stream: trio.SocketStream, context: ssl.SSLContext, host: str
) -> trio.SSLStream[trio.SocketStream]:
    """``stream`` with the client side of a TLS handshake done, the peer verified as ``host``."""
    tls = trio.SSLStream(stream, context, server_hostname=host, https_compatible=True)
    await tls.do_handshake()
    return tls


class _EndAware(trio.abc.Stream):
    """A stream that signals when receiving from it fails or reaches the end."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        self.ended = trio.Event()
        self.failure: BaseException | None = None

    def _end(self, failure: BaseException) -> None:
        if self.failure is None:
            self.failure = failure
        self.ended.set()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        try:
            data = await self._stream.receive_some(max_bytes)
        except trio.BrokenResourceError as error:
            self._end(error)
            raise
        if not data:
            self._end(ConnectionResetError("the peer closed the connection"))
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self._stream.aclose()


async def wrap_websocket(
    nursery: trio.Nursery,
    stream: trio.SocketStream | trio.SSLStream[trio.SocketStream],
    host: str,
    resource: str,
    *,
    extra_headers: list[tuple[bytes, bytes]],
    max_message_size: int,
) -> trio_websocket.WebSocketConnection:
    """:func:`trio_websocket.wrap_client_stream`, but a connection lost mid-handshake raises.

    trio-websocket waits for the server's answer to the handshake even after the connection
    broke, until the caller's timeout, and the reason is lost. Over TLS this is how a server that
    requires a client certificate refuses one (TLS 1.3 checks it after the client's side of the
    handshake is done): the alert arrives as the handshake's answer. Here the error that ended
    the connection is raised at once instead (``trio.BrokenResourceError`` from the
    ``ssl.SSLError``, or ``ConnectionResetError`` if the peer just closed).
    """
    watched = _EndAware(stream)
    connected: list[trio_websocket.WebSocketConnection] = []  # stays empty if the race is lost
    async with trio.open_nursery() as race:

        async def stop_when_ended() -> None:
            await watched.ended.wait()
            race.cancel_scope.cancel()

        race.start_soon(stop_when_ended)
        connection = await trio_websocket.wrap_client_stream(
            nursery,
            cast("trio.SocketStream", watched),  # it only sends, receives and closes
            host,
            resource,
            extra_headers=extra_headers,
            max_message_size=max_message_size,
        )
        connected.append(connection)
        race.cancel_scope.cancel()
    if not connected:
        assert watched.failure is not None  # the only way the race ends without a connection
        raise watched.failure
    return connected[0]
