"""Each tensor class coded for what it is: class QPs, non-weight sparsity, error feedback per
class, and a sparsity knob that is the measured sparsity (issue 10, points 2 and 3)."""

from __future__ import annotations

import numpy as np
import pytest
from fltools import TinyNet, small_config, tiny_model_fn

from fedbench.codec import container
from fedbench.fl.compressors import (
    TensorSpec,
    build_compressor,
    compress_with_feedback,
    fit_qp,
    tensor_class,
)
from fedbench.fl.ledger import tensor_classes
from fedbench.fl.loop import FederatedRun

TEMPLATE = {
    "conv1.weight": TensorSpec((16, 8, 3, 3), "weight"),
    "conv1.adf_scale": TensorSpec((16, 1, 1, 1), "fine"),
    "bn1.weight": TensorSpec((16,), "fine"),
    "bn1.bias": TensorSpec((16,), "fine"),
    "bn1.running_mean": TensorSpec((16,), "fine"),
    "bn1.running_var": TensorSpec((16,), "fine"),
    "conv2.weight": TensorSpec((32, 16, 3, 3), "weight"),
    "fc.weight": TensorSpec((2, 32), "weight"),
    "fc.bias": TensorSpec((2,), "fine"),
}
CLASS = {
    "conv1.weight": "weight",
    "conv1.adf_scale": "adf",
    "bn1.weight": "bn_affine",
    "bn1.bias": "bn_affine",
    "bn1.running_mean": "bn_stats",
    "bn1.running_var": "bn_stats",
    "conv2.weight": "weight",
    "fc.weight": "weight",
    "fc.bias": "bias",
}


def _update(scale: float = 1e-2, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        n: (scale * rng.standard_normal(s.shape)).astype(np.float32) for n, s in TEMPLATE.items()
    }


def test_tensor_class_from_names_matches_the_ledger_on_a_batchnorm_net():
    assert {n: tensor_class(n, TEMPLATE) for n in TEMPLATE} == CLASS
    model = TinyNet()
    state = model.state_dict()
    template = {
        n: TensorSpec(tuple(t.shape), "weight" if t.dim() >= 2 else "fine")
        for n, t in state.items()
        if t.is_floating_point()
    }
    assert {n: tensor_class(n, template) for n in template} == tensor_classes(model, template)
    # the run's template carries the ledger's classes explicitly
    from fedbench.fl.template import build_template

    tpl = build_template(model, small_config(method={"name": "unscaled"}))
    assert {n: s.cls for n, s in tpl.items()} == tensor_classes(model, tpl)
    # an explicit class wins over the names
    assert tensor_class("x", {"x": TensorSpec((3,), "fine", "bn_stats")}) == "bn_stats"


def test_each_class_is_coded_at_its_own_qp():
    opts = {"sparsity": 0.5, "nonweight_qp": -60, "bn_affine_qp": -36, "bn_stats_qp": -20}
    opts |= {"bias_qp": -28, "adf_qp": -44}
    comp = build_compressor("deepcabac", TEMPLATE, **opts)
    entries = {e.name: e for e in container.parse(comp.encode(_update()), max_elements=1 << 20)}
    want = {"weight": -32, "bn_affine": -36, "bn_stats": -20, "bias": -28, "adf": -44}
    assert {n: entries[n].qp for n in TEMPLATE} == {n: want[c] for n, c in CLASS.items()}
    # null class QPs fall back to nonweight_qp
    comp = build_compressor("deepcabac", TEMPLATE, sparsity=0.5, nonweight_qp=-60)
    entries = {e.name: e for e in container.parse(comp.encode(_update()), max_elements=1 << 20)}
    assert all(entries[n].qp == -60 for n, c in CLASS.items() if c != "weight")


def test_nonweight_sparsity_zeroes_that_fraction_of_each_bn_and_bias_tensor():
    comp = build_compressor(
        "deepcabac", TEMPLATE, sparsity=0.5, nonweight_sparsity=0.75, nonweight_qp=-60
    )
    dec = comp.decode(comp.encode(_update()))
    for n, c in CLASS.items():
        zeros = int(np.count_nonzero(dec[n] == 0))
        if c in ("bn_affine", "bn_stats", "bias"):
            assert zeros == round(0.75 * dec[n].size), n
        elif c == "adf":
            assert zeros == 0  # the factors are never sparsified


