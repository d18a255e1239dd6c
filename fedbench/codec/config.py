"""Codec settings: one frozen dataclass, validated on construction."""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real

from fedbench.codec.errors import SettingsError

MODES = ("nnc", "sparse")
_MAX_QP_DENSITY = 7  # a 3-bit syntax element in NNR


def _int(name: str, value: object, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise SettingsError(f"CodecConfig.{name} must be an integer, got {value!r}")
    if not lo <= int(value) <= hi:
        raise SettingsError(f"CodecConfig.{name} must be in {lo}..{hi}, got {value}")


def _bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise SettingsError(f"CodecConfig.{name} must be True or False, got {value!r}")


def check_qp(label: str, qp: object, density: int) -> int:
    """A QP as CodecConfig accepts it (integer in -4096..4096, float32 step), or SettingsError."""
    if isinstance(qp, bool) or not isinstance(qp, Integral):
        raise SettingsError(f"{label} must be an integer, got {qp!r}")
    if not -4096 <= int(qp) <= 4096:
        raise SettingsError(f"{label} must be in -4096..4096, got {qp}")
    # step = (2^d + (qp mod 2^d)) * 2^(floor(qp / 2^d) - d) must be a normal float32 and so
    # must its reciprocal.
    e = (int(qp) >> density) - density
    if not -126 <= e <= 126:
        raise SettingsError(
            f"{label}={qp} with qp_density={density} gives a step outside the float32 range"
        )
    return int(qp)


@dataclass(frozen=True)
class CodecConfig:
    """Settings of `fedbench.codec.encode`; everything the decoder needs is in the stream.

    mode: "nnc" codes every tensor with the bit-exact NNC (DeepCABAC) CABAC; "sparse" uses this
    project's own range coder with counting estimators and a run-length binarization, which
    stays close to the zeroth-order entropy on highly sparse federated updates.
    qp / qp_density: quantization of float weight tensors (ndim >= 2), step =
    2^(qp / 2^qp_density) on a 2^qp_density grid; nonweight_qp: the same for other float
    tensors (biases, norms, scalars), which are small and sensitive, hence finer.
    dq: 8-state dependent (trellis-coded) quantization. lambda_scale > 0: rate-aware
    quantization (RDOQ, or the rate-aware trellis with dq). param_opt, scan_order, row_skip and
    cabac_unary_length are NNC coding settings (ignored by the sparse mode). num_threads: worker
    threads for coding independent tensors and segments (None: all cores); the bytes do not
    depend on it. segment_elements: the sparse mode splits larger tensors into independently
    decodable segments of this many elements (0: never).
    """

    mode: str = "nnc"
    qp: int = -32
    qp_density: int = 2
    nonweight_qp: int = -75
    dq: bool = False
    lambda_scale: float = 0.0
    param_opt: bool = False
    scan_order: int = 0
    row_skip: bool = True
    cabac_unary_length: int = 11
    num_threads: int | None = None
    segment_elements: int = 1 << 22

    def __post_init__(self) -> None:
        """Reject settings out of range, naming the field."""
        if self.mode not in MODES:
            raise SettingsError(f"CodecConfig.mode must be one of {MODES}, got {self.mode!r}")
        _int("qp_density", self.qp_density, 0, _MAX_QP_DENSITY)
        check_qp("CodecConfig.qp", self.qp, int(self.qp_density))
        check_qp("CodecConfig.nonweight_qp", self.nonweight_qp, int(self.qp_density))
        _bool("dq", self.dq)
        _bool("param_opt", self.param_opt)
        _bool("row_skip", self.row_skip)
        lam = self.lambda_scale
        if isinstance(lam, bool) or not isinstance(lam, Real) or not math.isfinite(float(lam)):
            raise SettingsError(f"CodecConfig.lambda_scale must be a finite number, got {lam!r}")
        if float(lam) < 0:
            raise SettingsError(f"CodecConfig.lambda_scale must be >= 0, got {lam}")
        _int("scan_order", self.scan_order, 0, 4)
        _int("cabac_unary_length", self.cabac_unary_length, 1, 32)
        if self.num_threads is not None:
            _int("num_threads", self.num_threads, 1, 1024)
        _int("segment_elements", self.segment_elements, 0, 1 << 40)
        if 0 < self.segment_elements < 4096:
            raise SettingsError(
                "CodecConfig.segment_elements must be 0 (no segments) or at least 4096, "
                f"got {self.segment_elements}"
            )
