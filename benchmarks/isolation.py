"""Where benchmark nodes live: one network namespace each, or addresses on loopback.

On loopback all nodes share one host, one TCP stack and one socket table, which is cheap and
needs no privileges but is not a network: nothing is ever lost or delayed between nodes. In
network namespaces every node has its own stack, address and socket table, and the nodes talk
over a Linux bridge like machines on one LAN segment. Both hand out one address per node and a
command prefix that starts a node's process in its place.

Only addresses that cannot reach any real network are ever used: loopback's 127.0.0.0/8, or a
private /16 that exists solely inside the namespaces created here, which are wired to each
other and to nothing else (the host's own namespace gets no address and no route to them).
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Protocol, Self

_IP_TIMEOUT = 60.0
_HINT = "needs root and iproute2; or use --isolation loopback"
# flock()s here mark whose namespaces are in use; /run/lock is a tmpfs emptied at boot.
_LOCK_DIR = Path("/run/lock") if Path("/run/lock").is_dir() else Path("/tmp")
_TAG = re.compile(r"[A-Za-z0-9_]{1,16}")
MAX_NODES = 250


class IsolationError(RuntimeError):
    """Setting up or tearing down the nodes' network failed."""


class Isolation(Protocol):
    """Where the nodes of one run live; a context manager that sets it up and tears it down.

    ``__exit__`` always tears down, also when the block raised.
    """

    name: str
    # One address per node; the nodes get them in order, so index 0 holds the lowest.
    addresses: list[str]

    def command_prefix(self, index: int) -> list[str]:
        """What to put before a command to run it as node ``index`` (possibly nothing)."""

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...


def exit_on_sigterm() -> None:
    """Make SIGTERM raise KeyboardInterrupt, like Ctrl-C, so that ``finally`` blocks run.

    By default SIGTERM ends Python at once, which would leave the namespaces (and the node
    processes) behind. Call it from the main thread.
    """
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def _ip(args: Sequence[str], *, batch: Sequence[str] = ()) -> str:
    """Run ``ip`` with ``args``, feeding it ``batch`` commands if any; return its output."""
    command = ["ip", *args, *(["-batch", "-"] if batch else [])]
    shown = " ".join(command) + "".join(f"\n    {line}" for line in batch)
    try:
        result = subprocess.run(
            command,
            input="".join(f"{line}\n" for line in batch),
            check=True,
            capture_output=True,
            text=True,
            timeout=_IP_TIMEOUT,
        )
    except FileNotFoundError as error:
        raise IsolationError(f"`ip` is not on PATH; {_HINT}") from error
    except subprocess.CalledProcessError as error:
        stderr = error.stderr.strip()
        hint = (
            f"\n{_HINT}"
            if "Operation not permitted" in stderr or "Permission denied" in stderr
            else ""
        )
        raise IsolationError(f"failed ({error.returncode}): {shown}\n{stderr}{hint}") from error
    except subprocess.TimeoutExpired as error:
        raise IsolationError(f"timed out after {_IP_TIMEOUT:.0f} s: {shown}") from error
    return result.stdout


def _namespaces() -> list[str]:
    # Lines read "name" or "name (id: 3)".
    return [line.split()[0] for line in _ip(["netns", "list"]).splitlines() if line.strip()]


def _delete_namespaces(names: Sequence[str]) -> None:
    """Delete those of the namespaces that exist, in one ``ip`` run."""
    present = set(_namespaces())
    doomed = [name for name in names if name in present]
    if doomed:
        # -force: one that vanished meanwhile must not keep the others from going.
        try:
            _ip(["-force"], batch=[f"netns del {name}" for name in doomed])
        except IsolationError:
            if set(doomed) & set(_namespaces()):
                raise


def _lock_path(prefix: str, tag: str) -> Path:
    return _LOCK_DIR / f"{prefix}{tag}.lock"


