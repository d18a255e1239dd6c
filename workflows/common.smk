# Shared helpers: paths, and the expansion of config `fl.grid` into one cell per FL run.
#
# A cell is (dataset, model, setting, method, variant, seed); its run folder is
# fedbench.layout.run_dir (the layout the plots read back, defined there only), and its
# `fedbench fl` call is  --config <preset> --set k=v ... , the sets layered as
#   fl.set < datasets.D.set < models.M.set < settings.S.set < methods.X.set < grid block set
#   < sweep values < the workflow's own keys (names, seed, threads, data root/mirror/image
#   size).

import itertools
import os
import json
import shlex
from pathlib import Path

import yaml
from snakemake.exceptions import WorkflowError

# The checkout's own fedbench: Snakemake puts the Snakefile's folder first on sys.path.
from fedbench import layout

REPO = Path(workflow.basedir)
RESULTS = config["results"].rstrip("/")
FIGURES = config["figures"].rstrip("/")
DATA_ROOT = config["data_root"].rstrip("/")
MIRROR = config.get("mirror")
PRESETS = REPO / "fedbench" / "fl" / "presets"
# Method names `fedbench fl` knows: the method registry (built-in and installed entry points).
from fedbench.fl.methods import method_names as _method_names

METHOD_NAMES = list(_method_names())
RUN_FILES = layout.RUN_FILES


def _entry(axis: str, label: str) -> dict:
    """The config entry `axis.label` (an empty dict for `label: null`); error if undefined."""
    table = config.get(axis) or {}
    if label not in table:
        raise WorkflowError(
            f"config: fl.grid names {axis[:-1]} '{label}', but {axis}.{label} is not defined; "
            f"defined: {', '.join(sorted(table)) or 'none'}"
        )
    return table[label] or {}


def preset_file(name: str) -> Path:
    """A preset name (fedbench/fl/presets/NAME.yaml) or a YAML path, as a file path."""
    if name.endswith((".yaml", ".yml")) or "/" in name:
        return Path(name)
    path = PRESETS / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PRESETS.glob("*.yaml")))
        raise WorkflowError(f"config: preset '{name}' not found in {PRESETS}; presets: {known}")
    # Relative to the working directory when inside it, so that moving the checkout does not
    # change the jobs' inputs (and trigger reruns).
    cwd = Path.cwd().resolve()
    full = path.resolve()
    return full.relative_to(cwd) if full.is_relative_to(cwd) else full


