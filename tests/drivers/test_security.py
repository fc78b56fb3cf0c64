"""Tests of security: the secret wrapper (bootstrap.server.RequireSecret) in-process, the
settings (bootstrap.security), then real sockets.

Policy (as tests/drivers/test_server.py): every test that runs trio does so under an absolute
``trio.fail_after`` (:func:`tests.helpers.running.run`). The wrapper is exercised in-process,
through ``httpx.ASGITransport`` for HTTP and by driving ASGI websocket messages directly; "never
reaches the app" is checked on the app's own counters and its ``on_contacted`` callback. TLS runs
over real sockets on 127.0.0.x with certificates from ``trustme``.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
import trustme

from bootstrap import (
    ContactPoint,
    Event,
    ProbeFailed,
    ProbeSucceeded,
    Settings,
    UsageError,
)
from bootstrap.prober import Prober
from bootstrap.security import (
    SECRET_VARIABLE,
    Security,
    TlsFileError,
    TlsSettings,
    read_secret_file,
    secret_from_environment,
)
from bootstrap.server import (
    Message,
    RequireSecret,
    management_server_config,
    serve_management,
)
from tests.helpers.asgi_websocket import AsgiWebsocket
from tests.helpers.fake_node import EMPTY, PEER, SELF, FakeNode
from tests.helpers.ports import free_port
from tests.helpers.reports import Reports
from tests.helpers.running import autojump_clock, run

SECRET = b"correct-horse-battery-staple-0123456789"
BEARER = {"Authorization": "Bearer " + SECRET.decode()}
CLAIM = {"Bootstrap-Contact-Point": str(PEER)}
SETTINGS = Settings()


async def get(
    app: RequireSecret,
    path: str,
    headers: Mapping[str, str] | None = None,
    *,
    client: tuple[str, int] = ("10.0.0.7", 40000),
    root_path: str = "",
) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, client=client, root_path=root_path)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        return await http.get(path, headers=headers)


# --- the wrapper: HTTP ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/bootstrap/seed-nodes", "/bootstrap/status", "/bootstrap/watch", "/metrics", "/nowhere"],
)
def test_request_without_the_secret_is_refused_before_the_app(path: str) -> None:
    """No Authorization: 401 with a Bearer challenge and a JSON error; the app never sees it."""
    node = FakeNode()
    inner = node.app(SETTINGS)
    app = RequireSecret(inner, secret=SECRET)

    async def test() -> None:
        response = await get(app, path, CLAIM)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == 'Bearer realm="cluster-bootstrap"'
        assert response.headers["content-type"] == "application/json"
        assert response.headers["cache-control"] == "no-store"
        assert response.json()["error"].startswith("no Authorization header")

    run(test)
    assert node.contacted == []
    assert inner.statistics().requests_served == 0
    assert app.refused == 1


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer wrong-secret",
        "Bearer " + SECRET.decode() + "x",
        "Bearer " + SECRET.decode()[:-1],
        "Basic " + SECRET.decode(),
        SECRET.decode(),
        "Bearer",
    ],
)
def test_wrong_secret_is_refused(authorization: str) -> None:
    """Another secret, or the right one in another scheme, is refused like no secret."""
    node = FakeNode()
    app = RequireSecret(node.app(SETTINGS), secret=SECRET)

    async def test() -> None:
        response = await get(
            app, "/bootstrap/seed-nodes", {**CLAIM, "Authorization": authorization}
        )
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer ")
        assert "error" in response.json()

    run(test)
    assert node.contacted == []


def test_wrong_bearer_secret_is_named_invalid_token() -> None:
    """A wrong Bearer secret gets error="invalid_token" in the challenge (RFC 6750)."""
    app = RequireSecret(FakeNode().app(SETTINGS), secret=SECRET)

    async def test() -> None:
        response = await get(app, "/bootstrap/status", {"Authorization": "Bearer nope"})
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == (
            'Bearer realm="cluster-bootstrap", error="invalid_token"'
        )
        assert response.json()["error"].startswith("wrong secret")

    run(test)


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_the_right_secret_reaches_the_app(scheme: str) -> None:
    """With the secret (any case of the scheme), the app answers and counts the contact."""
    node = FakeNode()
    app = RequireSecret(node.app(SETTINGS), secret=SECRET)

    async def test() -> None:
        headers = {**CLAIM, "Authorization": f"{scheme} {SECRET.decode()}"}
        response = await get(app, "/bootstrap/seed-nodes", headers)
        assert response.status_code == 200
        assert response.json()["selfNode"] == EMPTY.self_node

    run(test)
    assert node.contacted == [PEER]
    assert app.refused == 0


def test_alive_and_ready_need_no_secret() -> None:
    """/alive and /ready answer without the secret (health checks), and count no contact."""
    node = FakeNode()
    app = RequireSecret(node.app(SETTINGS), secret=SECRET)

    async def test() -> None:
        assert (await get(app, "/alive", CLAIM)).status_code == 200
        assert (await get(app, "/ready", CLAIM)).status_code == 503
        node.ready = True
        assert (await get(app, "/ready", CLAIM)).json() == {"ready": True}

    run(test)
    assert node.contacted == []
    assert app.refused == 0


def test_open_paths_below_a_root_path() -> None:
    """Served under a base path, /alive stays open and the other endpoints stay closed."""
    app = RequireSecret(FakeNode().app(SETTINGS), secret=SECRET)

    async def test() -> None:
        alive = await get(app, "/mgmt/alive", root_path="/mgmt")
        assert alive.status_code == 200
        status = await get(app, "/mgmt/bootstrap/status", root_path="/mgmt")
        assert status.status_code == 401

    run(test)


def test_secret_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every check goes through hmac.compare_digest, on fixed-size digests."""
    import hmac

    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr("bootstrap.server.require_secret.hmac.compare_digest", spy)
    app = RequireSecret(FakeNode().app(SETTINGS), secret=SECRET)

    async def test() -> None:
        assert (await get(app, "/bootstrap/status", BEARER)).status_code == 200
        wrong = {"Authorization": "Bearer x"}
        assert (await get(app, "/bootstrap/status", wrong)).status_code == 401

    run(test)
    assert len(compared) == 2
    assert all(len(a) == len(b) == 32 for a, b in compared)


