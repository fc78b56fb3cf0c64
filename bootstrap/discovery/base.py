"""The discovery protocol every backend implements.

The rules a backend follows:

* ``lookup()`` runs under the caller's deadline: the node calls it inside a trio cancel scope
  ``discovery_timeout`` long (an :class:`~bootstrap.discovery.AggregateDiscovery` narrows it to
  each backend's share). A backend that just awaits is cancelled at that deadline, and the node
  reports only that the lookup timed out.
* A backend that wants to report its own error instead (which server did not answer, what to
  check) reads the deadline with ``trio.current_effective_deadline()`` and gives up a moment
  before it: :func:`bootstrap.discovery.deadline.lookup_budget` is that rule, written once.
* A failure is a :class:`DiscoveryError` whose message says what to change; any other exception
  is the backend's bug.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ..core.contact_point import ContactPoint

__all__ = ["Discovery", "DiscoveryError"]


class DiscoveryError(Exception):
    """A lookup failed; the message says why and, where possible, what to change."""


@runtime_checkable
class Discovery(Protocol):
    """A source of contact points (the module docs give the rules of ``lookup``)."""

    async def lookup(self) -> list[ContactPoint]:
        """The contact points discovered now (possibly none); raise DiscoveryError on failure.

        Runs under the caller's deadline (a trio cancel scope); to fail with an error of its own
        rather than be cancelled, read ``trio.current_effective_deadline()``
        (:mod:`bootstrap.discovery.deadline`).
        """