def _try_lock(path: Path) -> IO[bytes] | None:
    """The locked file, or None if a live process holds the lock."""
    while True:
        file = open(path, "ab")  # noqa: SIM115 -- held open for as long as the lock is
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.close()
            return None
        # Lock files are removed once their namespaces are; a lock on a file removed while
        # we opened it would guard nothing, so lock the file now at that path instead.
        try:
            if os.stat(path).st_ino == os.fstat(file.fileno()).st_ino:
                return file
        except FileNotFoundError:
            pass
        file.close()


def remove_stale_namespaces(prefix: str = "cbb-") -> list[str]:
    """Delete the namespaces runs that were killed left behind; return their names.

    A run's namespaces are named ``<prefix><tag>-<suffix>``, and while the run lives it holds
    an exclusive flock() on ``/run/lock/<prefix><tag>.lock``; the kernel drops that lock when
    the process ends, however it ends (also by SIGKILL). So namespaces whose tag's lock can be
    taken belong to no live run. Runs that are alive, such as a benchmark and a test run at
    the same time (or our own run, whose lock we hold), keep theirs.
    """
    tags: dict[str, list[str]] = {}
    for name in _namespaces():
        if name.startswith(prefix) and "-" in name[len(prefix) :]:
            tags.setdefault(name[len(prefix) :].rsplit("-", 1)[0], []).append(name)
    removed = []
    for tag, names in tags.items():
        lock = _try_lock(_lock_path(prefix, tag))
        if lock is None:
            continue
        try:
            _delete_namespaces(names)
            _lock_path(prefix, tag).unlink(missing_ok=True)
        finally:
            lock.close()
        removed += names
    return removed


def netns_available() -> str | None:
    """None if this process can create network namespaces, else why not."""
    if os.geteuid() != 0:
        return "not root"
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not on PATH"
    # Root can still lack the capability (an unprivileged container): try it. The name is
    # outside the "cbb-" pattern so that no cleanup mistakes it for a run's namespace.
    probe = f"cbbprobe-{os.getpid()}"
    try:
        _ip(["netns", "add", probe])
        _ip(["netns", "del", probe])
    except IsolationError as error:
        return f"cannot create a network namespace: {error}"
    return None


