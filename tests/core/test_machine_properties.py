"""Property tests of BootstrapMachine: DESIGN section 6, invariants 1-4.

Testing policy
--------------
* **Scripted clock.** Time is a float the test moves; the machine never reads a clock and draws
  randomness only from a ``random.Random`` seeded by hypothesis, so every failure replays
  exactly. Drivers wake the machine the way real ones do (``handle_timer`` at its deadline) and
  also the ways a sloppy one might (late, at the same instant twice, just before a deadline).
* **An independent model.** :class:`CheckedMachine` wraps one machine and keeps its own account
  of what it fed in (lookup results, answers and their ages, failures, join failures). It
  recomputes every rule from that account, never from the machine's internals, and checks
  after *every* call:

  1. **Freshness** (invariant 1). An answer counts as fresh while ``now <= observed_at +
     observation_ttl``; ``status.contact_points[..].fresh`` must say exactly that (either way
     within ``FRESHNESS_ALLOWANCE`` past the boundary: the machine allows for rounding). The
     healthy drives then check the theorem behind the derived TTL: a peer that answers every probe
     within ``probe_timeout`` (or is watched and pushes every ``watch_push_interval``) is
     never stale, whatever the interval and jitter. The anchor's fixed 3 s window made
     formation impossible at a 5 s interval; this is the property that rules it out.
  2. **Decisions** (invariant 2). ``JoinSelf`` only when rules 2-5 hold at that instant;
     ``JoinSeedNodes`` non-empty, sorted, without ``self_node``, at most ``max_seed_nodes``, all
     from the fresh answers of one cluster; one decision per machine life unless a
     ``JoinFailed`` came in between, and none within one jittered probe interval of it.
     Conversely, when the model says a rule fires, the machine must have decided: decisions
     are re-evaluated at every event and deadline, so there is no tick lag to excuse a delay.
     These rules are what keeps a deployment to exactly one cluster.
  3. **Deadlines** (invariant 3). ``next_deadline()`` is never NaN and never before ``now``;
     ``handle_timer`` before the deadline emits nothing and changes neither the decision, the
     deadline, nor what the status reports. Drivers re-arm one timer from it: a deadline in
     the past would spin them, a NaN would hang them.
  4. **Pacing** (invariant 4). At most one outstanding ``Lookup`` and one outstanding ``Probe``
     per contact point (outstanding: emitted, not yet followed by a result event for it, not
     cancelled by ``StopProbing``). Each one is emitted inside the window the last result
     allows (success: ``interval * [1-j, 1+j]``; k-th consecutive failure:
     ``min(backoff_max, interval * 2**k * [1-j, 1+j])``), and never later than its end (the
     deadline reported is never past it). Documented shortcuts narrow the window: a newly
     discovered contact point is probed at once; ``ContactedBy`` makes a backed-off peer's
     probe due at once and an undiscovered one's lookup due at
     ``max(now, last_result + discovery_interval * (1-j))``; ``JoinFailed`` resumes probes
     after one jittered probe interval and makes the lookup due as that ContactedBy rule does
     (lookups stop while decided). This is the bound on traffic the project exists for.

* **Drivers.** Healthy drives (a discrete-event loop with latencies below the timeouts, with
  and without watch pushes), random event sequences, and a ``RuleBasedStateMachine`` that
  interleaves every kind of input, misuse included (misuse must raise ``UsageError`` and change
  nothing; no other exception may ever escape).

* **Phase transitions** observed anywhere here must be edges of the diagram in
  ``docs/design.md`` (parsed by ``test_phase_diagram``).

Comparisons of times use a relative tolerance of 1e-9: jitter factors are floats.

Machine bugs found here
-----------------------
Each bug these properties found is pinned by a minimal scripted test near the end of the
module. While a bug is open its test is marked ``xfail(strict=True)`` with "MACHINE BUG" in the
reason; the fix makes it pass, and strictness then demands the marker be removed.
"""

from __future__ import annotations

import heapq
import ipaddress
import itertools
import math
import random
from collections import Counter
from collections.abc import Sequence
from typing import Any

import attrs
import pytest
from hypothesis import currently_in_test_context, given, note
from hypothesis import event as hypothesis_event
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from bootstrap import (
    Action,
    BootstrapMachine,
    ContactedBy,
    ContactPoint,
    ContactPointsDiscovered,
    Decision,
    DiscoveryFailed,
    Event,
    JoinFailed,
    JoinSeedNodes,
    JoinSelf,
    Lookup,
    Phase,
    Probe,
    ProbeFailed,
    ProbeSucceeded,
    Settings,
    StopProbing,
    UsageError,
)

from .. import strategies
from .test_phase_diagram import documented_phase_edges

DOCUMENTED_EDGES = documented_phase_edges()
RELATIVE_TOLERANCE = 1e-9
# An answer just past observed_at + observation_ttl may still count as fresh by this much: the
# machine may allow for float rounding at the boundary (sums of floats on both sides of the
# comparison). Inside the allowance the model accepts either answer.
FRESHNESS_ALLOWANCE = 1e-5


def _slack(*values: float) -> float:
    return RELATIVE_TOLERANCE * max(1.0, *(abs(v) for v in values if math.isfinite(v)))


def _canonical_key(contact_point: ContactPoint) -> tuple[int, int, int, str, int]:
    """DESIGN's canonical order, recomputed: IPs before names, v4 before v6, then port."""
    port = -1 if contact_point.port is None else contact_point.port
    try:
        address = ipaddress.ip_address(contact_point.host)
    except ValueError:
        return (1, 0, 0, contact_point.host.lower(), port)
    return (0, address.version, int(address), "", port)


def _select(found: Sequence[ContactPoint], settings: Settings) -> tuple[ContactPoint, ...]:
    """DESIGN's filtering rule, recomputed: fallback port, then one port per multi-port host."""
    ports_by_host: dict[str, set[int]] = {}
    for contact_point in found:
        port = settings.fallback_port if contact_point.port is None else contact_point.port
        ports_by_host.setdefault(contact_point.host, set()).add(port)
    selected = set()
    for host, ports in ports_by_host.items():
        if settings.filter_on_fallback_port and len(ports) > 1:
            ports = ports & {settings.fallback_port}
        selected |= {ContactPoint(host, port) for port in ports}
    return tuple(sorted(selected, key=_canonical_key))


def _count(label: str) -> None:
    """Tally ``label`` in hypothesis statistics (``--hypothesis-show-statistics``)."""
    if currently_in_test_context():
        hypothesis_event(label)


@attrs.frozen
class Window:
    """When the next Lookup or Probe of one channel may go out, and why."""

    earliest: float
    latest: float
    why: str


def _paced(now: float, interval: float, jitter: float, why: str) -> Window:
    return Window(now + interval * (1 - jitter), now + interval * (1 + jitter), why)


def _backoff(now: float, interval: float, jitter: float, cap: float, failures: int) -> Window:
    scaled = interval * 2.0 ** min(failures, 1000)
    return Window(
        now + min(cap, scaled * (1 - jitter)),
        now + min(cap, scaled * (1 + jitter)),
        f"backoff after failure {failures}",
    )


@attrs.frozen
class Answer:
    """One answer a peer gave, as the model remembers it (self_node already removed)."""

    at: float
    seed_nodes: tuple[str, ...]
    cluster_id: str | None
    #: It listed seed nodes, all of them this node's own name (a cluster an earlier run of this
    #: node formed): it blocks forming while fresh.
    lists_only_self: bool = False


@attrs.frozen
class Snapshot:
    """What ``handle_timer`` before the deadline must leave unchanged."""

    deadline: float
    decision: Decision | None
    phase: Phase
    fresh: tuple[tuple[ContactPoint, bool], ...]


