"""Tests of Kubernetes discovery against a stand-in API server over real HTTPS on 127.0.0.1.

Testing policy:

* Every test runs under an absolute ``trio.fail_after`` (:func:`run`), real clock: the TLS
  handshakes and the connection count are what these tests are about.
* The API server is :mod:`tests.drivers.kube_api` (hypercorn + a ``trustme`` CA), answering
  documents shaped like the real API server's; service-account files live in ``tmp_path``.
* Every message a user can get is asserted by the words that tell them what to fix.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trustme

from bootstrap import ContactPoint, Settings, UsageError
from bootstrap.discovery import Discovery, DiscoveryError, KubernetesDiscovery
from tests.helpers.running import run

from .kube_api import (
    Answer,
    KubeApi,
    KubeApiServer,
    Port,
    bad_request,
    forbidden,
    pod,
    pod_list,
    serve_kube_api,
    status,
    unauthorized,
)

TEST_TIMEOUT = 30.0  # generous: a CPU-heavy neighbour may slow the TLS handshakes
TOKEN = "token-1"
SELECTOR = "app=svc"
LOGGER = "bootstrap.discovery.kubernetes"


@asynccontextmanager
async def kube(
    api: KubeApi, tmp_path: Path, *, tls: bool = True, **options: Any
) -> AsyncIterator[tuple[KubeApiServer, KubernetesDiscovery]]:
    """The stand-in serving ``api``, and a discovery pointed at it (``options`` override)."""
    token_file = tmp_path / "token"
    if "token_file" not in options:
        token_file.write_text(TOKEN + "\n")
    async with serve_kube_api(api, tmp_path, tls=tls) as server:
        arguments: dict[str, Any] = {
            "label_selector": SELECTOR,
            "namespace": "default",
            "port_name": "management",
            "api_url": server.url,
            "token_file": token_file,
            "ca_file": server.ca_file or tmp_path / "absent-ca.crt",
            "namespace_file": tmp_path / "absent-namespace",
            "environ": {},
            "timeout": 10.0,
        }
        arguments.update(options)
        async with KubernetesDiscovery(**arguments) as discovery:
            yield server, discovery


def lookup(api: KubeApi, tmp_path: Path, **options: Any) -> list[ContactPoint]:
    """One lookup against ``api``."""

    async def test() -> list[ContactPoint]:
        async with kube(api, tmp_path, **options) as (_, discovery):
            return await discovery.lookup()

    return run(test, seconds=TEST_TIMEOUT)


def lookup_error(api: KubeApi, tmp_path: Path, **options: Any) -> str:
    """The message of the DiscoveryError one lookup against ``api`` raises."""

    async def test() -> str:
        async with kube(api, tmp_path, **options) as (_, discovery):
            with pytest.raises(DiscoveryError) as raised:
                await discovery.lookup()
            return str(raised.value)

    return run(test, seconds=TEST_TIMEOUT)


def closed_port() -> int:
    """A port on 127.0.0.1 that is bound but not listening: connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def warnings_from(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == LOGGER and record.levelno == logging.WARNING
    ]


# --- which pods count ---------------------------------------------------------------------------


def cluster_pods() -> list[dict[str, Any]]:
    """Every kind of pod a real namespace holds, and a few that do not match the selector."""
    two_containers = (
        (Port("metrics", 9102), Port(None, 8080)),
        (Port("management-metrics", 9103), Port("management", 8559)),
    )
    return [
        pod("svc-ready", "10.0.0.1"),
        pod("svc-not-ready", "10.0.0.2", ready=False),  # Running: kept (readiness needs joining)
        pod("svc-terminating", "10.0.0.3", deleting=True),
        pod("svc-pending", None, phase="Pending", ready=False),
        pod("svc-pending-with-ip", "10.0.0.9", phase="Pending", ready=False),
        pod("svc-no-ip", None),
        pod("svc-succeeded", "10.0.0.8", phase="Succeeded", ready=False),
        pod("svc-sidecar", "10.0.0.5", containers=two_containers),
        pod("svc-metrics-only", "10.0.0.6", containers=((Port("management-metrics", 9102),),)),
        pod("svc-udp", "10.0.0.7", containers=((Port("management", 8558, "UDP"),),)),
        pod("svc-v6", "fd00::7"),
        pod("svc-dual-stack", "10.0.0.4", ips=["10.0.0.4", "fd00::4"]),
        # hostNetwork pods of one node share its IP: one contact point, not two.
        pod("svc-host-a", "10.0.1.1"),
        pod("svc-host-b", "10.0.1.1"),
        pod("other-app", "10.0.0.20", labels={"app": "other"}),
        pod("svc-elsewhere", "10.0.0.21", namespace="kube-system"),
    ]