class NetnsIsolation:
    """Every node in a network namespace of its own, all on one bridge like hosts on a LAN.

    Node ``i`` lives in namespace ``cbb-<tag>-<i>``, where it has ``lo`` and an ``eth0`` with
    address 10.213.0.<i+1>/16. Its ``eth0`` is one end of a veth pair whose other end
    (``v<i>``) is a port of the bridge ``br0`` in namespace ``cbb-<tag>-br``. The host's own
    namespace is not connected to any of it. Interface names are fixed because each lives in
    a namespace of this run only (names there must fit the kernel's 15 characters); the tag
    keeps the namespace names of concurrent runs apart, and so must differ between them.

    Entering first removes the namespaces of killed runs (:func:`remove_stale_namespaces`).
    Leaving deletes every namespace of this run, which takes the veths and the bridge along;
    that also happens when setting up fails halfway. A namespace lives on, nameless, until
    the last process in it exits: stop the nodes before leaving.
    """

    name = "netns"

    def __init__(self, count: int, *, tag: str) -> None:
        if not 1 <= count <= MAX_NODES:
            raise ValueError(f"between 1 and {MAX_NODES} nodes, not {count}")
        if not _TAG.fullmatch(tag):
            raise ValueError(f"tag: 1 to 16 letters, digits or _, not {tag!r}")
        self.count = count
        self.tag = tag
        self.prefix = "cbb-"
        self.bridge_namespace = f"{self.prefix}{tag}-br"
        self.namespaces = [f"{self.prefix}{tag}-{i}" for i in range(count)]
        self.addresses = [f"10.213.0.{i + 1}" for i in range(count)]
        self._lock: IO[bytes] | None = None

    def command_prefix(self, index: int) -> list[str]:
        """``ip netns exec <namespace>``.

        ``ip`` execs the command in its own place, so the process started is the node's own,
        with the pid, signals and /proc entries of the node.
        """
        return ["ip", "netns", "exec", self.namespaces[index]]

    def __enter__(self) -> Self:
        lock_path = _lock_path(self.prefix, self.tag)
        self._lock = _try_lock(lock_path)
        if self._lock is None:
            raise IsolationError(f"tag {self.tag!r} is in use by another run ({lock_path})")
        try:
            remove_stale_namespaces(self.prefix)
            # Our own names can only be left over from a killed run that had our tag.
            _delete_namespaces([self.bridge_namespace, *self.namespaces])
            self._set_up()
        except BaseException:
            self._tear_down()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._tear_down()

    def _set_up(self) -> None:
        # One `ip` per namespace it must act in; batches keep this to count + 2 processes.
        _ip(
            [],
            batch=[
                f"netns add {self.bridge_namespace}",
                *(f"netns add {namespace}" for namespace in self.namespaces),
                # Created straight in the right namespaces rather than moved there later.
                *(
                    f"link add eth0 netns {namespace} type veth peer name v{i} "
                    f"netns {self.bridge_namespace}"
                    for i, namespace in enumerate(self.namespaces)
                ),
            ],
        )
        _ip(
            ["-n", self.bridge_namespace],
            batch=[
                # Without STP (the default) a bridge port forwards as soon as it is up.
                "link add br0 type bridge",
                "link set br0 up",
                *(f"link set v{i} master br0 up" for i in range(self.count)),
            ],
        )
        for namespace, address in zip(self.namespaces, self.addresses, strict=True):
            _ip(
                ["-n", namespace],
                batch=["link set lo up", f"addr add {address}/16 dev eth0", "link set eth0 up"],
            )

    def _tear_down(self) -> None:
        if self._lock is None:
            return
        try:
            _delete_namespaces([*self.namespaces, self.bridge_namespace])
            _lock_path(self.prefix, self.tag).unlink(missing_ok=True)
        finally:
            self._lock.close()
            self._lock = None


class LoopbackIsolation:
    """Every node on an address of its own on loopback, all in the host's namespace.

    Node ``i`` gets 127.<subnet>.0.<i+1>; Linux answers on all of 127.0.0.0/8 without any
    set-up. The nodes share the host's socket table, where a closed connection stays in
    TIME_WAIT for 60 s: a run on addresses an earlier run used would see the earlier run's
    connections there and count them as its own. A subnet (1 to 254) no recent run used
    makes every address, and so every connection seen, this run's.
    """

    name = "loopback"

    def __init__(self, count: int, *, subnet: int) -> None:
        if not 1 <= count <= MAX_NODES:
            raise ValueError(f"between 1 and {MAX_NODES} nodes, not {count}")
        if not 1 <= subnet <= 254:
            raise ValueError(f"subnet between 1 and 254, not {subnet}")
        self.addresses = [f"127.{subnet}.0.{i + 1}" for i in range(count)]

    def command_prefix(self, index: int) -> list[str]:
        """Nothing: the nodes run in our own namespace."""
        return []

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        pass


def fresh_isolation(kind: str, nodes: int, run_tag: str, run_number: int) -> Isolation:
    """New addresses (and, for ``"netns"``, namespaces) for one run of a benchmark.

    Every run gets its own, so one run's TIME_WAIT sockets are never counted in the next.
    ``run_tag`` tells the benchmarks' namespaces apart; loopback subnets are spread by process
    too, so two benchmarks at once (or a CI run beside a developer's) use different addresses.
    """
    if kind == "netns":
        return NetnsIsolation(nodes, tag=f"{os.getpid() % 10000}{run_tag}{run_number}")
    return LoopbackIsolation(nodes, subnet=1 + (os.getpid() + run_number) % 254)
