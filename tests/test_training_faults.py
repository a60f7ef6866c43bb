"""The seeded-fault catalogue (tests/faults): every fault caught by the named check meant to
catch it, and no false alarm on the unmodified example. Prints the catch table.

The example's own training command runs with OMP_NUM_THREADS=1: on a shared 2-core runner,
two OpenMP threads spin-wait and make it several times slower (the smoke battery runs on one
thread for the same reason); the result is the same model.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from faults import FAULTS, Suite, table

from dlgate.report import Outcome

pytestmark = pytest.mark.slow


def test_every_seeded_fault_is_caught_and_the_example_raises_no_alarm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    suite = Suite(tmp_path)
    healthy = suite.healthy()
    rows = [suite.run(fault) for fault in FAULTS]
    text = table(rows, healthy)
    with capsys.disabled():
        print("\n" + text)
    judged = {i: r for i, r in healthy.items() if i not in ("training.metrics", "training.tests")}
    alarms = {i: r.message for i, r in judged.items() if r.outcome is not Outcome.PASS}
    assert not alarms, text
    assert not [row.fault.name for row in rows if not row.caught_by], text
    assert not {row.fault.name: row.errors for row in rows if row.errors}, text
    assert len(FAULTS) >= 12


def test_a_fault_that_no_longer_applies_fails_loudly(tmp_path: Path) -> None:
    suite = Suite(tmp_path)
    ctx = suite.context("moved")
    (ctx.repo / "train.py").write_text("LEARNING_RATE = 0.01\n", encoding="utf-8")
    with pytest.raises(AssertionError, match=r"not in train\.py exactly once"):
        FAULTS[0].apply(ctx.repo)