class CheckedMachine:
    """A BootstrapMachine plus an independent model of it, checked after every call."""

    def __init__(
        self,
        settings: Settings,
        *,
        self_contact_point: ContactPoint,
        self_node: str,
        seed: int,
    ) -> None:
        self.machine = BootstrapMachine(
            settings,
            self_contact_point=self_contact_point,
            self_node=self_node,
            rng=random.Random(seed),
        )
        self.settings = settings
        # The machine applies the fallback port to itself as discovery does to everyone.
        self.me = (
            self_contact_point
            if self_contact_point.port is not None
            else ContactPoint(self_contact_point.host, settings.fallback_port)
        )
        self.self_node = self_node
        self.now = -math.inf
        self.started = False
        self.edges: set[tuple[str, str]] = set()
        self.phase = Phase.DISCOVERING

        # Decision.
        self.decision: Decision | None = None
        self.decisions = 0
        self.decisions_total = 0
        self.join_failed_at = -math.inf

        # Discovery. Results count whenever they arrive, decided or not: if the join fails, the
        # machine must go on from what discovery says now, not from before the decision.
        self.lookup_outstanding = False
        self.lookup_window: Window | None = None  # None: outstanding, or decided
        self.regular_lookup_window = Window(-math.inf, math.inf, "no lookup result yet")
        self.lookup_failures = 0
        self.last_lookup_at = -math.inf
        self.last_lookup_ok: bool | None = None
        self.ever_discovered = False
        self.discovered: tuple[ContactPoint, ...] = ()
        self.stable_since = math.inf

        # Peers.
        self.answers: dict[ContactPoint, Answer] = {}
        self.last_observed: dict[ContactPoint, float] = {}
        self.failures: dict[ContactPoint, int] = {}
        self.probe_windows: dict[ContactPoint, Window] = {}
        self.probing: set[ContactPoint] = set()  # a Probe is outstanding
        # The probe set (DESIGN section 9): checked against the rule after every call.
        self.probed: set[ContactPoint] = set()
        self.must_stop: set[ContactPoint] = set()
        self.probes_sent: Counter[ContactPoint] = Counter()
        self.lookups_sent = 0

    # --- model queries ------------------------------------------------------------------------

    @property
    def peers(self) -> list[ContactPoint]:
        return [cp for cp in self.discovered if cp != self.me]

    def probe_set_by_rule(self) -> set[ContactPoint]:
        """DESIGN section 9, recomputed: the peers this node must probe, from the model's account.

        Every peer if ``probe_fanout`` is None or every peer below this node is failing (the
        would-be founder); otherwise the lowest peers up to and including the
        ``probe_fanout``-th that is not failing. (A promisee and a round's peers may be kept on
        top: see _check_probe_set.)
        """
        fanout = self.settings.probe_fanout
        if fanout is None:
            return set(self.peers)
        wanted: set[ContactPoint] = set()
        healthy = 0
        for contact_point in self.discovered:
            if contact_point == self.me:
                if healthy == 0:
                    return set(self.peers)
                continue
            wanted.add(contact_point)
            if self.failures[contact_point] == 0:
                healthy += 1
                if healthy == fanout:
                    break
        return wanted

    def freshness(self, contact_point: ContactPoint) -> bool | None:
        """True/False: fresh/stale by DESIGN's definition; None: inside the rounding allowance."""
        if contact_point == self.me:
            return True
        answer = self.answers.get(contact_point)
        if answer is None:
            return False
        expiry = answer.at + self.settings.observation_ttl
        if self.now <= expiry:
            return True
        return None if self.now <= expiry + FRESHNESS_ALLOWANCE else False

    def is_fresh(self, contact_point: ContactPoint, *, lenient: bool) -> bool:
        """Fresh for sure, or (``lenient``) possibly fresh within the rounding allowance."""
        fresh = self.freshness(contact_point)
        return fresh is True or (lenient and fresh is None)

    def fresh_seeded(self, *, lenient: bool) -> dict[ContactPoint, Answer]:
        return {
            cp: answer
            for cp, answer in self.answers.items()
            if answer.seed_nodes and self.is_fresh(cp, lenient=lenient)
        }

    def join_self_rules(self, *, possibly: bool) -> list[str]:
        """The JoinSelf rules that do not hold now (empty: the node must form).

        Answers inside the rounding allowance may count either way: ``possibly`` asks whether
        the rules can hold under some reading (a JoinSelf is then allowed), otherwise whether
        they hold under every reading (the machine must then have decided).
        """
        settings = self.settings
        discovered = self.discovered
        # Fresh answers the rules need, and fresh answers that block forming.
        needed = [cp for cp in discovered if self.is_fresh(cp, lenient=possibly)]
        blocking = [cp for cp in discovered if self.is_fresh(cp, lenient=not possibly)]
        # Rule 5 reads the answers of the probe set (and this node's own, if discovered).
        all_probed_fresh = len(needed) == len(self.probed) + (self.me in discovered)
        all_fresh = len(needed) == len(discovered)
        broken = []
        if self.fresh_seeded(lenient=not possibly):
            broken.append("a fresh answer lists seed nodes")
        if any(self.answers[cp].lists_only_self for cp in blocking if cp in self.answers):
            broken.append("a fresh answer lists only this node's own name")
        if not settings.new_cluster_enabled:
            broken.append("new_cluster_enabled is off")
        if not self.last_lookup_ok:
            broken.append("the last lookup did not succeed")
        if self.me not in discovered:
            broken.append("self is not discovered")
        if len(needed) < settings.required_contact_points:
            broken.append(f"{len(needed)} fresh < {settings.required_contact_points} required")
        fast_path = settings.expected_contact_points == len(discovered) and all_fresh
        if self.now < self.stable_since + settings.stable_margin and not fast_path:
            broken.append("discovered set not stable and no fast path")
        if settings.contact_with_all_contact_points and not all_probed_fresh:
            broken.append("some probed contact point has no fresh answer")
        if any(_canonical_key(cp) < _canonical_key(self.me) for cp in blocking):
            broken.append("self is not the lowest fresh contact point")
        return broken

    # --- calls ----------------------------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        self.machine.start(now)
        self.started = True
        self.now = now
        self.lookup_window = Window(now, now, "first lookup at start")
        return self._after_call()

    def timer(self, now: float) -> list[Action]:
        before = self._snapshot()
        self.machine.handle_timer(now)
        self.now = now
        actions = self._after_call()
        if now < before.deadline:
            assert actions == [], f"handle_timer({now}) before deadline emitted {actions}"
            assert self._snapshot() == before, "handle_timer before the deadline changed state"
        return actions

    def feed(self, event: Event, now: float, *, wake_first: bool = False) -> list[Action]:
        """Feed ``event`` at ``now``; ``wake_first``: call ``handle_timer(now)`` before it.

        Without ``wake_first`` the event may meet deadlines that fell due by ``now``: answers
        expire before it, and the Lookups and Probes due then follow it (a push arriving when
        its peer's probe falls due postpones the probe). The model applies the event and then
        checks whatever came out, which is that order.
        """
        rejected = isinstance(event, JoinFailed) and self.decision is None
        due = now >= self.machine.next_deadline()
        # Misuse is checked from a state with nothing due, where "changes nothing" is exact
        # (see test_rejected_event_leaves_no_deadline_in_the_past for the other case). The
        # wake-up may decide, which makes the JoinFailed valid after all.
        actions = self.timer(now) if due and (wake_first or rejected) else []
        if isinstance(event, JoinFailed) and self.decision is None:
            self.expect_misuse(lambda: self.machine.handle(event, now))
            return actions  # a rejected call does not move the machine's clock either
        self.machine.handle(event, now)
        self.now = now
        self._apply(event)
        return actions + self._after_call()

    def expect_misuse(self, call: Any) -> None:
        """``call`` must raise UsageError and leave the machine exactly as it was."""
        before = self._snapshot()
        with pytest.raises(UsageError):
            call()
        assert self.machine.next_action() is None, "a rejected call emitted an action"
        assert self._snapshot() == before, "a rejected call changed state"

    # --- model updates ------------------------------------------------------------------------

    def _apply(self, event: Event) -> None:
        if isinstance(event, ContactPointsDiscovered):
            self._discovered(event)
        elif isinstance(event, DiscoveryFailed):
            self._discovery_failed()
        elif isinstance(event, ProbeSucceeded):
            self._answered(event)
        elif isinstance(event, ProbeFailed):
            self._probe_failed(event.contact_point)
        elif isinstance(event, ContactedBy):
            self._contacted_by(event.contact_point)
        else:
            assert isinstance(event, JoinFailed)
            self._join_failed()

    def _discovered(self, event: ContactPointsDiscovered) -> None:
        settings, now = self.settings, self.now
        selected = _select(event.contact_points, settings)
        self.lookup_outstanding = False
        self.lookup_failures = 0
        self.last_lookup_at = now
        self.regular_lookup_window = _paced(
            now, settings.discovery_interval, settings.discovery_jitter, "after a lookup"
        )
        decided = self.decision is not None
        if not decided:
            self.lookup_window = self.regular_lookup_window
        if selected != self.discovered or not self.last_lookup_ok:
            self.stable_since = now
        kept = set(selected)
        for contact_point in self.peers:
            if contact_point not in kept:
                if not decided and contact_point in self.probed:
                    # (after the decision every probed peer was stopped already)
                    self.must_stop.add(contact_point)
                self._forget(contact_point)
        for contact_point in selected:
            if contact_point != self.me and contact_point not in self.discovered:
                # Probed at once if it enters the probe set (_after_call).
                self.failures[contact_point] = 0
        self.discovered = selected
        self.last_lookup_ok = True
        self.ever_discovered = True

    def _forget(self, contact_point: ContactPoint) -> None:
        self.probed.discard(contact_point)
        self.answers.pop(contact_point, None)
        self.last_observed.pop(contact_point, None)
        self.failures.pop(contact_point, None)
        self.probe_windows.pop(contact_point, None)

    def _discovery_failed(self) -> None:
        settings = self.settings
        self.lookup_outstanding = False
        self.lookup_failures += 1
        self.last_lookup_at = self.now
        self.last_lookup_ok = False
        self.regular_lookup_window = _backoff(
            self.now,
            settings.discovery_interval,
            settings.discovery_jitter,
            settings.discovery_backoff_max,
            self.lookup_failures,
        )
        if self.decision is None:
            self.lookup_window = self.regular_lookup_window

    def _is_peer(self, contact_point: ContactPoint) -> bool:
        return contact_point != self.me and contact_point in self.discovered

    def _answered(self, event: ProbeSucceeded) -> None:
        contact_point, settings, now = event.contact_point, self.settings, self.now
        if self.decision is not None or contact_point not in self.probed:
            return  # (an answer after StopProbing counts for nothing)
        self.probing.discard(contact_point)
        self.failures[contact_point] = 0
        listed = event.seed_nodes
        if event.founding and event.self_node not in listed:
            listed = (*listed, event.self_node)  # a founder counts as listing itself
        seed_nodes = tuple(node for node in listed if node != self.self_node)
        self.answers[contact_point] = Answer(
            now, seed_nodes, event.cluster_id, lists_only_self=bool(listed) and not seed_nodes
        )
        self.last_observed[contact_point] = now
        self.probe_windows[contact_point] = _paced(
            now, settings.probe_interval, settings.probe_jitter, "after an answer"
        )

    def _probe_failed(self, contact_point: ContactPoint) -> None:
        settings = self.settings
        if self.decision is not None or contact_point not in self.probed:
            return
        self.probing.discard(contact_point)
        self.failures[contact_point] += 1
        self.probe_windows[contact_point] = _backoff(
            self.now,
            settings.probe_interval,
            settings.probe_jitter,
            settings.probe_backoff_max,
            self.failures[contact_point],
        )

    def _contacted_by(self, contact_point: ContactPoint) -> None:
        settings, now = self.settings, self.now
        if self.decision is not None or contact_point == self.me:
            return
        if self._is_peer(contact_point):
            if self.failures[contact_point] > 0 and contact_point not in self.probing:
                self.failures[contact_point] = 0
                self.probe_windows[contact_point] = Window(now, now, "ContactedBy in backoff")
            return
        if self.lookup_outstanding:
            return
        when = max(
            now,
            self.last_lookup_at + settings.discovery_interval * (1 - settings.discovery_jitter),
        )
        window = self.lookup_window
        assert window is not None
        self.lookup_window = Window(
            min(window.earliest, when), min(window.latest, when), "ContactedBy undiscovered"
        )

    def _join_failed(self) -> None:
        settings, now = self.settings, self.now
        _count("JoinFailed after a decision")
        self.decision = None
        self.decisions = 0
        self.join_failed_at = now
        # Answers from before the failure no longer count; probing resumes after one
        # jittered probe interval.
        self.answers.clear()
        for contact_point in self.peers:
            self.failures[contact_point] = 0
            if contact_point in self.probed:
                self.probe_windows[contact_point] = self._join_retry_window()
        if not self.lookup_outstanding:
            # Lookups stop while decided; the next one is due at once if the regular pace
            # allows, but never closer to the last result than the shortest regular delay
            # (a join failing at the probe pace must not drive lookups at the probe pace).
            earliest = self.last_lookup_at + settings.discovery_interval * (
                1 - settings.discovery_jitter
            )
            self.lookup_window = Window(
                max(now, earliest),
                max(now, self.regular_lookup_window.latest),
                "after JoinFailed",
            )

    def _join_retry_window(self) -> Window:
        """Probing resumes one jittered probe interval after a JoinFailed."""
        settings = self.settings
        return _paced(
            self.join_failed_at, settings.probe_interval, settings.probe_jitter, "after JoinFailed"
        )

    def _probe_set_changed(self, probed: set[ContactPoint]) -> set[ContactPoint]:
        """Check the machine's new probe set; set the entrants' windows; return the leavers."""
        self._check_probe_set(probed)
        entered, left = probed - self.probed, self.probed - probed
        for contact_point in entered:
            # Probed at once, but never before probing resumes after a JoinFailed.
            retry = self._join_retry_window()
            self.probe_windows[contact_point] = Window(
                max(self.now, retry.earliest),
                max(self.now, retry.latest),
                "entered the probe set",
            )
        self.must_stop |= left
        self.probed = probed
        return left

    def _check_probe_set(self, probed: set[ContactPoint]) -> None:
        """The probe set is the rule's, plus only what the founding round keeps on top of it."""
        by_rule = self.probe_set_by_rule()
        assert by_rule <= probed, (
            f"not probed although the rule says so: {sorted(by_rule - probed, key=str)}"
        )
        advertisement = self.machine.advertisement
        promisee = {advertisement.promise.to} if advertisement.promise is not None else set()
        # An open round keeps the peers it asked (probed when it opened) until it is over.
        kept_by_round = self.probed if advertisement.candidate else set()
        extra = probed - by_rule - promisee - kept_by_round
        assert not extra, f"probed beyond the rule: {sorted(extra, key=str)}"
        _count(f"probe set: {len(probed)} of {len(self.peers)} peers")

    def _left_probe_set(self, contact_point: ContactPoint) -> None:
        """Its answer no longer counts and its health is forgotten (status keeps the age)."""
        self.answers.pop(contact_point, None)
        self.failures[contact_point] = 0
        self.probe_windows.pop(contact_point, None)
        self.probing.discard(contact_point)

    # --- checks ---------------------------------------------------------------------------------

    def _snapshot(self) -> Snapshot:
        status = self.machine.status
        return Snapshot(
            deadline=self.machine.next_deadline(),
            decision=self.machine.decision,
            phase=status.phase,
            fresh=tuple((point.contact_point, point.fresh) for point in status.contact_points),
        )

    def _after_call(self) -> list[Action]:
        # Decided, the machine keeps its probe set as it was (it resumes after a JoinFailed).
        left = set()
        if self.machine.decision is None or self.decision is None:
            left = self._probe_set_changed(set(self.machine.probed_contact_points))
        actions = []
        while (action := self.machine.next_action()) is not None:
            actions.append(action)
            self._check_action(action)
        assert not self.must_stop, f"no StopProbing for {sorted(self.must_stop, key=str)}"
        for contact_point in left:
            self._left_probe_set(contact_point)
        assert self.machine.decision == self.decision
        self._check_deadline()
        self._check_status()
        self._check_nothing_overdue()
        return actions

    def _check_action(self, action: Action) -> None:
        now = self.now
        if isinstance(action, Lookup):
            assert self.decision is None, "Lookup after the decision"
            assert not self.lookup_outstanding, "a second Lookup while one is outstanding"
            window = self.lookup_window
            assert window is not None
            assert now >= window.earliest - _slack(now), f"Lookup at {now} too early: {window}"
            self.lookup_outstanding = True
            self.lookup_window = None
            self.lookups_sent += 1
        elif isinstance(action, Probe):
            contact_point = action.contact_point
            assert self.decision is None, f"Probe({contact_point}) after the decision"
            assert contact_point != self.me, "the machine probed itself"
            assert contact_point in self.discovered, f"Probe({contact_point}): not discovered"
            assert contact_point in self.probed, f"Probe({contact_point}): not in the probe set"
            assert contact_point not in self.probing, f"two Probes of {contact_point} outstanding"
            window = self.probe_windows.pop(contact_point)
            # A founding round's proposal goes out at once (it follows the answer to the probe
            # that was in flight when the round opened); every other probe keeps its pace.
            assert action.round is not None or now >= window.earliest - _slack(now), (
                f"Probe({contact_point}) at {now} too early: {window}"
            )
            self.probing.add(contact_point)
            self.probes_sent[contact_point] += 1
        elif isinstance(action, StopProbing):
            contact_point = action.contact_point
            assert contact_point in self.must_stop, f"unexpected StopProbing({contact_point})"
            self.must_stop.discard(contact_point)
            self.probing.discard(contact_point)
        else:
            assert isinstance(action, JoinSelf | JoinSeedNodes), action
            self._check_decision(action)
            _count(f"decided: {type(action).__name__}")
            self.decision = action
            self.decisions += 1
            self.decisions_total += 1
            self.must_stop |= self.probed
            self.lookup_window = None
            self.probe_windows.clear()

    def _check_decision(self, decision: Decision) -> None:
        settings, now = self.settings, self.now
        assert self.decision is None, f"{decision} while {self.decision} stands"
        assert self.decisions == 0, "a second decision without a JoinFailed in between"
        retry_at = self.join_failed_at + settings.probe_interval * (1 - settings.probe_jitter)
        assert now >= retry_at - _slack(now), "decided within a probe interval of JoinFailed"
        if isinstance(decision, JoinSeedNodes):
            seed_nodes = decision.seed_nodes
            assert seed_nodes, "JoinSeedNodes with no seed nodes"
            assert self.self_node not in seed_nodes, "JoinSeedNodes lists this node itself"
            assert len(seed_nodes) <= settings.max_seed_nodes
            assert list(seed_nodes) == sorted(set(seed_nodes)), "seed nodes not sorted/unique"
            clusters: dict[str | None, set[str]] = {}
            for answer in self.fresh_seeded(lenient=True).values():
                clusters.setdefault(answer.cluster_id, set()).update(answer.seed_nodes)
            assert any(set(seed_nodes) <= nodes for nodes in clusters.values()), (
                f"seed nodes {seed_nodes} are not from the fresh answers of one cluster {clusters}"
            )
        else:
            broken = self.join_self_rules(possibly=True)
            assert not broken, f"JoinSelf at {now} although: {'; '.join(broken)}"

    def _check_deadline(self) -> None:
        deadline = self.machine.next_deadline()
        assert not math.isnan(deadline), "next_deadline() is NaN"
        assert deadline >= self.now, f"next_deadline() {deadline} is before now {self.now}"

    def _check_status(self) -> None:
        status = self.machine.status
        expected = (
            Phase.DECIDED
            if self.decision is not None
            else Phase.DISCOVERING
            if not self.ever_discovered or not self.peers
            else Phase.PROBING
        )
        assert status.phase == expected, f"phase {status.phase}, model says {expected}"
        # The O(1) readers the node logs from say what the status says.
        machine = self.machine
        assert (machine.phase, machine.waiting_on, machine.reason) == (
            status.phase,
            status.waiting_on,
            status.reason,
        )
        if expected != self.phase:
            edge = (self.phase.value, expected.value)
            assert edge in DOCUMENTED_EDGES, f"undocumented phase transition {edge}"
            _count(f"phase edge {edge[0]} -> {edge[1]}")
            self.edges.add(edge)
            self.phase = expected
        assert status.decision == self.decision
        assert isinstance(status.reason, str)
        assert status.reason
        listed = [point.contact_point for point in status.contact_points]
        assert sorted(listed, key=_canonical_key) == list(self.discovered)
        for point in status.contact_points:
            contact_point = point.contact_point
            expected_fresh = self.freshness(contact_point)
            # A decided machine no longer ages answers: it has stopped deciding.
            if self.decision is None and expected_fresh is not None:
                assert point.fresh == expected_fresh, (
                    f"{contact_point}: status fresh={point.fresh} at {self.now}, answer "
                    f"{self.answers.get(contact_point)}, ttl {self.settings.observation_ttl}"
                )
            if contact_point != self.me:
                assert point.probed == (contact_point in self.probed)
                assert point.consecutive_failures == self.failures[contact_point]
                assert point.last_observed_at == self.last_observed.get(contact_point)
                answer = self.answers.get(contact_point)
                assert point.seed_nodes == (answer.seed_nodes if answer else ())

    def _check_nothing_overdue(self) -> None:
        """Every channel's next send is pending no later than its window allows."""
        if self.decision is not None:
            return
        deadline, now = self.machine.next_deadline(), self.now
        if not self.lookup_outstanding:
            window = self.lookup_window
            assert window is not None
            assert deadline <= window.latest + _slack(window.latest), (
                f"next deadline {deadline} leaves the Lookup past {window}"
            )
        for contact_point in self.probed:
            if contact_point not in self.probing:
                window = self.probe_windows[contact_point]
                assert deadline <= window.latest + _slack(window.latest), (
                    f"next deadline {deadline} leaves Probe({contact_point}) past {window}"
                )
        # Rule completeness: when a rule fires, the machine has decided (no tick lag).
        settings = self.settings
        retry_over = self.join_failed_at + settings.probe_interval * (1 + settings.probe_jitter)
        if now < retry_over + _slack(now):
            return
        seeded = self.fresh_seeded(lenient=False)
        assert not seeded, "a fresh answer lists seed nodes, yet no decision"
        if settings.formation == "lowest-address":
            assert self.join_self_rules(possibly=False), (
                "every JoinSelf rule holds, yet no decision"
            )
        elif not self.join_self_rules(possibly=False):
            # The founding round: when the rules hold, the machine has opened a round (or holds
            # a promise, or waits its one period after a withdrawn round): no tick lag either.
            advertisement = self.machine.advertisement
            assert (
                advertisement.candidate
                or advertisement.promise is not None
                or self.machine.status.waiting_on == "round-retry"
            ), f"every JoinSelf rule holds, yet no round open: {self.machine.status.reason}"


