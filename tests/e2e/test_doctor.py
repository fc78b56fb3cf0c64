"""``cluster-bootstrap doctor`` against real node processes on loopback: one test per diagnosis.

Each test starts ``cluster-bootstrap node`` processes set up to fail in one way (or to form),
waits until their own status shows the situation (``waitingOn``, a failure kind), then runs the
doctor as a user would and checks its exit status and what it says, finding by finding. The
processes are always killed (``node_processes``).
"""

from __future__ import annotations

import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import trustme

from bootstrap import ContactPoint
from bootstrap.security import Security
from tests.helpers.ports import free_port

from .loopback import loopback_points
from .test_node_processes import node_processes

DEADLINE = 30.0
FAST = ["--stable-margin", "1", "--probe-interval", "0.3", "--probe-backoff-max", "0.6"]
Status = dict[str, Any]


def wait_for(url: str, done: Callable[[Status], bool], **client: Any) -> Status:
    """``url``'s status once ``done`` holds (else an AssertionError with the last one)."""
    status: Status = {}
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        try:
            status = httpx.get(f"{url}/bootstrap/status", timeout=2.0, **client).json()
        except httpx.HTTPError:
            status = {}
        if status and done(status):
            return status
        time.sleep(0.2)
    raise AssertionError(f"{url}: not there before the deadline; last status: {status}")


