"""Who may talk to a node: a shared secret on every request, and TLS (optionally mutual).

Without this module anyone who can reach a management endpoint can read a node's status, watch
its seed nodes, and (by probing with a ``Bootstrap-Contact-Point`` header) make it believe a peer
is alive. A :class:`Security` given to the node closes that:

* **A shared secret.** Every node of a cluster is given the same secret. The server answers
  every endpoint except ``/alive`` and ``/ready`` (the orchestrator's health checks, which say
  nothing about the cluster) only to requests carrying ``Authorization: Bearer <secret>``; the
  prober sends it on every request and websocket handshake. :class:`RequireSecret` is the ASGI
  wrapper that checks it, in constant time, before the management app sees anything: a refused
  request is never counted as a contact. The secret travels in clear text unless TLS is on.
* **TLS.** With :class:`TlsSettings` the server speaks only HTTPS (and WSS), and the prober
  connects with ``https://`` / ``wss://`` and verifies every peer's certificate against the CA
  bundle, the contact point's host (an IP address or a name) being what the certificate must
  name. Contact points stay ``host:port``; the scheme comes from this node's settings, so every
  node of a cluster must share them. With ``require_client_certificate`` (mutual TLS) the server
  also refuses any client whose certificate the same CA bundle does not verify; each node presents
  its own server certificate as its client certificate.

Configuration mistakes (a missing file, a key that does not match its certificate, an empty
secret) raise :class:`~bootstrap.UsageError` naming the file, when the settings are loaded, never
later in a connection.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import ssl
import stat
from collections.abc import (
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    MutableMapping,
)
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final, Literal, cast

import attrs
import trio
import trio_websocket

from .core import ContactPoint, UsageError

if TYPE_CHECKING:
    import hypercorn.config

    from .server import ManagementApp, ServerStatistics

__all__ = [
    "OPEN_PATHS",
    "SECRET_VARIABLE",
    "RequireSecret",
    "Security",
    "TlsFileError",
    "TlsSettings",
    "read_secret_file",
    "secret_from_environment",
    "tls_failure_reason",
    "unauthorized_reason",
    "wrap_websocket",
]

logger = logging.getLogger("bootstrap.security")

#: The environment variable the secret itself may come from (the command line reads it).
SECRET_VARIABLE: Final = "BOOTSTRAP_SECRET"
#: Paths answered without the secret: health checks that reveal nothing about the cluster.
OPEN_PATHS: Final = frozenset({"/alive", "/ready"})
# Shorter secrets are accepted (tests, demos) but logged as weak.
_SHORT_SECRET: Final = 16
# Distinct client addresses whose refusals are remembered (logged once each at WARNING); a
# scanner cycling through addresses must not grow memory, so the record is cleared when full.
_MAX_REPORTED_CLIENTS: Final = 256
# A header value quoted in a log line is cut here.
_MAX_LOGGED_HEADER: Final = 100

_AUTHORIZATION: Final = b"authorization"
_CONTACT_POINT: Final = b"bootstrap-contact-point"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


# --- the secret -----------------------------------------------------------------------------------


def _secret_problem(secret: bytes) -> str | None:
    """Why ``secret`` cannot be used as a bearer token, or None."""
    if not secret:
        return "is empty"
    if not all(0x21 <= byte <= 0x7E for byte in secret):
        # It goes into an HTTP header as is: no spaces, control characters or non-ASCII.
        return (
            "must be printable ASCII without spaces or line breaks "
            "(generate one with `openssl rand -hex 32`)"
        )
    return None


def _check_secret(_: object, __: object, secret: bytes | None) -> None:
    if secret is None:
        return
    if not isinstance(secret, bytes):
        raise UsageError(f"the secret must be bytes, got {type(secret).__name__}")
    problem = _secret_problem(secret)
    if problem is not None:
        raise UsageError(f"the secret {problem}")


def _warn_if_short(secret: bytes, source: str) -> None:
    if len(secret) < _SHORT_SECRET:
        logger.warning(
            "the secret from %s is only %d characters long: use at least %d "
            "(`openssl rand -hex 32` gives 64)",
            source,
            len(secret),
            _SHORT_SECRET,
        )


def read_secret_file(path: str | os.PathLike[str]) -> bytes:
    """The secret held in the file at ``path``, without one trailing line break.

    Raises :class:`UsageError` naming the file if it cannot be read, is empty, or holds
    something that cannot be a bearer token. Logs a warning if group or others may read it.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as file:
            mode = os.fstat(file.fileno()).st_mode
            # Bounded: a secret is short; a path given by mistake (a log file) must not be slurped.
            data = file.read(4097)
    except OSError as error:
        raise UsageError(f"cannot read the secret file {name}: {error.strerror or error}") from None
    if len(data) > 4096:
        raise UsageError(f"the secret file {name} is over 4096 bytes: is it the right file?")
    if data.endswith(b"\r\n"):
        data = data[:-2]
    elif data.endswith(b"\n"):
        data = data[:-1]
    problem = _secret_problem(data)
    if problem is not None:
        raise UsageError(f"the secret in {name} {problem}")
    if stat.S_IMODE(mode) & 0o044:
        logger.warning(
            "the secret file %s may be read by %s (mode %04o): `chmod 600` it "
            "(in Kubernetes, mount the Secret with defaultMode: 0400)",
            name,
            "group and others" if mode & 0o004 else "its group",
            stat.S_IMODE(mode),
        )
    _warn_if_short(data, name)
    return data