# --- healthy drives (invariant 1) -------------------------------------------------------------

ME_NODE = "tcp://svc@me:2552"


def _peer_node(contact_point: ContactPoint) -> str:
    return f"tcp://svc@{contact_point}"


def _latency(fractions: Sequence[float], index: int, bound: float) -> float:
    """The ``index``-th latency: a fraction of ``bound``, strictly below it."""
    return min(fractions[index % len(fractions)] * bound, math.nextafter(bound, 0.0))


@attrs.define
class HealthyDrive:
    """A discrete-event loop: every Lookup and Probe is answered within its timeout."""

    checked: CheckedMachine
    found: list[ContactPoint]
    probe_latencies: list[float]
    lookup_latencies: list[float]
    watch: bool
    max_calls: int = 1000
    first_answer: dict[ContactPoint, float] = attrs.Factory(dict)
    last_answer: dict[ContactPoint, float] = attrs.Factory(dict)
    _queue: list[tuple[float, int, str, Any]] = attrs.Factory(list)
    _sequence: Any = attrs.Factory(itertools.count)
    _lookups: int = 0
    _probes: int = 0

    def _at(self, when: float, kind: str, payload: Any = None) -> None:
        heapq.heappush(self._queue, (when, next(self._sequence), kind, payload))

    def _react(self, actions: list[Action]) -> None:
        settings, now = self.checked.settings, self.checked.now
        for action in actions:
            if isinstance(action, Lookup):
                latency = _latency(self.lookup_latencies, self._lookups, settings.discovery_timeout)
                self._lookups += 1
                self._at(now + latency, "found")
            elif isinstance(action, Probe):
                latency = _latency(self.probe_latencies, self._probes, settings.probe_timeout)
                self._probes += 1
                self._at(now + latency, "answer", action.contact_point)

    def run(self, start: float, until: float) -> bool:
        """Drive from ``start`` to ``until``; False if ``max_calls`` ran out first."""
        checked = self.checked
        settings = checked.settings
        # The watch endpoint pushes "at least every" watch_push_interval; a hair under it keeps
        # pushes off the exact instants other peers' probes fall due (jitter 0): events of one
        # instant are delivered one by one, and actions due then follow the first of them.
        push_every = settings.watch_push_interval * (1 - 1e-6)
        self._react(checked.start(start))
        for _ in range(self.max_calls):
            deadline = checked.machine.next_deadline()
            next_event = self._queue[0][0] if self._queue else math.inf
            if min(deadline, next_event) > until:
                return True
            if next_event <= deadline:
                now, _, kind, payload = heapq.heappop(self._queue)
                if kind == "found":
                    actions = checked.feed(ContactPointsDiscovered(self.found), now)
                else:
                    contact_point = payload
                    event = ProbeSucceeded(contact_point, _peer_node(contact_point), ())
                    actions = checked.feed(event, now)
                    if contact_point in checked.discovered and checked.decision is None:
                        if contact_point not in self.first_answer:
                            self.first_answer[contact_point] = now
                            if self.watch:
                                self._at(now + push_every, "push", contact_point)
                        elif kind == "push":
                            self._at(now + push_every, "push", contact_point)
                        self.last_answer[contact_point] = now
            else:
                actions = checked.timer(deadline)
            self._react(actions)
            self.check_fresh()
        return False

    def check_fresh(self) -> None:
        """Invariant 1: every peer that answered once is fresh now, by age and by status."""
        checked = self.checked
        ttl = checked.settings.observation_ttl
        status = {point.contact_point: point for point in checked.machine.status.contact_points}
        for contact_point, last in self.last_answer.items():
            if contact_point not in checked.probed:
                continue  # (its answers no longer count: nothing to keep fresh)
            # The theorem behind observation_ttl (up to float rounding of the times).
            assert checked.now <= last + ttl + _slack(checked.now), (
                f"{contact_point}: no answer for {checked.now - last} s > ttl {ttl}"
            )
            assert status[contact_point].fresh, f"{contact_point} reported stale at {checked.now}"


