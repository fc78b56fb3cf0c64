"""The founding round (DESIGN section 8): promises, refusals, release on evidence, founding.

Unit tests of the pure rules in ``bootstrap/core/founding.py`` and of the machine that applies
them, on a scripted clock (``harness.py``). Scripted peers promise the first proposal they get.
"""

from __future__ import annotations

import math

import pytest

from bootstrap import (
    ContactedBy,
    JoinFailed,
    JoinSeedNodes,
    JoinSelf,
    Probe,
    ProbeSucceeded,
    Promise,
    Settings,
    StopProbing,
    UsageError,
)
from bootstrap.core.founding import (
    Candidacy,
    RoundCounts,
    answer_proposal,
    refusal,
    released_by,
)

from .harness import Harness, cp, node

THREE = (cp(1), cp(2), cp(3))


def decisions(actions: list[object]) -> list[object]:
    return [a for a in actions if isinstance(a, JoinSelf | JoinSeedNodes)]


def proposals(actions: list[object]) -> list[Probe]:
    return [a for a in actions if isinstance(a, Probe) and a.round is not None]


def document(
    of: int,
    *,
    round: int | None = 0,
    candidate: bool = False,
    promise: Promise | None = None,
    founding: bool = False,
    seed_nodes: tuple[str, ...] = (),
) -> ProbeSucceeded:
    return ProbeSucceeded(
        cp(of),
        node(of),
        seed_nodes,
        round=round,
        candidate=candidate,
        promise=promise,
        founding=founding,
    )


# --- the pure rules ---------------------------------------------------------------------------


def test_a_free_node_promises_and_a_later_round_of_the_same_candidate_replaces_it() -> None:
    """Free: promise; the same candidate's later round replaces; an older one does not."""
    promise = answer_proposal(
        proposer=cp(1),
        round=2,
        self_contact_point=cp(5),
        decided=False,
        promise=None,
        candidacy=None,
    )
    assert promise == Promise(cp(1), 2)
    kwargs = {"self_contact_point": cp(5), "decided": False, "candidacy": None}
    assert answer_proposal(proposer=cp(1), round=3, promise=promise, **kwargs) == Promise(cp(1), 3)
    assert answer_proposal(proposer=cp(1), round=1, promise=promise, **kwargs) == promise


def test_a_promise_to_another_candidate_refuses_everyone_else() -> None:
    """Holding (C, r), a proposal from anyone else changes nothing, whatever its round."""
    held = Promise(cp(2), 1)
    for proposer in (cp(1), cp(3)):
        kept = answer_proposal(
            proposer=proposer,
            round=9,
            self_contact_point=cp(5),
            decided=False,
            promise=held,
            candidacy=None,
        )
        assert kept == held


def test_a_decided_node_promises_nothing() -> None:
    """Decided (either kind): no promise, whoever asks."""
    assert (
        answer_proposal(
            proposer=cp(1),
            round=1,
            self_contact_point=cp(5),
            decided=True,
            promise=None,
            candidacy=None,
        )
        is None
    )


def test_a_lower_candidate_refuses_a_higher_one_and_promises_a_lower_one() -> None:
    """A candidate refuses a higher proposer and promises a lower one (withdrawing itself)."""
    mine = Candidacy(round=1, asked=frozenset({cp(9)}), needed=1)
    kwargs = {"round": 4, "self_contact_point": cp(5), "decided": False, "promise": None}
    assert answer_proposal(proposer=cp(7), candidacy=mine, **kwargs) is None
    assert answer_proposal(proposer=cp(3), candidacy=mine, **kwargs) == Promise(cp(3), 4)


@pytest.mark.parametrize(
    ("answer", "released"),
    [
        (document(2, round=3, candidate=True), False),  # still in round 3
        (document(2, round=2, candidate=False), False),  # older than the promise: no evidence
        (document(2, round=3, candidate=False), True),  # round 3 withdrawn
        (document(2, round=4, candidate=True), True),  # past round 3
        (document(2, round=3, founding=True), False),  # it founded: join it instead
        (document(2, round=None), False),  # no round at all: no evidence
        (document(2, round=3, seed_nodes=(node(2),)), False),  # in a cluster: join it instead
    ],
)
def test_release_needs_a_document_past_the_promised_round(
    answer: ProbeSucceeded, released: bool
) -> None:
    """Only a document showing the candidate past round r releases (C, r); stale ones do not."""
    assert released_by(Promise(cp(2), 3), answer) is released


