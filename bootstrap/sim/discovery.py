"""The simulated discovery service: one registry, and per-node views that may lag or disagree.

Node ``i`` is registered ``register_lag`` after it starts and removed ``deregister_lag`` after
it stops (as a Kubernetes endpoint appears once the pod is ready and lingers after it dies). A
lookup by node ``k`` at ``now`` returns the registry as of ``now - view_lag[k]`` (a lagging
cache or DNS TTL), optionally passed through a per-node
:data:`~bootstrap.sim.scenario.DiscoveryView` (a node that never sees another one).

The registry only changes at known instants, so the view at any time is one of at most
``2 * nodes + 1`` versions; each version's ``ContactPointsDiscovered`` event is built once and
shared, keeping a lookup O(log n) instead of O(n) for the common (non-overridden) case.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

from bootstrap.core.contact_point import ContactPoint
from bootstrap.core.events import ContactPointsDiscovered

from .scenario import DiscoveryView

__all__ = ["DiscoveryService"]


class DiscoveryService:
    """Answers lookups from precomputed registration intervals."""

    __slots__ = ("_change_nodes", "_change_times", "_contact_points", "_events", "_sets", "_views")

    def __init__(
        self,
        *,
        contact_points: Sequence[ContactPoint],
        registered_at: Sequence[float],
        deregistered_at: Sequence[float],
        views: dict[int, DiscoveryView],
    ) -> None:
        self._contact_points = tuple(contact_points)
        # (time, +1 / -1, node), sorted: the registry's history, applied in order.
        changes: list[tuple[float, int, int]] = []
        for node, (added, removed) in enumerate(zip(registered_at, deregistered_at, strict=True)):
            if removed <= added:
                continue  # gone before it was ever visible
            changes.append((added, 1, node))
            if math.isfinite(removed):
                changes.append((removed, -1, node))
        # Removals before additions at the same instant: a set never holds a node twice.
        changes.sort(key=lambda change: (change[0], change[1], change[2]))
        self._change_times = [time for time, _, _ in changes]
        self._change_nodes = [(sign, node) for _, sign, node in changes]
        self._sets: dict[int, frozenset[int]] = {}
        self._events: dict[int, ContactPointsDiscovered] = {}
        self._views = views

    def _version(self, when: float) -> int:
        return bisect.bisect_right(self._change_times, when)

    def registered(self, when: float) -> frozenset[int]:
        """Node indices registered at ``when``."""
        version = self._version(when)
        cached = self._sets.get(version)
        if cached is None:
            members: set[int] = set()
            for sign, node in self._change_nodes[:version]:
                if sign > 0:
                    members.add(node)
                else:
                    members.discard(node)
            cached = self._sets[version] = frozenset(members)
        return cached

    def lookup(self, node: int, now: float, view_lag: float) -> ContactPointsDiscovered:
        """What node ``node``'s lookup at ``now`` returns."""
        as_of = now - view_lag
        view = self._views.get(node)
        if view is None:
            version = self._version(as_of)
            event = self._events.get(version)
            if event is None:
                members = self.registered(as_of)
                event = self._events[version] = ContactPointsDiscovered(
                    [self._contact_points[index] for index in sorted(members)]
                )
            return event
        visible = sorted(set(view(now, self.registered(as_of))))
        for index in visible:
            if not 0 <= index < len(self._contact_points):
                raise ValueError(f"discovery view of node {node} returned unknown node {index}")
        return ContactPointsDiscovered([self._contact_points[index] for index in visible])
