"""Config loading, overrides and strict validation; the CLI's exit code for bad configs."""

import pytest

from fedbench.cli import main
from fedbench.fl.config import (
    ConfigError,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    list_presets,
    load_config,
)


def test_defaults_and_presets_load():
    cfg = config_from_dict({})
    assert cfg.method.name == "adf" and cfg.setting.direction == "uni"
    presets = list_presets()
    assert {"pneumonia_cpu", "cifar10_cpu", "smoke", "cifar10_gpu"} <= set(presets)
    for p in presets:
        load_config(p)


def test_overrides_are_yaml_values():
    cfg = load_config(
        "smoke",
        [
            "method.name=stc",
            "train.lr=0.1",
            "setting.partial=[adf, bn]",
            "data.max_train_samples=null",
            "method.dq=true",
        ],
    )
    assert cfg.method.name == "stc" and cfg.train.lr == 0.1
    assert cfg.setting.partial == ["adf", "bn"]
    assert cfg.data.max_train_samples is None and cfg.method.dq is True


@pytest.mark.parametrize(
    "override,key",
    [
        ("method.nam=adf", "method.nam"),
        ("method.name=zip", "method.name"),
        ("train.rounds=0", "train.rounds"),
        ("train.rounds=ten", "train.rounds"),
        ("method.sparsity=1.5", "method.sparsity"),
        ("method.adf_qp=1.5", "method.adf_qp"),
        ("method.adf_qp=100000", "method.adf_qp"),
        ("method.adf_qp=600", "method.adf_qp"),
        ("setting.direction=both", "setting.direction"),
        ("foo=1", "foo"),
        ("data.partition=noniid", "data.partition"),
        ("method.lsa_steps=3", "method.lsa_steps"),  # smoke uses adf; see below for stc
        ("train.client_fraction=0", "train.client_fraction"),
        ("method.dq=maybe", "method.dq"),
        ("method.adf_position=input", "method.adf_position"),
        ("method.adf_position=1", "method.adf_position"),
        ("method.adf_lr_scale=0", "method.adf_lr_scale"),
        ("method.adf_lr_scale=fast", "method.adf_lr_scale"),
    ],
)
def test_errors_name_the_key(override, key):
    if key == "method.lsa_steps":
        override_list = [override, "method.name=stc"]
    else:
        override_list = [override]
    with pytest.raises(ConfigError) as exc:
        load_config("smoke", override_list)
    assert key in str(exc.value)


def test_adf_position_auto_follows_bn_mode():
    assert config_from_dict({}).method.adf_position == "auto"
    assert config_from_dict({}).resolved_adf_position == "output"
    for mode, pos in (("batch", "output"), ("frozen", "weight"), ("running", "weight")):
        cfg = config_from_dict({"train": {"bn_mode": mode}})
        assert cfg.resolved_adf_position == pos
    for pos in ("weight", "output"):
        cfg = config_from_dict({"train": {"bn_mode": "frozen"}, "method": {"adf_position": pos}})
        assert cfg.resolved_adf_position == pos
    with pytest.raises(ConfigError, match="auto, weight, output"):
        config_from_dict({"method": {"adf_position": "x"}})


def test_choice_errors_list_allowed_values():
    with pytest.raises(ConfigError, match="method.name") as err:
        config_from_dict({"method": {"name": "x"}})
    for name in ("fp32", "unscaled", "adf", "stc", "topk-fp16", "qsgd", "ef-signsgd"):
        assert name in str(err.value)
    with pytest.raises(ConfigError, match="strategy: invalid value 'fedprox'; allowed: fedavg"):
        config_from_dict({"strategy": "fedprox"})


def test_list_methods(capsys):

    assert main(["fl", "--list-methods"]) == 0
    out = capsys.readouterr().out
    assert "qsgd: QSGD" in out and "method.levels = 16" in out and "ef-signsgd:" in out


def test_preset_method_switch_keeps_working():
    for name in ("fp32", "stc", "qsgd", "ef-signsgd", "unscaled", "topk-fp16"):
        cfg = load_config("pneumonia_cpu", [f"method.name={name}"])
        assert cfg.method.name == name


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["method.name"])
    with pytest.raises(ConfigError, match="seed"):
        apply_overrides({"seed": 1}, ["seed.x=2"])