def secret_from_environment(
    variable: str = SECRET_VARIABLE, environ: Mapping[str, str] | None = None
) -> bytes | None:
    """The secret held in the environment ``variable``, or None if it is not set.

    A variable that is set but empty or unusable raises :class:`UsageError` naming it: a node
    meant to be protected must not silently run open.
    """
    environ = os.environ if environ is None else environ
    value = environ.get(variable)
    if value is None:
        return None
    secret = value.encode("utf-8", "surrogateescape")
    problem = _secret_problem(secret)
    if problem is not None:
        raise UsageError(f"the secret in ${variable} {problem}")
    _warn_if_short(secret, f"${variable}")
    return secret


# --- TLS ------------------------------------------------------------------------------------------

TlsField = Literal["certfile", "keyfile", "cafile"]


class TlsFileError(UsageError):
    """A TLS file cannot be used; ``field`` names the :class:`TlsSettings` field it came from."""

    def __init__(self, message: str, *, field: TlsField) -> None:
        super().__init__(message)
        self.field: TlsField = field


def _path(value: str | os.PathLike[str]) -> str:
    return os.fspath(value)


def _optional_path(value: str | os.PathLike[str] | None) -> str | None:
    return None if value is None else os.fspath(value)


def _encrypted_key(keyfile: str) -> Callable[[], bytes]:
    # Without a password callback OpenSSL would prompt on the terminal and hang a daemon.
    def refuse() -> bytes:
        raise TlsFileError(
            f"the TLS key {keyfile} is encrypted: give an unencrypted key "
            "(protect it with file permissions instead)",
            field="keyfile",
        )

    return refuse


