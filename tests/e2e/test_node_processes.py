"""End to end with separate processes: five ``cluster-bootstrap node`` processes on loopback.

Policy: real processes and sockets; each test bounds itself with a deadline and always kills
what it started. Assertions read the nodes' own ``/bootstrap/status``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.helpers.ports import free_port

from .loopback import loopback_points

DEADLINE = 45.0


@contextmanager
def node_processes(
    args_per_node: list[list[str]], env: dict[str, str] | None = None
) -> Iterator[list[subprocess.Popen[str]]]:
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "bootstrap", "node", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
        )
        for args in args_per_node
    ]
    try:
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
            if process.stdout is not None:
                process.stdout.close()


def wait_for_statuses(urls: list[str], done: object, deadline: float) -> list[dict[str, object]]:
    statuses: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        statuses = []
        for url in urls:
            try:
                statuses.append(httpx.get(f"{url}/bootstrap/status", timeout=2.0).json())
            except httpx.HTTPError:
                break
        if len(statuses) == len(urls) and done(statuses):  # type: ignore[operator]
            return statuses
        time.sleep(0.2)
    raise AssertionError(f"not done before the deadline; last statuses: {statuses}")


def test_five_node_processes_form_one_cluster_and_stop_cleanly_on_sigterm(
    tmp_path: Path,
) -> None:
    """Five node processes (static discovery): one forms, four join; SIGTERM exits 0.

    Also: a setting from the environment, --on-decided as a sidecar hook, the status command.
    """
    points = loopback_points(5, free_port(), first=51)
    listing = ",".join(map(str, points))
    args = [
        ["--contact-point", str(point), "--contact-points", listing, "--stable-margin", "1"]
        for point in points
    ]
    marker = tmp_path / "decided"
    hook = f'echo "$BOOTSTRAP_DECISION $BOOTSTRAP_SEED_NODES" > {marker}'
    args[1] += ["--on-decided", f"sh -c '{hook}'"]
    # One setting comes from the environment, as a deployment would pass it.
    with node_processes(args, env={"BOOTSTRAP_REQUIRED_CONTACT_POINTS": "5"}) as processes:
        urls = [f"http://{point}" for point in points]
        statuses = wait_for_statuses(
            urls, lambda ss: all(s["joined"] for s in ss), time.monotonic() + DEADLINE
        )
        kinds = [s["decision"]["kind"] for s in statuses]  # type: ignore[index]
        assert kinds == ["join-self"] + ["join-seed-nodes"] * 4
        for status in statuses[1:]:
            # Joined through the founder (or through a node that had already joined it).
            assert status["decision"]["seedNodes"][0] == f"http://{points[0]}"  # type: ignore[index]
        status_output = subprocess.run(
            [sys.executable, "-m", "bootstrap", "status", urls[1]],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        assert "joined: True" in status_output
        assert str(points[0]) in status_output
        deadline = time.monotonic() + 10
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.read_text().split()[0] == "join-seed-nodes"
        assert f"http://{points[0]}" in marker.read_text()
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            assert process.wait(timeout=10) == 0
        output = processes[0].stdout.read()  # type: ignore[union-attr]
        assert "decided: formed a new cluster" in output
