"""DnsDiscovery against a real DNS server (dnsmasq) and, for exact answers, a tiny in-test one.

dnsmasq (``tests/dnsmasq.py``) serves the records a test gives it on 127.0.0.1; what it cannot
be made to answer (SERVFAIL, an SRV record without the target's addresses in the additional
section, an SOA with a negative TTL, a CNAME loop) comes from ``FakeDns``: a UDP server on
127.0.0.1 built from dnspython's ``dns.message`` that answers from a table and counts queries.

Every test runs under ``trio.fail_after``. Caching tests use ``MockClock(rate=1)``: real time
for the sockets, plus ``jump()`` to pass a TTL without waiting for it.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager

import dns.asyncbackend
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
import trio
import trio.testing

from bootstrap import ContactPoint, UsageError
from bootstrap.discovery import Discovery, DiscoveryError, DnsDiscovery
from bootstrap.discovery.dns import _ConnectedUdpBackend
from tests.dnsmasq import Dnsmasq
from tests.helpers.running import run

C = ContactPoint
LOGGER = "bootstrap.discovery.dns"
TEST_TIMEOUT = 20.0  # real UDP and TCP on loopback (a fake DNS server, or dnsmasq)

# The warning's advice, as DnsDiscovery words it (asserted in full once, below).
CHECK = (
    "normal for a moment while the first pods start; if it persists, check the headless "
    "Service's name and namespace, and that it sets publishNotReadyAddresses: true (otherwise "
    "a pod is published only once ready, which it cannot be before it joins a cluster)"
)


def warnings_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == LOGGER and record.levelno == logging.WARNING
    ]


def closed_udp_port() -> int:
    """A UDP port on 127.0.0.1 nothing listens on (the kernel answers ICMP port unreachable)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- a tiny DNS server answering exactly what a test says ---------------------------------------

Handler = Callable[[dns.message.Message], dns.message.Message | None]
Records = Mapping[tuple[str, str], tuple[int, Sequence[str]]]  # (name, type) -> (ttl, values)