def test_lists_exactly_the_running_pods_at_their_named_port(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Running, not terminating, with an IP and the exact port name; sorted and de-duplicated."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    api = KubeApi(cluster_pods(), namespaces={"default", "kube-system"})

    async def test() -> list[list[ContactPoint]]:
        async with kube(api, tmp_path) as (_, discovery):
            assert isinstance(discovery, Discovery)
            return [await discovery.lookup(), await discovery.lookup()]

    first, second = run(test, seconds=TEST_TIMEOUT)
    assert first == [
        ContactPoint("10.0.0.1", 8558),
        ContactPoint("10.0.0.2", 8558),
        ContactPoint("10.0.0.4", 8558),
        ContactPoint("10.0.0.5", 8559),
        ContactPoint("10.0.1.1", 8558),
        ContactPoint("fd00::7", 8558),
    ]
    assert second == first
    # Each skipped pod is logged once, naming the pod and the ports it has, not per lookup.
    assert warnings_from(caplog) == [
        "skipping pod svc-metrics-only: it has no TCP container port named exactly 'management' "
        "(its named ports: management-metrics (9102/TCP)); name the management port "
        "'management' in the pod template, or change port_name (--pod-port-name)",
        "skipping pod svc-udp: it has no TCP container port named exactly 'management' (its "
        "named ports: management (8558/UDP)); name the management port 'management' in the pod "
        "template, or change port_name (--pod-port-name)",
    ]


def test_without_a_port_name_pods_have_no_port(tmp_path: Path) -> None:
    """No port_name: the pod IP alone (the node applies its fallback port), any ports."""
    api = KubeApi(cluster_pods())
    assert lookup(api, tmp_path, port_name=None) == [
        ContactPoint("10.0.0.1"),
        ContactPoint("10.0.0.2"),
        ContactPoint("10.0.0.4"),
        ContactPoint("10.0.0.5"),
        ContactPoint("10.0.0.6"),
        ContactPoint("10.0.0.7"),
        ContactPoint("10.0.1.1"),
        ContactPoint("fd00::7"),
    ]


def test_a_pod_warning_is_logged_again_after_it_was_fixed_and_broke_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Warnings follow the pod list: one gone from the answer is logged again if it returns."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    broken = pod("svc-broken", "10.0.0.6", containers=((Port("http", 8080),),))
    api = KubeApi([pod("svc-1", "10.0.0.1"), broken])

    async def test() -> None:
        async with kube(api, tmp_path) as (_, discovery):
            await discovery.lookup()
            api.pods = [pod("svc-1", "10.0.0.1")]
            await discovery.lookup()
            api.pods.append(broken)
            await discovery.lookup()

    run(test, seconds=TEST_TIMEOUT)
    assert len(warnings_from(caplog)) == 2
    assert all(
        "svc-broken" in message and "http (8080/TCP)" in message
        for message in warnings_from(caplog)
    )


def test_malformed_pod_entries_are_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Entries that are not pods are skipped, each logged once; the good pods still count."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    bad_ip = pod("svc-bad-ip", "10.0.0.2")
    bad_ip["status"]["podIP"] = "not-an-ip"
    no_containers = pod("svc-no-containers", "10.0.0.3")
    no_containers["spec"]["containers"] = "c0"
    bad_ports = pod("svc-bad-ports", "10.0.0.4")
    bad_ports["spec"]["containers"][0]["ports"] = {"name": "management"}
    bad_port = pod("svc-bad-port", "10.0.0.5")
    bad_port["spec"]["containers"][0]["ports"] = ["management"]
    bad_number = pod("svc-bad-number", "10.0.0.6")
    bad_number["spec"]["containers"][0]["ports"][0]["containerPort"] = "8558"
    no_status = pod("svc-no-status", "10.0.0.7")
    del no_status["status"]
    items = [
        pod("svc-good", "10.0.0.1"),
        "not a pod",
        {"metadata": {}},
        no_status,
        bad_ip,
        no_containers,
        bad_ports,
        bad_port,
        bad_number,
    ]
    api = KubeApi()
    api.answer = Answer.json(200, pod_list(items))

    async def test() -> list[list[ContactPoint]]:
        async with kube(api, tmp_path) as (_, discovery):
            return [await discovery.lookup(), await discovery.lookup()]

    first, second = run(test, seconds=TEST_TIMEOUT)
    assert first == second == [ContactPoint("10.0.0.1", 8558)]
    assert warnings_from(caplog) == [
        "skipping item #1 of the pod list: not an object",
        "skipping item #2 of the pod list: it has no metadata.name",
        "skipping pod svc-no-status: it has no status object",
        "skipping pod svc-bad-ip: status.podIP 'not-an-ip' is not an IP",
        "skipping pod svc-no-containers: it has no spec.containers list",
        "skipping pod svc-bad-ports: malformed spec.containers entry",
        "skipping pod svc-bad-port: malformed container port 'management'",
        "skipping pod svc-bad-number: its port 'management' has containerPort '8558', not a "
        "port number",
    ]


def test_an_empty_pod_list_is_no_error_but_a_warning_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No pod matches: [] (not an error), and one warning naming the selector and namespace."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    api = KubeApi([pod("other", "10.0.0.1", labels={"app": "other"})])

    async def test() -> list[list[ContactPoint]]:
        async with kube(api, tmp_path) as (_, discovery):
            return [await discovery.lookup(), await discovery.lookup()]

    assert run(test, seconds=TEST_TIMEOUT) == [[], []]
    assert warnings_from(caplog) == [
        "no pod in namespace 'default' matches the label selector 'app=svc' (when running in a "
        "pod, its own pod should): check the selector against the pod template's labels"
    ]


# --- the request --------------------------------------------------------------------------------


def test_the_request_asks_the_watch_cache_with_the_selector_and_the_token(tmp_path: Path) -> None:
    """GET .../namespaces/NS/pods with labelSelector URL-encoded, resourceVersion=0, the token."""
    selector = "app.kubernetes.io/name=svc,tier!=db,!canary"
    api = KubeApi(
        [
            pod("svc-1", "10.0.0.1", labels={"app.kubernetes.io/name": "svc"}),
            pod("svc-db", "10.0.0.2", labels={"app.kubernetes.io/name": "svc", "tier": "db"}),
            pod("svc-canary", "10.0.0.3", labels={"app.kubernetes.io/name": "svc", "canary": ""}),
        ]
    )
    assert lookup(api, tmp_path, label_selector=selector) == [ContactPoint("10.0.0.1", 8558)]
    [request] = api.requests
    assert request.method == "GET"
    assert request.path == "/api/v1/namespaces/default/pods"
    assert request.raw_query == (
        "labelSelector=app.kubernetes.io%2Fname%3Dsvc%2Ctier%21%3Ddb%2C%21canary&resourceVersion=0"
    )
    assert request.query == {"labelSelector": [selector], "resourceVersion": ["0"]}
    assert request.authorization == f"Bearer {TOKEN}"
    assert request.headers["accept"] == "application/json"
    assert request.headers["user-agent"].startswith("cluster-bootstrap/")


def test_five_lookups_use_one_connection(tmp_path: Path) -> None:
    """The client is kept across lookups: five lookups, one TCP connection (and one handshake)."""
    api = KubeApi([pod("svc-1", "10.0.0.1")])

    async def test() -> None:
        async with kube(api, tmp_path) as (_, discovery):
            for _ in range(5):
                assert await discovery.lookup() == [ContactPoint("10.0.0.1", 8558)]

    run(test, seconds=TEST_TIMEOUT)
    assert len(api.requests) == 5
    assert api.connections == 1


def test_errors_keep_the_connection_too(tmp_path: Path) -> None:
    """A 403 is read to its end, so the next lookup still reuses the connection."""
    api = KubeApi([pod("svc-1", "10.0.0.1")])

    async def test() -> None:
        async with kube(api, tmp_path) as (_, discovery):
            api.forbidden = True
            with pytest.raises(DiscoveryError):
                await discovery.lookup()
            api.forbidden = False
            assert await discovery.lookup() == [ContactPoint("10.0.0.1", 8558)]

    run(test, seconds=TEST_TIMEOUT)
    assert api.connections == 1


def test_a_large_list_arrives_gzipped_and_is_bounded_after_inflating(tmp_path: Path) -> None:
    """Lists over 128 KiB come compressed; the size limit counts the inflated bytes."""
    pods = [pod(f"svc-{index}", f"10.1.{index // 250}.{index % 250 + 1}") for index in range(400)]
    body_size = len(Answer.json(200, pod_list(pods)).body)
    assert len(gzip.compress(Answer.json(200, pod_list(pods)).body)) < 100_000 < body_size
    api = KubeApi(pods)
    assert len(lookup(api, tmp_path)) == 400
    assert api.compressed_responses == 1
    second = tmp_path / "second"
    second.mkdir()
    message = lookup_error(api, second, max_response_bytes=100_000)
    assert "over max_response_bytes (100000 bytes)" in message


# --- the token ----------------------------------------------------------------------------------


def install_token(directory: Path, token: str, generation: int) -> None:
    """Write ``token`` the way the kubelet does: a new directory, then swap the ..data link."""
    version = directory / f"..2024_05_01_10_00_0{generation}"
    version.mkdir()
    (version / "token").write_text(token)
    staging = directory / "..data_tmp"
    staging.symlink_to(version.name)
    os.replace(staging, directory / "..data")
    if not (directory / "token").is_symlink():
        (directory / "token").symlink_to("..data/token")


def test_a_rotated_token_is_sent_from_the_next_lookup(tmp_path: Path) -> None:
    """The kubelet swaps the ..data symlink to a new token: the next request carries it."""
    account = tmp_path / "serviceaccount"
    account.mkdir()
    install_token(account, "token-old", 1)
    api = KubeApi([pod("svc-1", "10.0.0.1")], tokens={"token-old"})

    async def test() -> None:
        async with kube(api, tmp_path, token_file=account / "token") as (_, discovery):
            await discovery.lookup()
            install_token(account, "token-new", 2)
            api.tokens = {"token-new"}  # the old one has expired
            await discovery.lookup()

    run(test, seconds=TEST_TIMEOUT)
    assert [request.authorization for request in api.requests] == [
        "Bearer token-old",
        "Bearer token-new",
    ]


def test_the_token_is_reread_only_when_its_file_changed(tmp_path: Path) -> None:
    """Same inode, size and mtime: the cached token; a new mtime: the file is read again."""
    token_file = tmp_path / "token"
    token_file.write_text("token-1")
    before = token_file.stat()
    api = KubeApi([pod("svc-1", "10.0.0.1")], tokens={"token-1", "token-9"})

    async def test() -> None:
        async with kube(api, tmp_path, token_file=token_file) as (_, discovery):
            await discovery.lookup()
            token_file.write_text("token-9")  # same length, in place
            os.utime(token_file, ns=(before.st_atime_ns, before.st_mtime_ns))
            await discovery.lookup()
            os.utime(token_file, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))
            await discovery.lookup()

    run(test, seconds=TEST_TIMEOUT)
    assert [request.authorization for request in api.requests] == [
        "Bearer token-1",
        "Bearer token-1",
        "Bearer token-9",
    ]