def test_refusals_name_who_was_promised_or_the_lower_candidate() -> None:
    """Promised elsewhere, or a lower candidate: a refusal; a free answer is not one."""
    me = cp(5)
    promised = document(2, promise=Promise(cp(3), 1))
    assert refusal(promised, self_contact_point=me, round=1) == (
        "10.0.0.2:8558 promised 10.0.0.3:8558 (round 1)"
    )
    lower = document(2, round=4, candidate=True)
    assert refusal(lower, self_contact_point=me, round=1) == (
        "10.0.0.2:8558 is a lower candidate (round 4)"
    )
    assert refusal(document(2), self_contact_point=me, round=1) is None
    assert refusal(document(9, candidate=True), self_contact_point=me, round=1) is None


def test_founding_round_fields_are_validated() -> None:
    """Rounds are integers >= 0, flags booleans, the promise a Promise: misuse is UsageError."""
    with pytest.raises(UsageError, match="round"):
        Promise(cp(1), -1)
    with pytest.raises(UsageError, match="round"):
        Probe(cp(1), round=True)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="candidate"):
        ProbeSucceeded(cp(1), "n", (), candidate=1)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="promise"):
        ProbeSucceeded(cp(1), "n", (), promise=(cp(2), 1))  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="proposal_round"):
        ContactedBy(cp(1), proposal_round=1.5)  # type: ignore[arg-type]


# --- the candidate ----------------------------------------------------------------------------


def test_the_lowest_asks_every_peer_when_the_margin_expires_and_forms_on_their_promises() -> None:
    """The margin's deadline opens round 1 (proposals at once); the promises make it form."""
    h = Harness(Settings(stable_margin=5.0))
    h.start()
    h.discover(*THREE, at=0.25)
    actions = h.run_healthy_peers(until=5.2499, latency=0.01)
    assert proposals(actions) == []
    assert h.machine.advertisement.round == 0
    actions = h.advance_to(5.25)
    assert proposals(actions) == [Probe(cp(2), round=1), Probe(cp(3), round=1)]
    assert h.machine.advertisement.candidate
    assert h.machine.status.reason == (
        "founding round 1: promised by 0 of 2 (waiting for 10.0.0.2:8558)"
    )
    actions = h.run_healthy_peers(until=5.27, latency=0.01)
    assert decisions(actions) == [JoinSelf()]
    assert h.machine.advertisement.founding
    assert h.machine.advertisement.round == 1


def test_a_refusal_withdraws_the_round_and_the_next_starts_a_period_later() -> None:
    """A peer that promised someone else refuses: withdraw, say so, retry one period later."""
    settings = Settings(stable_margin=1.0, probe_jitter=0.0, probe_interval=1.0)
    h = Harness(settings)
    h.start()
    h.discover(*THREE, at=0.0)
    h.answer(cp(2), at=0.0)
    h.answer(cp(3), at=0.0)
    h.advance_to(1.0)
    assert h.machine.advertisement.candidate
    h.feed(document(2, promise=Promise(cp(9), 4)), at=1.01)
    advertisement = h.machine.advertisement
    assert not advertisement.candidate
    assert advertisement.round == 1
    assert h.machine.status.reason.startswith(
        "withdrew founding round 1 (10.0.0.2:8558 promised 10.0.0.9:8558 (round 4)); "
        "the next round starts in 1.0 s"
    )
    h.promises.clear()  # the other candidate gave up: both peers are free again
    actions = h.run_healthy_peers(until=2.05, latency=0.01)
    assert [p.round for p in proposals(actions)] == [2, 2]
    assert decisions(actions) == [JoinSelf()]
    assert h.machine.round_counts == RoundCounts(
        first_round=0, rounds_started=2, rounds_withdrawn=1, promises_given=0
    )


def test_a_stale_answer_that_keeps_its_promise_does_not_withdraw_the_round() -> None:
    """A promised peer's answer going stale waits for it, and the promise still counts."""
    settings = Settings(stable_margin=1.0, probe_jitter=0.0, probe_interval=1.0, probe_timeout=1.0)
    h = Harness(settings)
    h.start()
    h.discover(*THREE, at=0.0)
    h.answer(cp(2), at=0.0)
    h.answer(cp(3), at=0.0)
    actions = h.advance_to(1.0)
    # Both peers' regular probes fell due at 1.0 with the margin: the proposals follow the
    # answers to those (one Probe outstanding per peer), at once.
    assert proposals(actions) == []
    actions = h.answer(cp(2), at=1.01)
    assert proposals(actions) == [Probe(cp(2), round=1)]
    h.answer(cp(2), at=1.02)  # it promised (the harness answers the proposal with it)
    assert h.machine.status.reason == (
        "founding round 1: promised by 1 of 2 (waiting for 10.0.0.3:8558)"
    )
    h.advance_to(2.5)  # cp(3) never answered the proposal; its answer of t=0 went stale
    assert h.machine.advertisement.candidate
    assert h.machine.status.waiting_on == "contact-with-all"
    h.answer(cp(3), at=2.6)  # it answers the probe of t=1.0 at last; the proposal follows
    assert h.machine.decision is None
    h.answer(cp(3), at=2.61)  # ... and is promised: round 1 forms, cp(2)'s promise still counts
    assert h.machine.decision == JoinSelf()
    assert h.machine.advertisement.round == 1