latency_fractions = st.lists(
    st.floats(0.0, 1.0, exclude_max=True, allow_nan=False), min_size=1, max_size=6
)


@st.composite
def healthy_setups(
    draw: st.DrawFn, /, **fixed: Any
) -> tuple[Settings, ContactPoint, list[ContactPoint]]:
    """Settings, this node's contact point, and what discovery reports (peers, maybe self)."""
    settings = draw(strategies.bootstrap_settings(**fixed))
    pool = draw(
        strategies.contact_point_pools(min_size=2, max_size=5, fallback_port=settings.fallback_port)
    )
    if draw(st.booleans()):  # the lowest forms: make this node the lowest half the time
        pool.sort(key=_canonical_key)
    me, peers = pool[0], pool[1:]
    found = [*peers, me] if draw(st.integers(0, 3)) else list(peers)
    return settings, me, found


@given(
    healthy_setups(new_cluster_enabled=False),
    latency_fractions,
    latency_fractions,
    st.booleans(),
    st.integers(0, 2**32),
)
def test_healthy_peer_is_never_stale(
    setup: tuple[Settings, ContactPoint, list[ContactPoint]],
    probe_latencies: list[float],
    lookup_latencies: list[float],
    watch: bool,
    seed: int,
) -> None:
    """Invariant 1: peers answering within probe_timeout (or watched) never go stale."""
    settings, me, found = setup
    checked = CheckedMachine(settings, self_contact_point=me, self_node=ME_NODE, seed=seed)
    drive = HealthyDrive(checked, found, probe_latencies, lookup_latencies, watch)
    until = settings.discovery_timeout + 3 * settings.observation_ttl
    completed = drive.run(0.0, until)
    _count("healthy drive completed" if completed else "healthy drive hit max_calls")
    assert checked.decision is None  # nothing may stop the probing this property is about
    # Nobody fails, so the probe set is the rule's exactly (DESIGN section 9): the lowest
    # probe_fanout peers, or every peer when this node is the lowest.
    peers = checked.probed
    assert peers == checked.probe_set_by_rule()
    assert set(checked.probes_sent) <= peers, "a peer outside the probe set was probed"
    if completed:
        assert set(drive.first_answer) == peers, "a healthy peer never answered"
    if watch:
        # A watched peer is probed once (to open the watch); its pushes pre-empt every poll.
        assert all(checked.probes_sent[cp] == 1 for cp in peers), checked.probes_sent


