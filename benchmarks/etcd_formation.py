"""How fast cluster-bootstrap sidecars form a real etcd cluster, and how often the hook retries.

Each attempt starts N members (``tests/etcd/members.py``: a node and, through its
``--join-command``, a real etcd 3.4, each member in a network namespace of its own) in a random
order at random moments within 5 s, the start order of ``tests/etcd/test_etcd_cluster.py``,
and measures:

* ``formation``: seconds from the last start to one healthy N-member etcd cluster (every
  member answers, reports the same cluster ID and lists all N as started) whose every node has
  joined (its hook said READY);
* ``member add retries`` per member, as the hook reports them (the founder's is 0): etcd 3.4
  adds members one at a time, and refuses an add until every member has been connected for
  5 s, so members wait for each other;
* ``hook runs`` per member: above 1 when etcd refused to start (the hook exits 1 and the node
  decides again).

    sudo python benchmarks/etcd_formation.py                 # N = 3 and 5, 3 attempts each
    sudo python benchmarks/etcd_formation.py --sizes 5 --attempts 10

Needs root, iproute2, nftables, ``etcd`` and ``etcdctl``. Writes ``etcd_formation.json`` into
``--output`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.etcd.members import ETCD_NODES, EtcdMembers  # noqa: E402
from tests.faults.cluster import FaultCluster  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "etcd_formation"
TIMEOUT = 180.0


def attempt(count: int, seed: int, directory: Path) -> dict[str, Any]:
    """One formation of ``count`` members; its figures."""
    rng = random.Random(seed)
    order = rng.sample(range(count), count)
    moments = sorted(rng.uniform(0, 5) for _ in order)
    with FaultCluster(directory, count, **ETCD_NODES) as cluster:
        members = EtcdMembers(cluster, directory)
        began = time.monotonic()
        for index, moment in zip(order, moments, strict=True):
            time.sleep(max(0.0, began + moment - time.monotonic()))
            members.start(index, range(count), required=count)
        last_start = max(members.started_at.values())
        healthy_at = members.wait_healthy(range(count), timeout=TIMEOUT)
        return {
            "count": count,
            "seed": seed,
            "order": order,
            "formation_s": round(healthy_at - last_start, 2),
            "add_retries": [members.add_retries(i) for i in range(count)],
            "hook_runs": [cluster.log(i).count("started the join command") for i in range(count)],
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="3,5", help="comma-separated N (default 3,5)")
    parser.add_argument("--attempts", type=int, default=3, help="attempts per N (default 3)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",")]
    runs = []
    for count in sizes:
        for seed in range(args.attempts):
            with tempfile.TemporaryDirectory(prefix=f"etcd-{count}-{seed}-") as directory:
                run = attempt(count, seed, Path(directory))
            print(json.dumps(run), flush=True)
            runs.append(run)
    args.output.mkdir(parents=True, exist_ok=True)
    output = args.output / "etcd_formation.json"
    output.write_text(
        json.dumps({"machine": platform.platform(), "runs": runs}, indent=2) + "\n",
        encoding="utf-8",
    )
    print(f"\nwrote {output}\n")
    print(
        "| N | attempts | formation, median (min-max) | member add retries per attempt "
        "| hook runs above 1 |"
    )
    print("|---|---|---|---|---|")
    for count in sizes:
        mine = [run for run in runs if run["count"] == count]
        times = [run["formation_s"] for run in mine]
        retries = [sum(r or 0 for r in run["add_retries"]) for run in mine]
        reruns = sum(hook_runs - 1 for run in mine for hook_runs in run["hook_runs"])
        print(
            f"| {count} | {len(mine)} | {statistics.median(times):.1f} s "
            f"({min(times):.1f}-{max(times):.1f}) | {', '.join(map(str, retries))} | {reruns} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