def _preset_image_size(path: Path) -> int | None:
    """The preset's own data.image_size (the prepared file name depends on it)."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise WorkflowError(f"config: cannot read preset {path}: {exc}") from exc
    return (raw.get("data") or {}).get("image_size")


def yaml_value(value) -> str:
    """A --set value that `fedbench fl` (which parses values as YAML) reads back unchanged."""
    if isinstance(value, str):
        return value
    return json.dumps(value)  # JSON is YAML: null, true, numbers, [lists]


def _variant_label(values: dict) -> str:
    """Folder name of one sweep combination, e.g. 'sparsity0.99' or 'qp-38_sparsity0.9'."""
    return "_".join(f"{k.split('.')[-1]}{yaml_value(v)}" for k, v in values.items()) or "base"


def prepared_name(name: str, image_size: int | None) -> str:
    """File stem of a prepared data set, as `fedbench fl` names it under DATA_ROOT/prepared/."""
    return f"{name}-{image_size}" if image_size else name


def cell_name(key: tuple) -> str:
    """A cell key as text: dataset/model/setting/method/variant/seed."""
    return os.path.join(*map(str, key))


PRETRAIN = config.get("pretrain") or {}


def pretrain_checkpoint(label: str) -> str:
    """The checkpoint `fedbench pretrain` writes for config pretrain.LABEL."""
    return f"{RESULTS}/pretrain/{label}/model.pt"


def _expand_pretrain() -> dict[str, dict]:
    """Every pretraining job of config `pretrain`: label -> preset, --set values, resources.

    The sets layer as datasets.D.set < pretrain.P.set < the workflow's own keys (names, seed,
    threads, data root/mirror/image size); fl.set (rounds of the FL runs) does not apply.
    """
    jobs = {}
    for label, entry in PRETRAIN.items():
        ds = entry["dataset"]
        d = _entry("datasets", ds)
        preset = preset_file(entry.get("preset") or d.get("preset") or fl_default_preset())
        image_size = d.get("image_size", _preset_image_size(preset))
        sets = {**(d.get("set") or {}), **(entry.get("set") or {})}
        resources = {"threads": 1, **(entry.get("resources") or {})}
        name = d.get("name", ds)
        sets.update(
            {
                "seed": int(entry.get("seed", 0)),
                "checkpoint": False,
                "threads": int(resources["threads"]),
                "data.name": name,
                "data.root": DATA_ROOT,
                "data.mirror": MIRROR,
                "data.image_size": image_size,
                "model.name": entry["model"],
            }
        )
        jobs[label] = {
            "preset": str(preset),
            "set": sets,
            "epochs": int(entry["epochs"]),
            "resources": resources,
            "prepared": prepared_name(name, image_size),
            "data_name": name,
            "image_size": image_size,
        }
    return jobs


def fl_default_preset() -> str:
    """fl.preset: the preset of cells whose data set and model name none."""
    return config["fl"].get("preset", "smoke")


def _model_pretrain(label: str, entry: dict) -> str | None:
    """The checkpoint a models entry starts from (its `pretrain` label), or None."""
    source = entry.get("pretrain")
    if source is None:
        return None
    if source not in PRETRAIN:
        raise WorkflowError(
            f"config: models.{label}.pretrain names '{source}', but pretrain.{source} is not "
            f"defined; defined: {', '.join(sorted(PRETRAIN)) or 'none'}"
        )
    if "model.pretrained" in (entry.get("set") or {}):
        raise WorkflowError(
            f"config: models.{label} gives both pretrain and set model.pretrained; give one"
        )
    want = PRETRAIN[source]["model"]
    if entry.get("name", label) != want:
        raise WorkflowError(
            f"config: models.{label} is {entry.get('name', label)}, but pretrain.{source} "
            f"trains {want}"
        )
    return pretrain_checkpoint(source)


def _expand_grid() -> dict[tuple, dict]:
    """Every FL cell of the config: key (dataset, model, setting, method, variant, seed)."""
    fl = config["fl"]
    for label, entry in (config.get("methods") or {}).items():
        name = (entry or {}).get("name", label)
        if name not in METHOD_NAMES:
            raise WorkflowError(
                f"config: methods.{label}: unknown method '{name}'; name it after one of "
                f"{', '.join(METHOD_NAMES)} or give methods.{label}.name"
            )
    cells: dict[tuple, dict] = {}
    for b, block in enumerate(fl["grid"]):
        for ds, mo, st, me in itertools.product(
            block["datasets"], block["models"], block["settings"], block["methods"]
        ):
            d, m, s, x = (
                _entry("datasets", ds),
                _entry("models", mo),
                _entry("settings", st),
                _entry("methods", me),
            )
            preset = preset_file(m.get("preset") or d.get("preset") or fl_default_preset())
            for axis, label, entry in (
                ("datasets", ds, d),
                ("settings", st, s),
                ("methods", me, x),
            ):
                if "pretrain" in entry:
                    raise WorkflowError(
                        f"config: {axis}.{label}.pretrain: only models entries start from a "
                        "pretrain checkpoint"
                    )
            start_from = _model_pretrain(mo, m)
            sets: dict = {}
            for layer in (fl, d, m, s, x, block):
                sets.update(layer.get("set") or {})
            sweep = block.get("sweep") or x.get("sweep") or {}
            keys = list(sweep)
            image_size = d.get("image_size", _preset_image_size(preset))
            resources = dict(fl.get("resources") or {})
            resources.update(d.get("resources") or {})
            resources.update(m.get("resources") or {})
            for values in itertools.product(*(sweep[k] for k in keys)):
                combo = dict(zip(keys, values))
                variant = _variant_label(combo)
                for seed in block.get("seeds") or fl.get("seeds", [0]):
                    final = {**sets, **combo}
                    final.update(
                        {
                            "seed": seed,
                            "checkpoint": bool(fl.get("resume", False)),
                            # the run's torch/codec threads are the job's cores: one value
                            "threads": int(resources.get("threads", 1)),
                            "data.name": d.get("name", ds),
                            "data.root": DATA_ROOT,
                            "data.mirror": MIRROR,
                            "data.image_size": image_size,
                            "model.name": m.get("name", mo),
                            "method.name": x.get("name", me),
                        }
                    )
                    if start_from is not None:
                        final["model.pretrained"] = start_from
                    key = (ds, mo, st, me, variant, seed)
                    cell = {
                        "preset": str(preset),
                        "set": final,
                        "resources": resources,
                        "prepared": prepared_name(final["data.name"], image_size),
                        "data_name": final["data.name"],
                        "image_size": image_size,
                        "pretrained": [start_from] if start_from else [],
                    }
                    if key in cells and cells[key] != cell:
                        raise WorkflowError(
                            f"config: fl.grid block {b} defines run {cell_name(key)} "
                            "again with different settings; give the methods or settings "
                            "different labels"
                        )
                    cells[key] = cell
    return cells


PRETRAIN_JOBS = _expand_pretrain()
CELLS = _expand_grid()
# Prepared data sets the runs and pretraining jobs need: file stem -> (registry name, size).
PREPARED = {
    c["prepared"]: (c["data_name"], c["image_size"])
    for c in [*CELLS.values(), *PRETRAIN_JOBS.values()]
}
# Checkpoints the runs start from (a pretrain entry no run uses is still trained: all).
PRETRAIN_TARGETS = [
    f"{RESULTS}/pretrain/{label}/{name}"
    for label in sorted(PRETRAIN_JOBS)
    for name in ("model.pt", "pretrain.json")
]


def run_dir(key: tuple) -> str:
    """The run folder of a cell key."""
    return layout.run_dir(RESULTS, key)


RUN_KEYS = sorted(CELLS, key=lambda k: tuple(map(str, k)))
RUN_DIRS = [run_dir(k) for k in RUN_KEYS]
DATASETS_RUN = sorted({k[0] for k in CELLS})
RUN_INPUTS = [f"{d}/{f}" for d in RUN_DIRS for f in RUN_FILES]

CODEC = config.get("codec") or {}
BENCH = CODEC.get("bench")
PYTEST_BENCH = CODEC.get("pytest_benchmark", {})
CONFORMANCE = config.get("conformance")
if CONFORMANCE and not os.path.isfile(os.path.join(CONFORMANCE, "manifest.json")):
    raise WorkflowError(
        f"config: conformance: {CONFORMANCE} has no manifest.json (and vectors.npz); point it at "
        "the DeepCABAC test-vector folder, or set conformance: null to skip the check"
    )


def cell_of(wildcards) -> dict:
    """The cell a job's wildcards name (error for folders the config does not define)."""
    key = (
        wildcards.dataset,
        wildcards.model,
        wildcards.setting,
        wildcards.method,
        wildcards.variant,
        int(wildcards.seed),
    )
    if key not in CELLS:
        raise WorkflowError(f"run {cell_name(key)} is not in this config's fl.grid")
    return CELLS[key]


