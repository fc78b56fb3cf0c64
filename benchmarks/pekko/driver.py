"""Build the Pekko node's jar and run Pekko nodes as processes: the benchmark's and the interop
tests' handle on the real JVM anchor.

Rules:

* :func:`build_jar` runs Maven only when the jar is missing or older than a source (``pom.xml``,
  anything under ``src/``), under a file lock, so concurrent callers (a test session and a
  benchmark) build once. A failed build raises :class:`PekkoBuildError` carrying Maven's output,
  since that output (an unresolved artifact, a compile error) is what the user must act on.
* A :class:`PekkoNode` is one JVM. One daemon thread reads its stdout (Pekko's log and the node's
  ``READY``/``EVENT`` lines, stderr merged in) into a bounded buffer; every wait takes a timeout
  and raises :class:`PekkoNodeError` with the output's tail when it passes or the JVM exits.
* :meth:`PekkoNode.stop` is bounded: SIGTERM (Pekko leaves the cluster gracefully on it), then
  SIGKILL after ``grace`` seconds. A node used as a context manager is always stopped.
* This is a synchronous helper (a subprocess and a thread, no trio): its callers are the
  benchmark's orchestration and tests that wait on real JVMs, where waiting in a thread is fine.
"""

from __future__ import annotations

import collections
import fcntl
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType

import attrs

__all__ = [
    "JVM_FLAGS",
    "PROJECT_DIR",
    "PekkoBuildError",
    "PekkoEvent",
    "PekkoNode",
    "PekkoNodeConfig",
    "PekkoNodeError",
    "build_jar",
    "jar_is_fresh",
    "jar_path",
    "java_available",
    "maven_available",
    "write_contact_points",
]

#: The Maven project: ``pom.xml``, ``src/``, and ``target/`` once built.
PROJECT_DIR = Path(__file__).resolve().parent

#: JVM flags for running many nodes on 2 cores (README.md explains each): a small heap and thread
#: stacks, the serial collector (no GC threads per JVM), the C1 compiler only (much less JIT CPU
#: at start, which is when a bootstrap runs), and the JDK's class-data archive.
JVM_FLAGS: tuple[str, ...] = (
    "-Xmx96m",
    "-Xss512k",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Xshare:auto",
)

# A bound on how long a cold Maven build may take (the first one downloads ~40 MB of jars).
_BUILD_TIMEOUT = 900.0
# Output lines a node keeps; older ones are dropped. A DEBUG node writes a few thousand a minute.
_MAX_OUTPUT_LINES = 100_000
# Lines of output quoted in an error message.
_TAIL_LINES = 40

_READY = re.compile(r"^READY management=(?P<management>\S+) self=(?P<self>\S+)$")
_EVENT = re.compile(r"^EVENT (?P<kind>[a-z-]+)(?: (?P<address>\S+))?$")
# The bootstrap coordinator's INFO lines for its decision (pekko-management 1.1.1,
# BootstrapCoordinator): forming a new cluster, or joining the seed nodes a contact point gave.
_DECISIONS = (
    ("join-self", re.compile(r"Initiating new cluster, self-joining \[")),
    ("join-seed-nodes", re.compile(r"Joining \[\S+\] to existing cluster \[")),
)


class PekkoBuildError(RuntimeError):
    """``mvn package`` failed; the message carries the end of Maven's output."""


class PekkoNodeError(RuntimeError):
    """A Pekko node did not start, exited, or did not show what was waited for in time."""


def jar_path() -> Path:
    """Where ``mvn package`` puts the runnable fat jar."""
    return PROJECT_DIR / "target" / "pekko-node.jar"


def java_available() -> bool:
    """Whether ``java`` is on ``PATH`` (needed to run a node)."""
    return shutil.which("java") is not None


def maven_available() -> bool:
    """Whether ``mvn`` is on ``PATH`` (needed to build the jar when it is missing or stale)."""
    return shutil.which("mvn") is not None


def _sources() -> Iterator[Path]:
    yield PROJECT_DIR / "pom.xml"
    yield from (path for path in (PROJECT_DIR / "src").rglob("*") if path.is_file())


def jar_is_fresh() -> bool:
    """Whether the jar exists and is newer than every source."""
    jar = jar_path()
    if not jar.exists():
        return False
    built = jar.stat().st_mtime
    return all(source.stat().st_mtime <= built for source in _sources())


