"""A real DNS server for tests: Debian's dnsmasq on 127.0.0.1, on a free UDP+TCP port.

    with Dnsmasq(host_records={"svc.zone": ["10.0.0.1"]}) as server:
        ...  # ask server.address ("127.0.0.1:PORT")
        server.set_hosts("pods", {"svc.zone": ["10.0.0.2"]})  # returns once dnsmasq answers it

It answers only from what the test gives it (``--no-resolv --no-hosts``, ``--local=/zone/``):
names in the zone it does not know are NXDOMAIN, names outside it are REFUSED, and it never
forwards a query anywhere. Records that change while it runs live in ``--hostsdir``, which
dnsmasq watches with inotify; ``set_hosts``/``remove_hosts`` poll until the change is visible
instead of sleeping for a guessed time. ``--log-queries`` goes to a file so a test can count the
queries that reached the server (``logged_queries``).

dnsmasq comes from the Debian package ``dnsmasq-base``: missing, the tests are skipped locally
but fail under CI (``CI`` set), where ``.ci/run`` installs it, so CI never silently skips them.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import dns.exception
import dns.message
import dns.query
import dns.rdatatype
import pytest

__all__ = ["INSTALL_HINT", "Dnsmasq", "dnsmasq_binary", "require_dnsmasq"]

INSTALL_HINT = "install dnsmasq-base (.ci/run does)"

# How long dnsmasq may take to start answering or to pick up a hostsdir change. Both take
# milliseconds when idle; the bound is generous because CI machines can be busy.
_WAIT = 10.0
_POLL_INTERVAL = 0.01

_QUERY_LINE = re.compile(r"query\[(?P<type>[A-Z0-9]+)\] (?P<name>\S+) from ")


def require_dnsmasq() -> str:
    """The dnsmasq executable; if missing, fail under CI (it must be installed there), else skip."""
    path = shutil.which("dnsmasq") or shutil.which("dnsmasq", path="/usr/sbin:/sbin")
    if path is None:
        reason = f"dnsmasq not found: {INSTALL_HINT}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return path


@pytest.fixture
def dnsmasq_binary() -> str:
    """Fixture form of :func:`require_dnsmasq`."""
    return require_dnsmasq()


def _free_udp_and_tcp_port() -> int:
    # dnsmasq listens on both; a port free for TCP is usually free for UDP too, but check.
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port


class Dnsmasq:
    """dnsmasq serving ``host_records``, ``srv_hosts`` and a hostsdir, for one test.

    ``host_records`` maps a name to its addresses (IPv4 and IPv6 mixed); ``srv_hosts`` are
    ``--srv-host`` values (``_svc._tcp.name,target,port[,priority,weight]``). Every answer from
    the zone carries the TTL ``local_ttl`` (dnsmasq's default is 0: not cacheable).
    """

    def __init__(
        self,
        *,
        zone: str = "zone",
        local_ttl: int | None = None,
        host_records: Mapping[str, Sequence[str]] | None = None,
        srv_hosts: Sequence[str] = (),
        extra_args: Sequence[str] = (),
    ) -> None:
        self.zone = zone
        self.local_ttl = local_ttl
        self.host_records = {name: list(ips) for name, ips in (host_records or {}).items()}
        self.srv_hosts = list(srv_hosts)
        self.extra_args = list(extra_args)
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._directory: Path | None = None
        self._files: dict[str, dict[str, list[str]]] = {}
        self._markers = itertools.count()

    # --- life cycle ---------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, the form DnsDiscovery's ``nameservers`` accepts."""
        return f"127.0.0.1:{self.port}"

    @property
    def hosts_dir(self) -> Path:
        assert self._directory is not None, "start() first"
        return self._directory / "hosts"

    @property
    def log_path(self) -> Path:
        assert self._directory is not None, "start() first"
        return self._directory / "dnsmasq.log"

    def __enter__(self) -> Dnsmasq:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start dnsmasq and return once it answers queries."""
        binary = require_dnsmasq()
        self._directory = Path(tempfile.mkdtemp(prefix="dnsmasq-test-"))
        # Started as root, dnsmasq drops to an unprivileged user that must still read the
        # hostsdir and write its log: mkdtemp's 0700 would hide them.
        self._directory.chmod(0o755)
        self.hosts_dir.mkdir(mode=0o755)
        # Another process can take the port between our probe and dnsmasq's bind: retry.
        reasons: list[str] = []
        for _attempt in range(5):
            self.port = _free_udp_and_tcp_port()
            self._process = subprocess.Popen(
                [binary, *self._arguments()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            if self._wait_until_answering():
                return
            _, stderr = self._process.communicate()  # it has exited; this closes the pipe
            reasons.append(stderr.decode(errors="replace").strip() or "no message")
            self._process = None
        self.stop()
        raise RuntimeError(f"dnsmasq did not start: {'; '.join(dict.fromkeys(reasons))}")

    def _arguments(self) -> list[str]:
        arguments = [
            "--keep-in-foreground",
            "--conf-file=/dev/null",  # not /etc/dnsmasq.conf of whatever machine this runs on
            "--pid-file=",  # no pid file
            f"--port={self.port}",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",  # bind 127.0.0.1 only, not the wildcard address
            "--no-resolv",  # never forward: names outside the zone are REFUSED
            "--no-hosts",
            f"--local=/{self.zone}/",  # unknown names in the zone are NXDOMAIN
            f"--hostsdir={self.hosts_dir}",
            f"--log-facility={self.log_path}",
            "--log-queries",
        ]
        if self.local_ttl is not None:
            arguments.append(f"--local-ttl={self.local_ttl}")
        for name, addresses in self.host_records.items():
            # One --host-record per address: it takes at most one IPv4 and one IPv6 each.
            arguments.extend(f"--host-record={name},{address}" for address in addresses)
        arguments.extend(f"--srv-host={value}" for value in self.srv_hosts)
        arguments.extend(self.extra_args)
        return arguments

    def _wait_until_answering(self) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + _WAIT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False  # it exited: e.g. the port was taken after all
            try:
                # Any answer (REFUSED for this name outside the zone) means it is serving.
                self.query("ready.invalid", "A", timeout=0.2)
            except (dns.exception.Timeout, OSError):
                time.sleep(_POLL_INTERVAL)
                continue
            return True
        self._process.terminate()
        return False

    def stop(self) -> None:
        """Terminate dnsmasq, wait for it, and remove its files."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.terminate()
                try:
                    self._process.wait(timeout=_WAIT)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
            if self._process.stderr is not None:
                self._process.stderr.close()
            self._process = None
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None

    # --- asking it directly -------------------------------------------------------------------

    def query(self, name: str, rdtype: str, *, timeout: float = 2.0) -> dns.message.Message:
        """Ask dnsmasq directly over UDP (not through the code under test)."""
        request = dns.message.make_query(name, rdtype)
        return dns.query.udp(request, "127.0.0.1", port=self.port, timeout=timeout)

    def addresses(self, name: str) -> set[str]:
        """The A and AAAA addresses dnsmasq answers for ``name`` now."""
        found: set[str] = set()
        for rdtype in ("A", "AAAA"):
            response = self.query(name, rdtype)
            for rrset in response.answer:
                if rrset.rdtype == dns.rdatatype.from_text(rdtype):
                    found.update(rdata.to_text() for rdata in rrset)
        return found

    def logged_queries(self) -> list[tuple[str, str]]:
        """Every query dnsmasq has received so far, as (type, name), in order.

        dnsmasq writes its log asynchronously, so a marker query is sent and the log read until
        the marker shows: everything received before it is then in the file.
        """
        marker = f"log-marker-{next(self._markers)}.{self.zone}"
        self.query(marker, "TXT")
        deadline = time.monotonic() + _WAIT
        while True:
            text = self.log_path.read_text(errors="replace")
            queries = [
                (match["type"], match["name"].lower()) for match in _QUERY_LINE.finditer(text)
            ]
            if ("TXT", marker) in queries:
                return [
                    query
                    for query in queries[: queries.index(("TXT", marker))]
                    if not query[1].startswith(("log-marker-", "ready.invalid"))
                ]
            if time.monotonic() > deadline:
                raise AssertionError(f"marker query {marker} never appeared in {self.log_path}")
            time.sleep(_POLL_INTERVAL)

    # --- records that change while it runs ----------------------------------------------------

    def set_hosts(self, filename: str, records: Mapping[str, Sequence[str]]) -> None:
        """Write hosts file ``filename`` in the hostsdir; return once dnsmasq answers it."""
        text = "".join(
            f"{address} {name}\n" for name, addresses in records.items() for address in addresses
        )
        # Written beside the directory and renamed into it, so dnsmasq (woken by inotify)
        # never reads a half-written file.
        staging = self.hosts_dir.parent / f"{filename}.staging"
        staging.write_text(text)
        staging.chmod(0o644)
        previous = self._files.get(filename, {})
        os.replace(staging, self.hosts_dir / filename)
        self._files[filename] = {name: list(addresses) for name, addresses in records.items()}
        self._wait_for_names(set(previous) | set(records))

    def remove_hosts(self, filename: str) -> None:
        """Delete hosts file ``filename``; return once dnsmasq no longer answers its records."""
        (self.hosts_dir / filename).unlink()
        removed = self._files.pop(filename)
        self._wait_for_names(set(removed))

    def _expected_addresses(self, name: str) -> set[str]:
        expected = set(self.host_records.get(name, ()))
        for records in self._files.values():
            expected.update(records.get(name, ()))
        return {str(ipaddress.ip_address(address)) for address in expected}

    def _wait_for_names(self, names: set[str]) -> None:
        deadline = time.monotonic() + _WAIT
        for name in sorted(names):
            expected = self._expected_addresses(name)
            while (seen := self.addresses(name)) != expected:
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"dnsmasq still answers {sorted(seen)} for {name}, "
                        f"expected {sorted(expected)} after {_WAIT} s"
                    )
                time.sleep(_POLL_INTERVAL)
