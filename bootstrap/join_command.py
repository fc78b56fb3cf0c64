"""A membership whose join is carried out by a command: the sidecar's ``--join-command``.

A service in another language joins its own cluster (``etcd``, a replica set...) in its own way;
the node only decides *whether* to form or to join, and *whom* to join. This membership hands the
decision to a command and counts the join as done only when the command says so:

* The command starts at the decision, with ``BOOTSTRAP_DECISION``, ``BOOTSTRAP_SEED_NODES``,
  ``BOOTSTRAP_SELF_NODE`` (this node's ``selfNode``: the hook derives its own addresses from it,
  as it derives the seeds' from theirs) and ``BOOTSTRAP_READY_FD`` in its environment.
* It is **ready** once it writes the line ``READY`` to the file descriptor
  ``$BOOTSTRAP_READY_FD`` (a command that keeps running: the service itself, or its supervisor),
  or once it exits with status 0 (a command that does its work and ends). Only then does the node
  advertise its cluster (seed nodes) and answer ``/ready`` with 200.
* A command that exits with another status before it is ready (or cannot start) fails the join:
  :class:`JoinCommandFailed`, which the node reports as ``JoinFailed``, so the machine goes back
  to probing and decides again at the probe pace; the command then runs again.
* A command that was ready and later exits with an error leaves the node joined but
  :attr:`~CommandMembership.failure` says why: the node withdraws its seed nodes (newcomers must
  not be sent to a service that is gone) and ``/ready`` answers 503, so the orchestrator sees it.
* When the node stops, a running command gets SIGTERM; if it is still running ``kill_delay``
  seconds later, its whole process group gets SIGKILL. The command runs in a session (and so a
  process group) of its own for that: a service it started cannot outlive it as an orphan that
  still holds the service's ports, nor be hit by a Ctrl-C meant for the node.

A pipe rather than a file or a port for readiness: it needs no path or port to agree on, works
from any language (``echo READY > "/dev/fd/$BOOTSTRAP_READY_FD"`` in any shell; ``dash`` cannot
redirect to a descriptor above 9 with ``>&``), and it closes by itself when the command dies, so
a crash can never look like readiness.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager

import attrs
import trio

from .core.wire import Member
from .membership import LocalMembership

__all__ = [
    "READY_FD_VARIABLE",
    "READY_LINE",
    "SELF_NODE_VARIABLE",
    "CommandMembership",
    "JoinCommandFailed",
    "open_command_membership",
]

logger = logging.getLogger("bootstrap.join_command")

#: The environment variable that names the descriptor the command writes ``READY`` to.
READY_FD_VARIABLE = "BOOTSTRAP_READY_FD"
#: The environment variable that holds this node's ``selfNode``.
SELF_NODE_VARIABLE = "BOOTSTRAP_SELF_NODE"
#: The line (without its newline) that says the command is ready.
READY_LINE = b"READY"
# Lines written to the readiness pipe are read up to this length; longer ones are not READY.
_MAX_LINE = 1024


class JoinCommandFailed(Exception):
    """The join command could not start, or exited with an error before it was ready."""


@attrs.define
class _Run:
    """One run of the command: what it has said so far."""

    pid: int
    ready: bool = False
    exit_status: int | None = None
    settled: trio.Event = attrs.field(factory=trio.Event)  # ready, or exited
    exited: trio.Event = attrs.field(factory=trio.Event)


def describe_exit(status: int) -> str:
    """``status 3`` or ``killed by SIGKILL``, from a return code as trio gives it."""
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"status {status}"


class CommandMembership:
    """Joins by running ``command`` (split into words already); see the module's docstring.

    Make it with :func:`open_command_membership`, which owns the command's process. ``environment``
    is added to this process's environment for the command, then ``BOOTSTRAP_SELF_NODE`` and, at
    each run, the decision's variables.
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        self_node: str,
        nursery: trio.Nursery,
        environment: Mapping[str, str] | None = None,
        kill_delay: float = 5.0,
    ) -> None:
        if not command:
            raise ValueError("the join command is empty")
        self._command = list(command)
        self._local = LocalMembership(self_node)
        self._nursery = nursery
        self._environment = {**(environment or {}), SELF_NODE_VARIABLE: self_node}
        self._kill_delay = kill_delay
        self._run: _Run | None = None
        self.runs = 0  # how many times the command was started

    @property
    def failure(self) -> str | None:
        """Why this node's service is gone although it joined (None while it is fine)."""
        run = self._run
        if run is None or not run.ready or run.exit_status in (None, 0):
            return None
        return f"the join command exited with {describe_exit(run.exit_status)} after it was ready"

    async def wait_exited(self) -> int:
        """Wait until the command last started has exited; its exit status (``-N``: signal N)."""
        run = self._run
        if run is None:
            raise RuntimeError("the join command has not been started")
        await run.exited.wait()
        assert run.exit_status is not None
        return run.exit_status

    async def join_self(self) -> None:
        await self._carry_out({"BOOTSTRAP_DECISION": "join-self", "BOOTSTRAP_SEED_NODES": ""})
        await self._local.join_self()

    async def join(self, seed_nodes: Sequence[str]) -> None:
        await self._carry_out(
            {"BOOTSTRAP_DECISION": "join-seed-nodes", "BOOTSTRAP_SEED_NODES": ",".join(seed_nodes)}
        )
        await self._local.join(seed_nodes)

    def members(self) -> Sequence[Member]:
        # A service that is gone must not pull newcomers in: nothing to advertise.
        return () if self.failure is not None else self._local.members()

    async def _carry_out(self, decision: Mapping[str, str]) -> None:
        if self._run is not None and self._run.exit_status is None:
            # The node joins once per decision and a new decision follows only a failed join,
            # whose command has exited: a second one running would be our bug.
            raise RuntimeError(f"the join command (pid {self._run.pid}) is still running")
        run: _Run = await self._nursery.start(self._run_command, {**self._environment, **decision})
        await run.settled.wait()
        if not run.ready:
            assert run.exit_status is not None  # settled without READY: it exited
            raise JoinCommandFailed(
                f"the join command exited with {describe_exit(run.exit_status)} before it was "
                f"ready (write {READY_LINE.decode()} to ${READY_FD_VARIABLE}, or exit 0)"
            )

    async def _run_command(
        self, environment: Mapping[str, str], *, task_status: trio.TaskStatus[_Run]
    ) -> None:
        read_fd, write_fd = os.pipe()
        try:
            env = {**os.environ, **environment, READY_FD_VARIABLE: str(write_fd)}
            try:
                process = await trio.lowlevel.open_process(
                    self._command, env=env, pass_fds=(write_fd,), start_new_session=True
                )
            except OSError as error:
                os.close(read_fd)
                raise JoinCommandFailed(
                    f"the join command {self._command[0]!r} could not start: {error}"
                ) from error
        finally:
            os.close(write_fd)  # the command holds the only write end now
        self.runs += 1
        self._run = run = _Run(process.pid)
        logger.info("started the join command (pid %d)", process.pid)
        task_status.started(run)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_read_ready, read_fd, run)
            try:
                status = await process.wait()
            except BaseException:
                with trio.CancelScope(shield=True):
                    await _stop(process, self._kill_delay)
                raise
            # A process the command started may still hold the pipe open: stop reading.
            nursery.cancel_scope.cancel()
        run.exit_status = status
        if run.ready and status != 0:
            logger.error(
                "%s: this node no longer advertises seed nodes, and /ready answers 503",
                self.failure,
            )
        else:
            logger.info("the join command exited with %s", describe_exit(status))
        run.ready = run.ready or status == 0
        run.settled.set()
        run.exited.set()


