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


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A generated MobileNetV2 ImageNet checkpoint on a localhost server, named the way
    torch.hub checks it (sha256 prefix), published through a stand-in torchvision enum."""
    torch.manual_seed(0)
    reference = tvm.mobilenet_v2(weights=None).state_dict()  # 1000 classes, ImageNet stem
    folder = tmp_path / "served"
    folder.mkdir()
    raw = folder / "raw.pth"
    torch.save(reference, raw)
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()
    name = f"mobilenet_v2-{digest[:8]}.pth"
    raw.rename(folder / name)
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/{name}"
    fake = WeightsEnum("FakeMobileNetWeights", {"IMAGENET1K_V1": Weights(url, None, {})})
    monkeypatch.setattr(fake, "DEFAULT", fake.IMAGENET1K_V1, raising=False)
    monkeypatch.setattr(tvm, "get_model_weights", lambda n: fake if n == "mobilenet_v2" else 1 / 0)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    try:
        yield reference, tmp_path / "torch-home" / "hub" / "checkpoints" / name, server
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
