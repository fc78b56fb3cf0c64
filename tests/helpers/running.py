"""Running one async test under trio with an absolute deadline.

The rules (STYLE.md, as trio-websocket's testing policy):

* every test that runs trio runs through :func:`run`, so a hang is a failure with a traceback
  (``trio.TooSlowError``), never a stuck suite;
* the deadline is absolute and counts on the clock the test runs on: virtual seconds under a
  fake clock, real seconds otherwise;
* timed behaviour runs under :func:`autojump_clock`: the clock moves only when every task is
  blocked, so a test may assert exact virtual times ("decided at 2.0", not "about 2 s later").
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio
import trio.testing

__all__ = ["TEST_TIMEOUT", "autojump_clock", "run"]

T = TypeVar("T")

#: The deadline of a test that names none: ample for in-process work, short enough to fail fast.
TEST_TIMEOUT = 10.0


def autojump_clock() -> trio.testing.MockClock:
    """A fake clock that jumps to the next deadline as soon as every task is blocked."""
    return trio.testing.MockClock(autojump_threshold=0)


def run(
    test: Callable[[], Awaitable[T]],
    *,
    seconds: float = TEST_TIMEOUT,
    clock: trio.abc.Clock | None = None,
) -> T:
    """Run ``test`` under trio within ``seconds`` on ``clock`` (the real one if None); return
    what it returns."""

    async def bounded() -> T:
        with trio.fail_after(seconds):
            return await test()

    return trio.run(bounded, clock=clock)