class FakeDns:
    """A UDP DNS server on 127.0.0.1: ``handler`` makes each response (None: do not answer)."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.queries: list[tuple[str, str]] = []  # (type, name), in order of arrival
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            await sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
            task_status.started()
            while True:
                data, peer = await sock.recvfrom(65535)
                query = dns.message.from_wire(data)
                question = query.question[0]
                self.queries.append(
                    (dns.rdatatype.to_text(question.rdtype), question.name.to_text(True))
                )
                response = self.handler(query)
                if response is not None:
                    await sock.sendto(response.to_wire(), peer)


@asynccontextmanager
async def fake_dns(handler: Handler) -> AsyncIterator[FakeDns]:
    server = FakeDns(handler)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        yield server
        nursery.cancel_scope.cancel()


def zone(
    records: Records,
    *,
    additional: Mapping[str, Sequence[tuple[str, str]]] | None = None,
    negative_ttl: int | None = None,
) -> Handler:
    """Answer from ``records``; unknown names are NXDOMAIN, known ones without the type NODATA.

    ``additional`` lists, per queried name, the (name, type) records to add to the additional
    section. With ``negative_ttl`` negative answers carry an SOA (TTL 3600, MINIMUM
    ``negative_ttl``), so they may be cached for ``negative_ttl`` (RFC 2308).
    """
    names = {name for name, _ in records}

    def rrset(name: str, rdtype: str) -> dns.rrset.RRset:
        ttl, values = records[(name, rdtype)]
        return dns.rrset.from_text_list(f"{name}.", ttl, "IN", rdtype, list(values))

    def handle(query: dns.message.Message) -> dns.message.Message:
        question = query.question[0]
        name, rdtype = question.name.to_text(True), dns.rdatatype.to_text(question.rdtype)
        response = dns.message.make_response(query)
        if (name, rdtype) in records:
            response.answer.append(rrset(name, rdtype))
            for extra in (additional or {}).get(name, ()):
                response.additional.append(rrset(*extra))
            return response
        if name not in names:
            response.set_rcode(dns.rcode.NXDOMAIN)
        if negative_ttl is not None:
            soa = f"ns.zone. admin.zone. 1 3600 600 86400 {negative_ttl}"
            response.authority.append(dns.rrset.from_text("zone.", 3600, "IN", "SOA", soa))
        return response

    return handle


# --- A and AAAA ---------------------------------------------------------------------------------

HEADLESS = {"svc.zone": ["10.0.0.3", "10.0.0.1", "10.0.0.2", "fd00::1"]}


@pytest.mark.parametrize("port", [None, 8558])
def test_a_and_aaaa_records_are_the_contact_points(port: int | None) -> None:
    """3 A records and 1 AAAA record give exactly those 4 addresses, sorted, with ``port``."""
    with Dnsmasq(host_records=HEADLESS) as server:
        discovery = DnsDiscovery("svc.zone", nameservers=[server.address], port=port)
        assert isinstance(discovery, Discovery)

        async def test() -> None:
            assert await discovery.lookup() == [
                C("10.0.0.1", port),
                C("10.0.0.2", port),
                C("10.0.0.3", port),
                C("fd00::1", port),
            ]

        run(test, seconds=TEST_TIMEOUT)
        assert sorted(server.logged_queries()) == [("A", "svc.zone"), ("AAAA", "svc.zone")]


def test_one_family_without_records_is_normal() -> None:
    """An IPv4-only name (AAAA: no records) gives its A records and logs nothing."""
    with Dnsmasq(host_records={"svc.zone": ["10.0.0.2", "10.0.0.1"]}) as server:
        discovery = DnsDiscovery("svc.zone.", nameservers=[server.address])

        async def test() -> None:
            assert await discovery.lookup() == [C("10.0.0.1"), C("10.0.0.2")]

        run(test, seconds=TEST_TIMEOUT)


def test_answers_are_deduplicated() -> None:
    """The same address twice (a bad zone, or two SRV records to one pod) is one contact point."""
    records = {("svc.zone", "A"): (30, ["10.0.0.1", "10.0.0.1", "10.0.0.2"])}

    async def test() -> None:
        async with fake_dns(zone(records)) as server:
            discovery = DnsDiscovery("svc.zone", nameservers=[server.address])
            assert await discovery.lookup() == [C("10.0.0.1"), C("10.0.0.2")]

    run(test, seconds=TEST_TIMEOUT)


# --- SRV ----------------------------------------------------------------------------------------

SRV_HOSTS = [
    "_management._tcp.svc.zone,node2.zone,8558",
    "_management._tcp.svc.zone,node1.zone,8558",
    "_remoting._tcp.svc.zone,node1.zone,25520",
]
NODES = {"node1.zone": ["10.0.1.1", "fd00::1"], "node2.zone": ["10.0.1.2"]}


def test_srv_records_give_targets_addresses_and_ports_from_the_additional_section() -> None:
    """SRV of a named port: every address of every target, with the SRV port, in one query."""
    with Dnsmasq(host_records=NODES, srv_hosts=SRV_HOSTS) as server:
        discovery = DnsDiscovery("svc.zone", port_name="management", nameservers=[server.address])
        assert discovery.query_name == "_management._tcp.svc.zone"

        async def test() -> None:
            assert await discovery.lookup() == [
                C("10.0.1.1", 8558),
                C("10.0.1.2", 8558),
                C("fd00::1", 8558),
            ]

        run(test, seconds=TEST_TIMEOUT)
        # dnsmasq put the targets' A/AAAA records in the additional section: nothing else asked.
        assert server.logged_queries() == [("SRV", "_management._tcp.svc.zone")]


def test_srv_targets_missing_from_the_additional_section_are_resolved(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A target the server gave no address for is looked up; one with none anywhere is skipped."""
    srv = "_management._tcp.svc.zone"
    records: Records = {
        (srv, "SRV"): (
            30,
            [
                "0 0 8558 node1.zone.",  # addresses in the additional section
                "0 0 8559 node2.zone.",  # addresses only when asked for
                "0 0 8560 node3.zone.",  # no addresses at all: NXDOMAIN
                "0 0 8561 .",  # "service not available here"
                "0 0 0 node1.zone.",  # port 0: not a contact point
            ],
        ),
        ("node1.zone", "A"): (30, ["10.0.1.1"]),
        ("node2.zone", "A"): (30, ["10.0.1.2"]),
        ("node2.zone", "AAAA"): (30, ["fd00::2"]),
    }
    handler = zone(records, additional={srv: [("node1.zone", "A")]})
    caplog.set_level(logging.WARNING, logger=LOGGER)

    async def test() -> None:
        async with fake_dns(handler) as server:
            discovery = DnsDiscovery(
                "svc.zone", port_name="management", nameservers=[server.address]
            )
            assert await discovery.lookup() == [
                C("10.0.1.1", 8558),
                C("10.0.1.2", 8559),
                C("fd00::2", 8559),
            ]
            assert server.queries[0] == ("SRV", srv)
            assert sorted(server.queries[1:]) == [
                ("A", "node2.zone"),
                ("A", "node3.zone"),
                ("AAAA", "node2.zone"),
                ("AAAA", "node3.zone"),
            ]

    run(test, seconds=TEST_TIMEOUT)
    assert warnings_logged(caplog) == [
        f"SRV record {srv} has target '.' (service not available): skipped",
        f"SRV record {srv} -> node1.zone has port 0: skipped",
        f"SRV record {srv} -> node3.zone:8560 skipped: node3.zone has no A or AAAA record",
    ]


