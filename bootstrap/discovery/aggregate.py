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
* **The whole chain shares the node's ``discovery_timeout``**: a backend should bound its own
  lookups (the Kubernetes and DNS backends take a ``timeout``) so a hung first backend leaves
  time for the next.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Self

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
            try:
                found = await backend.lookup()
            except DiscoveryError as error:
                reason = str(error) or "failed without saying why"
            except Exception as error:
                reason = f"raised {type(error).__name__}: {error}"
                self._log_bug(index, name, reason, error)
            else:
                self._logged_failures.pop(index, None)
                if found:
                    self._log_fallback(failures, answered_by=name)
                    return list(found)
                outcomes.append(f"{name}: found no contact points")
                continue
            failures[index] = reason
            outcomes.append(f"{name}: {reason}")
        if failures:
            raise DiscoveryError("; ".join(outcomes))
        return []

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
