"""End to end, in one process: nodes with a shared secret and TLS, over real sockets on 127.0.0.x.

Policy (as the other end-to-end tests): real time, an absolute ``trio.fail_after`` on every
test, assertions about outcomes and counts. Certificates come from ``trustme``: one CA issues a
certificate naming every node's IP address, and each test writes them under ``tmp_path``.

Each test starts three good nodes and one intruder at the highest address, with
``required_contact_points=3`` and ``contact_with_all_contact_points`` off: the good nodes must
form one cluster without the intruder, and the intruder must never get an answer. The nodes
record every event fed to their machine, so "never counted as a contact" is checked on the
machine's own input.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio
import trustme

from bootstrap import (
    ContactedBy,
    ContactPoint,
    Event,
    JoinSeedNodes,
    JoinSelf,
    ProbeFailed,
    Settings,
)
from bootstrap.discovery import StaticDiscovery
from bootstrap.membership import LocalMembership
from bootstrap.node import Node
from bootstrap.security import Security, TlsSettings
from tests.helpers.ports import free_port
from tests.helpers.running import run

from .loopback import loopback_points

SETTINGS = Settings(
    stable_margin=1.0,
    probe_interval=0.5,
    probe_backoff_max=1.0,
    required_contact_points=3,
    contact_with_all_contact_points=False,
)
TEST_TIMEOUT = 30.0  # real time, real sockets and TLS handshakes
SECRET = b"s3cret-shared-by-the-good-nodes-0123456789"
OTHER_SECRET = b"another-cluster-secret-9876543210-abcdef"


class RecordingNode(Node):
    """A node that keeps every event its machine is fed (probe results and contacts)."""

    def __init__(self, **kwargs: Any) -> None:
        self.events: list[Event] = []
        super().__init__(**kwargs)

    def _report(self, event: Event) -> None:
        self.events.append(event)
        super()._report(event)

    def contacted_by(self) -> set[ContactPoint]:
        return {event.contact_point for event in self.events if isinstance(event, ContactedBy)}

    def failures(self) -> list[ProbeFailed]:
        """Probe failures, except "connection refused" from a peer that had not started yet."""
        return [
            event
            for event in self.events
            if isinstance(event, ProbeFailed) and event.reason != "connection refused"
        ]

    def failure_kinds(self) -> set[str]:
        return set(self.statistics().prober.failures_by_kind) - {"refused"}


@asynccontextmanager
async def open_recording_node(
    point: ContactPoint, points: list[ContactPoint], security: Security
) -> AsyncIterator[RecordingNode]:
    self_node = f"http://{point}"
    node = RecordingNode(
        settings=SETTINGS,
        contact_point=point,
        self_node=self_node,
        discovery=StaticDiscovery(points),
        membership=LocalMembership(self_node),
        service_name="svc",
        transport="watch",
        rng=None,
        security=security,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        try:
            yield node
        finally:
            nursery.cancel_scope.cancel()


async def start(
    stack: AsyncExitStack, points: list[ContactPoint], securities: list[Security]
) -> list[RecordingNode]:
    """Nodes at ``points``, the last (the intruder) first, so every good node finds it up."""
    started = [
        await stack.enter_async_context(open_recording_node(point, points, security))
        for point, security in reversed(list(zip(points, securities, strict=True)))
    ]
    return started[::-1]


async def assert_one_cluster_without(good: list[RecordingNode], intruder: RecordingNode) -> None:
    """The good nodes form one cluster (the lowest forms it); the intruder stays out of it."""
    for node in good:
        await node.wait_joined()
    assert good[0].decision == JoinSelf()
    for node in good[1:]:
        assert isinstance(node.decision, JoinSeedNodes)
        assert intruder.self_node not in node.decision.seed_nodes
    # Long enough for the intruder to have probed every peer a few times over.
    await trio.sleep(2 * SETTINGS.probe_backoff_max)
    assert intruder.decision is None
    assert not intruder.joined


def tls_files(
    directory: Path, ca: trustme.CA, points: list[ContactPoint], name: str
) -> tuple[Path, Path, Path]:
    """(certificate, key, CA bundle) for a certificate naming every point's IP address."""
    directory.mkdir(exist_ok=True)
    issued = ca.issue_cert(*(point.host for point in points))
    cert, key, bundle = directory / f"{name}.crt", directory / f"{name}.key", directory / "ca.pem"
    for blob, path in [
        (issued.cert_chain_pems[0], cert),
        (issued.private_key_pem, key),
        (ca.cert_pem, bundle),
    ]:
        blob.write_to_path(str(path))
    return cert, key, bundle


def tls_settings(
    directory: Path, ca: trustme.CA, points: list[ContactPoint], *, mutual: bool = False
) -> TlsSettings:
    cert, key, bundle = tls_files(directory, ca, points, "node")
    return TlsSettings(certfile=cert, keyfile=key, cafile=bundle, require_client_certificate=mutual)


@attrs.frozen(kw_only=True)
class NoClientCertificate(TlsSettings):
    """TLS settings whose client side presents no certificate (a misconfigured prober)."""

    def client_context(self) -> ssl.SSLContext:
        assert self.cafile is not None
        return ssl.create_default_context(cafile=self.cafile)


# --- shared secret -------------------------------------------------------------------------------


