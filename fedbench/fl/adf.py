"""Adaptive Differential Filters: one learnable factor per output filter, conv(x, s * W).

`attach_adf` turns every Conv2d (optionally Linear) of a model into a subclass whose forward
uses the scaled weight; the factor is a plain parameter `<module>.adf_scale` of shape
[C_out, 1, 1, 1] (Linear: [out, 1]) initialised to 1, so state_dict names stay clean and
`<module>.weight` keeps its meaning. Folding (W <- s * W, s <- 1) leaves outputs unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ADF_SUFFIX",
    "ADFConv2d",
    "ADFLinear",
    "attach_adf",
    "fold_adf",
    "fold_adf_state",
    "is_adf_name",
]

ADF_SUFFIX = ".adf_scale"


def is_adf_name(name: str) -> bool:
    """True for the state_dict name of a filter factor."""
    return name.endswith(ADF_SUFFIX) or name == ADF_SUFFIX[1:]


class ADFConv2d(nn.Conv2d):
    """Conv2d computing conv(x, adf_scale * weight)."""

    adf_scale: nn.Parameter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve with the per-filter scaled weight."""
        return self._conv_forward(x, self.weight * self.adf_scale, self.bias)


class ADFLinear(nn.Linear):
    """Linear computing x (adf_scale * weight)^T + b."""

    adf_scale: nn.Parameter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the per-output scaled weight."""
        return F.linear(x, self.weight * self.adf_scale, self.bias)


def attach_adf(model: nn.Module, linear: bool = False) -> list[str]:
    """Add factors (init 1) to every Conv2d (and Linear if `linear`); returns their names."""
    names = []
    for mname, module in model.named_modules():
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
        names.append(f"{mname}{ADF_SUFFIX}" if mname else ADF_SUFFIX[1:])
    return names


@torch.no_grad()
def fold_adf(model: nn.Module) -> None:
    """Fold every factor into its weight in place: W <- s * W, s <- 1."""
    for module in model.modules():
        if isinstance(module, (ADFConv2d, ADFLinear)):
            module.weight.mul_(module.adf_scale)
            module.adf_scale.fill_(1.0)


@torch.no_grad()
def fold_adf_state(state: dict[str, torch.Tensor]) -> None:
    """Fold factors into weights inside a state dict (in place), matching names by prefix."""
    for name in list(state):
        if not is_adf_name(name):
            continue
        prefix = name[: -len("adf_scale")]
        wname = f"{prefix}weight"
        state[wname].mul_(state[name])
        state[name].fill_(1.0)
