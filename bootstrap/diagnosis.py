"""Why a cluster has not formed, in plain English, from the nodes' ``/bootstrap/status``.

``cluster-bootstrap doctor`` reads the statuses (``bootstrap/commands/doctor.py`` does the I/O)
and hands them to :func:`diagnose`, which only reads documents: every finding here can be tested
from status documents alone. Each finding names the node it was seen on, what was seen, and what
to change. The checks follow the anchors' most frequent complaints: the self contact point
missing from discovery (a host name against an IP), ``required_contact_points`` above what
discovery finds, a peer that never answers, discovery failing, two clusters, a founding round
that waits for a promise, a secret or TLS mismatch.

The documents come from the network: a field missing or of the wrong type is read as absent,
never trusted to be well-formed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

import attrs

__all__ = ["Finding", "Reading", "Report", "diagnose", "listed_contact_points"]

#: Resolves a host name to its addresses (empty when it does not resolve); the command passes
#: one built on :func:`socket.getaddrinfo`, tests a table.
Resolver = Callable[[str], frozenset[str]]


@attrs.frozen
class Reading:
    """What the doctor got from one node: its status document, or why it got none."""

    #: The contact point (``host:port``) the doctor asked.
    contact_point: str
    status: Mapping[str, object] | None = None
    #: Why there is no status: ``unauthorized``, ``tls``, ``unreachable`` or ``invalid``.
    error_kind: str | None = None
    error: str | None = None
    #: Asked for by the user (a URL given), not found in a status's contact points.
    given: bool = True


@attrs.frozen
class Finding:
    """One reason the cluster has not formed (or a risk it runs), and what to change."""

    title: str
    details: tuple[str, ...]
    advice: str
    #: The contact points of the nodes it concerns (a node already explained by a finding gets
    #: no "still waiting" one).
    about: tuple[str, ...] = ()
    #: Worth knowing, but no reason the cluster is not formed (a listed contact point the doctor
    #: cannot reach while every node read has joined).
    note: bool = False


@attrs.frozen
class Report:
    readings: tuple[Reading, ...]
    findings: tuple[Finding, ...]
    #: The seed-node sets of the clusters the readings show (one when all is well).
    clusters: tuple[frozenset[str], ...]

    @property
    def formed(self) -> bool:
        """Every node read has joined, they are one cluster, and nothing is wrong."""
        given = [reading.status for reading in self.readings if reading.given]
        read = [reading.status for reading in self.readings if reading.status is not None]
        return (
            bool(read)
            and all(status is not None for status in given)
            and all(status.get("joined") is True for status in read)
            and len(self.clusters) == 1
            and not self.problems
        )

    @property
    def problems(self) -> tuple[Finding, ...]:
        return tuple(finding for finding in self.findings if not finding.note)

    @property
    def notes(self) -> tuple[Finding, ...]:
        return tuple(finding for finding in self.findings if finding.note)


def diagnose(readings: Sequence[Reading], *, resolve: Resolver | None = None) -> Report:
    """Every finding the readings support, most fundamental first."""
    # One node read twice (by a host name and by its address) counts once.
    unique: dict[str, Mapping[str, object]] = {}
    for reading in readings:
        if reading.status is not None:
            unique.setdefault(_name(reading.status), reading.status)
    statuses = list(unique.values())
    clusters = _clusters(statuses)
    # Two clusters first: the one outcome worse than none.
    findings = [_two_clusters(clusters, statuses)] if len(clusters) > 1 else []
    for status in statuses:
        findings += _discovery_failing(status)
        findings += _self_not_discovered(status, resolve)
        findings += _founding_round(status, statuses)
    findings += _required_above_discovered(statuses)
    findings += _security_mismatch(statuses)
    findings += _silent_peers(statuses)
    findings = _with_unreadable(findings, readings, all_joined=_all_joined(statuses))
    findings += _formation_rules_differ(statuses)
    explained = {node for finding in findings for node in finding.about}
    for status in statuses:
        if _name(status) not in explained:
            findings += _still_waiting(status)
    return Report(tuple(readings), tuple(findings), tuple(clusters))


# --- reading the documents defensively --------------------------------------------------------


def _text(status: Mapping[str, object], key: str) -> str:
    value = status.get(key)
    return value if isinstance(value, str) else ""


def _name(status: Mapping[str, object]) -> str:
    return _text(status, "selfContactPoint") or "(a node without a contact point)"


def _points(status: Mapping[str, object]) -> list[Mapping[str, object]]:
    points = status.get("contactPoints")
    if not isinstance(points, list):
        return []
    return [point for point in points if isinstance(point, dict)]


def listed_contact_points(status: Mapping[str, object]) -> list[str]:
    """The contact points ``status`` lists (what its node discovered), in its order."""
    return [point for point in (_text(p, "contactPoint") for p in _points(status)) if point]


def _setting(status: Mapping[str, object], key: str) -> object:
    settings = status.get("settings")
    return settings.get(key) if isinstance(settings, dict) else None


def _decided(status: Mapping[str, object]) -> bool:
    return isinstance(status.get("decision"), dict)


def _waiting_on(status: Mapping[str, object]) -> str:
    return "" if _decided(status) else _text(status, "waitingOn")


def _split(contact_point: str) -> tuple[str, str]:
    host, _, port = contact_point.rpartition(":")
    return host.strip("[]"), port


# --- the findings -----------------------------------------------------------------------------


def _all_joined(statuses: Sequence[Mapping[str, object]]) -> bool:
    return bool(statuses) and all(status.get("joined") is True for status in statuses)


def _with_unreadable(
    findings: list[Finding], readings: Sequence[Reading], *, all_joined: bool
) -> list[Finding]:
    """``findings``, and the nodes the doctor could not read: as a detail of a finding about
    that node (a peer that answers nobody, a secret mismatch), else as a finding of their own,
    first since it limits what the others can tell. A contact point only listed (not given)
    while every node read has joined is a note: discovery lists it, yet the cluster formed."""
    unreadable: list[Finding] = []
    for reading in readings:
        if reading.status is not None:
            continue
        point, error = reading.contact_point, str(reading.error)
        about = [index for index, finding in enumerate(findings) if point in finding.about]
        if about:
            finding = findings[about[0]]
            details = (*finding.details, f"the doctor could not read it either: {error}")
            findings[about[0]] = attrs.evolve(finding, details=details)
            continue
        if reading.error_kind == "unauthorized":
            advice = (
                "pass the cluster's secret with --secret-file; if you did, this node has "
                "another secret than the node that listed it"
            )
        elif reading.error_kind == "tls":
            advice = (
                "pass --tls-ca with the CA bundle of the nodes' certificates (and --tls-cert / "
                "--tls-key if they require a client certificate); a node that serves plain "
                "HTTP among TLS nodes fails this way too"
            )
        else:
            advice = (
                "check that a node runs there and that this machine can reach it (a pod IP may "
                "be reachable only from inside the cluster: run the doctor there)"
            )
        note = all_joined and not reading.given
        if note:
            advice = (
                "every node read has joined; discovery lists this contact point too: a replica "
                "not started yet, or an address discovery still returns for one that is gone"
            )
        unreadable.append(
            Finding(f"could not read the status of {point}", (error,), advice, note=note)
        )
    return unreadable + findings


def _discovery_failing(status: Mapping[str, object]) -> list[Finding]:
    if _waiting_on(status) != "discovery":
        return []
    reason = _text(status, "reason")
    if "discovery failed" not in reason:
        return [
            Finding(
                f"{_name(status)} has no discovery result yet",
                (reason,),
                "its first lookup has not answered: check the discovery backend is reachable "
                "and that --discovery-timeout is not longer than you want to wait",
                about=(_name(status),),
            )
        ]
    return [
        Finding(
            f"discovery fails on {_name(status)}",
            (reason,),
            "fix the discovery backend this node uses: the DNS name and server (--service-name, "
            "--dns-server), the Kubernetes API and the service account's permission to list "
            "pods, or the --contact-points list; the node retries on its own",
            about=(_name(status),),
        )
    ]


def _self_not_discovered(status: Mapping[str, object], resolve: Resolver | None) -> list[Finding]:
    if _waiting_on(status) != "self-not-discovered":
        return []
    name = _name(status)
    discovered = listed_contact_points(status)
    details = [
        f"this node's contact point is {name}; discovery lists "
        + (", ".join(discovered) if discovered else "nothing")
    ]
    host, port = _split(name)
    same_port = [point for point in discovered if _split(point)[1] == port]
    addresses = resolve(host) if resolve is not None else frozenset()
    aliases = [point for point in same_port if _split(point)[0] in addresses]
    if aliases:
        details.append(
            f"{host} resolves to {', '.join(sorted(addresses))}: discovery lists this node as "
            f"{', '.join(aliases)}, by its address and not by the name it calls itself"
        )
        example = aliases[0]
    elif same_port:
        example = f"the one of {', '.join(same_port)} that is this node"
    else:
        example = f"the address discovery returns, with port {port}"
        details.append(f"no discovered contact point has port {port}")
    return [
        Finding(
            f"{name} is not among the contact points discovery returns",
            tuple(details),
            f"set this node's --contact-point (BOOTSTRAP_CONTACT_POINT) to {example}: a node "
            "forms a cluster only if discovery lists it exactly as it names itself (an IP "
            "against a host name is the usual cause; in a pod leave it unset, so $POD_IP is "
            "used); until then it can join a cluster but never form one",
            about=(name,),
        )
    ]


def _required_above_discovered(statuses: Sequence[Mapping[str, object]]) -> list[Finding]:
    """Undecided nodes that require more contact points than discovery lists: one finding for
    the nodes that share the setting and the same discovery result."""
    groups: dict[tuple[int, tuple[str, ...]], list[str]] = {}
    for status in statuses:
        required = _setting(status, "requiredContactPoints")
        listed = tuple(listed_contact_points(status))
        if _waiting_on(status) == "discovery":
            continue  # no discovery result yet: that is the finding
        if _decided(status) or not isinstance(required, int) or len(listed) >= required:
            continue  # (enough discovered: the ones not answering are the finding)
        groups.setdefault((required, listed), []).append(_name(status))
    findings = []
    for (required, listed), names in groups.items():
        verb = "requires" if len(names) == 1 else "require"
        findings.append(
            Finding(
                f"{', '.join(names)} {verb} {required} contact points but discovery lists "
                f"{len(listed)}",
                ("discovered: " + (", ".join(listed) or "nothing"),),
                "lower --required-contact-points to at most the replicas you run (discovery "
                f"lists {len(listed)} now), or find why discovery lists fewer: replicas not "
                "started, a label selector or DNS name that misses some",
                about=tuple(names),
            )
        )
    return findings


def _security_mismatch(statuses: Sequence[Mapping[str, object]]) -> list[Finding]:
    """Pairs of nodes whose probes fail on the secret or on TLS, one finding per pair."""
    findings = []
    pairs: set[frozenset[str]] = set()
    for status, point in [(s, p) for s in statuses for p in _points(s)]:
        kind = point.get("lastFailureKind")
        if kind not in ("unauthorized", "tls") or point.get("fresh") is True:
            continue
        peer = _text(point, "contactPoint")
        if frozenset((_name(status), peer)) in pairs:
            continue  # the other side of a pair already reported
        pairs.add(frozenset((_name(status), peer)))
        if kind == "unauthorized":
            title = f"{_name(status)} and {peer} do not share the same secret"
            advice = (
                "give every node the same secret (the same --secret-file content or "
                "BOOTSTRAP_SECRET); a node without one cannot probe a node with one"
            )
        else:
            title = f"TLS between {_name(status)} and {peer} fails"
            advice = (
                "all nodes serve TLS or none; each certificate is issued by a CA in the "
                "others' --tls-ca bundle, for the host of its contact point; with "
                "--tls-require-client-cert every node needs --tls-cert too"
            )
        findings.append(
            Finding(title, (_text(point, "lastFailure"),), advice, about=(_name(status), peer))
        )
    return findings


def _silent_peers(statuses: Sequence[Mapping[str, object]]) -> list[Finding]:
    """Peers an undecided node probes without an answer, one finding per peer."""
    observed: dict[str, list[tuple[str, str]]] = {}  # peer: (observer, what it saw)
    wait_for_all = False
    for status in statuses:
        if _decided(status):
            continue  # formed: a peer that does not answer no longer holds anything up
        for point in _points(status):
            failures = point.get("consecutiveFailures")
            if point.get("fresh") is True or point.get("probed") is False:
                continue
            if not isinstance(failures, int) or failures == 0:
                continue
            if point.get("lastFailureKind") in ("unauthorized", "tls"):
                continue  # the security finding says it
            ago = point.get("lastObservedAgo")
            seen = (
                "never answered"
                if not isinstance(ago, int | float)
                else f"last answered {ago:.1f} s ago"
            )
            detail = f"{seen} {_name(status)} ({failures} probes failed in a row"
            last = _text(point, "lastFailure")
            detail += f"; last failure: {last})" if last else ")"
            observed.setdefault(_text(point, "contactPoint"), []).append((_name(status), detail))
            wait_for_all |= _setting(status, "contactWithAllContactPoints") is True
    findings = []
    for peer, seen_by in observed.items():
        advice = (
            f"check that a node runs at {peer} and that its peers can reach that port (a "
            "firewall, a network policy, the wrong port in discovery)"
        )
        if wait_for_all:
            advice += (
                "; every discovered contact point must answer before a cluster forms "
                "(contact_with_all_contact_points): if it is gone for good, discovery must stop "
                "listing it"
            )
        observers = tuple(observer for observer, _ in seen_by)
        details = tuple(detail for _, detail in seen_by)
        findings.append(
            Finding(f"{peer} does not answer", details, advice, about=(peer, *observers))
        )
    return findings


_WAITING_FOR = re.compile(r"\(waiting for ([^,) ]+)")


def _founding_round(
    status: Mapping[str, object], statuses: Sequence[Mapping[str, object]]
) -> list[Finding]:
    waiting_on, reason, name = _waiting_on(status), _text(status, "reason"), _name(status)
    if waiting_on == "promised":
        return [
            Finding(
                f"{name} promised another node and waits for it to found the cluster",
                (reason,),
                "this ends on its own when that candidate forms or withdraws; if it lasts, run "
                "the doctor on the candidate: it waits for something too",
                about=(name,),
            )
        ]
    if waiting_on != "founding-round":
        return []
    details = [reason]
    match = _WAITING_FOR.search(reason)
    peer = (
        None
        if match is None
        else next((other for other in statuses if _name(other) == match.group(1)), None)
    )
    if "cannot promise" in reason:
        advice = (
            "the peer it waits for speaks no founding rounds (an Akka or Pekko node, or a node "
            "with formation=lowest-address): give every node formation='lowest-address' "
            "(--formation lowest-address) or run our node everywhere with the same formation"
        )
    elif "which promised" in reason:
        advice = (
            "that peer promised another candidate; the lower candidate wins, so this ends on "
            "its own unless discovery gives the two candidates different views"
        )
    else:
        advice = (
            "a round lasts a few probe periods; if it lasts longer, the peer it waits for is "
            "not answering proposals: check it (its status, its log)"
        )
    if peer is not None:
        details.append(f"{_name(peer)} says: {_text(peer, 'reason')}")
    return [
        Finding(
            f"{name}'s founding round waits for a promise", tuple(details), advice, about=(name,)
        )
    ]


def _formation_rules_differ(statuses: Sequence[Mapping[str, object]]) -> list[Finding]:
    rules: dict[str, list[str]] = {}
    for status in statuses:
        rule = _setting(status, "formation")
        if isinstance(rule, str):
            rules.setdefault(rule, []).append(_name(status))
    if len(rules) < 2:
        return []
    return [
        Finding(
            "the nodes use different formation rules",
            tuple(f"{rule}: {', '.join(names)}" for rule, names in sorted(rules.items())),
            "give every node the same --formation: a node under lowest-address never "
            "promises, so a promise node waits for it for ever",
            about=tuple(name for names in rules.values() for name in names),
        )
    ]


def _clusters(statuses: Sequence[Mapping[str, object]]) -> list[frozenset[str]]:
    """The clusters the statuses show: seed-node sets merged while they share a node.

    A node that formed is the seed of its own cluster; one that joins names its seeds; and every
    answer a node holds names the seeds of the answering peer's cluster. Two members of one
    cluster always share a seed node, members of two clusters never do.
    """
    groups: list[set[str]] = []
    for status in statuses:
        sets = [_own_cluster(status)] + [
            _seeds(point.get("seedNodes")) for point in _points(status)
        ]
        for members in sets:
            if not members:
                continue
            overlapping = [group for group in groups if group & members]
            merged = members.union(*overlapping)
            groups = [group for group in groups if not group & members] + [merged]
    return sorted((frozenset(group) for group in groups), key=sorted)


def _seeds(value: object) -> set[str]:
    return (
        {seed for seed in value if isinstance(seed, str) and seed}
        if isinstance(value, list)
        else set()
    )


def _own_cluster(status: Mapping[str, object]) -> set[str]:
    """The seed nodes of the cluster this node decided to be in (empty while undecided)."""
    decision = status.get("decision")
    if not isinstance(decision, dict):
        return set()
    if decision.get("kind") == "join-self":
        return _seeds([_text(status, "selfNode")])
    return _seeds(decision.get("seedNodes"))


def _two_clusters(
    clusters: Sequence[frozenset[str]], statuses: Sequence[Mapping[str, object]]
) -> Finding:
    details = []
    for number, seeds in enumerate(clusters, 1):
        members = [_name(status) for status in statuses if _own_cluster(status) & seeds]
        details.append(
            f"cluster {number}: seed nodes {', '.join(sorted(seeds))}"
            + (f"; members read: {', '.join(members)}" if members else "")
        )
    return Finding(
        f"{len(clusters)} clusters observed",
        tuple(details),
        "the nodes formed or joined clusters that do not know each other: stop the members of "
        "the smaller cluster(s) (they join the other when they start again, as the cluster "
        "already exists); to keep it from happening, use formation='promise' (the default), "
        "give every node the same discovery, and a stable margin longer than discovery takes "
        "to list a new replica everywhere",
        about=tuple(_name(status) for status in statuses),
    )


def _still_waiting(status: Mapping[str, object]) -> list[Finding]:
    """A node undecided for a reason no finding above explains: say what it says."""
    if _decided(status):
        if status.get("joined") is False:
            return [
                Finding(
                    f"{_name(status)} decided but has not joined yet",
                    (_text(status, "reason"),),
                    "its membership join (or --join-command) has not completed: see its log",
                    about=(_name(status),),
                )
            ]
        return []
    overdue = " past its formation deadline" if status.get("formationOverdue") is True else ""
    if _waiting_on(status) == "lowest-forms":
        advice = (
            "it waits for the lowest contact point that answers to form the cluster: the "
            "findings about that node say why it does not (read its status too)"
        )
    else:
        advice = (
            "usually this passes on its own (a stable margin, a round in progress); if it "
            "lasts, the reason names what it waits for"
        )
    return [
        Finding(
            f"{_name(status)} has not decided{overdue}",
            (_text(status, "reason"),),
            advice,
            about=(_name(status),),
        )
    ]
