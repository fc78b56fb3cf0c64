"""The answers a machine holds: one record per peer, and the indexes the decision reads.

Rules:

* Each peer has at most one :class:`Answer`: the last document it sent, with the instant it was
  observed and the first instant it is stale. It is replaced only by :meth:`AnswerBook.record`
  (a new answer) or :meth:`AnswerBook.invalidate` (a failed join voids everything heard before),
  and it is kept after it expires, because the status still shows when a peer last answered.
* An answer is fresh while ``now < expires_at``; it expires only by age (:meth:`AnswerBook.expire`,
  called at that deadline), never because a later probe failed.
* The indexes (which peers are fresh, which fresh answers list seed nodes, which list only this
  node's own name) exist so that a decision over thousands of peers does not scan them all. They
  are derived from the records, and :meth:`AnswerBook._reindex` is the only code that changes
  them: every mutator ends there, so they cannot drift from the records.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping

import attrs

from .contact_point import ContactPoint
from .events import Promise

__all__ = ["Answer", "AnswerBook", "SeededAnswer"]


@attrs.frozen
class SeededAnswer:
    """A fresh answer that lists seed nodes (this node's own ``self_node`` already removed)."""

    contact_point: ContactPoint
    seed_nodes: tuple[str, ...]
    cluster_id: str | None


@attrs.frozen(kw_only=True)
class Answer:
    """What one peer last said, and for how long it counts."""

    observed_at: float
    #: The first instant the answer is stale; ``-inf`` once it no longer counts at all.
    expires_at: float
    #: The seed nodes it listed, this node's own ``self_node`` removed.
    seed_nodes: tuple[str, ...]
    cluster_id: str | None
    #: It listed seed nodes, all of them this node's own name: a cluster an earlier run of this
    #: node (same address, same ``self_node``) formed. Nothing to join through, but no second
    #: cluster may be formed while such an answer stands.
    lists_only_self: bool
    #: The founding-round fields of the answer (DESIGN section 8): the peer's latest round
    #: (``None``: it cannot promise) and the promise it held.
    round: int | None = None
    promise: Promise | None = None
    #: What the peer said it waits for, as the would-be founder (DESIGN section 9).
    waiting: str | None = None

    def voided(self) -> Answer:
        """The same observation, counting for nothing (kept for its ``observed_at``)."""
        return attrs.evolve(
            self,
            expires_at=-math.inf,
            seed_nodes=(),
            cluster_id=None,
            lists_only_self=False,
            waiting=None,
        )


class AnswerBook:
    """Every peer's last answer, and the indexes of the fresh ones."""

    __slots__ = ("_answers", "_fresh", "_listing_only_self", "_seeded")

    def __init__(self) -> None:
        self._answers: dict[ContactPoint, Answer] = {}
        self._fresh: set[ContactPoint] = set()
        self._seeded: dict[ContactPoint, SeededAnswer] = {}
        self._listing_only_self: set[ContactPoint] = set()

    # --- reading ------------------------------------------------------------------------------

    def get(self, contact_point: ContactPoint) -> Answer | None:
        """The last answer of ``contact_point`` (fresh or not), if it ever answered."""
        return self._answers.get(contact_point)

    def is_fresh(self, contact_point: ContactPoint) -> bool:
        return contact_point in self._fresh

    @property
    def fresh_count(self) -> int:
        return len(self._fresh)

    @property
    def seeded(self) -> Mapping[ContactPoint, SeededAnswer]:
        """Fresh answers that list seed nodes other than this node."""
        return self._seeded

    def contact_points(self) -> Iterator[ContactPoint]:
        """Every contact point with a record, fresh or not."""
        return iter(self._answers)

    def listing_only_self(self) -> Iterator[ContactPoint]:
        """Fresh answers whose seed nodes were all this node's own name."""
        return iter(self._listing_only_self)

    @property
    def any_listing_only_self(self) -> bool:
        return bool(self._listing_only_self)

    # --- changing -----------------------------------------------------------------------------

    def record(self, contact_point: ContactPoint, answer: Answer, now: float) -> bool:
        """``contact_point`` answered: replace its record. True if the indexes changed."""
        self._answers[contact_point] = answer
        return self._reindex(contact_point, now)

    def expire(self, contact_point: ContactPoint, now: float) -> bool:
        """The expiry deadline of ``contact_point``'s answer passed. True if it was fresh."""
        return self._reindex(contact_point, now)

    def invalidate(self, contact_point: ContactPoint, now: float) -> bool:
        """Void what ``contact_point`` said (a join failed): it no longer counts at all."""
        answer = self._answers.get(contact_point)
        if answer is None:
            return False
        self._answers[contact_point] = answer.voided()
        return self._reindex(contact_point, now)

    def forget(self, contact_point: ContactPoint, now: float) -> bool:
        """``contact_point`` left discovery: drop its record. True if the indexes changed."""
        if self._answers.pop(contact_point, None) is None:
            return False
        return self._reindex(contact_point, now)

    def _reindex(self, contact_point: ContactPoint, now: float) -> bool:
        # The only code that changes the indexes: they follow the record exactly.
        answer = self._answers.get(contact_point)
        fresh = answer is not None and now < answer.expires_at
        changed = False
        if fresh != (contact_point in self._fresh):
            changed = True
            if fresh:
                self._fresh.add(contact_point)
            else:
                self._fresh.discard(contact_point)
        seeded = (
            SeededAnswer(contact_point, answer.seed_nodes, answer.cluster_id)
            if fresh and answer is not None and answer.seed_nodes
            else None
        )
        if seeded != self._seeded.get(contact_point):
            changed = True
            if seeded is None:
                del self._seeded[contact_point]
            else:
                self._seeded[contact_point] = seeded
        only_self = fresh and answer is not None and answer.lists_only_self
        if only_self != (contact_point in self._listing_only_self):
            changed = True
            if only_self:
                self._listing_only_self.add(contact_point)
            else:
                self._listing_only_self.discard(contact_point)
        return changed
