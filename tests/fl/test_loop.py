"""The round loop on synthetic data: accounting, outputs, resume, settings and variants."""

import csv
import json

import numpy as np
import pytest
import torch
from fltools import TinyNet, small_config, tiny_model_fn

from fedbench.fl.loop import FederatedRun, StopRun, run_fl
from fedbench.fl.outputs import METRIC_COLUMNS
from fedbench.fl.template import build_template

TIMING_KEYS = {"wall_s", "train_s", "code_s", "eval_s"}


def _run(cfg, out, data, **kw):
    return run_fl(cfg, out, data=data, model_fn=tiny_model_fn, **kw)


def _read_csv(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_fp32_method_ratio_is_one_and_outputs_complete(synthetic_data, tmp_path):
    cfg = small_config(method={"name": "fp32"}, setting={"direction": "bi"}, train={"rounds": 2})
    summary = _run(cfg, tmp_path, synthetic_data)
    assert summary["compression_ratio"] == 1.0
    rows = _read_csv(tmp_path / "metrics.csv")
    assert list(rows[0]) == METRIC_COLUMNS and len(rows) == 2
    saved = json.loads((tmp_path / "summary.json").read_text())
    for key in (
        "final_acc",
        "best_acc",
        "total_bytes",
        "fp32_bytes",
        "compression_ratio",
        "rounds",
        "rounds_to_target",
        "wall_s",
        "config",
        "seed",
        "versions",
        "device",
    ):
        assert key in saved
    assert saved["config"]["method"]["name"] == "fp32"
    assert {"torch", "numpy", "fedbench", "python"} <= set(saved["versions"])
    assert (tmp_path / "run.log").read_text().count("round ") >= 2


def test_learning_happens_on_synthetic_data(synthetic_data, tmp_path):
    cfg = small_config(
        method={"name": "stc", "sparsity": 0.5}, train={"rounds": 4}, eval={"target_accuracy": 0.7}
    )
    summary = _run(cfg, tmp_path, synthetic_data)
    assert summary["best_acc"] > 0.7
    assert summary["rounds_to_target"] is not None


def _strip_timing(summary):
    return {k: v for k, v in summary.items() if k not in TIMING_KEYS}


@pytest.mark.parametrize("method,direction", [("stc", "bi"), ("adf", "bi"), ("topk-fp16", "uni")])
def test_resume_equals_uninterrupted(synthetic_data, tmp_path, method, direction):
    cfg = small_config(
        method={"name": method, "sparsity": 0.8},
        setting={"direction": direction},
        train={"rounds": 3, "client_fraction": 0.75, "keep_optimizer_state": True},
        data={"num_clients": 4, "augment": True},
    )
    full = _run(cfg, tmp_path / "full", synthetic_data)
    assert _run(cfg, tmp_path / "cut", synthetic_data, stop_after_round=1) is None
    assert not (tmp_path / "cut" / "summary.json").exists()

    def boom(r, row):
        raise StopRun("simulated kill")

    # a second interruption inside the resumed run
    assert _run(cfg, tmp_path / "cut", synthetic_data, on_round=boom) is None
    resumed = _run(cfg, tmp_path / "cut", synthetic_data)
    assert _strip_timing(resumed) == _strip_timing(full)
    a = _read_csv(tmp_path / "full" / "metrics.csv")
    b = _read_csv(tmp_path / "cut" / "metrics.csv")
    for ra, rb in zip(a, b, strict=True):
        assert {k: v for k, v in ra.items() if k not in TIMING_KEYS} == {
            k: v for k, v in rb.items() if k not in TIMING_KEYS
        }


def test_same_seed_same_result_other_seed_differs(synthetic_data, tmp_path):
    cfg = small_config(train={"rounds": 2})
    s1 = _strip_timing(_run(cfg, tmp_path / "a", synthetic_data, resume=False))
    s2 = _strip_timing(_run(cfg, tmp_path / "b", synthetic_data, resume=False))
    assert s1 == s2
    cfg3 = small_config(seed=2, train={"rounds": 2})
    s3 = _strip_timing(_run(cfg3, tmp_path / "c", synthetic_data, resume=False))
    assert s3["total_bytes"] != s1["total_bytes"] or s3["final_acc"] != s1["final_acc"]


def test_changed_config_starts_over_with_a_warning(synthetic_data, tmp_path):
    from fedbench.fl.checkpoint import CheckpointMismatch

    _run(small_config(train={"rounds": 2}), tmp_path, synthetic_data, stop_after_round=1)
    cfg2 = small_config(train={"rounds": 2, "lr": 0.01})
    run = FederatedRun(cfg2, tmp_path, data=synthetic_data, model_fn=tiny_model_fn)
    with pytest.raises(CheckpointMismatch, match="different config"):
        run.load_checkpoint()
    with pytest.warns(UserWarning, match="another config"):
        summary = _run(cfg2, tmp_path, synthetic_data)
    fresh = _run(cfg2, tmp_path / "fresh", synthetic_data)
    assert _strip_timing(summary) == _strip_timing(fresh)
    assert (tmp_path / "checkpoint.pt.stale").is_file()


def test_partial_update_trains_and_sends_only_selected(synthetic_data, tmp_path):
    cfg = small_config(
        method={"name": "adf"},
        setting={"partial": ["adf", "bn", "classifier"]},
        train={"rounds": 1, "bn_mode": "frozen"},
    )
    run = FederatedRun(cfg, tmp_path, data=synthetic_data, model_fn=tiny_model_fn)
    names = set(run.template)
    assert names == {
        "conv1.adf_scale",
        "conv2.adf_scale",
        "bn1.weight",
        "bn1.bias",
        "bn1.running_mean",
        "bn1.running_var",
        "bn2.weight",
        "bn2.bias",
        "bn2.running_mean",
        "bn2.running_var",
        "fc.weight",
        "fc.bias",
    }
    before = {k: v.clone() for k, v in run.global_state.items()}
    run.step()
    after = run.global_state
    torch.testing.assert_close(after["conv1.weight"], before["conv1.weight"])  # frozen
    assert not torch.equal(after["fc.weight"], before["fc.weight"])
    assert not torch.equal(after["conv1.adf_scale"], before["conv1.adf_scale"])


def test_partial_pattern_matching_nothing_is_a_config_error(synthetic_data, tmp_path):
    from fedbench.fl.config import ConfigError

    cfg = small_config(setting={"partial": ["nothing.*"]})
    with pytest.raises(ConfigError, match="setting.partial"):
        FederatedRun(cfg, tmp_path, data=synthetic_data, model_fn=tiny_model_fn)


def test_partial_adf_shortcut_matches_nothing_without_factors():
    from fedbench.fl.config import ConfigError

    for name in ("fp32", "unscaled", "stc", "topk-fp16"):
        cfg = small_config(method={"name": name}, setting={"partial": ["adf", "bn"]})
        tpl = build_template(TinyNet(), cfg)
        assert tpl and all(n.startswith("bn") for n in tpl)
    with pytest.raises(ConfigError, match="setting.partial"):
        build_template(TinyNet(), small_config(setting={"partial": ["adf"]}))
    # other patterns still must match
    with pytest.raises(ConfigError, match="nothing"):
        build_template(TinyNet(), small_config(setting={"partial": ["adf", "bn", "nothing.*"]}))


def test_adf_qp_reaches_both_compressors(synthetic_data, tmp_path):
    cfg = small_config(method={"name": "adf", "adf_qp": -50}, setting={"direction": "bi"})
    run = FederatedRun(cfg, tmp_path, data=synthetic_data, model_fn=tiny_model_fn)
    assert run.up.options["adf_qp"] == -50 and run.down.options["adf_qp"] == -50


def test_template_kinds_and_excluded_nonweights():
    model = TinyNet()
    from fedbench.fl.adf import attach_adf

    attach_adf(model)
    tpl = build_template(model, small_config(method={"name": "adf", "bn_stats": "send"}))
    assert tpl["conv1.weight"].kind == "weight" and tpl["fc.weight"].kind == "weight"
    assert tpl["conv1.adf_scale"].kind == "fine" and tpl["bn1.running_var"].kind == "fine"
    assert "bn1.num_batches_tracked" not in tpl
    # the default (auto = recalibrate under batch statistics) sends no running statistics
    tpl = build_template(model, small_config(method={"name": "adf"}))
    assert "bn1.running_var" not in tpl and tpl["bn1.weight"].kind == "fine"
    tpl2 = build_template(model, small_config(method={"name": "adf", "include_nonweights": False}))
    assert set(tpl2) == {
        "conv1.weight",
        "conv2.weight",
        "fc.weight",
        "conv1.adf_scale",
        "conv2.adf_scale",
    }


def _has_codec():
    try:
        from fedbench.codec import encode  # noqa: F401
    except ImportError:
        return False
    return True


needs_codec = pytest.mark.skipif(not _has_codec(), reason="fedbench.codec not available yet")


@needs_codec
@pytest.mark.parametrize("fold", [False, True])
def test_adf_bidirectional_with_fold_and_lsa(synthetic_data, tmp_path, fold):
    cfg = small_config(
        method={
            "name": "adf",
            "sparsity": 0.9,
            "adf_fold": fold,
            "lsa_steps": 2,
            "adf_linear": True,
        },
        setting={"direction": "bi"},
        train={"rounds": 2},
    )
    run = FederatedRun(cfg, tmp_path, data=synthetic_data, model_fn=tiny_model_fn)
    assert "fc.adf_scale" in run.template
    for _ in range(2):
        row = run.step()
    assert row["update_sparsity"] >= 0.85
    s = run.global_state["conv1.adf_scale"]
    if fold:
        # clients fold to exactly 1; the server keeps s / s_clients, the factor residual
        assert torch.all(run.view["conv1.adf_scale"] == 1)
        assert float((s - 1).abs().max()) < 1e-3
    else:
        assert not torch.all(s == 1)


@needs_codec
def test_unscaled_differs_from_adf_only_by_factors(synthetic_data, tmp_path):
    a = FederatedRun(
        small_config(method={"name": "adf"}),
        tmp_path / "a",
        data=synthetic_data,
        model_fn=tiny_model_fn,
    )
    u = FederatedRun(
        small_config(method={"name": "unscaled"}),
        tmp_path / "u",
        data=synthetic_data,
        model_fn=tiny_model_fn,
    )
    extra = set(a.template) - set(u.template)
    assert extra == {"conv1.adf_scale", "conv2.adf_scale"} and set(u.template) < set(a.template)
    assert a.up.options == u.up.options
    # identical initial weights
    for n in u.global_state:
        torch.testing.assert_close(a.global_state[n], u.global_state[n])
    assert np.isfinite(u.step()["train_loss"])


def test_divergence_is_reported(synthetic_data, tmp_path):
    from fedbench.fl.client import TrainingDiverged

    cfg = small_config(train={"rounds": 1, "lr": 1e30}, method={"name": "fp32"})
    with pytest.raises(TrainingDiverged, match="client"):
        _run(cfg, tmp_path, synthetic_data)


@needs_codec
@pytest.mark.parametrize("mode", ["frozen", "running"])
def test_bn_modes_let_factors_adapt(synthetic_data, tmp_path, mode):
    cfg = small_config(
        method={"name": "adf", "sparsity": 0.5}, train={"rounds": 1, "bn_mode": mode}
    )
    run = FederatedRun(cfg, tmp_path, data=synthetic_data, model_fn=tiny_model_fn)
    rm0 = run.global_state["bn1.running_mean"].clone()
    run.step()
    s = run.global_state["conv1.adf_scale"]
    assert float((s - 1).abs().max()) > 1e-4
    moved = not torch.equal(run.global_state["bn1.running_mean"], rm0)
    assert moved == (mode == "running")


def _factor_spread(state):
    return max(float((v - 1).abs().max()) for n, v in state.items() if n.endswith("adf_scale"))


@needs_codec
def test_output_position_factors_adapt_under_batch_statistics(synthetic_data, tmp_path):
    spread = {}
    for pos in ("weight", "output"):
        cfg = small_config(
            method={"name": "adf", "sparsity": 0.5, "adf_position": pos}, train={"rounds": 1}
        )
        run = FederatedRun(cfg, tmp_path / pos, data=synthetic_data, model_fn=tiny_model_fn)
        assert run.adf_position == pos
        run.step()
        spread[pos] = _factor_spread(run.global_state)
        summary = run.summary()
        assert summary["adf_position"] == pos
        assert summary["adf_factor_max"] - 1 == pytest.approx(
            max(float(v.max()) for n, v in run.global_state.items() if "adf" in n) - 1
        )
    # cancelled by train-mode BN in the weight position (fc has no factor here)
    assert spread["weight"] < 1e-3
    assert spread["output"] > 5e-3


@needs_codec
@pytest.mark.parametrize("position", ["weight", "output"])
def test_server_fold_does_not_change_the_server_model(synthetic_data, tmp_path, position):
    rows, states = {}, {}
    for fold in (False, True):
        cfg = small_config(
            method={
                "name": "adf",
                "sparsity": 0.5,
                "adf_position": position,
                "adf_fold": fold,
                "adf_linear": True,
            },
            train={"rounds": 1},
        )
        run = FederatedRun(cfg, tmp_path / str(fold), data=synthetic_data, model_fn=tiny_model_fn)
        rows[fold] = run.step()
        states[fold] = run.global_state
    assert rows[True]["test_loss"] == pytest.approx(rows[False]["test_loss"], rel=1e-5)
    assert rows[True]["test_acc"] == rows[False]["test_acc"]
    assert torch.all(states[True]["conv1.adf_scale"] == 1)
    s = states[False]["conv1.adf_scale"]
    if position == "output":
        target, expect = "bn1.weight", states[False]["bn1.weight"] * s.view(-1)
    else:
        target, expect = "conv1.weight", states[False]["conv1.weight"] * s
    torch.testing.assert_close(states[True][target], expect)


def test_uni_fold_into_untransmitted_tensors_is_a_config_error(synthetic_data, tmp_path):
    from fedbench.fl.config import ConfigError

    cfg = small_config(
        method={
            "name": "adf",
            "adf_position": "output",
            "adf_fold": True,
            "include_nonweights": False,
        }
    )
    with pytest.raises(ConfigError, match="method.adf_fold"):
        FederatedRun(cfg, tmp_path, data=synthetic_data, model_fn=tiny_model_fn)
    # fine in bi (both sides fold with the clients' factors after the broadcast, see
    # test_accounting's lossless-downlink test), or in the weight position
    for extra in ({"setting": {"direction": "bi"}}, {"method": {"adf_position": "weight"}}):
        raw = {
            "method": {
                "name": "adf",
                "adf_position": "output",
                "adf_fold": True,
                "include_nonweights": False,
            }
        }
        for k, v in extra.items():
            raw.setdefault(k, {}).update(v)
        FederatedRun(
            small_config(**raw),
            tmp_path / str(len(raw)),
            data=synthetic_data,
            model_fn=tiny_model_fn,
        )


def test_factor_lr_scale_and_no_weight_decay():
    from fedbench.fl.adf import attach_adf
    from fedbench.fl.training import make_optimizer

    model = TinyNet()
    attach_adf(model, position="output")
    names = {n for n, _ in model.named_parameters()}
    cfg = small_config(train={"weight_decay": 1e-3})
    opt = make_optimizer(model, cfg.train, 0.1, names, adf_lr_scale=3.0)
    plain, factors = opt.param_groups
    assert plain["lr"] == 0.1 and plain["weight_decay"] == 1e-3
    assert factors["lr"] == pytest.approx(0.3) and factors["weight_decay"] == 0.0
    assert {id(p) for p in factors["params"]} == {
        id(model.conv1.adf_scale),
        id(model.conv2.adf_scale),
    }


@needs_codec
def test_factor_lr_scale_reaches_local_training(synthetic_data, tmp_path):
    spread = []
    for scale in (1.0, 4.0):
        cfg = small_config(
            method={"name": "adf", "sparsity": 0.5, "adf_lr_scale": scale},
            train={"rounds": 1, "keep_optimizer_state": True},
        )
        run = FederatedRun(cfg, tmp_path / str(scale), data=synthetic_data, model_fn=tiny_model_fn)
        run.step()
        spread.append(_factor_spread(run.global_state))
        assert all(
            g[1]["lr"] == pytest.approx(0.05 * scale)
            for g in [s["param_groups"] for s in run.opt_states.values()]
        )
    assert spread[1] > 1.5 * spread[0]


def test_unscaled_ignores_the_factor_options(synthetic_data, tmp_path):
    base = _run(
        small_config(method={"name": "unscaled"}, train={"rounds": 1}),
        tmp_path / "a",
        synthetic_data,
    )
    other = _run(
        small_config(
            method={
                "name": "unscaled",
                "adf_position": "output",
                "adf_lr_scale": 5.0,
                "adf_fold": True,
            },
            train={"rounds": 1},
        ),
        tmp_path / "b",
        synthetic_data,
    )
    assert base["adf_position"] is None and base["adf_factor_min"] is None
    for key in ("final_acc", "total_bytes", "bytes_up"):
        assert base[key] == other[key]


@pytest.mark.parametrize("fold", [False, True])
def test_factors_npz_holds_the_server_factors_per_round(synthetic_data, tmp_path, fold):
    """factors.npz: per factor tensor [rounds, C_out], the server's factors after each
    aggregation; the last row is the final model's (no fold), and a resumed run's file
    equals the uninterrupted one's."""
    from fedbench.fl.outputs import FACTORS

    cfg = small_config(
        method={"name": "adf", "sparsity": 0.5, "adf_fold": fold},
        setting={"direction": "bi"},
        train={"rounds": 3},
    )
    run = FederatedRun(cfg, tmp_path / "a", data=synthetic_data, model_fn=tiny_model_fn)
    for _ in range(3):
        run.step()
    run.write_outputs()
    with np.load(tmp_path / "a" / FACTORS) as z:
        got = {k: z[k] for k in z.files}
    names = sorted(n for n in run.global_state if n.endswith("adf_scale"))
    assert sorted(set(got) - {"round"}) == names
    assert got["round"].tolist() == [1, 2, 3]
    for n in names:
        c = run.global_state[n].numel()
        assert got[n].shape == (3, c)
        assert not np.allclose(got[n], 1.0)  # they moved
        if not fold:
            np.testing.assert_array_equal(got[n][-1], run.global_state[n].reshape(-1).numpy())
    # resume: the same file as the uninterrupted run
    _run(cfg, tmp_path / "full", synthetic_data)
    assert _run(cfg, tmp_path / "cut", synthetic_data, stop_after_round=1) is None
    _run(cfg, tmp_path / "cut", synthetic_data)
    with np.load(tmp_path / "full" / FACTORS) as a, np.load(tmp_path / "cut" / FACTORS) as b:
        assert a.files == b.files
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k])


