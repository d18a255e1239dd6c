"""Model registry: every architecture builds and gives the right output shapes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fedbench.models import (
    SegmentationModel,
    UnknownModelError,
    build_model,
    get_model_spec,
    list_models,
    load_pretrained,
)

ALL = [
    "resnet18",
    "resnet34",
    "resnet50",
    "mobilenet_v2",
    "vgg11",
    "vgg16",
    "vgg11_bn",
    "vgg16_bn",
    "resnet20",
    "resnet56",
]
FAST = ["resnet20", "resnet56", "resnet18", "mobilenet_v2"]


def _out(model, size, in_channels=3):
    model.eval()
    with torch.no_grad():
        return model(torch.randn(1, in_channels, size, size))


def test_registry_complete():
    assert set(list_models()) == set(ALL)
    with pytest.raises(UnknownModelError, match="resnet18"):
        build_model("alexnet", 10)


@pytest.mark.parametrize("name", FAST)
def test_small_variants_fast(name):
    assert _out(build_model(name, 10), 32).shape == (1, 10)
    assert _out(build_model(name, 2, in_channels=1), 28, 1).shape == (1, 2)


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("small", [True, False])
def test_every_model_every_variant(name, small):
    size = 28 if small else 64
    assert _out(build_model(name, 5, small_input=small), size).shape == (1, 5)
    assert _out(build_model(name, 3, in_channels=1, small_input=small), size, 1).shape == (1, 3)
    seg = build_model(name, 21, small_input=small, task="segmentation")
    assert isinstance(seg, SegmentationModel)
    assert _out(seg, size).shape == (1, 21, size, size)


def test_small_input_stems():
    r = build_model("resnet18", 10)
    assert r.conv1.kernel_size == (3, 3) and r.conv1.stride == (1, 1)
    assert isinstance(r.maxpool, nn.Identity)
    r = build_model("resnet18", 10, small_input=False)
    assert r.conv1.kernel_size == (7, 7) and r.conv1.stride == (2, 2)
    m = build_model("mobilenet_v2", 10)
    assert m.features[0][0].stride == (1, 1)


def test_vgg_small_classifier():
    v = build_model("vgg11", 10)
    assert isinstance(v.features[-1], nn.Identity)
    assert [m.in_features for m in v.classifier if isinstance(m, nn.Linear)] == [512, 512]


def test_cifar_resnet_depth_and_shortcuts():
    def n_conv(m):
        return sum(isinstance(x, nn.Conv2d) for x in m.modules())

    a20 = build_model("resnet20", 10)
    assert n_conv(a20) == 19  # 19 conv + 1 fc = 20 layers
    assert n_conv(build_model("resnet56", 10)) == 55
    b20 = build_model("resnet20", 10, shortcut="B")
    assert n_conv(b20) == 21  # two 1x1 projections
    # option A: about 0.27M parameters as in He et al. Table 6
    assert 0.26e6 < sum(p.numel() for p in a20.parameters()) < 0.28e6
    assert _out(b20, 32).shape == (1, 10)
    with pytest.raises(ValueError, match="options"):
        build_model("resnet18", 10, shortcut="B")


def test_segmentation_small_fast():
    seg = build_model("resnet20", 21, task="segmentation")
    assert _out(seg, 24).shape == (1, 21, 24, 24)
    assert get_model_spec("resnet20").feature_channels == 64


def test_multilabel_is_logits():
    assert _out(build_model("resnet20", 20, task="multilabel"), 32).shape == (1, 20)
    with pytest.raises(ValueError, match="task"):
        build_model("resnet20", 20, task="detection")


def test_pretrained_from_file_skips_mismatch(tmp_path):
    # an "ImageNet" checkpoint: ImageNet-style stem, 1000 classes, DataParallel prefix
    src = build_model("resnet18", 1000, small_input=False)
    path = tmp_path / "r18.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}, path)
    model = build_model("resnet18", 10, small_input=True, pretrained=path)
    rep = model.pretrained_report
    skipped = {k for k, _ in rep.skipped}
    assert skipped == {"conv1.weight", "fc.weight", "fc.bias"}
    assert set(rep.missing) == skipped
    assert torch.equal(model.layer3[0].conv1.weight, src.layer3[0].conv1.weight)
    assert torch.equal(model.bn1.running_var, src.bn1.running_var)
    assert "skipped 3" in rep.summary()


def test_pretrained_full_match_and_grey(tmp_path):
    src = build_model("resnet20", 10)
    path = tmp_path / "r20.pt"
    torch.save(src.state_dict(), path)
    same = build_model("resnet20", 10, pretrained=path)
    assert not same.pretrained_report.skipped and not same.pretrained_report.missing
    x = torch.randn(2, 3, 32, 32)
    src.eval()
    same.eval()
    assert torch.equal(src(x), same(x))
    grey = build_model("resnet20", 10, in_channels=1, pretrained=path)
    # the RGB stem is adapted (summed over its input channels), not skipped
    assert not grey.pretrained_report.skipped
    assert [k for k, _ in grey.pretrained_report.adapted] == ["conv1.weight"]
    torch.testing.assert_close(grey.conv1.weight, src.conv1.weight.sum(1, keepdim=True))
    seg = build_model("resnet20", 21, task="segmentation", pretrained=path)
    assert torch.equal(seg.backbone.layer1[0].conv1.weight, src.layer1[0].conv1.weight)
    seg2 = build_model("resnet20", 21, task="segmentation")
    rep = load_pretrained(seg2, path, prefix="backbone.")
    assert {k for k, _ in rep.skipped} == {"backbone.fc.weight", "backbone.fc.bias"}


def test_pretrained_rejects_non_state_dict(tmp_path):
    path = tmp_path / "x.pt"
    torch.save([1, 2], path)
    with pytest.raises(TypeError, match="state_dict"):
        build_model("resnet20", 10, pretrained=path)
