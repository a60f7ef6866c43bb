"""dlgate.cores: how many cores a real process group uses, and waiting for an idle one."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from dlgate.cores import cpu_ns, wait_for_idle_core

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux /proc")

BUSY = "import time\nend = time.monotonic() + 30\nwhile time.monotonic() < end:\n    pass\n"


def _group(*scripts: str) -> subprocess.Popen[bytes]:
    """A process group (a session of its own, as the gate starts the training command) whose
    leader starts one process per script, then sleeps."""
    leader = (
        "import subprocess, sys, time\n"
        "kids = [subprocess.Popen([sys.executable, '-c', s]) for s in sys.argv[1:]]\n"
        "time.sleep(30)\n"
    )
    return subprocess.Popen([sys.executable, "-c", leader, *scripts], start_new_session=True)


@pytest.fixture
def groups() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        proc.wait()


def test_a_busy_group_uses_about_one_core_per_busy_process(
    groups: list[subprocess.Popen[bytes]],
) -> None:
    group = _group(BUSY)
    groups.append(group)
    time.sleep(0.5)  # the leader starts its child
    before, start = cpu_ns(group.pid), time.monotonic()
    time.sleep(0.5)
    after, end = cpu_ns(group.pid), time.monotonic()
    assert before is not None and after is not None
    cores = (after - before) / 1e9 / (end - start)
    assert 0.6 < cores < 1.3, cores


def test_a_group_that_is_not_there_is_not_measured() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    proc.wait()
    assert cpu_ns(proc.pid) is None
    assert wait_for_idle_core(proc.pid) is False


def test_a_sleeping_group_leaves_a_core_idle(groups: list[subprocess.Popen[bytes]]) -> None:
    group = _group()
    groups.append(group)
    start = time.monotonic()
    assert wait_for_idle_core(group.pid) is True
    assert time.monotonic() - start < 5


def test_a_group_on_every_core_is_waited_for_until_done(
    groups: list[subprocess.Popen[bytes]],
) -> None:
    group = _group(*[BUSY] * (os.cpu_count() or 1))
    groups.append(group)
    time.sleep(0.5)
    done = threading.Event()
    threading.Timer(1.5, done.set).start()
    start = time.monotonic()
    assert wait_for_idle_core(group.pid, done) is False
    assert time.monotonic() - start >= 1.4  # it never saw an idle core


def test_waiting_ends_when_the_group_ends(groups: list[subprocess.Popen[bytes]]) -> None:
    group = _group(*[BUSY] * (os.cpu_count() or 1))
    groups.append(group)
    time.sleep(0.5)
    threading.Timer(1.0, lambda: os.killpg(group.pid, 9)).start()
    start = time.monotonic()
    assert wait_for_idle_core(group.pid) is False
    assert time.monotonic() - start < 10
