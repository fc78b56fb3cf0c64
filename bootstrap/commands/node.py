"""``cluster-bootstrap node``: run one bootstrap node until SIGINT or SIGTERM.

It binds and advertises its management endpoint, discovers its peers, forms or joins the
cluster, logs the decision, keeps serving, and (with ``--on-decided``) runs a command with the
decision in its environment, so a service in another language can use it as a sidecar. With
``--join-command`` the command carries out the join itself (:mod:`bootstrap.join_command`): the
node counts as joined once the command is ready, and a command that fails makes it retry.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager, nullcontext

import trio

from ..core import ContactPoint, Decision, JoinSeedNodes, Settings, UsageError
from ..discovery import Discovery
from ..join_command import CommandMembership, open_command_membership
from ..logs import configure_logging
from ..node import Node, open_node
from .discovery import add_discovery_arguments, discovery_from_args
from .options import add_settings_arguments, number_parser, settings_from_args
from .security import add_security_arguments, security_from_args

__all__ = ["add_arguments", "decision_environment", "run"]

logger = logging.getLogger("bootstrap.cli")

# A running --on-decided command gets SIGTERM when the node stops, and SIGKILL this much later.
_COMMAND_KILL_DELAY = 5.0
# A join command's service may need longer: etcd, stopped as a leader, first hands leadership
# over, for up to about 7 s when its peers are stopping too.
_JOIN_COMMAND_GRACE = 15.0


def _contact_point(text: str) -> ContactPoint:
    try:
        point = ContactPoint.parse(text)
    except UsageError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if point.port is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no port: use HOST:PORT")
    return point


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--contact-point",
        type=_contact_point,
        metavar="HOST:PORT",
        help="bind and advertise the management endpoint here "
        "(default in a pod: $POD_IP and the fallback port)",
    )
    parser.add_argument(
        "--node-address", metavar="ADDR", help="this node's selfNode (default: http://HOST:PORT)"
    )
    parser.add_argument("--transport", choices=["watch", "poll"], default="watch")
    parser.add_argument(
        "--on-decided",
        metavar="COMMAND",
        help="run COMMAND after joining, with BOOTSTRAP_DECISION and BOOTSTRAP_SEED_NODES set",
    )
    parser.add_argument(
        "--join-command",
        metavar="COMMAND",
        help="carry out the decision with COMMAND: joined once it writes READY to "
        "$BOOTSTRAP_READY_FD or exits 0; an error exit before that retries",
    )
    parser.add_argument(
        "--join-command-grace",
        metavar="S",
        type=number_parser(0.0, inclusive=False),
        default=_JOIN_COMMAND_GRACE,
        help="on stop, seconds the join command has after SIGTERM before SIGKILL "
        f"(default {_JOIN_COMMAND_GRACE:g})",
    )
    parser.add_argument("--log-format", choices=["text", "json"], default="text")
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING"], default="INFO")
    add_discovery_arguments(parser)
    add_security_arguments(parser)
    add_settings_arguments(parser)
    parser.set_defaults(parser=parser)


def decision_environment(decision: Decision) -> dict[str, str]:
    """The variables ``--on-decided`` commands see."""
    if isinstance(decision, JoinSeedNodes):
        return {
            "BOOTSTRAP_DECISION": "join-seed-nodes",
            "BOOTSTRAP_SEED_NODES": ",".join(decision.seed_nodes),
        }
    return {"BOOTSTRAP_DECISION": "join-self", "BOOTSTRAP_SEED_NODES": ""}


def run(args: argparse.Namespace) -> int:
    parser: argparse.ArgumentParser = args.parser
    settings = settings_from_args(parser, args)
    contact_point = args.contact_point or _contact_point_from_pod(parser, settings)
    discovery = discovery_from_args(parser, args, settings)
    configure_logging(level=args.log_level, json_format=args.log_format == "json")
    security = security_from_args(parser, args)  # after logging: it may warn
    self_node = args.node_address or f"http://{contact_point}"
    join_command = _command_words(parser, "--join-command", args.join_command)
    grace: float = args.join_command_grace

    async def main() -> None:
        with _receive_stop_signals() as signals:
            async with (
                _closing(discovery),
                _join_membership(join_command, self_node, grace) as membership,
                open_node(
                    settings=settings,
                    contact_point=contact_point,
                    discovery=discovery,
                    self_node=self_node,
                    membership=membership,
                    service_name=args.service_name,
                    transport=args.transport,
                    security=security,
                ) as node,
                trio.open_nursery() as nursery,
            ):
                nursery.start_soon(_after_join, node, args.on_decided)
                async for signum in signals:
                    logger.info("received %s: stopping", signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()
                    break
            # Leaving the blocks above is the shutdown, bounded: a running --on-decided command
            # gets SIGTERM (SIGKILL 5 s later), then the node stops gracefully (Node.stop), then
            # the --join-command's process gets SIGTERM (its process group SIGKILL
            # --join-command-grace seconds later): the service it runs
            # outlives the node's last answers, so no peer is sent to a service already gone.

    trio.run(main)
    return 0


def _command_words(parser: argparse.ArgumentParser, flag: str, command: str | None) -> list[str]:
    if command is None:
        return []
    try:
        words = shlex.split(command)
    except ValueError as error:
        parser.error(f"argument {flag}: {error}: {command!r}")
    if not words:
        parser.error(f"argument {flag}: the command is empty")
    return words


def _join_membership(
    command: list[str], self_node: str, grace: float
) -> AbstractAsyncContextManager[CommandMembership | None]:
    # Without --join-command the node's own LocalMembership joins (open_node's default).
    if not command:
        return nullcontext(None)
    return open_command_membership(command, self_node=self_node, kill_delay=grace)


@contextmanager
def _receive_stop_signals() -> Iterator[AsyncIterator[int]]:
    """SIGINT and SIGTERM as an async iterator; once it closes, they are ignored.

    trio's receiver re-raises, when it closes, the signals still pending in it, under the handlers
    it found when opened, and any later signal meets those handlers too. Both happen during a
    shutdown already under way (a second Ctrl-C, a supervisor repeating SIGTERM), where the
    defaults would kill the process half way (SIGTERM) or end it in a KeyboardInterrupt
    traceback (SIGINT). So the receiver opens over SIG_IGN. (SIG_IGN, not a Python function that
    does nothing: the interpreter resets those to the defaults as it exits. And it stays so
    until the process exits: this command is a process's entry point.)
    """
    stop_signals = (signal.SIGINT, signal.SIGTERM)
    for signum in stop_signals:
        signal.signal(signum, signal.SIG_IGN)
    with trio.open_signal_receiver(*stop_signals) as signals:
        yield signals


@asynccontextmanager
async def _closing(discovery: Discovery) -> AsyncIterator[None]:
    # Backends that hold connections (the Kubernetes API client) close them on the way out.
    try:
        yield
    finally:
        aclose = getattr(discovery, "aclose", None)
        if aclose is not None:
            with trio.CancelScope(shield=True):
                await aclose()


def _contact_point_from_pod(parser: argparse.ArgumentParser, settings: Settings) -> ContactPoint:
    # A Kubernetes pod learns its own IP through the Downward API (env POD_IP from
    # status.podIP); discovery reports that IP, so binding and advertising it matches exactly.
    pod_ip = os.environ.get("POD_IP", "").strip()
    if not pod_ip:
        parser.error(
            "argument --contact-point is required (outside a pod; in a pod, set POD_IP from "
            "status.podIP and the fallback port is used)"
        )
    try:
        return ContactPoint(pod_ip, settings.fallback_port)
    except UsageError as error:
        parser.error(f"POD_IP (for --contact-point): {error}")


async def _after_join(node: Node, command: str | None) -> None:
    await node.wait_joined()
    decision = node.decision
    if command is None or decision is None:
        return
    environment = {**os.environ, **decision_environment(decision)}
    try:
        result = await trio.run_process(
            shlex.split(command), env=environment, check=False, deliver_cancel=_stop_command
        )
    except OSError as error:
        logger.error("--on-decided command %r could not start: %s", command, error)
        return
    logger.info("--on-decided command exited with status %d", result.returncode)


async def _stop_command(process: trio.Process) -> None:
    # The node is stopping while its --on-decided command runs (the command may be the service
    # itself): it gets SIGTERM once, and SIGKILL if still running 5 s later; the node waits for
    # it to exit either way. It never runs twice, and never starts once the node is stopping.
    logger.info("stopping: sending SIGTERM to the --on-decided command (pid %d)", process.pid)
    try:
        process.terminate()
        await trio.sleep(_COMMAND_KILL_DELAY)
        logger.warning(
            "the --on-decided command ignored SIGTERM for %.0f s: sending SIGKILL",
            _COMMAND_KILL_DELAY,
        )
        process.kill()
    except OSError as error:  # it has just exited
        logger.debug("stopping the --on-decided command: %s", error)