# --- who probes whom under failures (DESIGN section 9) ------------------------------------------


@st.composite
def _topology_drives(
    draw: st.DrawFn,
) -> tuple[Settings, ContactPoint, list[ContactPoint], list[tuple[float, str, int]]]:
    """Many peers, a small fanout, and peers failing, recovering and leaving discovery.

    ``new_cluster_enabled`` is off and answers list no seed nodes, so no decision ends the
    probing: every step exercises the probe set (which peers, which leave, which enter).
    """
    settings = draw(
        strategies.bootstrap_settings(
            new_cluster_enabled=False, probe_fanout=draw(st.integers(1, 3))
        )
    )
    pool = draw(
        strategies.contact_point_pools(min_size=4, max_size=8, fallback_port=settings.fallback_port)
    )
    me = draw(st.sampled_from(pool))
    kinds = st.sampled_from(["fail", "fail", "answer", "answer", "contacted", "drop", "all"])
    steps = draw(
        st.lists(
            st.tuples(st.floats(0.0, 3.0), kinds, st.integers(0, len(pool) - 1)),
            min_size=1,
            max_size=40,
        )
    )
    return settings, me, pool, steps


@given(_topology_drives(), st.integers(0, 2**32))
def test_probe_set_follows_failures_recoveries_and_discovery(
    drive: tuple[Settings, ContactPoint, list[ContactPoint], list[tuple[float, str, int]]],
    seed: int,
) -> None:
    """The probe set is the rule's after every call: failing peers are passed over, not dropped.

    ``CheckedMachine`` recomputes the rule (``probe_set_by_rule``) from its own account of
    failures and discovery, and checks the machine's set, the Probes it sends (only to members,
    entrants at once) and a StopProbing for every leaver.
    """
    settings, me, pool, steps = drive
    checked = CheckedMachine(settings, self_contact_point=me, self_node=ME_NODE, seed=seed)
    now = 0.0
    checked.start(now)
    checked.feed(ContactPointsDiscovered(tuple(pool)), now)
    for delay, kind, index in steps:
        now += delay
        contact_point = pool[index]
        if kind == "fail":
            checked.feed(ProbeFailed(contact_point, "connection refused"), now, wake_first=True)
        elif kind == "answer":
            event = ProbeSucceeded(contact_point, _peer_node(contact_point), ())
            checked.feed(event, now, wake_first=True)
        elif kind == "contacted":
            checked.feed(ContactedBy(contact_point), now, wake_first=True)
        elif kind == "drop":
            found = tuple(cp for cp in pool if cp != contact_point)
            checked.feed(ContactPointsDiscovered(found), now, wake_first=True)
        else:
            checked.feed(ContactPointsDiscovered(tuple(pool)), now, wake_first=True)
        assert checked.decision is None


