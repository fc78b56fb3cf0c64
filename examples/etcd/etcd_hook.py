#!/usr/bin/env python3
"""Start an etcd member as cluster-bootstrap decided: form a new etcd cluster, or join one.

Run by ``cluster-bootstrap node --join-command`` (see docs/etcd.md), which sets:

* ``BOOTSTRAP_SELF_NODE``: this member, ``etcd://HOST:CLIENT_PORT,PEER_PORT``
  (the node's ``--node-address``), e.g. ``etcd://10.0.0.3:2379,2380``;
* ``BOOTSTRAP_DECISION``: ``join-self`` (form a new cluster) or ``join-seed-nodes``;
* ``BOOTSTRAP_SEED_NODES``: for ``join-seed-nodes``, members of the cluster to join, in the same
  form, comma-separated;
* ``BOOTSTRAP_READY_FD``: where to write ``READY`` once this member is healthy.

It then stays the parent of etcd: SIGTERM is passed on to etcd, and it exits as etcd does. A
non-zero exit before ``READY`` tells the node the join failed; the node probes again and runs
this hook again at its probe pace.

Optional settings, from the environment: ``HOOK_DATA_DIR`` (default ``etcd-data/<name>``),
``HOOK_ETCD_BIN`` and ``HOOK_ETCDCTL_BIN`` (default ``etcd`` and ``etcdctl`` on the PATH),
``HOOK_ADD_TIMEOUT`` (seconds to keep retrying ``member add``, default 120) and
``HOOK_READY_TIMEOUT`` (seconds for the member to become healthy, default 60). Not ``ETCD_...``:
etcd reads every ``ETCD_`` variable as one of its flags, and refuses to start when a flag is
given both ways.

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


def describe(status: int) -> str:
    return f"killed by signal {-status}" if status < 0 else f"exit status {status}"


def etcdctl(endpoints: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ETCDCTL, f"--endpoints={endpoints}", "--dial-timeout=2s", "--command-timeout=5s", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def initial_cluster(members: list[dict[str, object]], me: Member) -> str:
    """``name=peer-url,...`` for every member etcd lists, this one included."""
    entries = []
    for member in members:
        for url in member.get("peerURLs", []):  # type: ignore[union-attr]
            name = member.get("name") or name_for(str(url))
            entries.append(f"{name}={url}")
    if not any(entry.endswith(f"={me.peer_url}") for entry in entries):
        entries.append(f"{me.name}={me.peer_url}")
    return ",".join(entries)


def add_member(me: Member, seeds: list[Member]) -> tuple[list[dict[str, object]], int]:
    """``member add`` through the seeds' client URLs until it succeeds; the cluster's members
    then, this one included, and how many times it had to retry.

    etcd 3.4 refuses to add a member unless every member has been connected to the leader for
    the last 5 s and the members started so far would still be a quorum ("unhealthy cluster",
    "not enough started members"): so members join one at a time, about 5 s apart. A cluster
    without a leader, or whose first member is still starting, does not answer in time. Each
    refusal waits and tries again, the wait doubling from 0.5 s up to 5 s, for at most
    HOOK_ADD_TIMEOUT seconds.
    """
    endpoints = ",".join(seed.client_url for seed in seeds)
    deadline = time.monotonic() + ADD_TIMEOUT
    delay, retries = 0.5, 0
    while True:
        added = etcdctl(
            endpoints, "member", "add", me.name, f"--peer-urls={me.peer_url}", "-w", "json"
        )
        if added.returncode == 0:
            return current_members(endpoints, json.loads(added.stdout)["members"]), retries
        error = added.stderr.strip().splitlines()[-1] if added.stderr.strip() else "no output"
        if "Peer URLs already exists" in error:
            # An earlier run of this hook added us and died before etcd started: go on with it.
            # A member that has started under this URL is another, older one: not ours to take.
            listed = etcdctl(endpoints, "member", "list", "-w", "json")
            if listed.returncode == 0:
                members = json.loads(listed.stdout)["members"]
                mine = [m for m in members if me.peer_url in m.get("peerURLs", [])]
                if mine and not mine[0].get("name"):
                    say(f"{me.peer_url} was added already (not started yet): starting it")
                    return current_members(endpoints, members), retries
                if mine:
                    fail(
                        f"member {mine[0]['ID']:x} ({mine[0]['name']}) already has {me.peer_url} "
                        f"and this member has no data directory: remove it first "
                        f"(etcdctl member remove {mine[0]['ID']:x})"
                    )
        if time.monotonic() + delay > deadline:
            fail(f"member add failed {retries + 1} times in {ADD_TIMEOUT:.0f} s; last: {error}")
        retries += 1
        say(f"member add refused ({error}); retry {retries} in {delay:.1f} s")
        time.sleep(delay * random.uniform(0.8, 1.2))
        delay = min(delay * 2, 5.0)


def current_members(endpoints: str, members: list[dict[str, object]]) -> list[dict[str, object]]:
    """The members as the cluster has them now (``members`` if it does not answer).

    Another member may have been added since ``members`` was read (etcd allows it once a
    quorum has started), and etcd refuses to start unless ``--initial-cluster`` lists exactly
    the cluster's members: so list them again, as late as possible. (Should one still slip in
    between, etcd exits at once, "member count is unequal", and the next run of the hook finds
    this member added and goes on.)
    """
    listed = etcdctl(endpoints, "member", "list", "-w", "json")
    return json.loads(listed.stdout)["members"] if listed.returncode == 0 else members


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


def wait_healthy(me: Member, etcd: subprocess.Popen[bytes]) -> bool:
    """Until this member answers a linearizable read (it has a leader and is caught up)."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if etcd.poll() is not None:
            return False
        if etcdctl(me.client_url, "endpoint", "health").returncode == 0:
            return True
        time.sleep(0.5)
    return False


