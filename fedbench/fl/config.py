"""Configuration of one federated-learning run: dataclasses loaded from YAML, strictly validated.

A run config is a YAML mapping with the sections below; every key is optional and falls back
to the default shown. `--set a.b=value` overrides are parsed as YAML values and applied before
validation, so they are checked exactly like file keys. Unknown keys or bad values raise
`ConfigError`, whose message names the dotted key and the allowed values.

Top level
  seed (int, 0)                 seed of every random choice (partition, client selection,
                                batch order, initialisation).
  device (auto|cpu|cuda, auto)  auto = cuda when available.
  deterministic (bool, true)    torch.use_deterministic_algorithms(warn_only) + cudnn flags.
  checkpoint (bool, true)       write <out>/checkpoint.pt after every round (resume).
  threads (int>=1, 1)           torch intra-op threads and codec threads of the run. Results
                                depend on it (float reduction order), so it is part of the
                                config and recorded in summary.json; the workflow gives each
                                job as many cores as this value.

data
  name (str, pneumoniamnist)    a fedbench.data registry name: cifar10, pneumoniamnist,
                                chestxray, voc2012-seg, voc2012-cls.
  root (str, data)              folder of downloads / prepared caches.
  mirror (str|null)             local folder holding pre-downloaded archives.
  image_size (int|null)         resize at preparation (null = native size).
  partition (iid|dirichlet)     how training samples are split over clients.
  alpha (float>0, 0.5)          Dirichlet concentration (non-iid only; smaller = more skewed).
  num_clients (int>=1, 10)
  min_size (int>=1, 1)          minimum samples per client in the Dirichlet split.
  max_train_samples (int|null)  seeded random subset of the training set (CPU-sized runs).
  max_test_samples (int|null)   seeded random subset of the test set.
  augment (bool, false)         random crop (pad 4) + horizontal flip on training batches.
  val_fraction (0<=f<0.5, 0.1)  seeded share of the (subsetted) training samples held out as
                                a validation split before the client split. best_acc and
                                rounds_to_target select rounds on it, never on the test set;
                                0 = no validation split (then no selection is reported).

model
  name (str, resnet20)          fedbench.models registry name.
  small_input (bool, true)      CIFAR-style stem for small images.
  pretrained (str|null)         start from: a local state_dict path, or `imagenet` for
                                torchvision's published weights of the architecture (torch
                                hub cache, else download; sha256-checked); tensors whose
                                shape differs (small-input stem, classifier) keep their init.

train
  rounds (int>=1, 20)
  client_fraction (0<f<=1, 1.0) fraction of clients selected per round (partial participation).
  local_epochs (int>=1, 1)      local passes over the client's data ...
  local_steps (int|null)        ... or this many mini-batches instead (overrides epochs).
  batch_size (int>=1, 32)
  eval_batch_size (int>=1, 256)
  optimizer (sgd|adam, sgd)
  lr (float>0, 0.05)
  momentum (float, 0.9)         sgd only.
  nesterov (bool, false)
  weight_decay (float, 0.0)     never applied to ADF factors.
  lr_schedule (constant|cosine|step, constant)  per-round schedule of the client lr.
  lr_min (float, 0.0)           end value of the cosine schedule.
  lr_milestones (list[int], [])  rounds at which the step schedule multiplies lr by lr_gamma.
  lr_gamma (float, 0.1)
  keep_optimizer_state (bool, false)  clients keep their optimizer state between rounds.
  bn_mode (batch|frozen|running, batch)  BatchNorm during local training:
                                batch = usual train mode (batch statistics; running
                                statistics updated); frozen = running statistics used and
                                kept (affine parameters still train); running = running
                                statistics used, updated from each batch (EMA) first.
                                A train-mode (batch) BN cancels any per-channel scale of its
                                input, so ADF factors in the weight position get (almost) no
                                gradient where a conv is followed by BN: see
                                method.adf_position. The LSA steps always run with frozen
                                BN (as NNCodec's LSA does).
  precision (fp32|bf16|fp16, fp32)  autocast of local training and evaluation on the
                                run's device: the forward/backward matmuls and convolutions
                                in bfloat16 or float16, with float32 master weights, so the
                                model, the update and everything the codec sees stay float32.
                                fp16 scales the loss (torch.amp.GradScaler, a fresh one per
                                client and round starting at 2^10; a step whose gradients
                                overflow is skipped). On CPUs bf16 can only pay with bf16
                                matrix units (AMX, see fedbench.fl.training.cpu_bf16_support):
                                with AVX512-BF16 alone ResNet-20 trained at 0.7-0.8x the
                                fp32 samples/s. fp16 autocast runs on any CPU but is slow on
                                most (no fp16 matrix units), so it is meant for CUDA.
                                Results depend on it (part of the config).
  memory_format (contiguous|channels_last, contiguous)  layout of the model's 4-D weights
                                and of the input batches in local training and evaluation.
                                The state, updates and codec inputs keep the standard
                                contiguous layout. Results agree within float tolerance.
  parallel_clients (int>=1, 1)  train up to this many of a round's clients at once, each on
                                its own model replica in a thread with threads //
                                parallel_clients torch threads (at least 1); coding,
                                aggregation and accounting stay in client order. Every client
                                keeps its own seeds and batch order, so the results equal
                                sequential training within float tolerance (the reduction
                                order follows the per-thread thread count). Models with
                                dropout (global torch RNG) are refused. train_s is then the
                                wall time of the training phase, not the sum over clients.

setting
  direction (uni|bi, uni)       uni: uplink compressed, downlink = full fp32 model to each
                                selected client; bi: both compressed; a selected client
                                receives the broadcasts it missed (see fedbench.fl.ledger).
  initial_model (free|charged, free)  delivery of the initial model: free (a shared seed
                                or public checkpoint gives it) or charged at float32, once to
                                each client when it is first selected; the same for every
                                method and the fp32 reference.
  partial (list[str]|null)      partial update (a): only matching tensors are trained and
                                transmitted, the rest frozen. Items are fnmatch patterns on
                                state_dict names or the shortcuts `adf` (filter factors),
                                `bn` (BatchNorm parameters and statistics), `nobn`
                                (every tensor not of a BatchNorm), `bias`,
                                `classifier` (the last Linear/1x1 output layer).
                                Each pattern must match a tensor, except `adf`, which
                                matches nothing for methods without factors; the list as a
                                whole must match at least one tensor.
  regime (str|null)             a fine-tuning regime: a name that sets train.bn_mode and
                                setting.partial together (giving either as well is an error
                                unless it agrees). BN stats = running statistics updated
                                (bn_mode batch) or frozen (bn_mode frozen); BN affine trains
                                and travels only where `bn` or everything is selected:
                                  full               batch,  everything (BN affine trained)
                                  full-bnstats-frozen frozen, everything (BN affine trained)
                                  full-bn-frozen     frozen, [nobn] (BN affine frozen)
                                  bn-classifier      batch,  [bn, classifier]
                                  factors            frozen, [adf] (BN affine frozen)
                                  factors-classifier frozen, [adf, classifier]
                                  classifier         frozen, [classifier]
                                ADF factors act (are not a BN reparametrization) only where
                                both BN statistics and affine are frozen, or without BN.

strategy (str, fedavg)          server aggregation strategy, a fedbench.fl.aggregation registry
                                name (`fedbench.strategies` entry points add more).

method
  name (str, adf)               a fedbench.fl.methods registry name (`fedbench fl
                                --list-methods`): fp32, unscaled, adf, stc, topk-fp16, qsgd,
                                ef-signsgd, or one of an installed package's `fedbench.methods`
                                entry points. Keys below are shared by every method (each uses
                                those it needs); a method's own options (its Options dataclass)
                                sit next to them, and an option of another method is rejected.
  sparsity (0<=s<1, 0.9)        target fraction of zeros of each weight-tensor update.
  sparsifier (unstructured|structured|topk|topk-global, unstructured)
                                unstructured/topk: per-tensor magnitude threshold;
                                topk-global: one threshold over all weight tensors;
                                structured: zero whole output filters (see structured_factor).
  structured_factor (float|null)  structured: zero filters whose mean |u| is below this factor
                                times the tensor's mean filter magnitude; null = zero the
                                weakest filters until `sparsity` of the filters are zero.
  qp (int, -32)                 DeepCABAC QP of weight tensors (ndim >= 2).
  qp_density (int, 2)
  nonweight_qp (int, -75)       fine QP of non-weight tensors (and ADF factors, see adf_qp).
  adf_qp (int|null, null)       DeepCABAC QP of the ADF factor updates; null = nonweight_qp.
                                A coarser value (e.g. -50) saves most of the factors' bits;
                                ignored by methods without factors.
  bn_affine_qp, bn_stats_qp, bias_qp (int|null, -32, -16, -32)  DeepCABAC QP of the
                                BatchNorm affine parameters, BatchNorm running statistics and
                                other biases (null = nonweight_qp); defaults measured by
                                `fedbench bench bytes` (README). Every class is under error
                                feedback, so a coarse QP delays rather than loses what it
                                rounds away.
  nonweight_sparsity (0<=s<1, 0)  DeepCABAC: zero this fraction of the smallest entries of
                                each BatchNorm / bias tensor update (ADF factors excepted).
  exact_sparsity (bool, false)  DeepCABAC: make `sparsity` the measured sparsity: a weight
                                tensor whose smallest kept entry would quantize to zero at
                                `qp` is coded at the coarsest finer QP that keeps it
                                (fedbench.fl.compressors.fit_qp); false = sparsify then
                                quantize at `qp`, which zeroes more than `sparsity` whenever
                                the step is coarse (QP -32 alone zeroes ~97 %).
  bn_stats_every (int>=1, 1)    DeepCABAC: send the BatchNorm running statistics in rounds
                                k, 2k, ... only (zeros in between; held statistics carry no
                                residual: round k's gap re-measures them).
  bn_stats (auto|send|local|recalibrate, auto)  BatchNorm running statistics: auto =
                                recalibrate under train.bn_mode=batch (local training reads
                                no running statistics), send otherwise (it reads them);
                                resolved when the config is built. send = transmitted
                                like any tensor (bn_stats_qp, bn_stats_every); local = never
                                sent: each client keeps its own between rounds, and
                                evaluation normalises with each test batch's statistics (the
                                server has none); recalibrate = never sent (0 bytes): local
                                training normalises with batch statistics, so it needs none,
                                and every evaluated model (server's and clients') gets the
                                statistics of its own weights, measured by one forward pass
                                over the clients' pooled training samples
                                (bn_recalibrate_samples), as each client would on receipt.
                                Needs train.bn_mode=batch. summary.json `bn_stats_eval` says
                                which statistics were used.
  bn_recalibrate_samples (int>=2|null, 1024)  bn_stats=recalibrate: training samples the
                                statistics are measured on (drawn once per run from the
                                seed; null = all the clients' samples).
  dq (bool, false)              dependent (trellis-coded) quantization.
  param_opt (bool, false)       codec parameter optimisation.
  codec_mode (nnc|sparse, nnc)
  include_nonweights (bool, true)  transmit BN statistics / biases (else they stay at init).
  adf_linear (bool, false)      factors on Linear layers too ([out, 1]).
  adf_position (auto|weight|output, auto)  where the factor s of a conv acts:
                                weight = conv(x, s*W) for every conv (the method as described);
                                output = for a conv directly followed by an affine BatchNorm2d
                                (conv1->bn1, downsample.0->downsample.1, features.N->N+1, ...)
                                s scales the BN's output channel, s*BN(conv(x)), so it has a
                                real gradient under batch statistics; other convs and Linear
                                layers keep conv(x, s*W). auto = output when train.bn_mode is
                                batch, else weight. Factor names, shapes and transmission are
                                the same in all positions.
  adf_lr_scale (float>0, 1.0)   learning-rate multiplier of the factors in local training
                                (1 = trained jointly at the weights' lr). Factors never get
                                weight decay (it would pull them to 0, not to 1).
  adf_fold (bool, false)        fold factors at the server after aggregation, s <- 1: into the
                                weights (W <- s*W) or, output position, into the BN's affine
                                weight and bias (gamma <- s*gamma, beta <- s*beta); clients
                                fold their copy identically. With direction=uni the tensors
                                folded into must be transmitted (else a ConfigError).
  lsa_steps (int>=0, 0)         LSA-style variant: after sparsify+quantize of dW, freeze it and
                                train only the factors this many steps, then send.
  lsa_lr (float|null)           lr of those steps (null = the round's lr times adf_lr_scale).
  downlink_sparsity (float|null)  sparsity of the broadcast in bi (null = sparsity).
  downlink_codec_mode (nnc|sparse|null, null)  codec mode of the broadcast in bi (null =
                                codec_mode).

eval
  target_accuracy (float|null)  rounds_to_target = first round whose primary metric
                                (accuracy, mIoU or mAP, in [0, 1]) reaches it.
  every (int>=1, 1)             evaluate every n rounds (and always the last round).
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "ConfigError",
    "RunConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "list_presets",
    "load_config",
    "resolve_config_path",
]


class ConfigError(ValueError):
    """Invalid run configuration; the message names the dotted key and what is allowed."""


SPARSIFIERS = ("unstructured", "structured", "topk", "topk-global")

# Allowed values of enumerated keys (dotted name -> choices).
CHOICES: dict[str, tuple[str, ...]] = {
    "device": ("auto", "cpu", "cuda"),
    "data.partition": ("iid", "dirichlet"),
    "train.optimizer": ("sgd", "adam"),
    "train.lr_schedule": ("constant", "cosine", "step"),
    "train.bn_mode": ("batch", "frozen", "running"),
    "train.precision": ("fp32", "bf16", "fp16"),
    "train.memory_format": ("contiguous", "channels_last"),
    "setting.direction": ("uni", "bi"),
    "setting.initial_model": ("free", "charged"),
    "method.sparsifier": SPARSIFIERS,
    "method.codec_mode": ("nnc", "sparse"),
    "method.bn_stats": ("auto", "send", "local", "recalibrate"),
    "method.adf_position": ("auto", "weight", "output"),
}


@dataclass
class DataConfig:
    """Data set, split over clients and CPU-sized subsetting."""

    name: str = "pneumoniamnist"
    root: str = "data"
    mirror: str | None = None
    image_size: int | None = None
    partition: str = "iid"
    alpha: float = 0.5
    num_clients: int = 10
    min_size: int = 1
    max_train_samples: int | None = None
    max_test_samples: int | None = None
    augment: bool = False
    val_fraction: float = 0.1


@dataclass
class ModelConfig:
    """Model registry name and construction options."""

    name: str = "resnet20"
    small_input: bool = True
    pretrained: str | None = None


@dataclass
class TrainConfig:
    """Rounds, participation and local optimisation."""

    rounds: int = 20
    client_fraction: float = 1.0
    local_epochs: int = 1
    local_steps: int | None = None
    batch_size: int = 32
    eval_batch_size: int = 256
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    lr_min: float = 0.0
    lr_milestones: list[int] = field(default_factory=list)
    lr_gamma: float = 0.1
    keep_optimizer_state: bool = False
    bn_mode: str = "batch"
    precision: str = "fp32"
    memory_format: str = "contiguous"
    parallel_clients: int = 1


@dataclass
class SettingConfig:
    """Communication direction and partial update."""

    direction: str = "uni"
    initial_model: str = "free"
    partial: list[str] | None = None
    regime: str | None = None


# Fine-tuning regimes (setting.regime): the train.bn_mode and setting.partial each one sets.
REGIMES: dict[str, dict[str, Any]] = {
    "full": {"train.bn_mode": "batch", "setting.partial": None},
    "full-bnstats-frozen": {"train.bn_mode": "frozen", "setting.partial": None},
    "full-bn-frozen": {"train.bn_mode": "frozen", "setting.partial": ["nobn"]},
    "bn-classifier": {"train.bn_mode": "batch", "setting.partial": ["bn", "classifier"]},
    "factors": {"train.bn_mode": "frozen", "setting.partial": ["adf"]},
    "factors-classifier": {"train.bn_mode": "frozen", "setting.partial": ["adf", "classifier"]},
    "classifier": {"train.bn_mode": "frozen", "setting.partial": ["classifier"]},
}


@dataclass
class MethodConfig:
    """Update compression method and its parameters."""

    name: str = "adf"
    sparsity: float = 0.9
    sparsifier: str = "unstructured"
    structured_factor: float | None = None
    qp: int = -32
    qp_density: int = 2
    nonweight_qp: int = -75
    adf_qp: int | None = None
    # measured defaults (fedbench bench bytes, README): 3.7x fewer non-weight bytes than -75
    bn_affine_qp: int | None = -32
    bn_stats_qp: int | None = -16
    bias_qp: int | None = -32
    nonweight_sparsity: float = 0.0
    exact_sparsity: bool = False
    bn_stats_every: int = 1
    bn_stats: str = "auto"
    bn_recalibrate_samples: int | None = 1024
    dq: bool = False
    param_opt: bool = False
    codec_mode: str = "nnc"
    include_nonweights: bool = True
    adf_linear: bool = False
    adf_position: str = "auto"
    adf_lr_scale: float = 1.0
    adf_fold: bool = False
    lsa_steps: int = 0
    lsa_lr: float | None = None
    downlink_sparsity: float | None = None
    downlink_codec_mode: str | None = None
    # The method's own options (its `Method.Options` dataclass), given next to the shared keys
    # above in the YAML `method:` section; flattened into it by config_to_dict.
    options: Any = field(default=None, repr=False, compare=True)


@dataclass
class EvalConfig:
    """Evaluation schedule and target."""

    target_accuracy: float | None = None
    every: int = 1


@dataclass
class RunConfig:
    """A complete, validated federated-learning run."""

    seed: int = 0
    device: str = "auto"
    deterministic: bool = True
    checkpoint: bool = True
    threads: int = 1
    strategy: str = "fedavg"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    setting: SettingConfig = field(default_factory=SettingConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    @property
    def method_class(self) -> Any:
        """The registered `fedbench.fl.methods.Method` subclass of method.name."""
        from fedbench.fl.methods import get_method

        return get_method(self.method.name, ConfigError)

    @property
    def uses_adf(self) -> bool:
        """True when the method's model carries adaptive differential filter factors."""
        return self.method_class.has_factors

    @property
    def resolved_adf_position(self) -> str:
        """weight or output; auto = output when local training normalises with batch
        statistics (train.bn_mode=batch, which cancels a factor in the weight position)."""
        if self.method.adf_position == "auto":
            return "output" if self.train.bn_mode == "batch" else "weight"
        return self.method.adf_position