def doctor(*args: str) -> tuple[int, str]:
    result = subprocess.run(
        [sys.executable, "-m", "bootstrap", "doctor", "--timeout", "3", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    print(result.stdout)  # shown with -s, and with a failing assertion
    assert result.stderr == "", result.stderr
    return result.returncode, result.stdout


def static_nodes(
    points: list[ContactPoint], *flags: str, listed: str | None = None
) -> list[list[str]]:
    """The arguments of one node per point, each discovering ``listed`` (default: every point)."""
    listing = ",".join(map(str, points)) if listed is None else listed
    return [
        ["--contact-point", str(point), "--contact-points", listing, *flags, *FAST]
        for point in points
    ]


def waiting_on(rule: str) -> Callable[[Status], bool]:
    return lambda status: status.get("waitingOn") == rule


def test_a_formed_cluster_exits_0() -> None:
    points = loopback_points(3, free_port(), first=81)
    with node_processes(static_nodes(points)):
        for point in points:
            wait_for(f"http://{point}", lambda status: status["joined"])
        code, output = doctor(f"http://{points[1]}")  # the others are found through it
    assert code == 0, output
    assert "read 3 of 3 nodes" in output
    assert f"FORMED: one cluster, seed nodes http://{points[0]}" in output


def test_formed_with_a_listed_contact_point_nobody_serves_exits_0_with_a_note() -> None:
    points = loopback_points(4, free_port(), first=76)
    gone = points[3]  # discovery still lists it; nothing listens there
    flags = ["--required-contact-points", "3", "--no-contact-with-all-contact-points"]
    listing = ",".join(map(str, points))
    with node_processes(static_nodes(points[:3], *flags, listed=listing)):
        for point in points[:3]:
            wait_for(f"http://{point}", lambda status: status["joined"])
        code, output = doctor(f"http://{points[0]}")
        assert code == 0, output
        assert f"FORMED: one cluster, seed nodes http://{points[0]}" in output
        assert f"note: could not read the status of {gone}" in output
        # Given by the user, the same contact point is a reason to exit 1: it was asked for.
        code, output = doctor(f"http://{points[0]}", f"http://{gone}")
    assert code == 1, output
    assert f"1. could not read the status of {gone}" in output


def test_the_self_contact_point_missing_from_discovery_a_host_name_against_an_ip() -> None:
    port = free_port()
    # The first node calls itself "localhost"; discovery lists it by its address. The second
    # sees it answer at that address and waits for it, the lowest, to form.
    listing = f"127.0.0.1:{port},127.0.0.2:{port}"
    args = [
        ["--contact-point", f"localhost:{port}", "--contact-points", listing, *FAST],
        ["--contact-point", f"127.0.0.2:{port}", "--contact-points", listing, *FAST],
    ]
    with node_processes(args):
        wait_for(f"http://127.0.0.1:{port}", waiting_on("self-not-discovered"))
        wait_for(f"http://127.0.0.2:{port}", waiting_on("lowest-forms"))
        code, output = doctor(f"http://127.0.0.2:{port}")
    assert code == 1, output
    assert f"1. localhost:{port} is not among the contact points discovery returns" in output
    assert f"discovery lists this node as 127.0.0.1:{port}" in output
    assert (
        f"set this node's --contact-point (BOOTSTRAP_CONTACT_POINT) to 127.0.0.1:{port}" in output
    )
    # Read twice (as 127.0.0.1 and as localhost), counted once; the node waiting for it is
    # pointed at it.
    assert output.count("is not among the contact points") == 1
    assert f"2. 127.0.0.2:{port} has not decided" in output
    assert "the findings about that node say why it does not" in output


def test_required_contact_points_above_the_number_discovered() -> None:
    points = loopback_points(2, free_port(), first=84)
    with node_processes(static_nodes(points, "--required-contact-points", "3")):
        wait_for(f"http://{points[0]}", waiting_on("required-contact-points"))
        code, output = doctor(f"http://{points[0]}")
    assert code == 1, output
    # Both nodes, with the same setting and the same discovery: one finding.
    assert f"1. {points[0]}, {points[1]} require 3 contact points but discovery lists 2" in output
    assert "2." not in output
    assert "lower --required-contact-points to at most the replicas you run" in output


def test_a_peer_that_never_answers_with_its_last_failure() -> None:
    points = loopback_points(3, free_port(), first=86)
    silent = points[2]  # discovered, nobody listens there
    listing = ",".join(map(str, points))
    with node_processes(static_nodes(points[:2], listed=listing)):
        wait_for(f"http://{points[0]}", waiting_on("contact-with-all"))
        code, output = doctor(f"http://{points[0]}")
    assert code == 1, output
    assert f"1. {silent} does not answer" in output
    for point in points[:2]:
        assert f"never answered {point} (" in output
    assert "last failure: connection refused)" in output
    assert "every discovered contact point must answer" in output
    assert "the doctor could not read it either" in output  # it tried
    assert "2." not in output  # one finding: the node waiting for the other is explained


def test_discovery_failing() -> None:
    port, dns_port = free_port(), free_port()  # nothing answers DNS there
    args = [
        "--contact-point",
        f"127.0.0.89:{port}",
        "--discovery",
        "dns",
        "--service-name",
        "shop.default.svc.cluster.local",
        "--dns-server",
        f"127.0.0.1:{dns_port}",
        "--discovery-timeout",
        "0.5",
        *FAST,
    ]
    with node_processes([args]):
        url = f"http://127.0.0.89:{port}"
        wait_for(url, lambda s: s["waitingOn"] == "discovery" and "failed" in s["reason"])
        code, output = doctor(url)
    assert code == 1, output
    assert f"1. discovery fails on 127.0.0.89:{port}" in output
    assert "discovery failed (" in output
    assert "fix the discovery backend this node uses" in output


def test_two_clusters_observed() -> None:
    # Each node discovers only itself: each forms its own cluster.
    points = loopback_points(2, free_port(), first=90)
    args = [
        *static_nodes(points[:1], "--required-contact-points", "1"),
        *static_nodes(points[1:], "--required-contact-points", "1"),
    ]
    with node_processes(args):
        for point in points:
            wait_for(f"http://{point}", lambda status: status["joined"])
        code, output = doctor(*(f"http://{point}" for point in points))
    assert code == 1, output
    assert "2 clusters observed" in output
    for number, point in enumerate(points, 1):
        assert f"cluster {number}: seed nodes http://{point}; members read: {point}" in output
    assert "stop the members of the smaller cluster(s)" in output


def test_a_founding_round_waiting_for_a_promise() -> None:
    # The lowest node runs the founding round; its peer runs the anchor's rule: it never promises.
    points = loopback_points(2, free_port(), first=92)
    listing = ",".join(map(str, points))
    args = [
        *static_nodes(points[:1], listed=listing),
        *static_nodes(points[1:], "--formation", "lowest-address", listed=listing),
    ]
    with node_processes(args):
        wait_for(f"http://{points[0]}", waiting_on("founding-round"))
        code, output = doctor(f"http://{points[0]}")
    assert code == 1, output
    assert f"{points[0]}'s founding round waits for a promise" in output
    assert f"(waiting for {points[1]}, which cannot promise" in output
    assert f"{points[1]} says: expecting {points[0]} to form the cluster" in output
    assert "the nodes use different formation rules" in output
    assert f"lowest-address: {points[1]}" in output


def test_a_secret_mismatch_between_nodes(tmp_path: Path) -> None:
    points = loopback_points(2, free_port(), first=94)
    listing = ",".join(map(str, points))
    secrets = []
    for index, secret in enumerate([b"a" * 32, b"b" * 32]):
        secrets.append(tmp_path / f"secret{index}")
        secrets[-1].write_bytes(secret)
        secrets[-1].chmod(0o600)
    args = [
        ["--contact-point", str(p), "--contact-points", listing, "--secret-file", str(s), *FAST]
        for p, s in zip(points, secrets, strict=True)
    ]
    authorization = Security(secret=b"a" * 32).authorization()
    assert authorization is not None
    with node_processes(args):
        wait_for(
            f"http://{points[0]}",
            lambda s: s["contactPoints"][1]["lastFailureKind"] == "unauthorized",
            headers={"Authorization": authorization},
        )
        code, output = doctor("--secret-file", str(secrets[0]), f"http://{points[0]}")
    assert code == 1, output
    assert f"{points[0]} and {points[1]} do not share the same secret" in output
    assert "it refused our secret: every node of a cluster needs the same one" in output
    assert "the doctor could not read it either: " in output
    assert "HTTP 401: it refused the secret of --secret-file" in output


def test_a_tls_mismatch_between_nodes(tmp_path: Path) -> None:
    # The first node serves TLS, the second plain HTTP.
    points = loopback_points(2, free_port(), first=96)
    listing = ",".join(map(str, points))
    authority = trustme.CA()
    certificate = authority.issue_cert(points[0].host)
    cert, key, ca = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    certificate.cert_chain_pems[0].write_to_path(cert)
    certificate.private_key_pem.write_to_path(key)
    authority.cert_pem.write_to_path(ca)
    tls = ["--tls-cert", str(cert), "--tls-key", str(key), "--tls-ca", str(ca)]
    args = [
        ["--contact-point", str(points[0]), "--contact-points", listing, *tls, *FAST],
        ["--contact-point", str(points[1]), "--contact-points", listing, *FAST],
    ]
    with node_processes(args):
        wait_for(
            f"https://{points[0]}",
            lambda s: s["contactPoints"][1]["lastFailureKind"] == "tls",
            verify=ssl.create_default_context(cafile=str(ca)),
        )
        code, output = doctor("--tls-ca", str(ca), f"https://{points[0]}")
    assert code == 1, output
    assert f"TLS between {points[0]} and {points[1]} fails" in output
    assert "does the peer serve TLS?" in output
    assert "all nodes serve TLS or none" in output
    assert "the doctor could not read it either: " in output