def main() -> None:
    me = Member(os.environ["BOOTSTRAP_SELF_NODE"])
    decision = os.environ.get("BOOTSTRAP_DECISION", "")
    data_dir = Path(os.environ.get("HOOK_DATA_DIR") or Path("etcd-data") / me.name)
    retries = 0
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
        # The list is comma-separated and each selfNode has a comma too: split before "etcd://".
        nodes = re.split(r",(?=etcd://)", os.environ.get("BOOTSTRAP_SEED_NODES", ""))
        seeds = [Member(node) for node in nodes if node]
        if not seeds:
            fail("join-seed-nodes without seed nodes")
        say(f"joining through {', '.join(seed.client_url for seed in seeds)}")
        members, retries = add_member(me, seeds)
        # Another member may have been added meanwhile (etcd allows it while a quorum of the
        # members has started), and etcd refuses to start unless --initial-cluster lists the
        # members exactly as the cluster has them now: list them again, as late as possible.
        listed = etcdctl(
            ",".join(seed.client_url for seed in seeds), "member", "list", "-w", "json"
        )
        if listed.returncode == 0:
            members = json.loads(listed.stdout)["members"]
        flags = (
            "--initial-cluster-state=existing",
            f"--initial-cluster={initial_cluster(members, me)}",
        )
    else:
        fail(f"unknown BOOTSTRAP_DECISION {decision!r}")

    fresh = not (data_dir / "member").exists()
    etcd = start_etcd(me, data_dir, *flags)
    # From now on a SIGTERM (the node stopping) stops etcd, and we exit as it does.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda signum, frame: etcd.send_signal(signum))
    if not wait_healthy(me, etcd):
        etcd.terminate()
        status = etcd.wait()
        if fresh and (data_dir / "member").exists():
            # Never healthy: set what it wrote aside, so the next run joins again instead of
            # restarting a member that never joined.
            aside = data_dir.with_name(f"{data_dir.name}.failed-{int(time.time())}")
            (data_dir / "member").rename(aside)
            say(f"moved the data of the failed start to {aside}")
        fail(f"etcd did not become healthy ({describe(status)})")
    say(f"member {me.name} is healthy; member add retries: {retries}")
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
