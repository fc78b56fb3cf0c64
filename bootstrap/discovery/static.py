"""Static discovery: a fixed list of contact points (configuration, tests, the demo)."""

from __future__ import annotations

from collections.abc import Iterable

from ..core.contact_point import ContactPoint
from ..core.errors import UsageError

__all__ = ["StaticDiscovery"]


class StaticDiscovery:
    """Always returns the same contact points."""

    def __init__(self, contact_points: Iterable[ContactPoint | str]) -> None:
        points = []
        for item in contact_points:
            points.append(item if isinstance(item, ContactPoint) else ContactPoint.parse(item))
        if not points:
            raise UsageError("static discovery needs at least one contact point")
        self._contact_points = tuple(points)

    @property
    def contact_points(self) -> tuple[ContactPoint, ...]:
        return self._contact_points

    async def lookup(self) -> list[ContactPoint]:
        return list(self._contact_points)
