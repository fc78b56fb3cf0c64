"""A stand-in for the Kubernetes API server: pod lists over real HTTPS, on 127.0.0.1 only.

What it serves is shaped like the real thing, byte for byte where it matters to a client:

* ``GET /api/v1/namespaces/{namespace}/pods`` answers a ``PodList`` (``apiVersion: v1``,
  ``kind: PodList``, ``metadata.resourceVersion``, and items without ``kind``/``apiVersion``, as
  the API server sends them), filtered by ``labelSelector`` (``k=v``, ``k==v``, ``k!=v``, ``k``
  and ``!k``, comma-separated: equality-based selectors; set-based ones answer 400 as an
  unparsable selector would).
* Errors are Kubernetes ``Status`` objects with the API server's own messages: 401
  ``Unauthorized`` for a missing or unknown bearer token, 403 ``Forbidden`` (RBAC) when
  :attr:`KubeApi.forbidden` is set, 404 ``namespaces "x" not found`` for a namespace it does not
  know (a real API server lists an empty PodList there; the 404 stands for any path it cannot
  serve, such as an ``api_url`` with a wrong prefix), 404 for unknown paths, 400 for a bad
  selector.
* Lists over 128 KiB are gzip-compressed when the client accepts it, as the API server does.

Tests steer it through :class:`KubeApi`'s attributes (the pods, the accepted tokens, a canned
:class:`Answer`, a delay) and read what it saw in :attr:`KubeApi.requests`; a TCP connection is
counted by its client address (:attr:`KubeApi.connections`). :func:`serve_kube_api` runs it on
hypercorn's trio worker with a ``trustme`` CA, bound to 127.0.0.1 on a port the OS picks.
"""

from __future__ import annotations

import functools
import gzip
import itertools
import json
import logging
import re
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, MutableMapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import attrs
import hypercorn.config
import hypercorn.trio
import trio
import trustme

if TYPE_CHECKING:
    from hypercorn.typing import ASGIFramework

__all__ = [
    "Answer",
    "KubeApi",
    "KubeApiServer",
    "Port",
    "Request",
    "bad_request",
    "forbidden",
    "namespace_not_found",
    "pod",
    "pod_list",
    "serve_kube_api",
    "status",
    "unauthorized",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_PODS_PATH = re.compile(r"^/api/v1/namespaces/([^/]+)/pods$")
# The API server compresses responses above this size for clients that accept gzip.
_GZIP_ABOVE = 128 * 1024
_CREATED = "2024-05-01T10:00:00Z"


# --- documents, shaped like the API server's ----------------------------------------------------


def status(
    code: int, reason: str, message: str, details: dict[str, object] | None = None
) -> dict[str, object]:
    """A ``Status`` failure object, with the API server's key order."""
    document: dict[str, object] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
    }
    if details is not None:
        document["details"] = details
    document["code"] = code
    return document


def unauthorized() -> dict[str, object]:
    return status(401, "Unauthorized", "Unauthorized")


def forbidden(namespace: str, *, service_account: str = "default:default") -> dict[str, object]:
    return status(
        403,
        "Forbidden",
        f'pods is forbidden: User "system:serviceaccount:{service_account}" cannot list '
        f'resource "pods" in API group "" in the namespace "{namespace}"',
        {"kind": "pods"},
    )


def namespace_not_found(namespace: str) -> dict[str, object]:
    return status(
        404,
        "NotFound",
        f'namespaces "{namespace}" not found',
        {"name": namespace, "kind": "namespaces"},
    )


def path_not_found() -> dict[str, object]:
    return status(404, "NotFound", "the server could not find the requested resource", {})


def bad_request(message: str) -> dict[str, object]:
    return status(400, "BadRequest", message)


@attrs.frozen
class Port:
    """A container port as a pod spec declares it."""

    name: str | None
    number: int
    protocol: str = "TCP"


_uids = itertools.count(1)


