"""The ``report`` callback a test gives a prober: every event, with the time it arrived.

A :class:`~bootstrap.prober.Prober` reports what peers said by calling ``report(event)``
synchronously, from its workers' tasks. :class:`Reports` queues each event with
``trio.current_time()`` (virtual under a fake clock, so a test asserts exactly when a push or a
failure came) in an unbounded channel: the prober never blocks on a test that reads late.
"""

from __future__ import annotations

import math

import trio

from bootstrap import Event

__all__ = ["Reports"]


class Reports:
    """The prober's ``report`` callback: every event with the (virtual) time it arrived."""

    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[tuple[float, Event]](math.inf)

    def __call__(self, event: Event) -> None:
        self._send.send_nowait((trio.current_time(), event))

    async def next(self) -> tuple[float, Event]:
        """The next event and when it arrived (waits for one)."""
        return await self._receive.receive()

    async def next_event(self) -> Event:
        """The next event (waits for one)."""
        return (await self.next())[1]

    def drain(self) -> list[Event]:
        """Every event queued now, without waiting."""
        events = []
        while True:
            try:
                events.append(self._receive.receive_nowait()[1])
            except trio.WouldBlock:
                return events
