#!/usr/bin/env python3
"""Start an etcd member as cluster-bootstrap decided: form a new etcd cluster, or join one.

Run by ``cluster-bootstrap node --join-command`` (see docs/etcd.md), which sets:

* ``BOOTSTRAP_SELF_NODE``: this member, ``etcd://HOST:CLIENT_PORT,PEER_PORT``
  (the node's ``--node-address``), e.g. ``etcd://10.0.0.3:2379,2380``;
* ``BOOTSTRAP_DECISION``: ``join-self`` (form a new cluster) or ``join-seed-nodes``;
* ``BOOTSTRAP_SEED_NODES``: for ``join-seed-nodes``, members of the cluster to join, in the same
  form, comma-separated;
* ``BOOTSTRAP_READY_FD``: where to write ``READY`` once this member is healthy.

A joining member is added as a learner, started, and promoted to a voting member once it has
caught up (see :func:`add_learner` for why).

It then stays the parent of etcd: SIGTERM is passed on to etcd, and it exits as etcd does. A
non-zero exit before ``READY`` tells the node the join failed; the node probes again and runs
this hook again at its probe pace.

Optional settings, from the environment: ``HOOK_DATA_DIR`` (default ``etcd-data/<name>``),
``HOOK_ETCD_BIN`` and ``HOOK_ETCDCTL_BIN`` (default ``etcd`` and ``etcdctl`` on the PATH),
``HOOK_ADD_TIMEOUT`` (seconds to keep retrying ``member add``, default 120) and
``HOOK_READY_TIMEOUT`` (seconds for the started member to be promoted and healthy, default
60). Not ``ETCD_...``: etcd reads every ``ETCD_`` variable as one of its flags, and refuses to
start when a flag is given both ways.

Only the standard library: the hook must run wherever etcd and etcdctl do.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ETCD = os.environ.get("HOOK_ETCD_BIN", "etcd")
ETCDCTL = os.environ.get("HOOK_ETCDCTL_BIN", "etcdctl")
ADD_TIMEOUT = float(os.environ.get("HOOK_ADD_TIMEOUT", "120"))
READY_TIMEOUT = float(os.environ.get("HOOK_READY_TIMEOUT", "60"))


def say(message: str) -> None:
    # Our stderr is the node's log: one line per step, prefixed so it reads apart from etcd's.
    print(f"etcd-hook: {message}", file=sys.stderr, flush=True)


def fail(message: str) -> None:
    say(message)
    sys.exit(1)


class Member:
    """An etcd member named by a selfNode: ``etcd://HOST:CLIENT_PORT,PEER_PORT``."""

    def __init__(self, self_node: str) -> None:
        scheme, _, address = self_node.partition("://")
        host, _, port_list = address.rpartition(":")
        ports = port_list.split(",")
        if scheme != "etcd" or not host or len(ports) != 2 or not all(map(str.isdigit, ports)):
            fail(f"{self_node!r} is not etcd://HOST:CLIENT_PORT,PEER_PORT")
        self.host = host
        self.client_url = f"http://{host}:{ports[0]}"
        self.peer_url = f"http://{host}:{ports[1]}"
        self.name = name_for(self.peer_url)


def name_for(peer_url: str) -> str:
    """A member's name, derived from its peer URL: each member can name the others, even those
    added but not started yet (etcd lists them without a name)."""
    return "etcd-" + re.sub(r"[^A-Za-z0-9]+", "-", urlsplit(peer_url).netloc).strip("-")


def seed_client_urls(seed_nodes: str) -> str:
    """The seeds' client URLs, comma-separated, as etcdctl's ``--endpoints`` takes them."""
    # The list is comma-separated and each selfNode has a comma too: split before "etcd://".
    nodes = re.split(r",(?=etcd://)", seed_nodes)
    return ",".join(Member(node).client_url for node in nodes if node)


def describe(status: int) -> str:
    return f"killed by signal {-status}" if status < 0 else f"exit status {status}"


