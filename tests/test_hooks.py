"""User code in a child process: whatever it does becomes a HookError, never a dead gate.

Each test writes a real user module into a scratch repository folder; the child imports it
from there (its working directory), as the gate imports a pipeline's model factory.
"""

from __future__ import annotations

import os
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hook_targets import call_user

from dlgate import hooks
from dlgate.errors import HookError

HOOK = "pipeline.model"

USER_MODULE = '''
import ctypes
import os
import subprocess
import sys
import time


class Model:
    """A class the gate's process cannot import: the module lives in the user's repository."""


def add(a, b):
    return {"sum": a + b, "cwd": os.getcwd(), "pid": os.getpid()}


def boom():
    raise ValueError("learning rate must be positive, got -0.1")


def hang():
    time.sleep(60)


def exit_hard():
    os._exit(3)


def segfault():
    ctypes.string_at(0)


def own_object():
    return Model()


def unpicklable():
    return lambda: 1


def nap(seconds):
    time.sleep(seconds)
    return time.monotonic()


def spawn_and_hang():
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    with open("grandchild.pid", "w") as f:
        f.write(str(sleeper.pid))
    time.sleep(60)
'''


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    (path / "userhooks.py").write_text(textwrap.dedent(USER_MODULE), encoding="utf-8")
    return path


def run_hook(repo: Path, spec: str, *args: object, timeout: float = 30) -> object:
    return hooks.call(call_user, spec, *args, cwd=repo, timeout=timeout, hook=HOOK)


def hook_error(repo: Path, spec: str, *, timeout: float = 30) -> HookError:
    with pytest.raises(HookError) as info:
        run_hook(repo, spec, timeout=timeout)
    assert info.value.hook == HOOK
    assert str(info.value).startswith(f"{HOOK}: ")
    return info.value