def test_unknown_preset():
    with pytest.raises(ConfigError, match="preset"):
        load_config("no_such_preset")


def test_cli_invalid_config_exits_2_naming_key(tmp_path, capsys):
    rc = main(["fl", "--config", "smoke", "--out", str(tmp_path), "--set", "train.lrr=1"])
    assert rc == 2
    assert "train.lrr" in capsys.readouterr().err


def test_cli_print_config(capsys):
    assert main(["fl", "--config", "smoke", "--set", "method.name=stc", "--print-config"]) == 0
    assert "name: stc" in capsys.readouterr().out


def test_adf_qp_default_null_and_accepts_codec_qps():
    assert load_config("smoke").method.adf_qp is None
    assert load_config("smoke", ["method.adf_qp=-50"]).method.adf_qp == -50


# ---- fine-tuning regimes (setting.regime) --------------------------------------------------


@pytest.mark.parametrize(
    "regime, bn_mode, partial",
    [
        ("full", "batch", None),
        ("full-bnstats-frozen", "frozen", None),
        ("full-bn-frozen", "frozen", ["nobn"]),
        ("bn-classifier", "batch", ["bn", "classifier"]),
        ("factors", "frozen", ["adf"]),
        ("factors-classifier", "frozen", ["adf", "classifier"]),
        ("classifier", "frozen", ["classifier"]),
    ],
)
def test_regime_sets_bn_mode_and_partial(regime, bn_mode, partial):
    cfg = load_config("smoke", [f"setting.regime={regime}"])
    assert (cfg.setting.regime, cfg.train.bn_mode, cfg.setting.partial) == (
        regime,
        bn_mode,
        partial,
    )
    # the resolved config (summary.json, checkpoints) loads back to the same run
    assert config_from_dict(config_to_dict(cfg)) == cfg
    # BN statistics frozen: the factors act in the weight position under auto
    assert cfg.resolved_adf_position == ("output" if bn_mode == "batch" else "weight")


def test_regime_conflicts_and_unknown_names_are_errors():
    with pytest.raises(ConfigError, match="train.bn_mode: .running. contradicts setting.regime"):
        load_config("smoke", ["setting.regime=factors", "train.bn_mode=running"])
    with pytest.raises(ConfigError, match="setting.partial: .* contradicts"):
        load_config("smoke", ["setting.regime=classifier", "setting.partial=[bn]"])
    with pytest.raises(ConfigError, match="setting.regime: invalid value 'frozen'; allowed: full"):
        load_config("smoke", ["setting.regime=frozen"])
    # agreeing explicit values are fine
    cfg = load_config("smoke", ["setting.regime=factors", "train.bn_mode=frozen"])
    assert cfg.setting.partial == ["adf"]


@pytest.mark.parametrize(
    "regime, want",
    [
        ("factors", lambda n: n.endswith("adf_scale")),
        ("factors-classifier", lambda n: n.endswith("adf_scale") or n.startswith("fc.")),
        ("classifier", lambda n: n.startswith("fc.")),
        # batch statistics: the running statistics are recalibrated (bn_stats auto), not sent
        (
            "bn-classifier",
            lambda n: (".bn" in n or n.startswith(("bn", "fc."))) and ".running_" not in n,
        ),
        ("full-bn-frozen", lambda n: "bn" not in n),
    ],
)
def test_regime_selects_the_tensors_that_train_and_travel(regime, want):
    """On ResNet-20 with ADF: exactly the regime's tensors form the transmitted template."""
    from fedbench.fl.adf import attach_adf
    from fedbench.fl.template import build_template
    from fedbench.models import build_model

    cfg = load_config("smoke", [f"setting.regime={regime}", "method.name=adf"])
    model = build_model("resnet20", 2, in_channels=1)
    attach_adf(model, position=cfg.resolved_adf_position)
    names = [n for n, t in model.state_dict().items() if t.is_floating_point()]
    assert set(build_template(model, cfg)) == {n for n in names if want(n)}