def test_a_lost_proposal_is_repeated_while_a_watched_peer_shows_no_promise() -> None:
    """A watched peer's pushes keep its answer fresh, so its probe never falls due: a proposal
    lost on the way must be repeated from those pushes, once per probe timeout at most.

    Found by the formation property (fanout 1, 20 % loss): before, each push postponed the
    probe a period, the proposal was never sent again, and round 1 waited forever.
    """
    settings = Settings(stable_margin=1.0, probe_jitter=0.0, probe_interval=5.0, probe_timeout=1.0)
    h = Harness(settings)
    h.start()
    h.discover(*THREE, at=0.0)
    h.answer(cp(2), at=0.0)
    h.answer(cp(3), at=0.0)
    actions = h.advance_to(1.0)
    assert proposals(actions) == [Probe(cp(2), round=1), Probe(cp(3), round=1)]
    h.feed(document(2, promise=Promise(cp(1), 1)), at=1.01)  # cp(2) promised
    # cp(3)'s proposal was lost; it pushes its document (no promise) as a watched peer does.
    assert proposals(h.feed(document(3), at=1.5)) == []  # may have crossed the proposal
    assert proposals(h.feed(document(3), at=2.0)) == [Probe(cp(3), round=1)]
    assert proposals(h.feed(document(3), at=2.5)) == []  # the repeat is not answered yet
    assert proposals(h.feed(document(3), at=3.0)) == [Probe(cp(3), round=1)]
    h.feed(document(3, promise=Promise(cp(1), 1)), at=3.01)
    assert h.machine.decision == JoinSelf()


def test_a_lower_candidates_proposal_makes_the_candidate_promise_it_and_withdraw() -> None:
    """Two candidates (inconsistent views): the higher promises the lower and withdraws."""
    h = Harness(Settings(stable_margin=1.0), me=cp(2), self_node=node(2))
    h.start()
    h.discover(cp(2), cp(3), at=0.0)  # cp(1) is not in this node's view yet
    h.answer(cp(3), at=0.0)
    h.advance_to(1.0)
    assert h.machine.advertisement.candidate
    h.feed(ContactedBy(cp(1), proposal_round=1), at=1.01)
    advertisement = h.machine.advertisement
    assert advertisement.promise == Promise(cp(1), 1)
    assert not advertisement.candidate
    assert h.machine.status.reason == (
        "promised to 10.0.0.1:8558 (round 1); waiting for it to found the cluster"
    )
    h.feed(ContactedBy(cp(1), proposal_round=2), at=1.02)  # its next round replaces the promise
    assert h.machine.round_counts == RoundCounts(
        first_round=0, rounds_started=1, rounds_withdrawn=1, promises_given=2
    )


def test_a_peer_that_cannot_promise_is_named_in_the_reason() -> None:
    """An Akka node (answers without rounds) gets a reason that says to use lowest-address."""
    h = Harness(Settings(stable_margin=1.0))
    h.start()
    h.discover(cp(1), cp(2), at=0.0)
    h.feed(document(2, round=None), at=0.0)
    h.advance_to(1.0)
    h.feed(document(2, round=None), at=1.01)
    assert h.machine.decision is None
    assert h.machine.status.reason == (
        "founding round 1: promised by 0 of 1 (waiting for 10.0.0.2:8558, which cannot promise: "
        "its answers carry no founding round, as an Akka node's; with such peers set "
        "formation='lowest-address')"
    )


def test_a_failed_join_self_withdraws_the_round_it_formed_in() -> None:
    """JoinFailed after JoinSelf: the documents show the round over, which frees the promisers."""
    h = Harness(Settings(stable_margin=1.0))
    h.start()
    h.discover(cp(1), cp(2), at=0.0)
    h.run_healthy_peers(until=1.1)
    assert h.machine.decision == JoinSelf()
    h.feed(JoinFailed("membership refused"), at=1.2)
    advertisement = h.machine.advertisement
    assert (advertisement.round, advertisement.candidate, advertisement.founding) == (
        1,
        False,
        False,
    )
    assert released_by(Promise(cp(1), 1), document(1, round=1))


def test_lowest_address_formation_advertises_no_round_and_never_promises() -> None:
    """formation="lowest-address": no rounds in the documents, proposals are not promised."""
    h = Harness(Settings(formation="lowest-address"), me=cp(2), self_node=node(2))
    h.start()
    h.discover(cp(1), cp(2), at=0.0)
    h.feed(ContactedBy(cp(1), proposal_round=1), at=0.1)
    assert h.machine.advertisement.round is None
    assert h.machine.advertisement.promise is None