def test_no_factors_npz_without_factors(synthetic_data, tmp_path):
    from fedbench.fl.outputs import FACTORS

    _run(small_config(method={"name": "unscaled"}, train={"rounds": 1}), tmp_path, synthetic_data)
    assert (tmp_path / "summary.json").is_file() and not (tmp_path / FACTORS).exists()


class _NoBNNet(torch.nn.Module):
    """TinyNet without BatchNorm: no normalisation follows its convolutions (as in VGG)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 2) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(in_channels, 8, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = torch.nn.Linear(16, num_classes)

    def forward(self, x):
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(x.mean((2, 3)))


@pytest.mark.parametrize(
    "model_fn, bn_mode, want",
    [
        (tiny_model_fn, "batch", {"weight": 0, "output": 2}),  # conv -> train-mode BN
        (tiny_model_fn, "frozen", {"weight": 2, "output": 0}),  # frozen BN statistics
        (lambda c, d: _NoBNNet(d.channels, d.num_classes), "batch", {"weight": 2, "output": 0}),
    ],
)
def test_summary_says_where_the_factors_act(synthetic_data, tmp_path, model_fn, bn_mode, want):
    """auto: output position after a train-mode BN, the weight position without BN or with
    frozen statistics; summary.json counts the layers of each."""
    cfg = small_config(method={"name": "adf"}, train={"rounds": 1, "bn_mode": bn_mode})
    summary = run_fl(cfg, tmp_path, data=synthetic_data, model_fn=model_fn)
    assert summary["adf_layer_positions"] == want
    unscaled = small_config(method={"name": "unscaled"}, train={"rounds": 1})
    other = run_fl(unscaled, tmp_path / "u", data=synthetic_data, model_fn=model_fn)
    assert other["adf_layer_positions"] is None