def test_srv_name_that_does_not_exist_logs_what_to_check(caplog: pytest.LogCaptureFixture) -> None:
    """No SRV records for the port name: [] and a warning naming the port name to check."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    with Dnsmasq(host_records=NODES, srv_hosts=SRV_HOSTS) as server:
        discovery = DnsDiscovery("svc.zone", port_name="http", nameservers=[server.address])

        async def test() -> None:
            assert await discovery.lookup() == []

        run(test, seconds=TEST_TIMEOUT)
    assert warnings_logged(caplog) == [
        f"DNS name _http._tcp.svc.zone does not exist (NXDOMAIN from {server.address}): no "
        "contact points for port name 'http'; check that the Service has a port named 'http' "
        f"with that protocol; {CHECK}"
    ]


def test_srv_name_without_srv_records_logs_what_to_check(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The SRV name exists but has no SRV records (NODATA): [] and a warning saying so."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    handler = zone({("_management._tcp.svc.zone", "TXT"): (30, ['"not an SRV record"'])})

    async def test() -> None:
        async with fake_dns(handler) as server:
            discovery = DnsDiscovery(
                "svc.zone", port_name="management", nameservers=[server.address]
            )
            assert await discovery.lookup() == []
            assert warnings_logged(caplog) == [
                f"DNS name _management._tcp.svc.zone has no SRV records (asked {server.address})"
                ": no contact points for port name 'management'; check that the Service has a "
                f"port named 'management' with that protocol; {CHECK}"
            ]

    run(test, seconds=TEST_TIMEOUT)


# --- no records ---------------------------------------------------------------------------------


def test_nxdomain_is_no_contact_points_and_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    """NXDOMAIN: [] and one warning for identical consecutive outcomes, again after a change."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    with Dnsmasq() as server:  # TTL 0: nothing is cached, every lookup asks
        discovery = DnsDiscovery("svc.zone", nameservers=[server.address])
        warning = (
            f"DNS name svc.zone does not exist (NXDOMAIN from {server.address}): no contact "
            "points; normal for a moment while the first pods start; if it persists, check the "
            "headless Service's name and namespace, and that it sets publishNotReadyAddresses: "
            "true (otherwise a pod is published only once ready, which it cannot be before it "
            "joins a cluster)"
        )

        async def lookup() -> list[ContactPoint]:
            # Count the queries of this lookup alone (set_hosts queries dnsmasq too).
            before = len(await trio.to_thread.run_sync(server.logged_queries))
            result = await discovery.lookup()
            logged = await trio.to_thread.run_sync(server.logged_queries)
            # Without an SOA (dnsmasq sends none) NXDOMAIN is not cached: each lookup asks.
            assert sorted(logged[before:]) == [("A", "svc.zone"), ("AAAA", "svc.zone")]
            return result

        async def test() -> None:
            assert await lookup() == []
            assert await lookup() == []
            assert warnings_logged(caplog) == [warning]
            await trio.to_thread.run_sync(server.set_hosts, "pods", {"svc.zone": ["10.0.0.1"]})
            assert await lookup() == [C("10.0.0.1")]
            await trio.to_thread.run_sync(server.remove_hosts, "pods")
            assert await lookup() == []
            assert warnings_logged(caplog) == [warning, warning]

        run(test, seconds=TEST_TIMEOUT)