def test_refusals_are_logged_once_per_client_address(caplog: pytest.LogCaptureFixture) -> None:
    """The first refusal per client address is a WARNING naming it; repeats go to DEBUG."""
    caplog.set_level(logging.DEBUG, logger="bootstrap.security")
    app = RequireSecret(FakeNode().app(SETTINGS), secret=SECRET)

    async def test() -> None:
        for _ in range(3):
            await get(app, "/bootstrap/seed-nodes", CLAIM, client=("10.0.0.7", 40000))
        await get(app, "/bootstrap/status", {"Authorization": "Bearer x"}, client=("10.0.0.8", 1))

    run(test)
    records = [r for r in caplog.records if r.name == "bootstrap.security"]
    warning, debug = logging.WARNING, logging.DEBUG
    assert [r.levelno for r in records] == [warning, debug, debug, warning]
    first, last = records[0].getMessage(), records[-1].getMessage()
    assert first.startswith(
        "refused GET /bootstrap/seed-nodes from 10.0.0.7, claiming to be '10.0.0.7:8558': "
        "no Authorization header; every node of a cluster needs the same secret"
    )
    assert last.startswith("refused GET /bootstrap/status from 10.0.0.8: wrong secret")


def test_logged_addresses_are_bounded(caplog: pytest.LogCaptureFixture) -> None:
    """The record of logged addresses is cleared when full: memory stays bounded."""
    app = RequireSecret(FakeNode().app(SETTINGS), secret=SECRET)
    addresses = [f"10.1.{i // 250}.{i % 250}" for i in range(257)]

    async def test() -> None:
        for address in [*addresses, addresses[0]]:
            await get(app, "/bootstrap/status", client=(address, 1))

    run(test)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    # 257 distinct addresses fill the record (256) and start it over, so the first warns again.
    assert len(warnings) == 258
    assert app.refused == 258


