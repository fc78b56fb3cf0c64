"""The bootstrap state machine: sans-IO, driven by events and a clock the caller owns.

Rules of operation (aioquic's shape):

* Every input carries ``now`` (seconds, monotonic, never backwards); the machine never reads a
  clock and draws randomness only from the injected ``random.Random``.
* Outputs are queued actions, drained with :meth:`BootstrapMachine.next_action`: a timer can
  create work nobody asked for.
* The machine reports :meth:`next_deadline`; the driver calls :meth:`handle_timer` with
  ``max(deadline, now)``. Before the deadline a timer call changes nothing.
* Policy lives here: when to look up, whom to probe when, backoff, freshness and the decision
  (``decision.py``). Drivers only perform actions and report results as events.
* Misuse by the caller raises :class:`UsageError`. Bad data from a peer never raises: it arrives
  as ``ProbeFailed`` or is ignored. After an unexpected internal error the machine refuses
  further input rather than act on a state it cannot trust.

Pacing (DESIGN section 3): one lookup at start, at most one outstanding; after success the next
is due in ``discovery_interval * U[1-j, 1+j]``, after the k-th consecutive failure in
``min(discovery_backoff_max, discovery_interval * 2**k * U)``. Probes: a newly discovered contact
point is probed at once, at most one ``Probe`` outstanding per contact point, then the same
scheme with the probe settings. Any answer, solicited or pushed over a watch, pushes that peer's
next probe back a full interval: a watch that pushes every ``watch_push_interval`` therefore
never sees a poll on top.

Freshness: an answer observed at ``t`` is fresh while ``now - t <= observation_ttl`` (with a
microsecond's allowance for float rounding); it expires only by age, never because a later
probe failed (the anchor threw fresh answers away on one timeout). The first instant it is
stale is a deadline, so a decision that depends on it (the lowest fresh contact point, without
``contact_with_all_contact_points``) is not delayed.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
import random
from collections import deque
from collections.abc import Callable
from typing import Literal

from .answers import Answer, AnswerBook, SeededAnswer
from .backoff import backoff_delay, jittered
from .contact_point import ContactPoint, select_contact_points, sort_key
from .decision import (
    DecisionView,
    MissingAnswer,
    RoundView,
    StartRound,
    Waiting,
    choose_cluster,
    decide,
)
from .errors import UsageError
from .events import (
    MAX_ROUND,
    Action,
    ContactedBy,
    ContactPointsDiscovered,
    Decision,
    DiscoveryFailed,
    Event,
    JoinFailed,
    JoinSeedNodes,
    JoinSelf,
    Lookup,
    Probe,
    ProbeFailed,
    ProbeSucceeded,
    Promise,
    StopProbing,
)
from .founding import (
    Advertisement,
    Candidacy,
    RoundCounts,
    answer_proposal,
    promised_to_us,
    refusal,
    released_by,
)
from .settings import Settings
from .status import ContactPointStatus, Phase, Status
from .wire import MAX_WAITING_CHARS

__all__ = ["BootstrapMachine"]

_EVENT_TYPES = (
    ContactPointsDiscovered,
    DiscoveryFailed,
    ProbeSucceeded,
    ProbeFailed,
    JoinFailed,
    ContactedBy,
)

# The highest ``first_round`` a driver may pass: half the wire's range, so no life can run out
# of round numbers (a round takes at least one probe period).
MAX_FIRST_ROUND = MAX_ROUND // 2

# Seconds added to the freshness window against float rounding (see _on_probe_succeeded).
_ROUNDING_ALLOWANCE = 1e-6

# Waiting verdicts that leave an open founding round standing: the rules wait only for answers
# to be fresh again (a lost probe, a peer briefly slow). The promises given still bind, so the
# round forms as soon as the answers are back; withdrawing would make every blip on a lossy
# network cost a whole new round of promises.
_ROUND_SURVIVES = frozenset({"founding-round", "contact-with-all", "required-contact-points"})

_TimerKind = Literal["lookup", "probe", "expire", "stable", "retry", "round", "hold", "deadline"]


class _Peer:
    """How the machine probes one contact point other than itself.

    Only the peers in the probe set have one (and the candidate we promised, discovered or not):
    a peer that leaves the set is forgotten, because nothing about it matters until it is probed
    again. That keeps a node's state O(probe_fanout) rather than O(N) beside the discovered list,
    which is what lets 10,000 machines share one process (DESIGN section 9).
    What the peer said lives in the machine's :class:`AnswerBook`, not here: one record per peer.
    """

    __slots__ = (
        "consecutive_failures",
        "contact_point",
        "last_failure",
        "last_failure_kind",
        "next_probe_at",
        "outstanding",
    )

    def __init__(self, contact_point: ContactPoint, now: float) -> None:
        self.contact_point = contact_point
        self.consecutive_failures = 0
        self.last_failure: str | None = None
        self.last_failure_kind: str | None = None
        self.outstanding = False
        self.next_probe_at = now

    @property
    def healthy(self) -> bool:
        """Not in failure backoff: it counts towards ``probe_fanout``."""
        return self.consecutive_failures == 0


class BootstrapMachine:
    """Decides, from discovery results and probe answers, whether to form or join a cluster."""

    def __init__(
        self,
        settings: Settings,
        *,
        self_contact_point: ContactPoint,
        self_node: str,
        rng: random.Random | None = None,
        first_round: int = 0,
    ) -> None:
        if not isinstance(settings, Settings):
            raise UsageError(f"settings must be a Settings, got {settings!r}")
        if not isinstance(self_contact_point, ContactPoint):
            raise UsageError(
                f"self_contact_point must be a ContactPoint, got {self_contact_point!r}"
            )
        if not isinstance(self_node, str) or not self_node:
            raise UsageError(f"self_node must be a non-empty string, got {self_node!r}")
        if (
            isinstance(first_round, bool)
            or not isinstance(first_round, int)
            or not 0 <= first_round <= MAX_FIRST_ROUND
        ):
            raise UsageError(
                f"first_round must be an integer in 0..{MAX_FIRST_ROUND}, got {first_round!r}"
            )
        self._settings = settings
        # Discovery applies the fallback port to what it finds; do the same to ourselves so a
        # node configured without a port still recognises itself.
        if self_contact_point.port is None:
            self_contact_point = self_contact_point.with_port(settings.fallback_port)
        self._self_contact_point = self_contact_point
        self._self_node = self_node
        self._rng = rng if rng is not None else random.Random()

        self._started = False
        self._formation_deadline_at: float | None = None
        self._broken: BaseException | None = None
        self._now = -math.inf
        self._actions: deque[Action] = deque()
        self._timers: list[tuple[float, int, _TimerKind, _Peer | None]] = []
        self._timer_sequence = itertools.count()

        # Discovery.
        self._lookup_outstanding = False
        self._lookup_due: float | None = None
        self._lookup_failures = 0
        self._last_lookup_result_at = -math.inf
        self._discovery_succeeded = False  # the last lookup succeeded
        self._discovery_failure: str | None = None
        self._ever_discovered = False

        # Contact points. ``_discovered`` is sorted and includes self when discovery returns it.
        self._discovered: tuple[ContactPoint, ...] = ()
        self._last_raw_discovery: tuple[ContactPoint, ...] | None = None
        # The probe set (DESIGN section 9; see _Peer): the discovered peers this node probes,
        # whose answers count. The one probed peer outside it is _undiscovered_promisee.
        self._peers: dict[ContactPoint, _Peer] = {}
        self._answers = AnswerBook()
        self._self_discovered = False
        self._stable_at = math.inf

        # Topology (DESIGN section 9): the highest contact point whose health (failing or not)
        # can change the probe set; None while none can.
        self._probe_set_dirty = False
        self._frontier: ContactPoint | None = None
        # Every peer below this node is failing, or there is none: it may form (its documents
        # then carry what it waits for).
        self._would_be_founder = False

        # Decision.
        self._decision: Decision | None = None
        self._verdict: Decision | Waiting = Waiting(
            "not-started", lambda t: "not started: call start(now)"
        )
        self._dirty = True
        self._join_retry_at = -math.inf
        self._join_failure: str | None = None
        self._clusters_at_decision: list[str] = []
        self._fresh_at_decision = 0

        # The founding round (DESIGN section 8, founding.py).
        self._promise_formation = settings.formation == "promise"
        # The latest round number: strictly increasing over the machine's life, and across
        # lives when the driver seeds ``first_round`` from a clock that moves forward (the node
        # uses wall-clock milliseconds). That is what releases the promisers of a candidate that
        # restarted mid-round: its new life's documents show a round past the one they promised
        # (founding.released_by), where a counter restarting at 0 would look stale for ever.
        self._round = self._first_round = first_round
        self._candidacy: Candidacy | None = None
        self._next_round_at = -math.inf
        self._last_withdrawal: str | None = None
        self._promise: Promise | None = None
        # The candidate we promised, while it is not (or no longer) discovered: still probed,
        # because only its answer can release the promise (or make us join it).
        self._undiscovered_promisee: _Peer | None = None
        self._promisee_seeded: SeededAnswer | None = None  # it founded: join it
        self._promisee_heard_at = -math.inf
        self._rounds_started = self._rounds_withdrawn = self._promises_given = 0

    # --- public API ---------------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def self_contact_point(self) -> ContactPoint:
        return self._self_contact_point

    @property
    def decision(self) -> JoinSelf | JoinSeedNodes | None:
        """The decision emitted, if any (cleared by ``JoinFailed``)."""
        return self._decision

    @property
    def probed_contact_points(self) -> frozenset[ContactPoint]:
        """The discovered peers this node probes now (DESIGN section 9; all under the full mesh).

        Kept while decided: they are probed again if the join fails.
        """
        return frozenset(self._peers)

    @property
    def founder_waiting(self) -> str | None:
        """What this node waits for while it is the would-be founder (DESIGN section 9).

        Its status reason, undecided and with no lower peer answering; ``None`` otherwise. The
        driver puts it in the documents it serves, so the nodes that expect this one to form
        can say what it waits for; a reason too long for the wire is cut to fit.
        """
        if not self._would_be_founder or self._decision is not None or not self._started:
            return None
        reason = self._reason()
        if len(reason) > MAX_WAITING_CHARS:
            reason = reason[: MAX_WAITING_CHARS - 1] + "…"
        return reason

    def probes(self, contact_point: ContactPoint) -> bool:
        """Is ``contact_point`` in :attr:`probed_contact_points` (without copying the set)?"""
        return contact_point in self._peers

    @property
    def advertisement(self) -> Advertisement:
        """What this node's documents say of its founding round (DESIGN section 8)."""
        if not self._promise_formation:
            return Advertisement(round=None)
        return Advertisement(
            round=self._round,
            candidate=self._candidacy is not None,
            promise=self._promise,
            founding=isinstance(self._decision, JoinSelf),
        )

    @property
    def round_counts(self) -> RoundCounts:
        """How many founding rounds this machine started and withdrew, and promises it gave."""
        return RoundCounts(
            first_round=self._first_round,
            rounds_started=self._rounds_started,
            rounds_withdrawn=self._rounds_withdrawn,
            promises_given=self._promises_given,
        )

    def start(self, now: float) -> None:
        """Begin: the first lookup is due at once."""
        self._check_usable()
        if self._started:
            raise UsageError("start() was already called")
        self._check_time(now)
        self._started = True
        self._lookup_due = now
        self._schedule(now, "lookup", None)
        if self._settings.formation_deadline is not None:
            # A timer of its own: the driver must wake at the deadline to notice it passed.
            self._formation_deadline_at = now + self._settings.formation_deadline
            self._schedule(self._formation_deadline_at, "deadline", None)
        self._guarded(self._advance)

    def handle(self, event: Event, now: float) -> None:
        """Feed one event that happened at ``now``."""
        self._check_usable()
        if not self._started:
            raise UsageError(f"{type(event).__name__} handled before start(now)")
        # Refuse misuse before touching any state (the clock included): a rejected call
        # changes nothing.
        if not isinstance(event, _EVENT_TYPES):
            raise UsageError(f"not an event: {event!r}")
        if isinstance(event, JoinFailed) and self._decision is None:
            raise UsageError("JoinFailed handled while no decision is outstanding")
        self._check_time(now)
        self._guarded(lambda: self._handle(event))

    def handle_timer(self, now: float) -> None:
        """Do whatever has fallen due by ``now``; a no-op before :meth:`next_deadline`."""
        self._check_usable()
        if not self._started:
            raise UsageError("handle_timer() called before start(now)")
        self._check_time(now)
        self._guarded(self._advance)

    def next_deadline(self) -> float:
        """When :meth:`handle_timer` next has work to do; ``math.inf`` when nothing is pending."""
        if not self._started or self._broken is not None or self._decision is not None:
            # Decided: nothing is due. Return before the clean-up below, which would discard
            # timers that are only dormant (a JoinFailed revives the stable-margin deadline).
            return math.inf
        timers = self._timers
        while timers and not self._timer_is_live(*timers[0]):
            heapq.heappop(timers)
        return timers[0][0] if timers else math.inf

    def next_action(self) -> Action | None:
        """The next action to carry out, or ``None`` when the queue is empty."""
        return self._actions.popleft() if self._actions else None

    @property
    def phase(self) -> Phase:
        """``status.phase``, without building the status (O(1), not O(contact points))."""
        return self._phase()

    @property
    def waiting_on(self) -> str:
        """``status.waiting_on``: the rule the machine waits on ("" once decided), in O(1)."""
        return self._verdict.rule if isinstance(self._verdict, Waiting) else ""

    @property
    def reason(self) -> str:
        """``status.reason``, without building the status."""
        return self._reason()

    @property
    def clusters_at_decision(self) -> int:
        """How many distinct clusters the answers showed when this node decided to join (more
        than 1: a split brain it saw and joined one side of; 0 before a join decision)."""
        return len(self._clusters_at_decision) if self._decision is not None else 0

    @property
    def formation_overdue(self) -> bool:
        """``Settings.formation_deadline`` has passed since :meth:`start` and there is no
        decision (again false once one is made, true again after a ``JoinFailed``)."""
        deadline = self._formation_deadline_at
        return deadline is not None and self._decision is None and self._now >= deadline

    @property
    def status(self) -> Status:
        """A snapshot: phase, what the node waits for (in plain English), and each contact point."""
        now = self._now
        points = []
        for contact_point in self._discovered:
            if contact_point == self._self_contact_point:
                # This node: its own answer is synthetic and always fresh.
                points.append(
                    ContactPointStatus(
                        contact_point=contact_point,
                        fresh=True,
                        last_observed_at=now,
                        seed_nodes=(),
                        consecutive_failures=0,
                    )
                )
            else:
                answer = self._answers.get(contact_point)
                peer = self._peers.get(contact_point)
                points.append(
                    ContactPointStatus(
                        contact_point=contact_point,
                        fresh=self._answers.is_fresh(contact_point),
                        last_observed_at=None if answer is None else answer.observed_at,
                        seed_nodes=() if answer is None else answer.seed_nodes,
                        consecutive_failures=0 if peer is None else peer.consecutive_failures,
                        probed=peer is not None,
                        last_failure=None if peer is None else peer.last_failure,
                        last_failure_kind=None if peer is None else peer.last_failure_kind,
                    )
                )
        return Status(
            phase=self._phase(),
            reason=self._reason(),
            decision=self._decision,
            contact_points=tuple(points),
            waiting_on=self.waiting_on,
            formation_overdue=self.formation_overdue,
        )

    # --- input checks -------------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._broken is not None:
            raise UsageError(
                f"the machine failed earlier ({self._broken!r}) and accepts no more input"
            )

    def _check_time(self, now: float) -> None:
        if isinstance(now, bool) or not isinstance(now, int | float) or not math.isfinite(now):
            raise UsageError(f"now must be a finite number of seconds, got {now!r}")
        if now < self._now:
            raise UsageError(f"time went backwards: now={now!r} after {self._now!r}")
        self._now = float(now)

    def _guarded(self, step: Callable[[], None]) -> None:
        try:
            step()
        except UsageError:
            raise
        except Exception as error:
            self._broken = error
            raise

    # --- timers -------------------------------------------------------------------------------

    def _schedule(self, when: float, kind: _TimerKind, peer: _Peer | None) -> None:
        heapq.heappush(self._timers, (when, next(self._timer_sequence), kind, peer))

    def _timer_is_live(
        self, when: float, sequence: int, kind: _TimerKind, peer: _Peer | None
    ) -> bool:
        # Timers are never removed from the heap; an entry is live only while it still matches
        # the state it was scheduled for (lazy deletion keeps every update O(log n)). Decided,
        # the timers sleep and nobody asks (_advance, _expire_before_event, next_deadline).
        assert self._decision is None  # internal invariant
        if kind == "lookup":
            return not self._lookup_outstanding and self._lookup_due == when
        if kind == "stable":
            return self._stable_at == when
        if kind == "retry":
            return self._join_retry_at == when
        if kind == "round":
            return self._candidacy is None and self._next_round_at == when
        if kind == "deadline":
            return self._formation_deadline_at == when
        if kind == "hold":
            return (
                self._undiscovered_promisee is not None
                and self._promisee_heard_at + self._settings.promise_hold == when
            )
        assert peer is not None  # internal invariant: peer timers always carry their peer
        if self._peers.get(peer.contact_point) is not peer:
            # The one probed peer outside discovery: the candidate we promised.
            return (
                kind == "probe"
                and peer is self._undiscovered_promisee
                and (not peer.outstanding and peer.next_probe_at == when)
            )
        if kind == "probe":
            return not peer.outstanding and peer.next_probe_at == when
        answer = self._answers.get(peer.contact_point)
        return (
            answer is not None
            and answer.expires_at == when
            and self._answers.is_fresh(peer.contact_point)
        )

    def _advance(self) -> None:
        """Fire every live timer due by now, then re-evaluate the decision if anything changed."""
        now = self._now
        timers = self._timers
        while True:
            if self._probe_set_dirty and self._decision is None:
                # First: a peer that left the set must not be probed by a timer due now, and
                # the rules count only the probed peers' answers.
                self._update_probe_set()
                continue
            if timers and timers[0][0] <= now and self._decision is None:
                # Decided, the timers only sleep: none is live, and one that came due meanwhile
                # must still fire after a JoinFailed (a promise's hold above all: popped and
                # dropped while decided, it never released a promise to a dead candidate, and
                # its promiser kept joining that candidate for ever).
                entry = heapq.heappop(timers)
                if self._timer_is_live(*entry):
                    self._fire(entry[2], entry[3])
                continue
            if not (self._dirty and self._decision is None):
                return
            self._evaluate()
            # The verdict may have made work due at once (a founding round's proposals): do it
            # now, or the deadline reported next would already have passed.

    def _expire_before_event(self) -> None:
        """Bring the state to ``now`` before an event: expire answers, nothing else.

        Timers that emit actions (a Lookup, a Probe) are left for after the event: a watch
        push arriving when the peer's probe falls due must count as that peer's answer and
        postpone the probe, not be mistaken for the answer to a Probe sent a moment earlier
        (which would leave the real request in flight while the machine thinks none is). The
        decision too waits until the event is applied, so it sees everything known at ``now``.
        """
        now = self._now
        timers = self._timers
        postponed = []
        # Decided, the timers only sleep (see _advance): none may be dropped.
        while timers and timers[0][0] <= now and self._decision is None:
            entry = heapq.heappop(timers)
            if not self._timer_is_live(*entry):
                continue
            if entry[2] in ("lookup", "probe"):
                postponed.append(entry)
            else:
                self._fire(entry[2], entry[3])
        for entry in postponed:
            heapq.heappush(timers, entry)

    def _fire(self, kind: _TimerKind, peer: _Peer | None) -> None:
        if kind == "lookup":
            self._lookup_due = None
            self._lookup_outstanding = True
            self._actions.append(Lookup())
        elif kind == "probe":
            assert peer is not None
            peer.outstanding = True
            self._actions.append(Probe(peer.contact_point, round=self._proposal_for(peer)))
        elif kind == "hold":
            # Gone from discovery and silent for promise_hold: presumed crashed. The one place
            # where liveness wins over S1 (Settings.promise_hold says why).
            self._release()
        elif kind == "expire":
            assert peer is not None
            if self._answers.expire(peer.contact_point, self._now):
                self._dirty = True
        else:  # "stable", "retry", "round" or "deadline": the verdict (or its reason) changes
            self._dirty = True

    def _schedule_lookup(self, when: float) -> None:
        self._lookup_due = when
        self._schedule(when, "lookup", None)

    def _schedule_probe(self, peer: _Peer, when: float) -> None:
        peer.next_probe_at = when
        self._schedule(when, "probe", peer)

    # --- topology: who probes whom (DESIGN section 9) -----------------------------------------

    def _is_discovered(self, contact_point: ContactPoint) -> bool:
        """In the last discovery result (a binary search: no per-node set of N contact points)."""
        discovered = self._discovered
        index = bisect.bisect_left(discovered, contact_point)
        return index < len(discovered) and discovered[index] == contact_point

    def _discovered_peer_count(self) -> int:
        return len(self._discovered) - self._self_discovered

    def _health_changed(self, peer: _Peer) -> None:
        """``peer`` is about to enter or leave failure backoff."""
        frontier = self._frontier
        if frontier is not None and peer.contact_point <= frontier:
            self._probe_set_dirty = True

    def _wanted_peers(self) -> set[ContactPoint] | None:
        """The peers to probe now (``None``: every discovered one), and the frontier of that choice.

        Walking up from the lowest discovered contact point: if every peer below this node is
        failing (or none is), this node is the would-be founder and probes every peer, since
        rules 3-5 are its to check. Otherwise it probes the peers up to and including the
        ``probe_fanout``-th healthy one: the failing ones below stay probed (at their backoff
        pace) so that it notices when they recover. Those are the founder or its first joiners,
        through whom it learns of the cluster. Beside them: the candidate it promised, and the
        peers its own open round asked.
        """
        peers = self._peers
        fanout = self._settings.probe_fanout
        me = self._self_contact_point
        if fanout is None:
            # The full mesh: the lowest discovered would form (health is not followed here).
            self._frontier = None
            self._would_be_founder = bool(self._discovered) and self._discovered[0] == me
            return None
        self._would_be_founder = False
        wanted: set[ContactPoint] = set()
        healthy = 0
        frontier: ContactPoint | None = None
        for contact_point in self._discovered:
            if contact_point == me:
                if healthy == 0:
                    self._frontier = me
                    self._would_be_founder = True
                    return None
                continue
            wanted.add(contact_point)
            frontier = contact_point
            peer = peers.get(contact_point)
            if peer is None or peer.healthy:  # (not probed yet: nothing says it fails)
                healthy += 1
                if healthy == fanout:
                    break
        self._frontier = frontier
        promise = self._promise
        if promise is not None and self._is_discovered(promise.to):
            wanted.add(promise.to)
        if self._candidacy is not None:
            wanted.update(cp for cp in self._candidacy.asked if self._is_discovered(cp))
        return wanted

    def _update_probe_set(self) -> None:
        self._probe_set_dirty = False
        wanted = self._wanted_peers()
        probed = self._peers
        if wanted is not None:
            for contact_point in sorted((cp for cp in probed if cp not in wanted), key=sort_key):
                self._stop_probing(self._peers[contact_point])
        wanted_count = self._discovered_peer_count() if wanted is None else len(wanted)
        if len(probed) == wanted_count:
            return  # (probed is now a subset of wanted)
        me = self._self_contact_point
        for contact_point in self._discovered:  # in order, so probes go out lowest first
            if contact_point in probed or contact_point == me:
                continue
            if wanted is None or contact_point in wanted:
                self._start_probing(contact_point)

    def _start_probing(self, contact_point: ContactPoint) -> None:
        promisee = self._undiscovered_promisee
        if promisee is not None and promisee.contact_point == contact_point:
            # The candidate we promised is discovered (again): an ordinary peer now, its probe
            # schedule kept.
            peer = promisee
            self._undiscovered_promisee = self._promisee_seeded = None
        else:
            peer = _Peer(contact_point, self._now)
        self._peers[contact_point] = peer
        self._dirty = True
        if not peer.outstanding:
            # At once, but never before probing resumes after a JoinFailed.
            self._schedule_probe(peer, max(self._now, self._join_retry_at))

    def _stop_probing(self, peer: _Peer) -> None:
        """``peer`` left the probe set: close its connection; its answer no longer counts."""
        contact_point = peer.contact_point
        # Forgotten (its timers die with it): what we knew of its health is stale by the time
        # it is probed again.
        del self._peers[contact_point]
        peer.outstanding = False
        self._answers.invalidate(contact_point, self._now)
        self._dirty = True
        self._actions.append(StopProbing(contact_point))

    # --- events -------------------------------------------------------------------------------

    def _handle(self, event: Event) -> None:
        # The event meets a state that is current at ``now`` (an answer that expired a moment
        # ago is stale, not fresh); what the event changes is then acted on in _advance.
        self._expire_before_event()
        if isinstance(event, ProbeSucceeded):
            self._on_probe_succeeded(event)
        elif isinstance(event, ProbeFailed):
            self._on_probe_failed(event)
        elif isinstance(event, ContactedBy):
            self._on_contacted_by(event)
        elif isinstance(event, ContactPointsDiscovered):
            self._on_discovered(event)
        elif isinstance(event, DiscoveryFailed):
            self._on_discovery_failed(event)
        else:
            self._on_join_failed(event)
        self._advance()

    def _on_discovered(self, event: ContactPointsDiscovered) -> None:
        self._lookup_outstanding = False
        self._last_lookup_result_at = self._now
        self._lookup_failures = 0
        # Applied even after the decision (the driver may report a lookup that was under way):
        # if the join then fails, the machine must resume from what discovery says now.
        settings, now = self._settings, self._now
        self._schedule_lookup(
            now + jittered(settings.discovery_interval, settings.discovery_jitter, self._rng)
        )
        # Most lookups return what the last one did: skip re-filtering (which rebuilds every
        # contact point) when the raw result is unchanged.
        if event.contact_points == self._last_raw_discovery:
            selected = self._discovered
        else:
            selected = select_contact_points(
                event.contact_points,
                fallback_port=settings.fallback_port,
                filter_on_fallback_port=settings.filter_on_fallback_port,
            )
            self._last_raw_discovery = event.contact_points
        changed = selected is not self._discovered and selected != self._discovered
        if changed:
            self._discovered = selected
            # Only what the machine holds about a contact point can need forgetting: its peer
            # state and its answer (O(what is held), not O(discovered)).
            held = {*self._peers, *self._answers.contact_points()}
            for contact_point in sorted(held, key=sort_key):
                if not self._is_discovered(contact_point):
                    self._forget(contact_point)
            self._self_discovered = self._is_discovered(self._self_contact_point)
            # New peers are probed at once if the probe set takes them (_update_probe_set).
            self._probe_set_dirty = True
        if changed or not self._discovery_succeeded:
            # After a failed lookup the stable margin counts again from the first success.
            self._stable_at = now + settings.stable_margin
            self._schedule(self._stable_at, "stable", None)
        self._discovery_succeeded = True
        self._ever_discovered = True
        self._discovery_failure = None
        self._dirty = True

    def _forget(self, contact_point: ContactPoint) -> None:
        """A contact point left discovery: stop probing it and drop its answer."""
        if self._answers.forget(contact_point, self._now):
            self._dirty = True
        peer = self._peers.pop(contact_point, None)
        if peer is None:
            return
        promise = self._promise
        if promise is not None and promise.to == contact_point:
            # Only an answer from the candidate we promised releases the promise: keep asking
            # it, until it answers or has been gone for promise_hold.
            self._undiscovered_promisee = peer
            self._promisee_heard_at = max(self._promisee_heard_at, self._now)
            self._schedule(self._promisee_heard_at + self._settings.promise_hold, "hold", None)
            return
        # After the decision every probed peer was already told StopProbing once.
        if self._decision is None:
            self._actions.append(StopProbing(contact_point))

    def _on_discovery_failed(self, event: DiscoveryFailed) -> None:
        self._lookup_outstanding = False
        self._last_lookup_result_at = self._now
        self._lookup_failures += 1
        settings = self._settings
        delay = backoff_delay(
            settings.discovery_interval,
            self._lookup_failures,
            settings.discovery_backoff_max,
            settings.discovery_jitter,
            self._rng,
        )
        self._schedule_lookup(self._now + delay)
        # Keep the contact points we have (probing and joining go on) but form nothing new
        # until discovery is trustworthy again.
        self._discovery_succeeded = False
        self._discovery_failure = event.reason
        self._dirty = True

    def _on_probe_succeeded(self, event: ProbeSucceeded) -> None:
        if self._decision is not None:
            return  # we are done: nothing to learn
        peer = self._peers.get(event.contact_point)
        discovered = peer is not None
        if peer is None:
            peer = self._undiscovered_promisee
            if peer is None or peer.contact_point != event.contact_point:
                # Not discovered, or not probed (StopProbing): its answers do not count.
                return
        settings, now = self._settings, self._now
        peer.outstanding = False
        if not peer.healthy:
            self._health_changed(peer)
        peer.consecutive_failures = 0
        # The first instant the answer is stale. observation_ttl is exactly the longest gap a
        # healthy peer can produce, so the sums of floats on both sides (probe time + reply
        # time vs. answer time + ttl) may disagree by a few ulps at the very edge; the
        # allowance keeps such a peer fresh without changing the window in any real sense.
        expires_at = now + settings.observation_ttl + _ROUNDING_ALLOWANCE
        listed = event.seed_nodes
        if event.founding and event.self_node not in listed:
            # A founder lists no members until its membership has formed; its answer is one
            # whose seed nodes include itself, so nobody mistakes it for "free" (DESIGN 8.5).
            listed = (*listed, event.self_node)
        seed_nodes = tuple(node for node in listed if node != self._self_node)
        propose_now = self._candidacy_waits_on(peer) and self._proposal_due(peer, event)
        self._on_promisee_answer(event, seed_nodes)
        self._schedule_probe(
            peer,
            now
            if propose_now
            else now + jittered(settings.probe_interval, settings.probe_jitter, self._rng),
        )
        if not discovered:
            return
        self._on_candidacy_answer(event)
        answer = Answer(
            observed_at=now,
            expires_at=expires_at,
            seed_nodes=seed_nodes,
            cluster_id=event.cluster_id,
            # Found by the fault tests: with max_seed_nodes=1 a founder restarted on its
            # address saw every answer list only its own (old) name and formed a second cluster.
            lists_only_self=bool(listed) and not seed_nodes,
            round=event.round,
            promise=event.promise,
            waiting=event.waiting,
        )
        if self._answers.record(peer.contact_point, answer, now):
            self._dirty = True
        self._schedule(expires_at, "expire", peer)

    def _on_probe_failed(self, event: ProbeFailed) -> None:
        peer = self._peers.get(event.contact_point)
        if peer is None:
            peer = self._undiscovered_promisee
            if peer is not None and peer.contact_point != event.contact_point:
                peer = None  # (not probed: a late failure says nothing)
        if peer is None or self._decision is not None:
            return
        settings = self._settings
        peer.outstanding = False
        if peer.healthy:
            self._health_changed(peer)
        peer.consecutive_failures += 1
        peer.last_failure, peer.last_failure_kind = event.reason, event.kind
        delay = backoff_delay(
            settings.probe_interval,
            peer.consecutive_failures,
            settings.probe_backoff_max,
            settings.probe_jitter,
            self._rng,
        )
        # The answer we hold stays: it expires by age only.
        self._schedule_probe(peer, self._now + delay)

    def _on_contacted_by(self, event: ContactedBy) -> None:
        if event.contact_point == self._self_contact_point:
            return
        if event.proposal_round is not None and self._promise_formation:
            self._on_proposal(event.contact_point, event.proposal_round)
        if self._decision is not None:
            return
        now = self._now
        peer = self._peers.get(event.contact_point)
        if peer is not None:
            # It just reached us, so it is alive: a peer we were backing off from is probed
            # at once instead of after up to probe_backoff_max (a late starter is confirmed
            # within a round trip).
            if not peer.healthy and not peer.outstanding:
                self._health_changed(peer)
                peer.consecutive_failures = 0
                self._schedule_probe(peer, now)
            return
        if self._lookup_outstanding or self._is_discovered(event.contact_point):
            return  # (a discovered peer this node does not probe: nothing to learn)
        # An unknown peer: discovery is behind. Look up as soon as the pacing allows.
        when = self._earliest_lookup()
        if self._lookup_due is None or when < self._lookup_due:
            self._schedule_lookup(when)

    def _earliest_lookup(self) -> float:
        """Now, but never closer than the shortest regular delay to the last lookup result.

        Used where an event makes a lookup due early (an unknown prober, a failed join), so
        neither a crowd of unknown probers nor a join failing at the probe pace can turn into
        a lookup storm against the discovery backend.
        """
        settings = self._settings
        spacing = settings.discovery_interval * (1 - settings.discovery_jitter)
        return max(self._now, self._last_lookup_result_at + spacing)

    def _on_join_failed(self, event: JoinFailed) -> None:
        settings, now = self._settings, self._now
        if isinstance(self._decision, JoinSelf):
            # The round it formed in is over: our documents now show it withdrawn (round n, not
            # a candidate, not founding), which releases its promisers.
            self._rounds_withdrawn += 1
            self._last_withdrawal = f"forming failed: {event.reason}"
            self._next_round_at = now + jittered(
                settings.probe_interval, settings.probe_jitter, self._rng
            )
        self._decision = None
        self._join_failure = event.reason
        self._join_retry_at = now + jittered(
            settings.probe_interval, settings.probe_jitter, self._rng
        )
        self._schedule(self._join_retry_at, "retry", None)
        # Answers from before the failure described a world in which the join should have
        # worked: they no longer count. Probing resumes after one probe period.
        for peer in self._peers.values():
            self._answers.invalidate(peer.contact_point, now)
            peer.outstanding = False
            peer.consecutive_failures = 0
            self._schedule_probe(peer, self._join_retry_at)  # live only while probed
        self._probe_set_dirty = True  # every peer is healthy again
        if not self._lookup_outstanding:
            self._schedule_lookup(self._earliest_lookup())
        self._dirty = True

    # --- the founding round (DESIGN section 8; the rules are in founding.py) --------------------

    def _proposal_sent_to(self, peer: _Peer) -> bool:
        candidacy = self._candidacy
        return candidacy is not None and peer.contact_point in candidacy.proposed

    def _proposal_due(self, peer: _Peer, event: ProbeSucceeded) -> bool:
        """Should this answer from a peer our round waits on be followed by a proposal now?

        Yes when the round has not proposed to it yet: the answer is to a probe sent before the
        round asked it. Yes too when the proposal went out ``probe_timeout`` ago or more and
        this answer still shows no promise of our round: a peer answers a proposal at once, so
        the proposal (or the answer carrying the promise) was lost. Without this, a watched peer
        would never hear it again: its pushes keep its answer fresh, every push postpones its
        probe, and the round would wait forever (found by the formation property: fanout 1,
        20 % loss, a 26 s probe interval).
        """
        candidacy = self._candidacy
        assert candidacy is not None  # the caller checked that the round waits on the peer
        sent_at = candidacy.proposed.get(peer.contact_point)
        if sent_at is None:
            return True
        return (
            event.round is not None  # it speaks founding rounds: it can promise
            and not promised_to_us(
                event, self_contact_point=self._self_contact_point, round=candidacy.round
            )
            and self._now >= sent_at + self._settings.probe_timeout
        )

    def _candidacy_waits_on(self, peer: _Peer) -> bool:
        """Does our open round still need ``peer``'s promise?"""
        candidacy = self._candidacy
        contact_point = peer.contact_point
        return (
            candidacy is not None
            and contact_point in candidacy.asked
            and contact_point not in candidacy.promised
        )

    def _proposal_for(self, peer: _Peer) -> int | None:
        """The round a probe of ``peer`` proposes, if our open round needs its promise."""
        if not self._candidacy_waits_on(peer):
            return None
        candidacy = self._candidacy
        assert candidacy is not None
        candidacy.proposed[peer.contact_point] = self._now
        return candidacy.round

    def _on_proposal(self, proposer: ContactPoint, round: int) -> None:
        promise = answer_proposal(
            proposer=proposer,
            round=round,
            self_contact_point=self._self_contact_point,
            decided=self._decision is not None,
            promise=self._promise,
            candidacy=self._candidacy,
        )
        if promise == self._promise:
            return
        assert promise is not None  # answer_proposal never drops a promise
        self._promise = promise
        self._promises_given += 1
        self._promisee_heard_at = self._now
        self._dirty = self._probe_set_dirty = True  # the promisee is probed
        if self._candidacy is not None:
            self._withdraw(f"promised {proposer} (round {round}), a lower candidate")
        if not self._is_discovered(proposer) and self._undiscovered_promisee is None:
            # Discovery is behind (the ContactedBy also makes a lookup due): probe the
            # candidate all the same, for only its answers can release this promise.
            peer = self._undiscovered_promisee = _Peer(proposer, self._now)
            self._schedule_probe(peer, self._now)
            self._schedule(self._promisee_heard_at + self._settings.promise_hold, "hold", None)

    def _on_promisee_answer(self, event: ProbeSucceeded, seed_nodes: tuple[str, ...]) -> None:
        """An answer from the candidate we promised settles the promise, or not yet."""
        promise = self._promise
        if promise is None or event.contact_point != promise.to:
            return
        self._promisee_heard_at = self._now
        if self._undiscovered_promisee is not None:
            self._schedule(self._now + self._settings.promise_hold, "hold", None)
            if seed_nodes:
                # It founded (or lists its cluster): join it, discovered or not.
                self._promisee_seeded = SeededAnswer(
                    event.contact_point, seed_nodes, event.cluster_id
                )
                self._dirty = True
        if released_by(promise, event):
            self._release()

    def _release(self) -> None:
        self._promise = None
        self._dirty = self._probe_set_dirty = True
        peer, self._undiscovered_promisee = self._undiscovered_promisee, None
        self._promisee_seeded = None
        if peer is not None and self._decision is None:
            self._actions.append(StopProbing(peer.contact_point))

    def _on_candidacy_answer(self, event: ProbeSucceeded) -> None:
        """An answer from a peer our open round asked: a promise, a refusal, or not yet."""
        candidacy = self._candidacy
        if candidacy is None or event.contact_point not in candidacy.asked:
            return
        me, round = self._self_contact_point, candidacy.round
        if promised_to_us(event, self_contact_point=me, round=round):
            if event.contact_point not in candidacy.promised:
                candidacy.promised.add(event.contact_point)
                self._dirty = True
            return
        refused = refusal(event, self_contact_point=me, round=round)
        if refused is not None:
            self._withdraw(refused)

    def _start_round(self, view: DecisionView) -> None:
        settings = self._settings
        self._round += 1
        self._rounds_started += 1
        # Only probed peers: under contact_with_all_contact_points a candidate is the lowest
        # discovered node that answers, and that one probes every peer (_wanted_peers).
        if settings.contact_with_all_contact_points:
            asked = frozenset(self._peers)
            needed = len(asked)
        else:
            asked = frozenset(cp for cp in self._peers if self._answers.is_fresh(cp))
            needed = settings.required_contact_points - 1
        self._candidacy = Candidacy(round=self._round, asked=asked, needed=needed)
        for contact_point in self._candidacy.asked_in_order:
            peer = self._peers[contact_point]
            if not peer.outstanding:
                self._schedule_probe(peer, self._now)
            # else: its answer is on the way; the proposal follows it at once.

    def _withdraw(self, why: str) -> None:
        """Abandon the open round; our documents now say so, which releases its promisers."""
        settings = self._settings
        self._candidacy = None
        self._probe_set_dirty = True  # the peers it asked need not stay probed
        self._rounds_withdrawn += 1
        self._last_withdrawal = why
        self._next_round_at = self._now + jittered(
            settings.probe_interval, settings.probe_jitter, self._rng
        )
        self._schedule(self._next_round_at, "round", None)
        self._dirty = True

    def _round_view(self) -> RoundView | None:
        candidacy = self._candidacy
        if candidacy is None:
            return None
        waiting_for = candidacy.lowest_unpromised
        answer = None if waiting_for is None else self._answers.get(waiting_for)
        return RoundView(
            round=candidacy.round,
            promised=len(candidacy.promised),
            needed=candidacy.needed,
            waiting_for=waiting_for,
            waiting_for_cannot_promise=answer is not None and answer.round is None,
            waiting_for_promised=None if answer is None else answer.promise,
        )

    # --- decision -----------------------------------------------------------------------------

    def _view(self) -> DecisionView:
        """What the rules read, as of now (a frozen snapshot: decide() is pure)."""
        answers = self._answers
        self_discovered = self._self_discovered
        # Only probed peers hold answers (_stop_probing voids the others'), so these count
        # the contact points the rules read: every discovered one for the would-be founder.
        fresh_count = answers.fresh_count + self_discovered
        probed_count = len(self._peers) + self_discovered
        discovered = self._discovered

        def fresh(contact_point: ContactPoint) -> bool:
            if contact_point == self._self_contact_point:
                return self_discovered
            return answers.is_fresh(contact_point)

        # ``discovered`` is sorted, so the first fresh one is the lowest; it is nearly always
        # among the first few, and the first missing one is looked for only if some are.
        lowest_fresh = next((cp for cp in discovered if fresh(cp)), None)
        first_missing = None
        if fresh_count < probed_count:
            probed = self._peers
            missing = next(cp for cp in discovered if cp in probed and not fresh(cp))
            answer = answers.get(missing)
            first_missing = MissingAnswer(
                contact_point=missing,
                last_observed_at=None if answer is None else answer.observed_at,
                last_failure=self._peers[missing].last_failure,
            )
        return DecisionView(
            settings=self._settings,
            now=self._now,
            self_contact_point=self._self_contact_point,
            self_discovered=self_discovered,
            discovered_count=len(discovered),
            probed_count=probed_count,
            fresh_count=fresh_count,
            lowest_fresh=lowest_fresh,
            lowest_fresh_waiting=self._waiting_of(lowest_fresh),
            would_be_founder=self._would_be_founder,
            seeded=(
                tuple(answers.seeded.values())
                if self._promisee_seeded is None
                else (*answers.seeded.values(), self._promisee_seeded)
            ),
            listing_only_self=tuple(sorted(answers.listing_only_self(), key=sort_key)),
            discovery_succeeded=self._discovery_succeeded,
            discovery_failure=self._discovery_failure,
            stable_at=self._stable_at,
            join_retry_at=self._join_retry_at,
            join_failure=self._join_failure,
            first_missing=first_missing,
            promise=self._promise,
            open_round=self._round_view(),
            last_round=self._round,
            next_round_at=self._next_round_at,
            last_withdrawal=self._last_withdrawal,
        )

    def _waiting_of(self, contact_point: ContactPoint | None) -> str | None:
        """What a peer's last answer said it waits for (as the would-be founder)."""
        if contact_point is None or contact_point == self._self_contact_point:
            return None
        answer = self._answers.get(contact_point)
        return None if answer is None else answer.waiting

    def _evaluate(self) -> None:
        self._dirty = False
        view = self._view()
        verdict = decide(view)
        if self._candidacy is not None and not (
            isinstance(verdict, JoinSelf)
            or (isinstance(verdict, Waiting) and verdict.rule in _ROUND_SURVIVES)
        ):
            # The rules no longer let this node form (discovery changed, an answer lists seed
            # nodes, a lower node answers, ...): the round cannot succeed as asked.
            why = verdict.reason_at(self._now) if isinstance(verdict, Waiting) else "decided"
            self._withdraw(why)
            view = self._view()
            verdict = decide(view)
        if isinstance(verdict, StartRound):
            self._start_round(view)
            view = self._view()
            verdict = decide(view)
        assert not isinstance(verdict, StartRound)  # a round was just opened
        self._verdict = verdict
        if isinstance(verdict, Waiting):
            return
        self._decision = verdict
        if self._candidacy is not None:
            # Formed in this round: the documents now say "founding" (round kept, never past it).
            self._candidacy = None
        # Remember what was observed now: the status must keep explaining this decision even
        # after later discovery results (still applied, in case the join fails) change it.
        self._clusters_at_decision = choose_cluster(view.seeded)[1] if view.seeded else []
        self._fresh_at_decision = view.fresh_count
        self._actions.append(verdict)
        # Decided: close every probe connection once. The management server keeps serving.
        for contact_point in sorted(self._peers, key=sort_key):
            self._peers[contact_point].outstanding = False
            self._actions.append(StopProbing(contact_point))

    def _phase(self) -> Phase:
        if self._decision is not None:
            return Phase.DECIDED
        if not self._ever_discovered or not self._discovered_peer_count():
            return Phase.DISCOVERING
        return Phase.PROBING

    def _reason(self) -> str:
        decision = self._decision
        if isinstance(decision, JoinSelf):
            return (
                f"formed a new cluster: {self._self_contact_point} is the lowest of "
                f"{self._fresh_at_decision} contact points with a fresh answer"
            )
        if isinstance(decision, JoinSeedNodes):
            reason = f"joining the cluster of seed nodes {', '.join(decision.seed_nodes)}"
            if len(self._clusters_at_decision) > 1:
                clusters = ", ".join(self._clusters_at_decision)
                reason += f"; multiple clusters observed: {clusters}"
            return reason
        if isinstance(self._verdict, Waiting):
            waiting = self._verdict.reason_at(self._now)
            if self.formation_overdue:
                deadline = self._settings.formation_deadline
                return f"no decision within the formation deadline ({deadline:g} s): {waiting}"
            return waiting
        return "deciding"  # pragma: no cover - a decision is always recorded with its verdict
