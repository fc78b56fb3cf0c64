"""Discovery: where a node learns the contact points of its peers.

A backend implements :class:`Discovery` (``async lookup() -> list[ContactPoint]``) and raises
:class:`DiscoveryError` with a message that says what to fix. The node runner cancels a lookup
after ``discovery_timeout`` and feeds the machine ``ContactPointsDiscovered`` or
``DiscoveryFailed``.
"""

from .base import Discovery, DiscoveryError
from .static import StaticDiscovery

__all__ = ["Discovery", "DiscoveryError", "StaticDiscovery"]
