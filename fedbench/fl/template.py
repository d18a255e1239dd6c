"""Device, default model, transmitted tensors (build_template, setting.partial matching)."""

from __future__ import annotations

import logging

import torch
from torch import nn

from fedbench.fl.adf import is_adf_name
from fedbench.fl.compressors import TensorSpec
from fedbench.fl.config import ConfigError, RunConfig
from fedbench.fl.data import FederatedData
from fedbench.fl.ledger import tensor_classes

__all__ = [
    "build_template",
    "default_model",
    "is_running_stat",
    "load_model_state",
    "resolve_device",
]

log = logging.getLogger("fedbench.fl")


def resolve_device(name: str) -> torch.device:
    """auto -> cuda when available, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: invalid value 'cuda'; no CUDA device is available here")
    return torch.device(name)


def _module_of(model: nn.Module) -> dict[str, nn.Module]:
    """Map each state_dict name to the module that owns it."""
    out = {}
    for mname, module in model.named_modules():
        for local, _ in list(module.named_parameters(recurse=False)) + list(
            module.named_buffers(recurse=False)
        ):
            out[f"{mname}.{local}" if mname else local] = module
    return out


def _classifier_prefix(model: nn.Module) -> str | None:
    """Name of the last Linear module (else the last Conv2d): the output layer."""
    last = None
    for cls in (nn.Linear, nn.Conv2d):
        for mname, module in model.named_modules():
            if isinstance(module, cls):
                last = mname
        if last is not None:
            return last
    return None


def _match_partial(model: nn.Module, names: list[str], patterns: list[str]) -> set[str]:
    """State names selected by the partial-update patterns (shortcuts or fnmatch).

    Every pattern must match some tensor, except the `adf` shortcut (a model without factors
    has none); the whole list must match at least one.
    """
    from fnmatch import fnmatchcase

    owner = _module_of(model)
    clf = _classifier_prefix(model)
    chosen: set[str] = set()
    for pat in patterns:
        if pat == "adf":
            hit = {n for n in names if is_adf_name(n)}
        elif pat == "bn":
            hit = {n for n in names if isinstance(owner.get(n), nn.modules.batchnorm._BatchNorm)}
        elif pat == "nobn":  # everything but BatchNorm (BN frozen, the rest fine-tuned)
            hit = {
                n for n in names if not isinstance(owner.get(n), nn.modules.batchnorm._BatchNorm)
            }
        elif pat == "bias":
            hit = {n for n in names if n.endswith("bias")}
        elif pat == "classifier":
            hit = {n for n in names if clf is not None and n.rsplit(".", 1)[0] == clf}
        else:
            hit = {n for n in names if fnmatchcase(n, pat)}
        # `adf` may match nothing: one pattern list then serves methods with and without
        # factors (fp32, unscaled, stc, topk-fp16).
        if not hit and pat != "adf":
            raise ConfigError(
                f"setting.partial: pattern {pat!r} matches no tensor of the model; use "
                "adf, bn, nobn, bias, classifier or an fnmatch pattern on state_dict names"
            )
        chosen |= hit
    if not chosen:
        raise ConfigError(
            f"setting.partial: {patterns!r} matches no tensor of the model (`adf` selects "
            "nothing without filter factors, i.e. unless method.name=adf)"
        )
    return chosen


def is_running_stat(name: str) -> bool:
    """True for a BatchNorm running statistic (running_mean / running_var)."""
    return name.rsplit(".", 1)[-1] in ("running_mean", "running_var")


def load_model_state(model: nn.Module, state: dict[str, torch.Tensor]) -> int:
    """Load `state` into `model`, running variances clipped at 0; the number clipped.

    A running variance is a mean of positive values, but the state that carries it is a sum
    of quantized, sparsified deltas, which can step below zero (QSGD, coarse bn_stats_qp,
    nonweight_sparsity). BatchNorm then takes the square root of a negative number and every
    output is NaN. The clip is applied to the module only, the same on server and clients,
    so the state's algebra and the byte accounting are unchanged; the client's next delta
    (trained model minus the unclipped start) carries the correction back.
    """
    model.load_state_dict(state)
    clipped = 0
    with torch.no_grad():
        for module in model.modules():
            var = getattr(module, "running_var", None)
            if isinstance(module, nn.modules.batchnorm._NormBase) and var is not None:
                negative = var < 0
                n = int(negative.sum())
                if n:
                    var.clamp_(min=0.0)
                    clipped += n
    return clipped


def build_template(model: nn.Module, cfg: RunConfig) -> dict[str, TensorSpec]:
    """The transmitted tensors (ordered) with their kind, from the model and the config."""
    state = model.state_dict()
    names = [n for n, t in state.items() if t.is_floating_point()]
    if cfg.setting.partial:
        chosen = _match_partial(model, names, cfg.setting.partial)
        names = [n for n in names if n in chosen]
    # the ledger's classes, so that each tensor is coded at the QP of the class it is charged to
    classes = tensor_classes(model, names)
    template = {}
    for n in names:
        t = state[n]
        is_weight = t.dim() >= 2 and n.endswith("weight") and not is_adf_name(n)
        if not is_weight and not cfg.method.include_nonweights and not is_adf_name(n):
            continue
        if cfg.method.bn_stats != "send" and is_running_stat(n):
            # local: each client keeps its own (fedbench.fl.client.ClientState.bn_stats);
            # recalibrate: measured where a model is evaluated (server.evaluate_models)
            continue
        template[n] = TensorSpec(tuple(t.shape), "weight" if is_weight else "fine", classes[n])
    if not template:
        raise ConfigError("setting.partial: no tensor left to train and transmit")
    return template


def default_model(cfg: RunConfig, data: FederatedData) -> nn.Module:
    """Build the configured model from the fedbench.models registry."""
    from fedbench.models import build_model

    model = build_model(
        cfg.model.name,
        data.num_classes,
        in_channels=data.channels,
        small_input=cfg.model.small_input,
        task=data.task,
        pretrained=cfg.model.pretrained,
    )
    report = getattr(model, "pretrained_report", None)
    if report is not None:  # which tensors kept their initialisation, in run.log
        log.info("%s; skipped: %s", report.summary(), report.skipped)
    return model
