"""End to end through a real DNS server: nodes that know each other only from dnsmasq's answers.

dnsmasq (Debian's dnsmasq-base, started by the test on 127.0.0.1) serves the name of the
service; records are added and removed through its ``--hostsdir`` while the nodes run, as
pods appear in and leave a headless Service. Real time and real sockets, so every test has an
absolute ``trio.fail_after``; assertions are about outcomes and counts.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AsyncExitStack

import trio

from bootstrap import ContactPoint, JoinSeedNodes, JoinSelf, Settings
from bootstrap.discovery import DnsDiscovery
from bootstrap.node import Node, open_node
from tests.helpers.ports import free_port
from tests.helpers.running import run

from ..dnsmasq import Dnsmasq, require_dnsmasq

SERVICE = "my-service.zone"
TEST_TIMEOUT = 60.0  # real time: lookups, record changes and formation take seconds


def settings(port: int, **changes: object) -> Settings:
    # Lookups every 0.2 s and a TTL of 1 s: a record change reaches every node within ~1.2 s.
    base: dict[str, object] = {
        "fallback_port": port,
        "discovery_interval": 0.2,
        "discovery_backoff_max": 1.0,
        "stable_margin": 1.5,
        "probe_interval": 0.5,
        "probe_backoff_max": 1.0,
    }
    return Settings(**{**base, **changes})  # type: ignore[arg-type]


async def add_record(dnsmasq: Dnsmasq, index: int, address: str) -> None:
    # set_hosts waits (blocking) until dnsmasq answers the change: keep the nodes running.
    await trio.to_thread.run_sync(dnsmasq.set_hosts, f"pod-{index}", {SERVICE: [address]})


async def wait_until(condition: Callable[[], bool]) -> None:
    # The prober has no event for "peer forgotten"; polling its counters is what a user can do.
    while not condition():  # noqa: ASYNC110
        await trio.sleep(0.02)


async def open_dns_node(
    stack: AsyncExitStack, dnsmasq: Dnsmasq, address: str, node_settings: Settings
) -> Node:
    discovery = DnsDiscovery(SERVICE, nameservers=[dnsmasq.address], timeout=1.0)
    return await stack.enter_async_context(
        open_node(
            contact_point=ContactPoint(address, node_settings.fallback_port),
            discovery=discovery,
            settings=node_settings,
        )
    )


def test_five_nodes_form_one_cluster_from_records_added_while_they_run() -> None:
    """Five nodes find each other only through DNS, records arriving one by one: one cluster."""
    require_dnsmasq()
    port = free_port()
    addresses = [f"127.0.0.{i}" for i in range(1, 6)]
    node_settings = settings(port, required_contact_points=5)

    async def main() -> None:
        with Dnsmasq(local_ttl=1) as dnsmasq:
            async with AsyncExitStack() as stack:
                nodes = []
                # Start in reverse order (the lowest last), each published in DNS as it starts.
                for index, address in reversed(list(enumerate(addresses))):
                    nodes.append(await open_dns_node(stack, dnsmasq, address, node_settings))
                    await add_record(dnsmasq, index, address)
                    await trio.sleep(0.3)
                for node in nodes:
                    await node.wait_joined()
                by_address = {node.contact_point.host: node for node in nodes}
                assert by_address["127.0.0.1"].decision == JoinSelf()
                decisions = [node.decision for node in nodes]
                assert decisions.count(JoinSelf()) == 1
                for address in addresses[1:]:
                    decision = by_address[address].decision
                    assert isinstance(decision, JoinSeedNodes)
                    assert decision.seed_nodes[0] == by_address["127.0.0.1"].self_node
                # Every node saw exactly the five records, no more.
                for node in nodes:
                    seen = {point.contact_point for point in node.status.contact_points}
                    assert seen == {ContactPoint(a, port) for a in addresses}

    run(main, seconds=TEST_TIMEOUT)


def test_a_node_removed_from_dns_is_no_longer_probed() -> None:
    """A contact point that leaves DNS gets StopProbing: its prober ends and formation goes on."""
    require_dnsmasq()
    port = free_port()
    running = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    gone = "127.0.0.4"  # in DNS, but nothing listens: every discovered peer must answer
    node_settings = settings(port, required_contact_points=3)

    async def main() -> None:
        with Dnsmasq(local_ttl=1) as dnsmasq:
            for index, address in enumerate([*running, gone]):
                await add_record(dnsmasq, index, address)
            async with AsyncExitStack() as stack:
                nodes = [await open_dns_node(stack, dnsmasq, a, node_settings) for a in running]
                lowest = nodes[0]
                gone_point = ContactPoint(gone, port)

                # While the silent contact point is discovered, nobody may form.
                await wait_until(lambda: lowest.prober.statistics().peers == 3)
                await trio.sleep(2 * node_settings.stable_margin)
                assert all(node.decision is None for node in nodes)
                assert "127.0.0.4" in lowest.status.reason
                assert lowest.prober.statistics().peers == 3

                await trio.to_thread.run_sync(dnsmasq.remove_hosts, "pod-3")
                # Within a TTL and a lookup the machine stops probing it: the prober forgets
                # the peer before the stable margin that the change restarted lets anyone form.
                await wait_until(lambda: lowest.prober.statistics().peers == 2)
                assert lowest.decision is None
                for node in nodes:
                    await node.wait_joined()
                assert [node.decision for node in nodes].count(JoinSelf()) == 1
                for node in nodes:
                    assert gone_point not in {p.contact_point for p in node.status.contact_points}

    run(main, seconds=TEST_TIMEOUT)
