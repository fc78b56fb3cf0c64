"""The decision rules: when to join an existing cluster, when to form one, and why we wait.

Evaluated by the machine after every change of its inputs and at every deadline (the
stable-margin expiry and each answer's expiry are deadlines), so no decision waits for a tick.
In this order (DESIGN section 3):

0. a join failed less than one probe period ago -> wait (a failing join is retried at the
   probe pace, never in a tight loop);
1. a fresh answer lists seed nodes -> ``JoinSeedNodes`` at once (self removed, sorted, at most
   ``max_seed_nodes``; when answers name different clusters, the one whose lowest seed node
   sorts first, so every node picks the same one); a fresh answer whose seed nodes are all
   this node's own name -> wait, never form (an earlier run of this node formed that cluster);
   -- everything below only decides whether *this* node forms a new cluster --
2. discovery has not succeeded since its last failure, ``new_cluster_enabled`` is off, or this
   node's own contact point is not discovered -> wait;
3. fresh answers (self included) < ``required_contact_points`` -> wait;
4. the discovered set changed less than ``stable_margin`` ago -> wait, unless exactly
   ``expected_contact_points`` are discovered and all of them answered fresh;
5. ``contact_with_all_contact_points`` and a discovered contact point lacks a fresh answer -> wait;
6. this node is the lowest contact point with a fresh answer -> ``JoinSelf``; else wait for it.

The function is pure: it reads the machine's live collections and returns a verdict. A
``Waiting`` verdict renders its plain-English reason only when asked, because rendering may
scan every contact point and the machine evaluates far more often than anyone reads a status.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence, Set

import attrs

from .contact_point import ContactPoint
from .events import Decision, JoinSeedNodes, JoinSelf
from .settings import Settings

__all__ = ["SeededAnswer", "Waiting", "decide"]


@attrs.frozen
class SeededAnswer:
    """A fresh answer that lists seed nodes (this node's own ``self_node`` already removed)."""

    contact_point: ContactPoint
    seed_nodes: tuple[str, ...]
    cluster_id: str | None


@attrs.frozen
class Waiting:
    """No decision yet; ``rule`` names the rule that holds the node back."""

    rule: str
    _explain: Callable[[float], str] = attrs.field(alias="explain", repr=False, eq=False)

    def reason_at(self, now: float) -> str:
        """The plain-English reason, worded for ``now`` (ages are as of then)."""
        return self._explain(now)


def _seconds(value: float) -> str:
    return f"{value:.1f} s"


def choose_cluster(answers: Iterable[SeededAnswer]) -> tuple[list[str], list[str]]:
    """Seed nodes of the cluster to join, and the names of all clusters observed.

    Answers are grouped by ``clusterId`` (all answers without one form one group). Joining a
    mix of two clusters' seed nodes would bridge them, so exactly one group is chosen: the one
    whose lowest seed node sorts first, which every node computes the same way.
    """
    groups: dict[str | None, set[str]] = {}
    for answer in answers:
        groups.setdefault(answer.cluster_id, set()).update(answer.seed_nodes)
    chosen = min(groups.values(), key=min)
    names = sorted(str(cluster_id) for cluster_id in groups)
    return sorted(chosen), names


def decide(
    *,
    settings: Settings,
    now: float,
    self_contact_point: ContactPoint,
    discovered: Sequence[ContactPoint],
    fresh: Set[ContactPoint],
    seeded: Collection[SeededAnswer],
    discovery_succeeded: bool,
    listing_only_self: Set[ContactPoint] = frozenset(),
    discovery_failure: str | None,
    stable_at: float,
    join_retry_at: float,
    join_failure: str | None,
    describe_missing: Callable[[float], str],
) -> Decision | Waiting:
    """Apply the rules above to the machine's current view.

    ``discovered`` is sorted in canonical order and includes this node when discovery returned
    it; ``fresh`` holds the discovered contact points with a fresh answer (this node included:
    its own answer is synthetic and always fresh); ``stable_at`` is when the current discovered
    set will have been stable for ``stable_margin``.
    """
    if now < join_retry_at:
        return Waiting(
            "join-retry",
            lambda t: (
                f"the last join failed ({join_failure}); probing again before the next "
                f"decision in {_seconds(join_retry_at - t)}"
            ),
        )

    if seeded:
        seed_nodes, _ = choose_cluster(seeded)
        return JoinSeedNodes(tuple(seed_nodes[: settings.max_seed_nodes]))

    if listing_only_self:
        # As the anchor does: seed nodes that are all this node give nothing to join, but they
        # prove a cluster exists (formed by an earlier run of this node on this address), so
        # forming another would split the service in two.
        named = ", ".join(str(point) for point in sorted(listing_only_self))
        return Waiting(
            "listed-as-seed",
            lambda t: (
                f"{named} lists only this node's own name as seed node (a cluster formed by an "
                "earlier run of this node); waiting for a contact point that names another "
                "member; no second cluster is formed"
            ),
        )

    if not discovery_succeeded:
        if discovery_failure is None:
            return Waiting("discovery", lambda t: "waiting for the first discovery lookup")
        return Waiting(
            "discovery",
            lambda t: (
                f"discovery failed ({discovery_failure}); joining an existing cluster "
                "still works, but no new cluster is formed until a lookup succeeds"
            ),
        )
    if not settings.new_cluster_enabled:
        return Waiting(
            "new-cluster-disabled",
            lambda t: (
                "waiting for a contact point to report seed nodes "
                "(new_cluster_enabled is off: this node never forms a cluster)"
            ),
        )
    if self_contact_point not in fresh:
        return Waiting(
            "self-not-discovered",
            lambda t: (
                f"this node's contact point {self_contact_point} is not among the "
                f"{len(discovered)} discovered contact points; it can join an existing cluster "
                "but will not form one"
            ),
        )

    if len(fresh) < settings.required_contact_points:
        return Waiting(
            "required-contact-points",
            lambda t: (
                f"confirmed {len(fresh)} of {settings.required_contact_points} "
                "required contact points"
            ),
        )

    all_fresh = len(fresh) == len(discovered)
    expected_fast_path = settings.expected_contact_points == len(discovered) and all_fresh
    if now < stable_at and not expected_fast_path:
        return Waiting(
            "stable-margin",
            lambda t: (
                f"discovery changed {_seconds(t - (stable_at - settings.stable_margin))} "
                f"ago, stable margin {_seconds(settings.stable_margin)}"
            ),
        )

    if settings.contact_with_all_contact_points and not all_fresh:
        return Waiting("contact-with-all", describe_missing)

    # With every discovered contact point fresh the lowest is the first; otherwise scan.
    lowest = discovered[0] if all_fresh else min(fresh)
    if lowest != self_contact_point:
        return Waiting("lowest-forms", lambda t: f"expecting {lowest} to form the cluster")
    return JoinSelf()
