"""End to end, in one process: real nodes with real sockets on 127.0.0.x.

Policy: real time (these tests use the kernel's TCP), so every test has an absolute
``trio.fail_after``; assertions are about outcomes and counts. The one timing assertion the
node issue asks for (watchers join within 0.5 s of the self-join at a 10 s probe interval) has
a margin of two orders of magnitude over the push latency it checks, and at that interval a
poll would take seconds.
"""

from __future__ import annotations

from contextlib import AsyncExitStack

import httpx
import trio

from bootstrap import ContactPoint, JoinSeedNodes, JoinSelf, Settings
from bootstrap.discovery import StaticDiscovery
from bootstrap.node import Node, open_node
from tests.helpers.ports import free_port
from tests.helpers.running import run

from .loopback import MutableDiscovery, loopback_points

TEST_TIMEOUT = 60.0  # real time and real sockets
FAST = Settings(stable_margin=1.0, probe_interval=0.5, probe_backoff_max=2.0)


async def start_nodes(
    stack: AsyncExitStack, points: list[ContactPoint], discovery: object, **kwargs: object
) -> list[Node]:
    return [
        await stack.enter_async_context(
            open_node(contact_point=point, discovery=discovery, **kwargs)  # type: ignore[arg-type]
        )
        for point in points
    ]


async def wait_all_joined(nodes: list[Node]) -> None:
    for node in nodes:
        await node.wait_joined()


def test_five_nodes_form_one_cluster() -> None:
    """Five nodes on loopback: exactly one forms, the other four join it."""

    async def main() -> None:
        points = loopback_points(5, free_port())
        async with AsyncExitStack() as stack:
            nodes = await start_nodes(
                stack,
                points,
                StaticDiscovery(points),
                settings=attrs_evolve(FAST, required_contact_points=5),
            )
            await wait_all_joined(nodes)
            decisions = [node.decision for node in nodes]
            assert decisions.count(JoinSelf()) == 1
            assert decisions[0] == JoinSelf()  # the lowest contact point formed
            for decision in decisions[1:]:
                assert isinstance(decision, JoinSeedNodes)
                assert decision.seed_nodes[0] == nodes[0].self_node

    run(main, seconds=TEST_TIMEOUT)


def attrs_evolve(settings: Settings, **changes: object) -> Settings:
    import attrs

    return attrs.evolve(settings, **changes)


def test_watch_joins_within_half_a_second_at_a_ten_second_interval() -> None:
    """With watches, the others learn of the new cluster by push, not at the next poll."""

    async def main() -> None:
        points = loopback_points(5, free_port(), first=11)
        settings = Settings(stable_margin=1.0, probe_interval=10.0, probe_backoff_max=15.0)
        async with AsyncExitStack() as stack:
            nodes = await start_nodes(
                stack, points, StaticDiscovery(points), settings=settings, transport="watch"
            )
            await wait_all_joined(nodes)
            formed = nodes[0].statistics().joined_at
            assert formed is not None
            for node in nodes[1:]:
                joined = node.statistics().joined_at
                assert joined is not None
                assert joined - formed < 0.5

    run(main, seconds=TEST_TIMEOUT)


def test_node_started_after_formation_joins() -> None:
    """A node that starts after the cluster formed joins it (and never forms its own)."""

    async def main() -> None:
        points = loopback_points(4, free_port(), first=21)
        discovery = MutableDiscovery(points[:3])
        async with AsyncExitStack() as stack:
            nodes = await start_nodes(stack, points[:3], discovery, settings=FAST)
            await wait_all_joined(nodes)
            discovery.contact_points = list(points)
            late = await stack.enter_async_context(
                open_node(contact_point=points[3], discovery=discovery, settings=FAST)
            )
            await late.wait_joined()
            assert isinstance(late.decision, JoinSeedNodes)
            assert nodes[0].self_node in late.decision.seed_nodes

    run(main, seconds=TEST_TIMEOUT)


def test_lowest_node_killed_before_forming_lets_the_next_form() -> None:
    """The lowest node stops before forming; once discovery drops it the next lowest forms."""

    async def main() -> None:
        points = loopback_points(4, free_port(), first=31)
        discovery = MutableDiscovery(points)
        settings = attrs_evolve(FAST, stable_margin=3.0, required_contact_points=3)
        lowest_scope = trio.CancelScope()

        async def run_lowest(*, task_status: trio.TaskStatus[Node]) -> None:
            with lowest_scope:
                async with open_node(
                    contact_point=points[0], discovery=discovery, settings=settings
                ) as node:
                    task_status.started(node)
                    await trio.sleep_forever()

        async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
            lowest: Node = await nursery.start(run_lowest)
            others = await start_nodes(stack, points[1:], discovery, settings=settings)
            await trio.sleep(0.5)
            assert lowest.decision is None
            lowest_scope.cancel()  # killed before the stable margin let it form
            # Discovery learns of it a moment later.
            await trio.sleep(0.5)
            discovery.contact_points = points[1:]
            await wait_all_joined(others)
            assert [n.decision == JoinSelf() for n in others] == [True, False, False]

    run(main, seconds=TEST_TIMEOUT)


def test_ready_flips_to_200_only_after_joining() -> None:
    """/ready answers 503 before the node joined and 200 after; /alive is 200 throughout."""

    async def main() -> None:
        points = loopback_points(2, free_port(), first=41)
        settings = attrs_evolve(FAST, stable_margin=2.0)
        async with AsyncExitStack() as stack:
            nodes = await start_nodes(stack, points, StaticDiscovery(points), settings=settings)
            async with httpx.AsyncClient() as client:
                base = f"http://{points[1]}"
                assert (await client.get(f"{base}/ready")).status_code == 503
                assert (await client.get(f"{base}/alive")).status_code == 200
                await wait_all_joined(nodes)
                assert (await client.get(f"{base}/ready")).status_code == 200
                status = (await client.get(f"{base}/bootstrap/status")).json()
                assert status["joined"] is True
                assert status["decision"]["kind"] == "join-seed-nodes"

    run(main, seconds=TEST_TIMEOUT)


