"""What every part of the management server reads from an ASGI 3 request, and how it answers.

Rules:

* Helpers here are total over what a server may hand an app: a scope without ``client``, a
  header value in any bytes, a path of any length. None raises on a peer's input.
* Header names are compared lower-cased (HTTP header names are case-insensitive); a header
  looked up by name is read at its first occurrence.
* Routing is on the path below the mount point (``root_path``), so a node served under a base
  path answers the same endpoints.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

__all__ = [
    "Message",
    "Receive",
    "Scope",
    "Send",
    "announces_body",
    "client_host",
    "first_header",
    "json_bytes",
    "offers_websocket_extensions",
    "request_head_bytes",
    "route_path",
    "shown_path",
]

# The ASGI 3 callables, typed loosely (as httpx's ASGITransport does): messages are plain dicts.
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# An error body names the path it refuses; a very long path is shown cut to this many characters.
_MAX_ECHOED_PATH_CHARS: Final = 200


def client_host(scope: Scope) -> str:
    """The client's address, the key of the per-client limits ("" if the server gives none)."""
    client = scope.get("client")
    if not client:
        return ""  # e.g. a unix socket: such clients share one budget
    return str(client[0])


def route_path(scope: Scope) -> str:
    """The path the app routes on: below the mount point when served under a base path."""
    path = str(scope.get("path", ""))
    root = str(scope.get("root_path", ""))
    # ASGI puts the mount point in both; a node served under a base path routes on the rest.
    if root and path.startswith(root):
        path = path[len(root) :]
    return path


def first_header(scope: Scope, name: bytes) -> bytes | None:
    """The value of the first header called ``name`` (lower-case), or None."""
    for header, value in scope.get("headers", ()):
        if bytes(header).lower() == name:
            return bytes(value)
    return None


def request_head_bytes(scope: Scope) -> int:
    """About the size of the request line and headers as sent (names, values, separators)."""
    target = scope.get("raw_path") or str(scope.get("path", "")).encode("utf-8", "surrogatepass")
    size = len(str(scope.get("method", "GET"))) + len(target) + len(scope.get("query_string", b""))
    for name, value in scope.get("headers", ()):
        size += len(name) + len(value) + 4  # ": " and CRLF
    return size


def offers_websocket_extensions(scope: Scope) -> bool:
    """Whether a websocket handshake offers any extension (compression is the only one seen)."""
    return any(
        bytes(name).lower() == b"sec-websocket-extensions" and bytes(value).strip()
        for name, value in scope.get("headers", ())
    )


def announces_body(scope: Scope) -> bool:
    """Whether the request says a body follows (Transfer-Encoding, or Content-Length not 0)."""
    for name, value in scope.get("headers", ()):
        lowered = bytes(name).lower()
        if lowered == b"transfer-encoding":
            return True
        if lowered == b"content-length":
            length = bytes(value).strip()
            if not (length.isdigit() and not length.strip(b"0")):
                return True
    return False


def shown_path(path: str) -> str:
    """``path`` for an error body: a very long one is cut, so the answer stays small."""
    if len(path) <= _MAX_ECHOED_PATH_CHARS:
        return path
    return path[:_MAX_ECHOED_PATH_CHARS] + "..."


def json_bytes(body: object) -> bytes:
    """``body`` as compact JSON; raises ``TypeError``/``ValueError`` if it is not JSON-ready."""
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode("utf-8")
