"""train.precision, train.memory_format and train.parallel_clients: validation, float32
updates in the standard layout, agreement with the default path, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fltools import TinyNet, small_config, synthetic_arrays, tiny_model_fn
from torch import nn

from fedbench.fl.config import ConfigError, config_from_dict, load_config
from fedbench.fl.data import federated_data_from_arrays
from fedbench.fl.loop import FederatedRun
from fedbench.fl.training import cpu_bf16_support, evaluate, train_local


@pytest.fixture
def three_clients():
    """Three clients of unequal size (37, 50, 73 samples): different step counts and last
    batches, the case a stacked (vmap) implementation would have to pad."""
    x_tr, y_tr, x_te, y_te = synthetic_arrays()
    idx = np.arange(len(x_tr))
    parts = [idx[:37], idx[37:87], idx[87:]]
    return federated_data_from_arrays(x_tr, y_tr, x_te, y_te, parts, "classification", 2)


def _cfg(**train):
    return small_config(data={"num_clients": 3}, train={"rounds": 2, **train})


def _run(cfg, data, tmp_path, rounds=None):
    run = FederatedRun(cfg, tmp_path, data=data, model_fn=tiny_model_fn)
    for _ in range(rounds or cfg.train.rounds):
        run.step()
    return run


# ------------------------------------------------------------------------------ config


def test_defaults_are_todays_behaviour():
    t = config_from_dict({}).train
    assert (t.precision, t.memory_format, t.parallel_clients) == ("fp32", "contiguous", 1)


@pytest.mark.parametrize(
    "override,key",
    [
        ("train.precision=fp8", "train.precision"),
        ("train.precision=16", "train.precision"),
        ("train.memory_format=nhwc", "train.memory_format"),
        ("train.parallel_clients=0", "train.parallel_clients"),
        ("train.parallel_clients=two", "train.parallel_clients"),
        ("train.parallel_clients=1.5", "train.parallel_clients"),
    ],
)
def test_bad_values_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config("smoke", [override])


def test_new_keys_load():
    cfg = load_config(
        "smoke",
        ["train.precision=bf16", "train.memory_format=channels_last", "train.parallel_clients=3"],
    )
    assert cfg.train.precision == "bf16" and cfg.train.memory_format == "channels_last"
    assert cfg.train.parallel_clients == 3


def test_cpu_bf16_support_reports_flags():
    info = cpu_bf16_support()
    for key in ("avx512_bf16", "amx_bf16", "bf16_matrix_units", "mkldnn"):
        assert isinstance(info[key], bool)
    assert info["bf16_matrix_units"] == info["amx_bf16"]
    assert isinstance(info["cpu_capability"], str)


# ------------------------------------------------------------------- local training


def _train(data, precision, memory_format="contiguous", seed=3):
    torch.manual_seed(0)
    model = TinyNet()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    train = _cfg(precision=precision, memory_format=memory_format).train
    names = {n for n, _ in model.named_parameters()}
    loss, _ = train_local(model, data, data.client_indices[2], train, 0.05, names, seed)
    return model, start, loss


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_low_precision_training_changes_the_model_and_keeps_fp32(three_clients, precision):
    model, start, loss = _train(three_clients, precision)
    ref, _, ref_loss = _train(three_clients, "fp32")
    assert np.isfinite(loss)
    state, want = model.state_dict(), ref.state_dict()
    for n, t in state.items():
        assert t.dtype == start[n].dtype, n  # master weights stay float32
    assert not torch.equal(state["conv2.weight"], start["conv2.weight"])
    # autocast really ran: the result differs from fp32 training, but not by much
    assert not torch.equal(state["conv2.weight"], want["conv2.weight"])
    step = (want["conv2.weight"] - start["conv2.weight"]).abs().max()
    assert (state["conv2.weight"] - want["conv2.weight"]).abs().max() < 0.5 * step
    assert abs(loss - ref_loss) < 0.05


def test_channels_last_training_matches_contiguous(three_clients):
    model, _, loss = _train(three_clients, "fp32", "channels_last")
    ref, _, ref_loss = _train(three_clients, "fp32")
    assert model.conv2.weight.is_contiguous(memory_format=torch.channels_last)
    assert not model.conv2.weight.is_contiguous()
    for n, t in ref.state_dict().items():
        torch.testing.assert_close(model.state_dict()[n], t, rtol=1e-4, atol=1e-5)
    assert loss == pytest.approx(ref_loss, rel=1e-5)


def test_evaluate_in_bf16_and_channels_last_close_to_fp32(three_clients):
    model, _, _ = _train(three_clients, "fp32")
    ref = evaluate(model, three_clients, 64)
    cl = evaluate(model, three_clients, 64, memory_format="channels_last")
    assert cl["test_loss"] == pytest.approx(ref["test_loss"], rel=1e-4)
    assert cl["test_acc"] == ref["test_acc"]
    bf = evaluate(model, three_clients, 64, precision="bf16")
    assert bf["test_loss"] != ref["test_loss"]  # autocast ran
    assert bf["test_loss"] == pytest.approx(ref["test_loss"], rel=0.05)
    assert abs(bf["test_acc"] - ref["test_acc"]) <= 0.05


# ------------------------------------------------------------------------ the FL loop


def test_codec_sees_float32_c_contiguous_updates(three_clients, tmp_path, monkeypatch):
    cfg = _cfg(precision="bf16", memory_format="channels_last")
    cfg.setting.direction = "bi"
    run = FederatedRun(cfg, tmp_path, data=three_clients, model_fn=tiny_model_fn)
    seen = []
    for comp in (run.up, run.down):
        encode = comp.encode

        def spy(update, _encode=encode):
            seen.append(update)
            return _encode(update)

        monkeypatch.setattr(comp, "encode", spy)
    run.step()
    run.step()
    assert len(seen) == 2 * (3 + 1)  # 3 uploads and one broadcast per round
    for update in seen:
        assert set(update) == set(run.template)
        for n, a in update.items():
            assert a.dtype == np.float32 and a.flags.c_contiguous, n
            assert a.shape == run.template[n].shape
    for res in run.residuals.values():
        assert all(a.dtype == np.float32 and a.flags.c_contiguous for a in res.values())
    # the server state keeps the standard layout (what checkpoints and the codec get)
    assert all(t.is_contiguous() for t in run.global_state.values())
    assert all(t.is_contiguous() for t in run.view.values())


def test_channels_last_run_matches_contiguous_run(three_clients, tmp_path):
    cfg = _cfg()
    cfg.method.name = "fp32"  # lossless: the comparison is not blurred by quantisation
    a = _run(cfg, three_clients, tmp_path / "a")
    cfg.train.memory_format = "channels_last"
    b = _run(cfg, three_clients, tmp_path / "b")
    for n, t in a.global_state.items():
        torch.testing.assert_close(b.global_state[n], t, rtol=1e-4, atol=1e-5)
    for ra, rb in zip(a.rows, b.rows, strict=True):
        assert rb["test_loss"] == pytest.approx(ra["test_loss"], rel=1e-4)


def test_bf16_run_is_deterministic(three_clients, tmp_path):
    cfg = _cfg(precision="bf16", memory_format="channels_last")
    cfg.method.name = "adf"
    a = _run(cfg, three_clients, tmp_path / "a")
    b = _run(cfg, three_clients, tmp_path / "b")
    assert [r["bytes_up"] for r in a.rows] == [r["bytes_up"] for r in b.rows]
    assert a.ledger.to_csv() == b.ledger.to_csv()
    for n, t in a.global_state.items():
        assert torch.equal(t, b.global_state[n]), n
    for k, res in a.residuals.items():
        for n, arr in res.items():
            assert arr.tobytes() == b.residuals[k][n].tobytes()
    # and bf16 is really a different computation from fp32
    cfg.train.precision = "fp32"
    c = _run(cfg, three_clients, tmp_path / "c")
    assert not all(torch.equal(t, c.global_state[n]) for n, t in a.global_state.items())


# --------------------------------------------------------------------- parallel clients


@pytest.mark.parametrize("workers", [2, 3])
@pytest.mark.parametrize("method", ["stc", "adf"])
def test_parallel_clients_equal_sequential(three_clients, tmp_path, workers, method):
    def go(k, out):
        cfg = small_config(
            data={"num_clients": 3, "augment": True},
            train={
                "rounds": 3,
                "parallel_clients": k,
                "keep_optimizer_state": True,
                "client_fraction": 1.0,
            },
            method={"name": method, "sparsity": 0.8},
        )
        run = FederatedRun(cfg, out, data=three_clients, model_fn=tiny_model_fn)
        decoded = []
        up = run.up.decode

        def spy(bits):
            dec = up(bits)
            decoded.append(dec)
            return dec

        run.up.decode = spy
        torch.manual_seed(123)  # whatever came before: the run seeds what it uses
        for _ in range(cfg.train.rounds):
            run.step()
        return run, decoded, torch.get_rng_state()

    seq, dec_seq, rng_seq = go(1, tmp_path / "seq")
    par, dec_par, rng_par = go(workers, tmp_path / "par")
    assert len(dec_par) == len(dec_seq) == 9
    # one torch thread per worker, as in sequential training here: the same reduction order
    for d1, d2 in zip(dec_seq, dec_par, strict=True):
        for n in d1:
            np.testing.assert_allclose(d2[n], d1[n], rtol=1e-6, atol=1e-7)
    for n, t in seq.global_state.items():
        torch.testing.assert_close(par.global_state[n], t, rtol=1e-6, atol=1e-7)
    assert [r["train_loss"] for r in par.rows] == pytest.approx(
        [r["train_loss"] for r in seq.rows], rel=1e-6
    )
    assert set(par.opt_states) == {0, 1, 2}
    # the global RNG is left where sequential training leaves it
    assert torch.equal(rng_par, rng_seq)


class DropNet(TinyNet):
    """TinyNet with dropout (torch's global RNG)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 2) -> None:
        super().__init__(in_channels, num_classes)
        self.drop = nn.Dropout(0.2)


def test_parallel_clients_refuse_dropout(three_clients, tmp_path):
    cfg = _cfg(parallel_clients=2)
    with pytest.raises(ConfigError, match=r"train\.parallel_clients"):
        FederatedRun(cfg, tmp_path, data=three_clients, model_fn=lambda c, d: DropNet())


def test_summary_records_the_options(three_clients, tmp_path):
    from fedbench.fl.loop import run_fl

    cfg = _cfg(precision="bf16", memory_format="channels_last", parallel_clients=2)
    cfg.train.rounds = 1
    s = run_fl(cfg, tmp_path, data=three_clients, model_fn=tiny_model_fn)
    assert (s["precision"], s["memory_format"], s["parallel_clients"]) == (
        "bf16",
        "channels_last",
        2,
    )
    assert s["config"]["train"]["precision"] == "bf16"
