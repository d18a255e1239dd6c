"""Adaptive Differential Filters: one learnable factor per output filter.

`attach_adf` gives every Conv2d (optionally Linear) a plain parameter `<module>.adf_scale` of
shape [C_out, 1, 1, 1] (Linear: [out, 1]) initialised to 1, so state_dict names stay clean and
`<module>.weight` keeps its meaning. Where the factor acts is the `position`:

- "weight": the layer computes conv(x, s * W) (the method as described). Folding: W <- s * W.
- "output": a conv directly followed by a BatchNorm2d (see `conv_bn_pairs`) computes
  s * BN(conv(x)), i.e. the factor scales the BN's output channel (its affine weight and
  bias). A train-mode BN normalises each channel with batch statistics and so cancels any
  per-channel scale of its input: a factor in the weight position would get (almost) no
  gradient there. Folding: gamma <- s * gamma, beta <- s * beta. Convs without a following
  BN (and Linear layers) keep the weight position.

Folding (then s <- 1) leaves outputs unchanged in both positions, in eval and in train mode.
The factor tensor is always named `<conv>.adf_scale`, whichever position it acts in.

Where a factor is a new degree of freedom (the paper's setting), and where it is not:
a per-filter factor s in front of a train-mode BN is cancelled, BN(s z) = BN(z) up to eps
(mean and standard deviation both scale by s), so d loss / d s = 0; in the output position
s BN(z) = (s gamma) z_hat + s beta reparametrizes the BN's affine parameters, which
"unscaled" already trains and sends. With frozen statistics BN(s z) = gamma (s z - mu) /
sigma + beta is again an affine per-channel map, so s only reparametrizes (gamma, beta) when
those train. s acts only where no trainable normalization follows the conv: a network
without BN after its convolutions (VGG-11/16 without BN), or BN frozen statistics *and*
affine (partial update without `bn`). `adf_positions` tells, per layer, which one a model got.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ADF_POSITIONS",
    "ADF_SUFFIX",
    "ADFBatchNorm2d",
    "ADFConv2d",
    "ADFLinear",
    "adf_fold_targets",
    "adf_positions",
    "attach_adf",
    "conv_bn_pairs",
    "fold_adf",
    "fold_adf_state",
    "fold_by_client_factors",
    "is_adf_name",
]

ADF_SUFFIX = ".adf_scale"
ADF_POSITIONS = ("weight", "output")


def is_adf_name(name: str) -> bool:
    """True for the state_dict name of a filter factor."""
    return name.endswith(ADF_SUFFIX) or name == ADF_SUFFIX[1:]


class ADFConv2d(nn.Conv2d):
    """Conv2d with a per-filter factor: conv(x, adf_scale * weight), or a plain conv whose
    factor is applied by the following BatchNorm (`adf_bn` set: output position)."""

    adf_scale: nn.Parameter
    adf_bn: nn.Module | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve with the per-filter scaled weight (weight position) or the plain weight."""
        if self.adf_bn is not None:
            return self._conv_forward(x, self.weight, self.bias)
        return self._conv_forward(x, self.weight * self.adf_scale, self.bias)


class ADFBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose output channels are scaled by its conv's factor: s * BN(x)."""

    adf_conv: ADFConv2d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise as usual, then scale channel c by the conv's adf_scale[c]."""
        return super().forward(x) * self.adf_conv.adf_scale.view(1, -1, 1, 1)


