"""`training.activations`: dead ReLUs, saturated sigmoids, missing activations."""

from __future__ import annotations

from faults.toys import GOOD_METRICS, healthy_smoke, judge, stage

from dlgate.checks.activations import activations
from dlgate.report import Outcome


def test_a_healthy_model_with_an_in_place_relu_passes() -> None:
    # ReLU(inplace=True) returns the Linear's own output tensor: not a linear chain.
    result = stage("healthy", GOOD_METRICS)["training.activations"]
    assert result.outcome is Outcome.PASS, result.message
    assert result.measurements["linear_chains"] == []


def test_two_linear_layers_in_a_row_are_a_missing_activation() -> None:
    result = stage("faulty")["training.activations"]
    assert result.outcome is Outcome.FAIL
    assert result.message.startswith("missing activation: `3` → `5`")  # through a Dropout


def test_dead_relus_are_counted_per_layer() -> None:
    result = stage("detached")["training.activations"]
    assert result.outcome is Outcome.FAIL
    assert "dead ReLUs: `1` 100% of units never active" in result.message
    assert "learning rate too high" in result.details


def test_saturated_sigmoids_are_counted_per_layer() -> None:
    result = stage("saturated")["training.activations"]
    assert result.outcome is Outcome.FAIL
    assert "saturated activations: `1`" in result.message
    assert "`3`" not in result.message  # only the layer past the threshold


def test_the_level_of_a_linear_chain_comes_from_the_config() -> None:
    smoke = healthy_smoke()
    smoke["parts"]["run"]["activations_before"]["chains"] = [["0", "2"]]
    assert judge(activations, smoke).outcome is Outcome.FAIL
    warned = judge(activations, smoke, "  activations: {linear_chains: warn}\n")
    assert warned.outcome is Outcome.WARN
    off = judge(activations, smoke, "  activations: {linear_chains: 'off'}\n")
    assert off.outcome is Outcome.PASS