def test_without_a_token_file_no_authorization_is_sent_and_that_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Through kubectl proxy (plain http, no token): no Authorization header, one INFO line."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    api = KubeApi([pod("svc-1", "10.0.0.1")], tokens=None)

    async def test() -> None:
        async with kube(api, tmp_path, tls=False, token_file=tmp_path / "absent") as (
            server,
            discovery,
        ):
            assert server.url.startswith("http://")
            for _ in range(2):
                assert await discovery.lookup() == [ContactPoint("10.0.0.1", 8558)]

    run(test, seconds=TEST_TIMEOUT)
    assert [request.authorization for request in api.requests] == [None, None]
    infos = [
        r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.INFO
    ]
    assert infos == [
        f"no service-account token at {tmp_path / 'absent'}: sending requests without one "
        "(right for a local API proxy such as kubectl proxy; in a pod, mount the token)"
    ]


def test_an_unreadable_token_file_is_an_error(tmp_path: Path) -> None:
    """A token path that cannot be read (here a directory) names the file."""
    (tmp_path / "token-dir").mkdir()
    message = lookup_error(KubeApi(), tmp_path, token_file=tmp_path / "token-dir")
    assert message.startswith(f"cannot read the service-account token {tmp_path / 'token-dir'}:")
    assert "Is a directory" in message


