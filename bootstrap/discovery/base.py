"""The discovery protocol every backend implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ..core.contact_point import ContactPoint

__all__ = ["Discovery", "DiscoveryError"]


class DiscoveryError(Exception):
    """A lookup failed; the message says why and, where possible, what to change."""


@runtime_checkable
class Discovery(Protocol):
    """A source of contact points."""

    async def lookup(self) -> list[ContactPoint]:
        """The contact points discovered now (possibly none); raise DiscoveryError on failure."""
