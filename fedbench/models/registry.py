"""The model registry: one `ModelSpec` per architecture name, built over torchvision."""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from torch import nn

log = logging.getLogger("fedbench.models")
TASKS = ("classification", "multilabel", "segmentation")


class UnknownModelError(ValueError, KeyError):
    """A model name that is not in the registry."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class ModelSpec:
    """One architecture: a builder (num_classes, in_channels, small_input, **options) giving
    a classification network, and a function returning its feature trunk (for segmentation)
    with the trunk's output channels."""

    name: str
    family: str
    build: Callable[..., nn.Module]
    trunk: Callable[[nn.Module], nn.Module]
    feature_channels: int
    description: str = ""
    large: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    # torchvision's name for the published ImageNet weights (None: there are none)
    torchvision_name: str | None = None


MODELS: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec, overwrite: bool = False) -> ModelSpec:
    """Add an architecture to the registry."""
    if spec.name in MODELS and not overwrite:
        raise ValueError(f"model {spec.name!r} is already registered")
    MODELS[spec.name] = spec
    return spec


def list_models() -> list[str]:
    """Names of all registered architectures, sorted."""
    return sorted(MODELS)


def get_model_spec(name: str) -> ModelSpec:
    """The registry entry for `name`; UnknownModelError lists the known names."""
    try:
        return MODELS[name]
    except KeyError:
        raise UnknownModelError(
            f"unknown model {name!r}; known models: {', '.join(list_models())}"
        ) from None


# ---- torchvision ResNets ------------------------------------------------------------------


def _resnet(arch: str, num_classes: int, in_channels: int, small_input: bool) -> nn.Module:
    import torchvision.models as tvm

    model = getattr(tvm, arch)(weights=None, num_classes=num_classes)
    if small_input:
        # 3x3 stride-1 stem, no max-pool: keeps 28-32 px inputs at 4x4 before pooling
        model.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        model.maxpool = nn.Identity()
    elif in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
    if isinstance(model.conv1, nn.Conv2d):
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    return model


def _resnet_trunk(model: nn.Module) -> nn.Module:
    names = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
    return nn.Sequential(OrderedDict((n, getattr(model, n)) for n in names if hasattr(model, n)))


# ---- MobileNetV2 --------------------------------------------------------------------------


def _mobilenet_v2(num_classes: int, in_channels: int, small_input: bool) -> nn.Module:
    import torchvision.models as tvm

    model = tvm.mobilenet_v2(weights=None, num_classes=num_classes)
    stem = model.features[0][0]
    if small_input or in_channels != 3:
        model.features[0][0] = nn.Conv2d(
            in_channels, stem.out_channels, 3, 1 if small_input else 2, 1, bias=False
        )
        nn.init.kaiming_normal_(model.features[0][0].weight, mode="fan_out")
    if small_input:
        # as in the usual CIFAR MobileNetV2: stride 1 in the stem and the first 24-channel
        # block, total stride 8 (32 px -> 4x4)
        model.features[2].conv[1][0].stride = (1, 1)
    return model


def _features_trunk(model: nn.Module) -> nn.Module:
    return nn.Sequential(OrderedDict(features=model.features))


# ---- VGG ----------------------------------------------------------------------------------


def _vgg(arch: str, num_classes: int, in_channels: int, small_input: bool) -> nn.Module:
    import torchvision.models as tvm

    model = getattr(tvm, arch)(weights=None, num_classes=num_classes)
    if in_channels != 3:
        first = model.features[0]
        model.features[0] = nn.Conv2d(in_channels, first.out_channels, 3, 1, 1)
    if small_input:
        # drop the 5th max-pool (total stride 16: 28 px -> 1x1, 32 px -> 2x2), pool globally
        # and use a 512-512-C classifier instead of the 25088-4096-4096-C one
        model.features[-1] = nn.Identity()
        model.avgpool = nn.AdaptiveAvgPool2d(1)
        model.classifier = nn.Sequential(
            nn.Linear(512, 512),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(512, num_classes),
        )
        for m in model.classifier:
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)
    return model


# ---- CIFAR ResNets ------------------------------------------------------------------------


def _cifar_resnet(
    depth: int, num_classes: int, in_channels: int, small_input: bool, shortcut: str = "A"
) -> nn.Module:
    from fedbench.models.cifar_resnet import CifarResNet

    return CifarResNet(depth, num_classes, in_channels, small_input, shortcut)


for _arch, _ch, _large in (
    ("resnet18", 512, False),
    ("resnet34", 512, False),
    ("resnet50", 2048, True),
):
    register_model(
        ModelSpec(
            _arch,
            "resnet",
            partial(_resnet, _arch),
            _resnet_trunk,
            _ch,
            f"torchvision {_arch}",
            large=_large,
            torchvision_name=_arch,
        )
    )
