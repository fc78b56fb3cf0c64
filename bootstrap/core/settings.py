"""Settings: every knob of the bootstrap process, validated once, with windows derived from them.

The anchor's freshness window (3 s) was a constant unrelated to the probe interval, so at a 5 s
interval answers were never all fresh at once and no cluster formed. Here no window is
configurable on its own: :attr:`Settings.observation_ttl` and :attr:`Settings.watch_push_interval`
are derived from the probe settings, so they stay right for any interval.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import attrs

from .errors import UsageError

__all__ = ["Settings"]

# Seconds a client's idle connection may outlive the longest probe period, and the server's the
# client's (see Settings.client_keepalive_expiry and Settings.server_keep_alive_timeout).
_CLIENT_KEEPALIVE_SLACK = 3.0
_SERVER_KEEPALIVE_MARGIN = 3.0


def _duration(instance: Any, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UsageError(
            f"{attribute.name} must be a number of seconds, got {value!r}",
            fields=(attribute.name,),
        )
    if not math.isfinite(value) or value <= 0:
        raise UsageError(
            f"{attribute.name} must be a finite number of seconds > 0, got {value!r}",
            fields=(attribute.name,),
        )


def _jitter(instance: Any, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UsageError(
            f"{attribute.name} must be a number in [0, 1), got {value!r}",
            fields=(attribute.name,),
        )
    if not 0 <= value < 1:
        raise UsageError(
            f"{attribute.name} must be in [0, 1), got {value!r}", fields=(attribute.name,)
        )


def _count(instance: Any, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(
            f"{attribute.name} must be an integer >= 1, got {value!r}", fields=(attribute.name,)
        )


def _optional_count(
    instance: Any, attribute: attrs.Attribute[int | None], value: int | None
) -> None:
    if value is not None:
        _count(instance, attribute, value)  # type: ignore[arg-type]


def _optional_duration(
    instance: Any, attribute: attrs.Attribute[float | None], value: float | None
) -> None:
    if value is not None:
        _duration(instance, attribute, value)  # type: ignore[arg-type]


def _flag(instance: Any, attribute: attrs.Attribute[bool], value: bool) -> None:
    if not isinstance(value, bool):
        raise UsageError(
            f"{attribute.name} must be True or False, got {value!r}", fields=(attribute.name,)
        )


def _port(instance: Any, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise UsageError(
            f"{attribute.name} must be a port number in 1..65535, got {value!r}",
            fields=(attribute.name,),
        )


#: The two formation rules (DESIGN section 8).
Formation = Literal["promise", "lowest-address"]
FORMATIONS: tuple[Formation, ...] = ("promise", "lowest-address")


def _formation(instance: Any, attribute: attrs.Attribute[str], value: object) -> None:
    if value not in FORMATIONS:
        raise UsageError(
            f"{attribute.name} must be one of {', '.join(map(repr, FORMATIONS))}, got {value!r}",
            fields=(attribute.name,),
        )


def _field(default: Any, validator: Any, help: str) -> Any:
    # The help text is the single source for the settings reference page and the CLI help.
    return attrs.field(default=default, validator=validator, metadata={"help": help})


@attrs.frozen(kw_only=True)
class Settings:
    """How a node bootstraps. All durations are in seconds. See ``docs/settings.md``."""

    required_contact_points: int = _field(
        2, _count, "fresh answers (this node included) needed before a new cluster is formed"
    )
    contact_with_all_contact_points: bool = _field(
        True, _flag, "every discovered contact point must have a fresh answer before forming"
    )
    new_cluster_enabled: bool = _field(
        True, _flag, "may this node form a new cluster at all (joining is always allowed)"
    )
    stable_margin: float = _field(
        5.0, _duration, "the discovered set must be unchanged this long before forming"
    )
    expected_contact_points: int | None = _field(
        None,
        _optional_count,
        "if set and exactly this many are discovered, all fresh and in no cluster, "
        "form without waiting out the stable margin",
    )
    discovery_interval: float = _field(1.0, _duration, "base delay between lookups")
    discovery_backoff_max: float = _field(
        15.0, _duration, "cap of the exponential backoff after failed lookups"
    )
    discovery_jitter: float = _field(
        0.2, _jitter, "each lookup delay is scaled by a uniform factor in [1-j, 1+j]"
    )
    discovery_timeout: float = _field(3.0, _duration, "a lookup is cancelled after this")
    probe_interval: float = _field(
        1.0, _duration, "delay between probes of one healthy contact point"
    )
    probe_jitter: float = _field(
        0.2, _jitter, "each probe delay is scaled by a uniform factor in [1-j, 1+j]"
    )
    probe_timeout: float = _field(3.0, _duration, "one probe is cancelled after this")
    probe_backoff_max: float = _field(
        15.0, _duration, "cap of the per-contact-point backoff after consecutive failures"
    )
    probe_fanout: int | None = _field(
        3,
        _optional_count,
        "a node that cannot form probes only this many of the lowest discovered contact points "
        "(those failing are skipped for the next ones); the lowest one probes every contact "
        "point; None: every node probes every one (the full mesh)",
    )
    fallback_port: int = _field(8558, _port, "port for contact points discovered without one")
    filter_on_fallback_port: bool = _field(
        True, _flag, "when a host is discovered with several ports, keep only the fallback port"
    )
    max_seed_nodes: int = _field(
        5, _count, "seed nodes handed to a join, and advertised by the endpoint"
    )
    formation_deadline: float | None = _field(
        None,
        _optional_duration,
        "past this many seconds from the start without a decision, log an ERROR once and "
        "answer /alive with 503 (so an orchestrator restarts the node) until one is made; "
        "None: no deadline",
    )
    # (ruff cannot tell that a Literal of strings is immutable, as the other fields' types are)
    formation: Formation = _field(  # noqa: RUF009
        "promise",
        _formation,
        "how a new cluster is formed: 'promise' (the lowest contact point forms only once its "
        "peers promised it; never two clusters) or 'lowest-address' (the anchor's rule, for "
        "peers that cannot promise, such as Akka nodes)",
    )

    def __attrs_post_init__(self) -> None:
        # Each backoff cap must be at least the pace it caps. ``fields`` names both (the cap
        # first), so that a front end can say which it was given and which were defaults.
        for cap, base in (
            ("discovery_backoff_max", "discovery_interval"),
            ("probe_backoff_max", "probe_interval"),
        ):
            if getattr(self, cap) < getattr(self, base):
                raise UsageError(
                    f"{cap} ({getattr(self, cap)}) must be >= {base} ({getattr(self, base)})",
                    fields=(cap, base),
                )

    @property
    def observation_ttl(self) -> float:
        """How long an answer counts as fresh: the longest gap between answers of a healthy peer.

        The next probe of a healthy peer is sent at most ``probe_interval * (1 + probe_jitter)``
        after its last answer and is answered within ``probe_timeout`` or fails, so a peer that
        keeps answering is never stale, whatever the interval.
        """
        return self.probe_interval * (1 + self.probe_jitter) + self.probe_timeout

    @property
    def watch_push_interval(self) -> float:
        """Longest gap between two documents a watch endpoint pushes.

        It is the shortest possible probe delay, so a watched peer's answer always arrives
        before the machine's own probe of it falls due, and no poll is sent on top of a watch.
        """
        return self.probe_interval * (1 - self.probe_jitter)

    @property
    def longest_probe_period(self) -> float:
        """The longest a probe connection to one peer can sit idle between two requests.

        The next probe falls due at most ``probe_interval * (1 + probe_jitter)`` after an
        answer, or ``probe_backoff_max`` after a failure (the backoff is capped there, jitter
        included), and a probe may take up to ``probe_timeout``.
        """
        return (
            max(self.probe_backoff_max, self.probe_interval * (1 + self.probe_jitter))
            + self.probe_timeout
        )

    @property
    def client_keepalive_expiry(self) -> float:
        """The prober's idle-connection expiry: longer than the longest probe period.

        httpx's default (5 s) closed the pooled connection before every probe once the probe
        period neared 5 s, which reintroduced the anchors' connection-per-probe leak. The slack
        covers scheduling and network latency between "the probe fell due" and "the request
        reached the pool".
        """
        return self.longest_probe_period + _CLIENT_KEEPALIVE_SLACK

    @property
    def server_keep_alive_timeout(self) -> float:
        """The management server's idle keep-alive timeout: longer than the client's.

        The client therefore always closes first (TIME_WAIT lands on the prober, bounded by its
        peers) and a request never races the server's close.
        """
        return self.client_keepalive_expiry + _SERVER_KEEPALIVE_MARGIN

    @property
    def watch_retry_after(self) -> float:
        """How long a peer that flooded its watch is polled before a watch is tried again.

        Closing a flooding watch and polling bounds what the peer can make us parse; reopening
        it at once would let that peer make us reconnect on every probe (the churn this project
        exists to prevent). Ten of the longest probe periods bound those reconnects to one per
        few minutes with the defaults, while a peer that was only briefly misbehaving is
        watched again in the same process.
        """
        return 10 * self.longest_probe_period

    @property
    def promise_hold(self) -> float:
        """How long a promise to a candidate outlives the candidate's absence (DESIGN section 8).

        A promise is released on evidence only, with one exception: a candidate that has left
        discovery and not answered for this long is presumed crashed, or its promisers would
        wait for it forever. Three of the longest probe periods: several probes have failed by
        then, at any setting. It is the one place where liveness wins over safety: a founder
        that formed and then vanished for this long may see its promisers form again.
        """
        return 3 * self.longest_probe_period

    @classmethod
    def help(cls) -> dict[str, str]:
        """Field name -> one-line description (the source of the docs and CLI help)."""
        return {field.name: field.metadata["help"] for field in attrs.fields(cls)}
