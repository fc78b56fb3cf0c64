"""Kubernetes discovery: this service's pods, listed through the Kubernetes API server.

Each lookup is one ``GET /api/v1/namespaces/{namespace}/pods?labelSelector=...`` with the pod's
service-account token; every pod that can take a probe becomes a contact point: its pod IP and
the container port named ``port_name`` (or no port, and the node applies its fallback port).

Rules, and why:

* **A pod counts when it is Running, not being deleted, and has a pod IP.** Pending pods have no
  server to probe yet; a pod with a ``deletionTimestamp`` is shutting down (it may still be
  Running through its grace period, and probing it would count a node that is about to leave);
  without ``status.podIP`` there is nothing to connect to.
* **Readiness is ignored.** A node's readiness depends on having joined the cluster, and joining
  depends on peers probing its bootstrap endpoint: waiting for readiness would deadlock the
  formation. (This is also why the Endpoints of a normal Service are no substitute.)
* **The port name matches exactly**, across all of the pod's containers: ``management`` must not
  pick ``management-metrics``. A pod without that port is skipped with a warning naming the
  ports it has, because guessing a port could probe the wrong server.
* **``resourceVersion=0``** lets the API server answer from its watch cache instead of a quorum
  read from etcd: at one lookup per node per ``discovery_interval`` that is the difference
  between a cheap and an expensive request. The answer may lag by a moment, which the bootstrap
  protocol tolerates (a view that lags is what ``stable_margin`` absorbs).
* **The token is re-read when its file changes** (inode, size or mtime). Projected
  service-account tokens are rotated by the kubelet (by swapping a symlink) and expire; a token
  read once at start would be rejected after about an hour. Unchanged, it is not re-read.
* **One connection for the process's life.** A single ``httpx.AsyncClient`` with a
  one-connection pool is kept across lookups, with a keep-alive derived from the node's
  discovery settings to outlast the longest gap between lookups (:func:`_keepalive_expiry`): a
  connection per lookup is exactly the churn this project exists to avoid.
* **Bounded.** The body is read with a size limit while it arrives (never buffered first), and
  each lookup is held to the caller's deadline (the node's ``discovery_timeout``), giving up
  just before it with an error of its own, by the rule of :mod:`bootstrap.discovery.deadline`
  (httpx's own timeouts are off, so exactly one clock decides). Every failure is a
  :class:`DiscoveryError` that says what to fix.
"""

from __future__ import annotations

import contextlib
import http
import ipaddress
import json
import logging
import math
import os
import re
import socket
import ssl
from collections.abc import AsyncGenerator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self, cast

import httpx
import trio

from .._version import __version__
from ..core.contact_point import ContactPoint
from ..core.errors import UsageError
from ..core.settings import Settings
from ..error_chain import causes as error_causes
from .base import DiscoveryError
from .deadline import lookup_budget

__all__ = [
    "DEFAULT_CA_FILE",
    "DEFAULT_NAMESPACE_FILE",
    "DEFAULT_TOKEN_FILE",
    "MAX_RESPONSE_BYTES",
    "KubernetesDiscovery",
]

logger = logging.getLogger("bootstrap.discovery.kubernetes")

_SERVICE_ACCOUNT_DIR: Final = "/var/run/secrets/kubernetes.io/serviceaccount"
DEFAULT_TOKEN_FILE: Final = f"{_SERVICE_ACCOUNT_DIR}/token"
DEFAULT_CA_FILE: Final = f"{_SERVICE_ACCOUNT_DIR}/ca.crt"
DEFAULT_NAMESPACE_FILE: Final = f"{_SERVICE_ACCOUNT_DIR}/namespace"
#: The largest pod list accepted (bytes, after any decompression).
MAX_RESPONSE_BYTES: Final = 8 * 1024 * 1024

# Seconds the kept connection may outlast the longest gap between lookups: scheduling latency
# between "the lookup fell due" and "the request reached the pool".
_KEEPALIVE_SLACK: Final = 3.0
# kube-apiserver closes a connection idle for 90 s; ours closes well before, so that we, not
# the server, close it, and a request never races the server's close.
_KEEPALIVE_LIMIT: Final = 60.0
# Error bodies are quoted in messages only this far.
_EXCERPT_CHARS: Final = 200