# --- the promiser -----------------------------------------------------------------------------


def promised_node() -> Harness:
    """cp(5), having promised cp(1) round 2; cp(1) and cp(5) discovered."""
    h = Harness(Settings(stable_margin=1.0), me=cp(5), self_node=node(5))
    h.start()
    h.discover(cp(1), cp(5), at=0.0)
    h.feed(ContactedBy(cp(1), proposal_round=2), at=0.1)
    assert h.machine.advertisement.promise == Promise(cp(1), 2)
    return h


def test_a_promiser_forms_nothing_and_promises_no_one_else() -> None:
    """Even as the lowest of a view, a promiser starts no round and refuses other proposals."""
    h = promised_node()
    h.discover(cp(5), cp(6), at=0.2)  # cp(1) left this node's view: cp(5) is now the lowest
    h.answer(cp(6), at=0.2)
    actions = h.run_healthy_peers(until=5.0, peers={cp(6)})
    assert decisions(actions) == []
    assert proposals(actions) == []
    h.feed(ContactedBy(cp(6), proposal_round=1), at=5.0)
    assert h.machine.advertisement.promise == Promise(cp(1), 2)


def test_a_stale_document_of_the_candidate_is_no_evidence() -> None:
    """A document written before the candidate's round (round 1 < 2) keeps the promise."""
    h = promised_node()
    h.feed(document(1, round=1, candidate=False), at=0.2)
    assert h.machine.advertisement.promise == Promise(cp(1), 2)
    h.feed(document(1, round=2, candidate=False), at=0.3)  # round 2 withdrawn: released
    assert h.machine.advertisement.promise is None


def test_a_candidate_restarted_mid_round_releases_its_promisers_with_its_first_document() -> None:
    """A new life's round counter starts past the old life's rounds, which is evidence."""
    h = promised_node()
    # The restarted candidate's machine began at first_round=5000 (the node's clock): its first
    # document shows round 5000, not candidate, past the promised round 2.
    h.feed(document(1, round=5000, candidate=False), at=0.2)
    assert h.machine.advertisement.promise is None


@pytest.mark.parametrize("first_round", [0, 1, 7_000])
def test_the_round_counter_starts_at_first_round(first_round: int) -> None:
    """Before any round the documents say first_round; the first round opened is one past it."""
    h = Harness(Settings(stable_margin=5.0), first_round=first_round)
    h.start()
    assert h.machine.advertisement.round == first_round
    h.discover(*THREE, at=0.25)
    h.run_healthy_peers(until=5.27, latency=0.01)
    assert h.machine.advertisement.round == first_round + 1
    assert h.machine.advertisement.founding


@pytest.mark.parametrize("first_round", [-1, 1.5, True, "3", 2**52 + 1])
def test_a_bad_first_round_is_a_usage_error(first_round: object) -> None:
    with pytest.raises(
        UsageError, match=r"first_round must be an integer in 0\.\.4503599627370496"
    ):
        Harness(first_round=first_round)  # type: ignore[arg-type]


def test_a_founding_answer_is_a_cluster_to_join() -> None:
    """The candidate's founding document makes its promiser join it (its selfNode as seed)."""
    h = promised_node()
    actions = h.feed(document(1, round=2, founding=True), at=0.2)
    assert decisions(actions) == [JoinSeedNodes((node(1),))]
    assert h.machine.advertisement.promise == Promise(cp(1), 2)


def test_the_candidate_leaving_discovery_is_still_asked_until_promise_hold() -> None:
    """Gone from discovery: still probed; released only after promise_hold of silence."""
    h = promised_node()
    hold = h.settings.promise_hold
    actions = h.discover(cp(5), at=0.5)
    assert StopProbing(cp(1)) not in actions  # the only answer that can release it
    h.fail(cp(1), "connection refused", at=0.6)
    assert h.machine.advertisement.promise == Promise(cp(1), 2)
    h.advance_to(0.5 + hold - 0.01)
    assert h.machine.advertisement.promise == Promise(cp(1), 2)
    actions = h.advance_to(0.5 + hold)
    assert h.machine.advertisement.promise is None
    assert StopProbing(cp(1)) in actions
    assert math.isfinite(hold)
    assert hold == 3 * h.settings.longest_probe_period


def test_an_undiscovered_candidate_that_founds_is_joined() -> None:
    """Promised to a candidate this node has not discovered: it is probed, and joined."""
    h = Harness(Settings(stable_margin=1.0), me=cp(5), self_node=node(5))
    h.start()
    h.discover(cp(5), cp(6), at=0.0)
    actions = h.feed(ContactedBy(cp(1), proposal_round=1), at=0.1)
    assert Probe(cp(1)) in actions
    actions = h.feed(document(1, round=1, founding=True), at=0.2)
    assert decisions(actions) == [JoinSeedNodes((node(1),))]