@st.composite
def _forming_setups(draw: st.DrawFn) -> tuple[Settings, ContactPoint, list[ContactPoint]]:
    probe_interval = draw(strategies.durations(0.1, 5.0))
    scaled = strategies.durations(0.1, 5.0).map(lambda factor: factor * probe_interval)
    return draw(
        healthy_setups(
            new_cluster_enabled=True,
            # The anchor's rule: it forms the instant the rules hold (the founding round's
            # timing has properties of its own in test_founding_properties.py).
            formation="lowest-address",
            required_contact_points=draw(st.integers(1, 4)),
            probe_interval=probe_interval,
            probe_backoff_max=probe_interval * 2,
            probe_jitter=draw(st.floats(0.0, 0.5)),
            probe_timeout=draw(scaled),
            stable_margin=draw(scaled),
            discovery_timeout=draw(scaled),
            discovery_interval=draw(scaled),
            discovery_backoff_max=5.0 * probe_interval * 5.0,
        )
    )


@given(_forming_setups(), latency_fractions, latency_fractions, st.integers(0, 2**32))
def test_healthy_lowest_node_forms_without_tick_lag(
    setup: tuple[Settings, ContactPoint, list[ContactPoint]],
    probe_latencies: list[float],
    lookup_latencies: list[float],
    seed: int,
) -> None:
    """With healthy peers the lowest node forms as soon as margin and answers allow; no other."""
    settings, me, found = setup
    checked = CheckedMachine(settings, self_contact_point=me, self_node=ME_NODE, seed=seed)
    drive = HealthyDrive(checked, found, probe_latencies, lookup_latencies, False, max_calls=5000)
    first_lookup = _latency(lookup_latencies, 0, settings.discovery_timeout)
    by = first_lookup + max(settings.stable_margin, settings.probe_timeout)
    assert drive.run(0.0, by + _slack(by))
    discovered = _select(found, settings)
    lowest = min(discovered, key=_canonical_key)
    can_form = (
        me in discovered and len(discovered) >= settings.required_contact_points and lowest == me
    )
    note(f"discovered={discovered} me={me} can_form={can_form}")
    if can_form:
        assert isinstance(checked.decision, JoinSelf), checked.machine.status.reason
    elif settings.contact_with_all_contact_points:
        assert checked.decision is None


# --- random event sequences -------------------------------------------------------------------


@st.composite
def random_drives(
    draw: st.DrawFn,
) -> tuple[Settings, ContactPoint, list[ContactPoint], list[strategies.Step]]:
    settings = draw(strategies.bootstrap_settings(stable_margin=draw(strategies.durations(0.1, 3))))
    pool = draw(strategies.contact_point_pools(fallback_port=settings.fallback_port, max_size=5))
    me = draw(st.sampled_from(pool))
    steps = draw(
        strategies.event_sequences(
            pool, self_node=ME_NODE, fallback_port=settings.fallback_port, max_delay=4.0
        )
    )
    return settings, me, pool, steps


@given(random_drives(), st.integers(0, 2**32), st.booleans())
def test_random_event_sequences_keep_invariants(
    drive: tuple[Settings, ContactPoint, list[ContactPoint], list[strategies.Step]],
    seed: int,
    punctual: bool,
) -> None:
    """Invariants 1-4 hold under arbitrary event sequences, the driver waking at deadlines."""
    settings, me, _, steps = drive
    checked = CheckedMachine(settings, self_contact_point=me, self_node=ME_NODE, seed=seed)
    checked.start(0.0)
    for step in steps:
        until = checked.now + step.delay
        # A punctual driver wakes the machine at every deadline before delivering an event; a
        # busy one delivers the event first and lets it meet what fell due meanwhile.
        while punctual and (deadline := checked.machine.next_deadline()) <= until:
            checked.timer(deadline)
        if step.event is None:
            checked.timer(until)
        else:
            checked.feed(step.event, until, wake_first=punctual)


# --- misuse -----------------------------------------------------------------------------------


def test_misuse_raises_usage_error_and_changes_nothing() -> None:
    """NaN or backwards time, input before start, non-events: UsageError, machine intact."""
    me, peer = ContactPoint("10.0.0.1", 8558), ContactPoint("10.0.0.2", 8558)
    checked = CheckedMachine(Settings(), self_contact_point=me, self_node=ME_NODE, seed=1)
    machine = checked.machine
    with pytest.raises(UsageError):
        machine.handle(ContactPointsDiscovered([me]), 0.0)
    with pytest.raises(UsageError):
        machine.handle_timer(0.0)
    with pytest.raises(UsageError):
        machine.start(math.nan)
    assert machine.next_deadline() == math.inf
    checked.start(5.0)
    checked.feed(ContactPointsDiscovered([me, peer]), 5.0)
    for bad_time in (math.nan, math.inf, -math.inf, 4.0, True):
        checked.expect_misuse(lambda t=bad_time: machine.handle_timer(t))
        checked.expect_misuse(lambda t=bad_time: machine.handle(DiscoveryFailed("x"), t))
    for not_an_event in ("probe", None, 42, Lookup(), Probe(peer), JoinSelf()):
        checked.expect_misuse(lambda e=not_an_event: machine.handle(e, 5.0))
    checked.expect_misuse(lambda: machine.handle(JoinFailed("no decision yet"), 5.0))
    checked.expect_misuse(lambda: machine.start(5.0))
    checked.feed(ProbeSucceeded(peer, _peer_node(peer), ()), 5.5)  # still usable


# --- machine bugs these properties found, pinned as minimal regressions ------------------------


