"""model.pretrained: imagenet through torchvision's weights API (served from localhost or the
hub cache, hash checked), local state_dict files, and the errors a user sees."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from pathlib import Path

import pytest
import torch
import torchvision.models as tvm
from torchvision.models import Weights, WeightsEnum

from fedbench.models import PretrainedError, build_model


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


def _serve(tmp_path, monkeypatch, arch: str, reference: dict):
    """Serve `reference` from localhost as torchvision's ImageNet weights of `arch`, named
    the way torch.hub checks it (sha256 prefix); returns (cached path, server)."""
    folder = tmp_path / "served"
    folder.mkdir()
    raw = folder / "raw.pth"
    torch.save(reference, raw)
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()
    name = f"{arch}-{digest[:8]}.pth"
    raw.rename(folder / name)
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/{name}"
    fake = WeightsEnum("FakeWeights", {"IMAGENET1K_V1": Weights(url, None, {})})
    monkeypatch.setattr(fake, "DEFAULT", fake.IMAGENET1K_V1, raising=False)
    monkeypatch.setattr(tvm, "get_model_weights", lambda n: fake if n == arch else 1 / 0)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    return tmp_path / "torch-home" / "hub" / "checkpoints" / name, server


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A generated MobileNetV2 ImageNet checkpoint on a localhost server, published through
    a stand-in torchvision enum."""
    torch.manual_seed(0)
    reference = tvm.mobilenet_v2(weights=None).state_dict()  # 1000 classes, ImageNet stem
    cached, server = _serve(tmp_path, monkeypatch, "mobilenet_v2", reference)
    try:
        yield reference, cached, server
    finally:
        server.shutdown()
        server.server_close()


def _same_except_classifier(model, reference) -> None:
    own = model.state_dict()
    loaded = [k for k in reference if own[k].shape == reference[k].shape]
    assert len(loaded) > 100
    for k in loaded:
        assert torch.equal(own[k], reference[k]), k
    assert set(model.pretrained_report.loaded) == set(loaded)
    assert {k for k, _ in model.pretrained_report.skipped} == {
        "classifier.1.weight",
        "classifier.1.bias",
    }


def test_imagenet_weights_download_then_cache(served):
    reference, cached, server = served
    model = build_model("mobilenet_v2", 10, small_input=False, pretrained="imagenet")
    _same_except_classifier(model, reference)
    assert cached.is_file()  # torch.hub stored it
    server.shutdown()  # no network: the cache serves the second build
    again = build_model("mobilenet_v2", 10, small_input=False, pretrained="imagenet")
    _same_except_classifier(again, reference)


def test_small_input_stem_keeps_the_weights_with_stride_one(served):
    """MobileNetV2's small-input stem differs only in stride: its 3x3 weights still load."""
    reference, _, _ = served
    model = build_model("mobilenet_v2", 10, small_input=True, pretrained="imagenet")
    _same_except_classifier(model, reference)
    assert model.features[0][0].stride == (1, 1)


def test_corrupted_cache_file_is_refused(served):
    _, cached, _ = served
    build_model("mobilenet_v2", 10, small_input=False, pretrained="imagenet")
    data = bytearray(cached.read_bytes())
    data[-10] ^= 0xFF
    cached.write_bytes(bytes(data))
    with pytest.raises(PretrainedError, match="sha256"):
        build_model("mobilenet_v2", 10, small_input=False, pretrained="imagenet")


def test_no_cache_and_no_network_names_the_cache(served):
    _, cached, server = served
    server.shutdown()
    server.server_close()
    with pytest.raises(PretrainedError, match="torch hub cache") as exc:
        build_model("mobilenet_v2", 10, small_input=False, pretrained="imagenet")
    assert str(cached) in str(exc.value)


def test_models_without_imagenet_weights_and_missing_files(tmp_path):
    with pytest.raises(PretrainedError, match="resnet20 has no published ImageNet weights"):
        build_model("resnet20", 10, pretrained="imagenet")
    with pytest.raises(PretrainedError, match="no file"):
        build_model("resnet20", 10, pretrained=str(tmp_path / "nope.pt"))


