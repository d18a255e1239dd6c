"""The `Method` interface: what one FL update-compression method contributes to a run.

A method is a class registered by name (decorator `register_method`, or the entry-point group
`fedbench.methods` of an installed package). It carries

- `Options`: a dataclass of its own options, given in the config's `method:` section next to
  `name` and the options shared by every method (`fedbench.fl.config.MethodConfig`); an option
  of another method is rejected naming the key (`method.<key>`);
- `build_compressor`: the uplink / downlink `UpdateCompressor` from the tensor template;
- `prepare_model`: an optional hook that changes the model before training (ADF attaches its
  filter factors there);
- `error_bound`: the largest |update - decoded| the method promises per tensor (contract tests);
- `display`, `color`, `marker`: how figures draw it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    import torch.nn as nn

    from fedbench.fl.compressors import TensorSpec, UpdateCompressor
    from fedbench.fl.config import RunConfig

__all__ = ["Method", "NoOptions", "shared_compressor_options"]


@dataclass
class NoOptions:
    """A method without options of its own."""


def shared_compressor_options(cfg: RunConfig, downlink: bool) -> dict[str, Any]:
    """The compressor options every built-in method reads from the shared `method` keys."""
    m = cfg.method
    sparsity, codec_mode = m.sparsity, m.codec_mode
    if downlink and m.downlink_sparsity is not None:
        sparsity = m.downlink_sparsity
    if downlink and m.downlink_codec_mode is not None:
        codec_mode = m.downlink_codec_mode
    return {
        "sparsity": sparsity,
        "sparsifier": m.sparsifier,
        "structured_factor": m.structured_factor,
        "qp": m.qp,
        "qp_density": m.qp_density,
        "nonweight_qp": m.nonweight_qp,
        "adf_qp": m.adf_qp,
        "bn_affine_qp": m.bn_affine_qp,
        "bn_stats_qp": m.bn_stats_qp,
        "bias_qp": m.bias_qp,
        "nonweight_sparsity": m.nonweight_sparsity,
        "exact_sparsity": m.exact_sparsity,
        "bn_stats_every": m.bn_stats_every,
        "dq": m.dq,
        "param_opt": m.param_opt,
        "codec_mode": codec_mode,
        # The run's thread budget (config `threads`) rather than every core.
        "num_threads": cfg.threads,
    }


class Method:
    """Base class of FL methods; subclass, set the class attributes, register."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    display: ClassVar[str] = ""
    color: ClassVar[tuple[float, float, float] | None] = None  # None = a spare palette colour
    marker: ClassVar[str | None] = None
    # Position in figures and tables (smaller first); ties sort by name.
    order: ClassVar[int] = 100
    # True when prepare_model adds filter factors (fedbench.fl.adf) to the model.
    has_factors: ClassVar[bool] = False
    Options: ClassVar[type] = NoOptions

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg

    @property
    def options(self) -> Any:
        """This run's instance of `Options`."""
        return self.cfg.method.options

    @classmethod
    def validate(cls, cfg: RunConfig) -> None:
        """Cross-field checks of the method's options; raise ConfigError naming the key."""

    def compressor_options(self, downlink: bool) -> dict[str, Any]:
        """Keyword options passed to the compressor (default: the shared method keys)."""
        return shared_compressor_options(self.cfg, downlink)

    def build_compressor(self, template: dict[str, TensorSpec], downlink: bool) -> UpdateCompressor:
        """The compressor of one link direction for `template`."""
        raise NotImplementedError

    def prepare_model(self, model: nn.Module) -> None:
        """Change the model before it is moved to the device and the template is built."""

    def summary(self) -> dict[str, Any]:
        """Extra summary.json keys of the method (none by default)."""
        return {}

    def error_bound(self, update: dict[str, np.ndarray], name: str) -> float | np.ndarray:
        """Largest |update[name] - decoded[name]| the method promises (contract tests): a
        number, or an array of per-entry bounds of the tensor's shape.

        The default is no promise beyond |decoded| <= |update| + max|update|: the size of the
        update itself (any unbiased or sparsifying coder meets it).
        """
        return float(2 * np.abs(update[name]).max()) + 1e-6

    @classmethod
    def option_defaults(cls) -> dict[str, Any]:
        """Option name -> default value of `Options`."""
        out = {}
        for f in dataclasses.fields(cls.Options):
            if f.default is not dataclasses.MISSING:
                out[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                out[f.name] = f.default_factory()
        return out