class ADFLinear(nn.Linear):
    """Linear computing x (adf_scale * weight)^T + b."""

    adf_scale: nn.Parameter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the per-output scaled weight."""
        return F.linear(x, self.weight * self.adf_scale, self.bias)


def _pairable(conv: nn.Module, bn: nn.Module) -> bool:
    """An affine BatchNorm2d with one channel per filter of a plain Conv2d."""
    return (
        type(conv) is nn.Conv2d
        and type(bn) is nn.BatchNorm2d
        and bn.affine
        and bn.num_features == conv.out_channels
    )


def conv_bn_pairs(model: nn.Module) -> dict[str, str]:
    """Conv2d -> BatchNorm2d module names where the BN directly follows the conv.

    Found statically within each parent: the BN is the next child after the conv (torchvision
    Sequentials: features.N -> features.N+1, downsample.0 -> downsample.1, conv -> bn in
    Conv2dNormActivation), or a sibling named like the conv with `conv` -> `bn` (conv1 -> bn1,
    conv2 -> bn2, also when another child such as a max-pool is registered in between). Only
    affine BNs with one channel per filter qualify; each BN pairs with at most one conv.
    """
    pairs: dict[str, str] = {}
    claimed: set[int] = set()
    for pname, parent in model.named_modules():
        kids = list(parent.named_children())
        by_name = dict(kids)
        prefix = f"{pname}." if pname else ""
        for i, (cname, conv) in enumerate(kids):
            if type(conv) is not nn.Conv2d:
                continue
            candidates = [kids[i + 1]] if i + 1 < len(kids) else []
            m = re.fullmatch(r"(.*)conv(\d*)", cname)
            if m and f"{m[1]}bn{m[2]}" in by_name:
                bname = f"{m[1]}bn{m[2]}"
                candidates.append((bname, by_name[bname]))
            for bname, bn in candidates:
                if _pairable(conv, bn) and id(bn) not in claimed:
                    claimed.add(id(bn))
                    pairs[f"{prefix}{cname}"] = f"{prefix}{bname}"
                    break
    return pairs


def attach_adf(model: nn.Module, linear: bool = False, position: str = "weight") -> list[str]:
    """Add factors (init 1) to every Conv2d (and Linear if `linear`); returns their names.

    position="output" applies the factor of each conv that is directly followed by a
    BatchNorm2d on that BN's output (see the module docstring); other layers use "weight".
    """
    if position not in ADF_POSITIONS:
        raise ValueError(f"position must be one of {', '.join(ADF_POSITIONS)}, got {position!r}")
    modules = dict(model.named_modules())
    pairs = conv_bn_pairs(model) if position == "output" else {}
    names = []
    for mname, module in modules.items():
        if type(module) is nn.Conv2d:
            cls, shape = ADFConv2d, (module.out_channels, 1, 1, 1)
        elif linear and type(module) is nn.Linear:
            cls, shape = ADFLinear, (module.out_features, 1)
        else:
            continue
        w = module.weight
        # Swapping the class keeps weights, hooks and the module's place in the parent.
        module.__class__ = cls
        module.register_parameter(
            "adf_scale", nn.Parameter(torch.ones(shape, dtype=w.dtype, device=w.device))
        )
        if mname in pairs:
            bn = modules[pairs[mname]]
            bn.__class__ = ADFBatchNorm2d
            # Plain attributes, not submodules: no duplicate state_dict entries, and the
            # factor is read from the conv at every forward (survives .to() and loading).
            object.__setattr__(bn, "adf_conv", module)
            object.__setattr__(module, "adf_bn", bn)
        names.append(f"{mname}{ADF_SUFFIX}" if mname else ADF_SUFFIX[1:])
    return names


def adf_positions(model: nn.Module) -> dict[str, str]:
    """Factor name -> the position it acts in on this model: 'output' (scales the following
    BatchNorm's output) or 'weight' (conv(x, s*W)); e.g. all 'weight' on a VGG without BN,
    whatever method.adf_position says."""
    out = {}
    for mname, module in model.named_modules():
        if isinstance(module, (ADFConv2d, ADFLinear)):
            name = f"{mname}{ADF_SUFFIX}" if mname else ADF_SUFFIX[1:]
            out[name] = "output" if getattr(module, "adf_bn", None) is not None else "weight"
    return out


def adf_fold_targets(model: nn.Module) -> dict[str, tuple[str, ...]]:
    """Factor name -> state names it folds into: the layer's weight (weight position) or its
    BatchNorm's weight and bias (output position)."""
    names = {id(m): n for n, m in model.named_modules()}
    out: dict[str, tuple[str, ...]] = {}
    for mname, module in model.named_modules():
        if not isinstance(module, (ADFConv2d, ADFLinear)):
            continue
        prefix = f"{mname}." if mname else ""
        bn = getattr(module, "adf_bn", None)
        if bn is not None:
            bname = names[id(bn)]
            out[f"{prefix}adf_scale"] = (f"{bname}.weight", f"{bname}.bias")
        else:
            out[f"{prefix}adf_scale"] = (f"{prefix}weight",)
    return out


@torch.no_grad()
def fold_adf(model: nn.Module) -> None:
    """Fold every factor in place (W <- s * W, or BN gamma, beta <- s * gamma, s * beta); s <- 1."""
    for module in model.modules():
        if isinstance(module, (ADFConv2d, ADFLinear)):
            bn = getattr(module, "adf_bn", None)
            if bn is not None:
                s = module.adf_scale.reshape(-1)
                bn.weight.mul_(s)
                bn.bias.mul_(s)
            else:
                module.weight.mul_(module.adf_scale)
            module.adf_scale.fill_(1.0)


@torch.no_grad()
def fold_adf_state(
    state: dict[str, torch.Tensor], targets: dict[str, tuple[str, ...]] | None = None
) -> None:
    """Fold factors inside a state dict (in place); `targets` from `adf_fold_targets`
    (None: every factor folds into the weight of the same module, the weight position)."""
    if targets is None:
        targets = {n: (f"{n[: -len('adf_scale')]}weight",) for n in state if is_adf_name(n)}
    for name, tnames in targets.items():
        s = state[name]
        for t in tnames:
            state[t].mul_(s.reshape(-1, *([1] * (state[t].dim() - 1))))
        s.fill_(1.0)


@torch.no_grad()
def fold_by_client_factors(
    server: dict[str, torch.Tensor],
    clients: dict[str, torch.Tensor],
    targets: dict[str, tuple[str, ...]],
) -> None:
    """Fold the clients' decoded factors s_v into both models (bidirectional adf_fold).

    Clients: targets x s_v, s_v <- 1. Server: targets x s_v, s <- s / s_v, an exact
    reparametrisation that keeps the server's function and its not-yet-sent factor residual.
    Both sides use the same s_v, so they stay in sync even for tensors that are never
    transmitted. Entries with s_v == 0 are left unfolded on both sides.
    """
    for name, tnames in targets.items():
        sv = clients[name].clone()
        sv = torch.where(sv == 0, torch.ones_like(sv), sv)
        for t in tnames:
            shape = (-1, *([1] * (clients[t].dim() - 1)))
            clients[t].mul_(sv.reshape(shape))
            server[t].mul_(sv.reshape(shape))
        clients[name].div_(sv)  # x / x == 1 exactly in IEEE arithmetic
        server[name].div_(sv)
