"""Whether the process a file names still runs: its pid *and* its start time, so a reused pid is never trusted.

    me = this_process()             # {"pid", "started", "host"}: written beside every pid this project records
    record_alive(record)            # True / False on this machine; None for a record from another machine
    pid_alive(pid, started)         # the same for a bare pid (and its start time, when one was recorded)

A pid alone says little once its process has ended: the system hands the number to the next process that starts,
and a status file naming it would look alive for as long as that stranger runs. The start time
(``psutil.Process(pid).create_time()``) tells them apart. A zombie (exited, not yet reaped by its parent) has
stopped working and counts as gone.
"""

from __future__ import annotations

import os
import socket
from typing import Any

# create_time() is the boot time plus the start in clock ticks (1/100 s): the same process reads the same value from
# any process; a clock adjustment can move the boot time by a fraction of a second, never a reused pid's start.
START_TOLERANCE_S = 1.0


def started_at(pid: int) -> float | None:
    """When process ``pid`` started (epoch seconds), or None when there is no such process (or it is not ours to see)."""
    import psutil

    try:
        return psutil.Process(int(pid)).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def this_process() -> dict[str, Any]:
    """The record that names this process: ``{"pid", "started", "host"}``."""
    return {"pid": os.getpid(), "started": started_at(os.getpid()), "host": socket.gethostname()}


def pid_alive(pid: int, started: float | None = None) -> bool:
    """Whether process ``pid`` runs on this machine and, given ``started``, is the process that started then.

    Args:
        pid: the recorded process id.
        started: its recorded start time (epoch seconds, ``started_at``); None for a record written without one.
    """
    import psutil

    try:
        p = psutil.Process(int(pid))
        if p.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(p.create_time() - float(started)) <= START_TOLERANCE_S
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # another user's process: it exists
        return True


def record_alive(record: Any) -> bool | None:
    """Whether the process a record names (``pid``, ``started``, ``host``) still runs.

    Returns:
        True or False for a record written on this machine; None for one written on another machine, whose
        processes cannot be seen from here (the caller decides by the record's age); False for a record naming no pid.
    """
    if not isinstance(record, dict) or not isinstance(record.get("pid"), int) or record["pid"] <= 0:
        return False
    if record.get("host") not in (None, socket.gethostname()):
        return None
    started = record.get("started")
    return pid_alive(record["pid"], float(started) if isinstance(started, (int, float)) else None)
