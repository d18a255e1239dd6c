"""Adaptive differential filters: names, forward, folding, weight and output positions."""

import copy

import pytest
import torch
from fltools import TinyNet
from torch import nn

from fedbench.fl.adf import (
    ADFBatchNorm2d,
    ADFConv2d,
    ADFLinear,
    adf_fold_targets,
    adf_positions,
    attach_adf,
    conv_bn_pairs,
    fold_adf,
    fold_adf_state,
)


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


# ---- output position (factor on the BatchNorm's output channel) ---------------------------


def _traced_conv_bn_pairs(model, x):
    """Ground truth by dataflow: conv -> BN where the BN's input *is* the conv's output."""
    names = {id(m): n for n, m in model.named_modules()}
    produced, pairs, hooks = {}, {}, []

    def conv_hook(module, inputs, out):
        produced[id(out)] = (names[id(module)], out)  # keep `out` alive: ids stay unique

    def bn_hook(module, inputs):
        hit = produced.get(id(inputs[0]))
        if hit is not None and hit[1] is inputs[0]:
            pairs[hit[0]] = names[id(module)]

    for m in model.modules():
        if type(m) is nn.Conv2d:
            hooks.append(m.register_forward_hook(conv_hook))
        elif type(m) is nn.BatchNorm2d:
            hooks.append(m.register_forward_pre_hook(bn_hook))
    with torch.no_grad():
        model.eval()(x)
    for h in hooks:
        h.remove()
    return pairs


@pytest.mark.parametrize(
    "name,task,small",
    [
        ("resnet20", "classification", True),
        ("resnet18", "classification", True),
        ("resnet18", "classification", False),
        ("mobilenet_v2", "classification", True),
        ("vgg11_bn", "classification", True),
        ("vgg11", "classification", True),
        ("resnet18", "segmentation", True),
    ],
)
def test_static_conv_bn_pairs_match_the_dataflow(name, task, small):
    from fedbench.models import build_model

    torch.manual_seed(0)
    model = build_model(name, 3, in_channels=1, small_input=small, task=task)
    size = 32 if small else 64
    traced = _traced_conv_bn_pairs(model, torch.randn(1, 1, size, size))
    pairs = conv_bn_pairs(model)
    assert pairs == traced
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if name == "vgg11":
        assert pairs == {}
    elif task == "segmentation":
        assert set(convs) - set(pairs) == {"head.4"}  # the 1x1 output conv has no BN
    else:
        assert set(pairs) == set(convs)  # every conv of these nets is followed by a BN
    # the output position on the real graph: folding keeps the model's function
    attach_adf(model, position="output")
    _randomize_factors(model)
    x = torch.randn(2, 1, size, size)
    with torch.no_grad():
        ref = model.eval()(x)
        fold_adf(model)
        torch.testing.assert_close(model(x), ref, atol=1e-4, rtol=1e-4)


def test_tinynet_and_resnet20_pairs():
    from fedbench.models import build_model

    assert conv_bn_pairs(TinyNet()) == {"conv1": "bn1", "conv2": "bn2"}
    pairs = conv_bn_pairs(build_model("resnet20", 2, in_channels=1, shortcut="B"))
    # conv1 and bn1 are separated by the max-pool slot: paired by name
    assert pairs["conv1"] == "bn1"
    assert pairs["layer2.0.shortcut.0"] == "layer2.0.shortcut.1"
    assert pairs["layer3.2.conv2"] == "layer3.2.bn2"


def test_output_position_computes_scaled_batchnorm_output():
    torch.manual_seed(4)
    model = TinyNet()
    names = attach_adf(model, linear=True, position="output")
    assert names == ["conv1.adf_scale", "conv2.adf_scale", "fc.adf_scale"]
    assert isinstance(model.bn1, ADFBatchNorm2d) and model.conv1.adf_bn is model.bn1
    assert isinstance(model.fc, ADFLinear)  # no BN after it: weight position
    # same state_dict names as the weight position: transmission is unchanged
    ref = TinyNet()
    attach_adf(ref, linear=True)
    assert list(model.state_dict()) == list(ref.state_dict())
    _randomize_factors(model)
    x = torch.randn(4, 1, 12, 12)
    for train in (True, False):
        model.train(train)
        s = model.conv1.adf_scale.view(1, -1, 1, 1)
        bn = nn.BatchNorm2d(8).train(train)
        bn.load_state_dict(model.bn1.state_dict())
        expect = s * bn(nn.functional.conv2d(x, model.conv1.weight, padding=1))
        torch.testing.assert_close(model.bn1(model.conv1(x)), expect)


def test_output_position_keeps_weight_position_without_batchnorm():
    conv_relu = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.BatchNorm2d(4))
    no_affine = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4, affine=False))
    for model in (conv_relu, no_affine):
        attach_adf(model, position="output")
        assert model[0].adf_bn is None
        assert adf_fold_targets(model) == {"0.adf_scale": ("0.weight",)}
    with pytest.raises(ValueError, match="position"):
        attach_adf(TinyNet(), position="input")