def test_an_empty_token_file_is_an_error(tmp_path: Path) -> None:
    """An empty token file is named, with what to do."""
    (tmp_path / "empty").write_text("\n")
    message = lookup_error(KubeApi(), tmp_path, token_file=tmp_path / "empty")
    assert message == (
        f"the service-account token file {tmp_path / 'empty'} is empty: mount the pod's "
        "service-account token there, or point token_file at one"
    )


def test_a_token_file_holding_no_token_is_an_error(tmp_path: Path) -> None:
    """Spaces or control characters cannot be a token (nor a valid header)."""
    (tmp_path / "garbage").write_text("two words\n")
    message = lookup_error(KubeApi(), tmp_path, token_file=tmp_path / "garbage")
    assert message.startswith(
        f"the service-account token file {tmp_path / 'garbage'} does not hold"
    )


# --- what the API server answers ----------------------------------------------------------------


def test_401_says_the_token_was_rejected(tmp_path: Path) -> None:
    """A token the API server does not accept: 'token rejected', naming the token file."""
    message = lookup_error(KubeApi(tokens={"another"}), tmp_path)
    assert message.startswith("token rejected: the API server at https://127.0.0.1:")
    assert "answered 401 Unauthorized (Unauthorized)" in message
    assert f"to the token in {tmp_path / 'token'}: it is invalid, expired" in message


def test_401_without_a_token_says_none_was_sent(tmp_path: Path) -> None:
    """No token file and the API server wants one: say so, and how to mount it."""
    message = lookup_error(KubeApi(), tmp_path, token_file=tmp_path / "absent")
    assert message.startswith(
        f"token rejected: no token was sent ({tmp_path / 'absent'} does not exist)"
    )
    assert "automountServiceAccountToken" in message


def test_403_shows_the_kubernetes_message_and_the_rbac_to_add(tmp_path: Path) -> None:
    """Forbidden: the API server's message, and the Role and RoleBinding the account needs."""
    api = KubeApi()
    api.forbidden = True
    message = lookup_error(api, tmp_path)
    assert message.startswith("forbidden: the API server at https://127.0.0.1:")
    assert (
        'answered 403 Forbidden: pods is forbidden: User "system:serviceaccount:default:default" '
        'cannot list resource "pods" in API group "" in the namespace "default". '
    ) in message
    assert message.endswith(
        "The pod's ServiceAccount needs a Role granting get, list and watch on pods in namespace "
        "'default' and a RoleBinding of that Role to the ServiceAccount; see docs/kubernetes.md"
    )


def test_404_names_the_namespace_and_the_url(tmp_path: Path) -> None:
    """Not found: the Status message, and the two things to check."""
    message = lookup_error(KubeApi(), tmp_path, namespace="nope")
    assert message.startswith("not found: the API server at https://127.0.0.1:")
    assert (
        'answered 404 Not Found to GET /api/v1/namespaces/nope/pods (namespaces "nope" not '
        "found): does namespace 'nope' exist, and is the URL the API server's (with no path)?"
    ) in message