def test_local_state_dict_path(tmp_path: Path):
    src = build_model("resnet20", 10)
    path = tmp_path / "r20.pt"
    torch.save({"state_dict": src.state_dict()}, path)
    model = build_model("resnet20", 10, pretrained=str(path))
    for k, v in src.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


def _vgg_imagenet_features(arch: str) -> dict[str, torch.Tensor]:
    """A VGG ImageNet checkpoint's conv tensors (the real names and shapes) and the last
    classifier layer; the 25088-4096-4096 layers are left out to keep the file small."""
    torch.manual_seed(1)
    state = {k: v for k, v in build_model(arch, 1000, small_input=False).state_dict().items()}
    small = {k: v for k, v in state.items() if k.startswith("features.")}
    small["classifier.6.weight"] = torch.randn(1000, 4096)
    small["classifier.6.bias"] = torch.randn(1000)
    return small


@pytest.mark.parametrize("arch", ["vgg11", "vgg16"])
def test_vgg_without_bn_small_input_takes_every_imagenet_conv(tmp_path, monkeypatch, arch):
    """The 32-px VGG keeps ImageNet's 3x3 stride-1 convolutions: all of them load, the stem
    included; only the classifier (512-512-C instead of 25088-4096-4096-1000) is new."""
    reference = _vgg_imagenet_features(arch)
    _, server = _serve(tmp_path, monkeypatch, arch, reference)
    try:
        model = build_model(arch, 10, small_input=True, pretrained="imagenet")
    finally:
        server.shutdown()
        server.server_close()
    convs = [k for k in reference if k.startswith("features.")]
    assert len(convs) == (16 if arch == "vgg11" else 26)  # 8 or 13 convs, weight + bias
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    own = model.state_dict()
    for k in convs:
        assert torch.equal(own[k], reference[k]), k
    assert set(model.pretrained_report.loaded) == set(convs)
    assert {k for k, _ in model.pretrained_report.skipped} == {
        "classifier.6.weight",
        "classifier.6.bias",
    }
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert model(torch.randn(2, 3, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("arch", ["resnet20", "vgg11"])
def test_rgb_stem_transfers_to_grey_images(tmp_path: Path, arch: str):
    """A 3-channel source model (CIFAR-10) into a 1-channel target (X-rays): the stem is
    summed over its input channels, so the grey model computes on a grey image exactly what
    the source model computes on that image repeated to RGB."""
    torch.manual_seed(0)
    src = build_model(arch, 2, in_channels=3)
    path = tmp_path / "src.pt"
    torch.save(src.state_dict(), path)
    grey = build_model(arch, 2, in_channels=1, pretrained=str(path))
    report = grey.pretrained_report
    stem = "conv1.weight" if arch == "resnet20" else "features.0.weight"
    assert [k for k, _ in report.adapted] == [stem] and stem in report.loaded
    assert not report.skipped and not report.missing
    x = torch.rand(4, 1, 28, 28)
    src.eval(), grey.eval()
    with torch.no_grad():
        torch.testing.assert_close(grey(x), src(x.repeat(1, 3, 1, 1)), rtol=1e-4, atol=1e-5)


def test_grey_stem_into_rgb_model_and_other_shapes_are_skipped(tmp_path: Path):
    torch.manual_seed(0)
    src = build_model("resnet20", 2, in_channels=1)
    path = tmp_path / "src.pt"
    torch.save(src.state_dict(), path)
    rgb = build_model("resnet20", 2, in_channels=3, pretrained=str(path))
    x = torch.rand(3, 1, 28, 28)
    src.eval(), rgb.eval()
    with torch.no_grad():
        torch.testing.assert_close(rgb(x.repeat(1, 3, 1, 1)), src(x), rtol=1e-4, atol=1e-5)
    # a different number of classes is still a skip, not an adaptation
    ten = build_model("resnet20", 10, in_channels=3, pretrained=str(path))
    assert {k for k, _ in ten.pretrained_report.skipped} == {"fc.weight", "fc.bias"}