def _type_name(tp: Any) -> str:
    """Readable name of a (possibly optional / generic) annotation."""
    return str(tp).replace("typing.", "").replace("<class '", "").replace("'>", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against annotation `tp`, converting int -> float where harmless."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool) and item_tp is str:
            value = [value]  # a single pattern given on the command line
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list of {_type_name(item_tp)}, got {value!r}")
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {_type_name(tp)}")  # pragma: no cover


def _build(cls: type, raw: Any, prefix: str) -> Any:
    """Build dataclass `cls` from mapping `raw`, rejecting unknown keys."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        where = prefix.rstrip(".") or "config"
        raise ConfigError(f"{where}: expected a mapping, got {raw!r}")
    if cls is MethodConfig:
        return _build_method(raw, prefix)
    return _build_fields(cls, raw, prefix)


def _build_fields(cls: type, raw: dict[str, Any], prefix: str) -> Any:
    """Build dataclass `cls` from the mapping `raw`, rejecting unknown keys."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in raw if k not in fields]
    if unknown:
        key = f"{prefix}{unknown[0]}"
        raise ConfigError(f"unknown key '{key}'; allowed keys here: {', '.join(fields)}")
    kwargs = {}
    for name, value in raw.items():
        key = f"{prefix}{name}"
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value, f"{key}.")
            continue
        value = _coerce(value, tp, key)
        if key in CHOICES and value not in CHOICES[key]:
            raise ConfigError(f"{key}: invalid value {value!r}; allowed: {', '.join(CHOICES[key])}")
        kwargs[name] = value
    return cls(**kwargs)