def test_wrapper_forwards_the_app() -> None:
    """What the node uses of its app works through the wrapper."""
    inner = FakeNode().app(SETTINGS)
    app = RequireSecret(inner, secret=SECRET)
    assert app.app is inner
    assert app.self_contact_point == inner.self_contact_point == SELF
    assert app.service_name == "svc"
    assert app.statistics() == inner.statistics()
    app.notify_changed()
    inner.extra = "anything else"  # type: ignore[attr-defined]
    assert app.extra == "anything else"


def test_lifespan_passes_through() -> None:
    """The lifespan scope is the app's, secret or not."""

    async def test() -> None:
        to_app_send, to_app = trio.open_memory_channel[Message](10)
        from_app_send, from_app = trio.open_memory_channel[Message](10)
        await to_app_send.send({"type": "lifespan.startup"})
        await to_app_send.send({"type": "lifespan.shutdown"})
        app = RequireSecret(FakeNode().app(SETTINGS), secret=SECRET)
        await app({"type": "lifespan"}, to_app.receive, from_app_send.send)
        assert [(await from_app.receive())["type"], (await from_app.receive())["type"]] == [
            "lifespan.startup.complete",
            "lifespan.shutdown.complete",
        ]

    run(test)


# --- the wrapper: websocket handshakes --------------------------------------------------------


def watch(app: RequireSecret, headers: Mapping[str, str], *, extension: bool) -> AsgiWebsocket:
    """A watch of ``app`` from 10.0.0.7, driven through ASGI messages."""
    return AsgiWebsocket(app, headers=headers, client=("10.0.0.7", 40000), extension=extension)


@pytest.mark.parametrize("extension", [True, False])
@pytest.mark.parametrize("authorization", [None, "Bearer wrong"])
def test_watch_handshake_without_the_secret_is_refused(
    extension: bool, authorization: str | None
) -> None:
    """A watch without the secret is refused (401, or a close: 403) and counts no contact."""
    node = FakeNode()
    inner = node.app(SETTINGS)
    headers = dict(CLAIM) if authorization is None else {**CLAIM, "Authorization": authorization}
    handshake = watch(RequireSecret(inner, secret=SECRET), headers, extension=extension)

    async def test() -> None:
        await handshake.connect()
        await handshake.run_app()
        first = await handshake.next()
        if extension:
            assert first["type"] == "websocket.http.response.start"
            assert first["status"] == 401
            challenge = dict(first["headers"])[b"www-authenticate"]
            assert challenge.startswith(b'Bearer realm="cluster-bootstrap"')
            body = await handshake.next()
            assert "error" in json.loads(body["body"])
        else:
            assert first == {"type": "websocket.close"}

    run(test, clock=autojump_clock())
    assert node.contacted == []
    assert inner.statistics().watches_opened_total == 0


def test_watch_handshake_with_the_secret_is_accepted() -> None:
    """A watch with the secret is accepted, pushes the document and counts the contact."""
    node = FakeNode()
    handshake = watch(
        RequireSecret(node.app(SETTINGS), secret=SECRET), {**CLAIM, **BEARER}, extension=True
    )

    async def test() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(handshake.run_app)
            await handshake.connect()
            assert await handshake.next() == {"type": "websocket.accept"}
            pushed = await handshake.next()
            assert json.loads(pushed["text"])["selfNode"] == EMPTY.self_node
            await handshake.send({"type": "websocket.disconnect", "code": 1000})

    run(test, clock=autojump_clock())
    assert node.contacted == [PEER]


# --- the secret -------------------------------------------------------------------------------


def test_repr_hides_the_secret() -> None:
    """Neither repr nor str of a Security shows the secret; they show whether one is set."""
    security = Security(secret=SECRET)
    assert SECRET.decode() not in repr(security)
    assert SECRET.decode() not in str(security)
    assert "secret=<hidden>" in repr(security)
    assert "secret=None" in repr(Security())


