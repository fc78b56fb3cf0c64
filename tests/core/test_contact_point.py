"""ContactPoint: canonical form, exact equality, the canonical order, parsing and filtering.

Includes the anchors' ordering vectors (host before port; address before hostname) and
hypothesis properties of the order (total, and the same whatever the input spelling).
"""

from __future__ import annotations

import ipaddress
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bootstrap import ContactPoint, UsageError, select_contact_points

C = ContactPoint


def test_order_host_before_port() -> None:
    """Anchor vector: the host decides first, the port only between equal hosts."""
    assert sorted([C("10.0.0.2", 1), C("10.0.0.1", 9), C("10.0.0.1", 2)]) == [
        C("10.0.0.1", 2),
        C("10.0.0.1", 9),
        C("10.0.0.2", 1),
    ]


def test_order_address_before_hostname() -> None:
    """Anchor vector: IP literals sort before hostnames, IPv4 before IPv6."""
    assert sorted([C("a.example", 1), C("::1", 1), C("10.0.0.1", 1)]) == [
        C("10.0.0.1", 1),
        C("::1", 1),
        C("a.example", 1),
    ]


def test_order_addresses_numerically_hostnames_case_insensitively() -> None:
    """10.0.0.9 < 10.0.0.10 (numeric, not textual); hostnames compare lower-cased."""
    assert C("10.0.0.9", 1) < C("10.0.0.10", 1)
    assert C("::2", 1) < C("::10", 1)
    assert C("Alpha", 1) < C("beta", 1)
    assert C("10.0.0.9", 1) <= C("10.0.0.9", 1)
    assert C("b", 1) >= C("a", 1) > C("::1", 1)


def test_comparison_with_other_types_is_not_supported() -> None:
    """Comparing with a string is a TypeError, never a silent textual comparison."""
    with pytest.raises(TypeError):
        _ = C("a", 1) < "a:1"  # type: ignore[operator]
    with pytest.raises(TypeError):
        _ = C("a", 1) >= "a:1"  # type: ignore[operator]
    with pytest.raises(TypeError):
        _ = C("a", 1) <= "a:1"  # type: ignore[operator]
    with pytest.raises(TypeError):
        _ = C("a", 1) > "a:1"  # type: ignore[operator]


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (C("[::1]", 8558), C("::1", 8558)),
        (C("0:0:0:0:0:0:0:1", 8558), C("::1", 8558)),
        (C("Node-A.Example.", 8558), C("node-a.example", 8558)),
        (C(" 10.0.0.1 ", 8558), C("10.0.0.1", 8558)),
    ],
)
def test_equality_is_exact_on_the_canonical_form(one: ContactPoint, other: ContactPoint) -> None:
    """Spellings of the same endpoint are equal and hash alike."""
    assert one == other
    assert hash(one) == hash(other)


def test_no_substring_or_prefix_equality() -> None:
    """10.0.0.1 is not 10.0.0.10; node-a is not node-a2; port 8558 is not 18558."""
    assert C("10.0.0.1", 8558) != C("10.0.0.10", 8558)
    assert C("node-a", 8558) != C("node-a2", 8558)
    assert C("10.0.0.1", 8558) != C("10.0.0.1", 18558)


def test_str_brackets_ipv6_and_omits_a_missing_port() -> None:
    """str() is host:port, [v6]:port, or the bare host when there is no port."""
    assert str(C("10.0.0.1", 8558)) == "10.0.0.1:8558"
    assert str(C("::1", 8558)) == "[::1]:8558"
    assert str(C("fe80::1")) == "[fe80::1]"
    assert str(C("Host.Example")) == "host.example"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.1:8558", C("10.0.0.1", 8558)),
        ("[::1]:80", C("::1", 80)),
        ("[::1]", C("::1")),
        ("::1", C("::1")),
        ("host", C("host")),
        ("HOST.example:1", C("host.example", 1)),
    ],
)
def test_parse(text: str, expected: ContactPoint) -> None:
    """parse() accepts host, host:port, [v6], [v6]:port and a bare IPv6 address."""
    assert ContactPoint.parse(text) == expected


