"""The simulated cluster membership: who belongs to which cluster, and what each node advertises.

Rules:

* ``JoinSelf`` creates a cluster whose id is the forming node's name (with ``#<life>`` after
  it for a node's second and later lives), with that node as its only member.
* ``JoinSeedNodes(seeds)`` joins the cluster of the first seed (in the order given, which is
  the machine's sorted order) that is a running member of a cluster and reachable; if there is
  none the join fails (the simulation feeds ``JoinFailed``).
* A member advertises its cluster's running members, lowest node first, at most
  ``max_seed_nodes``, and the cluster id; a non-member advertises an empty list and no id.
* A node that stops leaves its cluster at once (it crashed: no graceful leave). A cluster with
  no running member is gone: a restarted process does not rejoin it by itself.
* Two clusters *coexist* when one is created while the other still has a running member: that
  is a split brain. One created after the other is gone (a full restart) is not.

Whenever what a node advertises changes, ``on_document_changed(node)`` is called so the
simulation can push the new document to that node's watchers.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence

__all__ = ["Membership"]


class Membership:
    """Clusters and their running members, by node index."""

    __slots__ = (
        "_clusters",
        "_max_seed_nodes",
        "_names",
        "_on_change",
        "cluster_of",
        "coexisting",
        "created",
        "founder_of",
    )

    def __init__(
        self,
        names: Sequence[str],
        *,
        max_seed_nodes: int,
        on_document_changed: Callable[[int], None],
    ) -> None:
        self._names = tuple(names)
        self._max_seed_nodes = max_seed_nodes
        self._on_change = on_document_changed
        # Cluster id -> its running members, sorted by node index (lowest first).
        self._clusters: dict[str, list[int]] = {}
        self.cluster_of: list[str | None] = [None] * len(self._names)
        self.created: list[str] = []  # cluster ids, in order of creation
        self.founder_of: dict[str, int] = {}
        # Cluster id -> the clusters that still had running members when it was created.
        self.coexisting: dict[str, tuple[str, ...]] = {}

    def seed_nodes(self, node: int) -> tuple[str, ...]:
        """What ``node`` advertises as seed nodes (empty unless it is a member)."""
        cluster_id = self.cluster_of[node]
        if cluster_id is None:
            return ()
        members = self._clusters[cluster_id]
        return tuple(self._names[index] for index in members[: self._max_seed_nodes])

    def members(self, cluster_id: str) -> tuple[int, ...]:
        """Running members of a cluster, lowest first."""
        return tuple(self._clusters.get(cluster_id, ()))

    def live_clusters(self) -> tuple[str, ...]:
        """Clusters that have a running member, in order of creation."""
        return tuple(cluster_id for cluster_id in self.created if self._clusters[cluster_id])

    def create(self, node: int, *, life: int = 0) -> str:
        """``node`` forms a new cluster in its ``life``-th life (0: the first); return its id."""
        cluster_id = self._names[node] if life == 0 else f"{self._names[node]}#{life + 1}"
        if cluster_id in self._clusters:
            raise ValueError(f"node {node} formed a cluster twice")
        self.coexisting[cluster_id] = self.live_clusters()
        self.founder_of[cluster_id] = node
        self._clusters[cluster_id] = [node]
        self.cluster_of[node] = cluster_id
        self.created.append(cluster_id)
        self._on_change(node)
        return cluster_id

    def join(self, node: int, cluster_id: str) -> None:
        """``node`` becomes a member of ``cluster_id``."""
        members = self._clusters[cluster_id]
        before = members[: self._max_seed_nodes]
        bisect.insort(members, node)
        self.cluster_of[node] = cluster_id
        self._changed(members, before, also=node)

    def leave(self, node: int) -> None:
        """``node`` stopped: it is no longer a running member of anything."""
        cluster_id = self.cluster_of[node]
        if cluster_id is None:
            return
        members = self._clusters[cluster_id]
        before = members[: self._max_seed_nodes]
        members.remove(node)
        self._changed(members, before, also=None)

    def restarted(self, node: int) -> None:
        """A new process of ``node`` started: it belongs to no cluster (it left when it stopped).

        Until then ``cluster_of`` keeps the cluster a stopped node was in, for the report.
        """
        cluster_id = self.cluster_of[node]
        if cluster_id is not None and node in self._clusters[cluster_id]:
            raise ValueError(f"node {node} restarted while still a member of {cluster_id}")
        self.cluster_of[node] = None

    def _changed(self, members: list[int], before: list[int], *, also: int | None) -> None:
        # Every member advertises the same seed list, so only a change in the lowest
        # ``max_seed_nodes`` members changes anyone's document but the joining node's own.
        if members[: self._max_seed_nodes] != before:
            for member in members:
                self._on_change(member)
        elif also is not None:
            self._on_change(also)