@attrs.frozen(kw_only=True)
class TlsSettings:
    """This node's certificate and key, and the CA bundle its peers' certificates are checked with.

    ``certfile`` (PEM, the certificate chain, leaf first) and ``keyfile`` (PEM, unencrypted) are
    served to clients, and presented as this node's client certificate to peers that ask for one.
    ``cafile`` (PEM) holds the CAs peers' certificates must chain to; without it the system's
    trust store is used. ``require_client_certificate`` turns on mutual TLS: the server refuses
    clients without a certificate that ``cafile`` verifies (so it needs ``cafile``).
    """

    certfile: str = attrs.field(converter=_path)
    keyfile: str = attrs.field(converter=_path)
    cafile: str | None = attrs.field(default=None, converter=_optional_path)
    require_client_certificate: bool = False

    def __attrs_post_init__(self) -> None:
        if self.require_client_certificate and self.cafile is None:
            raise UsageError(
                "require_client_certificate needs cafile: the CA bundle that verifies "
                "client certificates"
            )

    def check(self) -> None:
        """Load every file once; raise :class:`TlsFileError` naming the first that fails."""
        self.server_context()
        self.client_context()

    def server_context(self) -> ssl.SSLContext:
        """The context the management server accepts connections with."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.sslobject_class = _HandshakeAlertFirst
        self._load_certificate(context)
        if self.require_client_certificate:
            self._load_cas(context)
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def client_context(self) -> ssl.SSLContext:
        """The prober's context: verifies peers, presents this node's certificate."""
        if self.cafile is None:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        else:
            # Only these CAs (no system trust store): a certificate that some public CA issued
            # must not pass for a peer.
            _readable(self.cafile, "CA bundle", "cafile")
            with self._ca_errors():
                context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.cafile)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_alpn_protocols(["http/1.1"])
        self._load_certificate(context)
        return context

    def configure_server(self, config: hypercorn.config.Config) -> None:
        """Make hypercorn serve only TLS, with these settings.

        The files are loaded now, so a bad one raises :class:`TlsFileError` here, not deep inside
        hypercorn's worker. hypercorn is handed :meth:`server_context` itself (its own fields are
        set too, for what reads them), because a failed handshake must still reach the client
        as a TLS alert and end the connection: see :class:`_HandshakeAlertFirst`.
        """
        context = self.server_context()
        context.set_alpn_protocols(config.alpn_protocols)
        config.certfile = self.certfile
        config.keyfile = self.keyfile
        if self.require_client_certificate:
            config.ca_certs = self.cafile
            config.verify_mode = ssl.CERT_REQUIRED
        config.create_ssl_context = lambda: context  # type: ignore[method-assign]

    def _load_certificate(self, context: ssl.SSLContext) -> None:
        _readable(self.certfile, "certificate", "certfile")
        _readable(self.keyfile, "key", "keyfile")
        try:
            # Parse the certificate alone first, so a bad one is not blamed on the key.
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=self.certfile)
        except ssl.SSLError:
            raise TlsFileError(
                f"the TLS certificate {self.certfile} holds no PEM certificate", field="certfile"
            ) from None
        try:
            context.load_cert_chain(
                self.certfile, self.keyfile, password=_encrypted_key(self.keyfile)
            )
        except ssl.SSLError as error:
            if error.reason == "KEY_VALUES_MISMATCH":
                message = (
                    f"the TLS key {self.keyfile} does not match the certificate {self.certfile}"
                )
            else:
                message = f"the TLS key {self.keyfile} holds no usable PEM private key"
            raise TlsFileError(message, field="keyfile") from None
        except OSError as error:  # replaced or removed since the check above
            raise TlsFileError(
                f"cannot read the TLS certificate or key: {error}", field="certfile"
            ) from None

    def _load_cas(self, context: ssl.SSLContext) -> None:
        assert self.cafile is not None  # callers check
        _readable(self.cafile, "CA bundle", "cafile")
        with self._ca_errors():
            context.load_verify_locations(cafile=self.cafile)

    @contextmanager
    def _ca_errors(self) -> Iterator[None]:
        try:
            yield
        except ssl.SSLError:
            raise TlsFileError(
                f"the TLS CA bundle {self.cafile} holds no PEM certificate", field="cafile"
            ) from None
        except OSError as error:  # replaced or removed since it was found readable
            raise TlsFileError(
                f"cannot read the TLS CA bundle {self.cafile}: {error.strerror or error}",
                field="cafile",
            ) from None


class _HandshakeAlertFirst(ssl.SSLObject):
    """Server side: a failed handshake still sends its TLS alert, and ends the connection.

    trio's ``SSLStream`` drops what OpenSSL queued to send when a handshake fails, and hypercorn
    then abandons the connection without closing it (it stays open until garbage collection). A
    client refused for lacking a client certificate (TLS 1.3 checks it after the client has
    finished its side) would wait for an answer until its own timeout, with no reason given. So
    the failure is held back: the handshake appears to end, trio sends the queued alert
    ("certificate required", "unknown CA", ...), and the first read reports the end of the
    stream, so hypercorn handles the connection as one whose client left: it closes it when its
    idle timer (``keep_alive_timeout``) runs out. Nothing is ever read from, or written to, a
    connection whose handshake failed.
    """

    _failure: ssl.SSLError | None = None

    def do_handshake(self) -> None:
        if self._failure is not None:
            raise self._failure
        try:
            super().do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise
        except ssl.SSLError as failure:
            logger.debug("refused a TLS handshake: %s", failure.reason or failure)
            self._failure = failure

    def read(self, *args: Any, **kwargs: Any) -> Any:
        if self._failure is not None:
            return b""  # the end of the stream
        return super().read(*args, **kwargs)

    def write(self, *args: Any, **kwargs: Any) -> Any:
        if self._failure is not None:
            raise self._failure
        return super().write(*args, **kwargs)


def _readable(path: str, what: str, field: TlsField) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as error:
        raise TlsFileError(
            f"cannot read the TLS {what} {path}: {error.strerror or error}", field=field
        ) from None


async def open_tls_stream(
    stream: trio.SocketStream, context: ssl.SSLContext, host: str
) -> trio.SSLStream[trio.SocketStream]:
    """``stream`` with the client side of a TLS handshake done, the peer verified as ``host``."""
    tls = trio.SSLStream(stream, context, server_hostname=host, https_compatible=True)
    await tls.do_handshake()
    return tls


class _EndAware(trio.abc.Stream):
    """A stream that signals when receiving from it fails or reaches the end."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        self.ended = trio.Event()
        self.failure: BaseException | None = None

    def _end(self, failure: BaseException) -> None:
        if self.failure is None:
            self.failure = failure
        self.ended.set()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        try:
            data = await self._stream.receive_some(max_bytes)
        except trio.BrokenResourceError as error:
            self._end(error)
            raise
        if not data:
            self._end(ConnectionResetError("the peer closed the connection"))
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self._stream.aclose()