def build_jar(*, force: bool = False, timeout: float = _BUILD_TIMEOUT) -> Path:
    """The runnable jar, built first with Maven if it is missing, stale, or ``force``.

    Raises :class:`PekkoBuildError` naming Maven's output if the build fails or times out, or if
    ``mvn`` is not installed.
    """
    jar = jar_path()
    target = jar.parent
    target.mkdir(exist_ok=True)
    with (target / ".build.lock").open("w") as lock:
        # Whoever holds the lock builds; the others then find a fresh jar and return.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not force and jar_is_fresh():
            return jar
        if not maven_available():
            raise PekkoBuildError(
                f"{jar} is missing or older than its sources, and mvn is not on PATH: install "
                "Maven (apt-get install maven) or build it elsewhere"
            )
        command = [
            "mvn",
            "-B",
            "-q",
            "-Dstyle.color=never",
            "-f",
            str(PROJECT_DIR / "pom.xml"),
            "package",
        ]
        try:
            result = subprocess.run(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as expired:
            output = expired.output if isinstance(expired.output, str) else ""
            raise PekkoBuildError(
                f"{' '.join(command)} did not finish within {timeout:.0f} s:\n{_tail(output)}"
            ) from None
        if result.returncode != 0 or not jar.exists():
            raise PekkoBuildError(
                f"{' '.join(command)} failed with exit status {result.returncode}:\n"
                f"{_tail(result.stdout)}"
            )
        return jar


def _tail(output: str) -> str:
    return "\n".join(output.splitlines()[-_TAIL_LINES:])


def write_contact_points(path: Path, management_endpoints: Sequence[str]) -> None:
    """Write a contact-points file (``host:port`` a line) in one atomic step.

    The node re-reads the file at every lookup, so it must never see a half-written one: the new
    content goes to a temporary file that replaces the old by rename.
    """
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text("".join(f"{endpoint}\n" for endpoint in management_endpoints))
    temporary.replace(path)


def _optional_seconds(value: float | None) -> str | None:
    return None if value is None else f"{value:g}"


@attrs.frozen(kw_only=True)
class PekkoNodeConfig:
    """One node's flags (see ``PekkoNode.java``). ``None`` keeps Pekko's own default."""

    host: str
    remote_port: int
    management_port: int
    contact_points_file: Path
    required_contact_points: int | None = None
    stable_margin: float | None = None
    probe_interval: float | None = None
    contact_point_discovery_interval: float | None = None
    log_level: str = attrs.field(
        default="INFO", validator=attrs.validators.in_(("DEBUG", "INFO", "WARNING", "ERROR"))
    )
    system_name: str = "bootstrap"
    jvm_flags: tuple[str, ...] = JVM_FLAGS

    @property
    def management(self) -> str:
        """The management endpoint, ``host:port``, as contact-points files list it."""
        return f"{self.host}:{self.management_port}"

    def command(self, jar: Path) -> list[str]:
        """The ``java`` command line that runs this node from ``jar``."""
        flags: list[tuple[str, str | None]] = [
            ("--host", self.host),
            ("--remote-port", str(self.remote_port)),
            ("--management-port", str(self.management_port)),
            ("--contact-points-file", str(self.contact_points_file)),
            (
                "--required-contact-points",
                None if self.required_contact_points is None else str(self.required_contact_points),
            ),
            ("--stable-margin", _optional_seconds(self.stable_margin)),
            ("--probe-interval", _optional_seconds(self.probe_interval)),
            (
                "--contact-point-discovery-interval",
                _optional_seconds(self.contact_point_discovery_interval),
            ),
            ("--log-level", self.log_level),
            ("--system-name", self.system_name),
        ]
        arguments = [item for flag, value in flags if value is not None for item in (flag, value)]
        return ["java", *self.jvm_flags, "-jar", str(jar), *arguments]


@attrs.frozen(kw_only=True)
class PekkoEvent:
    """One ``EVENT`` line: its kind (``member-up``, ``self-up``...), the member's address if
    it names one, and when the line was read (wall clock, to compare with other processes)."""

    kind: str
    address: str | None
    wall: float


class PekkoNode:
    """A running Pekko node (one JVM). Start it with :meth:`start`; stop it with :meth:`stop`
    or by leaving its ``with`` block."""

    def __init__(self, config: PekkoNodeConfig, process: subprocess.Popen[str]) -> None:
        self.config = config
        self._process = process
        self._changed = threading.Condition()
        self._lines: collections.deque[str] = collections.deque(maxlen=_MAX_OUTPUT_LINES)
        self._events: list[PekkoEvent] = []
        self._self_address: str | None = None
        self._ready_at: float | None = None
        self._decision: tuple[str, float] | None = None
        self._output_closed = False
        self._terminated = False
        self._reader = threading.Thread(
            target=self._read_output, name=f"pekko-node-{config.management}", daemon=True
        )
        self._reader.start()

    @classmethod
    def start(
        cls,
        config: PekkoNodeConfig,
        *,
        jar: Path | None = None,
        env: dict[str, str] | None = None,
        prefix: Sequence[str] = (),
    ) -> PekkoNode:
        """Start a node from ``jar`` (default: :func:`jar_path`, which must exist; see
        :func:`build_jar`). Returns at once: wait with :meth:`wait_ready`.

        ``prefix`` goes before ``java`` (``ip netns exec NAME`` runs the node in a network
        namespace; it must exec the JVM in its own place, so the pid stays the JVM's).
        """
        jar = jar_path() if jar is None else jar
        if not jar.exists():
            raise PekkoNodeError(f"{jar} does not exist: call build_jar() first")
        process = subprocess.Popen(
            [*prefix, *config.command(jar)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            env=None if env is None else {**os.environ, **env},
        )
        return cls(config, process)

    # --- what the node printed -------------------------------------------------------------

    def _read_output(self) -> None:
        assert self._process.stdout is not None  # Popen(stdout=PIPE) always sets it
        for raw in self._process.stdout:
            line = raw.rstrip("\n")
            with self._changed:
                self._lines.append(line)
                self._parse(line)
                self._changed.notify_all()
        with self._changed:
            self._output_closed = True
            self._changed.notify_all()

    def _parse(self, line: str) -> None:
        ready = _READY.match(line)
        if ready is not None:
            self._self_address = ready["self"]
            self._ready_at = time.time()
            return
        if self._decision is None:
            for decision, pattern in _DECISIONS:
                if pattern.search(line):
                    self._decision = (decision, time.time())
                    return
        event = _EVENT.match(line)
        if event is not None:
            self._events.append(
                PekkoEvent(kind=event["kind"], address=event["address"], wall=time.time())
            )

    @property
    def lines(self) -> list[str]:
        """The output read so far (the last ``_MAX_OUTPUT_LINES`` lines)."""
        with self._changed:
            return list(self._lines)

    @property
    def events(self) -> list[PekkoEvent]:
        """The ``EVENT`` lines read so far, in order."""
        with self._changed:
            return list(self._events)

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        """The JVM's exit status, or ``None`` while it runs."""
        return self._process.poll()

    @property
    def management_url(self) -> str:
        """The management endpoint's base URL, e.g. ``http://127.0.0.2:8558``."""
        return f"http://{self.config.management}"

    @property
    def self_address(self) -> str:
        """The node's cluster address (``pekko://bootstrap@HOST:PORT``), known once ready."""
        if self._self_address is None:
            raise PekkoNodeError(f"{self.config.management} is not ready: call wait_ready()")
        return self._self_address

    @property
    def ready_at(self) -> float | None:
        """When the ``READY`` line was read (wall clock), or ``None`` before."""
        with self._changed:
            return self._ready_at

    @property
    def decision(self) -> tuple[str, float] | None:
        """The bootstrap's decision, ``("join-self" | "join-seed-nodes", wall clock when its log
        line was read)``, or ``None`` before it decided (a node joined by another's bootstrap
        may never log one)."""
        with self._changed:
            return self._decision

    # --- waiting ---------------------------------------------------------------------------

    def _wait_until(self, found: Callable[[], bool], what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not found():
                if self._output_closed:
                    raise PekkoNodeError(
                        f"the Pekko node at {self.config.management} exited (status "
                        f"{self._process.wait()}) before {what}:\n{self._tail()}"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PekkoNodeError(
                        f"the Pekko node at {self.config.management} did not show {what} within "
                        f"{timeout:g} s:\n{self._tail()}"
                    )
                self._changed.wait(remaining)

    def _tail(self) -> str:
        return "\n".join(list(self._lines)[-_TAIL_LINES:])

    def wait_ready(self, timeout: float = 60.0) -> PekkoNode:
        """Wait until management is bound and the bootstrap runs (the ``READY`` line)."""
        self._wait_until(lambda: self._self_address is not None, "READY", timeout)
        return self

    def wait_for_event(
        self, kind: str, address: str | None = None, *, timeout: float = 60.0
    ) -> PekkoEvent:
        """The first ``EVENT`` of ``kind`` (about ``address``, if given), waiting for it."""

        def first() -> PekkoEvent | None:
            return next(
                (
                    event
                    for event in self._events
                    if event.kind == kind and (address is None or event.address == address)
                ),
                None,
            )

        self._wait_until(lambda: first() is not None, f"EVENT {kind} {address or ''}", timeout)
        event = first()
        assert event is not None  # _wait_until returned, so it was found; events only grow
        return event

    def wait_for_line(self, pattern: str | re.Pattern[str], *, timeout: float = 60.0) -> str:
        """The first output line that ``pattern`` matches (``re.search``), waiting for it."""
        regex = re.compile(pattern)

        def first() -> str | None:
            return next((line for line in self._lines if regex.search(line)), None)

        self._wait_until(lambda: first() is not None, f"a line matching {regex.pattern!r}", timeout)
        line = first()
        assert line is not None  # found above; a line can only be dropped after 100 000 more
        return line

    # --- stopping --------------------------------------------------------------------------

    def terminate(self) -> None:
        """Send SIGTERM once, without waiting: stopping many nodes, signal them all first, so
        their graceful shutdowns overlap, then :meth:`stop` each."""
        if not self._terminated and self._process.poll() is None:
            self._terminated = True
            self._process.send_signal(signal.SIGTERM)

    def stop(self, grace: float = 15.0) -> int:
        """Stop the JVM: SIGTERM, then SIGKILL if it still runs ``grace`` s later. Returns its
        exit status (143 after SIGTERM while running, -9 if it had to be killed)."""
        if self._process.poll() is None:
            # A second SIGTERM during the JVM's shutdown would do nothing: send one at most.
            self.terminate()
            try:
                self._process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        self._reader.join(timeout=5)
        if self._process.stdout is not None:
            self._process.stdout.close()
        return self._process.returncode

    def __enter__(self) -> PekkoNode:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