_SHARED_METHOD_KEYS = tuple(f.name for f in dataclasses.fields(MethodConfig) if f.name != "options")


def _build_method(raw: dict[str, Any], prefix: str) -> MethodConfig:
    """The `method` section: shared keys into MethodConfig, the others into the registered
    method's own Options dataclass; a key of neither is rejected naming its owner, if any."""
    from fedbench.fl.methods import get_method, methods

    name = raw.get("name", MethodConfig.name)
    if not isinstance(name, str):
        raise ConfigError(f"{prefix}name: expected a string, got {name!r}")
    cls = get_method(name, ConfigError)
    own = {f.name for f in dataclasses.fields(cls.Options)}
    shared = {k: v for k, v in raw.items() if k in _SHARED_METHOD_KEYS}
    extra = {k: v for k, v in raw.items() if k not in _SHARED_METHOD_KEYS}
    for key in extra:
        if key not in own:
            owners = [
                m
                for m, c in methods().items()
                if key in {f.name for f in dataclasses.fields(c.Options)}
            ]
            allowed = ", ".join([*_SHARED_METHOD_KEYS, *sorted(own)])
            whose = f" (an option of method {', '.join(owners)})" if owners else ""
            raise ConfigError(
                f"unknown key '{prefix}{key}' for method {name}{whose}; allowed keys here: "
                f"{allowed}"
            )
    cfg = _build_fields(MethodConfig, shared, prefix)
    cfg.options = _build_fields(cls.Options, extra, prefix)
    return cfg