def test_404_for_a_wrong_path_prefix(tmp_path: Path) -> None:
    """An api_url with a path the server does not have: the same hint, its own message."""

    async def test() -> str:
        async with (
            kube(KubeApi(), tmp_path) as (server, _),
            KubernetesDiscovery(
                label_selector=SELECTOR,
                namespace="default",
                api_url=f"{server.url}/k8s",
                token_file=tmp_path / "token",
                ca_file=server.ca_file or "",
            ) as discovery,
        ):
            with pytest.raises(DiscoveryError) as raised:
                await discovery.lookup()
            return str(raised.value)

    message = run(test, seconds=TEST_TIMEOUT)
    assert "(the server could not find the requested resource)" in message
    assert "is the URL the API server's (with no path)?" in message


def test_400_points_at_the_label_selector(tmp_path: Path) -> None:
    """A selector the API server cannot parse: its message, and the selector to check."""
    message = lookup_error(KubeApi(), tmp_path, label_selector="app in (svc")
    assert "answered 400 Bad Request (unable to parse requirement: 'app in (svc'" in message
    assert message.endswith("check the label selector 'app in (svc'")


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (
            Answer.json(500, status(500, "InternalError", "etcdserver: request timed out")),
            "answered 500 Internal Server Error (etcdserver: request timed out)",
        ),
        (
            Answer.json(429, status(429, "TooManyRequests", "too many requests")),
            "answered 429 Too Many Requests (too many requests): it is throttling us; raise "
            "discovery_interval",
        ),
        (
            Answer(503, b"<html>upstream unavailable</html>"),
            "answered 503 Service Unavailable (body '<html>upstream unavailable</html>')",
        ),
        (
            Answer(302, b"", [(b"location", b"https://login.example/")]),
            "answered 302 Found, redirecting to 'https://login.example/', which is not followed: "
            "point api_url at the API server itself",
        ),
    ],
    ids=["500", "429", "503-html", "302"],
)
def test_other_statuses_give_the_status_and_the_message(
    tmp_path: Path, answer: Answer, expected: str
) -> None:
    """Any other status: the code, its phrase and the Status message (or the body's start)."""
    api = KubeApi()
    api.answer = answer
    message = lookup_error(api, tmp_path)
    assert message.startswith("the API server at https://127.0.0.1:")
    assert message.endswith(expected)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"{not json", "sent a pod list that is not valid JSON (Expecting property name"),
        (b"[" * 100_000 + b"]" * 100_000, "sent a pod list that is not valid JSON (nested too"),
        (b"<html>hello</html>", "sent a pod list that is not valid JSON"),
    ],
    ids=["broken", "deep", "html"],
)
def test_a_body_that_is_not_json_is_an_error(tmp_path: Path, body: bytes, expected: str) -> None:
    """Not JSON (or JSON too deep to parse): say so, and ask whether the URL is right."""
    api = KubeApi()
    api.answer = Answer(200, body)
    message = lookup_error(api, tmp_path)
    assert expected in message
    assert message.endswith("is the URL the Kubernetes API server's?")


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (
            {"kind": "ServiceList", "apiVersion": "v1", "items": []},
            "answered with 'ServiceList' where a PodList was expected: is the URL the "
            "Kubernetes API server's?",
        ),
        ([], "answered with 'list' where a PodList was expected"),
        (
            {"kind": "PodList", "apiVersion": "v1", "items": {"svc-1": {}}},
            "has items of type dict, not a list",
        ),
    ],
    ids=["service-list", "array", "items-not-a-list"],
)
def test_json_that_is_not_a_pod_list_is_an_error(
    tmp_path: Path, document: object, expected: str
) -> None:
    """JSON, but not a PodList with a list of items."""
    api = KubeApi()
    api.answer = Answer.json(200, document)
    assert expected in lookup_error(api, tmp_path)


def test_a_pod_list_with_null_items_is_empty(tmp_path: Path) -> None:
    """``items: null`` is how Go may encode an empty list: no pods, no error."""
    api = KubeApi()
    api.answer = Answer.json(200, {"kind": "PodList", "apiVersion": "v1", "items": None})
    assert lookup(api, tmp_path) == []


def test_a_body_over_the_limit_by_its_length_is_an_error(tmp_path: Path) -> None:
    """Content-Length over max_response_bytes: refused before reading, with what to change."""
    api = KubeApi([pod(f"svc-{index}", f"10.0.0.{index + 1}") for index in range(10)])
    message = lookup_error(api, tmp_path, max_response_bytes=5000)
    assert message.startswith("the pod list from the API server at https://127.0.0.1:")
    assert message.endswith(
        "is over max_response_bytes (5000 bytes): narrow label_selector 'app=svc' or raise "
        "max_response_bytes"
    )


def test_a_streamed_body_is_bounded_while_it_arrives(tmp_path: Path) -> None:
    """No Content-Length and a body that never ends: the limit stops it, not the timeout."""
    api = KubeApi()
    api.answer = Answer(200, b" " * 20_000, chunk_size=1000, stall=True)

    async def test() -> tuple[str, float]:
        async with kube(api, tmp_path, max_response_bytes=5000, timeout=20.0) as (_, discovery):
            start = trio.current_time()
            with pytest.raises(DiscoveryError) as raised:
                await discovery.lookup()
            return str(raised.value), trio.current_time() - start

    message, took = run(test, seconds=TEST_TIMEOUT)
    assert "is over max_response_bytes (5000 bytes)" in message
    assert took < 10.0


# --- transport failures -------------------------------------------------------------------------


