"""The churn benchmark's view of a Pekko node (``benchmarks.node_processes.PekkoProcess``).

The benchmark counts clusters by ``join-self`` decisions and times formation by ``joined_at``;
for a Pekko node both come from its output (the bootstrap coordinator's decision line and
``EVENT self-up``). Two real JVMs on loopback form one cluster: exactly one must be read as
``join-self`` and the other as ``join-seed-nodes``, each Up after it listened and decided. If
Pekko's log wording changed, the decisions would read ``None`` and this test fails.
"""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks.node_processes import PekkoProcess
from benchmarks.pekko.driver import PekkoNodeConfig, write_contact_points
from tests.helpers.ports import free_port

READY_TIMEOUT = 60.0
FORMATION_TIMEOUT = 60.0


def test_two_pekko_processes_read_as_one_self_join_and_one_join(
    pekko_jar: Path, tmp_path: Path
) -> None:
    hosts = ["127.0.0.61", "127.0.0.62"]
    ports = [free_port(host) for host in hosts]
    contact_points = tmp_path / "contact-points"
    write_contact_points(contact_points, [f"{h}:{p}" for h, p in zip(hosts, ports, strict=True)])
    processes = []
    try:
        for index, (host, port) in enumerate(zip(hosts, ports, strict=True)):
            config = PekkoNodeConfig(
                host=host,
                remote_port=free_port(host),
                management_port=port,
                contact_points_file=contact_points,
                required_contact_points=2,
                stable_margin=1.0,
            )
            processes.append(PekkoProcess(index, config, pekko_jar, tmp_path / f"{index}.log", ()))
        for process in processes:
            process.wait_listening(READY_TIMEOUT)
        deadline = time.monotonic() + FORMATION_TIMEOUT
        while not all(p.latest["joined_at"] is not None for p in processes):
            assert time.monotonic() < deadline, [p.node.lines[-20:] for p in processes]
            assert all(p.alive for p in processes)
            time.sleep(0.2)
        records = [p.latest for p in processes]
        assert sorted(r["decision"] for r in records) == ["join-seed-nodes", "join-self"], records
        for process, record in zip(processes, records, strict=True):
            assert process.listening_at is not None
            assert process.spawned_at <= process.listening_at <= record["decided_at"]
            assert record["decided_at"] <= record["joined_at"]
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.stop()
    # Stopping writes each node's output to its log, where the benchmark keeps it.
    assert "READY management=" in (tmp_path / "0.log").read_text()