def etcdctl(endpoints: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ETCDCTL, f"--endpoints={endpoints}", "--dial-timeout=2s", "--command-timeout=5s", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def read_json(endpoints: str, *args: str) -> Any:
    """``etcdctl ... -w json``; None if it failed."""
    result = etcdctl(endpoints, *args, "-w", "json")
    return json.loads(result.stdout) if result.returncode == 0 else None


def last_error(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    return lines[-1] if lines else f"exit status {result.returncode}, no message"


def initial_cluster(members: list[dict[str, Any]]) -> str:
    """``name=peer-url,...`` for every member etcd lists, this one included."""
    return ",".join(
        f"{member.get('name') or name_for(url)}={url}"
        for member in members
        for url in member.get("peerURLs", [])
    )


class Backoff:
    """Waits 0.5 s, doubling up to 5 s (with jitter), until ``timeout`` seconds have passed."""

    def __init__(self, what: str, timeout: float) -> None:
        self.what, self.timeout = what, timeout
        self.deadline = time.monotonic() + timeout
        self.delay, self.retries = 0.5, 0

    def wait(self, error: str) -> None:
        if time.monotonic() + self.delay > self.deadline:
            attempts = self.retries + 1
            fail(f"{self.what} failed {attempts} times in {self.timeout:.0f} s; last: {error}")
        self.retries += 1
        say(f"{self.what} refused ({error}); retry {self.retries} in {self.delay:.1f} s")
        time.sleep(self.delay * random.uniform(0.8, 1.2))
        self.delay = min(self.delay * 2, 5.0)


def add_learner(me: Member, endpoints: str) -> tuple[list[dict[str, Any]], int]:
    """``member add --learner`` through the seeds until it succeeds; the members then (this one
    included) and how many times it had to retry.

    A learner first, not a voting member: a learner is no part of the quorum, so adding it can
    never cost the cluster its quorum, and etcd 3.4 allows one learner at a time ("too many
    learner members in cluster"), so joiners queue up instead of racing. (Two voting members
    added at once and starting together can wait for each other for ever, each fetching the
    other's version before it serves, while the cluster has no quorum without them.) etcd also
    refuses while a member has not been connected for the last 5 s ("unhealthy cluster"), and
    a cluster whose first member is still starting does not answer in time: each refusal is
    retried with backoff, for at most HOOK_ADD_TIMEOUT seconds.
    """
    backoff = Backoff("member add", ADD_TIMEOUT)
    while True:
        args = ("member", "add", me.name, "--learner", f"--peer-urls={me.peer_url}", "-w", "json")
        added = etcdctl(endpoints, *args)
        if added.returncode == 0:
            return json.loads(added.stdout)["members"], backoff.retries
        error = last_error(added)
        # A member with this peer URL exists (etcd says "member ID already exist" when this
        # is the same peer URL added again within the same second).
        if "Peer URLs already exists" in error or "member ID already exist" in error:
            listed = read_json(endpoints, "member", "list") or {"members": []}
            mine = [m for m in listed["members"] if me.peer_url in m.get("peerURLs", [])]
            if mine and mine[0].get("isLearner"):
                # Left by an earlier run of this hook that failed before it was promoted (and
                # set its data aside): a learner counts for no quorum, so remove it, add anew.
                say(f"removing learner {mine[0]['ID']:x}, left by an earlier run, to add it anew")
                etcdctl(endpoints, "member", "remove", f"{mine[0]['ID']:x}")
            elif mine:
                fail(
                    f"member {mine[0]['ID']:x} ({mine[0].get('name', 'not started')}) already "
                    f"has {me.peer_url} and this member has no data directory: remove it first "
                    f"(etcdctl member remove {mine[0]['ID']:x})"
                )
        backoff.wait(error)


def start_etcd(me: Member, data_dir: Path, *cluster_flags: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            ETCD,
            f"--name={me.name}",
            f"--data-dir={data_dir}",
            f"--listen-client-urls={me.client_url}",
            f"--advertise-client-urls={me.client_url}",
            f"--listen-peer-urls={me.peer_url}",
            f"--initial-advertise-peer-urls={me.peer_url}",
            *cluster_flags,
        ]
    )


def wait_ready(me: Member, etcd: subprocess.Popen[bytes], endpoints: str) -> int | None:
    """Until this member votes and answers a linearizable read; how many times its promotion
    was refused (None if it never got there: etcd exited, or HOOK_READY_TIMEOUT passed).

    A learner is promoted through ``endpoints`` (the seeds) once it has caught up with the
    leader; until then etcd refuses ("can only promote a learner member which is in sync").
    """
    deadline = time.monotonic() + READY_TIMEOUT
    refused = 0
    while time.monotonic() < deadline:
        if etcd.poll() is not None:
            return None
        status = read_json(me.client_url, "endpoint", "status")
        if status is not None and status[0]["Status"].get("isLearner"):
            if endpoints:
                member_id = f"{status[0]['Status']['header']['member_id']:x}"
                promoted = etcdctl(endpoints, "member", "promote", member_id)
                if promoted.returncode == 0:
                    say(f"learner {member_id} promoted to a voting member")
                else:
                    refused += 1
        elif status is not None and etcdctl(me.client_url, "endpoint", "health").returncode == 0:
            return refused
        time.sleep(0.5)
    return None


def main() -> None:
    me = Member(os.environ["BOOTSTRAP_SELF_NODE"])
    decision = os.environ.get("BOOTSTRAP_DECISION", "")
    data_dir = Path(os.environ.get("HOOK_DATA_DIR") or Path("etcd-data") / me.name)
    seeds = seed_client_urls(os.environ.get("BOOTSTRAP_SEED_NODES", ""))
    adds = 0
    if (data_dir / "member").is_dir():
        # A member that ran before keeps its identity and its cluster: etcd ignores the initial
        # cluster flags then, and a second member add would only be refused.
        say(f"{data_dir} exists: restarting member {me.name} as it was")
        flags: tuple[str, ...] = ()
    elif decision == "join-self":
        token = f"cluster-bootstrap-{uuid.uuid4()}"
        say(f"forming a new etcd cluster (token {token})")
        flags = (
            "--initial-cluster-state=new",
            f"--initial-cluster={me.name}={me.peer_url}",
            f"--initial-cluster-token={token}",
        )
    elif decision == "join-seed-nodes":
        if not seeds:
            fail("join-seed-nodes without seed nodes")
        say(f"joining through {seeds}")
        members, adds = add_learner(me, seeds)
        flags = (
            "--initial-cluster-state=existing",
            f"--initial-cluster={initial_cluster(members)}",
        )
    else:
        fail(f"unknown BOOTSTRAP_DECISION {decision!r}")

    fresh = not (data_dir / "member").exists()
    etcd = start_etcd(me, data_dir, *flags)
    # From now on a SIGTERM (the node stopping) stops etcd, and we exit as it does.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda signum, frame: etcd.send_signal(signum))
    promotes = wait_ready(me, etcd, seeds)
    if promotes is None:
        etcd.terminate()
        status = etcd.wait()
        if fresh and (data_dir / "member").exists():
            # Never ready: set what it wrote aside, so the next run joins again instead of
            # restarting a member that never joined (its learner is removed then).
            aside = data_dir.with_name(f"{data_dir.name}.failed-{int(time.time())}")
            (data_dir / "member").rename(aside)
            say(f"moved the data of the failed start to {aside}")
        fail(f"etcd did not become a healthy voting member ({describe(status)})")
    say(f"member {me.name} is healthy; member add retries: {adds}; promote retries: {promotes}")
    ready_fd = os.environ.get("BOOTSTRAP_READY_FD")
    if ready_fd:
        os.write(int(ready_fd), b"READY\n")
        os.close(int(ready_fd))
    status = etcd.wait()
    say(f"etcd exited ({describe(status)})")
    # A shell's convention for a process a signal ended: 128 + the signal's number.
    sys.exit(128 - status if status < 0 else status)


if __name__ == "__main__":
    main()
