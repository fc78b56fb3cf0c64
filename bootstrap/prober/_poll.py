"""Polling: one ``GET /bootstrap/seed-nodes`` per probe, over a connection kept for each peer.

Rules:

* **One connection per peer.** Requests go through :class:`PoolPerPeer`: each peer has a pool
  of its own, holding at most one keep-alive connection, so no peer's connection is evicted by
  another's and ``stop()`` can close exactly that peer's.
* **One clock.** The whole probe gets one ``probe_timeout`` cancel scope (httpx's own timeouts
  are off), and that scope includes the wait for a slot of the prober's
  :class:`trio.CapacityLimiter`: ``observation_ttl`` assumes a probe answers or fails within
  ``probe_timeout`` of being asked, so a probe that waited too long for a slot fails as a
  timeout that says so.
* **Bounded, and still reusable.** The body is read up to the largest document a reader accepts
  (a longer one is cut while reading, an announced one not read at all), and read even when the
  answer is refused (a non-200, a wrong Content-Type): a finished response keeps the connection,
  so a peer answering garbage still costs no reconnect per probe.
* **A proposal is a header.** A poll for a probe that carries a founding round sends
  ``Bootstrap-Round: <r>``; the peer answers with its document as always, built after it
  weighed the proposal, so the answer shows whether it promised.
* **An outcome, not a report.** :func:`poll` returns a :data:`~._failures.Outcome`; it reports
  nothing itself. Only :data:`~._failures.PEER_ERRORS` become failures; other exceptions are
  bugs and propagate.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import Any, cast

import httpx
import trio

from ..core import ContactPoint
from ..core.wire import MAX_DOCUMENT_BYTES, ROUND_HEADER
from ._failures import (
    PEER_ERRORS,
    Document,
    Failure,
    Outcome,
    describe,
    no_slot_in_time,
    over_the_limit,
    refused_answer,
    timed_out,
    unauthorized,
)
from ._types import Counters

__all__ = ["PoolPerPeer", "TraceHook", "poll", "read_bounded"]

#: httpcore's ``trace`` request extension: called with each step of a request (we count the
#: new TCP connections it reports).
TraceHook = Callable[[str, Mapping[str, Any]], Awaitable[None]]


class PoolPerPeer(httpx.AsyncBaseTransport):
    """Routes each request to its peer's own connection pool (at most one connection each).

    One shared pool would do for reuse, but it has no way to close one peer's connection when
    that peer leaves, and it evicts idle connections beyond ``max_keepalive_connections``: both
    would leave connections to the server or reopen them. A pool per peer makes "one connection
    per peer, closed by us when we stop probing it" structural.
    """

    def __init__(self, make_pool: Callable[[ContactPoint], httpx.AsyncBaseTransport]) -> None:
        self._make_pool = make_pool
        self._pools: dict[ContactPoint, httpx.AsyncBaseTransport] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        # httpx leaves out a scheme's default port; our addresses always carry one.
        default_port = 443 if request.url.scheme == "https" else 80
        address = ContactPoint(request.url.host, request.url.port or default_port)
        pool = self._pools.get(address)
        if pool is None:
            pool = self._pools[address] = self._make_pool(address)
        return await pool.handle_async_request(request)

    def detach(self, address: ContactPoint) -> httpx.AsyncBaseTransport | None:
        """Forget ``address``'s pool (the caller closes it); the next request gets a new one."""
        return self._pools.pop(address, None)

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()


async def poll(
    client: httpx.AsyncClient,
    *,
    url: str,
    address: ContactPoint,
    round: int | None,
    trace: TraceHook,
    probe_timeout: float,
    limiter: trio.CapacityLimiter,
    counters: Counters,
    secret_sent: bool,
) -> Outcome:
    """Ask ``address`` for its document once (for a promise for ``round``, if set); what it
    answered, or why it did not."""
    slot_taken = False
    with trio.move_on_after(probe_timeout):
        async with limiter:
            slot_taken = True
            counters.probes_sent += 1
            try:
                return await _get_seed_nodes(client, url, address, round, trace, secret_sent)
            except PEER_ERRORS as error:
                return describe(error, address)
    # Only the deadline ends the scope without an outcome.
    return timed_out(probe_timeout) if slot_taken else no_slot_in_time(probe_timeout, limiter)


async def _get_seed_nodes(
    client: httpx.AsyncClient,
    url: str,
    address: ContactPoint,
    round: int | None,
    trace: TraceHook,
    secret_sent: bool,
) -> Outcome:
    headers = None if round is None else {ROUND_HEADER: str(round)}
    async with client.stream("GET", url, headers=headers, extensions={"trace": trace}) as response:
        encoding = response.headers.get("content-encoding", "identity").lower()
        if encoding != "identity":
            # Left unread: the connection is closed rather than reused (the size limit holds
            # for bytes as sent, and a compressed body would defeat it).
            reason = f"protocol error: document sent with Content-Encoding {encoding}, not asked"
            return Failure("protocol", reason)
        body = await read_bounded(response, MAX_DOCUMENT_BYTES)
    if response.status_code == 401:
        return unauthorized(address, secret_sent=secret_sent)
    refused = refused_answer(response, address)
    if refused is not None:
        return refused
    if body is None:
        return over_the_limit()
    return Document(body)


async def read_bounded(response: httpx.Response, limit: int) -> bytes | None:
    """The body, or None as soon as it is known to exceed ``limit`` (nothing more is read).

    Stopping early leaves the response unfinished, so httpcore closes that connection: a peer
    that sends oversized bodies costs a reconnect, never unbounded memory.
    """
    length = response.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    # aiter_bytes, not aiter_raw: the caller refused any Content-Encoding, so they are the same
    # bytes, and aiter_bytes also serves a response whose body was read already (in tests).
    # aclosing: leaving the loop early must close the generator now, not when it is collected.
    # (typed as AsyncIterator by httpx, but it is an async generator, which has aclose)
    chunks_in = cast(AsyncGenerator[bytes, None], response.aiter_bytes())
    async with contextlib.aclosing(chunks_in) as body:
        async for chunk in body:
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
    return b"".join(chunks)
