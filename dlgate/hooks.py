"""User pipeline code runs here: in a child process, with a timeout, never in the gate.

`call(func, *args, cwd=..., timeout=..., hook=...)` runs a module-level function of dlgate in
a spawned child whose working directory and first `sys.path` entry is the user's repository.
A raise, a hang, a crash (segfault, `os._exit`) or an import clash in user code becomes a
`HookError` with the hook's name and the error quoted; the gate goes on.
`command(...)` does the same for a shell-free command line (the pipeline's training command).
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from dlgate.errors import HookError

R = TypeVar("R")

_GRACE_S = 5.0
_POLL_S = 0.2  # how often a wait looks at its stop event


def call(
    func: Callable[..., R],
    *args: Any,
    cwd: Path,
    timeout: float,
    hook: str,
) -> R:
    child = Warm(cwd)
    try:
        return child.call(func, *args, timeout=timeout, hook=hook)
    finally:
        child.close()


class Warm:
    """A hook child started before its calls are known. It imports `preload` (torch, say)
    while the gate does other work, then makes calls one at a time, each exactly as `call`
    does. A call that hangs or kills the child costs the child: the next call gets a fresh
    one. `nice` lowers its priority, so that it takes only CPU time the training command
    leaves. `close()`, or setting `stop` (the run is over), kills it and what it started."""

    def __init__(
        self,
        cwd: Path,
        *,
        preload: tuple[str, ...] = (),
        nice: int = 0,
        stop: threading.Event | None = None,
    ) -> None:
        self._cwd, self._preload, self._nice, self._stop = str(cwd), preload, nice, stop
        self._turn = threading.Condition()
        self._busy = False
        self._quick_waiting = 0
        self._closed = False
        self._spawn()

    def call(
        self, func: Callable[..., R], *args: Any, timeout: float, hook: str, quick: bool = False
    ) -> R:
        """`func(*args)` in the child. Calls wait for their turn; a `quick` one goes before
        the others waiting (a forward pass should not wait behind a whole smoke battery)."""
        self._wait_turn(quick)
        try:
            if self._closed:
                raise HookError(hook, "stopped: the run ended first", kind="timeout")
            if not self._proc.is_alive():
                self._spawn()  # the last call cost the child, or it died waiting
            status, payload = self._exchange(func, args, timeout, hook)
        finally:
            with self._turn:
                self._busy = False
                self._turn.notify_all()
        if status == "ok":
            return payload  # type: ignore[no-any-return]
        if status == "bad-return":
            raise HookError(
                hook,
                f"returned a value that cannot be sent back ({payload}); "
                "return plain Python or numpy values",
                kind="bad-return",
            )
        message, tb = payload
        raise HookError(hook, message, kind="raised", details=tb)

    def _wait_turn(self, quick: bool) -> None:
        with self._turn:
            self._quick_waiting += quick
            while self._busy or (not quick and self._quick_waiting):
                self._turn.wait()
            self._quick_waiting -= quick
            self._busy = True

    def close(self) -> None:
        """Stop the child (and whatever it started) if it still runs."""
        self._closed = True
        self._conn.close()
        _kill(self._proc)

    def _spawn(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child_end = ctx.Pipe()
        args = (child_end, self._cwd, self._preload, self._nice)
        self._proc = ctx.Process(target=_child, args=args, daemon=True)
        self._proc.start()
        child_end.close()

    def _exchange(
        self, func: Callable[..., Any], args: tuple[Any, ...], timeout: float, hook: str
    ) -> tuple[str, Any]:
        """Send one call, wait for its answer. A hang or a death is a HookError, and the
        child (with what it started) is killed."""
        conn = self._conn
        # A child that died before the call is reported below, like a death during it.
        with contextlib.suppress(BrokenPipeError, EOFError, ConnectionResetError):
            conn.send((func, args))
        if not self._wait(timeout):
            _kill(self._proc)
            if self._stop is not None and self._stop.is_set():
                raise HookError(hook, "stopped: the run ended first", kind="timeout")
            raise HookError(
                hook, f"no result after {timeout:g}s (the configured timeout)", kind="timeout"
            )
        try:
            answer: tuple[str, Any] = conn.recv()
            return answer
        except EOFError:
            self._proc.join(_GRACE_S)
            code = self._proc.exitcode
            _kill(self._proc)  # what the dead child started
            why = f"killed by signal {-code}" if code is not None and code < 0 else f"exit {code}"
            raise HookError(
                hook, f"the process died without a result ({why})", kind="crashed"
            ) from None
        except Exception as exc:  # the result pickled in the child but cannot load here
            _kill(self._proc)  # its stream is in an unknown state
            raise HookError(
                hook,
                f"returned a value the gate cannot load ({type(exc).__name__}: {exc}); "
                "return plain Python or numpy values",
                kind="bad-return",
            ) from None

    def _wait(self, timeout: float) -> bool:
        """Whether an answer (or the child's death) arrived within `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if self._conn.poll(max(0.0, min(left, _POLL_S))):
                return True
            if not self._proc.is_alive():
                return True  # recv then reports the death
            if left <= 0 or (self._stop is not None and self._stop.is_set()):
                return False


def _child(conn: Any, cwd: str, preload: tuple[str, ...], nice: int) -> None:
    # Its own process group, so that a timeout also kills what user code spawned (data loader
    # workers, subprocesses) instead of leaving them running.
    os.setpgrp()
    os.chdir(cwd)
    sys.path.insert(0, cwd)
    if nice:
        os.nice(nice)
    for name in preload:
        with contextlib.suppress(Exception):  # the call itself meets and reports the error
            importlib.import_module(name)
    try:
        while True:
            try:
                func, args = conn.recv()
            except EOFError:
                return  # closed: no more calls
            try:
                result = func(*args)
            except BaseException as exc:
                tb = traceback.format_exc(limit=-6)
                conn.send(("error", (f"{type(exc).__name__}: {exc}", tb)))
                continue
            try:
                conn.send(("ok", result))
            except Exception as exc:  # pickling fails before anything is sent
                conn.send(("bad-return", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def _kill(proc: Any) -> None:
    # The group is gone, or the child died before it made one: then there is nothing to kill.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.is_alive():
        proc.kill()
    proc.join(_GRACE_S)


def command(
    line: str,
    *,
    cwd: Path,
    timeout: float,
    hook: str,
    log: Path,
    env: Mapping[str, str] | None = None,
    substitutions: Mapping[str, str] | None = None,
    stop: threading.Event | None = None,
    started: Callable[[int], None] | None = None,
) -> None:
    """Run a command line (no shell) in `cwd`; output goes to `log`. Non-zero exit or a
    timeout raises `HookError` quoting the end of the output. Setting `stop` kills it.
    `started` gets its process group (its pid: it leads a session of its own) once it runs."""
    names = ", ".join(f"{{{k}}}" for k in substitutions or {}) or "none"
    try:
        argv = [a.format(**(substitutions or {})) for a in shlex.split(line)]
    except KeyError as exc:
        raise HookError(
            hook,
            f"unknown placeholder {{{exc.args[0]}}} in {line!r} (placeholders: {names}); "
            "write {{ and }} for literal braces",
            kind="failed",
        ) from None
    except (ValueError, IndexError) as exc:
        raise HookError(
            hook,
            f"cannot parse the command {line!r}: {exc} (placeholders: {names}; write {{{{ and "
            "}} for literal braces)",
            kind="failed",
        ) from None
    if not argv:
        raise HookError(hook, "the command is empty", kind="failed")
    if argv and argv[0] in ("python", "python3"):
        argv[0] = sys.executable  # the gate's interpreter, with the user's requirements
    log.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        try:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=full_env,
                start_new_session=True,
            )
        except OSError as exc:
            raise HookError(
                hook,
                f"cannot start {argv[0]!r}: {exc.strerror}; is it installed (on PATH), or a "
                "committed, executable file given relative to the repository root?",
                kind="failed",
            ) from None
        if started is not None:
            started(proc.pid)
        code = _wait(proc, timeout, stop)
        if code is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            why = (
                "stopped: the run ended first"
                if stop is not None and stop.is_set()
                else f"still running after {timeout:g}s (the configured timeout)"
            )
            raise HookError(hook, f"{why}; log: {log}", kind="timeout")
    if code != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
        raise HookError(
            hook, f"exited with status {code}: {_last_line(tail)}", kind="failed", details=tail
        )


def _wait(
    proc: subprocess.Popen[bytes], timeout: float, stop: threading.Event | None
) -> int | None:
    """The exit status, or None at the timeout or when `stop` is set."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        try:
            return proc.wait(timeout=max(0.0, min(left, _POLL_S)))
        except subprocess.TimeoutExpired:
            if left <= 0 or (stop is not None and stop.is_set()):
                return None


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "(no output)"
