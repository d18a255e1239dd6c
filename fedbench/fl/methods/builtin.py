"""The built-in methods: fp32 reference, DeepCABAC with and without ADF, STC, top-k fp16."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from fedbench.fl.compressors import UpdateCompressor, build_compressor
from fedbench.fl.methods import register_method
from fedbench.fl.methods.base import Method

if TYPE_CHECKING:
    import torch.nn as nn

    from fedbench.fl.compressors import TensorSpec


class _Registered(Method):
    """A method whose compressor is a `fedbench.fl.compressors` registry entry."""

    compressor: str = ""

    def build_compressor(self, template: dict[str, TensorSpec], downlink: bool) -> UpdateCompressor:
        return build_compressor(self.compressor, template, **self.compressor_options(downlink))


@register_method
class Fp32(_Registered):
    name = "fp32"
    description = "uncompressed FedAvg: raw float32 updates (the reference)"
    display = "FedAvg fp32"
    color = 7
    order = 0
    compressor = "fp32"

    def error_bound(self, update: dict[str, np.ndarray], name: str) -> float:
        return 0.0


@register_method
class Stc(_Registered):
    name = "stc"
    description = "sparse ternary compression (Sattler et al. 2020): top-k, +-mu, Golomb positions"
    display = "STC"
    color = 2
    order = 10
    compressor = "stc"


@register_method
class TopkFp16(_Registered):
    name = "topk-fp16"
    description = "top-k per weight tensor, Golomb-coded positions, float16 values"
    display = "top-k fp16"
    color = 5
    order = 20
    compressor = "topk-fp16"


@register_method
class Unscaled(_Registered):
    name = "unscaled"
    description = "sparsified updates coded with DeepCABAC (ADF ablation: no filter factors)"
    display = "Unscaled + DeepCABAC"
    color = 0
    order = 30
    compressor = "deepcabac"


@register_method
class Adf(_Registered):
    name = "adf"
    description = "adaptive differential filters (Becking et al. 2022) + sparsified DeepCABAC"
    display = "ADF + DeepCABAC"
    color = 3
    order = 40
    compressor = "deepcabac"
    has_factors = True

    def prepare_model(self, model: nn.Module) -> None:
        from fedbench.fl.adf import attach_adf

        attach_adf(
            model, linear=self.cfg.method.adf_linear, position=self.cfg.resolved_adf_position
        )
