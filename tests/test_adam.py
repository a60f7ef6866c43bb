"""The smoke battery's default optimizer must train exactly as `torch.optim.Adam` does."""

from __future__ import annotations

import subprocess
import sys

import torch

from dlgate.adam import Adam


def _model() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(144, 10)
    )


def test_it_matches_torch_adam_step_for_step() -> None:
    torch.manual_seed(0)
    ours, theirs = _model(), _model()
    theirs.load_state_dict(ours.state_dict())
    theirs.get_submodule("0").bias.requires_grad_(False)  # a frozen parameter is skipped
    ours.get_submodule("0").bias.requires_grad_(False)
    opt_ours = Adam(ours.parameters(), 3e-3)
    opt_theirs = torch.optim.Adam([p for p in theirs.parameters() if p.requires_grad], 3e-3)
    x, y = torch.randn(32, 1, 8, 8), torch.randint(0, 10, (32,))
    for _ in range(40):
        for model, opt in ((ours, opt_ours), (theirs, opt_theirs)):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(a, b)
    assert opt_ours.steps == 40


def test_it_does_not_import_torchs_compiler() -> None:
    """The reason it exists: a second of imports in the framework child, on the critical path."""
    code = (
        "import sys, torch\n"
        "from dlgate.adam import Adam\n"
        "m = torch.nn.Linear(3, 2)\n"
        "opt = Adam(m.parameters(), 0.1)\n"
        "m(torch.ones(1, 3)).sum().backward()\n"
        "opt.step()\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