async def wrap_websocket(
    nursery: trio.Nursery,
    stream: trio.SocketStream | trio.SSLStream[trio.SocketStream],
    host: str,
    resource: str,
    *,
    extra_headers: list[tuple[bytes, bytes]],
    max_message_size: int,
) -> trio_websocket.WebSocketConnection:
    """:func:`trio_websocket.wrap_client_stream`, but a connection lost mid-handshake raises.

    trio-websocket waits for the server's answer to the handshake even after the connection
    broke, until the caller's timeout, and the reason is lost. Over TLS this is how a server that
    requires a client certificate refuses one (TLS 1.3 checks it after the client's side of the
    handshake is done): the alert arrives as the handshake's answer. Here the error that ended
    the connection is raised at once instead (``trio.BrokenResourceError`` from the
    ``ssl.SSLError``, or ``ConnectionResetError`` if the peer just closed).
    """
    watched = _EndAware(stream)
    connected: list[trio_websocket.WebSocketConnection] = []  # stays empty if the race is lost
    async with trio.open_nursery() as race:

        async def stop_when_ended() -> None:
            await watched.ended.wait()
            race.cancel_scope.cancel()

        race.start_soon(stop_when_ended)
        connection = await trio_websocket.wrap_client_stream(
            nursery,
            cast("trio.SocketStream", watched),  # it only sends, receives and closes
            host,
            resource,
            extra_headers=extra_headers,
            max_message_size=max_message_size,
        )
        connected.append(connection)
        race.cancel_scope.cancel()
    if not connected:
        assert watched.failure is not None  # the only way the race ends without a connection
        raise watched.failure
    return connected[0]


# --- the whole of it ------------------------------------------------------------------------------


def _hidden(secret: bytes | None) -> str:
    return "None" if secret is None else "<hidden>"