def test_join_failed_lookup_respects_discovery_pacing() -> None:
    """A join that keeps failing must not drive lookups faster than discovery_interval allows."""
    me, peer = ContactPoint("10.0.0.1", 8558), ContactPoint("10.0.0.2", 8558)
    settings = Settings(
        discovery_interval=30.0, discovery_backoff_max=60.0, probe_interval=0.1, probe_jitter=0.0
    )
    machine = BootstrapMachine(settings, self_contact_point=me, self_node=ME_NODE)
    machine.start(0.0)
    machine.handle(ContactPointsDiscovered([me, peer]), 0.0)
    lookups = 0
    now = 0.0
    for _ in range(10):  # the peer says "join us" every time, and every join fails
        now += 0.1
        machine.handle_timer(now)
        machine.handle(ProbeSucceeded(peer, "tcp://svc@peer", ["tcp://svc@peer"]), now)
        assert isinstance(machine.decision, JoinSeedNodes)
        machine.handle(JoinFailed("refused"), now)
        while (action := machine.next_action()) is not None:
            if isinstance(action, Lookup):
                machine.handle(ContactPointsDiscovered([me, peer]), now)
                lookups += 1
    # 1 s of wall time at a 30 s discovery interval: at most the first lookup.
    assert lookups <= 1, f"{lookups} lookups in {now:.1f} s at discovery_interval=30"


def _form_alone(settings: Settings) -> BootstrapMachine:
    """A lone node (required_contact_points=1) that has formed at t=1 (stable margin 1 s)."""
    me = ContactPoint("10.0.0.1", 8558)
    machine = BootstrapMachine(settings, self_contact_point=me, self_node=ME_NODE)
    machine.start(0.0)
    machine.handle(ContactPointsDiscovered([me]), 0.0)
    machine.handle_timer(1.0)
    assert isinstance(machine.decision, JoinSelf)
    return machine


ALONE = Settings(required_contact_points=1, stable_margin=1.0, probe_interval=1.0)


def test_join_failed_respects_lookup_failure_reported_while_decided() -> None:
    """No new cluster after JoinFailed while the last lookup (seen while decided) failed."""
    machine = _form_alone(ALONE)
    machine.handle(DiscoveryFailed("DNS timed out"), 1.5)  # the lookup in flight at decision
    machine.handle(JoinFailed("membership refused"), 2.0)
    machine.handle_timer(3.5)  # join-retry wait (one probe interval) is over; no lookup result
    assert machine.decision is None, "formed a cluster on a failed lookup"


def test_join_failed_respects_discovery_reported_while_decided() -> None:
    """No new cluster after JoinFailed when discovery (seen while decided) no longer lists us."""
    machine = _form_alone(ALONE)
    machine.handle(ContactPointsDiscovered([]), 1.5)  # this node left discovery
    machine.handle(JoinFailed("membership refused"), 2.0)
    machine.handle_timer(3.5)
    assert machine.decision is None, "formed a cluster although not discovered"


def test_reply_just_inside_probe_timeout_keeps_peer_fresh() -> None:
    """Invariant 1 at the float boundary: a reply inside probe_timeout never finds it stale."""
    me, peer = ContactPoint("10.0.0.1", 8558), ContactPoint("10.0.0.2", 8558)
    settings = Settings(
        new_cluster_enabled=False,
        probe_interval=5.0514058851711585,
        probe_jitter=0.0,
        probe_timeout=0.1,
        probe_backoff_max=10.0,
        discovery_interval=100.0,
        discovery_backoff_max=100.0,
    )
    machine = BootstrapMachine(settings, self_contact_point=me, self_node=ME_NODE)
    answered = 11.127377830182862
    machine.start(answered - 0.05)
    machine.handle(ContactPointsDiscovered([me, peer]), answered - 0.05)
    machine.handle(ProbeSucceeded(peer, "tcp://svc@peer", ()), answered)
    sent = answered + settings.probe_interval  # the next probe: jitter 0, exactly one interval
    machine.handle_timer(sent)
    assert Probe(peer) in list(iter(machine.next_action, None))
    reply = sent + math.nextafter(settings.probe_timeout, 0.0)  # just inside the timeout
    # The driver wakes the machine at its deadline before the reply is delivered.
    machine.handle_timer(min(machine.next_deadline(), reply))
    assert all(point.fresh for point in machine.status.contact_points)


def test_status_after_the_seeded_peer_leaves_while_decided() -> None:
    """status keeps working after the peer whose seed nodes we joined leaves discovery."""
    me, peer = ContactPoint("10.0.0.1", 8558), ContactPoint("10.0.0.2", 8558)
    machine = BootstrapMachine(Settings(), self_contact_point=me, self_node=ME_NODE)
    machine.start(0.0)
    machine.handle(ContactPointsDiscovered([me, peer]), 0.0)
    machine.handle(ProbeSucceeded(peer, "tcp://svc@peer", ["tcp://svc@peer"]), 0.1)
    assert isinstance(machine.decision, JoinSeedNodes)
    machine.handle(ContactPointsDiscovered([me]), 0.5)  # the lookup in flight at the decision
    assert machine.status.phase is Phase.DECIDED


def test_stable_margin_deadline_survives_a_failed_join() -> None:
    """After JoinFailed, forming happens at the end of the stable margin, not at a later event."""
    me, peer = ContactPoint("10.0.0.1", 8558), ContactPoint("10.0.0.2", 8558)
    settings = Settings(
        required_contact_points=1,
        contact_with_all_contact_points=False,
        stable_margin=2.0,
        probe_interval=1.0,
        probe_jitter=0.0,
    )
    machine = BootstrapMachine(settings, self_contact_point=me, self_node=ME_NODE)
    machine.start(0.0)
    machine.handle(ContactPointsDiscovered([me, peer]), 0.0)  # stable from 0.0 until 2.0
    machine.handle(ProbeSucceeded(peer, "tcp://svc@peer", ["tcp://svc@peer"]), 0.0)
    assert isinstance(machine.decision, JoinSeedNodes)
    machine.next_deadline()  # every driver asks after every call
    machine.handle(JoinFailed("membership refused"), 0.5)
    machine.handle_timer(1.5)  # the join-retry hold-off ends; the peer no longer answers
    assert machine.next_deadline() <= 2.0, "the end of the stable margin is no deadline"
    machine.handle_timer(2.0)
    assert isinstance(machine.decision, JoinSelf)


def test_stable_margin_deadline_survives_a_failed_join_when_set_while_decided() -> None:
    """A stable margin restarted while decided still ends in a deadline after JoinFailed."""
    me = ContactPoint("10.0.0.1", 8558)
    settings = Settings(
        required_contact_points=1, stable_margin=2.0, probe_interval=1.0, probe_jitter=0.0
    )
    machine = BootstrapMachine(settings, self_contact_point=me, self_node=ME_NODE)
    machine.start(0.0)
    machine.handle(ContactPointsDiscovered([me]), 0.0)
    machine.handle_timer(2.0)
    assert isinstance(machine.decision, JoinSelf)
    machine.handle(DiscoveryFailed("DNS timed out"), 2.1)
    machine.handle(ContactPointsDiscovered([me]), 2.2)  # trusted again: stable from 2.2 to 4.2
    machine.next_deadline()  # every driver asks after every call
    machine.handle(JoinFailed("membership refused"), 2.3)
    machine.handle_timer(3.3)  # the join-retry hold-off ends
    assert machine.next_deadline() <= 4.2, "the end of the stable margin is no deadline"
    machine.handle_timer(4.2)
    assert isinstance(machine.decision, JoinSelf)


