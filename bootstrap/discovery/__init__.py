"""Discovery: where a node learns the contact points of its peers.

A backend implements :class:`Discovery` (``async lookup() -> list[ContactPoint]``) and raises
:class:`DiscoveryError` with a message that says what to fix. ``lookup()`` runs under the
caller's deadline, a trio cancel scope: the node runner's is ``discovery_timeout`` long, and it
feeds the machine ``ContactPointsDiscovered`` or ``DiscoveryFailed`` (``lookup timed out`` when
the scope cancelled the lookup). A backend that wants to report its own error before that reads
the deadline with ``trio.current_effective_deadline()``; :mod:`.deadline` is the one rule for
when to give up (the DNS and Kubernetes backends follow it). :class:`AggregateDiscovery` gives
each of its backends a share of the deadline.
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