def test_port_in_use_and_errors_in_the_block_come_out_unwrapped() -> None:
    """A bind failure raises OSError itself, and the caller's own exception stays itself."""
    import errno
    import gc
    import socket
    import warnings

    import pytest

    async def main() -> None:
        point = loopback_points(1, free_port(), first=101)[0]
        with socket.socket() as taken:
            taken.bind((point.host, point.port or 0))
            taken.listen()
            with pytest.raises(OSError, match="in use") as info:
                async with open_node(contact_point=point, discovery=StaticDiscovery([point])):
                    pass  # pragma: no cover - never reached
            assert info.value.errno == errno.EADDRINUSE
        with pytest.raises(KeyError):
            async with open_node(contact_point=point, discovery=StaticDiscovery([point])):
                raise KeyError("mine")

    # hypercorn 0.18 does not close the socket whose bind failed; collect it here, where its
    # ResourceWarning is expected, rather than in whichever test the garbage collector hits.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        run(main, seconds=TEST_TIMEOUT)
        gc.collect()


class FlakyMembership:
    """Refuses the first join, then behaves like LocalMembership."""

    def __init__(self, node: str) -> None:
        from bootstrap.membership import LocalMembership

        self.inner = LocalMembership(node)
        self.attempts = 0

    async def join_self(self) -> None:
        self.attempts += 1
        if self.attempts == 1:
            raise ConnectionError("seed refused the join")
        await self.inner.join_self()

    async def join(self, seed_nodes: object) -> None:
        self.attempts += 1
        if self.attempts == 1:
            raise ConnectionError("seed refused the join")
        await self.inner.join(seed_nodes)  # type: ignore[arg-type]

    def members(self) -> object:
        return self.inner.members()


def test_a_failed_join_is_retried_and_the_cluster_still_forms() -> None:
    """A membership join that raises becomes JoinFailed; the node retries and joins."""

    async def main() -> None:
        points = loopback_points(2, free_port(), first=111)
        memberships = [FlakyMembership(f"http://{p}") for p in points]
        async with AsyncExitStack() as stack:
            nodes = [
                await stack.enter_async_context(
                    open_node(
                        contact_point=point,
                        discovery=StaticDiscovery(points),
                        settings=FAST,
                        membership=membership,  # type: ignore[arg-type]
                    )
                )
                for point, membership in zip(points, memberships, strict=True)
            ]
            await wait_all_joined(nodes)
            assert [m.attempts for m in memberships] == [2, 2]
            assert nodes[0].decision == JoinSelf()

    run(main, seconds=TEST_TIMEOUT)


class HangingDiscovery:
    """A discovery backend that never answers."""

    async def lookup(self) -> list[ContactPoint]:
        await trio.sleep_forever()
        raise AssertionError("unreachable")  # pragma: no cover


def test_a_hanging_lookup_is_cancelled_after_the_discovery_timeout() -> None:
    """The driver cancels a lookup after discovery_timeout and reports why."""

    async def main() -> None:
        point = loopback_points(1, free_port(), first=121)[0]
        settings = attrs_evolve(FAST, discovery_timeout=0.3)
        async with open_node(
            contact_point=point, discovery=HangingDiscovery(), settings=settings
        ) as node:
            await trio.sleep(0.6)
            assert node.status.reason == (
                "discovery failed (lookup timed out after 0.3 s); joining an existing cluster "
                "still works, but no new cluster is formed until a lookup succeeds"
            )
            # The next lookup waits out the backoff (2 x discovery_interval, jittered).
            assert node.statistics().lookups == 1

    run(main, seconds=TEST_TIMEOUT)


def test_a_stalled_cluster_says_everywhere_what_the_founder_waits_for() -> None:
    """Four of five up, five required: the lowest waits, and the others' status quotes it.

    The others probe only the probe_fanout lowest (DESIGN section 9), so the founder's own
    words, carried in its document's ``waiting``, are all they know of its progress.
    """

    async def main() -> None:
        points = loopback_points(5, free_port(), first=91)
        settings = attrs_evolve(FAST, required_contact_points=5, probe_fanout=2)
        async with AsyncExitStack() as stack:
            nodes = await start_nodes(stack, points[:4], StaticDiscovery(points), settings=settings)
            founder, others = nodes[0], nodes[1:]
            expected = (
                f"expecting {founder.contact_point} to form the cluster; it reports: "
                "confirmed 4 of 5 required contact points"
            )
            # Once the founder heard from all four, and they from it. (A status has no event
            # for "reason changed"; polling it is what an operator does too.)
            with trio.fail_after(20):
                while not all(node.status.reason == expected for node in others):  # noqa: ASYNC110
                    await trio.sleep(0.2)
            reported = founder.machine.founder_waiting
            assert reported is not None
            assert reported.startswith("confirmed 4 of 5 required contact points")
            async with httpx.AsyncClient() as client:
                served = await client.get(f"http://{founder.contact_point}/bootstrap/seed-nodes")
            assert served.json()["waiting"].startswith("confirmed 4 of 5")
            for node in others:
                assert node.machine.founder_waiting is None
                assert len(node.machine.probed_contact_points) <= 3

    run(main, seconds=TEST_TIMEOUT)
