"""CPU time of processes and their children, read from /proc: for the benchmarks' cost figures."""

import contextlib
import os
from pathlib import Path

# CPU ticks per second, for tree_ticks.
TICK = os.sysconf("SC_CLK_TCK")


def proc_stat(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name, or [] once the process is gone."""
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return []


def tree_ticks(pid: int) -> int:
    """CPU ticks of a process, its live children and the children it has reaped: a group whose
    members come and go (PostgreSQL backends, pool processes) is still counted in full."""
    pids = [pid]
    with contextlib.suppress(OSError):
        pids += map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split())
    return sum(sum(int(field) for field in stat[11:15]) for stat in map(proc_stat, pids) if stat)