@attrs.frozen(kw_only=True)
class Security:
    """How a node authenticates itself to peers and whom it answers.

    ``secret``: every node of the cluster shares it; requests without it are refused (see
    :class:`RequireSecret`). Never shown by ``repr``. ``tls``: serve and probe over TLS.
    Either may be None; ``Security()`` is the same as no security at all.
    """

    secret: bytes | None = attrs.field(default=None, repr=_hidden, validator=_check_secret)
    tls: TlsSettings | None = None

    @classmethod
    def from_secret_file(
        cls, path: str | os.PathLike[str], *, tls: TlsSettings | None = None
    ) -> Security:
        """The secret read from ``path`` (see :func:`read_secret_file`)."""
        return cls(secret=read_secret_file(path), tls=tls)

    @classmethod
    def from_environment(
        cls,
        variable: str = SECRET_VARIABLE,
        *,
        tls: TlsSettings | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Security:
        """The secret read from the environment (see :func:`secret_from_environment`).

        An unset variable is an error here: the caller asked for a secret.
        """
        secret = secret_from_environment(variable, environ)
        if secret is None:
            raise UsageError(f"${variable} is not set")
        return cls(secret=secret, tls=tls)

    @property
    def scheme(self) -> Literal["http", "https"]:
        """The scheme of every HTTP request between nodes."""
        return "http" if self.tls is None else "https"

    @property
    def websocket_scheme(self) -> Literal["ws", "wss"]:
        """The scheme of every watch between nodes."""
        return "ws" if self.tls is None else "wss"

    def authorization(self) -> str | None:
        """The ``Authorization`` header value the prober sends, or None without a secret."""
        return None if self.secret is None else "Bearer " + self.secret.decode("ascii")


# --- the server side ------------------------------------------------------------------------------


class RequireSecret:
    """ASGI wrapper: only requests with ``Authorization: Bearer <secret>`` reach ``app``.

    Paths in ``open_paths`` (``/alive`` and ``/ready``) pass without it. Anything else without
    the right secret is answered here: HTTP requests with ``401`` (``WWW-Authenticate: Bearer``
    and a JSON error), websocket handshakes with ``401`` where the server supports the
    ``websocket.http.response`` extension, else they are closed before being accepted (the
    server answers ``403``). The inner app never sees a refused request, so it is never counted
    as a contact. The first refusal from each client address is logged at WARNING, later ones at
    DEBUG. Everything else (``notify_changed()``, ``statistics()``, ...) is the inner app's.
    """

    def __init__(
        self, app: ManagementApp, *, secret: bytes, open_paths: Collection[str] = OPEN_PATHS
    ) -> None:
        _check_secret(None, None, secret)
        self._app = app
        # Digests compared, not the raw values, so the comparison takes the same time whatever
        # the length of what the client sent.
        self._digest = hashlib.sha256(secret).digest()
        self._open_paths = frozenset(open_paths)
        self._reported_clients: set[str] = set()
        self._refused = 0

    @property
    def app(self) -> ManagementApp:
        """The wrapped management app."""
        return self._app

    @property
    def self_contact_point(self) -> ContactPoint:
        return self._app.self_contact_point

    @property
    def service_name(self) -> str | None:
        return self._app.service_name

    @property
    def refused(self) -> int:
        """Requests and handshakes refused for a missing or wrong secret."""
        return self._refused

    def notify_changed(self) -> None:
        self._app.notify_changed()

    def statistics(self) -> ServerStatistics:
        return self._app.statistics()

    def __getattr__(self, name: str) -> Any:
        # Whatever else the node (or a subclass of it) uses of the app.
        if name == "_app":  # not set yet: never recurse
            raise AttributeError(name)
        return getattr(self._app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket") or _route_path(scope) in self._open_paths:
            await self._app(scope, receive, send)
            return
        problem = self._problem(scope)
        if problem is None:
            await self._app(scope, receive, send)
            return
        self._refused += 1
        self._report(scope, problem)
        if kind == "http":
            await self._refuse_http(send, problem)
        else:
            await self._refuse_websocket(scope, receive, send, problem)

    def _problem(self, scope: Scope) -> str | None:
        """Why the request is refused, or None if it carries the secret."""
        values = [
            bytes(v) for n, v in scope.get("headers", ()) if bytes(n).lower() == _AUTHORIZATION
        ]
        if not values:
            return "no Authorization header"
        scheme, _, token = values[0].strip().partition(b" ")
        if scheme.lower() != b"bearer":
            return "the Authorization header is not Bearer"
        given = hashlib.sha256(token.strip()).digest()
        if not hmac.compare_digest(given, self._digest):
            return "wrong secret"
        return None

    def _report(self, scope: Scope, problem: str) -> None:
        client = scope.get("client")
        address = str(client[0]) if client else "an unknown address"
        claimed = ""
        for name, value in scope.get("headers", ()):
            if bytes(name).lower() == _CONTACT_POINT:
                text = bytes(value)[:_MAX_LOGGED_HEADER].decode("latin-1")
                claimed = f", claiming to be {text!r}"
                break
        request = "websocket" if scope["type"] == "websocket" else str(scope.get("method", ""))
        message = "refused %s %s from %s%s: %s"
        args = (request, _route_path(scope), address, claimed, problem)
        if address in self._reported_clients:
            logger.debug(message, *args)
            return
        if len(self._reported_clients) >= _MAX_REPORTED_CLIENTS:
            self._reported_clients.clear()
        self._reported_clients.add(address)
        hint = (
            "; every node of a cluster needs the same secret "
            "(later refusals from this address are logged at DEBUG)"
        )
        logger.warning(message + hint, *args)

    async def _refuse_http(self, send: Send, problem: str) -> None:
        data, headers = _unauthorized_body(problem)
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": data, "more_body": False})

    async def _refuse_websocket(
        self, scope: Scope, receive: Receive, send: Send, problem: str
    ) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return  # the client left during the handshake
        if "websocket.http.response" in scope.get("extensions", {}):
            data, headers = _unauthorized_body(problem)
            await send({"type": "websocket.http.response.start", "status": 401, "headers": headers})
            await send({"type": "websocket.http.response.body", "body": data})
        else:
            await send({"type": "websocket.close"})  # servers answer this with 403


def _unauthorized_body(problem: str) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    error = f"{problem}: this endpoint needs Authorization: Bearer <the cluster's shared secret>"
    data = json.dumps({"error": error}, separators=(",", ":")).encode("utf-8")
    challenge = b'Bearer realm="cluster-bootstrap"'
    if problem == "wrong secret":
        challenge += b', error="invalid_token"'
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(data)).encode("ascii")),
        (b"cache-control", b"no-store"),
        (b"www-authenticate", challenge),
    ]
    return data, headers


