"""Shared products of a run: computed once, in the background when prefetched, their errors
reaching every check that needs them."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from dlgate.config import default_config
from dlgate.context import BACKGROUND, Context
from dlgate.report import Revision


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    return Context(
        repo=tmp_path,
        git_dir=tmp_path,
        head=Revision("HEAD", "a" * 40),
        base=None,
        merge_base=None,
        config=default_config(),
        out=tmp_path / "out",
    )


def test_a_product_is_computed_once(ctx: Context) -> None:
    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        return 42

    assert ctx.memo("p", compute) == 42
    assert ctx.memo("p", compute) == 42
    assert calls == [1]


def test_a_prefetched_product_runs_in_the_background_and_is_waited_for(ctx: Context) -> None:
    release = threading.Event()
    started = threading.Event()

    def slow() -> str:
        started.set()
        release.wait(10)
        return f"made in {threading.current_thread().name}"

    ctx.prefetch("model", slow)
    assert started.wait(5)  # running already, before anyone asked
    threading.Timer(0.3, release.set).start()
    begin = time.monotonic()
    made = ctx.memo("model", lambda: "computed again")  # waits; does not compute twice
    assert time.monotonic() - begin >= 0.2
    assert made == "made in dlgate-model"
    ctx.close()


def test_a_prefetched_error_reaches_every_user(ctx: Context) -> None:
    def broken() -> None:
        raise ValueError("the training command wrote no model.onnx")

    ctx.prefetch("model", broken)
    for _ in range(2):
        with pytest.raises(ValueError, match=r"wrote no model\.onnx"):
            ctx.memo("model", lambda: None)
    ctx.close()


def test_prefetching_a_claimed_product_does_nothing(ctx: Context) -> None:
    ctx.memo("p", lambda: 1)
    ctx.prefetch("p", lambda: 2)
    assert ctx.memo("p", lambda: 3) == 1


def test_settle_waits_for_background_work(ctx: Context) -> None:
    done: list[str] = []

    def slow() -> None:
        time.sleep(0.3)
        done.append("a")

    ctx.prefetch("a", slow)
    ctx.settle()
    assert done == ["a"]


def test_close_stops_background_work_and_runs_cleanups(ctx: Context) -> None:
    cleaned: list[str] = []
    ctx.on_close(lambda: cleaned.append("child"))
    ctx.prefetch("waits", lambda: ctx.stopping.wait(30))
    begin = time.monotonic()
    ctx.close()
    assert ctx.stopping.is_set()
    assert cleaned == ["child"]
    assert time.monotonic() - begin < 5


def test_only_the_stages_that_run_start_background_work() -> None:
    from dlgate.registry import preparers_for

    names = {f.__name__ for f in preparers_for(("changes", "data"))}
    assert "start_training" not in names  # a data-only run trains nothing
    names = {f.__name__ for f in preparers_for(("accuracy",))}
    assert {"start_training", "start_evaluation"} <= names
    assert "start_battery" not in names
    names = {f.__name__ for f in preparers_for(("training", "export"))}
    assert {"start_training", "start_battery", "start_reference"} <= names


def test_background_work_runs_below_the_training_commands_priority(ctx: Context) -> None:
    def own_nice() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    base = own_nice()
    ctx.prefetch("gate work", own_nice)
    ctx.prefetch("training", own_nice, nice=0)
    assert ctx.memo("gate work", own_nice) == min(base + BACKGROUND, 19)
    assert ctx.memo("training", own_nice) == base
    assert own_nice() == base  # the caller's own priority is untouched


def test_made_tells_a_finished_product_without_waiting(ctx: Context) -> None:
    release = threading.Event()
    ctx.prefetch("slow", lambda: release.wait(10))
    assert ctx.made("slow") is None  # still running: no wait
    assert ctx.made("never asked") is None
    release.set()
    assert ctx.memo("slow", lambda: False) is True
    assert ctx.made("slow") is True

    def broken() -> None:
        raise ValueError("no model")

    with pytest.raises(ValueError, match="no model"):
        ctx.memo("broken", broken)
    assert ctx.made("broken") is None