@pytest.mark.parametrize("mode", ["nnc", "sparse"])
def test_error_feedback_telescopes_in_every_class(mode):
    """Over rounds, decoded + final residual = sum of updates, class by class; a coarse class
    QP leaves a residual that the next round carries. (Running statistics are sent densely
    here: what nonweight_sparsity leaves out of them carries no residual, tested below.)"""
    comp = build_compressor(
        "deepcabac",
        TEMPLATE,
        sparsity=0.9,
        codec_mode=mode,
        bn_affine_qp=-16,
        bn_stats_qp=-8,
        bias_qp=-16,
        adf_qp=-16,
        nonweight_sparsity=0.5,
    )
    comp.unsent_state = lambda update: {}  # the increment semantics, for every class
    total = {n: np.zeros(s.shape, np.float64) for n, s in TEMPLATE.items()}
    sent = {n: np.zeros(s.shape, np.float64) for n, s in TEMPLATE.items()}
    res = {n: np.zeros(s.shape, np.float32) for n, s in TEMPLATE.items()}
    for r in range(3):
        delta = _update(seed=r)
        _, dec, res = compress_with_feedback(comp, {n: delta[n] + res[n] for n in TEMPLATE})
        for n in TEMPLATE:
            total[n] += delta[n]
            sent[n] += dec[n]
        for n in TEMPLATE:
            assert np.abs(res[n]).max() > 0, n  # every class leaves something to carry
    for n in TEMPLATE:
        np.testing.assert_allclose(sent[n] + res[n], total[n], rtol=0, atol=1e-6, err_msg=n)


STATS = [n for n in TEMPLATE if CLASS[n] == "bn_stats"]


@pytest.mark.parametrize(
    "knobs", [{"nonweight_sparsity": 0.75}, {"bn_stats_every": 3}], ids=["sparsified", "held"]
)
@pytest.mark.parametrize("carry_unsent", [False, True])
def test_running_statistics_reach_the_measured_value_without_overshoot(knobs, carry_unsent):
    """A running statistic is a measured state: each round a client sends the gap between
    the value it measures (t) and the value it received (v). Entries the message leaves out
    are re-measured in the next gap, so they carry no residual; carrying them too (the
    increment rule) sends them twice, and k times after k held rounds: v overshoots t."""
    comp = build_compressor("deepcabac", TEMPLATE, bn_stats_qp=-40, **knobs)
    if carry_unsent:
        comp.unsent_state = lambda update: {}
    step = 2.0 ** (-40 / 4)
    rng = np.random.default_rng(0)
    target = {n: rng.uniform(0.05, 0.5, 16).astype(np.float32) for n in STATS}
    v = {n: np.ones(16, np.float32) for n in STATS}  # BatchNorm's initial running_var
    res = {n: np.zeros(s.shape, np.float32) for n, s in TEMPLATE.items()}
    worst = 0.0
    for r in range(1, 13):
        comp.set_context(0, r, 0)
        gap = {n: np.zeros(s.shape, np.float32) for n, s in TEMPLATE.items()}
        gap.update({n: target[n] - v[n] for n in STATS})
        _, dec, res = compress_with_feedback(comp, {n: gap[n] + res[n] for n in TEMPLATE})
        for n in STATS:
            v[n] = v[n] + dec[n]
            # every statistic moves from 1 down towards its target: below it is overshoot
            worst = max(worst, float((target[n] - v[n]).max()))
    if carry_unsent:
        assert worst > 0.05
        return
    assert worst <= step
    for n in STATS:
        np.testing.assert_allclose(v[n], target[n], atol=step)
        sent = np.abs(dec[n]) > 0
        np.testing.assert_array_equal(res[n][~sent & (np.abs(gap[n]) > step)], 0.0)


def test_the_round_loop_carries_every_class_residual_to_the_next_round(synthetic_data, tmp_path):
    """u_k(r+1) = delta_k(r+1) + (u_k(r) - decoded_k(r)) for a tensor of every class."""
    cfg = small_config(
        method={
            "name": "adf",
            "sparsity": 0.9,
            "bn_affine_qp": -16,
            "bn_stats_qp": -8,
            "bias_qp": -16,
            "adf_qp": -16,
            "bn_stats": "send",  # the statistics travel too (the default recalibrates them)
        },
        train={"rounds": 2},
    )
    run = FederatedRun(cfg, tmp_path, data=synthetic_data, model_fn=tiny_model_fn)
    classes = tensor_classes(run.model, run.template)
    assert set(classes.values()) == {"weight", "bn_affine", "bn_stats", "bias", "adf"}
    seen = []
    enc, dec = run.up.encode, run.up.decode

    def record(u):
        trained = {n: t.detach().clone() for n, t in run.model.state_dict().items()}
        start = {n: t.clone() for n, t in run.global_state.items()}
        bits = enc(u)
        seen.append({"u": {n: a.copy() for n, a in u.items()}, "trained": trained})
        seen[-1] |= {"start": start, "dec": dec(bits)}
        return bits

    run.up.encode = record
    run.step()
    run.step()
    for k in range(4):
        r1, r2 = seen[k], seen[4 + k]
        carried = set()
        for n in run.template:
            delta = (r2["trained"][n] - r2["start"][n]).numpy()
            residual = r1["u"][n] - r1["dec"][n]
            np.testing.assert_allclose(r2["u"][n], delta + residual, rtol=0, atol=1e-6)
            if np.abs(residual).max() > 0:
                carried.add(classes[n])
        assert carried == set(classes.values())


# ------------------------------------------------------------------ exact sparsity