def pod(
    name: str,
    ip: str | None,
    *,
    labels: dict[str, str] | None = None,
    namespace: str = "default",
    phase: str = "Running",
    ready: bool = True,
    deleting: bool = False,
    containers: Sequence[Sequence[Port]] = ((Port("management", 8558),),),
    ips: Sequence[str] | None = None,
) -> dict[str, Any]:
    """One item of a PodList: a pod named ``name`` at ``ip`` (None: not assigned yet).

    ``containers`` lists each container's ports; ``ips`` the dual-stack ``status.podIPs``
    (default: just ``ip``). A ``deleting`` pod carries a ``deletionTimestamp`` (it is in its
    grace period, still Running).
    """
    uid = next(_uids)
    metadata: dict[str, object] = {
        "name": name,
        "generateName": name.rsplit("-", 1)[0] + "-",
        "namespace": namespace,
        "uid": f"00000000-0000-4000-8000-{uid:012d}",
        "resourceVersion": str(1000 + uid),
        "creationTimestamp": _CREATED,
        "labels": dict(labels if labels is not None else {"app": "svc"}),
    }
    if deleting:
        metadata["deletionTimestamp"] = "2024-05-01T10:05:00Z"
        metadata["deletionGracePeriodSeconds"] = 30
    spec = {
        "containers": [
            {
                "name": f"c{index}",
                "image": "registry.example/svc:1.0",
                "ports": [
                    {"name": port.name, "containerPort": port.number, "protocol": port.protocol}
                    if port.name is not None
                    else {"containerPort": port.number, "protocol": port.protocol}
                    for port in ports
                ],
                "resources": {},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent",
            }
            for index, ports in enumerate(containers)
        ],
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
        "serviceAccountName": "default",
        "nodeName": "node-1",
    }
    running = phase == "Running"
    condition = "True" if ready and running else "False"
    status_: dict[str, object] = {
        "phase": phase,
        "conditions": [
            {
                "type": kind,
                "status": "True" if kind in ("Initialized", "PodScheduled") else condition,
                "lastProbeTime": None,
                "lastTransitionTime": _CREATED,
            }
            for kind in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
        ],
        "hostIP": "192.0.2.10",
        "startTime": _CREATED,
    }
    if ip is not None:
        status_["podIP"] = ip
        status_["podIPs"] = [{"ip": address} for address in (ips if ips is not None else [ip])]
    return {"metadata": metadata, "spec": spec, "status": status_}


def pod_list(items: Iterable[object], *, resource_version: str = "4242") -> dict[str, object]:
    return {
        "kind": "PodList",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": resource_version},
        "items": list(items),
    }


# --- label selectors ----------------------------------------------------------------------------

# (key, operator, value): operator is "=", "!=", "exists" or "!exists" (value unused).
_Requirement = tuple[str, str, str]
_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_EQUALS = re.compile(rf"^({_KEY})\s*(==|=|!=)\s*({_VALUE})$")
_EXISTS = re.compile(rf"^(!?)\s*({_KEY})$")


def parse_selector(selector: str) -> list[_Requirement] | None:
    """Equality-based requirements of ``selector``; None if it is not one we understand."""
    requirements: list[_Requirement] = []
    for part in selector.split(","):
        text = part.strip()
        if not text:
            continue
        if match := _EQUALS.match(text):
            operator = "!=" if match.group(3) == "!=" else "="
            requirements.append((match.group(1), operator, match.group(4)))
        elif match := _EXISTS.match(text):
            requirements.append((match.group(2), f"{match.group(1)}exists", ""))
        else:
            return None
    return requirements


def selector_matches(requirements: Iterable[_Requirement], labels: dict[str, str]) -> bool:
    for key, operator, value in requirements:
        if operator == "=" and labels.get(key) != value:
            return False
        if operator == "!=" and labels.get(key) == value:
            return False
        if operator == "exists" and key not in labels:
            return False
        if operator == "!exists" and key in labels:
            return False
    return True


# --- the app ------------------------------------------------------------------------------------


@attrs.frozen
class Request:
    """One request as the stand-in received it."""

    method: str
    path: str
    raw_query: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    client: tuple[str, int] | None

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")


@attrs.define
class Answer:
    """A canned answer replacing the normal one.

    With ``chunk_size`` the body is streamed in pieces of that size, without Content-Length;
    with ``stall`` as well, the response then never ends (the connection stays open).
    """

    status: int
    body: bytes
    headers: list[tuple[bytes, bytes]] = attrs.field(factory=list)
    chunk_size: int | None = None
    stall: bool = False

    @classmethod
    def json(cls, status: int, document: object) -> Answer:
        return cls(status, json.dumps(document).encode())