async def _read_ready(read_fd: int, run: _Run) -> None:
    async with trio.lowlevel.FdStream(read_fd) as stream:
        pending = b""
        while data := await stream.receive_some():
            pending += data
            *lines, pending = pending.split(b"\n")
            if any(line.strip() == READY_LINE for line in lines):
                logger.info("the join command (pid %d) is ready", run.pid)
                run.ready = True
                run.settled.set()
                return
            pending = pending[-_MAX_LINE:]


async def _stop(process: trio.Process, kill_delay: float) -> None:
    """SIGTERM once; SIGKILL to its process group ``kill_delay`` seconds later if it still runs;
    wait for the exit."""
    if process.returncode is not None:
        return
    logger.info("stopping: sending SIGTERM to the join command (pid %d)", process.pid)
    process.terminate()
    with trio.move_on_after(kill_delay):
        await process.wait()
        return
    logger.warning(
        "the join command did not exit %g s after SIGTERM: sending SIGKILL to its process group",
        kill_delay,
    )
    # Its process group is its pid (a session of its own): what it started dies with it.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    await process.wait()


@asynccontextmanager
async def open_command_membership(
    command: Sequence[str],
    *,
    self_node: str,
    environment: Mapping[str, str] | None = None,
    kill_delay: float = 5.0,
) -> AsyncIterator[CommandMembership]:
    """A :class:`CommandMembership` whose command is stopped when the block is left."""
    async with trio.open_nursery() as nursery:
        yield CommandMembership(
            command,
            self_node=self_node,
            nursery=nursery,
            environment=environment,
            kill_delay=kill_delay,
        )
        nursery.cancel_scope.cancel()