def _route_path(scope: Scope) -> str:
    # As the management app routes: below the mount point when served under a base path.
    path = str(scope.get("path", ""))
    root = str(scope.get("root_path", ""))
    if root and path.startswith(root):
        path = path[len(root) :]
    return path


# --- the prober side ------------------------------------------------------------------------------


def unauthorized_reason(address: ContactPoint, *, secret_sent: bool) -> str:
    """The probe-failure reason for a peer that answered 401."""
    if secret_sent:
        hint = "it refused our secret: every node of a cluster needs the same one"
    else:
        hint = "it requires a shared secret and this node has none"
    return f"HTTP 401 from {address}: {hint}"


def tls_failure_reason(causes: Iterable[BaseException]) -> str | None:
    """A reason an operator understands if a TLS error is among ``causes``, else None."""
    for cause in causes:
        if isinstance(cause, ssl.SSLCertVerificationError):
            detail = cause.verify_message or cause.reason or str(cause)
            return (
                f"TLS certificate verification failed: {detail} (is the peer's certificate "
                "issued by a CA in this node's CA bundle, for the contact point's host?)"
            )
        if isinstance(cause, ssl.SSLError):
            reason = cause.reason or str(cause)
            if "CERTIFICATE_REQUIRED" in reason:
                return (
                    f"TLS handshake refused ({reason}): the peer requires a client "
                    "certificate (mutual TLS) and this node presented none"
                )
            if any(alert in reason for alert in _DISTRUSTED_ALERTS):
                return (
                    f"TLS handshake refused ({reason}): the peer does not accept this node's "
                    "certificate (is it issued by a CA in the peer's CA bundle?)"
                )
            if "WRONG_VERSION_NUMBER" in reason or "RECORD_LAYER_FAILURE" in reason:
                return f"TLS handshake failed ({reason}): does the peer serve TLS?"
            return f"TLS error: {reason}"
    return None


# Alerts a server sends when it does not accept the client's certificate.
_DISTRUSTED_ALERTS: Final = ("UNKNOWN_CA", "BAD_CERTIFICATE", "CERTIFICATE_UNKNOWN")
