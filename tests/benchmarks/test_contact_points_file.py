"""The benchmarks' file discovery for our nodes: the format the Pekko node reads, re-read at every
lookup, and a whole-lookup failure (never a partial answer) on a bad file."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from benchmarks.contact_points_file import ContactPointsFileDiscovery, parse_contact_points
from benchmarks.pekko.driver import write_contact_points
from bootstrap.core import ContactPoint, Settings
from bootstrap.discovery import Discovery, DiscoveryError


def test_parse_skips_blank_lines_and_comments() -> None:
    text = "# the registry\n10.0.0.1:8558\n\n  10.0.0.2:8558  # second\n[::1]:9000\n"
    assert parse_contact_points(text, source="f") == [
        ContactPoint("10.0.0.1", 8558),
        ContactPoint("10.0.0.2", 8558),
        ContactPoint("[::1]", 9000),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10.0.0.1:8558\n10.0.0.2\n", "f, line 2: '10.0.0.2' has no port"),
        ("10.0.0.1:http\n", "f, line 1: '10.0.0.1:http' is not host:port"),
    ],
)
def test_a_bad_line_fails_the_whole_lookup(text: str, message: str) -> None:
    with pytest.raises(DiscoveryError, match=message):
        parse_contact_points(text, source="f")


def test_each_lookup_reads_the_file_as_it_is_then(tmp_path: Path) -> None:
    path = tmp_path / "contact-points"
    discovery = ContactPointsFileDiscovery(path)
    assert isinstance(discovery, Discovery)

    async def main() -> None:
        with pytest.raises(DiscoveryError, match="cannot read the contact points file"):
            await discovery.lookup()
        write_contact_points(path, ["127.0.0.2:8558"])
        assert await discovery.lookup() == [ContactPoint("127.0.0.2", 8558)]
        write_contact_points(path, ["127.0.0.2:8558", "127.0.0.3:8558"])
        assert await discovery.lookup() == [
            ContactPoint("127.0.0.2", 8558),
            ContactPoint("127.0.0.3", 8558),
        ]
        write_contact_points(path, [])
        assert await discovery.lookup() == []

    trio.run(main)


def test_the_churn_node_reads_its_peers_from_a_file_under_either_rule(tmp_path: Path) -> None:
    """``churn_node --peers-file F --formation R``: the node's discovery is that file, and its
    settings carry the rule (the real split-brain runs compare both rules on the same views)."""
    import argparse

    from benchmarks.churn_node import build_node
    from bootstrap.node import Node

    path = tmp_path / "contact-points"
    write_contact_points(path, ["127.0.0.2:8558", "127.0.0.3:8558"])
    for formation in ("promise", "lowest-address"):
        args = argparse.Namespace(
            strategy="ours-poll",
            address="127.0.0.2",
            port=8558,
            peers=None,
            peers_file=path,
            required=2,
            probe_interval=1.0,
            stable_margin=0.5,
            formation=formation,
        )
        node = build_node(args)
        assert isinstance(node, Node)
        assert node.settings.formation == formation
        assert node.settings.stable_margin == 0.5
        discovery = node._discovery
        assert isinstance(discovery, ContactPointsFileDiscovery)
        assert trio.run(discovery.lookup) == [
            ContactPoint("127.0.0.2", 8558),
            ContactPoint("127.0.0.3", 8558),
        ]


def test_the_churn_node_strategies_set_transport_and_topology() -> None:
    """``ours-mesh`` is ``ours-watch`` with the full mesh (probe_fanout None); the others keep the
    default topology of DESIGN section 9."""
    import argparse

    from benchmarks.churn_node import build_node
    from bootstrap.node import Node

    expected = {
        "ours-watch": ("watch", Settings().probe_fanout),
        "ours-poll": ("poll", Settings().probe_fanout),
        "ours-mesh": ("watch", None),
    }
    for strategy, (transport, fanout) in expected.items():
        args = argparse.Namespace(
            strategy=strategy,
            address="127.0.0.2",
            port=8558,
            peers="127.0.0.2:8558,127.0.0.3:8558",
            peers_file=None,
            required=2,
            probe_interval=1.0,
            stable_margin=0.5,
            formation="promise",
        )
        node = build_node(args)
        assert isinstance(node, Node)
        assert (node.prober.transport, node.settings.probe_fanout) == (transport, fanout), strategy
