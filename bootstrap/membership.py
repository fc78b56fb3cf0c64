"""Membership: the application's cluster, as the bootstrap process needs to see it.

The application implements :class:`Membership` (joining is its business: Akka-style cluster,
a raft group, a database replica set...). The node runner calls ``join_self`` or ``join`` once
the machine decides, and builds the seed-nodes document it serves from ``members()``.

:class:`LocalMembership` is an in-memory reference implementation that makes the whole flow
work out of the box: after ``join_self`` it advertises itself, after ``join(seeds)`` it
advertises the seeds and itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from .core.wire import Member

__all__ = ["ADVERTISED_STATUSES", "LocalMembership", "Membership", "advertised_seed_nodes"]

#: Members in these states are advertised as seed nodes (DESIGN section 4).
ADVERTISED_STATUSES = frozenset({"Up", "WeaklyUp", "Joining"})
#: While this node itself is in one of these states it advertises no seed nodes at all.
_DEPARTING_STATUSES = frozenset({"Leaving", "Exiting", "Down"})


@runtime_checkable
class Membership(Protocol):
    """What the node runner needs from the application's cluster membership."""

    async def join_self(self) -> None:
        """Form a new cluster with this node as its first member. Raise if that fails."""

    async def join(self, seed_nodes: Sequence[str]) -> None:
        """Join the cluster these seed nodes belong to. Raise if that fails."""

    def members(self) -> Sequence[Member]:
        """The members of this node's cluster as it sees them now (empty before joining)."""


def advertised_seed_nodes(
    members: Sequence[Member], *, self_node: str, max_seed_nodes: int
) -> tuple[Member, ...]:
    """The seed nodes a node advertises: up to ``max_seed_nodes`` live members, sorted.

    Nothing while this node is leaving or down: a departing node must not pull newcomers into
    a cluster it is about to leave.
    """
    for member in members:
        if member.node == self_node and member.status in _DEPARTING_STATUSES:
            return ()
    live = sorted((m for m in members if m.status in ADVERTISED_STATUSES), key=lambda m: m.node)
    return tuple(live[:max_seed_nodes])


class LocalMembership:
    """An in-memory membership: enough to run the whole bootstrap flow without an application."""

    def __init__(self, self_node: str) -> None:
        self._self_node = self_node
        self._members: tuple[Member, ...] = ()
        self.joined_via: tuple[str, ...] | None = None  # seed nodes joined through; () for self

    @property
    def self_node(self) -> str:
        return self._self_node

    async def join_self(self) -> None:
        self._members = (Member(self._self_node),)
        self.joined_via = ()

    async def join(self, seed_nodes: Sequence[str]) -> None:
        nodes = {*seed_nodes, self._self_node}
        self._members = tuple(Member(node) for node in sorted(nodes))
        self.joined_via = tuple(seed_nodes)

    def members(self) -> Sequence[Member]:
        return self._members
