"""The anchor's emulation, piece by piece: its freshness window, its pace, its connections.

The churn benchmark (``test_churn.py``) runs the emulation end to end; these check, without a
clock or a socket where possible, that each piece says what ``benchmarks/anchor.py`` claims.
"""

from __future__ import annotations

import random

import httpx
import pytest
import trio

from benchmarks.anchor import (
    ANCHOR_JITTER,
    FRESHNESS_RULES,
    AnchorPace,
    ConnectionPerProbe,
    anchor_settings,
)
from bootstrap import ContactPoint, SeedNodesDocument, Settings
from bootstrap.server import ManagementApp, serve_management
from tests.helpers.ports import free_port
from tests.helpers.running import run

PEER = ContactPoint("10.0.0.2", 8558)
OTHER = ContactPoint("10.0.0.3", 8558)


@pytest.mark.parametrize("rule", sorted(FRESHNESS_RULES))
@pytest.mark.parametrize("interval", [0.5, 1.0, 5.0, 10.0, 30.0])
def test_the_machine_judges_freshness_by_the_anchors_window(rule: str, interval: float) -> None:
    """observation_ttl comes out at the anchor's fixed window (3 s, or interval + 3 s), and the
    machine asks for probes no later than the anchor's pace would send them, failed or not."""
    settings = anchor_settings(probe_interval=interval, freshness_rule=rule)
    window = FRESHNESS_RULES[rule](interval)
    assert settings.observation_ttl == pytest.approx(window, abs=1e-12)
    assert settings.probe_interval * (1 + settings.probe_jitter) <= interval
    assert settings.probe_backoff_max <= interval
    assert settings.probe_timeout >= window / 2
    assert settings.formation == "lowest-address"


def test_the_common_settings_pass_through() -> None:
    """What every strategy shares (required contact points, the stable margin) is kept."""
    settings = anchor_settings(
        probe_interval=1.0, freshness_rule="jvm", required_contact_points=8, stable_margin=5.0
    )
    assert settings.required_contact_points == 8
    assert settings.stable_margin == 5.0
    assert type(settings) is Settings


def test_the_pace_holds_a_probe_until_the_anchors_time() -> None:
    """At once at first; after a result, not before interval x (1 + U(0, 0.2)), answer or
    failure alike; a held request is released once due, and dropped by a stop."""
    pace = AnchorPace(2.0, random.Random(7))
    assert pace.ask(PEER, None, now=0.0) is True  # never probed: at once
    assert pace.next_due() == float("inf")
    pace.result(PEER, now=0.1)
    expected_due = 0.1 + 2.0 * (1 + random.Random(7).uniform(0, ANCHOR_JITTER))
    assert pace.ask(PEER, None, now=0.6) is False
    assert pace.next_due() == expected_due
    assert 0.1 + 2.0 <= pace.next_due() <= 0.1 + 2.0 * (1 + ANCHOR_JITTER)
    assert pace.release(now=expected_due - 0.01) == []
    assert pace.release(now=expected_due) == [(PEER, None)]
    assert pace.next_due() == float("inf")
    # Held again, then stopped: nothing is released, and the peer starts afresh.
    pace.result(PEER, now=5.0)
    assert pace.ask(PEER, 3, now=5.5) is False
    pace.cancel(PEER)
    assert pace.release(now=100.0) == []
    assert pace.ask(PEER, None, now=5.6) is True
    assert pace.ask(OTHER, None, now=5.6) is True


def test_every_probe_gets_a_connection_of_its_own() -> None:
    """Over ConnectionPerProbe each request opens a new TCP connection and asks the server to
    close it; the server sees one request per connection."""
    port = free_port()
    server_point = ContactPoint("127.0.0.1", port)
    settings = Settings()
    seen: list[tuple[str | None, str | None]] = []

    async def test() -> None:
        app = ManagementApp(
            settings=settings,
            self_contact_point=server_point,
            service_name=None,
            document=lambda: SeedNodesDocument(f"http://{server_point}", ()),
            status=dict,
            ready=lambda: False,
            on_contacted=lambda peer: None,
        )
        connects = 0

        async def trace(event: str, info: object) -> None:
            nonlocal connects
            if event == "connection.connect_tcp.complete":
                connects += 1

        async with trio.open_nursery() as nursery:
            await nursery.start(
                lambda task_status: serve_management(
                    app, bind=server_point, settings=settings, task_status=task_status
                )
            )
            transport = ConnectionPerProbe(local_address="127.0.0.1")
            async with httpx.AsyncClient(transport=transport) as client:
                for _ in range(3):
                    response = await client.get(
                        f"http://{server_point}/bootstrap/seed-nodes",
                        extensions={"trace": trace},
                    )
                    assert response.status_code == 200
                    seen.append(
                        (
                            response.request.headers.get("connection"),
                            response.headers.get("connection"),
                        )
                    )
            assert connects == 3
            assert app.statistics().requests_served == 3
            nursery.cancel_scope.cancel()

    run(test)
    assert seen == [("close", "close")] * 3