@pytest.mark.parametrize("secret", [b"", b"has space", b"line\nbreak", "text", "é".encode()])
def test_unusable_secrets_are_refused(secret: Any) -> None:
    """An empty secret, one that cannot go into a header, or a str raises UsageError."""
    with pytest.raises(UsageError, match="secret"):
        Security(secret=secret)
    with pytest.raises(UsageError, match="secret"):
        RequireSecret(FakeNode().app(SETTINGS), secret=secret)


@pytest.mark.parametrize("ending", [b"", b"\n", b"\r\n"])
def test_read_secret_file_strips_one_line_break(tmp_path: Path, ending: bytes) -> None:
    """The file's one trailing line break is not part of the secret."""
    path = tmp_path / "secret"
    path.write_bytes(SECRET + ending)
    path.chmod(0o600)
    assert read_secret_file(path) == SECRET
    assert Security.from_secret_file(path).secret == SECRET


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "is empty"),
        (b"\n", "is empty"),
        (SECRET + b"\n\n", "printable ASCII"),
        (b"two words", "printable ASCII"),
        (b"\xff" * 20, "printable ASCII"),
        (b"x" * 5000, "over 4096 bytes"),
    ],
)
def test_read_secret_file_refuses_an_unusable_file(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    """An empty or unusable secret file raises UsageError naming the file."""
    path = tmp_path / "secret"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(UsageError, match=problem) as raised:
        read_secret_file(path)
    assert str(path) in str(raised.value)


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_read_secret_file_refuses_an_unreadable_path(tmp_path: Path, kind: str) -> None:
    """A missing file or a directory raises UsageError naming the path and why."""
    path = tmp_path / "secret"
    if kind == "directory":
        path.mkdir()
    with pytest.raises(UsageError) as raised:
        read_secret_file(path)
    message = str(raised.value)
    assert message.startswith(f"cannot read the secret file {path}: ")
    assert ("No such file" if kind == "missing" else "Is a directory") in message


@pytest.mark.parametrize(("mode", "warned"), [(0o600, False), (0o400, False), (0o640, True)])
def test_secret_file_readable_by_others_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: int, warned: bool
) -> None:
    """A secret file the group or others may read is logged as a WARNING naming it."""
    path = tmp_path / "secret"
    path.write_bytes(SECRET)
    path.chmod(mode)
    read_secret_file(path)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if warned:
        assert warnings == [
            f"the secret file {path} may be read by its group (mode 0640): `chmod 600` it "
            "(in Kubernetes, mount the Secret with defaultMode: 0400)"
        ]
    else:
        assert warnings == []


