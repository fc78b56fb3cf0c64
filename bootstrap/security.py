"""Who may talk to a node: a shared secret on every request, and TLS (optionally mutual).

Without this module anyone who can reach a management endpoint can read a node's status, watch
its seed nodes, and (by probing with a ``Bootstrap-Contact-Point`` header) make it believe a peer
is alive. A :class:`Security` given to the node closes that:

* **A shared secret.** Every node of a cluster is given the same secret. The server answers
  every endpoint except ``/alive`` and ``/ready`` (the orchestrator's health checks, which say
  nothing about the cluster) only to requests carrying ``Authorization: Bearer <secret>``; the
  prober sends it on every request and websocket handshake. The server's ASGI wrapper
  :class:`bootstrap.server.RequireSecret` checks it, in constant time, before the management app
  sees anything: a refused request is never counted as a contact. The secret travels in clear
  text unless TLS is on.
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

This module is the configuration, declarative: what to load and verify. The server applies it
(:mod:`bootstrap.server`: the secret wrapper, and how a refused TLS handshake ends); it imports
nothing from the server.
"""

from __future__ import annotations

import logging
import os
import ssl
import stat
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Final, Literal

import attrs

from .core import UsageError
from .core.wire import ALIVE_PATH, READY_PATH

__all__ = [
    "OPEN_PATHS",
    "SECRET_VARIABLE",
    "Security",
    "TlsFileError",
    "TlsSettings",
    "read_secret_file",
    "secret_from_environment",
]

logger = logging.getLogger("bootstrap.security")

#: The environment variable the secret itself may come from (the command line reads it).
SECRET_VARIABLE: Final = "BOOTSTRAP_SECRET"
#: Paths answered without the secret: health checks that reveal nothing about the cluster.
OPEN_PATHS: Final = frozenset({ALIVE_PATH, READY_PATH})
# Shorter secrets are accepted (tests, demos) but logged as weak.
_SHORT_SECRET: Final = 16


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
        """The context the management server accepts connections with.

        What it verifies and presents; the server adds how a refused handshake ends
        (``bootstrap.server``'s hypercorn configuration).
        """
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
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


def _readable(path: str, what: str, field: TlsField) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as error:
        raise TlsFileError(
            f"cannot read the TLS {what} {path}: {error.strerror or error}", field=field
        ) from None


# --- the whole of it ------------------------------------------------------------------------------


def _hidden(secret: bytes | None) -> str:
    return "None" if secret is None else "<hidden>"


@attrs.frozen(kw_only=True)
class Security:
    """How a node authenticates itself to peers and whom it answers.

    ``secret``: every node of the cluster shares it; requests without it are refused (see
    :class:`bootstrap.server.RequireSecret`). Never shown by ``repr``. ``tls``: serve and probe
    over TLS. Either may be None; ``Security()`` is the same as no security at all.
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


# --- the prober side ------------------------------------------------------------------------------