def test_a_name_without_addresses_is_no_contact_points(caplog: pytest.LogCaptureFixture) -> None:
    """A name that exists with no A or AAAA record (NODATA): [] and a warning saying so."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    with Dnsmasq(extra_args=["--txt-record=svc.zone,not-an-address"]) as server:
        discovery = DnsDiscovery("svc.zone", nameservers=[server.address])

        async def test() -> None:
            assert await discovery.lookup() == []

        run(test, seconds=TEST_TIMEOUT)
    assert warnings_logged(caplog) == [
        f"DNS name svc.zone has no A or AAAA records (asked {server.address}): no contact "
        f"points; {CHECK}"
    ]


# --- failures -----------------------------------------------------------------------------------


def test_refused_names_the_server_and_the_query() -> None:
    """A name outside the server's zones: dnsmasq answers REFUSED, a DiscoveryError says so."""
    with Dnsmasq(host_records=HEADLESS) as server:
        discovery = DnsDiscovery("svc.elsewhere", nameservers=[server.address])

        async def test() -> None:
            with pytest.raises(DiscoveryError) as raised:
                await discovery.lookup()
            assert str(raised.value) == (
                f"DNS lookup of svc.elsewhere A/AAAA failed: DNS server {server.address} "
                "answered REFUSED (it does not serve this name for us: check the nameservers "
                "setting)"
            )

        run(test, seconds=TEST_TIMEOUT)


