"""An emulation of the anchor (Akka Management's Cluster Bootstrap) from this project's parts.

The churn benchmark runs it beside our own node in the same run, on the same machine, with the
same HTTP stack, so the difference it measures is the anchor's *behaviour*, not a different
runtime. What the emulation reproduces, and what it does not, is listed in ``docs/benchmarks.md``;
in short:

* **A new TCP connection for every probe.** The prober keeps no idle connection
  (``max_keepalive_connections=0``) and asks for ``Connection: close``; the server answers every
  request with ``Connection: close`` too, so it closes first and holds the TIME_WAIT socket for
  the kernel's 60 s, as the anchor's lab measured.
* **The anchor's probe pace.** A contact point is probed every ``interval x (1 + U(0, 0.2))``;
  a failed probe is retried at the same pace (no exponential backoff).
* **The anchor's freshness rule**, not derived from the probe interval: an answer counts for
  3 s (the JVM's ``probing-failure-timeout``) or ``interval + 3 s`` (the .NET port's fix).
* **No reaction to being probed**: our node re-probes at once a peer it was backing off from
  when that peer reaches it (``ContactedBy``); the anchor has no such signal.
* Everything else (discovery, stable margin, lowest-address rule, joining) is this project's
  machine, so the decision rules are the same on both sides of the comparison.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import attrs
import httpx

from bootstrap.core import ContactedBy, Event, Settings
from bootstrap.node import Node
from bootstrap.prober import Prober, Transport
from bootstrap.server import ManagementApp

__all__ = ["FRESHNESS_RULES", "AnchorNode", "AnchorSettings", "anchor_settings"]

#: How long the anchor counts an answer as fresh, by probe interval.
FRESHNESS_RULES: dict[str, Callable[[float], float]] = {
    "jvm": lambda interval: 3.0,
    "dotnet": lambda interval: interval + 3.0,
}

# The anchor adds 0..20 % to every probe delay; our machine scales by U(1 - j, 1 + j). Centring
# ours on the anchor's range gives exactly the same distribution.
_ANCHOR_JITTER = 0.2


@attrs.frozen(kw_only=True)
class AnchorSettings(Settings):
    """Our settings with the anchor's fixed freshness window in place of the derived one."""

    anchor_freshness: float

    @property
    def observation_ttl(self) -> float:
        return self.anchor_freshness


def anchor_settings(*, probe_interval: float, freshness_rule: str, **common: Any) -> AnchorSettings:
    """Settings that make our machine probe and judge freshness the anchor's way."""
    centre = probe_interval * (1 + _ANCHOR_JITTER / 2)
    return AnchorSettings(
        probe_interval=centre,
        probe_jitter=(_ANCHOR_JITTER / 2) / (1 + _ANCHOR_JITTER / 2),
        # The anchor retries a failed contact point at the probe pace: a backoff capped at the
        # longest regular delay never grows.
        probe_backoff_max=probe_interval * (1 + _ANCHOR_JITTER),
        anchor_freshness=FRESHNESS_RULES[freshness_rule](probe_interval),
        # The anchor forms by the lowest-address rule: it knows no founding round.
        formation="lowest-address",
        **common,
    )


class AnchorProber(Prober):
    """Polls over a new TCP connection per probe, closed after the answer."""

    def __init__(self, **kwargs: Any) -> None:
        settings: Settings = kwargs["settings"]
        # Our prober refuses settings under which idle connections would expire between probes
        # (the anchor's leak). Here no connection is ever kept, so the check does not apply.
        super().__init__(
            transport="poll", keepalive_expiry=settings.longest_probe_period + 1.0, **kwargs
        )
        self._headers["Connection"] = "close"

    def _pool_limits(self) -> httpx.Limits:
        return httpx.Limits(max_connections=1, max_keepalive_connections=0)


class _CloseAfterResponse:
    """Wraps the management app so every HTTP response ends its connection, as the anchor's did."""

    def __init__(self, app: ManagementApp) -> None:
        self._app = app

    def __getattr__(self, name: str) -> Any:
        return getattr(self._app, name)

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def send_closing(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (b"connection", b"close")]
                message = {**message, "headers": headers}
            await send(message)

        await self._app(scope, receive, send_closing)


class AnchorNode(Node):
    """Our node with the anchor's prober and connection handling swapped in."""

    def _report(self, event: Event) -> None:
        # Being probed tells the anchor nothing: it has no counterpart of our ContactedBy (which
        # re-probes a peer we were backing off from the moment it reaches us), so a peer that
        # starts late is confirmed only at the anchor's next scheduled probe.
        if isinstance(event, ContactedBy):
            return
        super()._report(event)

    def _make_prober(self, transport: Transport) -> Prober:
        return AnchorProber(
            settings=self.settings,
            self_contact_point=self.contact_point,
            service_name=self.service_name,
            report=self._report,
        )

    def _make_app(self) -> ManagementApp:
        return _CloseAfterResponse(super()._make_app())  # type: ignore[return-value]
