"""Adaptive differential filters: names, forward, folding."""

import torch
from fltools import TinyNet
from torch import nn

from fedbench.fl.adf import ADFConv2d, ADFLinear, attach_adf, fold_adf, fold_adf_state


def _randomize_factors(model):
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("adf_scale"):
                p.copy_(0.5 + torch.rand(p.shape, generator=g))


def test_attach_adds_clean_names_initialised_to_one():
    model = TinyNet()
    before = set(model.state_dict())
    names = attach_adf(model)
    assert names == ["conv1.adf_scale", "conv2.adf_scale"]
    after = set(model.state_dict())
    assert after - before == set(names)
    assert model.conv1.adf_scale.shape == (8, 1, 1, 1)
    assert torch.all(model.conv2.adf_scale == 1)
    assert isinstance(model.conv1, ADFConv2d) and not isinstance(model.fc, ADFLinear)
    assert attach_adf(TinyNet(), linear=True)[-1] == "fc.adf_scale"


def test_identity_factors_do_not_change_outputs():
    torch.manual_seed(0)
    model = TinyNet().eval()
    x = torch.randn(4, 1, 12, 12)
    ref = model(x)
    attach_adf(model, linear=True)
    torch.testing.assert_close(model(x), ref)


def test_layer_computes_conv_with_scaled_weight():
    conv = nn.Conv2d(3, 4, 3, bias=True)
    attach_adf(conv)
    with torch.no_grad():
        conv.adf_scale.copy_(torch.tensor([0.5, 1.0, 2.0, -1.0]).view(4, 1, 1, 1))
    x = torch.randn(2, 3, 8, 8)
    ref = torch.nn.functional.conv2d(x, conv.weight * conv.adf_scale, conv.bias)
    torch.testing.assert_close(conv(x), ref)


def test_folding_leaves_outputs_unchanged():
    torch.manual_seed(1)
    model = TinyNet()
    attach_adf(model, linear=True)
    _randomize_factors(model)
    model.eval()
    x = torch.randn(5, 1, 12, 12)
    ref = model(x)
    fold_adf(model)
    assert all(torch.all(p == 1) for n, p in model.named_parameters() if "adf" in n)
    torch.testing.assert_close(model(x), ref, atol=1e-5, rtol=1e-5)


def test_fold_state_matches_module_fold():
    torch.manual_seed(2)
    model = TinyNet()
    attach_adf(model)
    _randomize_factors(model)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    fold_adf_state(state)
    fold_adf(model)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(state[k], v)


def test_factors_receive_gradients():
    model = TinyNet()
    attach_adf(model)
    model(torch.randn(3, 1, 12, 12)).sum().backward()
    assert model.conv1.adf_scale.grad is not None
    assert model.conv1.adf_scale.grad.abs().sum() > 0


def test_train_mode_batchnorm_cancels_factor_gradient():
    """Documented caveat: conv -> train-mode BN is invariant to per-filter scaling."""
    torch.manual_seed(3)
    model = TinyNet()
    attach_adf(model)
    x = torch.randn(8, 1, 12, 12)
    model.train()
    model(x).pow(2).sum().backward()
    g_batch = model.conv1.adf_scale.grad.abs().max()
    g_w = model.conv1.weight.grad.abs().max()
    model.zero_grad()
    model.eval()  # BN with running statistics (bn_mode=frozen)
    model(x).pow(2).sum().backward()
    g_frozen = model.conv1.adf_scale.grad.abs().max()
    assert g_batch < 1e-3 * g_w
    assert g_frozen > 100 * g_batch
