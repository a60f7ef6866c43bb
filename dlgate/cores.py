"""How many cores a process group is using now, from the kernel's own accounting.

The gate can do work ahead of its use (the smoke battery, say) on a core the training command
leaves idle, but work beside a training that wants every core slows it down: an OpenMP
training loop stalls at each barrier while one of its threads waits for a core (the example's
loop took 0.8 s alone and 1.6-2.1 s beside the gate's imports). `wait_for_idle_core` tells
the two apart by the group's CPU time (Linux `/proc/<pid>/task/<tid>/schedstat`, nanoseconds)
over short windows.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

_PROC = Path("/proc")
WINDOW_S = 0.05  # one measurement
CALM = 3  # windows in a row with a core to spare


def cpu_ns(group: int) -> int | None:
    """CPU time used so far by every thread of every live process in process group `group`;
    None where the system does not say (not Linux) or the group has ended."""
    total, found = 0, False
    try:
        entries = list(_PROC.iterdir())
    except OSError:
        return None
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            state, _ppid, pgrp = stat[stat.rindex(")") + 2 :].split()[:3]
            if int(pgrp) != group or state in "ZX":  # a zombie has ended: it uses nothing
                continue
            for task in (entry / "task").iterdir():
                total += int((task / "schedstat").read_text().split()[0])
            found = True
        except (OSError, ValueError, IndexError):
            continue  # a process or thread that ended while we looked
    return total if found else None


def wait_for_idle_core(group: int, done: threading.Event | None = None) -> bool:
    """Wait until process group `group` leaves a core idle: it used at most `cores - 1` of
    them (plus a little) for `CALM` windows in a row. False where it cannot be measured or
    has ended, or once `done` is set."""
    done = done or threading.Event()
    limit = (os.cpu_count() or 1) - 1 + 0.3
    calm = 0
    last, since = cpu_ns(group), time.monotonic()
    while calm < CALM:
        if last is None or done.wait(WINDOW_S):
            return False
        now, at = cpu_ns(group), time.monotonic()
        if now is None:
            return False
        calm = calm + 1 if (now - last) / 1e9 / (at - since) <= limit else 0
        last, since = now, at
    return True
