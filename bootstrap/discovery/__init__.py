"""Discovery: where a node learns the contact points of its peers.

A backend implements :class:`Discovery` (``async lookup() -> list[ContactPoint]``) and raises
:class:`DiscoveryError` with a message that says what to fix. The node runner cancels a lookup
after ``discovery_timeout`` and feeds the machine ``ContactPointsDiscovered`` or
``DiscoveryFailed``.
"""

from .aggregate import AggregateDiscovery
from .base import Discovery, DiscoveryError
from .dns import DnsDiscovery
from .kubernetes import KubernetesDiscovery
from .static import StaticDiscovery

__all__ = [
    "AggregateDiscovery",
    "Discovery",
    "DiscoveryError",
    "DnsDiscovery",
    "KubernetesDiscovery",
    "StaticDiscovery",
]