def test_rejected_event_leaves_no_deadline_in_the_past() -> None:
    """Misuse raises UsageError and changes nothing, even when deadlines are due."""
    me, peer = ContactPoint("10.0.0.1", 8558), ContactPoint("10.0.0.2", 8558)
    machine = BootstrapMachine(Settings(), self_contact_point=me, self_node=ME_NODE)
    machine.start(0.0)
    machine.handle(ContactPointsDiscovered([me, peer]), 0.0)
    machine.handle(ProbeSucceeded(peer, "tcp://svc@peer", ()), 0.0)
    before = machine.status
    with pytest.raises(UsageError):
        machine.handle(JoinFailed("no decision yet"), 10.0)  # answers expired, probe overdue
    assert machine.next_deadline() >= 10.0 or machine.status == before


# --- the rule-based state machine -------------------------------------------------------------


class MachineRules(RuleBasedStateMachine):
    """Interleave every input a driver can produce; check invariants 1-4 after each call."""

    checked: CheckedMachine
    pool: list[ContactPoint]

    @initialize(data=st.data())
    def begin(self, data: st.DataObject) -> None:
        # Few required contact points and small pools, so that forming (JoinSelf) is reached
        # often, not only joining.
        settings = data.draw(
            strategies.bootstrap_settings(required_contact_points=data.draw(st.integers(1, 3))),
            label="settings",
        )
        pool = data.draw(
            strategies.contact_point_pools(
                min_size=2, max_size=5, fallback_port=settings.fallback_port
            ),
            label="pool",
        )
        # Some hosts expose the management endpoint on another port than the fallback one.
        pool = [
            cp.with_port(2552 if settings.fallback_port != 2552 else 8558)
            if data.draw(st.integers(0, 4)) == 0
            else cp
            for cp in pool
        ]
        if data.draw(st.booleans(), label="me lowest"):
            me = min(pool, key=_canonical_key)
        else:
            me = data.draw(st.sampled_from(pool), label="me")
        if me.port == settings.fallback_port and data.draw(st.booleans()):
            me = ContactPoint(me.host)  # configured without a port
        self.pool = pool
        self.checked = CheckedMachine(
            settings,
            self_contact_point=me,
            self_node=ME_NODE,
            seed=data.draw(st.integers(0, 2**32), label="seed"),
        )
        self.checked.start(data.draw(st.sampled_from([0.0, 1.0, 1e6]), label="start"))

    # --- helpers ---

    def _delay(self, data: st.DataObject) -> float:
        settings = self.checked.settings
        scale = data.draw(
            st.sampled_from(
                [
                    0.0,
                    settings.probe_interval,
                    settings.discovery_interval,
                    settings.observation_ttl,
                    settings.stable_margin,
                ]
            ),
            label="scale",
        )
        return scale * data.draw(st.floats(0.0, 1.5), label="factor")

    def _feed(self, data: st.DataObject, event: Event) -> None:
        now = self.checked.now + (self._delay(data) if data.draw(st.booleans()) else 0.0)
        self.checked.feed(event, now, wake_first=data.draw(st.booleans(), label="wake_first"))

    def _some_contact_point(self, data: st.DataObject, prefer: set[ContactPoint]) -> ContactPoint:
        if prefer and data.draw(st.integers(0, 3)) > 0:
            return data.draw(st.sampled_from(sorted(prefer, key=_canonical_key)))
        return data.draw(st.sampled_from(self.pool))

    # --- events ---

    @rule(data=st.data())
    def discover(self, data: st.DataObject) -> None:
        found = data.draw(
            strategies.discovery_results(
                self.pool, fallback_port=self.checked.settings.fallback_port
            ),
            label="found",
        )
        self._feed(data, ContactPointsDiscovered(found))

    @rule(data=st.data())
    def discover_same_again(self, data: st.DataObject) -> None:
        """The common case: discovery keeps returning the set it returned last time."""
        self._feed(data, ContactPointsDiscovered(self.checked.discovered))

    @rule(data=st.data())
    def discovery_fails(self, data: st.DataObject) -> None:
        self._feed(data, DiscoveryFailed("lookup timed out"))

    @rule(data=st.data())
    def answer(self, data: st.DataObject) -> None:
        contact_point = self._some_contact_point(data, self.checked.probing)
        seed_nodes = data.draw(
            st.one_of(
                st.just(()),
                st.lists(st.sampled_from([*strategies.node_names(4), ME_NODE]), max_size=6),
            ),
            label="seed_nodes",
        )
        event = ProbeSucceeded(
            contact_point,
            data.draw(st.sampled_from([_peer_node(contact_point), ME_NODE]), label="self_node"),
            seed_nodes,
            data.draw(strategies.cluster_ids, label="cluster_id"),
        )
        self._feed(data, event)

    @rule(data=st.data())
    def answer_every_outstanding_probe(self, data: st.DataObject) -> None:
        now = self.checked.now + (self._delay(data) if data.draw(st.booleans()) else 0.0)
        for contact_point in sorted(self.checked.probing, key=_canonical_key):
            self.checked.feed(ProbeSucceeded(contact_point, _peer_node(contact_point), ()), now)

    @rule(data=st.data())
    def probe_fails(self, data: st.DataObject) -> None:
        contact_point = self._some_contact_point(data, self.checked.probing)
        self._feed(data, ProbeFailed(contact_point, "connection refused"))

    @rule(data=st.data())
    def contacted_by(self, data: st.DataObject) -> None:
        contact_point = data.draw(
            st.one_of(
                st.sampled_from(self.pool),
                st.just(self.checked.me),
                strategies.contact_points(with_port=True),
            ),
            label="contacted_by",
        )
        self._feed(data, ContactedBy(contact_point))

    @rule(data=st.data())
    def join_fails(self, data: st.DataObject) -> None:
        self._feed(data, JoinFailed("membership refused"))

    # --- time ---

    @rule(data=st.data())
    def wake_late(self, data: st.DataObject) -> None:
        self.checked.timer(self.checked.now + self._delay(data))

    @rule(data=st.data())
    def wake_at_every_deadline(self, data: st.DataObject) -> None:
        until = self.checked.now + self._delay(data)
        for _ in range(200):
            deadline = self.checked.machine.next_deadline()
            if deadline > until:
                break
            self.checked.timer(deadline)
        self.checked.timer(until)

    @rule()
    def wake_at_deadline(self) -> None:
        deadline = self.checked.machine.next_deadline()
        if math.isfinite(deadline):
            self.checked.timer(deadline)

    @rule()
    def wake_just_before_deadline(self) -> None:
        deadline = self.checked.machine.next_deadline()
        if math.isfinite(deadline):
            just_before = math.nextafter(deadline, -math.inf)
            if just_before >= self.checked.now:
                self.checked.timer(just_before)

    @rule()
    def wake_again_now(self) -> None:
        self.checked.timer(self.checked.now)

    # --- misuse ---

    @rule(data=st.data())
    def misuse(self, data: st.DataObject) -> None:
        machine, now = self.checked.machine, self.checked.now
        calls = {
            "nan": lambda: machine.handle_timer(math.nan),
            "backwards": lambda: machine.handle_timer(math.nextafter(now, -math.inf)),
            "backwards-event": lambda: machine.handle(DiscoveryFailed("x"), now - 1.0),
            "not-an-event": lambda: machine.handle(Lookup(), now),  # type: ignore[arg-type]
            "start-again": lambda: machine.start(now),
        }
        self.checked.expect_misuse(calls[data.draw(st.sampled_from(sorted(calls)))])

    @invariant()
    def deadline_is_sane(self) -> None:
        deadline = self.checked.machine.next_deadline()
        assert not math.isnan(deadline)
        assert deadline >= self.checked.now


MachineRules.TestCase.settings = hypothesis_settings(stateful_step_count=100)
TestMachineRules = MachineRules.TestCase
TestMachineRules.__doc__ = "Invariants 1-4 hold under any interleaving of inputs, misuse included."