def _check(cond: bool, key: str, what: str, value: Any) -> None:
    """Raise ConfigError for `key` unless `cond` holds."""
    if not cond:
        raise ConfigError(f"{key}: invalid value {value!r}; {what}")


def _codec_qp_ok(qp: int, density: int) -> bool:
    """True when the codec accepts `qp` as a non-weight QP at this QP density."""
    from fedbench.codec import CodecConfig
    from fedbench.codec.errors import SettingsError

    try:
        CodecConfig(qp_density=density, nonweight_qp=qp)
    except SettingsError:
        return False
    return True


def _validate(cfg: RunConfig) -> None:
    """Cross-field and range checks that types alone cannot express."""
    d, t, m, e = cfg.data, cfg.train, cfg.method, cfg.eval
    _check(d.num_clients >= 1, "data.num_clients", "must be >= 1", d.num_clients)
    _check(d.alpha > 0, "data.alpha", "must be > 0", d.alpha)
    _check(d.min_size >= 1, "data.min_size", "must be >= 1", d.min_size)
    _check(0 <= d.val_fraction < 0.5, "data.val_fraction", "must be in [0, 0.5)", d.val_fraction)
    _check(cfg.threads >= 1, "threads", "must be >= 1", cfg.threads)
    for key in ("max_train_samples", "max_test_samples", "image_size"):
        v = getattr(d, key)
        _check(v is None or v >= 1, f"data.{key}", "must be null or >= 1", v)
    _check(t.rounds >= 1, "train.rounds", "must be >= 1", t.rounds)
    _check(
        0 < t.client_fraction <= 1, "train.client_fraction", "must be in (0, 1]", t.client_fraction
    )
    _check(t.local_epochs >= 1, "train.local_epochs", "must be >= 1", t.local_epochs)
    _check(
        t.local_steps is None or t.local_steps >= 1,
        "train.local_steps",
        "must be null or >= 1",
        t.local_steps,
    )
    _check(t.batch_size >= 1, "train.batch_size", "must be >= 1", t.batch_size)
    _check(t.eval_batch_size >= 1, "train.eval_batch_size", "must be >= 1", t.eval_batch_size)
    _check(t.lr > 0, "train.lr", "must be > 0", t.lr)
    _check(t.momentum >= 0, "train.momentum", "must be >= 0", t.momentum)
    _check(t.weight_decay >= 0, "train.weight_decay", "must be >= 0", t.weight_decay)
    _check(0 < t.lr_gamma, "train.lr_gamma", "must be > 0", t.lr_gamma)
    _check(t.parallel_clients >= 1, "train.parallel_clients", "must be >= 1", t.parallel_clients)
    _check(0 <= m.sparsity < 1, "method.sparsity", "must be in [0, 1)", m.sparsity)
    if m.downlink_sparsity is not None:
        _check(
            0 <= m.downlink_sparsity < 1,
            "method.downlink_sparsity",
            "must be null or in [0, 1)",
            m.downlink_sparsity,
        )
    if m.structured_factor is not None:
        _check(
            m.structured_factor >= 0,
            "method.structured_factor",
            "must be null or >= 0",
            m.structured_factor,
        )
    _check(m.adf_lr_scale > 0, "method.adf_lr_scale", "must be > 0", m.adf_lr_scale)
    _check(m.lsa_steps >= 0, "method.lsa_steps", "must be >= 0", m.lsa_steps)
    _check(
        m.lsa_steps == 0 or cfg.uses_adf,
        "method.lsa_steps",
        "LSA trains filter factors, so it needs a method with factors (method.name=adf)",
        m.lsa_steps,
    )
    _check(1 <= m.qp_density <= 5, "method.qp_density", "must be in 1..5", m.qp_density)
    for key in ("adf_qp", "bn_affine_qp", "bn_stats_qp", "bias_qp"):
        v = getattr(m, key)
        if v is not None:
            _check(
                _codec_qp_ok(v, m.qp_density),
                f"method.{key}",
                "must be null or a QP whose step 2^(qp/2^qp_density) "
                f"(qp_density={m.qp_density}) is a normal float32",
                v,
            )
    _check(m.bn_stats_every >= 1, "method.bn_stats_every", "must be >= 1", m.bn_stats_every)
    _check(
        m.bn_stats_every == 1 or m.bn_stats == "send",
        "method.bn_stats_every",
        "sends the statistics every k rounds, so it needs method.bn_stats=send (the default, "
        "auto, is recalibrate under train.bn_mode=batch)",
        m.bn_stats_every,
    )
    _check(
        m.bn_recalibrate_samples is None or m.bn_recalibrate_samples >= 2,
        "method.bn_recalibrate_samples",
        "must be null or >= 2 (a statistic needs a batch)",
        m.bn_recalibrate_samples,
    )
    _check(
        m.bn_stats != "recalibrate" or cfg.train.bn_mode == "batch",
        "method.bn_stats",
        "recalibrate measures the statistics only where models are evaluated, so local "
        f"training must not use them: it needs train.bn_mode=batch, not {cfg.train.bn_mode}",
        m.bn_stats,
    )
    _check(
        0 <= m.nonweight_sparsity < 1,
        "method.nonweight_sparsity",
        "must be in [0, 1)",
        m.nonweight_sparsity,
    )
    if m.downlink_codec_mode is not None:
        _check(
            m.downlink_codec_mode in CHOICES["method.codec_mode"],
            "method.downlink_codec_mode",
            f"must be null or one of {', '.join(CHOICES['method.codec_mode'])}",
            m.downlink_codec_mode,
        )
    _check(e.every >= 1, "eval.every", "must be >= 1", e.every)
    if cfg.setting.partial is not None:
        _check(
            len(cfg.setting.partial) > 0,
            "setting.partial",
            "must be null or a non-empty list of patterns",
            cfg.setting.partial,
        )