def is_gone(pid: int) -> bool:
    """No such process, or a zombie nobody reaped yet (a dead process all the same)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def wait_until(predicate: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


# --- hooks.call -------------------------------------------------------------------------------


def test_a_return_value_comes_back_from_a_child_in_the_repository(repo: Path) -> None:
    result = run_hook(repo, "userhooks:add", 2, 3)
    assert isinstance(result, dict)
    assert result["sum"] == 5
    assert Path(result["cwd"]) == repo  # user code runs in the repository
    assert result["pid"] != os.getpid()  # ...and not in the gate's process
    assert "userhooks" not in sys.modules


def test_an_exception_is_raised_with_its_message_and_traceback(repo: Path) -> None:
    err = hook_error(repo, "userhooks:boom")
    assert err.kind == "raised"
    assert "ValueError: learning rate must be positive, got -0.1" in str(err)
    assert "Traceback" in err.details
    assert "userhooks.py" in err.details
    assert "in boom" in err.details


def test_a_hang_times_out_and_the_gate_goes_on(repo: Path) -> None:
    start = time.monotonic()
    err = hook_error(repo, "userhooks:hang", timeout=1.5)
    elapsed = time.monotonic() - start
    assert err.kind == "timeout"
    assert "1.5s" in str(err)
    assert elapsed < 1.5 + 3, f"took {elapsed:.1f}s"


def test_a_timeout_also_kills_what_user_code_spawned(repo: Path) -> None:
    err = hook_error(repo, "userhooks:spawn_and_hang", timeout=3)
    assert err.kind == "timeout"
    pid = int((repo / "grandchild.pid").read_text())
    assert wait_until(lambda: is_gone(pid)), f"grandchild {pid} still running"


def test_os_exit_is_a_crash(repo: Path) -> None:
    err = hook_error(repo, "userhooks:exit_hard")
    assert err.kind == "crashed"
    assert "exit 3" in str(err)


def test_a_segfault_is_a_crash(repo: Path) -> None:
    err = hook_error(repo, "userhooks:segfault")
    assert err.kind == "crashed"
    assert "signal 11" in str(err)


def test_an_import_error_in_user_code_names_the_module(repo: Path) -> None:
    (repo / "broken.py").write_text("import not_installed_xyz\n\ndef f():\n    return 1\n")
    err = hook_error(repo, "broken:f")
    assert err.kind == "raised"
    assert "ModuleNotFoundError: No module named 'not_installed_xyz'" in str(err)
    assert "broken.py" in err.details


def test_a_missing_user_module_is_named(repo: Path) -> None:
    err = hook_error(repo, "no_such_module:f")
    assert err.kind == "raised"
    assert "No module named 'no_such_module'" in str(err)


def test_a_missing_function_is_named(repo: Path) -> None:
    err = hook_error(repo, "userhooks:nope")
    assert err.kind == "raised"
    assert "nope" in str(err)


def test_a_user_module_shadowing_a_stdlib_name_stays_in_the_child(repo: Path) -> None:
    # A repository with its own `wave.py` (an import clash) must not break the gate.
    (repo / "wave.py").write_text("raise ImportError('this is the user wave')\n")
    (repo / "clash.py").write_text("import wave\n\ndef f():\n    return 1\n")
    err = hook_error(repo, "clash:f")
    assert err.kind == "raised"
    assert "ImportError: this is the user wave" in str(err)
    import wave

    assert wave.open.__module__ == "wave"  # the gate's own import is untouched


def test_a_value_of_a_user_class_is_a_bad_return(repo: Path) -> None:
    err = hook_error(repo, "userhooks:own_object")
    assert err.kind == "bad-return"
    assert "userhooks" in str(err)
    assert "return plain Python or numpy values" in str(err)


def test_an_unpicklable_value_is_a_bad_return(repo: Path) -> None:
    err = hook_error(repo, "userhooks:unpicklable")
    assert err.kind == "bad-return"
    assert "cannot be sent back" in str(err)


# --- hooks.command ----------------------------------------------------------------------------

SPAWN_AND_HANG = """
import subprocess, sys, time
sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
open("grandchild.pid", "w").write(str(sleeper.pid))
time.sleep(60)
"""

FAIL_LOUDLY = """
import sys
print("epoch 1: loss 2.30")
print("RuntimeError: CUDA out of memory", file=sys.stderr)
sys.exit(4)
"""

WRITE_MODEL = """
import pathlib, sys
out = pathlib.Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
(out / "model.onnx").write_bytes(b"onnx")
print("wrote", out)
"""


def run_command(repo: Path, line: str, *, timeout: float = 30, out: Path | None = None) -> Path:
    log = repo.parent / "logs" / "train.log"
    hooks.command(
        line,
        cwd=repo,
        timeout=timeout,
        hook="pipeline.train",
        log=log,
        substitutions={"out": str(out or repo.parent / "out")},
    )
    return log


def command_error(repo: Path, line: str, *, timeout: float = 30) -> HookError:
    with pytest.raises(HookError) as info:
        run_command(repo, line, timeout=timeout)
    assert info.value.hook == "pipeline.train"
    return info.value


def test_a_command_gets_out_substituted_and_its_output_logged(repo: Path) -> None:
    (repo / "train.py").write_text(WRITE_MODEL)
    out = repo.parent / "run out"  # a space: substituted as one argument, no shell
    log = run_command(repo, "python train.py {out}", out=out)
    assert (out / "model.onnx").read_bytes() == b"onnx"
    assert f"wrote {out}" in log.read_text()


def test_a_failing_command_quotes_its_last_output_line(repo: Path) -> None:
    (repo / "train.py").write_text(FAIL_LOUDLY)
    err = command_error(repo, "python train.py")
    assert err.kind == "failed"
    assert "exited with status 4: RuntimeError: CUDA out of memory" in str(err)
    assert "epoch 1: loss 2.30" in err.details


def test_a_command_timeout_kills_the_whole_process_group(repo: Path) -> None:
    (repo / "train.py").write_text(SPAWN_AND_HANG)
    start = time.monotonic()
    err = command_error(repo, "python train.py", timeout=2)
    assert time.monotonic() - start < 2 + 3
    assert err.kind == "timeout"
    assert "2s" in str(err)
    pid = int((repo / "grandchild.pid").read_text())
    assert wait_until(lambda: is_gone(pid)), f"grandchild {pid} still running"


def test_a_missing_program_says_so(repo: Path) -> None:
    err = command_error(repo, "no-such-trainer-xyz --epochs 1")
    assert err.kind == "failed"
    assert "cannot start 'no-such-trainer-xyz'" in str(err)
    assert "PATH" in str(err)


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("python train.py {output}", "unknown placeholder {output}"),
        ("python -c 'print({1: 2})'", "write {{ and }} for literal braces"),
        ("python 'unclosed", "No closing quotation"),
        ("", "the command is empty"),
    ],
)
def test_a_malformed_command_line_says_what_is_wrong(repo: Path, line: str, fragment: str) -> None:
    err = command_error(repo, line)
    assert err.kind == "failed"
    assert fragment in str(err)


def test_literal_braces_are_doubled(repo: Path) -> None:
    log = run_command(repo, "python -c 'print({{1: 2}})'")
    assert "{1: 2}" in log.read_text()


def test_a_command_stops_when_the_run_ends(repo: Path) -> None:
    """The training command runs in the background of a run; a run that ends early (an
    interrupt, a broken gate) must not leave it training."""
    (repo / "train.py").write_text(SPAWN_AND_HANG)
    stop = threading.Event()
    threading.Timer(1.0, stop.set).start()
    start = time.monotonic()
    with pytest.raises(HookError) as info:
        hooks.command(
            "python train.py", cwd=repo, timeout=60, hook="pipeline.train",
            log=repo.parent / "train.log", stop=stop,
        )  # fmt: skip
    assert time.monotonic() - start < 1.0 + 3
    assert "stopped: the run ended first" in str(info.value)
    pid = int((repo / "grandchild.pid").read_text())
    assert wait_until(lambda: is_gone(pid)), f"grandchild {pid} still running"


# --- hooks.Warm: a child started before its call ------------------------------------------------


def test_a_warm_child_imports_ahead_then_makes_the_call_in_the_repository(repo: Path) -> None:
    child = hooks.Warm(repo, preload=("userhooks",), nice=5)
    result = child.call(call_user, "userhooks:add", 2, 3, timeout=30, hook=HOOK)
    assert isinstance(result, dict)
    assert result["sum"] == 5
    assert Path(result["cwd"]) == repo
    assert result["pid"] != os.getpid()
    child.close()
    assert wait_until(lambda: is_gone(result["pid"]))


def test_a_warm_child_reports_failures_like_a_cold_one(repo: Path) -> None:
    err = _warm_error(repo, "userhooks:boom")
    assert err.kind == "raised"
    assert "ValueError: learning rate must be positive" in str(err)
    assert _warm_error(repo, "userhooks:segfault").kind == "crashed"
    assert _warm_error(repo, "userhooks:hang", timeout=1.0).kind == "timeout"


def test_a_preload_that_fails_is_reported_by_the_call_not_swallowed(repo: Path) -> None:
    (repo / "broken.py").write_text("raise ImportError('no module named cudnn_ops')\n")
    child = hooks.Warm(repo, preload=("broken", "no_such_module"))
    with pytest.raises(HookError) as info:
        child.call(call_user, "broken:anything", timeout=30, hook=HOOK)
    assert "no module named cudnn_ops" in str(info.value)


def test_an_unused_warm_child_is_killed_on_close(repo: Path) -> None:
    child = hooks.Warm(repo)
    pid = child._proc.pid
    assert pid is not None
    child.close()
    assert wait_until(lambda: is_gone(pid)), f"warm child {pid} still running"


def test_a_warm_call_stops_when_the_run_ends(repo: Path) -> None:
    stop = threading.Event()
    child = hooks.Warm(repo, stop=stop)
    threading.Timer(1.0, stop.set).start()
    start = time.monotonic()
    with pytest.raises(HookError) as info:
        child.call(call_user, "userhooks:hang", timeout=60, hook=HOOK)
    assert time.monotonic() - start < 1.0 + 3
    assert "stopped: the run ended first" in str(info.value)


def test_a_warm_child_serves_calls_in_turn_and_is_replaced_after_a_crash(repo: Path) -> None:
    child = hooks.Warm(repo)
    first = child.call(call_user, "userhooks:add", 1, 1, timeout=30, hook=HOOK)
    second = child.call(call_user, "userhooks:add", 2, 2, timeout=30, hook=HOOK)
    assert (first["sum"], second["sum"]) == (2, 4)
    assert first["pid"] == second["pid"]  # the same child: torch is imported once
    with pytest.raises(HookError):  # a user exception leaves the child serving
        child.call(call_user, "userhooks:boom", timeout=30, hook=HOOK)
    with pytest.raises(HookError) as info:
        child.call(call_user, "userhooks:exit_hard", timeout=30, hook=HOOK)
    assert info.value.kind == "crashed"
    third = child.call(call_user, "userhooks:add", 3, 3, timeout=30, hook=HOOK)
    assert third["sum"] == 6
    assert third["pid"] != first["pid"]  # a fresh child after the crash
    child.close()
    with pytest.raises(HookError, match="the run ended first"):
        child.call(call_user, "userhooks:add", 1, 1, timeout=30, hook=HOOK)


def _warm_error(repo: Path, spec: str, *, timeout: float = 30) -> HookError:
    child = hooks.Warm(repo)
    with pytest.raises(HookError) as info:
        child.call(call_user, spec, timeout=timeout, hook=HOOK)
    child.close()
    assert info.value.hook == HOOK
    return info.value


def test_a_quick_call_goes_before_the_slow_ones_waiting(repo: Path) -> None:
    child = hooks.Warm(repo)
    done: dict[str, float] = {}

    def call(name: str, seconds: float, *, quick: bool = False) -> None:
        done[name] = child.call(
            call_user, "userhooks:nap", seconds, timeout=30, hook=HOOK, quick=quick
        )

    first = threading.Thread(target=call, args=("busy", 1.0))
    first.start()
    time.sleep(0.3)  # the child is busy with the first call now
    battery = threading.Thread(target=call, args=("battery", 0.0))
    battery.start()
    time.sleep(0.2)
    forward = threading.Thread(target=call, args=("forward", 0.0), kwargs={"quick": True})
    forward.start()
    for t in (first, battery, forward):
        t.join()
    child.close()
    assert done["busy"] < done["forward"] < done["battery"]