def test_short_secret_is_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A secret under 16 characters works, with a WARNING."""
    path = tmp_path / "secret"
    path.write_bytes(b"short")
    path.chmod(0o600)
    assert read_secret_file(path) == b"short"
    assert any("only 5 characters long" in r.getMessage() for r in caplog.records)


def test_secret_from_environment() -> None:
    """The secret from a variable: None when unset, an error naming it when set but unusable."""
    assert secret_from_environment(SECRET_VARIABLE, {}) is None
    assert secret_from_environment(SECRET_VARIABLE, {SECRET_VARIABLE: SECRET.decode()}) == SECRET
    with pytest.raises(UsageError, match=r"\$BOOTSTRAP_SECRET is empty"):
        secret_from_environment(SECRET_VARIABLE, {SECRET_VARIABLE: ""})
    with pytest.raises(UsageError, match=r"\$BOOTSTRAP_SECRET is not set"):
        Security.from_environment(environ={})
    environ = {"MY_SECRET": SECRET.decode()}
    assert Security.from_environment("MY_SECRET", environ=environ).secret == SECRET


def test_security_schemes_and_header(tmp_path: Path) -> None:
    """The scheme follows TLS; the Authorization value follows the secret."""
    assert (Security().scheme, Security().websocket_scheme) == ("http", "ws")
    assert Security().authorization() is None
    assert Security(secret=SECRET).authorization() == BEARER["Authorization"]
    tls = write_certs(tmp_path).settings()
    assert (Security(tls=tls).scheme, Security(tls=tls).websocket_scheme) == ("https", "wss")


# --- TLS settings -----------------------------------------------------------------------------


@attrs.frozen
class Certs:
    """A CA, a certificate it issued for 127.0.0.1-3 and its key, as files."""

    ca: trustme.CA
    directory: Path
    cert: Path
    key: Path
    bundle: Path

    def settings(self, *, mutual: bool = False) -> TlsSettings:
        return TlsSettings(
            certfile=self.cert,
            keyfile=self.key,
            cafile=self.bundle,
            require_client_certificate=mutual,
        )


def write_certs(directory: Path, name: str = "node") -> Certs:
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "127.0.0.2", "127.0.0.3")
    certs = Certs(
        ca, directory, directory / f"{name}.crt", directory / f"{name}.key", directory / "ca.pem"
    )
    issued.cert_chain_pems[0].write_to_path(str(certs.cert))
    issued.private_key_pem.write_to_path(str(certs.key))
    ca.cert_pem.write_to_path(str(certs.bundle))
    return certs


def test_mutual_tls_needs_a_ca_bundle(tmp_path: Path) -> None:
    """require_client_certificate without cafile is a UsageError."""
    certs = write_certs(tmp_path)
    with pytest.raises(UsageError, match="require_client_certificate needs cafile"):
        TlsSettings(certfile=certs.cert, keyfile=certs.key, require_client_certificate=True)


def _encrypted_key(certs: Certs) -> Path:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(certs.key.read_bytes(), None)
    path = certs.directory / "encrypted.key"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"password"),
        )
    )
    return path


def _other_key(certs: Certs) -> Path:
    path = certs.directory / "other.key"
    trustme.CA().issue_cert("127.0.0.1").private_key_pem.write_to_path(str(path))
    return path


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (lambda c: {"certfile": c.directory / "no.crt"}, "certfile", "cannot read the TLS cert"),
        (lambda c: {"keyfile": c.directory / "no.key"}, "keyfile", "cannot read the TLS key"),
        (lambda c: {"cafile": c.directory / "no.pem"}, "cafile", "cannot read the TLS CA bundle"),
        (lambda c: {"certfile": c.key}, "certfile", "holds no PEM certificate"),
        (lambda c: {"keyfile": c.cert}, "keyfile", "holds no usable PEM private key"),
        (lambda c: {"cafile": c.key}, "cafile", "holds no PEM certificate"),
        (lambda c: {"keyfile": _other_key(c)}, "keyfile", "does not match the certificate"),
        (lambda c: {"keyfile": _encrypted_key(c)}, "keyfile", "is encrypted"),
    ],
)
def test_tls_file_errors_name_the_file(
    tmp_path: Path, change: Callable[[Certs], dict[str, Path]], field: str, message: str
) -> None:
    """Each unusable file raises TlsFileError naming it, with the field it came from."""
    certs = write_certs(tmp_path)
    changed = change(certs)
    tls = attrs.evolve(certs.settings(), **changed)  # type: ignore[arg-type]
    with pytest.raises(TlsFileError, match=message) as raised:
        tls.check()
    assert raised.value.field == field
    assert str(changed[field]) in str(raised.value)


@pytest.mark.parametrize("mutual", [False, True])
def test_management_server_config_serves_tls(tmp_path: Path, mutual: bool) -> None:
    """With tls the hypercorn config serves only TLS, with client certificates if mutual."""
    tls = write_certs(tmp_path).settings(mutual=mutual)
    config = management_server_config(bind=SELF, settings=SETTINGS, tls=tls)
    assert config.ssl_enabled
    assert (config.certfile, config.keyfile) == (tls.certfile, tls.keyfile)
    context = config.create_ssl_context()
    assert context is not None
    assert context.verify_mode == (ssl.CERT_REQUIRED if mutual else ssl.CERT_NONE)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_management_server_config_refuses_a_bad_tls_file(tmp_path: Path) -> None:
    """A missing TLS file raises TlsFileError from the config, not later from hypercorn."""
    tls = attrs.evolve(write_certs(tmp_path).settings(), keyfile=tmp_path / "gone.key")
    with pytest.raises(TlsFileError, match=r"gone\.key"):
        management_server_config(bind=SELF, settings=SETTINGS, tls=tls)


# --- real sockets -----------------------------------------------------------------------------


@asynccontextmanager
async def serving(security: Security | None, node: FakeNode | None = None) -> AsyncIterator[str]:
    """A management server on 127.0.0.1 with ``security``; yields its host:port."""
    bind = ContactPoint("127.0.0.1", free_port())
    app = (node or FakeNode()).app(SETTINGS, self_contact_point=bind)
    async with trio.open_nursery() as nursery:
        await nursery.start(
            functools.partial(
                serve_management, app, bind=bind, settings=SETTINGS, security=security
            )
        )
        yield str(bind)
        nursery.cancel_scope.cancel()


def client_context(certs: Certs, *, with_certificate: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certs.bundle))
    if with_certificate:
        context.load_cert_chain(str(certs.cert), str(certs.key))
    return context


def test_real_tls_server_with_a_secret(tmp_path: Path) -> None:
    """Over HTTPS: /alive open, the rest behind the secret, and no plain HTTP on the port."""
    certs = write_certs(tmp_path)
    node = FakeNode()

    async def test() -> None:
        security = Security(secret=SECRET, tls=certs.settings())
        async with serving(security, node) as address:
            context = client_context(certs, with_certificate=False)
            async with httpx.AsyncClient(verify=context, base_url=f"https://{address}") as http:
                assert (await http.get("/alive")).status_code == 200
                assert (await http.get("/bootstrap/seed-nodes", headers=CLAIM)).status_code == 401
                response = await http.get("/bootstrap/seed-nodes", headers={**CLAIM, **BEARER})
                assert response.status_code == 200
            async with httpx.AsyncClient() as plain:
                with pytest.raises(httpx.HTTPError):
                    await plain.get(f"http://{address}/alive")

    run(test)
    assert node.contacted == [PEER]


@pytest.mark.parametrize("client", ["none", "other-ca"])
def test_real_mutual_tls_refuses_at_once(tmp_path: Path, client: str) -> None:
    """A client without an accepted certificate learns why at once, not at its timeout."""
    certs = write_certs(tmp_path / "cluster")
    other = write_certs(tmp_path / "other")
    node = FakeNode()

    async def test() -> None:
        async with serving(Security(tls=certs.settings(mutual=True)), node) as address:
            context = client_context(certs, with_certificate=False)
            if client == "other-ca":
                context.load_cert_chain(str(other.cert), str(other.key))
            with trio.fail_after(2):  # well before any timeout of the client's
                async with httpx.AsyncClient(verify=context) as http:
                    with pytest.raises(httpx.TransportError) as raised:
                        await http.get(f"https://{address}/bootstrap/seed-nodes", headers=CLAIM)
            alert = "CERTIFICATE_REQUIRED" if client == "none" else "UNKNOWN_CA"
            assert alert in " ".join(repr(error) for error in chain(raised.value))
            accepted = client_context(certs, with_certificate=True)
            async with httpx.AsyncClient(verify=accepted) as http:
                response = await http.get(f"https://{address}/bootstrap/seed-nodes", headers=CLAIM)
                assert response.status_code == 200

    run(test)
    assert node.contacted == [PEER]


def chain(error: BaseException | None) -> list[BaseException]:
    """``error`` and every exception it wraps (as causes, contexts or arguments)."""
    found: list[BaseException] = []
    pending = [error]
    while pending:
        current = pending.pop()
        if current is None or any(current is seen for seen in found):
            continue
        found.append(current)
        pending += [current.__cause__, current.__context__]
        pending += [arg for arg in current.args if isinstance(arg, BaseException)]
    return found


async def probe_once(
    target: str, *, transport: str, security: Security | None, probes: int = 1
) -> list[Event]:
    """``probes`` probes of ``target`` by a prober from 127.0.0.2, one after the other."""
    reports = Reports()
    prober = Prober(
        settings=SETTINGS,
        self_contact_point=ContactPoint("127.0.0.2", 8558),
        service_name="svc",
        transport=transport,  # type: ignore[arg-type]
        report=reports,
        security=security,
    )
    contact_point = ContactPoint.parse(target)
    events = []
    async with trio.open_nursery() as nursery:
        await nursery.start(prober.run)
        for _ in range(probes):
            prober.probe(contact_point)
            events.append(await reports.next_event())
            prober.stop(contact_point)
        nursery.cancel_scope.cancel()
    return events


@pytest.mark.parametrize("transport", ["poll", "watch"])
def test_prober_sends_the_secret(transport: str) -> None:
    """The prober's GET and watch handshake carry the secret: the peer answers and counts it."""
    node = FakeNode()

    async def test() -> None:
        async with serving(Security(secret=SECRET), node) as address:
            [event] = await probe_once(
                address, transport=transport, security=Security(secret=SECRET)
            )
        assert isinstance(event, ProbeSucceeded)

    run(test)
    assert node.contacted == [ContactPoint("127.0.0.2", 8558)]