def test_parse_applies_a_default_port() -> None:
    """A default port fills in only when the text has none."""
    assert ContactPoint.parse("h", default_port=1) == C("h", 1)
    assert ContactPoint.parse("h:2", default_port=1) == C("h", 2)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("h:", "port '' is not a number"),
        ("h:x", "port 'x' is not a number"),
        ("h:0", "1..65535"),
        ("h:65536", "1..65535"),
        ("[::1", "missing ']'"),
        ("[::1]x", "expected ':port'"),
        ("bad host", "neither an IP address nor a valid hostname"),
        ("a..b", "neither"),
        ("-a", "neither"),
        ("a" * 300, "neither"),
    ],
)
def test_parse_errors_say_what_is_wrong(text: str, message: str) -> None:
    """Malformed contact points raise UsageError naming the problem."""
    with pytest.raises(UsageError, match=message.replace("[", r"\[").replace("]", r"\]")):
        ContactPoint.parse(text)


@pytest.mark.parametrize("bad", [None, 8558, b"host"])
def test_non_string_input_is_refused(bad: object) -> None:
    """Only strings are contact point hosts or parse input."""
    with pytest.raises(UsageError, match="must be a string"):
        ContactPoint(bad)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="must be a string"):
        ContactPoint.parse(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("port", [True, 1.5, "80", -1])
def test_bad_ports_are_refused(port: object) -> None:
    """Ports are integers in 1..65535 (bool is not an integer here)."""
    with pytest.raises(UsageError, match="port"):
        ContactPoint("h", port)  # type: ignore[arg-type]


def test_is_ip() -> None:
    """is_ip tells IP literals from hostnames."""
    assert C("10.0.0.1").is_ip
    assert C("::1").is_ip
    assert not C("host").is_ip


# --- filtering -------------------------------------------------------------------------------


def select(*points: ContactPoint, filter_on_fallback_port: bool = True) -> tuple[ContactPoint, ...]:
    return select_contact_points(
        points, fallback_port=8558, filter_on_fallback_port=filter_on_fallback_port
    )


def test_fallback_port_is_applied() -> None:
    """Contact points discovered without a port get fallback_port."""
    assert select(C("10.0.0.2"), C("10.0.0.1")) == (C("10.0.0.1", 8558), C("10.0.0.2", 8558))


def test_filter_keeps_the_fallback_port_of_multi_port_hosts() -> None:
    """Anchor vector: a host with several ports keeps only its fallback-port entry."""
    assert select(C("a", 2552), C("a", 8558), C("b", 9999)) == (C("a", 8558), C("b", 9999))


def test_filter_drops_a_multi_port_host_without_the_fallback_port() -> None:
    """Anchor vector: several ports, none of them the fallback: the host is dropped."""
    assert select(C("a", 1), C("a", 2), C("b", 3)) == (C("b", 3),)


def test_without_filter_every_port_is_kept() -> None:
    """Anchor vector: with the filter off, every (host, port) stays."""
    assert select(C("a", 1), C("a", 8558), filter_on_fallback_port=False) == (
        C("a", 1),
        C("a", 8558),
    )


def test_filter_groups_by_canonical_host_not_raw_string() -> None:
    """'::1' and '[0::1]' are one host: grouped together, so the filter applies."""
    assert select(C("::1", 1), C("[0::1]", 8558)) == (C("::1", 8558),)
    assert select(C("Host", 1), C("host.", 8558)) == (C("host", 8558),)


def test_duplicates_collapse() -> None:
    """A contact point listed twice (or once without a port) counts once."""
    assert select(C("a"), C("a", 8558), C("A", 8558)) == (C("a", 8558),)


# --- properties ------------------------------------------------------------------------------

ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
hostnames = st.from_regex(r"\A[a-zA-Z]([a-zA-Z0-9-]{0,8}[a-z0-9])?(\.[a-z][a-z0-9]{0,5}){0,2}\Z")
contact_points = st.builds(
    ContactPoint, st.one_of(ipv4, ipv6, hostnames), st.none() | st.integers(1, 65535)
)


@given(st.lists(contact_points, max_size=12), st.randoms(use_true_random=False))
def test_order_is_independent_of_input_order(
    points: list[ContactPoint], rnd: random.Random
) -> None:
    """Sorting any permutation gives the same list: every node sees the same lowest."""
    shuffled = list(points)
    rnd.shuffle(shuffled)
    assert sorted(shuffled) == sorted(points)


@given(contact_points, contact_points)
def test_order_is_total_and_consistent_with_equality(a: ContactPoint, b: ContactPoint) -> None:
    """Exactly one of a < b, a == b, a > b holds."""
    assert [a < b, a == b, a > b].count(True) == 1


@given(st.ip_addresses(), st.integers(1, 65535))
def test_any_ip_spelling_round_trips(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int
) -> None:
    """str() then parse() gives the same contact point, for every IPv4 and IPv6 address."""
    point = C(str(address), port)
    assert ContactPoint.parse(str(point)) == point
    assert C(address.exploded, port) == point