# DNS-1123 label: what Kubernetes accepts as a namespace name. Checked so a typo fails at start,
# and so the name can go into the URL path as it is.
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
# IANA_SVC_NAME: what Kubernetes accepts as a container port name (plus: no "--", a letter).
_PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?$")


# --- construction helpers -----------------------------------------------------------------------


def _check_label_selector(label_selector: object) -> str:
    if not isinstance(label_selector, str) or not label_selector.strip():
        raise UsageError(
            f"label_selector {label_selector!r} is empty: it would list every pod in the "
            "namespace; select this service's pods, e.g. app=my-service (--pod-label-selector)"
        )
    return label_selector.strip()


def _check_port_name(port_name: object) -> str | None:
    if port_name is None:
        return None
    if (
        not isinstance(port_name, str)
        or not _PORT_NAME.match(port_name)
        or "--" in port_name
        or not any(char.isalpha() for char in port_name)
    ):
        raise UsageError(
            f"port_name {port_name!r} cannot name a container port: Kubernetes port names are "
            "1-15 lower-case letters, digits and '-' with at least one letter (--pod-port-name)"
        )
    return port_name


def _api_url(api_url: str | None, environ: Mapping[str, str]) -> str:
    if api_url is None:
        host = environ.get("KUBERNETES_SERVICE_HOST", "").strip()
        if not host:
            raise UsageError(
                "cannot tell where the Kubernetes API server is (KUBERNETES_SERVICE_HOST is not "
                "set): not running in a pod? set api_url / --kubernetes-api or "
                "KUBERNETES_SERVICE_HOST"
            )
        # Kubernetes sets both variables in every pod; 443 is the Service's port everywhere.
        port = environ.get("KUBERNETES_SERVICE_PORT", "").strip() or "443"
        if not port.isdigit():
            raise UsageError(f"KUBERNETES_SERVICE_PORT {port!r} is not a port number")
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"  # an IPv6 cluster's API server address
        api_url = f"https://{host}:{port}"
    try:
        url = httpx.URL(api_url)
    except (httpx.InvalidURL, TypeError) as error:
        raise UsageError(f"api_url {api_url!r} is not a URL: {error}") from None
    if url.scheme not in ("http", "https") or not url.host or url.query or url.fragment:
        raise UsageError(
            f"api_url {api_url!r} is not the API server's base URL: expected "
            "https://HOST:PORT (or http://127.0.0.1:8001 through kubectl proxy)"
        )
    return api_url.rstrip("/")


def _namespace(namespace: str | None, namespace_file: Path) -> str:
    if namespace is None:
        try:
            namespace = namespace_file.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            raise UsageError(
                f"no namespace given and {namespace_file} does not exist (not running in a "
                "pod?): pass the namespace (namespace / --pod-namespace)"
            ) from None
        except (OSError, UnicodeDecodeError) as error:
            raise UsageError(
                f"no namespace given and {namespace_file} cannot be read ({error}): pass the "
                "namespace (namespace / --pod-namespace)"
            ) from None
        if not namespace:
            raise UsageError(
                f"no namespace given and {namespace_file} is empty: pass the namespace "
                "(namespace / --pod-namespace)"
            )
    if not isinstance(namespace, str) or not _NAMESPACE.match(namespace):
        raise UsageError(
            f"namespace {namespace!r} is not a Kubernetes namespace name (at most 63 lower-case "
            "letters, digits and '-')"
        )
    return namespace