def test_no_answer_within_the_timeout_is_an_error(tmp_path: Path) -> None:
    """The API server does not answer in time: the URL and the timeout, and what may block it."""
    api = KubeApi([pod("svc-1", "10.0.0.1")])
    api.delay = 60.0
    message = lookup_error(api, tmp_path, timeout=0.5)
    assert message.startswith("no answer from the API server at https://127.0.0.1:")
    assert message.endswith(
        "within 0.5 s: is it reachable from here (a NetworkPolicy may block egress to it)?"
    )


def test_a_lookup_ends_just_before_the_callers_deadline(tmp_path: Path) -> None:
    """Without a timeout of its own, the node's deadline bounds the lookup; our error wins."""
    api = KubeApi([pod("svc-1", "10.0.0.1")])
    api.delay = 60.0

    async def test() -> tuple[str, bool, float]:
        async with kube(api, tmp_path, timeout=None) as (_, discovery):
            started = trio.current_time()
            # As the node runs a lookup: under a cancel scope at its discovery_timeout.
            with trio.move_on_after(0.5) as node_scope:
                with pytest.raises(DiscoveryError) as raised:
                    await discovery.lookup()
            return str(raised.value), node_scope.cancelled_caught, trio.current_time() - started

    message, cancelled_by_the_node, took = run(test, seconds=TEST_TIMEOUT)
    assert not cancelled_by_the_node
    # The reason names the time the lookup had left when it began (a little under 0.5 s on a
    # busy machine: the real clock runs between the scope's start and the request).
    within = re.search(r"within (\d+\.\d+) s: is it reachable from here \(a NetworkPolicy", message)
    assert within is not None, message
    assert 0.4 <= float(within.group(1)) <= 0.5
    assert message.endswith("(a NetworkPolicy may block egress to it)?")
    assert 0.4 <= took < 0.5


@pytest.mark.parametrize(
    ("settings", "expiry"),
    [
        (Settings(), 18.0),  # the 15 s backoff cap, plus the slack
        (Settings(discovery_backoff_max=30.0), 33.0),
        (Settings(discovery_interval=20.0, discovery_jitter=0.5, discovery_backoff_max=25.0), 33.0),
        (Settings(discovery_backoff_max=300.0), 60.0),  # never near kube-apiserver's 90 s
    ],
)
def test_the_keep_alive_outlasts_the_longest_gap_between_lookups(
    tmp_path: Path, settings: Settings, expiry: float
) -> None:
    """The kept connection's keep-alive is derived from the discovery settings it is given."""
    discovery = KubernetesDiscovery(
        label_selector=SELECTOR,
        namespace="default",
        api_url="http://127.0.0.1:8001",
        token_file=tmp_path / "absent-token",
        environ={},
        settings=settings,
    )
    assert discovery.keepalive_expiry == pytest.approx(expiry)


def test_connection_refused_is_an_error(tmp_path: Path) -> None:
    """Nothing listens at the URL: 'connection refused', naming the URL."""
    port = closed_port()
    message = lookup_error(KubeApi(), tmp_path, api_url=f"https://127.0.0.1:{port}")
    assert message == (
        f"cannot connect to the API server at https://127.0.0.1:{port}: connection refused "
        "(is the URL right?)"
    )


def test_a_certificate_from_another_ca_names_the_ca_file(tmp_path: Path) -> None:
    """TLS verification fails against another CA: the error names the CA file used."""
    other = tmp_path / "other-ca.crt"
    trustme.CA().cert_pem.write_to_path(str(other))
    message = lookup_error(KubeApi(), tmp_path, ca_file=other)
    assert message.startswith("TLS verification of the API server at https://127.0.0.1:")
    assert "failed (unable to get local issuer certificate)" in message
    assert message.endswith(
        f"its certificate was checked against the CA file {other}: point ca_file at the "
        "cluster's CA (in a pod, the service account's ca.crt)"
    )


def test_without_a_ca_file_the_system_store_is_named(tmp_path: Path) -> None:
    """No CA file: verified against the system's store, and the message says so."""
    message = lookup_error(KubeApi(), tmp_path, ca_file=tmp_path / "absent-ca.crt")
    assert "TLS verification of the API server" in message
    assert (
        f"checked against the system's trust store ({tmp_path / 'absent-ca.crt'} does not exist)"
        in message
    )


def test_https_to_a_plain_http_server_asks_about_the_scheme(tmp_path: Path) -> None:
    """An https:// URL for an http server (kubectl proxy): the TLS handshake fails."""

    async def test() -> str:
        async with kube(KubeApi(), tmp_path, tls=False) as (server, _):
            https = server.url.replace("http://", "https://")
            async with KubernetesDiscovery(
                label_selector=SELECTOR, namespace="default", api_url=https, environ={}
            ) as discovery:
                with pytest.raises(DiscoveryError) as raised:
                    await discovery.lookup()
                return str(raised.value)

    message = run(test, seconds=TEST_TIMEOUT)
    assert message.startswith("TLS handshake with the API server at https://127.0.0.1:")
    assert message.endswith(
        "does the URL's scheme match the server (https for the API server, http for kubectl proxy)?"
    )


