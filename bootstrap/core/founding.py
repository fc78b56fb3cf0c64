"""The founding round (DESIGN section 8): a candidate forms a cluster only on its peers' promises.

The lowest-address rule alone forms a second cluster whenever the would-be founder decides on
answers taken before a peer formed without it, or two nodes each believe they are the lowest.
Here the node that the rules of ``decision.py`` would let form becomes a *candidate* instead:

1. **Candidate.** It starts round ``r`` (a counter, strictly increasing over the machine's life)
   and asks for a promise from every discovered peer (``contact_with_all_contact_points``), or
   from every peer with a fresh answer (otherwise). It needs all of them in the first case, at
   least ``required_contact_points - 1`` in the second.
2. **Promise.** A node asked for round ``r`` by candidate ``C`` (:func:`answer_proposal`)
   promises nothing if it decided, if it holds a promise to another candidate, or if it is a
   candidate itself and lower than ``C``; otherwise it promises ``(C, r)``, withdrawing its own
   candidacy. Until released it starts no round and promises no one else; joining an existing
   cluster stays allowed.
3. **Release** only on evidence (:func:`released_by`): a document from ``C`` whose round counter
   shows ``C`` past round ``r``. A document with an older round may have been written before
   ``C`` started round ``r`` (our poll of ``C`` and ``C``'s proposal to us travel on different
   connections), so it is no evidence. Never on a timeout, with one exception the machine keeps:
   ``C`` gone from discovery and silent for ``Settings.promise_hold``.
4. **Forming.** ``C`` forms when it holds the promises of point 1 and the rules still hold. A
   refusal (:func:`refusal`) or a change that breaks the rules withdraws the round; a new one
   may start one jittered probe period later.
5. **Founding.** From its decision on, ``C``'s documents say ``founding``, and every reader
   treats such an answer as one whose seed nodes include ``C``'s ``selfNode``: nobody mistakes
   a founder's empty ``seedNodes`` for "free".

Why at most one cluster (S1): with ``required_contact_points`` above half the nodes, two founders'
promisers are two majorities, which share a node; that node promised one of them first and
released it only on seeing it past that round, after which it could not form in it.
"""

from __future__ import annotations

import attrs

from .contact_point import ContactPoint, sort_key
from .events import ProbeSucceeded, Promise

__all__ = [
    "Advertisement",
    "Candidacy",
    "RoundCounts",
    "answer_proposal",
    "promised_to_us",
    "refusal",
    "released_by",
]


@attrs.frozen(kw_only=True)
class Advertisement:
    """What a node's documents say of its founding round (the wire extensions of section 8).

    ``round`` is ``None`` on a node that forms by the lowest-address rule: it cannot promise, and
    its documents say nothing of rounds (exactly what an Akka node serves).
    """

    round: int | None
    candidate: bool = False
    promise: Promise | None = None
    founding: bool = False


@attrs.frozen(kw_only=True)
class RoundCounts:
    """How this node's founding rounds went over its life, for the status and for metrics."""

    #: Where this life's round counter started (``BootstrapMachine(first_round=...)``).
    first_round: int
    rounds_started: int
    rounds_withdrawn: int
    #: Promises this node gave (a later round of the same candidate counts again).
    promises_given: int


@attrs.define
class Candidacy:
    """This node's open founding round."""

    round: int
    #: The peers asked for a promise, fixed when the round starts.
    asked: frozenset[ContactPoint]
    #: How many promises the round needs to form.
    needed: int
    promised: set[ContactPoint] = attrs.field(factory=set)
    #: The peers a proposal of this round was sent to, with when it was last sent (the rest get
    #: one as soon as they answer).
    proposed: dict[ContactPoint, float] = attrs.field(factory=dict)
    #: ``asked`` in the canonical order, lowest first.
    asked_in_order: tuple[ContactPoint, ...] = attrs.field(init=False)

    @asked_in_order.default
    def _order_asked(self) -> tuple[ContactPoint, ...]:
        return tuple(sorted(self.asked, key=sort_key))

    @property
    def complete(self) -> bool:
        return len(self.promised) >= self.needed

    @property
    def lowest_unpromised(self) -> ContactPoint | None:
        """The lowest peer asked whose promise has not come (what the status names)."""
        promised = self.promised
        return next((cp for cp in self.asked_in_order if cp not in promised), None)


def answer_proposal(
    *,
    proposer: ContactPoint,
    round: int,
    self_contact_point: ContactPoint,
    decided: bool,
    promise: Promise | None,
    candidacy: Candidacy | None,
) -> Promise | None:
    """The promise this node holds after ``proposer`` asked for one for ``round``.

    Returns the promise to keep (unchanged, replaced, or new); the caller compares it with
    ``promise`` to see whether anything changed, and withdraws its own candidacy when it now
    promised someone else.
    """
    if decided:
        return promise  # it promises nothing; its document (founding, or seed nodes) says why
    if promise is not None:
        if promise.to == proposer and round > promise.round:
            return Promise(proposer, round)  # a later round of the same candidate replaces it
        return promise  # promised already (to it for this round, or to another: a refusal)
    if candidacy is not None and self_contact_point < proposer:
        return None  # a lower candidate: the proposer will see that and withdraw
    return Promise(proposer, round)


def released_by(promise: Promise, answer: ProbeSucceeded) -> bool:
    """Does ``answer`` (a document from ``promise.to``) prove the candidate is past its round?

    A founding answer, or one that lists seed nodes, is not: the candidate is in a cluster
    (founded in that round, or joined since), and the promiser joins it instead (rule 1).
    Releasing there would leave a founder's promiser free to promise a second founder.
    """
    if answer.round is None or answer.founding or answer.seed_nodes:
        return False
    return answer.round > promise.round or (answer.round == promise.round and not answer.candidate)


def refusal(answer: ProbeSucceeded, *, self_contact_point: ContactPoint, round: int) -> str | None:
    """Why ``answer``, from a peer asked to promise ``round``, shows no promise can come, if so.

    An answer that shows the peer free is not a refusal: it may have been written before our
    proposal arrived (a watch push crossing it), so the proposal simply stands.
    """
    promise = answer.promise
    if promise is not None and promise.to != self_contact_point:
        return f"{answer.contact_point} promised {promise.to} (round {promise.round})"
    if answer.candidate and answer.contact_point < self_contact_point:
        return f"{answer.contact_point} is a lower candidate (round {answer.round})"
    return None


def promised_to_us(answer: ProbeSucceeded, *, self_contact_point: ContactPoint, round: int) -> bool:
    """Does ``answer`` show its sender's promise to this node for ``round``?"""
    promise = answer.promise
    return promise is not None and promise.to == self_contact_point and promise.round == round
