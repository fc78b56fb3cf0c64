"""LocalMembership, the advertised seed nodes, and static discovery."""

from __future__ import annotations

import pytest

from bootstrap import ContactPoint, Member, UsageError
from bootstrap.discovery import Discovery, StaticDiscovery
from bootstrap.membership import LocalMembership, Membership, advertised_seed_nodes
from tests.helpers.running import run


def test_local_membership_join_self_advertises_itself() -> None:
    """After join_self the only member is this node."""
    membership = LocalMembership("n1")
    assert membership.members() == ()
    run(membership.join_self)
    assert membership.members() == (Member("n1"),)
    assert membership.joined_via == ()
    assert isinstance(membership, Membership)


def test_local_membership_join_advertises_seeds_and_itself() -> None:
    """After join(seeds) the members are the seeds and this node, sorted."""
    membership = LocalMembership("n3")
    run(lambda: membership.join(["n2", "n1"]))
    assert [m.node for m in membership.members()] == ["n1", "n2", "n3"]
    assert membership.joined_via == ("n2", "n1")


def test_advertised_seed_nodes_filters_statuses_sorts_and_caps() -> None:
    """Only Up, WeaklyUp and Joining members are advertised, sorted, at most max_seed_nodes."""
    members = [
        Member("d", status="Up"),
        Member("a", status="Joining"),
        Member("c", status="Leaving"),
        Member("b", status="WeaklyUp"),
        Member("e", status="Down"),
        Member("f", status="Up"),
    ]
    seeds = advertised_seed_nodes(members, self_node="d", max_seed_nodes=3)
    assert [m.node for m in seeds] == ["a", "b", "d"]


@pytest.mark.parametrize("status", ["Leaving", "Exiting", "Down"])
def test_a_departing_node_advertises_nothing(status: str) -> None:
    """While this node leaves, it advertises no seed nodes at all."""
    members = [Member("a"), Member("me", status=status)]
    assert advertised_seed_nodes(members, self_node="me", max_seed_nodes=5) == ()


def test_static_discovery_parses_and_returns_its_list() -> None:
    """StaticDiscovery accepts ContactPoints or strings and always returns them."""
    discovery = StaticDiscovery(["10.0.0.1:8558", ContactPoint("10.0.0.2", 8558), "host"])
    assert isinstance(discovery, Discovery)
    result = run(discovery.lookup)
    assert result == [
        ContactPoint("10.0.0.1", 8558),
        ContactPoint("10.0.0.2", 8558),
        ContactPoint("host"),
    ]


def test_static_discovery_refuses_bad_input() -> None:
    """An empty list or a malformed contact point is a clear error."""
    with pytest.raises(UsageError, match="at least one"):
        StaticDiscovery([])
    with pytest.raises(UsageError, match="port 'x' is not a number"):
        StaticDiscovery(["h:x"])
