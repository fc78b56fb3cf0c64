"""Shared hypothesis strategies for the core and the simulation.

One place for the shapes of input the project is tested with (h2 and attrs do the same):
contact points in every spelling discovery backends produce (IPv4, IPv6 with and without
brackets, hostnames in mixed case with a trailing dot, with and without a port), valid
:class:`Settings` over the whole range a deployment might use (intervals 0.1-30 s, jitter
0-0.9), and event sequences over a pool of contact points.

Strategies build only valid values: a strategy that sometimes builds an invalid ``Settings``
would make every property test re-check validation instead of its property.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
from hypothesis import strategies as st

from bootstrap import (
    ContactedBy,
    ContactPoint,
    ContactPointsDiscovered,
    DiscoveryFailed,
    Event,
    JoinFailed,
    ProbeFailed,
    ProbeSucceeded,
    Settings,
)

__all__ = [
    "Step",
    "bootstrap_settings",
    "cluster_ids",
    "contact_point_pools",
    "contact_points",
    "discovery_results",
    "durations",
    "event_sequences",
    "events",
    "host_spellings",
    "hostnames",
    "hosts",
    "ipv4_hosts",
    "ipv6_hosts",
    "jitters",
    "node_names",
    "ports",
]

# --- contact points ---------------------------------------------------------------------------

ipv4_hosts = st.ip_addresses(v=4).map(str)
ipv6_hosts = st.ip_addresses(v=6).map(str)

_LABEL = r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?"
hostnames = st.lists(st.from_regex(_LABEL, fullmatch=True), min_size=1, max_size=3).map(".".join)
hosts = st.one_of(ipv4_hosts, ipv6_hosts, hostnames)

# Small ports collide often (several ports per host, duplicates); the well-known management
# and remoting ports are the realistic case.
ports = st.one_of(st.sampled_from([8558, 2552, 80, 443]), st.integers(1, 65535))


@st.composite
def host_spellings(draw: st.DrawFn, host: str) -> str:
    """Another spelling of ``host`` that must canonicalise to the same contact point."""
    if ":" in host:  # IPv6: with or without brackets, any case of the hex digits
        spelled = draw(st.sampled_from([host, host.upper(), f"[{host}]", f"[{host.upper()}]"]))
    elif any(c.isalpha() for c in host) and not host.replace(".", "").isdigit():
        spelled = draw(st.sampled_from([host, host.upper(), host + ".", host.title()]))
    else:
        spelled = host
    return draw(st.sampled_from([spelled, f" {spelled} "]))


def contact_points(*, with_port: bool | None = None) -> st.SearchStrategy[ContactPoint]:
    """Contact points on any kind of host; ``with_port`` None: a port only sometimes."""
    port_strategy: st.SearchStrategy[int | None]
    if with_port is None:
        port_strategy = st.one_of(st.none(), ports)
    elif with_port:
        port_strategy = ports
    else:
        port_strategy = st.none()
    return st.builds(ContactPoint, hosts, port_strategy)


@st.composite
def contact_point_pools(
    draw: st.DrawFn, *, min_size: int = 1, max_size: int = 6, fallback_port: int = 8558
) -> list[ContactPoint]:
    """Distinct contact points on distinct hosts, all with ``fallback_port``.

    Distinct canonical hosts: discovery results built from the pool then decide themselves
    whether a host shows up with several ports.
    """
    raw = draw(
        st.lists(
            hosts,
            min_size=min_size,
            max_size=max_size,
            unique_by=lambda host: ContactPoint(host).host,
        )
    )
    return [ContactPoint(host, fallback_port) for host in raw]


@st.composite
def discovery_results(
    draw: st.DrawFn, pool: Sequence[ContactPoint], *, fallback_port: int = 8558
) -> list[ContactPoint]:
    """What a discovery backend might return for a subset of ``pool``.

    Entries may lack a port (the fallback port applies), be spelled differently, repeat, or
    come with extra ports on the same host (the fallback-port filter applies).
    """
    chosen = draw(st.lists(st.sampled_from(list(pool)), unique=True)) if pool else []
    result: list[ContactPoint] = []
    for contact_point in chosen:
        host = draw(host_spellings(contact_point.host))
        shape = draw(st.sampled_from(["port", "port", "no-port", "duplicate", "extra-port"]))
        port = contact_point.port if contact_point.port is not None else fallback_port
        if shape == "no-port" and port == fallback_port:
            result.append(ContactPoint(host))
        elif shape == "duplicate":
            result += [ContactPoint(host, port), ContactPoint(contact_point.host, port)]
        elif shape == "extra-port":
            result += [ContactPoint(host, port), ContactPoint(host, draw(ports))]
        else:
            result.append(ContactPoint(host, port))
    return draw(st.permutations(result))


# --- settings ---------------------------------------------------------------------------------


def durations(low: float = 0.1, high: float = 30.0) -> st.SearchStrategy[float]:
    """Finite durations in seconds within ``[low, high]``."""
    return st.floats(low, high, allow_nan=False, allow_infinity=False)


jitters = st.one_of(st.just(0.0), st.floats(0.0, 0.9, allow_nan=False))


@st.composite
def bootstrap_settings(draw: st.DrawFn, /, **fixed: Any) -> Settings:
    """Valid :class:`Settings` drawn over the whole supported range; ``fixed`` pins fields."""
    discovery_interval = draw(durations())
    probe_interval = draw(durations())
    drawn = Settings(
        required_contact_points=draw(st.integers(1, 5)),
        contact_with_all_contact_points=draw(st.booleans()),
        new_cluster_enabled=draw(st.booleans()),
        stable_margin=draw(durations()),
        expected_contact_points=draw(st.one_of(st.none(), st.integers(1, 5))),
        discovery_interval=discovery_interval,
        discovery_backoff_max=discovery_interval * draw(st.floats(1.0, 20.0)),
        discovery_jitter=draw(jitters),
        discovery_timeout=draw(durations()),
        probe_interval=probe_interval,
        probe_jitter=draw(jitters),
        probe_timeout=draw(durations()),
        probe_backoff_max=probe_interval * draw(st.floats(1.0, 20.0)),
        probe_fanout=draw(st.one_of(st.none(), st.integers(1, 4))),
        fallback_port=draw(st.sampled_from([8558, 2552])),
        filter_on_fallback_port=draw(st.booleans()),
        max_seed_nodes=draw(st.integers(1, 5)),
        formation=draw(st.sampled_from(["promise", "lowest-address"])),
    )
    return attrs.evolve(drawn, **fixed)


# --- events -----------------------------------------------------------------------------------


def node_names(count: int = 6) -> list[str]:
    """A fixed small pool of ``selfNode`` addresses, so answers name the same nodes often."""
    return [f"tcp://svc@node-{index}:2552" for index in range(count)]


cluster_ids = st.sampled_from([None, None, "cluster-a", "cluster-b"])


def events(
    pool: Sequence[ContactPoint], *, self_node: str, fallback_port: int = 8558
) -> st.SearchStrategy[Event]:
    """Any event a driver might feed, about contact points of ``pool``.

    Seed-node lists sometimes name ``self_node`` (a peer that already sees this node in its
    cluster), and answers carry different cluster ids, so every branch of the decision rules
    is reachable.
    """
    names = [*node_names(), self_node]
    some_contact_point = st.sampled_from(list(pool))
    seed_lists = st.one_of(st.just(()), st.lists(st.sampled_from(names), max_size=7))
    return st.one_of(
        discovery_results(pool, fallback_port=fallback_port).map(ContactPointsDiscovered),
        st.builds(DiscoveryFailed, st.just("lookup timed out")),
        st.builds(
            ProbeSucceeded,
            some_contact_point,
            st.sampled_from(names),
            seed_lists,
            cluster_ids,
        ),
        st.builds(ProbeFailed, some_contact_point, st.just("connection refused")),
        st.builds(ContactedBy, some_contact_point | contact_points(with_port=True)),
        st.builds(JoinFailed, st.just("join refused")),
    )


@attrs.frozen
class Step:
    """One step of a scripted drive: wait ``delay`` seconds, then feed ``event`` (None: a timer)."""

    delay: float
    event: Event | None


def event_sequences(
    pool: Sequence[ContactPoint],
    *,
    self_node: str,
    fallback_port: int = 8558,
    max_delay: float = 10.0,
    max_size: int = 40,
) -> st.SearchStrategy[list[Step]]:
    """Sequences of delays and events (or bare timer wake-ups); delays are often zero."""
    delays = st.one_of(st.just(0.0), st.floats(0.0, max_delay, allow_nan=False))
    maybe_event = st.one_of(
        st.none(), events(pool, self_node=self_node, fallback_port=fallback_port)
    )
    return st.lists(st.builds(Step, delays, maybe_event), max_size=max_size)