register_model(
    ModelSpec(
        "mobilenet_v2",
        "mobilenet",
        _mobilenet_v2,
        _features_trunk,
        1280,
        "torchvision MobileNetV2 (width 1.0)",
        torchvision_name="mobilenet_v2",
    )
)
for _arch in ("vgg11", "vgg16", "vgg11_bn", "vgg16_bn"):
    register_model(
        ModelSpec(
            _arch,
            "vgg",
            partial(_vgg, _arch),
            _features_trunk,
            512,
            f"torchvision {_arch}",
            large=True,
            torchvision_name=_arch,
        )
    )
for _depth in (20, 56):
    register_model(
        ModelSpec(
            f"resnet{_depth}",
            "cifar_resnet",
            partial(_cifar_resnet, _depth),
            _resnet_trunk,
            64,
            f"CIFAR ResNet-{_depth} (He et al. 2016), option A shortcuts "
            f"(option B with shortcut='B')",
            options={"shortcut": "A"},
        )
    )


# ---- segmentation -------------------------------------------------------------------------


class SegmentationModel(nn.Module):
    """FCN-style: backbone trunk, torchvision's FCNHead (3x3 conv-BN-ReLU-dropout-1x1 conv),
    bilinear upsampling to the input size. forward returns logits [N, C, H, W]."""

    def __init__(self, backbone: nn.Module, in_features: int, num_classes: int) -> None:
        super().__init__()
        from torchvision.models.segmentation.fcn import FCNHead

        self.backbone = backbone
        self.head = FCNHead(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel class logits at the input resolution."""
        size = x.shape[-2:]
        out = self.head(self.backbone(x))
        return nn.functional.interpolate(out, size=size, mode="bilinear", align_corners=False)


# ---- pretrained weights -------------------------------------------------------------------


@dataclass
class PretrainedReport:
    """What `load_pretrained` did: keys loaded, keys skipped (with why), model keys missing."""

    path: str
    loaded: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    # loaded after adapting the input channels of a stem (also in `loaded`), with how
    adapted: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        """One line for logs."""
        sk = ", ".join(k for k, _ in self.skipped[:8]) + (" ..." if len(self.skipped) > 8 else "")
        ad = "".join(f", {k} {how}" for k, how in self.adapted)
        return (
            f"pretrained {self.path}: loaded {len(self.loaded)} tensors{ad}, skipped "
            f"{len(self.skipped)} [{sk}], {len(self.missing)} model tensors not in file"
        )


class PretrainedError(ValueError):
    """Pretrained weights that cannot be had or do not check out; names model.pretrained."""


IMAGENET = "imagenet"


def _sha256_prefix_ok(path: str) -> tuple[bool, str, str]:
    """(ok, expected, got): the file's sha256 against the hash prefix in its name
    (torch.hub's convention, e.g. resnet18-f37072fd.pth); ok when the name carries none."""
    import hashlib
    import re

    m = re.search(r"-([a-f0-9]{6,})\.", os.path.basename(path))
    if m is None:
        return True, "", ""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    got = h.hexdigest()
    return got.startswith(m.group(1)), m.group(1), got


def imagenet_state_dict(name: str) -> tuple[dict[str, torch.Tensor], str]:
    """torchvision's published ImageNet weights (DEFAULT) of architecture `name` and their
    name, through torchvision's weights API: from the torch hub cache, else downloaded; the
    sha256 prefix in the file name is checked either way."""
    spec = get_model_spec(name)
    if spec.torchvision_name is None:
        raise PretrainedError(
            f"model.pretrained: {name} has no published ImageNet weights; give a local "
            "state_dict path (e.g. one written by `fedbench pretrain`)"
        )
    from urllib.error import URLError

    from torchvision.models import get_model_weights

    weights = get_model_weights(spec.torchvision_name).DEFAULT
    cache = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))
    try:
        state = weights.get_state_dict(progress=False, check_hash=True, weights_only=True)
    except (URLError, OSError) as exc:
        raise PretrainedError(
            f"model.pretrained: the ImageNet weights of {name} ({weights}) are not in the torch "
            f"hub cache ({cache}) and could not be downloaded ({exc}); place the file there "
            "(TORCH_HOME sets the cache), or give a local state_dict path"
        ) from exc
    except RuntimeError as exc:  # torch.hub's hash check of a fresh download
        raise PretrainedError(f"model.pretrained: {weights}: {exc}") from exc
    # torch.hub checks the hash only when it downloads; a cached file is checked here.
    ok, want, got = _sha256_prefix_ok(cache) if os.path.isfile(cache) else (True, "", "")
    if not ok:
        raise PretrainedError(
            f"model.pretrained: cached file {cache} has sha256 {got[:16]}..., its name says "
            f"{want}; delete it to download it again"
        )
    return state, str(weights)


