"""Aggregate discovery: several backends tried in order, the first that finds peers wins.

Typical use is the Kubernetes API with DNS behind it, for when RBAC is missing or the API
server is unreachable: ``AggregateDiscovery([KubernetesDiscovery(...), DnsDiscovery(...)])``.

Rules, and why:

* **In order, first non-empty answer wins**; later backends are not asked. Answers are not
  merged: two backends describe the same pods in different ways (a pod IP with a named port, a
  DNS name), and a union would count one node twice.
* **A failing backend does not stop the chain**: its error is kept and the next one is asked.
  Any exception other than :class:`DiscoveryError` is a bug in that backend; it is logged with
  its traceback and treated as a failed lookup, so one broken backend cannot kill the node.
* **Nothing found and something failed raises**, listing every backend's outcome in order
  (``KubernetesDiscovery: forbidden: ...; DnsDiscovery: found no contact points``), rather than
  returning ``[]``. An error keeps the node's previous view of its peers, which is safer than
  "nobody is there": an empty answer would let a node conclude it is alone and form a second
  cluster. Only when every backend answered, and answered empty, is the answer ``[]``.
* **Closing the aggregate closes its backends** (those with an ``aclose()``, such as the
  Kubernetes backend's kept connection), so the owner needs to close only what it built.
* **The backends share the caller's deadline** (the node's ``discovery_timeout``, a trio
  cancel scope around ``lookup()``), so a hung first backend cannot spend the time of those
  after it. Backend ``i`` of ``n`` gets an equal share of the time left when it starts: it runs
  under ``trio.move_on_at(now + left / (n - i))``, and what a quick backend leaves over goes to
  the ones after it; the last one has all that is left. A backend that bounds its own lookups
  (:mod:`.deadline`: the Kubernetes and DNS backends) sees its share as its deadline and reports
  its own error just before it ends; one that does not is cut at the end of its share, recorded
  as "no answer within its share of the lookup's time (1.5 s)". Without a deadline (a caller
  that sets none) no backend is cut: the caller decides, as with any trio function.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Self

import trio

from ..core.contact_point import ContactPoint
from ..core.errors import UsageError
from .base import Discovery, DiscoveryError

__all__ = ["AggregateDiscovery"]

logger = logging.getLogger("bootstrap.discovery.aggregate")


class AggregateDiscovery:
    """Asks ``backends`` in order; returns the first non-empty answer (see the module docs)."""

    def __init__(self, backends: Sequence[Discovery]) -> None:
        backends = tuple(backends)
        if not backends:
            raise UsageError("aggregate discovery needs at least one backend to ask")
        for backend in backends:
            if not isinstance(backend, Discovery):
                raise UsageError(
                    f"{backend!r} is not a discovery backend: it has no async lookup() method"
                )
        self._backends = backends
        # The last failure logged per backend (by position), so a backend that keeps failing
        # the same way while a later one answers is logged once, not at every lookup.
        self._logged_failures: dict[int, str] = {}
        # Backend bugs whose traceback was logged: once per backend and message.
        self._logged_bugs: set[tuple[int, str]] = set()

    @property
    def backends(self) -> tuple[Discovery, ...]:
        return self._backends

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every backend that can be closed, in reverse order, even if one fails."""
        async with contextlib.AsyncExitStack() as stack:
            for backend in self._backends:
                close: Callable[[], Awaitable[None]] | None = getattr(backend, "aclose", None)
                if close is not None:
                    stack.push_async_callback(close)

    async def lookup(self) -> list[ContactPoint]:
        outcomes: list[str] = []
        failures: dict[int, str] = {}
        for index, backend in enumerate(self._backends):
            name = type(backend).__name__
            outcome = await self._ask(index, backends_left=len(self._backends) - index)
            if isinstance(outcome, str):
                failures[index] = outcome
                outcomes.append(f"{name}: {outcome}")
                continue
            self._logged_failures.pop(index, None)
            if outcome:
                self._log_fallback(failures, answered_by=name)
                return outcome
            outcomes.append(f"{name}: found no contact points")
        if failures:
            raise DiscoveryError("; ".join(outcomes))
        return []

    async def _ask(self, index: int, *, backends_left: int) -> list[ContactPoint] | str:
        """Backend ``index``'s answer within its share of the time left, or why it has none."""
        backend = self._backends[index]
        now = trio.current_time()
        deadline = trio.current_effective_deadline()
        share_ends = now + (deadline - now) / backends_left if math.isfinite(deadline) else deadline
        with trio.move_on_at(share_ends):
            try:
                return list(await backend.lookup())
            except DiscoveryError as error:
                return str(error) or "failed without saying why"
            except Exception as error:
                reason = f"raised {type(error).__name__}: {error}"
                self._log_bug(index, type(backend).__name__, reason, error)
                return reason
        # Only this backend's share ran out: when the caller's deadline passes too (the last
        # backend's share ends with it), trio hands the cancellation on to the caller's scope,
        # and the caller reports its own timeout.
        return f"no answer within its share of the lookup's time ({share_ends - now:.3g} s)"

    def _log_bug(self, index: int, name: str, reason: str, error: Exception) -> None:
        key = (index, reason)
        if key in self._logged_bugs:
            logger.debug("%s %s (a bug in that backend; treated as a failed lookup)", name, reason)
            return
        if len(self._logged_bugs) >= 64:  # a backend cycling through messages: stay bounded
            self._logged_bugs.clear()
        self._logged_bugs.add(key)
        logger.error(
            "%s %s: a bug in that backend; treated as a failed lookup",
            name,
            reason,
            exc_info=error,
        )

    def _log_fallback(self, failures: dict[int, str], *, answered_by: str) -> None:
        # When nothing answers, the raised error reaches the node, which reports it; when a
        # later backend answers, that error would go unseen, so it is logged here.
        for index, reason in failures.items():
            if self._logged_failures.get(index) != reason:
                self._logged_failures[index] = reason
                logger.warning(
                    "%s failed (using %s's answer instead): %s",
                    type(self._backends[index]).__name__,
                    answered_by,
                    reason,
                )
