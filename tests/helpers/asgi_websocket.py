"""A websocket client that speaks ASGI messages to an app directly, through in-memory channels.

For the in-process tests of the watch endpoint and of what wraps it: no socket, no handshake
bytes, just the ASGI conversation (``websocket.connect`` in, ``websocket.accept`` or a refusal
out, then messages both ways). Both channels are unbounded, so the app never blocks on a test
that reads late; :meth:`AsgiWebsocket.pending` says how much it has sent that was not read.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping

import trio

from bootstrap.server import Message, Receive, Scope, Send

__all__ = ["AsgiWebsocket"]

#: An ASGI 3 application, typed as loosely as the server's own helpers type it.
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class AsgiWebsocket:
    """One websocket client of ``app``; run the app's side with :meth:`run_app`.

    ``headers`` are the request's (names are lower-cased, as ASGI servers pass them);
    ``client`` is the peer's address, left out of the scope when None; ``extension`` offers the
    ``websocket.http.response`` extension, with which the app may refuse with an HTTP response
    instead of a bare close.
    """

    def __init__(
        self,
        app: AsgiApp,
        *,
        path: str = "/bootstrap/watch",
        headers: Mapping[str, str] | None = None,
        client: tuple[str, int] | None = None,
        extension: bool = True,
    ) -> None:
        self.app = app
        self.scope: Scope = {
            "type": "websocket",
            "path": path,
            "root_path": "",
            "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
            "extensions": {"websocket.http.response": {}} if extension else {},
        }
        if client is not None:
            self.scope["client"] = client
        self._to_app_send, self._to_app = trio.open_memory_channel[Message](math.inf)
        self._from_app_send, self._from_app = trio.open_memory_channel[Message](math.inf)
        self.finished = trio.Event()  # the app's call returned

    async def run_app(self) -> None:
        """The app's side of this websocket, until the app returns."""
        try:
            await self.app(self.scope, self._to_app.receive, self._from_app_send.send)
        finally:
            self.finished.set()

    async def send(self, message: Message) -> None:
        """The client sends ``message`` to the app."""
        await self._to_app_send.send(message)

    async def connect(self) -> None:
        """The client opens the websocket (the app answers with its next message)."""
        await self.send({"type": "websocket.connect"})

    async def next(self) -> Message:
        """The next message the app sent (waits for one)."""
        return await self._from_app.receive()

    def pending(self) -> int:
        """How many messages the app sent that the client has not read."""
        return self._from_app.statistics().current_buffer_used
