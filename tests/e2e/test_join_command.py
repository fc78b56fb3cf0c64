"""``--join-command`` end to end: real node processes on loopback, a shell script as the hook.

Node A (the lowest address, so the founder) joins with a command that fails on its first run,
is ready on its second (its "service" is then up: it creates a file), and dies later on
request. Node B's command stands for joining A's service: it fails unless that file exists.
(B may decide to join A as soon as A decides: a founder's document says it is founding, DESIGN
8.5; a hook that joins a real service fails or retries until the founder's service is up.)

What must hold: a failing command is a failed join that is retried (A's command runs twice,
both times to form), ``/ready`` follows the command, and a command that died after it was
ready withdraws A's seed nodes.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import httpx

from tests.helpers.ports import free_port

from .loopback import loopback_points
from .test_graceful_shutdown import START_DEADLINE, running_nodes, wait_until


def ready(url: str) -> int | None:
    try:
        return httpx.get(f"{url}/ready", timeout=2).status_code
    except httpx.HTTPError:
        return None


def test_a_failing_join_command_is_retried_ready_follows_it_and_its_death_withdraws_seeds(
    tmp_path: Path,
) -> None:
    points = loopback_points(2, free_port(), first=201)
    common = [
        *("--contact-points", ",".join(map(str, points)), "--required-contact-points", "2"),
        *("--stable-margin", "0.5", "--probe-interval", "0.3"),
    ]
    runs, b_runs, service, crash = (tmp_path / name for name in ("runs", "b-runs", "up", "crash"))
    hook = (
        f'echo "$BOOTSTRAP_DECISION" >> {runs}; '
        f'[ "$(wc -l < {runs})" -ge 2 ] || exit 3; '
        f'touch {service}; echo READY > "/dev/fd/$BOOTSTRAP_READY_FD"; '
        f"while [ ! -e {crash} ]; do sleep 0.05; done; exit 1"
    )
    b_hook = f'echo "$BOOTSTRAP_DECISION" >> {b_runs}; [ -e {service} ]'
    args = {
        points[0]: [*common, "--join-command", f"sh -c {shlex.quote(hook)}"],
        points[1]: [*common, "--join-command", f"sh -c {shlex.quote(b_hook)}"],
    }
    with running_nodes(tmp_path, args) as (a, b):
        wait_until(
            lambda: ready(a.url) == 200 and (s := b.status()) is not None and s["joined"],
            START_DEADLINE,
        )
        assert runs.read_text().split() == ["join-self", "join-self"]
        assert set(b_runs.read_text().split()) == {"join-seed-nodes"}
        assert ready(a.url) == 200
        a_status, b_status = a.status(), b.status()
        assert a_status is not None
        assert b_status is not None
        assert a_status["joined"]
        assert a_status["decision"] == {"kind": "join-self"}
        assert b_status["decision"] == {
            "kind": "join-seed-nodes",
            "seedNodes": [a_status["selfNode"]],
        }
        log = a.log()
        assert "JoinCommandFailed: the join command exited with status 3 before it was ready" in (
            log
        )
        assert (log.count("decided:"), log.count(": joined")) == (2, 1), log
        seeds = httpx.get(f"{a.url}/bootstrap/seed-nodes", timeout=2).json()["seedNodes"]
        assert [s["node"] for s in seeds] == [a_status["selfNode"]]

        crash.touch()
        wait_until(lambda: ready(a.url) == 503, 10)
        seeds = httpx.get(f"{a.url}/bootstrap/seed-nodes", timeout=2).json()["seedNodes"]
        assert seeds == []
        assert "the join command exited with status 1 after it was ready" in a.log()
        assert "Traceback" not in a.log()