def _ssl_context(ca_file: Path) -> tuple[ssl.SSLContext, str]:
    """The context verifying the API server, and how to name it in an error message."""
    if not ca_file.exists():
        # Outside a pod (an API server with a public certificate, or a proxy): the system store.
        return ssl.create_default_context(), f"the system's trust store ({ca_file} does not exist)"
    try:
        context = ssl.create_default_context(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as error:
        raise UsageError(f"cannot load the CA file {ca_file}: {error}") from None
    return context, f"the CA file {ca_file}"


# --- failures -----------------------------------------------------------------------------------


def _status_detail(body: bytes | None) -> str:
    """What an error body says: the Kubernetes Status ``message``, else an excerpt."""
    if body is None:
        return "the body is over the size limit"
    if not body.strip():
        return "empty body"
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        document = None
    if isinstance(document, dict) and isinstance(document.get("message"), str):
        message: str = document["message"]
        return message
    text = body[:_EXCERPT_CHARS].decode("utf-8", errors="replace")
    return f"body {text!r}" + ("..." if len(body) > _EXCERPT_CHARS else "")


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "(unknown status)"


def _is_port(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


async def _read_bounded(response: httpx.Response, limit: int) -> bytes | None:
    """The body, or None as soon as it is known to exceed ``limit`` (nothing more is read).

    Stopping early leaves the response unfinished, so httpcore closes that connection: an
    oversized answer costs a reconnect, never unbounded memory.
    """
    length = response.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    # aiter_bytes counts decoded bytes (a gzip body is bounded by what it inflates to).
    # aclosing: leaving the loop early closes the generator now, not when it is collected.
    # (typed as AsyncIterator by httpx, but it is an async generator, which has aclose)
    chunks_in = cast(AsyncGenerator[bytes, None], response.aiter_bytes())
    async with contextlib.aclosing(chunks_in) as body:
        async for chunk in body:
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
    return b"".join(chunks)


class _PodProblem(Exception):
    """A pod entry we skip, and the warning that says why."""


def _keepalive_expiry(settings: Settings) -> float:
    """How long the kept connection to the API server may sit idle, for these settings.

    The next lookup starts at most ``max(discovery_backoff_max, discovery_interval * (1 +
    discovery_jitter))`` after the last one ended (the backoff is capped there, jitter
    included), so the connection outlives that by a slack. It never outlives 60 s, well inside
    kube-apiserver's 90 s: were lookups further apart than that, the connection would close in
    between, a reconnect a minute at most, which is no churn.
    """
    longest_gap = max(
        settings.discovery_backoff_max,
        settings.discovery_interval * (1 + settings.discovery_jitter),
    )
    return min(longest_gap + _KEEPALIVE_SLACK, _KEEPALIVE_LIMIT)


# --- the backend --------------------------------------------------------------------------------


class KubernetesDiscovery:
    """Contact points of the Running pods matching ``label_selector``, from the API server.

    Defaults suit a pod: the API server from ``KUBERNETES_SERVICE_HOST`` / ``_PORT`` in
    ``environ``, the namespace, token and CA from the mounted service account. ``api_url`` may be
    ``http://`` (``kubectl proxy``, which needs no token: a missing token file sends none).
    ``http_transport`` replaces the network (tests; closing this closes it too).

    ``settings`` are the node's (default: ``Settings()``); the kept connection's keep-alive is
    derived from their discovery pacing. A lookup ends just before the caller's deadline (the
    node's ``discovery_timeout``) with an error naming the API server; ``timeout``, if given,
    bounds it further (a caller without a deadline, or one backend of several sharing it).

    Keep one instance for the process and close it (``aclose()`` or ``async with``): it holds the
    connection to the API server. Raises :class:`UsageError` at construction for a missing or
    malformed setting, and :class:`DiscoveryError` from :meth:`lookup`.
    """

    def __init__(
        self,
        *,
        label_selector: str,
        namespace: str | None = None,
        port_name: str | None = None,
        api_url: str | None = None,
        token_file: str | Path = DEFAULT_TOKEN_FILE,
        ca_file: str | Path = DEFAULT_CA_FILE,
        namespace_file: str | Path = DEFAULT_NAMESPACE_FILE,
        environ: Mapping[str, str] | None = None,
        timeout: float | None = None,
        http_transport: httpx.AsyncBaseTransport | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        settings: Settings | None = None,
    ) -> None:
        if timeout is not None and (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not (timeout > 0 and math.isfinite(timeout))
        ):
            raise UsageError(f"timeout must be a number of seconds > 0, got {timeout!r}")
        if (
            isinstance(max_response_bytes, bool)
            or not isinstance(max_response_bytes, int)
            or max_response_bytes < 1
        ):
            raise UsageError(
                f"max_response_bytes must be an integer >= 1, got {max_response_bytes!r}"
            )
        self._label_selector = _check_label_selector(label_selector)
        self._port_name = _check_port_name(port_name)
        self._api_url = _api_url(api_url, os.environ if environ is None else environ)
        self._namespace = _namespace(namespace, Path(namespace_file))
        self._token_file = Path(token_file)
        self._ca_file = Path(ca_file)
        self._timeout = None if timeout is None else float(timeout)
        if settings is not None and not isinstance(settings, Settings):
            raise UsageError(f"settings must be a bootstrap.Settings, got {settings!r}")
        self._keepalive_expiry = _keepalive_expiry(Settings() if settings is None else settings)
        self._max_response_bytes = max_response_bytes
        self._pods_url = f"{self._api_url}/api/v1/namespaces/{self._namespace}/pods"
        # httpx encodes the selector (",", "=", "!", "/", spaces) as a query value.
        self._params = {"labelSelector": self._label_selector, "resourceVersion": "0"}
        self._http_transport = http_transport
        self._ssl_context: ssl.SSLContext | None = None
        self._verified_with = "the HTTP transport given"
        if http_transport is None:
            self._ssl_context, self._verified_with = _ssl_context(self._ca_file)
        self._client: httpx.AsyncClient | None = None
        self._closed = False
        self._token: str | None = None
        self._token_key: tuple[int, int, int, int] | None = None
        self._token_missing_logged = False
        # Pod warnings logged and still applying: each is logged when it appears, not per lookup.
        self._pod_warnings: set[tuple[str, str]] = set()
        self._empty_logged = False

    # --- what it was configured with ----------------------------------------------------------

    @property
    def api_url(self) -> str:
        """The API server's base URL (no trailing slash)."""
        return self._api_url

    @property
    def namespace(self) -> str:
        return self._namespace

    @property
    def label_selector(self) -> str:
        return self._label_selector

    @property
    def port_name(self) -> str | None:
        return self._port_name

    @property
    def keepalive_expiry(self) -> float:
        """Seconds the connection to the API server is kept while idle (see the module)."""
        return self._keepalive_expiry

    # --- life cycle -------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection to the API server (idempotent); lookups then raise UsageError."""
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def _open_client(self) -> httpx.AsyncClient:
        if self._closed:
            raise UsageError("this KubernetesDiscovery is closed (aclose()): build a new one")
        if self._client is None:
            transport = self._http_transport
            if transport is None:
                assert self._ssl_context is not None  # built in __init__ when no transport is given
                transport = httpx.AsyncHTTPTransport(
                    verify=self._ssl_context,
                    trust_env=False,
                    # One connection: lookups never overlap (the node runs one at a time), and
                    # a second connection would only be churn.
                    limits=httpx.Limits(
                        max_connections=1,
                        max_keepalive_connections=1,
                        keepalive_expiry=self._keepalive_expiry,
                    ),
                )
            # Created at the first lookup, not in __init__: construction happens in
            # synchronous set-up code, the client belongs to the event loop that uses it.
            self._client = httpx.AsyncClient(
                transport=transport,
                # Our cancel scope is the only timeout: a second clock would race it.
                timeout=None,
                # Never route through an HTTP(S)_PROXY from the environment, nor follow a
                # redirect with our token to wherever it points.
                trust_env=False,
                follow_redirects=False,
                headers={
                    "Accept": "application/json",
                    # The API server compresses large lists; the bound applies after inflating.
                    "Accept-Encoding": "gzip",
                    "User-Agent": f"cluster-bootstrap/{__version__}",
                },
            )
        return self._client

    # --- the lookup -------------------------------------------------------------------------------

    async def lookup(self) -> list[ContactPoint]:
        """The contact points of the usable pods now, sorted; DiscoveryError says what to fix."""
        client = self._open_client()
        token = self._current_token()
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        status = 0
        body: bytes | None = None
        location: str | None = None
        budget = lookup_budget(self._timeout)
        with trio.move_on_at(budget.give_up_at) as scope:
            try:
                async with client.stream(
                    "GET", self._pods_url, params=self._params, headers=headers
                ) as response:
                    status = response.status_code
                    location = response.headers.get("location")
                    # Read even an error body (bounded): a finished response keeps the connection.
                    body = await _read_bounded(response, self._max_response_bytes)
            except (httpx.HTTPError, OSError) as error:
                raise DiscoveryError(self._describe(error)) from error
        if scope.cancelled_caught:
            raise DiscoveryError(
                f"no answer from the API server at {self._api_url} within {budget.seconds:.3g} s: "
                "is it reachable from here (a NetworkPolicy may block egress to it)?"
            )
        if status != 200:
            raise DiscoveryError(self._status_error(status, body, token, location))
        if body is None:
            raise DiscoveryError(
                f"the pod list from the API server at {self._api_url} is over "
                f"max_response_bytes ({self._max_response_bytes} bytes): narrow label_selector "
                f"{self._label_selector!r} or raise max_response_bytes"
            )
        return self._contact_points(body)

    def _current_token(self) -> str | None:
        """The service-account token, re-read only when its file changed; None if absent."""
        path = self._token_file
        # Synchronous file access on purpose: a stat (and rarely a read) of a tiny tmpfs file.
        try:
            info = os.stat(path)  # follows the kubelet's ..data symlink to the current token
        except FileNotFoundError:
            if not self._token_missing_logged:
                self._token_missing_logged = True
                logger.info(
                    "no service-account token at %s: sending requests without one (right for a "
                    "local API proxy such as kubectl proxy; in a pod, mount the token)",
                    path,
                )
            self._token = self._token_key = None
            return None
        except OSError as error:
            raise DiscoveryError(
                f"cannot read the service-account token {path}: {error.strerror or error}"
            ) from error
        key = (info.st_dev, info.st_ino, info.st_mtime_ns, info.st_size)
        if key == self._token_key and self._token is not None:
            return self._token
        try:
            token = path.read_bytes().strip()
        except OSError as error:
            raise DiscoveryError(
                f"cannot read the service-account token {path}: {error.strerror or error}"
            ) from error
        if not token:
            raise DiscoveryError(
                f"the service-account token file {path} is empty: mount the pod's "
                "service-account token there, or point token_file at one"
            )
        # A token is printable ASCII without spaces (a JWT); anything else would not make a
        # valid header, and is surely not a token.
        if not token.isascii() or any(byte <= 0x20 or byte == 0x7F for byte in token):
            raise DiscoveryError(
                f"the service-account token file {path} does not hold a token (it contains "
                "spaces, control characters or non-ASCII bytes)"
            )
        if self._token_key is not None:
            logger.debug("the service-account token in %s changed: using the new one", path)
        self._token, self._token_key = token.decode("ascii"), key
        self._token_missing_logged = False
        return self._token

    # --- what went wrong --------------------------------------------------------------------------

    def _describe(self, error: BaseException) -> str:
        """What a transport failure means, and what to check."""
        url = self._api_url
        causes = list(error_causes(error))
        for cause in causes:
            if isinstance(cause, ssl.SSLCertVerificationError):
                reason = cause.verify_message or cause.reason or str(cause)
                return (
                    f"TLS verification of the API server at {url} failed ({reason}); its "
                    f"certificate was checked against {self._verified_with}: point ca_file at "
                    "the cluster's CA (in a pod, the service account's ca.crt)"
                )
        for cause in causes:
            if isinstance(cause, ssl.SSLError):
                return (
                    f"TLS handshake with the API server at {url} failed ({cause.reason or cause}):"
                    " does the URL's scheme match the server (https for the API server, http for "
                    "kubectl proxy)?"
                )
        if any(isinstance(cause, ConnectionRefusedError) for cause in causes):
            return (
                f"cannot connect to the API server at {url}: connection refused (is the URL right?)"
            )
        for cause in causes:
            if isinstance(cause, socket.gaierror):
                host = httpx.URL(url).host
                return (
                    f"cannot resolve the API server's host {host!r} ({cause.strerror or cause}): "
                    "is the URL right?"
                )
        if isinstance(error, httpx.RemoteProtocolError):
            return (
                f"the API server at {url} broke off the HTTP exchange ({error}): does the URL's "
                "scheme match the server (https for the API server, http for kubectl proxy)?"
            )
        if isinstance(error, httpx.DecodingError):
            return f"the API server at {url} sent a body that does not decode: {error}"
        # The deepest OS error says most (trio's "all attempts to connect failed" wraps them).
        os_errors = [cause for cause in causes if isinstance(cause, OSError)]
        detail = (os_errors[-1].strerror or str(os_errors[-1])) if os_errors else str(error)
        return f"cannot reach the API server at {url}: {detail or type(error).__name__}"

    def _status_error(
        self, status: int, body: bytes | None, token: str | None, location: str | None
    ) -> str:
        url, namespace = self._api_url, self._namespace
        answered = f"the API server at {url} answered {status} {_phrase(status)}"
        detail = _status_detail(body)
        if status == 401:
            if token is None:
                return (
                    f"token rejected: no token was sent ({self._token_file} does not exist) and "
                    f"{answered} ({detail}): mount the pod's service-account token "
                    "(automountServiceAccountToken) or point token_file at one"
                )
            return (
                f"token rejected: {answered} ({detail}) to the token in {self._token_file}: it is "
                "invalid, expired or not for this cluster"
            )
        if status == 403:
            return (
                f"forbidden: {answered}: {detail}. The pod's ServiceAccount needs a Role granting "
                f"get, list and watch on pods in namespace {namespace!r} and a RoleBinding of "
                "that Role to the ServiceAccount; see docs/kubernetes.md"
            )
        if status == 404:
            return (
                f"not found: {answered} to GET /api/v1/namespaces/{namespace}/pods ({detail}): "
                f"does namespace {namespace!r} exist, and is the URL the API server's (with no "
                "path)?"
            )
        if status == 400:
            return f"{answered} ({detail}): check the label selector {self._label_selector!r}"
        if 300 <= status < 400:
            return (
                f"{answered}, redirecting to {location!r}, which is not followed: point "
                "api_url at the API server itself"
            )
        if status == 429:
            return f"{answered} ({detail}): it is throttling us; raise discovery_interval"
        return f"{answered} ({detail})"

    # --- the pod list ---------------------------------------------------------------------------

    def _contact_points(self, body: bytes) -> list[ContactPoint]:
        url = self._api_url
        try:
            document = json.loads(body)
        except (ValueError, RecursionError) as error:
            reason = "nested too deeply" if isinstance(error, RecursionError) else str(error)
            raise DiscoveryError(
                f"the API server at {url} sent a pod list that is not valid JSON ({reason}): "
                "is the URL the Kubernetes API server's?"
            ) from None
        kind = document.get("kind") if isinstance(document, dict) else type(document).__name__
        if kind != "PodList":
            raise DiscoveryError(
                f"the API server at {url} answered with {kind!r} where a PodList was expected: "
                "is the URL the Kubernetes API server's?"
            )
        assert isinstance(document, dict)  # checked through kind
        items = document.get("items")
        if items is None:
            items = []  # how Go encodes an empty list, on some servers
        if not isinstance(items, list):
            raise DiscoveryError(
                f"the PodList from {url} has items of type {type(items).__name__}, not a list"
            )
        if not items:
            if not self._empty_logged:
                self._empty_logged = True
                logger.warning(
                    "no pod in namespace %r matches the label selector %r (when running in a pod, "
                    "its own pod should): check the selector against the pod template's labels",
                    self._namespace,
                    self._label_selector,
                )
        else:
            self._empty_logged = False
        points: set[ContactPoint] = set()
        warnings: dict[tuple[str, str], str] = {}
        dropped: dict[str, int] = {}
        for index, item in enumerate(items):
            try:
                point = self._pod_contact_point(item, index, dropped)
            except _PodProblem as problem:
                name, message = problem.args
                warnings[name, message] = message
                continue
            if point is not None:
                points.add(point)
        # Logged when a problem appears (once per pod and problem), not on every lookup; a pod
        # that is gone or fixed is forgotten, so memory follows the pod list.
        for key, message in warnings.items():
            if key not in self._pod_warnings:
                logger.warning("%s", message)
        self._pod_warnings = set(warnings)
        result = sorted(points)
        logger.debug(
            "listed %d pods in %s: %d contact points; dropped %s",
            len(items),
            self._namespace,
            len(result),
            dropped or "none",
        )
        return result

    def _pod_contact_point(
        self, item: object, index: int, dropped: dict[str, int]
    ) -> ContactPoint | None:
        """The pod's contact point; None if it cannot take probes; _PodProblem if malformed."""
        if not isinstance(item, dict):
            raise _PodProblem(f"#{index}", f"skipping item #{index} of the pod list: not an object")
        metadata = item.get("metadata")
        name = metadata.get("name") if isinstance(metadata, dict) else None
        if not isinstance(metadata, dict) or not isinstance(name, str) or not name:
            raise _PodProblem(
                f"#{index}", f"skipping item #{index} of the pod list: it has no metadata.name"
            )
        status = item.get("status")
        if not isinstance(status, dict):
            raise _PodProblem(name, f"skipping pod {name}: it has no status object")
        drop: str | None = None
        pod_ip = status.get("podIP")
        if status.get("phase") != "Running":
            drop = "not Running"
        elif metadata.get("deletionTimestamp") is not None:
            drop = "terminating"
        elif pod_ip is None or pod_ip == "":
            drop = "no pod IP"
        if drop is not None:
            dropped[drop] = dropped.get(drop, 0) + 1
            return None
        if not isinstance(pod_ip, str) or not _is_ip(pod_ip):
            raise _PodProblem(name, f"skipping pod {name}: status.podIP {pod_ip!r} is not an IP")
        if self._port_name is None:
            return ContactPoint(pod_ip)
        return ContactPoint(pod_ip, self._named_port(item, name))

    def _named_port(self, pod: dict[str, Any], name: str) -> int:
        """The TCP container port named exactly ``port_name``, in any of the pod's containers."""
        wanted = self._port_name
        spec = pod.get("spec")
        containers = spec.get("containers") if isinstance(spec, dict) else None
        if not isinstance(containers, list):
            raise _PodProblem(name, f"skipping pod {name}: it has no spec.containers list")
        seen: list[str] = []
        for container in containers:
            ports = container.get("ports") if isinstance(container, dict) else None
            if not isinstance(container, dict) or not isinstance(ports, list | None):
                raise _PodProblem(name, f"skipping pod {name}: malformed spec.containers entry")
            for port in ports or ():
                if not isinstance(port, dict):
                    message = f"skipping pod {name}: malformed container port {port!r}"
                    raise _PodProblem(name, message)
                port_name, number = port.get("name"), port.get("containerPort")
                protocol = port.get("protocol") or "TCP"  # Kubernetes' default
                if port_name == wanted and protocol == "TCP":
                    if not _is_port(number):
                        raise _PodProblem(
                            name,
                            f"skipping pod {name}: its port {wanted!r} has containerPort "
                            f"{number!r}, not a port number",
                        )
                    assert isinstance(number, int)
                    return number
                if isinstance(port_name, str):
                    seen.append(f"{port_name} ({number}/{protocol})")
        has = ", ".join(seen) if seen else "none"
        raise _PodProblem(
            name,
            f"skipping pod {name}: it has no TCP container port named exactly {wanted!r} (its "
            f"named ports: {has}); name the management port {wanted!r} in the pod template, or "
            "change port_name (--pod-port-name)",
        )