def _apply_regime(raw: dict[str, Any]) -> dict[str, Any]:
    """A copy of `raw` with setting.regime expanded into train.bn_mode and setting.partial;
    an explicit non-default value of either that disagrees with the regime is a ConfigError."""
    setting = raw.get("setting")
    regime = setting.get("regime") if isinstance(setting, dict) else None
    if regime is None:
        return raw
    if regime not in REGIMES:
        raise ConfigError(
            f"setting.regime: invalid value {regime!r}; allowed: {', '.join(REGIMES)} or null"
        )
    out = copy.deepcopy(raw)
    for key, value in REGIMES[regime].items():
        section, name = key.split(".")
        node = out.setdefault(section, {})
        if not isinstance(node, dict):
            continue  # _build names the malformed section
        # a value equal to the default (a preset spelling out `partial: null`) yields
        default = getattr({"train": TrainConfig, "setting": SettingConfig}[section](), name)
        if name in node and node[name] not in (value, default):
            raise ConfigError(
                f"{key}: {node[name]!r} contradicts setting.regime={regime} (which sets "
                f"{value!r}); give one of them"
            )
        node[name] = copy.deepcopy(value)
    return out


def config_from_dict(raw: dict[str, Any]) -> RunConfig:
    """Build and validate a RunConfig from a nested mapping (as loaded from YAML)."""
    cfg = _build(RunConfig, _apply_regime(raw), "")
    if cfg.method.bn_stats == "auto":
        # statistics travel only where local training reads them; elsewhere each evaluated
        # model gets its own (sent ones broke high-sparsity runs: README, "BatchNorm
        # statistics at high sparsity")
        cfg.method.bn_stats = "recalibrate" if cfg.train.bn_mode == "batch" else "send"
    if cfg.method.options is None:  # no `method` section: the default method's defaults
        cfg.method.options = cfg.method_class.Options()
    from fedbench.fl.aggregation import get_strategy

    get_strategy(cfg.strategy, ConfigError)
    _validate(cfg)
    cfg.method_class.validate(cfg)
    return cfg