@pytest.mark.parametrize("transport", ["poll", "watch"])
@pytest.mark.parametrize("ours", [None, b"not-the-clusters-secret-0123456789"])
def test_prober_reports_a_refused_secret(
    transport: str, ours: bytes | None, caplog: pytest.LogCaptureFixture
) -> None:
    """A 401 is an 'unauthorized' failure saying why; a refused watch is not 'no websocket'."""
    caplog.set_level(logging.INFO, logger="bootstrap.prober")
    node = FakeNode()

    async def test() -> None:
        async with serving(Security(secret=SECRET), node) as address:
            security = None if ours is None else Security(secret=ours)
            events = await probe_once(address, transport=transport, security=security, probes=2)
        hint = (
            "it requires a shared secret and this node has none"
            if ours is None
            else "it refused our secret: every node of a cluster needs the same one"
        )
        assert (
            events
            == [ProbeFailed(ContactPoint.parse(address), f"HTTP 401 from {address}: {hint}")] * 2
        )

    run(test)
    assert node.contacted == []
    assert not any("speaks no websocket" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("transport", ["poll", "watch"])
def test_prober_over_tls(tmp_path: Path, transport: str) -> None:
    """With TLS on both sides the prober probes over https or wss and gets the document."""
    certs = write_certs(tmp_path)

    async def test() -> None:
        security = Security(secret=SECRET, tls=certs.settings(mutual=True))
        async with serving(security) as address:
            [event] = await probe_once(address, transport=transport, security=security)
        assert isinstance(event, ProbeSucceeded)

    run(test)


@pytest.mark.parametrize("transport", ["poll", "watch"])
@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("other-ca", "TLS certificate verification failed: "),
        ("no-client-certificate", "the peer requires a client certificate (mutual TLS)"),
        ("client-certificate-of-other-ca", "the peer does not accept this node's certificate"),
        ("plain-peer", "does the peer serve TLS?"),
    ],
)
def test_prober_tls_failures_say_why(
    tmp_path: Path, transport: str, case: str, expected: str
) -> None:
    """Each way TLS can fail between two nodes is a 'tls' failure whose reason says which."""
    certs = write_certs(tmp_path / "cluster")
    other = write_certs(tmp_path / "other")
    server: Security | None = Security(tls=certs.settings(mutual=True))
    client = Security(tls=certs.settings())
    if case == "other-ca":
        client = Security(tls=other.settings())
    elif case == "no-client-certificate":
        client = Security(tls=NoClientCertificate(certfile=certs.cert, keyfile=certs.key))
    elif case == "client-certificate-of-other-ca":
        client = Security(
            tls=TlsSettings(certfile=other.cert, keyfile=other.key, cafile=certs.bundle)
        )
    elif case == "plain-peer":
        server = None

    async def test() -> None:
        async with serving(server) as address:
            [event] = await probe_once(address, transport=transport, security=client)
        assert isinstance(event, ProbeFailed)
        assert expected in event.reason, event.reason

    run(test)


@attrs.frozen(kw_only=True)
class NoClientCertificate(TlsSettings):
    """TLS settings whose client side trusts the cluster's CA but presents no certificate."""

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=os.fspath(Path(self.certfile).parent / "ca.pem"))