def test_http_to_a_tls_server_asks_about_the_scheme(tmp_path: Path) -> None:
    """An http:// URL for the HTTPS API server: the server hangs up; ask about the scheme."""

    async def test() -> str:
        async with kube(KubeApi(), tmp_path) as (server, _):
            http = server.url.replace("https://", "http://")
            async with KubernetesDiscovery(
                label_selector=SELECTOR, namespace="default", api_url=http, environ={}
            ) as discovery:
                with pytest.raises(DiscoveryError) as raised:
                    await discovery.lookup()
                return str(raised.value)

    message = run(test, seconds=TEST_TIMEOUT)
    assert message.startswith("the API server at http://127.0.0.1:")
    assert "broke off the HTTP exchange" in message
    assert message.endswith(
        "does the URL's scheme match the server (https for the API server, http for kubectl proxy)?"
    )


def test_a_name_that_does_not_resolve_is_an_error() -> None:
    """An API host that does not resolve: 'cannot resolve', naming it (no DNS asked here)."""

    def handler(request: httpx.Request) -> httpx.Response:
        error = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        raise httpx.ConnectError(str(error), request=request) from error

    async def test() -> str:
        async with KubernetesDiscovery(
            label_selector=SELECTOR,
            namespace="default",
            api_url="https://kubernetes.default.svc:443",
            environ={},
            http_transport=httpx.MockTransport(handler),
        ) as discovery:
            with pytest.raises(DiscoveryError) as raised:
                await discovery.lookup()
            return str(raised.value)

    assert run(test, seconds=TEST_TIMEOUT) == (
        "cannot resolve the API server's host 'kubernetes.default.svc' (Name or service not "
        "known): is the URL right?"
    )


def test_other_transport_errors_name_the_url() -> None:
    """Any other network failure: 'cannot reach the API server at URL' and the OS's words."""

    def handler(request: httpx.Request) -> httpx.Response:
        error = OSError(113, "No route to host")
        raise httpx.ConnectError(str(error), request=request) from error

    async def test() -> str:
        async with KubernetesDiscovery(
            label_selector=SELECTOR,
            namespace="default",
            api_url="https://10.96.0.1:443",
            environ={},
            http_transport=httpx.MockTransport(handler),
        ) as discovery:
            with pytest.raises(DiscoveryError) as raised:
                await discovery.lookup()
            return str(raised.value)

    assert (
        run(test, seconds=TEST_TIMEOUT)
        == "cannot reach the API server at https://10.96.0.1:443: No route to host"
    )


def test_a_lookup_after_aclose_is_a_usage_error(tmp_path: Path) -> None:
    """A closed discovery refuses to look up (it would have to reopen the connection)."""

    async def test() -> None:
        async with kube(KubeApi([pod("svc-1", "10.0.0.1")]), tmp_path) as (_, discovery):
            await discovery.lookup()
            await discovery.aclose()
            await discovery.aclose()  # idempotent
            with pytest.raises(UsageError, match="closed"):
                await discovery.lookup()

    run(test, seconds=TEST_TIMEOUT)


# --- construction and defaults ------------------------------------------------------------------


def test_defaults_come_from_the_environment_and_the_service_account_files(tmp_path: Path) -> None:
    """In a pod: the API from KUBERNETES_SERVICE_*, namespace, token and CA from their files."""
    api = KubeApi([pod("svc-1", "10.0.0.1", namespace="team-a")], namespaces={"team-a"})
    (tmp_path / "namespace").write_text("team-a\n")
    (tmp_path / "token").write_text(TOKEN)

    async def test() -> None:
        async with serve_kube_api(api, tmp_path) as server:
            environ = {
                "KUBERNETES_SERVICE_HOST": "127.0.0.1",
                "KUBERNETES_SERVICE_PORT": str(server.port),
            }
            async with KubernetesDiscovery(
                label_selector=SELECTOR,
                environ=environ,
                namespace_file=tmp_path / "namespace",
                token_file=tmp_path / "token",
                ca_file=tmp_path / "ca.crt",
            ) as discovery:
                assert discovery.api_url == server.url
                assert discovery.namespace == "team-a"
                assert discovery.port_name is None
                assert await discovery.lookup() == [ContactPoint("10.0.0.1")]

    run(test, seconds=TEST_TIMEOUT)
    assert api.requests[0].path == "/api/v1/namespaces/team-a/pods"
    assert api.requests[0].authorization == f"Bearer {TOKEN}"


def test_an_ipv6_api_server_address_is_bracketed() -> None:
    """KUBERNETES_SERVICE_HOST as an IPv6 address becomes https://[addr]:port."""
    discovery = KubernetesDiscovery(
        label_selector=SELECTOR,
        namespace="default",
        environ={"KUBERNETES_SERVICE_HOST": "fd00:10:96::1", "KUBERNETES_SERVICE_PORT": "443"},
    )
    assert discovery.api_url == "https://[fd00:10:96::1]:443"


def test_an_explicit_api_url_and_namespace_win_over_the_defaults(tmp_path: Path) -> None:
    """api_url and namespace given: the environment and the namespace file are not consulted."""
    (tmp_path / "namespace").write_text("from-file")
    discovery = KubernetesDiscovery(
        label_selector=SELECTOR,
        namespace="given",
        api_url="http://127.0.0.1:8001/",
        namespace_file=tmp_path / "namespace",
        environ={"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"},
    )
    assert discovery.api_url == "http://127.0.0.1:8001"
    assert discovery.namespace == "given"