class KubeApi:
    """The ASGI app: what the API server knows, and what it was asked."""

    def __init__(
        self,
        pods: Iterable[dict[str, Any]] = (),
        *,
        namespaces: Iterable[str] = ("default",),
        tokens: Iterable[str] | None = ("token-1",),
    ) -> None:
        self.pods = list(pods)
        self.namespaces = set(namespaces)
        #: Bearer tokens accepted; None accepts requests without one (as kubectl proxy does).
        self.tokens: set[str] | None = None if tokens is None else set(tokens)
        #: Answer 403 to every list: the ServiceAccount lacks RBAC permission.
        self.forbidden = False
        #: Answer this instead of the normal answer (auth is still checked first).
        self.answer: Answer | None = None
        #: Seconds to wait before answering.
        self.delay = 0.0
        self.requests: list[Request] = []
        self.compressed_responses = 0

    @property
    def connections(self) -> int:
        """TCP connections that carried requests (each has its own client address)."""
        return len({request.client for request in self.requests})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            raise ValueError(f"unsupported ASGI scope type {scope['type']!r}")
        request = self._record(scope)
        if self.delay:
            await trio.sleep(self.delay)
        answer = self._answer(request)
        headers = [
            (b"content-type", b"application/json"),
            (b"cache-control", b"no-cache, private"),
            (b"audit-id", b"d2c6a1d4-5a4b-4e0e-9b7e-000000000000"),
            *answer.headers,
        ]
        body = answer.body
        if (
            answer.chunk_size is None
            and len(body) > _GZIP_ABOVE
            and "gzip" in request.headers.get("accept-encoding", "")
        ):
            body = gzip.compress(body)
            headers.append((b"content-encoding", b"gzip"))
            self.compressed_responses += 1
        if answer.chunk_size is None:
            headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        if answer.chunk_size is None:
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return
        for start in range(0, len(body), answer.chunk_size):
            chunk = body[start : start + answer.chunk_size]
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        if answer.stall:
            await trio.sleep_forever()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _record(self, scope: Scope) -> Request:
        raw_query = bytes(scope.get("query_string", b"")).decode("latin-1")
        client = scope.get("client")
        request = Request(
            method=str(scope["method"]),
            path=str(scope["path"]),
            raw_query=raw_query,
            query=urllib.parse.parse_qs(raw_query, keep_blank_values=True),
            headers={
                bytes(name).decode("latin-1").lower(): bytes(value).decode("latin-1")
                for name, value in scope["headers"]
            },
            client=None if client is None else (str(client[0]), int(client[1])),
        )
        self.requests.append(request)
        return request

    def _answer(self, request: Request) -> Answer:
        if self.tokens is not None:
            authorization = request.authorization or ""
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or token not in self.tokens:
                return Answer.json(401, unauthorized())
        if self.answer is not None:
            return self.answer
        match = _PODS_PATH.match(request.path)
        if match is None:
            return Answer.json(404, path_not_found())
        if request.method != "GET":
            return Answer.json(
                405, status(405, "MethodNotAllowed", "the server does not allow this method")
            )
        namespace = match.group(1)
        if self.forbidden:
            return Answer.json(403, forbidden(namespace))
        if namespace not in self.namespaces:
            return Answer.json(404, namespace_not_found(namespace))
        selector = request.query.get("labelSelector", [""])[-1]
        requirements = parse_selector(selector)
        if requirements is None:
            return Answer.json(
                400,
                bad_request(
                    f"unable to parse requirement: {selector!r}: the stand-in understands "
                    "only equality-based selectors"
                ),
            )
        items = [
            item
            for item in self.pods
            if _meta(item).get("namespace") == namespace
            and selector_matches(requirements, _labels(item))
        ]
        return Answer.json(200, pod_list(items))


def _meta(item: dict[str, Any]) -> dict[str, Any]:
    metadata = item.get("metadata")
    return metadata if isinstance(metadata, dict) else {}


def _labels(item: dict[str, Any]) -> dict[str, str]:
    labels = _meta(item).get("labels")
    return labels if isinstance(labels, dict) else {}


# --- serving ------------------------------------------------------------------------------------


@attrs.frozen
class KubeApiServer:
    """A running stand-in: its base URL and the CA that signed its certificate."""

    url: str
    ca: trustme.CA | None
    ca_file: Path | None
    port: int


@asynccontextmanager
async def serve_kube_api(
    api: KubeApi, directory: Path, *, tls: bool = True
) -> AsyncIterator[KubeApiServer]:
    """Serve ``api`` on 127.0.0.1 (a free port) for the ``async with`` block.

    With ``tls`` (the default) over HTTPS: a new ``trustme`` CA signs a certificate for
    127.0.0.1, and the CA is written to ``directory / "ca.crt"`` for clients to verify with.
    Without, over plain HTTP, as ``kubectl proxy`` serves.
    """
    config = hypercorn.config.Config()
    # Port 0: the OS picks a free port as the socket binds, so no other test can race for it.
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = logging.getLogger("tests.kube_api.hypercorn")
    ca: trustme.CA | None = None
    ca_file: Path | None = None
    if tls:
        ca = trustme.CA()
        ca_file = directory / "ca.crt"
        ca.cert_pem.write_to_path(str(ca_file))
        server_pem = directory / "server.pem"
        ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(server_pem))
        config.certfile = config.keyfile = str(server_pem)
    framework = cast("ASGIFramework", api)
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            functools.partial(hypercorn.trio.serve, framework, config, mode="asgi")
        )
        url = binds[0]
        port = int(url.rsplit(":", 1)[1])
        try:
            yield KubeApiServer(url=url, ca=ca, ca_file=ca_file, port=port)
        finally:
            nursery.cancel_scope.cancel()
