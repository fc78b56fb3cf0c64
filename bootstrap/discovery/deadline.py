"""When a lookup gives up: the one timing rule of the discovery backends that bound their own.

The node runs every lookup under its deadline, a trio cancel scope ``discovery_timeout`` long
(``Node._lookup``), and trio hands that deadline to the code inside the scope:
``trio.current_effective_deadline()``. So the deadline is never configured twice:

* A backend ends its lookup a moment *before* the caller's deadline, with an error of its own
  (which server, which query, what to check). Were it cancelled at the deadline itself, the
  node would report only "lookup timed out after 3.0 s".
* The moment is :data:`REPORT_MARGIN`, or a tenth of the time left if that is less, so that a
  short deadline is not spent on the margin.
* A backend's own ``timeout``, when one is given, only ever shortens the lookup (a share of
  the deadline for one backend among several, or a bound for a caller that sets no deadline);
  it cannot outlast the caller's.
* Without either there is no bound here: the caller decides, as with any trio function.
"""

from __future__ import annotations

import math

import attrs
import trio

__all__ = ["REPORT_MARGIN", "LookupBudget", "lookup_budget"]

#: Seconds before the deadline at which a lookup gives up with its own error (at most).
REPORT_MARGIN = 0.1


@attrs.frozen(kw_only=True)
class LookupBudget:
    """The time one lookup has, fixed when it starts."""

    #: The end the lookup is held to: the caller's deadline, or ``timeout`` from the start.
    deadline: float
    #: When the backend stops waiting and reports its own error: just before ``deadline``.
    give_up_at: float
    #: ``deadline`` minus the start, for messages ("no answer within 3 s"); inf if unbounded.
    #: Messages round it to 3 digits: the caller's scope began a moment before the lookup.
    seconds: float

    @property
    def bounded(self) -> bool:
        return math.isfinite(self.deadline)


def lookup_budget(timeout: float | None = None) -> LookupBudget:
    """The budget of a lookup starting now, under the caller's deadline and ``timeout``."""
    now = trio.current_time()
    deadline = trio.current_effective_deadline()
    if timeout is not None:
        deadline = min(deadline, now + timeout)
    left = max(0.0, deadline - now)
    margin = min(REPORT_MARGIN, left / 10)
    return LookupBudget(deadline=deadline, give_up_at=deadline - margin, seconds=left)