def config_to_dict(cfg: RunConfig) -> dict[str, Any]:
    """The fully resolved config as a plain nested dict (JSON/YAML serialisable); the method's
    own options sit next to the shared method keys, as in the YAML."""
    options = cfg.method.options
    cfg = dataclasses.replace(cfg, method=dataclasses.replace(cfg.method, options=None))
    out = dataclasses.asdict(cfg)
    del out["method"]["options"]
    if options is not None:
        out["method"].update(dataclasses.asdict(options))
    return out


def apply_overrides(raw: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply `key.sub=value` overrides (values parsed as YAML) to a copy of `raw`."""
    out = copy.deepcopy(raw) if raw else {}
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value (e.g. method.name=adf)")
        key, text = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"override {item!r}: empty key")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{key}: cannot parse value {text!r}: {exc}") from exc
        parts = key.split(".")
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"{'.'.join(parts[: i + 1])}: is a value, not a section")
            node = child
        node[parts[-1]] = value
    return out


def _presets_dir() -> Path:
    """Folder holding the packaged preset YAML files."""
    return Path(str(resources.files("fedbench.fl") / "presets"))


def list_presets() -> list[str]:
    """Names of the packaged presets (usable as --config NAME)."""
    return sorted(p.stem for p in _presets_dir().glob("*.yaml"))


def resolve_config_path(name: str | Path) -> Path:
    """A config file path, or the packaged preset of that name (with or without .yaml)."""
    path = Path(name)
    if path.is_file():
        return path
    stem = path.name.removesuffix(".yaml")
    preset = _presets_dir() / f"{stem}.yaml"
    if str(path.parent) in ("", ".") and preset.is_file():
        return preset
    raise ConfigError(
        f"config: no file {str(name)!r} and no preset of that name; presets: "
        f"{', '.join(list_presets())}"
    )


def load_config(name: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    """Load a YAML file or preset (None = defaults), apply overrides, validate."""
    raw: dict[str, Any] = {}
    if name is not None:
        path = resolve_config_path(name)
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"config: {path} is not valid YAML: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config: {path} must hold a mapping at the top level")
        raw = loaded or {}
    return config_from_dict(apply_overrides(raw, overrides))