def set_args(wildcards) -> str:
    """The `--set key=value ...` arguments of a cell, shell-quoted."""
    sets = cell_of(wildcards)["set"]
    return " ".join(f"--set {shlex.quote(f'{k}={yaml_value(v)}')}" for k, v in sets.items())


def cell_resource(name: str, default):
    """An input function giving one resource of a cell (threads, gpu, mem_mb, runtime)."""
    return lambda wildcards: cell_of(wildcards)["resources"].get(name, default)


def _mirror_arg() -> str:
    """`--mirror DIR` when the config names a mirror folder."""
    return f"--mirror {shlex.quote(MIRROR)}" if MIRROR else ""


def _data_name(wildcards) -> str:
    """Registry name of the data set a prepared file holds."""
    return PREPARED[wildcards.prepared][0]


def bench_args() -> str:
    """`fedbench codec bench` options from config codec.bench."""
    b = BENCH or {}
    args = []
    for key in ("workloads", "peers"):
        if key in b:
            args.append(f"--{key} {','.join(b[key])}")
    for key in ("qp", "qp_density", "nonweight_qp", "repeats", "scale", "c_size"):
        if key in b:
            args.append(f"--{key.replace('_', '-')} {b[key]}")
    for key, flag in (("dq", "--dq"), ("param_opt", "--param-opt")):
        if b.get(key):
            args.append(flag)
    if b.get("identity_check") is False:
        args.append("--no-identity-check")
    return " ".join(args)


def codec_targets() -> list[str]:
    """Codec outputs rule all asks for (the figures add the benchmark table)."""
    out = []
    if BENCH is not None:
        out += [f"{RESULTS}/codec/codec_bench.csv", f"{RESULTS}/codec/codec_bench.json"]
    if PYTEST_BENCH is not None:
        out.append(f"{RESULTS}/codec/pytest_benchmark.json")
    if CONFORMANCE:
        out.append(f"{RESULTS}/codec/conformance.txt")
    return out


def _runs_of(dataset: str) -> list[str]:
    """Run folders of one data set."""
    return [run_dir(k) for k in RUN_KEYS if k[0] == dataset]


def pretrain_of(wildcards) -> dict:
    """The pretraining job a `pretrain` wildcard names."""
    if wildcards.pretrain not in PRETRAIN_JOBS:
        raise WorkflowError(f"pretrain {wildcards.pretrain} is not in this config's pretrain")
    return PRETRAIN_JOBS[wildcards.pretrain]


def pretrain_set_args(wildcards) -> str:
    """The `--set key=value ...` arguments of a pretraining job, shell-quoted."""
    sets = pretrain_of(wildcards)["set"]
    return " ".join(f"--set {shlex.quote(f'{k}={yaml_value(v)}')}" for k, v in sets.items())