@pytest.mark.parametrize("position", ["weight", "output"])
@pytest.mark.parametrize("train", [False, True])
def test_folding_leaves_outputs_unchanged_in_both_positions(position, train):
    torch.manual_seed(5)
    model = TinyNet()
    attach_adf(model, linear=True, position=position)
    _randomize_factors(model)
    with torch.no_grad():  # non-trivial BN statistics and affine parameters
        for bn in (model.bn1, model.bn2):
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_()
    model.train(train)
    x = torch.randn(6, 1, 12, 12)
    ref = model(x)
    fold_adf(model)
    assert all(torch.all(p == 1) for n, p in model.named_parameters() if "adf" in n)
    torch.testing.assert_close(model(x), ref, atol=1e-5, rtol=1e-5)


def test_output_position_fold_state_matches_module_fold():
    torch.manual_seed(6)
    model = TinyNet()
    attach_adf(model, linear=True, position="output")
    _randomize_factors(model)
    targets = adf_fold_targets(model)
    assert targets == {
        "conv1.adf_scale": ("bn1.weight", "bn1.bias"),
        "conv2.adf_scale": ("bn2.weight", "bn2.bias"),
        "fc.adf_scale": ("fc.weight",),
    }
    state = {k: v.clone() for k, v in model.state_dict().items()}
    fold_adf_state(state, targets)
    fold_adf(model)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(state[k], v)
    assert not torch.all(state["bn1.weight"] == 1)  # something was folded into BN


def test_output_position_factor_gets_gradient_under_batch_statistics():
    """conv + train-mode BN: weight position cancelled, output position a real gradient."""
    torch.manual_seed(7)
    x = torch.randn(8, 3, 10, 10)
    target = torch.randn(8, 4, 8, 8)
    grads = {}
    for position in ("weight", "output"):
        torch.manual_seed(8)
        block = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4)).train()
        attach_adf(block, position=position)
        nn.functional.mse_loss(block(x), target).backward()
        grads[position] = block[0].adf_scale.grad.abs()
        g_gamma = block[1].weight.grad.abs()
    # (the weight position's small residue comes from the eps in BN's variance)
    assert torch.all(grads["output"] > 1e-3)
    assert float(grads["weight"].max()) < 1e-2 * float(grads["output"].min())
    # at s = 1, gamma = 1, beta = 0 the factor's gradient is the BN gamma's
    torch.testing.assert_close(grads["output"].view(-1), g_gamma, rtol=1e-4, atol=1e-6)


def test_output_position_survives_deepcopy_and_state_loading():
    torch.manual_seed(9)
    model = TinyNet()
    attach_adf(model, position="output")
    clone = copy.deepcopy(model)
    assert clone.bn1.adf_conv is clone.conv1 and clone.conv1.adf_bn is clone.bn1
    model.eval()
    clone.eval()
    x = torch.randn(2, 1, 12, 12)
    ref = model(x)
    with torch.no_grad():
        clone.conv2.adf_scale.mul_(2.0)
    torch.testing.assert_close(model(x), ref)  # the original is untouched
    assert not torch.allclose(clone(x), ref)
    clone.load_state_dict(model.state_dict())
    torch.testing.assert_close(clone(x), ref)


# ---- VGG without BatchNorm: where the factor is a real degree of freedom ------------------


def _factor_and_weight_grads(model, x, y):
    """Per conv: (max |grad| of its factor, max |grad| of its weight) after one CE loss."""
    model.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    return {
        n: (float(m.adf_scale.grad.abs().max()), float(m.weight.grad.abs().max()))
        for n, m in model.named_modules()
        if isinstance(m, ADFConv2d)
    }


@pytest.mark.parametrize("arch", ["vgg11", "vgg16"])
def test_vgg_without_bn_factors_act_in_the_weight_position(arch):
    """No BN follows a VGG conv: auto (output under batch statistics) falls back to conv(x,
    s*W) for every conv, and each factor gets a gradient of the weights' order."""
    from fedbench.fl.config import config_from_dict
    from fedbench.models import build_model

    torch.manual_seed(0)
    model = build_model(arch, 10, small_input=True).train()
    assert conv_bn_pairs(model) == {}
    position = config_from_dict({}).resolved_adf_position  # auto under bn_mode=batch
    attach_adf(model, position=position)
    positions = adf_positions(model)
    assert len(positions) == (8 if arch == "vgg11" else 13)
    assert set(positions.values()) == {"weight"}
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    for name, (g_s, g_w) in _factor_and_weight_grads(model, x, y).items():
        assert g_s > 1e-2 * g_w > 0, name


def test_vgg_bn_factor_in_front_of_train_mode_bn_gets_no_gradient():
    """The same convs with a BN after each (vgg11_bn): a factor in the weight position is
    cancelled by the batch statistics; the output position (auto) puts it after the BN."""
    from fedbench.models import build_model

    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    grads = {}
    for position in ("weight", "output"):
        torch.manual_seed(0)
        model = build_model("vgg11_bn", 10, small_input=True).train()
        assert len(conv_bn_pairs(model)) == 8
        attach_adf(model, position=position)
        assert set(adf_positions(model).values()) == {position}
        grads[position] = _factor_and_weight_grads(model, x, y)
    for name, (g_s, g_w) in grads["weight"].items():
        # (the residue comes from the eps in BN's variance)
        assert g_s < 1e-3 * max(g_w, grads["output"][name][0]), name
    assert all(g_s > 0 for g_s, _ in grads["output"].values())
