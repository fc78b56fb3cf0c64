"""DNS discovery: the contact points are what DNS says the service's pods are.

In Kubernetes the replicas of a service are published by a *headless* Service (``clusterIP:
None``): its name resolves to one A/AAAA record per pod instead of one virtual IP, so a lookup
of ``my-service.my-namespace.svc.cluster.local`` lists the pods themselves. Without a port name
that is what :class:`DnsDiscovery` asks for (A and AAAA at once); the node applies its
``fallback_port`` to the addresses.

With ``port_name`` it asks for the SRV records of ``_{port_name}._{protocol}.{name}``, which
Kubernetes publishes for every *named* port of the Service: each gives a pod's host name and the
port number, so the management port need not be configured twice. The pods' addresses come in
the response's additional section; a target without them there is resolved separately.

Answers are cached for their TTL (the smallest TTL of the records used): the node looks up every
``discovery_interval`` (1 s by default) while bootstrapping, and a hundred replicas doing that
must not hammer the cluster DNS with queries whose answer cannot have changed. ``refresh()``
drops the cache when a caller knows better.

A name that does not exist (NXDOMAIN) or has no records is *normal* for a while: Kubernetes
publishes a pod only once it is ready, unless the Service sets ``publishNotReadyAddresses:
true`` -- and a pod cannot become ready before it joins a cluster. So that returns no contact
points (the node keeps looking) and logs one warning saying what to check, not an error.
A DNS server that fails (SERVFAIL, REFUSED, no answer, unreachable) raises
:class:`DiscoveryError` naming the server, the query and what went wrong.

A lookup is held to the caller's deadline (the node's ``discovery_timeout``) by the rule of
:mod:`bootstrap.discovery.deadline`, and gives up just before it with that error.

Only dnspython's public API is used, so any dnspython 2.x from 2.6 on works; see
:class:`_ConnectedUdpBackend` for the one hook we rely on, and the tests that fail loudly if it
changes.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import attrs
import dns.asyncbackend
import dns.asyncresolver
import dns.exception
import dns.message
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.rdtypes.ANY.SOA
import dns.rdtypes.IN.SRV
import dns.resolver
import dns.rrset
import trio

from ..core.contact_point import ContactPoint
from ..core.errors import UsageError
from .base import DiscoveryError
from .deadline import lookup_budget

if TYPE_CHECKING:
    # The same class: dnspython re-exports it from its private module without marking the
    # re-export, so mypy --strict knows it only by that name. At run time the public name is
    # used.
    from dns._asyncbackend import Backend as _Backend
else:
    _Backend = dns.asyncbackend.Backend

__all__ = ["DnsDiscovery"]

logger = logging.getLogger("bootstrap.discovery.dns")

# One label of an SRV owner name: Kubernetes port names (IANA_SVC_NAME) and protocols fit.
_SRV_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?$")

# What to check when the name has no records; shared by the A/AAAA and the SRV warnings.
_CHECK = (
    "normal for a moment while the first pods start; if it persists, check the headless "
    "Service's name and namespace, and that it sets publishNotReadyAddresses: true (otherwise "
    "a pod is published only once ready, which it cannot be before it joins a cluster)"
)


class _ConnectedUdpBackend(_Backend):
    """dnspython's trio backend, with connected UDP sockets.

    Only a connected UDP socket is told of the ICMP "port unreachable" a host returns when
    nothing listens on the port (as ConnectionRefusedError); with an unconnected one a wrong
    port in ``nameservers`` would look like a silent server and be reported only after the whole
    timeout, as "no answer".

    Built on dnspython's public API only: the backend interface ``dns.asyncbackend.Backend``,
    whose ``datagram_connection_required()`` ``dns.asyncquery.udp`` asks before it makes a
    socket, and the trio backend from ``get_backend("trio")``, to which every other method
    delegates. (Subclassing the trio backend's class would import the private
    ``dns._trio_backend``, which dnspython may change in any release.) Two tests fail loudly if
    the interface changes: one checks that every method of the interface is delegated here, and
    ``test_a_port_nothing_listens_on_fails_at_once`` that the hook still connects the socket.
    """

    def __init__(self) -> None:
        self._trio = dns.asyncbackend.get_backend("trio")

    def name(self) -> str:
        return self._trio.name()

    def datagram_connection_required(self) -> bool:
        return True

    # dnspython leaves these untyped; they only pass arguments through, in its signatures
    # (wait_for's ``timeout`` among them: the interface's, not a trio-style API of ours).

    async def make_socket(self, *args: Any, **kwargs: Any) -> Any:
        return await self._trio.make_socket(*args, **kwargs)  # type: ignore[no-untyped-call]

    async def sleep(self, interval: float) -> None:
        await self._trio.sleep(interval)  # type: ignore[no-untyped-call]

    def get_transport_class(self) -> Any:
        return self._trio.get_transport_class()  # type: ignore[no-untyped-call]

    async def wait_for(self, awaitable: Any, timeout: float | None) -> Any:  # noqa: ASYNC109
        return await self._trio.wait_for(awaitable, timeout)  # type: ignore[no-untyped-call]


_BACKEND = _ConnectedUdpBackend()


@attrs.frozen
class _Reply:
    """The outcome of one query that got an answer: records, or none (NXDOMAIN / NODATA)."""

    rrset: dns.rrset.RRset | None
    response: dns.message.Message | None
    nxdomain: bool

    @property
    def addresses(self) -> list[str]:
        return [] if self.rrset is None else [rdata.to_text() for rdata in self.rrset]


@attrs.define
class _Round:
    """What one lookup (which may send several queries concurrently) has learnt so far."""

    deadline: float  # when to stop waiting: just before the lookup's deadline
    seconds: float  # the lookup's time in all, for messages (inf: dnspython's own lifetime)
    ttls: list[float] = attrs.field(factory=list)
    # A "no records" answer without an SOA has no negative TTL: it must not be cached.
    negative_without_soa: bool = False
    failures: list[tuple[str, str, str]] = attrs.field(factory=list)  # (name, type, reason)
    in_flight: set[tuple[str, str]] = attrs.field(factory=set)
    warnings: list[str] = attrs.field(factory=list)

    def note_negative(self, responses: Sequence[dns.message.Message]) -> None:
        for response in responses:
            ttl = _negative_ttl(response)
            if ttl is None:
                self.negative_without_soa = True
            else:
                self.ttls.append(ttl)

    def cache_ttl(self, *, empty: bool) -> float:
        """How long the result may be cached: 0 for not at all.

        A "no records" answer without an SOA does not stop caching the *other* records of a
        non-empty result (a pod with only an IPv4 address answers AAAA that way, and the A
        records' TTL bounds the result anyway); an empty result it leaves uncached, as asked.
        """
        if empty and self.negative_without_soa:
            return 0.0
        return min(self.ttls, default=0.0)


@attrs.frozen
class _Cached:
    contact_points: tuple[ContactPoint, ...]
    expires_at: float


def _negative_ttl(response: dns.message.Message) -> float | None:
    """RFC 2308: a negative answer may be cached for min(SOA TTL, SOA MINIMUM); no SOA, no TTL."""
    for rrset in response.authority:
        if rrset.rdtype == dns.rdatatype.SOA and len(rrset) > 0:
            soa = cast(dns.rdtypes.ANY.SOA.SOA, rrset[0])
            return float(min(rrset.ttl, soa.minimum))
    return None


def _text(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True)


def _parse_nameserver(text: object) -> tuple[str, int]:
    """``IP``, ``IP:PORT`` or ``[IPv6]:PORT`` (port 53 by default) as (address, port)."""
    usage = "give 'IP', 'IP:PORT' or '[IPv6]:PORT'"
    if not isinstance(text, str):
        raise UsageError(f"DNS server must be a string ({usage}), got {type(text).__name__}")
    raw = text.strip()
    host, port_text = raw, None
    if raw.startswith("["):
        end = raw.find("]")
        rest = raw[end + 1 :] if end >= 0 else ""
        if end < 0 or (rest and not rest.startswith(":")):
            raise UsageError(f"DNS server {text!r} is malformed: {usage}")
        host, port_text = raw[1:end], (rest[1:] if rest else None)
    elif raw.count(":") == 1:
        # More than one colon without brackets is a bare IPv6 address: it has no port.
        host, port_text = raw.split(":")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise UsageError(
            f"DNS server {text!r} is not an IP address ({usage}; a host name cannot be used: "
            "resolving it would need a DNS server itself)"
        ) from None
    if port_text is None:
        return str(address), 53
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise UsageError(f"DNS server {text!r}: port {port_text!r} is not a number in 1..65535")
    return str(address), int(port_text)


def _server_text(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


class DnsDiscovery:
    """Contact points from DNS: the A/AAAA records of ``name``, or its SRV records for a port.

    ``DnsDiscovery("my-service.my-namespace.svc.cluster.local")`` returns a contact point per
    address (port ``port``, or None for the node's ``fallback_port``);
    ``DnsDiscovery(name, port_name="management")`` one per address of every target of the SRV
    records of ``_management._tcp.{name}``, with the SRV record's port.

    ``nameservers`` (``"IP"``, ``"IP:PORT"``, ``"[IPv6]:PORT"``) are asked instead of those of
    /etc/resolv.conf; then ``name`` is taken as fully qualified (no search list).

    A lookup ends a moment before the caller's deadline (the node's ``discovery_timeout``) with
    an error that names the servers; ``timeout``, if given, bounds it further (a caller without
    a deadline, or one backend of several sharing it). Without either, dnspython's resolver
    lifetime bounds it.
    """

    def __init__(
        self,
        name: str,
        *,
        port_name: str | None = None,
        protocol: str = "tcp",
        nameservers: Sequence[str] = (),
        port: int | None = None,
        timeout: float | None = None,
    ) -> None:
        self._qname = self._check_name(name)
        self._name = _text(self._qname)
        self._srv_qname: dns.name.Name | None = None
        if port_name is not None:
            if port is not None:
                raise UsageError(
                    f"DNS discovery of {self._name}: give either port_name (the port comes from "
                    "the SRV records) or port (for A/AAAA records), not both"
                )
            for what, label in (("port_name", port_name), ("protocol", protocol)):
                if not isinstance(label, str) or not _SRV_LABEL.match(label):
                    raise UsageError(
                        f"DNS discovery: {what} {label!r} must be one DNS label of letters, "
                        "digits and '-' (without the leading '_' of the SRV name)"
                    )
            self._srv_qname = dns.name.from_text(
                f"_{port_name}._{protocol.lower()}", origin=None
            ).concatenate(self._qname)
        if port is not None and (
            isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535
        ):
            raise UsageError(f"DNS discovery: port must be an integer in 1..65535, got {port!r}")
        if timeout is not None and (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not 0 < timeout < math.inf
        ):
            raise UsageError(f"DNS discovery: timeout must be a positive number, got {timeout!r}")
        if isinstance(nameservers, str):
            raise UsageError(
                f"DNS discovery: nameservers must be a list of strings, got the string "
                f"{nameservers!r} (write [{nameservers!r}])"
            )
        self._port_name = port_name
        self._port = port
        self._timeout = None if timeout is None else float(timeout)
        self._resolver = self._make_resolver([_parse_nameserver(text) for text in nameservers])
        # With nameservers of its own, the name is absolute; with the system's, the search list
        # of /etc/resolv.conf applies as for any other program (a bare "my-service" works).
        self._search = not nameservers
        self._cache: _Cached | None = None
        self._last_warnings: tuple[str, ...] = ()

    @staticmethod
    def _check_name(name: object) -> dns.name.Name:
        if not isinstance(name, str) or not name.strip().rstrip("."):
            raise UsageError(f"DNS discovery needs a DNS name, got {name!r}")
        text = name.strip()
        try:
            ipaddress.ip_address(text)
        except ValueError:
            pass
        else:
            raise UsageError(
                f"DNS discovery needs a DNS name, got the address {text!r} "
                "(for fixed contact points use static discovery)"
            )
        try:
            return dns.name.from_text(text, origin=None)
        except dns.exception.DNSException as error:
            raise UsageError(f"DNS discovery: {text!r} is not a valid DNS name: {error}") from None

    @staticmethod
    def _make_resolver(servers: list[tuple[str, int]]) -> dns.asyncresolver.Resolver:
        if servers:
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = [
                dns.nameserver.Do53Nameserver(address, port) for address, port in servers
            ]
        else:
            try:
                resolver = dns.asyncresolver.Resolver()
            except dns.exception.DNSException as error:
                raise UsageError(
                    f"DNS discovery: cannot use the system's DNS configuration ({error}); "
                    "give nameservers"
                ) from None
        resolver.cache = None  # we cache whole results ourselves, for the TTL of their records
        return resolver

    # --- what the outside sees ----------------------------------------------------------------

    @property
    def name(self) -> str:
        """The name looked up (without a trailing dot)."""
        return self._name

    @property
    def query_name(self) -> str:
        """The name queried: ``name``, or the SRV name ``_{port_name}._{protocol}.{name}``."""
        return _text(self._srv_qname if self._srv_qname is not None else self._qname)

    @property
    def nameservers(self) -> tuple[str, ...]:
        """The DNS servers asked, as ``address:port``."""
        return tuple(self._server_names().values())

    def refresh(self) -> None:
        """Forget the cached answer: the next lookup asks the DNS server again."""
        self._cache = None

    async def lookup(self) -> list[ContactPoint]:
        """The contact points DNS lists now (cached for the records' TTL), sorted, no duplicates.

        No records (NXDOMAIN or an empty answer) is ``[]`` and a warning; a failing DNS server
        raises DiscoveryError.
        """
        now = trio.current_time()
        if self._cache is not None and now < self._cache.expires_at:
            return list(self._cache.contact_points)
        self._cache = None
        # Give up a little before the deadline: our error (which server, which query) says more
        # than the node's "lookup timed out".
        budget = lookup_budget(self._timeout)
        round_ = _Round(deadline=budget.give_up_at, seconds=budget.seconds)
        points: set[ContactPoint] = set()
        with trio.move_on_at(round_.deadline) as scope:
            if self._srv_qname is not None:
                points = await self._lookup_srv(round_, self._srv_qname)
            else:
                points = await self._lookup_addresses(round_)
        if scope.cancelled_caught:
            # dnspython keeps to its lifetime only roughly (it sleeps between retries). Had no
            # query been in flight (the deadline fell between two), blame the lookup as a whole.
            whole = (self.query_name, "A/AAAA" if self._srv_qname is None else "SRV")
            for name, rdtype in sorted(round_.in_flight) or [whole]:
                round_.failures.append((name, rdtype, self._no_answer(round_, [])))
        if round_.failures:
            self._last_warnings = ()  # an outcome of its own: a later warning is news again
            raise DiscoveryError(_failure_message(round_.failures))
        self._log(round_.warnings)
        result = sorted(points)
        ttl = round_.cache_ttl(empty=not result)
        if ttl > 0:
            self._cache = _Cached(tuple(result), now + ttl)
        return result

    # --- the lookups --------------------------------------------------------------------------

    async def _lookup_addresses(self, round_: _Round) -> set[ContactPoint]:
        replies: list[_Reply] = []

        async def query(rdtype: str) -> None:
            reply = await self._query(round_, self._qname, rdtype, search=self._search)
            if reply is not None:
                replies.append(reply)

        # Both families at once: a lookup costs one round trip, and a pod network may be
        # IPv4-only, IPv6-only or dual-stack (a family without records is normal).
        async with trio.open_nursery() as nursery:
            nursery.start_soon(query, "A")
            nursery.start_soon(query, "AAAA")
        if round_.failures:
            return set()
        addresses = [address for reply in replies for address in reply.addresses]
        if not addresses:
            if any(reply.nxdomain for reply in replies):
                what = f"does not exist (NXDOMAIN from {self._servers_text()})"
            else:
                what = f"has no A or AAAA records (asked {self._servers_text()})"
            round_.warnings.append(f"DNS name {self._name} {what}: no contact points; {_CHECK}")
        return {ContactPoint(address, self._port) for address in addresses}

    async def _lookup_srv(self, round_: _Round, srv_qname: dns.name.Name) -> set[ContactPoint]:
        srv_name = _text(srv_qname)
        reply = await self._query(round_, srv_qname, "SRV", search=self._search)
        if reply is None:
            return set()
        if reply.rrset is None or reply.response is None:
            what = (
                f"does not exist (NXDOMAIN from {self._servers_text()})"
                if reply.nxdomain
                else f"has no SRV records (asked {self._servers_text()})"
            )
            round_.warnings.append(
                f"DNS name {srv_name} {what}: no contact points for port name "
                f"{self._port_name!r}; check that the Service has a port named "
                f"{self._port_name!r} with that protocol; {_CHECK}"
            )
            return set()

        # The additional section: addresses the server volunteered for the targets.
        volunteered: dict[dns.name.Name, list[dns.rrset.RRset]] = {}
        for rrset in reply.response.additional:
            if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                volunteered.setdefault(rrset.name, []).append(rrset)

        targets: list[tuple[dns.name.Name, int]] = []
        # In a fixed order, so that the warnings of two lookups compare equal (logged once).
        records = sorted(
            (cast(dns.rdtypes.IN.SRV.SRV, rdata) for rdata in reply.rrset),
            key=lambda srv: (srv.target, srv.port),
        )
        for srv in records:
            if srv.target == dns.name.root:
                # RFC 2782: a target of "." says the service is decidedly not available there.
                round_.warnings.append(
                    f"SRV record {srv_name} has target '.' (service not available): skipped"
                )
            elif srv.port == 0:
                round_.warnings.append(
                    f"SRV record {srv_name} -> {_text(srv.target)} has port 0: skipped"
                )
            else:
                targets.append((srv.target, srv.port))

        # Targets the server said nothing about are resolved here, all at once.
        resolved: dict[dns.name.Name, list[str]] = {}

        async def resolve(target: dns.name.Name, rdtype: str) -> None:
            found = await self._query(round_, target, rdtype, search=False)
            if found is not None:
                resolved.setdefault(target, []).extend(found.addresses)

        async with trio.open_nursery() as nursery:
            for target in sorted({target for target, _ in targets if target not in volunteered}):
                nursery.start_soon(resolve, target, "A")
                nursery.start_soon(resolve, target, "AAAA")
        if round_.failures:
            return set()

        points: set[ContactPoint] = set()
        used: set[dns.name.Name] = set()
        for target, port in targets:
            if target in volunteered:
                if target not in used:
                    used.add(target)
                    round_.ttls.extend(rrset.ttl for rrset in volunteered[target])
                addresses = [rdata.to_text() for rrset in volunteered[target] for rdata in rrset]
            else:
                addresses = resolved.get(target, [])
            if not addresses:
                round_.warnings.append(
                    f"SRV record {srv_name} -> {_text(target)}:{port} skipped: "
                    f"{_text(target)} has no A or AAAA record"
                )
            points.update(ContactPoint(address, port) for address in addresses)
        return points

    async def _query(
        self, round_: _Round, qname: dns.name.Name, rdtype: str, *, search: bool
    ) -> _Reply | None:
        """One query; an answer (possibly "no records") or None with a failure noted in round_."""
        label = (_text(qname), rdtype)
        round_.in_flight.add(label)
        remaining = max(0.0, round_.deadline - trio.current_time())
        try:
            answer = await self._resolver.resolve(
                qname,
                rdtype,
                raise_on_no_answer=False,
                # No deadline at all: the resolver's own lifetime (None) bounds the query.
                lifetime=remaining if math.isfinite(remaining) else None,
                search=search,
                backend=_BACKEND,
            )
        except dns.resolver.NXDOMAIN as error:
            responses: dict[Any, dns.message.Message] = error.kwargs.get("responses", {})
            round_.note_negative(list(responses.values()))
            reply = _Reply(rrset=None, response=None, nxdomain=True)
        except dns.resolver.LifetimeTimeout as error:
            errors = error.kwargs.get("errors", [])
            round_.failures.append((*label, self._no_answer(round_, errors)))
            reply = None
        except dns.resolver.NoNameservers as error:
            round_.failures.append((*label, self._describe(error.kwargs.get("errors", []))))
            reply = None
        except dns.exception.DNSException as error:
            round_.failures.append((*label, str(error)))
            reply = None
        else:
            if answer.rrset is None:
                round_.note_negative([answer.response])
            else:
                round_.ttls.append(float(answer.chaining_result.minimum_ttl))
            reply = _Reply(rrset=answer.rrset, response=answer.response, nxdomain=False)
        round_.in_flight.discard(label)
        return reply

    # --- messages -----------------------------------------------------------------------------

    def _server_names(self) -> dict[str, str]:
        """str(nameserver), as dnspython's errors name it, to ``address:port``."""
        names = {}
        for server in self._resolver.nameservers:
            if isinstance(server, dns.nameserver.AddressAndPortNameserver):
                names[str(server)] = _server_text(server.address, server.port)
            else:
                names[str(server)] = str(server)
        return names

    def _servers_text(self) -> str:
        return ", ".join(self.nameservers)

    def _no_answer(self, round_: _Round, errors: list[Any]) -> str:
        servers = self.nameservers
        plural = "s" if len(servers) > 1 else ""
        seconds = round_.seconds if math.isfinite(round_.seconds) else self._resolver.lifetime
        reason = (
            f"no answer within {seconds:.3g} s from DNS server{plural} {', '.join(servers)} "
            "(is a DNS server listening there, and reachable?)"
        )
        # Servers that did answer, but uselessly, are worth naming too.
        other = [error for error in errors if not isinstance(error[3], dns.exception.Timeout)]
        return f"{reason}; {self._describe(other)}" if other else reason

    def _describe(self, errors: list[Any]) -> str:
        """dnspython's per-server errors as readable text, without repeats (it retries)."""
        names = self._server_names()
        texts: list[str] = []
        for server, _tcp, _port, error, _response in errors:
            where = f"DNS server {names.get(server, server)}"
            if error == "SERVFAIL":
                text = f"{where} answered SERVFAIL (it failed to resolve the name itself)"
            elif error == "REFUSED":
                text = (
                    f"{where} answered REFUSED (it does not serve this name for us: "
                    "check the nameservers setting)"
                )
            elif isinstance(error, str):
                text = f"{where} answered {error}"
            elif isinstance(error, dns.exception.Timeout):
                text = f"{where} did not answer in time"
            elif isinstance(error, ConnectionRefusedError):
                text = f"{where} refused the connection (nothing listens on that port)"
            elif isinstance(error, OSError):
                text = f"{where} could not be reached ({error.strerror or error})"
            elif isinstance(error, dns.message.ChainTooLong):
                text = f"{where} answered with a CNAME chain that is too long or loops"
            else:
                text = f"{where} sent an answer that cannot be used ({error})"
            if text not in texts:
                texts.append(text)
        return "; ".join(texts) if texts else "no DNS server could be asked"

    def _log(self, warnings: list[str]) -> None:
        # The node looks up every second while it waits; say each thing once, not every time.
        for warning in warnings:
            if warning not in self._last_warnings:
                logger.warning("%s", warning)
        self._last_warnings = tuple(warnings)


def _failure_message(failures: list[tuple[str, str, str]]) -> str:
    """One message for the failed queries, those failing for the same reason grouped."""
    by_reason: dict[str, dict[str, list[str]]] = {}
    for name, rdtype, reason in sorted(failures):
        by_reason.setdefault(reason, {}).setdefault(name, []).append(rdtype)
    return "; ".join(
        "DNS lookup of "
        + ", ".join(f"{name} {'/'.join(types)}" for name, types in names.items())
        + f" failed: {reason}"
        for reason, names in by_reason.items()
    )
