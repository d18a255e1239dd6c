"""BatchNorm running variances carried as sums of lossy deltas are clipped at 0 on use."""

from __future__ import annotations

import torch
from torch import nn

from fedbench.fl.template import load_model_state


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten())


def test_negative_running_var_is_clipped_on_the_module_only() -> None:
    model = _net()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["1.running_var"] = torch.tensor([1.0, -0.25, 0.5, -1e-3])
    assert load_model_state(model, state) == 2
    assert model[1].running_var.tolist() == [1.0, 0.0, 0.5, 0.0]
    # the state itself (the sum of the deltas both sides agree on) is left as it was
    assert state["1.running_var"][1].item() == -0.25
    model.eval()
    out = model(torch.randn(2, 1, 5, 5))
    assert torch.isfinite(out).all()


def test_plain_load_of_a_negative_variance_gives_nan() -> None:
    """Why the clip exists: without it BatchNorm's outputs are NaN (argmax: class 0)."""
    model = _net()
    state = model.state_dict()
    state["1.running_var"] = torch.tensor([1.0, -0.25, 0.5, 1.0])
    model.load_state_dict(state)
    model.eval()
    assert torch.isnan(model(torch.randn(2, 1, 5, 5))).any()


def test_valid_state_loads_unchanged() -> None:
    model = _net()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert load_model_state(model, state) == 0
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k])
