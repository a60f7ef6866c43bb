"""User hooks of the training stage that raise, return the wrong type, run past their time
or crash: each becomes an `error` outcome naming the hook (its config key) and quoting the
error, and the checks that did not need the hook still judge."""

from __future__ import annotations

import time

import numpy as np
import pytest
from faults.toys import stage

from dlgate import framework
from dlgate.report import CheckResult, Outcome

SMOKE = ("training.loss", "training.init_loss", "training.gradients", "training.overfit")


def errors(results: dict[str, CheckResult]) -> dict[str, str]:
    return {i: r.message for i, r in results.items() if r.outcome is Outcome.ERROR}


def test_a_model_factory_that_raises() -> None:
    found = errors(stage("raises"))
    for check_id in SMOKE:
        assert (
            found[check_id]
            == "pipeline.model raised: RuntimeError: the factory broke: no such layer"
        )


def test_a_model_factory_that_returns_no_module() -> None:
    found = errors(stage("not_a_module"))
    assert found["training.loss"] == (
        "pipeline.model returned the wrong type: returned str, not a torch.nn.Module"
    )


def test_a_batch_source_that_returns_the_wrong_type() -> None:
    found = errors(stage("healthy", "  batches: toy:batches_dict\n"))
    assert found["training.outputs"] == (
        "training.batches returned the wrong type: returned dict, not a pair (inputs, labels)"
    )


def test_a_loss_that_returns_the_wrong_type() -> None:
    results = stage("healthy", "  loss: toy:loss_float\n")
    found = errors(results)
    message = "training.loss returned the wrong type: returned float, not a scalar loss tensor"
    assert found["training.loss"] == message
    assert found["training.init_loss"] == message
    # The outputs and the batch independence do not need the loss: they still judge.
    assert results["training.outputs"].outcome is Outcome.PASS
    assert results["training.independence"].outcome is Outcome.PASS


def test_an_optimizer_hook_that_returns_the_wrong_type() -> None:
    found = errors(stage("healthy", "  optimizer: toy:optimizer_list\n"))
    assert found["training.gradients"] == (
        "training.optimizer returned the wrong type: returned list, not a torch.optim.Optimizer"
    )


def test_a_metric_that_raises_is_named_by_its_key() -> None:
    found = errors(stage("healthy", "  metrics: {accuracy: toy:metric_raises}\n"))
    assert found["training.metrics"] == (
        "training.metrics.accuracy raised: ValueError: no metric today"
    )


def test_a_hook_past_the_hook_timeout() -> None:
    start = time.perf_counter()
    found = errors(stage("sleeps", hook_timeout=5))
    assert found["training.loss"] == (
        "pipeline.model timed out: no result after 5s (the configured timeout, "
        "`pipeline.hook_timeout`)"
    )
    assert found["training.overfit"] == found["training.loss"]
    # It hung once, not once per measurement (7 × 5 s).
    assert time.perf_counter() - start < 25


def test_a_step_past_the_budget_and_what_it_left_unmeasured() -> None:
    results = stage("healthy", "  step: toy:step_sleeps\n  budget: 12\n")
    found = errors(results)
    assert found["training.gradients"] == (
        "training.step timed out: ran past the smoke checks' time budget of 12s (`training.budget`)"
    )
    assert found["training.overfit"].startswith(
        "training.budget timed out: not measured: the smoke checks' time budget of 12s"
    )
    assert results["training.init_loss"].outcome is Outcome.PASS  # measured before


def test_a_crash_in_user_code() -> None:
    found = errors(stage("dies"))
    assert found["training.loss"] == (
        "pipeline.model crashed: the process died without a result (exit 3)"
    )


@pytest.mark.slow  # waits for the hard timeout: the budget + 15 s
def test_a_hook_that_blocks_the_alarm_is_killed_and_named() -> None:
    start = time.perf_counter()
    found = errors(stage("deaf_sleeps", "  budget: 5\n"))
    assert found["training.loss"] == (
        "pipeline.model timed out: no result after 20s (`training.budget` + 15s); stopped"
    )
    assert time.perf_counter() - start < 60


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ((np.zeros((4, 2), np.float32),), "returned tuple, not a pair"),
        ((np.zeros((4, 2), np.float32), np.array(["a"] * 4)), "integer class indices"),
        ((np.zeros((4, 2), np.int64), np.zeros(4, np.int64)), "float inputs"),
        ((np.zeros((3, 2), np.float32), np.zeros(4, np.int64)), "float inputs (N, ...)"),
        ((np.zeros((2, 2), np.float32), np.zeros(2, np.int64)), "need 4 or more"),
    ],
)
def test_what_a_batch_source_must_return(value: object, says: str) -> None:
    with pytest.raises(framework.HookFailed, match=r"returned|need") as caught:
        framework._arrays("training.batches", value)
    assert says in str(caught.value)
    assert caught.value.record["kind"] == "bad-return"


def test_numbers_a_hook_may_return() -> None:
    assert framework._plain_number("m", np.float32(0.5)) == 0.5
    assert framework._plain_number("m", [1, 0]) == [1.0, 0.0]
    with pytest.raises(framework.HookFailed, match="expected a number"):
        framework._plain_number("m", "0.5")
    assert framework._scalar("training.step", 2) == 2.0
    with pytest.raises(framework.HookFailed, match="not the step's loss"):
        framework._scalar("training.step", None)
