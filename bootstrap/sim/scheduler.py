"""The virtual clock: a heap of ``(time, sequence, callback, args)``.

The sequence number breaks ties in scheduling order, so two events at the same instant always
run in the same order and a run is reproducible. Nothing is ever removed from the heap:
callers make stale entries harmless by checking, when they run, that the state they were
scheduled for still holds (the same lazy deletion the machine uses for its own timers).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any

__all__ = ["Scheduler"]


class Scheduler:
    """Runs callbacks in virtual-time order; ``now`` is the time of the event being run."""

    __slots__ = ("_queue", "_sequence", "events_processed", "finished", "now")

    def __init__(self) -> None:
        self.now = 0.0
        self.events_processed = 0
        # Set by a callback to end the run after the current event.
        self.finished = False
        self._queue: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._sequence = itertools.count()

    def at(self, when: float, callback: Callable[..., None], *args: Any) -> None:
        """Run ``callback(*args)`` at virtual time ``when`` (never earlier than now)."""
        if not when >= self.now:  # also catches NaN: a bug in the caller, not in a machine
            raise ValueError(f"cannot schedule at {when!r}, before now ({self.now!r})")
        heapq.heappush(self._queue, (when, next(self._sequence), callback, args))

    def pending(self) -> int:
        """Entries in the queue, stale ones included."""
        return len(self._queue)

    def run(self, *, until: float, max_events: int = 2**62) -> str:
        """Run events up to and including ``until``; return why the run ended.

        ``"finished"`` (a callback set :attr:`finished`), ``"idle"`` (nothing left to run),
        ``"max-time"`` or ``"max-events"``.
        """
        queue = self._queue
        pop = heapq.heappop
        processed = self.events_processed
        limit = processed + max_events
        try:
            while queue:
                if queue[0][0] > until:
                    self.now = until
                    return "max-time"
                if processed >= limit:
                    return "max-events"
                when, _, callback, args = pop(queue)
                self.now = when
                callback(*args)
                processed += 1
                if self.finished:
                    return "finished"
            return "idle"
        finally:
            self.events_processed = processed
