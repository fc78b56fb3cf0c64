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
5. ``contact_with_all_contact_points`` and a contact point this node probes lacks a fresh
   answer -> wait (the would-be founder probes every discovered one; DESIGN section 9);
6. this node holds a promise to a candidate (``founding.py``) -> wait for that candidate;
7. this node is not the lowest contact point with a fresh answer -> wait for the lowest,
   quoting what the lowest says it waits for. A node that is not the would-be founder (a lower
   peer answers probes, DESIGN section 9) applies this rule right after rule 2: rules 3-5 are
   the would-be founder's to check, and only the reason changes, never the decision;
8. ``formation="lowest-address"`` -> ``JoinSelf`` (the anchor's rule). Otherwise the founding
   round of DESIGN section 8: with no round open, ``StartRound`` (one jittered probe period after
   a withdrawn one); with a round whose promises are all in, ``JoinSelf``; else wait for them.
   The machine withdraws an open round whenever the verdict is anything but the round's own.

The rules read one frozen :class:`DecisionView` that the machine builds when it evaluates, so
``decide`` is a pure function of its argument and a rule can be tested by building a view. A
``Waiting`` verdict renders its plain-English reason only when asked (the machine evaluates far
more often than anyone reads a status); the reason depends on the view and the instant asked.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import attrs

from .answers import SeededAnswer
from .contact_point import ContactPoint
from .events import Decision, JoinSeedNodes, JoinSelf, Promise
from .settings import Settings

__all__ = [
    "DecisionView",
    "MissingAnswer",
    "RoundView",
    "StartRound",
    "Waiting",
    "choose_cluster",
    "decide",
]


@attrs.frozen
class StartRound:
    """Not a decision: this node may form, so it opens a founding round and asks for promises."""


@attrs.frozen(kw_only=True)
class RoundView:
    """This node's open founding round, as the rules read it."""

    round: int
    promised: int
    needed: int
    #: The lowest peer asked and not promised yet, and what its last answer said.
    waiting_for: ContactPoint | None
    #: That peer's answer carried no round: it serves no founding round (an Akka node).
    waiting_for_cannot_promise: bool
    #: The promise that peer holds to another candidate, if its last answer showed one.
    waiting_for_promised: Promise | None


@attrs.frozen(kw_only=True)
class MissingAnswer:
    """The lowest discovered contact point without a fresh answer, for the waiting reason."""

    contact_point: ContactPoint
    last_observed_at: float | None
    last_failure: str | None


@attrs.frozen(kw_only=True)
class DecisionView:
    """Everything the rules read, as of one instant. Counts include this node itself."""

    settings: Settings
    now: float
    self_contact_point: ContactPoint
    #: This node's own contact point is among the discovered (its answer is then synthetic
    #: and always fresh).
    self_discovered: bool
    discovered_count: int
    #: The contact points whose answers this node holds (the probe set, DESIGN section 9; every
    #: discovered one for the would-be founder): rule 5 reads only those.
    probed_count: int
    #: Fresh answers among them.
    fresh_count: int
    #: The lowest discovered contact point with a fresh answer (canonical order).
    lowest_fresh: ContactPoint | None
    #: What that contact point said it waits for, as the would-be founder (DESIGN section 9).
    lowest_fresh_waiting: str | None
    #: No discovered peer below this node answers probes (DESIGN section 9): the rules that
    #: let it form (3-5) are its to check. Any other node waits for the lowest at once.
    would_be_founder: bool
    #: Fresh answers that list seed nodes (this node's own name removed).
    seeded: tuple[SeededAnswer, ...]
    #: Fresh answers whose seed nodes were all this node's own name, sorted.
    listing_only_self: tuple[ContactPoint, ...]
    discovery_succeeded: bool
    discovery_failure: str | None
    #: When the current discovered set will have been stable for ``stable_margin``.
    stable_at: float
    join_retry_at: float
    join_failure: str | None
    #: Set whenever some probed contact point lacks a fresh answer.
    first_missing: MissingAnswer | None
    #: The founding round (DESIGN section 8): the promise this node holds to a candidate, its
    #: own open round, its latest round number and when it may open the next one.
    promise: Promise | None = None
    open_round: RoundView | None = None
    last_round: int = 0
    next_round_at: float = -math.inf
    last_withdrawal: str | None = None

    @property
    def all_fresh(self) -> bool:
        """Every contact point this node probes answered (rule 5)."""
        return self.fresh_count == self.probed_count

    @property
    def all_discovered_fresh(self) -> bool:
        """Every discovered contact point answered (the ``expected_contact_points`` fast path)."""
        return self.fresh_count == self.discovered_count


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


def _describe_missing(view: DecisionView, now: float) -> str:
    missing = view.first_missing
    if missing is None:
        return "all contact points answered"
    if missing.last_observed_at is None:
        detail = "never answered"
    else:
        detail = f"last {now - missing.last_observed_at:.1f} s ago"
    if missing.last_failure is not None:
        detail += f"; last failure: {missing.last_failure}"
    others = view.probed_count - view.fresh_count - 1
    more = f" and {others} more" if others > 0 else ""
    return f"no fresh answer from {missing.contact_point} ({detail}){more}"


def decide(view: DecisionView) -> Decision | StartRound | Waiting:
    """Apply the rules above to ``view``."""
    settings, now = view.settings, view.now
    join_retry_at, join_failure = view.join_retry_at, view.join_failure
    if now < join_retry_at:
        return Waiting(
            "join-retry",
            lambda t: (
                f"the last join failed ({join_failure}); probing again before the next "
                f"decision in {_seconds(join_retry_at - t)}"
            ),
        )

    if view.seeded:
        seed_nodes, _ = choose_cluster(view.seeded)
        return JoinSeedNodes(tuple(seed_nodes[: settings.max_seed_nodes]))

    if view.listing_only_self:
        # As the anchor does: seed nodes that are all this node give nothing to join, but they
        # prove a cluster exists (formed by an earlier run of this node on this address), so
        # forming another would split the service in two.
        named = ", ".join(str(point) for point in view.listing_only_self)
        return Waiting(
            "listed-as-seed",
            lambda t: (
                f"{named} lists only this node's own name as seed node (a cluster formed by an "
                "earlier run of this node); waiting for a contact point that names another "
                "member; no second cluster is formed"
            ),
        )

    discovery_failure = view.discovery_failure
    if not view.discovery_succeeded:
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
    self_contact_point = view.self_contact_point
    if not view.self_discovered:
        return Waiting(
            "self-not-discovered",
            lambda t: (
                f"this node's contact point {self_contact_point} is not among the "
                f"{view.discovered_count} discovered contact points; it can join an existing "
                "cluster but will not form one"
            ),
        )

    lowest = view.lowest_fresh
    if not view.would_be_founder and lowest is not None and lowest != self_contact_point:
        # Rule 7 first: a lower peer answers, so this node cannot form whatever rules 3-5 say,
        # and what it waits for is that peer (whose own words its answer carries).
        return _expect_the_lowest(view)

    if view.fresh_count < settings.required_contact_points:
        return Waiting(
            "required-contact-points",
            lambda t: (
                f"confirmed {view.fresh_count} of {settings.required_contact_points} "
                "required contact points"
            ),
        )

    all_fresh, stable_at = view.all_fresh, view.stable_at
    expected_fast_path = (
        settings.expected_contact_points == view.discovered_count and view.all_discovered_fresh
    )
    if now < stable_at and not expected_fast_path:
        return Waiting(
            "stable-margin",
            lambda t: (
                f"discovery changed {_seconds(t - (stable_at - settings.stable_margin))} "
                f"ago, stable margin {_seconds(settings.stable_margin)}"
            ),
        )

    if settings.contact_with_all_contact_points and not all_fresh:
        return Waiting("contact-with-all", lambda t: _describe_missing(view, t))

    promise = view.promise
    if promise is not None:
        return Waiting(
            "promised",
            lambda t: (
                f"promised to {promise.to} (round {promise.round}); waiting for it to found the "
                "cluster"
            ),
        )

    if view.lowest_fresh != self_contact_point:
        return _expect_the_lowest(view)
    if settings.formation == "lowest-address":
        return JoinSelf()
    return _founding_round(view)


def _expect_the_lowest(view: DecisionView) -> Waiting:
    """Rule 7: wait for the lowest contact point with a fresh answer, quoting its report."""
    lowest, reported = view.lowest_fresh, view.lowest_fresh_waiting
    if reported is None:
        return Waiting("lowest-forms", lambda t: f"expecting {lowest} to form the cluster")
    return Waiting(
        "lowest-forms",
        lambda t: f"expecting {lowest} to form the cluster; it reports: {reported}",
    )


def _founding_round(view: DecisionView) -> StartRound | JoinSelf | Waiting:
    """Rule 8 under ``formation="promise"``: this node may form, once its peers promised."""
    open_round = view.open_round
    if open_round is None:
        next_round_at, withdrawal = view.next_round_at, view.last_withdrawal
        if view.now < next_round_at:
            return Waiting(
                "round-retry",
                lambda t: (
                    f"withdrew founding round {view.last_round} ({withdrawal}); the next round "
                    f"starts in {_seconds(next_round_at - t)}"
                ),
            )
        return StartRound()
    if open_round.promised >= open_round.needed:
        return JoinSelf()

    def explain(t: float) -> str:
        head = (
            f"founding round {open_round.round}: promised by {open_round.promised} of "
            f"{open_round.needed}"
        )
        peer = open_round.waiting_for
        if peer is None:
            return head
        if open_round.waiting_for_cannot_promise:
            return (
                f"{head} (waiting for {peer}, which cannot promise: its answers carry no founding "
                "round, as an Akka node's; with such peers set formation='lowest-address')"
            )
        promised = open_round.waiting_for_promised
        if promised is not None:
            return f"{head} (waiting for {peer}, which promised {promised.to})"
        return f"{head} (waiting for {peer})"

    return Waiting("founding-round", explain)