def test_fit_qp_is_the_coarsest_qp_keeping_every_nonzero_entry():
    from fedbench.codec.quant import quantize_uniform

    w = np.array([0.3, -1e-4, 0.0, 2e-3], dtype=np.float32)
    q = fit_qp(w, -32, 2)
    nz = w[w != 0]
    assert np.all(quantize_uniform(nz, q, 2) != 0)
    assert np.any(quantize_uniform(nz, q + 1, 2) == 0)
    assert fit_qp(np.array([0.5], np.float32), -32, 2) == -32  # already kept at -32
    assert fit_qp(np.zeros(3, np.float32), -32, 2) == -32


# Per tensor the sparsifier zeroes round(s * n) entries: the measured fraction differs from
# the knob by at most 0.5 per weight tensor over all weight entries (here 3 / 4672).
_WEIGHTS = [n for n, c in CLASS.items() if c == "weight"]
_TOL = 0.5 * len(_WEIGHTS) / sum(TEMPLATE[n].size for n in _WEIGHTS)


def _measured(dec: dict[str, np.ndarray]) -> float:
    zeros = sum(int(np.count_nonzero(dec[n] == 0)) for n in _WEIGHTS)
    return zeros / sum(dec[n].size for n in _WEIGHTS)


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 0.99, 0.999])
@pytest.mark.parametrize("mode", ["nnc", "sparse"])
def test_exact_sparsity_makes_the_knob_the_measured_sparsity(sparsity, mode):
    # updates of 1e-3 at QP -32 (step 2^-8): the quantizer alone zeroes ~90 % of them
    u = _update(scale=1e-3)
    exact = build_compressor(
        "deepcabac", TEMPLATE, sparsity=sparsity, codec_mode=mode, exact_sparsity=True
    )
    assert abs(_measured(exact.decode(exact.encode(u))) - sparsity) <= _TOL
    if sparsity <= 0.5:
        plain = build_compressor("deepcabac", TEMPLATE, sparsity=sparsity, codec_mode=mode)
        assert _measured(plain.decode(plain.encode(u))) > sparsity + 0.3


def test_measured_sparsity_in_the_summary_follows_the_knob(synthetic_data, tmp_path):
    """summary.json: nominal (config) and measured sparsity agree under exact_sparsity."""
    from fedbench.fl.loop import run_fl

    nominal = 0.7
    cfg = small_config(
        method={
            "name": "unscaled",
            "sparsity": nominal,
            "downlink_sparsity": 0.9,
            "qp": -8,
            "exact_sparsity": True,
        },
        setting={"direction": "bi"},
        train={"rounds": 2},
    )
    s = run_fl(cfg, tmp_path, data=synthetic_data, model_fn=tiny_model_fn)
    assert s["sparsity_nominal"] == s["config"]["method"]["sparsity"] == nominal
    assert s["downlink_sparsity_nominal"] == 0.9
    run = FederatedRun(cfg, tmp_path / "t", data=synthetic_data, model_fn=tiny_model_fn)
    sizes = [s.size for s in run.template.values() if s.kind == "weight"]
    tol = 0.5 * len(sizes) / sum(sizes)
    assert abs(s["mean_update_sparsity"] - nominal) <= tol
    # (the broadcast has exact zeros where no client sent anything: a target below that
    # fraction cannot be met; 0.9 is above it)
    assert abs(s["mean_downlink_sparsity"] - 0.9) <= tol


# ------------------------------------------------------------ BatchNorm statistics every k


def test_bn_stats_every_k_rounds_sends_the_statistics_of_that_round():
    """Held rounds send no statistics and keep no residual of them (the state is measured
    again); round k sends its own gap, up to the QP step."""
    comp = build_compressor("deepcabac", TEMPLATE, sparsity=0.5, bn_stats_every=3, bn_stats_qp=-40)
    stats = [n for n, c in CLASS.items() if c == "bn_stats"]
    res = {n: np.zeros(s.shape, np.float32) for n, s in TEMPLATE.items()}
    for r in (1, 2, 3):
        comp.set_context(0, r, 5)
        delta = _update(seed=r)
        _, dec, res = compress_with_feedback(comp, {n: delta[n] + res[n] for n in TEMPLATE})
        for n in stats:
            if r < 3:  # held back: nothing sent, nothing carried
                assert not dec[n].any()
                assert not res[n].any()
            else:
                np.testing.assert_allclose(dec[n], delta[n], atol=2 ** (-40 / 4))
    # other classes are sent every round
    assert dec["bn1.weight"].any() and dec["conv1.adf_scale"].any()


def test_bn_stats_every_k_in_the_round_loop(synthetic_data, tmp_path):
    cfg = small_config(
        method={"name": "unscaled", "bn_stats": "send", "bn_stats_every": 2}, train={"rounds": 2}
    )
    run = FederatedRun(cfg, tmp_path, data=synthetic_data, model_fn=tiny_model_fn)
    stats = [n for n in run.template if n.endswith(("running_mean", "running_var"))]
    decoded = []
    dec = run.up.decode

    def record(bits):
        out = dec(bits)
        decoded.append(out)
        return out

    run.up.decode = record
    run.step()
    run.step()
    assert len(decoded) == 8
    assert all(not d[n].any() for d in decoded[:4] for n in stats)  # round 1: held back
    assert all(any(d[n].any() for n in stats) for d in decoded[4:])  # round 2: sent
