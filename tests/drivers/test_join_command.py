"""The ``--join-command`` membership: a real child process per join, under trio.

Policy: each test runs a small ``sh -c`` script as the command and asserts what the membership
says (joined or :class:`JoinCommandFailed`, its members, its failure) and what the script saw
or suffered (files it wrote, signals it got). Every test is bounded by ``run``'s deadline.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path

import pytest
import trio

from bootstrap.join_command import (
    READY_FD_VARIABLE,
    JoinCommandFailed,
    describe_exit,
    open_command_membership,
)
from tests.helpers.processes import running
from tests.helpers.running import run

SELF = "etcd://10.0.0.1:2379,2380"


def sh(script: str) -> list[str]:
    return ["sh", "-c", script]


def test_ready_on_the_descriptor_joins_while_the_command_keepsrunning(tmp_path: Path) -> None:
    """READY on $BOOTSTRAP_READY_FD is the join; the command (the service) runs on, and gets
    SIGTERM when the membership closes; it saw the decision and the seed nodes."""
    seen, stopped = tmp_path / "seen", tmp_path / "stopped"
    script = (
        f'echo "$BOOTSTRAP_DECISION $BOOTSTRAP_SEED_NODES $BOOTSTRAP_SELF_NODE" > {seen}; '
        f"trap 'echo TERM > {stopped}; exit 0' TERM; "
        f'echo READY > "/dev/fd/${READY_FD_VARIABLE}"; while :; do sleep 0.05; done'
    )

    async def main() -> None:
        async with open_command_membership(sh(script), self_node=SELF) as membership:
            assert membership.members() == ()
            await membership.join(["etcd://10.0.0.2:2379,2380", "etcd://10.0.0.3:2379,2380"])
            assert [m.node for m in membership.members()] == sorted(
                [SELF, "etcd://10.0.0.2:2379,2380", "etcd://10.0.0.3:2379,2380"]
            )
            assert membership.failure is None
            assert not stopped.exists()  # still running after the join

    run(main)
    assert seen.read_text().split() == [
        "join-seed-nodes",
        "etcd://10.0.0.2:2379,2380,etcd://10.0.0.3:2379,2380",
        SELF,
    ]
    assert stopped.read_text().strip() == "TERM"


def test_exit_zero_is_ready_and_stays_so(tmp_path: Path) -> None:
    """A command that does its work and exits 0 has joined; its exit is no failure."""

    async def main() -> None:
        async with open_command_membership(sh("exit 0"), self_node=SELF) as membership:
            await membership.join_self()
            assert [m.node for m in membership.members()] == [SELF]
            await trio.sleep(0.1)
            assert membership.failure is None

    run(main)


def test_an_error_exit_before_ready_fails_the_join_and_the_next_join_runs_it_again(
    tmp_path: Path,
) -> None:
    """Exit 3 before READY: JoinCommandFailed naming the status, nothing advertised; the next
    decision's join starts a new process (which succeeds here)."""
    attempts = tmp_path / "attempts"
    script = f'echo x >> {attempts}; [ "$(wc -l < {attempts})" -ge 2 ] || exit 3'

    async def main() -> None:
        async with open_command_membership(sh(script), self_node=SELF) as membership:
            with pytest.raises(JoinCommandFailed, match=r"status 3 before it was ready"):
                await membership.join_self()
            assert membership.members() == ()
            await membership.join_self()
            assert membership.runs == 2
            assert [m.node for m in membership.members()] == [SELF]

    run(main)


def test_a_command_that_cannot_start_fails_the_join(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-hook")

    async def main() -> None:
        async with open_command_membership([missing], self_node=SELF) as membership:
            with pytest.raises(JoinCommandFailed, match="could not start"):
                await membership.join_self()
            assert membership.runs == 0

    run(main)


def test_an_error_exit_after_ready_withdraws_the_members_and_reports_a_failure() -> None:
    """The service died after joining: no seed nodes to advertise, and a failure to show."""
    script = f'echo READY > "/dev/fd/${READY_FD_VARIABLE}"; sleep 0.2; exit 7'

    async def main() -> None:
        async with open_command_membership(sh(script), self_node=SELF) as membership:
            await membership.join_self()
            assert membership.failure is None
            assert membership.members() != ()
            assert await membership.wait_exited() == 7
            assert membership.failure == (
                "the join command exited with status 7 after it was ready"
            )
            assert membership.members() == ()

    run(main)


async def wait_for_file(path: Path) -> None:
    # Written by another process: nothing here could set an event.
    with trio.fail_after(5):
        while not path.exists() or not path.read_text().strip():  # noqa: ASYNC110
            await trio.sleep(0.02)


def test_a_command_killed_by_a_signal_is_described_so() -> None:
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(2) == "status 2"


def test_a_command_that_ignores_sigterm_is_killed_after_the_delay(tmp_path: Path) -> None:
    """Leaving the block while the command has not become ready: SIGTERM, then SIGKILL, to
    the command and to what it started (its service, which ignores SIGTERM too)."""
    started, child = tmp_path / "started", tmp_path / "child"
    service = f"trap '' TERM; echo $$ > {child}; while :; do sleep 0.05; done"
    script = (
        f"trap '' TERM; sh -c {shlex.quote(service)} & "
        f"echo $$ > {started}; while :; do sleep 0.05; done"
    )

    async def main() -> None:
        async with (
            open_command_membership(sh(script), self_node=SELF, kill_delay=0.3) as membership,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(membership.join_self)
            await wait_for_file(started)
            await wait_for_file(child)
            nursery.cancel_scope.cancel()

    run(main)
    pids = [int(started.read_text()), int(child.read_text())]
    # SIGKILL is delivered at once, but a killed process takes a moment to exit: give the
    # kernel up to 2 s (a process that survived SIGKILL's group never stops).
    deadline = time.monotonic() + 2
    while any(running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [running(pid) for pid in pids] == [False, False]


def test_only_the_ready_descriptor_is_passed_on(tmp_path: Path) -> None:
    """The command inherits the write end of its own pipe and no other descriptor of ours."""
    listing = tmp_path / "fds"
    script = f"ls /proc/self/fd > {shlex.quote(str(listing))}; exit 0"

    async def main() -> None:
        async with open_command_membership(sh(script), self_node=SELF) as membership:
            await membership.join_self()

    run(main)
    fds = {int(name) for name in listing.read_text().split()}
    # 0-2, the ready pipe, and the descriptor ls itself opened to list the directory.
    assert len(fds - {0, 1, 2}) == 2