@pytest.mark.parametrize(
    ("rcode", "reason"),
    [
        ("SERVFAIL", "answered SERVFAIL (it failed to resolve the name itself)"),
        ("NOTIMP", "answered NOTIMP"),
    ],
)
def test_servfail_names_the_server_and_the_query(rcode: str, reason: str) -> None:
    """SERVFAIL (the server's own upstream failed), or another rcode: DiscoveryError naming it."""

    def fail(query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        response.set_rcode(dns.rcode.from_text(rcode))
        return response

    async def test() -> None:
        async with fake_dns(fail) as server:
            discovery = DnsDiscovery("svc.zone", nameservers=[server.address])
            with pytest.raises(DiscoveryError) as raised:
                await discovery.lookup()
            assert str(raised.value) == (
                f"DNS lookup of svc.zone A/AAAA failed: DNS server {server.address} {reason}"
            )

    run(test, seconds=TEST_TIMEOUT)


def test_servfail_for_one_family_fails_the_lookup() -> None:
    """A answered but AAAA SERVFAIL: a partial answer could hide pods, so it is a failure."""

    def half(query: dns.message.Message) -> dns.message.Message:
        response = zone({("svc.zone", "A"): (30, ["10.0.0.1"])})(query)
        assert response is not None
        if query.question[0].rdtype == dns.rdatatype.AAAA:
            response.set_rcode(dns.rcode.SERVFAIL)
        return response

    async def test() -> None:
        async with fake_dns(half) as server:
            discovery = DnsDiscovery("svc.zone", nameservers=[server.address])
            with pytest.raises(DiscoveryError) as raised:
                await discovery.lookup()
            assert str(raised.value) == (
                f"DNS lookup of svc.zone AAAA failed: DNS server {server.address} answered "
                "SERVFAIL (it failed to resolve the name itself)"
            )

    run(test, seconds=TEST_TIMEOUT)


@pytest.mark.parametrize(
    ("failing", "query"),
    [
        ("_management._tcp.svc.zone", "_management._tcp.svc.zone SRV"),
        ("node2.zone", "node2.zone A/AAAA"),  # a target resolved after the SRV query
    ],
)
def test_srv_lookup_failures_name_the_failed_query(failing: str, query: str) -> None:
    """SERVFAIL for the SRV query, or for a target's own lookup, fails naming that query."""
    srv = "_management._tcp.svc.zone"
    answer = zone({(srv, "SRV"): (30, ["0 0 8558 node2.zone."])})

    def handle(request: dns.message.Message) -> dns.message.Message | None:
        response = answer(request)
        assert response is not None
        if request.question[0].name == dns.name.from_text(failing):
            response = dns.message.make_response(request)
            response.set_rcode(dns.rcode.SERVFAIL)
        return response

    async def test() -> None:
        async with fake_dns(handle) as server:
            discovery = DnsDiscovery(
                "svc.zone", port_name="management", nameservers=[server.address]
            )
            with pytest.raises(DiscoveryError) as raised:
                await discovery.lookup()
            assert str(raised.value) == (
                f"DNS lookup of {query} failed: DNS server {server.address} answered SERVFAIL "
                "(it failed to resolve the name itself)"
            )

    run(test, seconds=TEST_TIMEOUT)


def test_a_server_that_never_answers_times_out_with_a_clear_reason() -> None:
    """No answer within ``timeout``: DiscoveryError naming server and timeout, before the node's."""
    # Virtual time that jumps while everything waits: the silent server never sends anything,
    # so the lookup's deadlines are what ends the wait, at exact times.
    clock = trio.testing.MockClock(autojump_threshold=0)

    async def test() -> None:
        with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
            await silent.bind(("127.0.0.1", 0))  # receives the queries, never answers
            address = f"127.0.0.1:{silent.getsockname()[1]}"
            discovery = DnsDiscovery("svc.zone", nameservers=[address], timeout=0.5)
            started = trio.current_time()
            with pytest.raises(DiscoveryError) as raised:
                await discovery.lookup()
            assert str(raised.value) == (
                f"DNS lookup of svc.zone A/AAAA failed: no answer within 0.5 s from DNS server "
                f"{address} (is a DNS server listening there, and reachable?)"
            )
            # It gives up a little before its timeout, so that the node's own cancel (at
            # discovery_timeout) does not replace this message by a bare "timed out".
            assert trio.current_time() - started == pytest.approx(0.45)

    run(test, seconds=5, clock=clock)


def test_a_port_nothing_listens_on_fails_at_once() -> None:
    """ICMP port unreachable is reported at once as a refused connection, not as a timeout."""
    address = f"127.0.0.1:{closed_udp_port()}"

    async def test() -> None:
        discovery = DnsDiscovery("svc.zone", nameservers=[address], timeout=10)
        with trio.fail_after(5), pytest.raises(DiscoveryError) as raised:
            await discovery.lookup()
        assert str(raised.value) == (
            f"DNS lookup of svc.zone A/AAAA failed: DNS server {address} refused the connection "
            "(nothing listens on that port)"
        )

    run(test, seconds=TEST_TIMEOUT)


@pytest.mark.parametrize(
    ("callers_deadline", "timeout", "gives_up_after", "seconds"),
    [
        (3.0, None, 2.9, "3"),  # the node's deadline alone: the rule, no second setting
        (10.0, 1.0, 0.9, "1"),  # a timeout of its own only shortens the lookup
        (0.5, 10.0, 0.45, "0.5"),  # and never outlasts the caller's deadline
    ],
)
def test_a_lookup_ends_just_before_the_callers_deadline_with_its_own_error(
    callers_deadline: float, timeout: float | None, gives_up_after: float, seconds: str
) -> None:
    """Under the node's deadline the lookup fails just before it, naming the server."""
    clock = trio.testing.MockClock(autojump_threshold=0)

    async def test() -> None:
        with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
            await silent.bind(("127.0.0.1", 0))  # receives the queries, never answers
            address = f"127.0.0.1:{silent.getsockname()[1]}"
            discovery = DnsDiscovery("svc.zone", nameservers=[address], timeout=timeout)
            started = trio.current_time()
            # As the node runs a lookup: under a cancel scope at its discovery_timeout.
            with trio.move_on_after(callers_deadline) as node_scope:
                with pytest.raises(DiscoveryError) as raised:
                    await discovery.lookup()
            assert not node_scope.cancelled_caught
            assert str(raised.value) == (
                f"DNS lookup of svc.zone A/AAAA failed: no answer within {seconds} s from DNS "
                f"server {address} (is a DNS server listening there, and reachable?)"
            )
            assert trio.current_time() - started == pytest.approx(gives_up_after)

    run(test, seconds=20, clock=clock)


def test_the_backend_delegates_every_method_of_dnspythons_backend_interface() -> None:
    """Fails loudly when dnspython's public backend interface gains or renames a method."""
    interface = {
        name
        for name, value in vars(dns.asyncbackend.Backend).items()
        if callable(value) and not name.startswith("_")
    }
    assert "datagram_connection_required" in interface  # the hook we depend on
    assert sorted(interface - set(vars(_ConnectedUdpBackend))) == []
    backend = _ConnectedUdpBackend()
    assert backend.datagram_connection_required() is True
    assert backend.name() == "trio"


def test_the_next_server_is_asked_when_one_fails() -> None:
    """With several nameservers, one that is down does not fail the lookup."""
    with Dnsmasq(host_records=HEADLESS) as server:
        down = f"127.0.0.1:{closed_udp_port()}"
        discovery = DnsDiscovery("svc.zone", nameservers=[down, server.address], port=8558)

        async def test() -> None:
            assert len(await discovery.lookup()) == 4

        run(test, seconds=TEST_TIMEOUT)


def test_a_cname_loop_is_a_clear_error() -> None:
    """A CNAME loop in an answer does not crash the lookup: DiscoveryError says what it is."""

    def loop(query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        for owner, target in (("svc.zone.", "loop.zone."), ("loop.zone.", "svc.zone.")):
            response.answer.append(dns.rrset.from_text(owner, 30, "IN", "CNAME", target))
        return response

    async def test() -> None:
        async with fake_dns(loop) as server:
            discovery = DnsDiscovery("svc.zone", nameservers=[server.address])
            with pytest.raises(DiscoveryError) as raised:
                await discovery.lookup()
            assert str(raised.value) == (
                f"DNS lookup of svc.zone A/AAAA failed: DNS server {server.address} answered "
                "with a CNAME chain that is too long or loops"
            )

    run(test, seconds=TEST_TIMEOUT)


# --- caching for the TTL ------------------------------------------------------------------------


def test_answers_are_cached_for_their_ttl_unless_refreshed() -> None:
    """Within the TTL a lookup asks nothing and returns the old answer; after it, or on refresh."""
    clock = trio.testing.MockClock(rate=1.0)  # real time, plus jump() over the TTL
    with Dnsmasq(local_ttl=10, host_records={"svc.zone": ["10.0.0.1"]}) as server:
        discovery = DnsDiscovery("svc.zone", nameservers=[server.address])

        async def set_hosts(addresses: list[str]) -> None:
            await trio.to_thread.run_sync(server.set_hosts, "pods", {"svc.zone": addresses})

        async def queries() -> int:
            logged = await trio.to_thread.run_sync(server.logged_queries)
            return sum(name == "svc.zone" for _, name in logged)

        async def test() -> None:
            assert await discovery.lookup() == [C("10.0.0.1")]
            assert await queries() == 2  # A and AAAA
            await set_hosts(["10.0.0.2"])
            asked = await queries()
            assert await discovery.lookup() == [C("10.0.0.1")]  # cached: the old answer
            assert await queries() == asked
            clock.jump(10)
            assert await discovery.lookup() == [C("10.0.0.1"), C("10.0.0.2")]
            assert await queries() == asked + 2
            await set_hosts(["10.0.0.3"])
            asked = await queries()
            discovery.refresh()
            assert await discovery.lookup() == [C("10.0.0.1"), C("10.0.0.3")]
            assert await queries() == asked + 2

        run(test, seconds=40, clock=clock)


def test_the_smallest_ttl_of_the_records_used_bounds_the_cache() -> None:
    """A records for 30 s and AAAA for 10 s: the result is cached for 10 s."""
    clock = trio.testing.MockClock(rate=1.0)
    records = {("svc.zone", "A"): (30, ["10.0.0.1"]), ("svc.zone", "AAAA"): (10, ["fd00::1"])}

    async def test() -> None:
        async with fake_dns(zone(records)) as server:
            discovery = DnsDiscovery("svc.zone", nameservers=[server.address])
            assert await discovery.lookup() == [C("10.0.0.1"), C("fd00::1")]
            clock.jump(9)
            assert await discovery.lookup() == [C("10.0.0.1"), C("fd00::1")]
            assert len(server.queries) == 2
            clock.jump(1)
            assert await discovery.lookup() == [C("10.0.0.1"), C("fd00::1")]
            assert len(server.queries) == 4

    run(test, seconds=40, clock=clock)


def test_nxdomain_is_cached_for_the_negative_ttl_of_the_soa() -> None:
    """NXDOMAIN with an SOA is cached for min(SOA TTL, MINIMUM) (RFC 2308), then asked again."""
    clock = trio.testing.MockClock(rate=1.0)

    async def test() -> None:
        async with fake_dns(zone({}, negative_ttl=5)) as server:
            discovery = DnsDiscovery("svc.zone", nameservers=[server.address])
            assert await discovery.lookup() == []
            assert await discovery.lookup() == []
            assert sorted(server.queries) == [("A", "svc.zone"), ("AAAA", "svc.zone")]
            clock.jump(5)
            assert await discovery.lookup() == []
            assert len(server.queries) == 4

    run(test, seconds=30, clock=clock)


# --- configuration ------------------------------------------------------------------------------


def test_nameservers_accept_ip_ip_port_and_bracketed_ipv6() -> None:
    """Nameservers are IP, IP:PORT or [IPv6]:PORT; the port defaults to 53."""
    discovery = DnsDiscovery(
        "svc.zone", nameservers=["10.96.0.10", "127.0.0.1:5353", "[fd00::53]:5353", "fd00::54"]
    )
    assert discovery.nameservers == (
        "10.96.0.10:53",
        "127.0.0.1:5353",
        "[fd00::53]:5353",
        "[fd00::54]:53",
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("dns.local", "DNS server 'dns.local' is not an IP address"),
        ("", "DNS server '' is not an IP address"),
        ("10.0.0.1:", "DNS server '10.0.0.1:': port '' is not a number in 1..65535"),
        ("10.0.0.1:x", "DNS server '10.0.0.1:x': port 'x' is not a number in 1..65535"),
        ("10.0.0.1:0", "DNS server '10.0.0.1:0': port '0' is not a number in 1..65535"),
        ("10.0.0.1:65536", "DNS server '10.0.0.1:65536': port '65536' is not a number"),
        ("[fd00::53", "DNS server '[fd00::53' is malformed"),
        ("[fd00::53]53", "DNS server '[fd00::53]53' is malformed"),
        ("10.0.0.256", "DNS server '10.0.0.256' is not an IP address"),
    ],
)
def test_bad_nameservers_are_usage_errors(value: str, message: str) -> None:
    """A nameserver that is not IP, IP:PORT or [IPv6]:PORT is a UsageError naming it."""
    with pytest.raises(UsageError) as raised:
        DnsDiscovery("svc.zone", nameservers=["127.0.0.1", value])
    assert str(raised.value).startswith(message)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": ""}, "DNS discovery needs a DNS name, got ''"),
        ({"name": "10.0.0.1"}, "DNS discovery needs a DNS name, got the address '10.0.0.1'"),
        ({"name": "a..zone"}, "DNS discovery: 'a..zone' is not a valid DNS name"),
        ({"port_name": "_management"}, "DNS discovery: port_name '_management' must be one"),
        ({"port_name": "a.b"}, "DNS discovery: port_name 'a.b' must be one DNS label"),
        ({"port_name": "m", "protocol": ""}, "DNS discovery: protocol '' must be one DNS label"),
        ({"port_name": "m", "port": 8558}, "DNS discovery of svc.zone: give either port_name"),
        ({"port": 0}, "DNS discovery: port must be an integer in 1..65535, got 0"),
        ({"timeout": 0}, "DNS discovery: timeout must be a positive number, got 0"),
        ({"nameservers": "127.0.0.1"}, "DNS discovery: nameservers must be a list of strings"),
    ],
)
def test_bad_settings_are_usage_errors(kwargs: dict[str, object], message: str) -> None:
    """Every other malformed setting is a UsageError that says what is wrong."""
    arguments: dict[str, object] = {"name": "svc.zone", "nameservers": ["127.0.0.1"], **kwargs}
    with pytest.raises(UsageError) as raised:
        DnsDiscovery(**arguments)  # type: ignore[arg-type]
    assert str(raised.value).startswith(message)
