"""Whether a process runs, as a test that kills processes must ask it."""

from __future__ import annotations

from pathlib import Path


def running(pid: int) -> bool:
    """Whether ``pid`` runs. A killed process that its parent has not reaped yet (a zombie)
    does not, although ``kill(pid, 0)`` still finds it: in a container whose init does not
    reap, orphans stay zombies for good."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    # The state follows the command name, which is in parentheses and may hold anything.
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")