def adapt_input_channels(weight: torch.Tensor, channels: int) -> torch.Tensor | None:
    """A stem conv weight [O, C, k, k] for `channels` inputs that computes on grey images
    exactly what the original computes on those images repeated over its C channels.

    RGB -> grey (C=3 -> 1): the sum over the input channels, since conv(repeat(x), W) =
    conv(x, sum_c W_c). Grey -> RGB (1 -> 3): W/3 repeated, the same function on RGB images
    whose channels are equal. None for any other pair.
    """
    if weight.dim() != 4:
        return None
    have = weight.shape[1]
    if have == 3 and channels == 1:
        return weight.sum(dim=1, keepdim=True)
    if have == 1 and channels == 3:
        return weight.repeat(1, 3, 1, 1) / 3
    return None


def load_pretrained(
    model: nn.Module, path: str | os.PathLike, prefix: str = ""
) -> PretrainedReport:
    """Load a local state_dict file (torch.load, weights_only=True) or, for path 'imagenet',
    torchvision's ImageNet weights of the model's architecture (`model.fedbench_name`) into
    `model`, skipping tensors whose name or shape does not match (an adapted stem or
    classifier).

    The file may be a bare state_dict or hold one under 'state_dict'/'model'; a 'module.'
    prefix (DataParallel) is removed. `prefix` is prepended to the file's keys (e.g.
    'backbone.' to load classification weights into a SegmentationModel). A 4-D weight that
    differs only in its input channels (an RGB stem into a grey model, or the reverse) is
    adapted by `adapt_input_channels` instead of skipped, so the stem transfers across a
    change of channels (CIFAR-10 or ImageNet -> X-rays).
    """
    if str(path) == IMAGENET:
        state, path = imagenet_state_dict(model.fedbench_name)
    else:
        if not os.path.isfile(path):
            raise PretrainedError(f"model.pretrained: no file {str(path)!r} (nor 'imagenet')")
        state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict):
        for key in ("state_dict", "model"):
            if key in state and isinstance(state[key], dict):
                state = state[key]
                break
    if not isinstance(state, dict):
        raise TypeError(f"{path} does not hold a state_dict")
    own = model.state_dict()
    report = PretrainedReport(str(path))
    take = {}
    for k, v in state.items():
        name = prefix + (k.removeprefix("module."))
        if not isinstance(v, torch.Tensor):
            report.skipped.append((name, "not a tensor"))
        elif name not in own:
            report.skipped.append((name, "not in model"))
        elif own[name].shape != v.shape:
            want = own[name].shape
            fit = adapt_input_channels(v, want[1]) if v.dim() == 4 else None
            if fit is not None and fit.shape == want:
                take[name] = fit
                how = "summed over its 3 input channels" if want[1] == 1 else "repeated to 3"
                report.adapted.append((name, how))
            else:
                why = f"shape {tuple(v.shape)} != model {tuple(want)}"
                report.skipped.append((name, why))
        else:
            take[name] = v
    model.load_state_dict(take, strict=False)
    report.loaded = sorted(take)
    report.missing = sorted(set(own) - set(take))
    log.info(report.summary())
    return report


# ---- the one entry point ------------------------------------------------------------------


def build_model(
    name: str,
    num_classes: int,
    in_channels: int = 3,
    small_input: bool = True,
    task: str = "classification",
    pretrained: str | os.PathLike | None = None,
    **options: Any,
) -> nn.Module:
    """Build registered architecture `name` (torchvision weights=None; see `pretrained`).

    small_input: 3x3 stride-1 stem, no max-pool (28-32 px); else ImageNet-style stem.
    task 'classification'/'multilabel' give logits [N, num_classes]; 'segmentation' an
    FCN head on the trunk, logits [N, num_classes, H, W]. pretrained: a local state_dict
    file, or 'imagenet' for torchvision's published weights (hub cache or download, hash
    checked), loaded with load_pretrained (mismatching stem/classifier tensors skipped, e.g.
    the 3x3 small-input stem and the classifier); the report is `model.pretrained_report`.
    options go to the builder (resnet20/56: shortcut='A'|'B').
    """
    spec = get_model_spec(name)
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if num_classes < 1 or in_channels < 1:
        raise ValueError(
            f"num_classes and in_channels must be >= 1 (got {num_classes}, {in_channels})"
        )
    unknown = set(options) - set(spec.options)
    if unknown:
        raise ValueError(
            f"{name} takes no option(s) {sorted(unknown)}; its options: "
            f"{sorted(spec.options) or 'none'}"
        )
    model = spec.build(num_classes, in_channels, small_input, **options)
    object.__setattr__(model, "fedbench_name", name)  # a plain attribute, not a submodule
    report = load_pretrained(model, pretrained) if pretrained is not None else None
    if task == "segmentation":
        model = SegmentationModel(spec.trunk(model), spec.feature_channels, num_classes)
    if report is not None:
        model.pretrained_report = report
    return model