def test_outside_a_pod_without_an_api_url_is_a_usage_error() -> None:
    """Neither api_url nor KUBERNETES_SERVICE_HOST: say how to point at the API server."""
    with pytest.raises(UsageError) as raised:
        KubernetesDiscovery(label_selector=SELECTOR, namespace="default", environ={})
    assert str(raised.value).endswith(
        "not running in a pod? set api_url / --kubernetes-api or KUBERNETES_SERVICE_HOST"
    )


def test_without_a_namespace_or_its_file_is_a_usage_error(tmp_path: Path) -> None:
    """No namespace and no namespace file: say to pass the namespace."""
    with pytest.raises(UsageError) as raised:
        KubernetesDiscovery(
            label_selector=SELECTOR,
            api_url="https://10.96.0.1",
            namespace_file=tmp_path / "namespace",
        )
    assert str(raised.value) == (
        f"no namespace given and {tmp_path / 'namespace'} does not exist (not running in a "
        "pod?): pass the namespace (namespace / --pod-namespace)"
    )


def test_an_empty_namespace_file_is_a_usage_error(tmp_path: Path) -> None:
    """A namespace file with nothing in it: say to pass the namespace."""
    (tmp_path / "namespace").write_text("\n")
    with pytest.raises(UsageError, match=r"is empty: pass the namespace"):
        KubernetesDiscovery(
            label_selector=SELECTOR,
            api_url="https://10.96.0.1",
            namespace_file=tmp_path / "namespace",
        )


def test_an_unreadable_namespace_file_is_a_usage_error(tmp_path: Path) -> None:
    """A namespace path that cannot be read (a directory): say to pass the namespace."""
    (tmp_path / "namespace").mkdir()
    with pytest.raises(UsageError, match=r"cannot be read .*: pass the namespace"):
        KubernetesDiscovery(
            label_selector=SELECTOR,
            api_url="https://10.96.0.1",
            namespace_file=tmp_path / "namespace",
        )


def test_a_ca_file_that_is_not_a_certificate_is_a_usage_error(tmp_path: Path) -> None:
    """A CA file that does not load fails at construction, naming it."""
    (tmp_path / "ca.crt").write_text("not a certificate")
    with pytest.raises(UsageError, match=r"cannot load the CA file .*ca\.crt"):
        KubernetesDiscovery(
            label_selector=SELECTOR,
            namespace="default",
            api_url="https://10.96.0.1",
            ca_file=tmp_path / "ca.crt",
        )


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"label_selector": " "}, r"label_selector ' ' is empty: it would list every pod"),
        ({"namespace": "Team_A"}, r"namespace 'Team_A' is not a Kubernetes namespace name"),
        ({"namespace": "../secrets"}, r"is not a Kubernetes namespace name"),
        ({"port_name": "management-metrics"}, r"port_name 'management-metrics' cannot name"),
        ({"port_name": "8558"}, r"with at least one letter"),
        ({"port_name": ""}, r"port_name '' cannot name a container port"),
        ({"api_url": "10.96.0.1:443"}, r"is not the API server's base URL"),
        ({"api_url": "https://10.96.0.1/?x=1"}, r"is not the API server's base URL"),
        (
            {
                "api_url": None,
                "environ": {"KUBERNETES_SERVICE_HOST": "h", "KUBERNETES_SERVICE_PORT": "x"},
            },
            r"KUBERNETES_SERVICE_PORT 'x' is not a port number",
        ),
        ({"timeout": 0}, r"timeout must be a number of seconds > 0"),
        ({"timeout": float("inf")}, r"timeout must be a number of seconds > 0"),
        ({"max_response_bytes": 0}, r"max_response_bytes must be an integer >= 1"),
        ({"settings": {"discovery_interval": 1}}, r"settings must be a bootstrap.Settings"),
    ],
)
def test_bad_settings_are_usage_errors(options: dict[str, Any], match: str) -> None:
    """Every setting is checked at construction, with a message naming it."""
    arguments: dict[str, Any] = {
        "label_selector": SELECTOR,
        "namespace": "default",
        "api_url": "https://10.96.0.1:443",
        "environ": {},
    }
    arguments.update(options)
    with pytest.raises(UsageError, match=match):
        KubernetesDiscovery(**arguments)


def test_the_stand_in_answers_status_objects_like_the_api_server() -> None:
    """The stand-in's Status documents are the API server's, key for key."""
    assert json.dumps(forbidden("default"), separators=(",", ":")) == (
        '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods is '
        'forbidden: User \\"system:serviceaccount:default:default\\" cannot list resource '
        '\\"pods\\" in API group \\"\\" in the namespace \\"default\\"","reason":"Forbidden",'
        '"details":{"kind":"pods"},"code":403}'
    )
    assert unauthorized() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Unauthorized",
        "reason": "Unauthorized",
        "code": 401,
    }
    assert bad_request("x") == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "x",
        "reason": "BadRequest",
        "code": 400,
    }
