"""What a check sees: the revisions, the configuration, the output folder, shared products."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from dlgate.config import Config
from dlgate.report import BaselineInfo, Revision

T = TypeVar("T")
# The gate's own work runs this many steps below the training command's priority: an OpenMP
# training stalls when an equal-priority process takes one of its cores (4 s became 6.4 s on
# 2 cores), while work at nice 10 took only the CPU time the training left (4.0 s).
BACKGROUND = 10


@dataclass
class Context:
    """One run's state, handed to every check.

    `repo` is a checkout of the head revision (the gate's kept worktree, dlgate/checkout.py).
    `config` holds only the core sections until the whole file is validated, which happens
    before any check runs (the training command starts on the core; see gate.run).
    Products several checks share (the trained model, the loaded data set, the baseline) are
    computed once through `memo`; `prefetch` starts one in the background, so that work that
    waits on a child process (the training command, a framework child importing torch)
    overlaps the stages that run before its use.
    """

    repo: Path
    git_dir: Path  # the repository that holds the history (for git commands)
    head: Revision
    base: Revision | None
    merge_base: str | None
    config: Config
    out: Path  # the run's output folder: reports, artifacts
    kind: str = "pr"
    tracking_uri: str = ""
    progress: Callable[[str], None] = field(default=lambda _msg: None)
    baseline_info: BaselineInfo | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # headline metrics of the run
    # What a recorded run keeps in MLflow besides the report: JSON documents and files that
    # checks produced (per-sample predictions, dataset statistics, the ONNX model).
    record_json: dict[str, object] = field(default_factory=dict)
    record_files: dict[str, Path] = field(default_factory=dict)
    # Set when the run ends: background work (a training command, a warm child) stops.
    stopping: threading.Event = field(default_factory=threading.Event)
    _products: dict[str, Future[Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)
    _cleanups: list[Callable[[], None]] = field(default_factory=list)

    def memo(self, key: str, compute: Callable[[], T]) -> T:
        """Compute a shared product once per run. An exception is remembered too, so every
        check that needs a broken product reports the same error without recomputing it.
        A product being computed elsewhere (in the background) is waited for."""
        future, mine = self._claim(key)
        if mine:
            fulfil(future, compute)
        return future.result()  # type: ignore[no-any-return]

    def made(self, key: str) -> Any:
        """The product under `key` if it is made (and did not fail), else None; never waits."""
        future = self._products.get(key)
        if future is None or not future.done() or future.exception() is not None:
            return None
        return future.result()

    def prefetch(self, key: str, compute: Callable[[], object], *, nice: int = BACKGROUND) -> None:
        """Start computing a product in a background thread; `memo(key, …)` returns it. A
        product already claimed is left alone. Its exception reaches the check that uses it.
        The thread runs `nice` steps below normal priority (on Linux a thread's own, inherited
        by the processes it starts): 0 for the thread that starts the training command."""
        future, mine = self._claim(key)
        if not mine:
            return
        thread = threading.Thread(
            target=fulfil, args=(future, compute, nice), name=f"dlgate-{key}", daemon=True
        )
        self._threads.append(thread)
        thread.start()

    def settle(self) -> None:
        """Wait until no background work runs (before timing something: a latency measured
        beside a training would be the training's)."""
        for thread in list(self._threads):
            thread.join()

    def on_close(self, cleanup: Callable[[], None]) -> None:
        """Run `cleanup` when the run ends (close a warm child nobody used, say)."""
        self._cleanups.append(cleanup)

    def close(self) -> None:
        """End the run's background work: stop it, then wait for its threads. Called once
        the report is made, before the head's checkout goes away."""
        self.stopping.set()
        for cleanup in reversed(self._cleanups):
            cleanup()
        for thread in self._threads:
            thread.join()

    def artifact_dir(self, name: str) -> Path:
        path = self.out / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _claim(self, key: str) -> tuple[Future[Any], bool]:
        with self._lock:
            future = self._products.get(key)
            if future is not None:
                return future, False
            future = self._products[key] = Future()
            return future, True


def lower_priority(nice: int) -> None:
    """Lower the calling thread's priority by `nice` steps (where the system lets it)."""
    if nice:
        with contextlib.suppress(OSError):
            os.nice(nice)


def fulfil(future: Future[Any], compute: Callable[[], object], nice: int = 0) -> None:
    """Settle `future` with what `compute` returns or raises, `nice` steps below the calling
    thread's priority. An interrupt is passed on too, after whoever waits has seen it."""
    lower_priority(nice)
    try:
        future.set_result(compute())
    except BaseException as exc:
        future.set_exception(exc)
        if not isinstance(exc, Exception):
            raise