def test_nodes_with_the_same_secret_form_one_cluster_and_refuse_another() -> None:
    """Three nodes sharing a secret form; a node with another secret is refused and not counted."""

    async def main() -> None:
        points = loopback_points(4, free_port(), first=131)
        securities = [Security(secret=SECRET)] * 3 + [Security(secret=OTHER_SECRET)]
        async with AsyncExitStack() as stack:
            *good, intruder = await start(stack, points, securities)
            await assert_one_cluster_without(good, intruder)
            # Once the good nodes listened, the intruder's every probe was refused with 401.
            failed = {failure.contact_point for failure in intruder.failures()}
            assert failed == set(points[:3])
            assert all("HTTP 401" in failure.reason for failure in intruder.failures())
            assert all("refused our secret" in failure.reason for failure in intruder.failures())
            assert intruder.failure_kinds() == {"unauthorized"}
            # The good nodes never took the intruder for a live peer, but did count each other.
            for node in good:
                assert points[3] not in node.contacted_by()
            assert good[0].contacted_by() >= set(points[1:3])
            # And the intruder refused the good nodes' probes just the same.
            for node in good:
                assert any(
                    failure.contact_point == points[3] and "HTTP 401" in failure.reason
                    for failure in node.failures()
                )

    run(main, seconds=TEST_TIMEOUT)


def test_node_without_a_secret_is_refused() -> None:
    """A node with no secret at all gets 401 from protected peers, and says it has none."""

    async def main() -> None:
        points = loopback_points(4, free_port(), first=136)
        securities = [Security(secret=SECRET)] * 3 + [Security()]
        async with AsyncExitStack() as stack:
            *good, intruder = await start(stack, points, securities)
            await assert_one_cluster_without(good, intruder)
            reasons = {failure.reason for failure in intruder.failures()}
            assert reasons == {
                f"HTTP 401 from {point}: it requires a shared secret and this node has none"
                for point in points[:3]
            }
            for node in good:
                assert points[3] not in node.contacted_by()

    run(main, seconds=TEST_TIMEOUT)


# --- TLS ------------------------------------------------------------------------------------------


def test_tls_nodes_form_one_cluster_over_watches(tmp_path: Path) -> None:
    """Over https and wss with a shared secret, nodes form one cluster through their watches."""
    points = loopback_points(3, free_port(), first=141)
    tls = tls_settings(tmp_path, trustme.CA(), points)
    security = Security(secret=SECRET, tls=tls)

    async def main() -> None:
        async with AsyncExitStack() as stack:
            nodes = await start(stack, points, [security] * 3)
            for node in nodes:
                await node.wait_joined()
            assert [node.decision for node in nodes].count(JoinSelf()) == 1
            assert nodes[0].decision == JoinSelf()
            for node in nodes:
                statistics = node.statistics().prober
                # Answers came over watches (wss), and no probe ever failed.
                assert statistics.watch_messages_received > 0
                assert node.failure_kinds() == set()
                assert node.failures() == []

    run(main, seconds=TEST_TIMEOUT)


def test_node_trusting_another_ca_cannot_probe(tmp_path: Path) -> None:
    """A node whose CA bundle does not hold the cluster's CA fails certificate verification."""
    points = loopback_points(4, free_port(), first=146)
    good_tls = tls_settings(tmp_path / "good", trustme.CA(), points)
    other_tls = tls_settings(tmp_path / "other", trustme.CA(), points)

    async def main() -> None:
        securities = [Security(secret=SECRET, tls=good_tls)] * 3
        securities.append(Security(secret=SECRET, tls=other_tls))
        async with AsyncExitStack() as stack:
            *good, intruder = await start(stack, points, securities)
            await assert_one_cluster_without(good, intruder)
            assert intruder.failures()
            for failure in intruder.failures():
                assert failure.reason.startswith("TLS certificate verification failed")
            assert intruder.failure_kinds() == {"tls"}
            # Both ways: the good nodes do not trust the intruder's certificate either.
            for node in good:
                assert points[3] not in node.contacted_by()
                assert any(
                    failure.contact_point == points[3]
                    and "certificate verification failed" in failure.reason
                    for failure in node.failures()
                )

    run(main, seconds=TEST_TIMEOUT)


def test_mutual_tls_refuses_a_node_without_a_client_certificate(tmp_path: Path) -> None:
    """With client certificates required, a node that presents none is refused at the handshake."""
    points = loopback_points(4, free_port(), first=151)
    ca = trustme.CA()
    mutual = tls_settings(tmp_path, ca, points, mutual=True)
    # The intruder serves a valid certificate of the same CA and knows the secret: only its
    # client certificate is missing.
    without = NoClientCertificate(
        certfile=mutual.certfile, keyfile=mutual.keyfile, cafile=mutual.cafile
    )

    async def main() -> None:
        securities = [Security(secret=SECRET, tls=mutual)] * 3
        securities.append(Security(secret=SECRET, tls=without))
        async with AsyncExitStack() as stack:
            *good, intruder = await start(stack, points, securities)
            await assert_one_cluster_without(good, intruder)
            assert intruder.failures()
            for failure in intruder.failures():
                assert "requires a client certificate" in failure.reason, failure.reason
            assert intruder.failure_kinds() == {"tls"}
            for node in good:
                assert points[3] not in node.contacted_by()
                # The good nodes' watches carried the answers, over mutual TLS.
                assert node.statistics().prober.watch_messages_received > 0

    run(main, seconds=TEST_TIMEOUT)
