"""The simulated discovery service: one registry, and per-node views that may lag or disagree.

Node ``i`` is registered ``register_lag`` after each of its lives starts and removed
``deregister_lag`` after it ends (as a Kubernetes endpoint appears once the pod is ready and
lingers after it dies); a restarted node whose new registration comes before its old one is
removed simply stays registered. A lookup by node ``k`` at ``now`` returns:

* the registry as of ``now - view_lag[k]`` (a lagging cache or DNS TTL): every node sees the
  same history, each at its own delay, so views are prefixes of one registration order;
* with per-pair lags, node ``i`` if it was registered at ``now - view_lag[k] - lag[k][i]``:
  each pair has its own delay, so two views may each miss what the other holds;
* either of them passed through a per-node :data:`~bootstrap.sim.scenario.DiscoveryView`
  (a node that never sees another one).

With ``lags_from`` set, the lags delay only the registry's changes from that instant on; every
node sees earlier ones at once (a deployment established before the story of the scenario
begins, whose nodes all know each other). Precisely: node ``k`` sees ``i`` at ``t`` iff some
registration interval ``[added, removed)`` of ``i`` has ``late(added) <= t < late(removed)``,
where ``late(x) = x + lag`` for ``x >= lags_from`` and ``x`` before it. Views stay prefixes of
the registration order under per-node lags.

The registry only changes at known instants, so without per-pair lags the view at any time is
one of a bounded number of versions; each version's ``ContactPointsDiscovered`` event is built
once and shared, keeping a lookup O(log n) instead of O(n). A lookup with per-pair lags is O(n).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence

from bootstrap.core.contact_point import ContactPoint
from bootstrap.core.events import ContactPointsDiscovered

from .scenario import DiscoveryView

__all__ = ["DiscoveryService"]

PairLags = Callable[[int], Sequence[float] | None]
"""``observer -> lag per observed node`` (None: this observer has no per-pair lags)."""


def _merge(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Sorted, non-overlapping registration intervals; empty ones dropped."""
    merged: list[tuple[float, float]] = []
    for added, removed in sorted(interval for interval in intervals if interval[1] > interval[0]):
        if merged and added <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], removed))
        else:
            merged.append((added, removed))
    return merged


class DiscoveryService:
    """Answers lookups from precomputed registration intervals."""

    __slots__ = (
        "_change_nodes",
        "_change_times",
        "_contact_points",
        "_events",
        "_intervals",
        "_lags_from",
        "_pair_lags",
        "_pair_lags_of",
        "_sets",
        "_views",
    )

    def __init__(
        self,
        *,
        contact_points: Sequence[ContactPoint],
        registered_at: Sequence[float],
        deregistered_at: Sequence[float],
        views: dict[int, DiscoveryView],
        later_registrations: Sequence[tuple[int, float, float]] = (),
        pair_lags: PairLags | None = None,
        lags_from: float = 0.0,
    ) -> None:
        """``registered_at[i]``/``deregistered_at[i]``: node i's first life; ``later_...``:
        ``(node, registered, deregistered)`` of its other lives."""
        self._contact_points = tuple(contact_points)
        lives: list[list[tuple[float, float]]] = [
            [(added, removed)]
            for added, removed in zip(registered_at, deregistered_at, strict=True)
        ]
        for node, added, removed in later_registrations:
            lives[node].append((added, removed))
        self._intervals = [_merge(node_lives) for node_lives in lives]
        # (time, +1 / -1, node), sorted: the registry's history, applied in order.
        changes: list[tuple[float, int, int]] = []
        for node, intervals in enumerate(self._intervals):
            for added, removed in intervals:
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
        self._pair_lags = pair_lags
        self._pair_lags_of: dict[int, Sequence[float] | None] = {}
        self._lags_from = lags_from

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

    def _visible(self, node: int, now: float, lag: float) -> bool:
        """Does an observer whose lag for ``node`` is ``lag`` see it at ``now``?"""
        since = self._lags_from
        for added, removed in self._intervals[node]:
            if (
                (added + lag if added >= since else added)
                <= now
                < (removed + lag if removed >= since else removed)
            ):
                return True
        return False

    def _lags_of(self, observer: int) -> Sequence[float] | None:
        if self._pair_lags is None:
            return None
        if observer not in self._pair_lags_of:
            self._pair_lags_of[observer] = self._pair_lags(observer)
        return self._pair_lags_of[observer]

    def seen_by(self, node: int, now: float, view_lag: float) -> frozenset[int]:
        """What ``node`` sees of the registry at ``now`` (its view lag and pair lags applied)."""
        lags = self._lags_of(node)
        if lags is None:
            if now - view_lag >= self._lags_from:
                return self.registered(now - view_lag)  # the same thing, in O(log n)
            return frozenset(
                index
                for index in range(len(self._contact_points))
                if self._visible(index, now, view_lag)
            )
        return frozenset(
            index
            for index in range(len(self._contact_points))
            if self._visible(index, now, view_lag + lags[index])
        )

    def lookup(self, node: int, now: float, view_lag: float) -> ContactPointsDiscovered:
        """What node ``node``'s lookup at ``now`` returns."""
        as_of = now - view_lag
        view = self._views.get(node)
        if view is None and self._lags_of(node) is None and as_of >= self._lags_from:
            version = self._version(as_of)
            event = self._events.get(version)
            if event is None:
                members = self.registered(as_of)
                event = self._events[version] = ContactPointsDiscovered(
                    [self._contact_points[index] for index in sorted(members)]
                )
            return event
        seen = self.seen_by(node, now, view_lag)
        visible = sorted(seen if view is None else set(view(now, seen)))
        for index in visible:
            if not 0 <= index < len(self._contact_points):
                raise ValueError(f"discovery view of node {node} returned unknown node {index}")
        return ContactPointsDiscovered([self._contact_points[index] for index in visible])
