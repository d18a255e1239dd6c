"""Contract of every registered method (fedbench.fl.methods), parametrized over the registry:
a new method is tested without writing a test."""

import dataclasses
import json

import numpy as np
import pytest
from fltools import small_config, tiny_model_fn

from fedbench.fl.compressors import OVERHEAD, TensorSpec, compress_with_feedback
from fedbench.fl.config import ConfigError, config_from_dict
from fedbench.fl.loop import run_fl
from fedbench.fl.methods import method_names

TEMPLATE = {
    "conv.weight": TensorSpec((8, 3, 3, 3), "weight"),
    "conv.bias": TensorSpec((8,), "fine"),
    "bn.running_var": TensorSpec((8,), "fine"),
    "fc.weight": TensorSpec((4, 8), "weight"),
}


def _update(seed=0):
    rng = np.random.default_rng(seed)
    return {
        n: (rng.standard_normal(s.shape) * 0.01).astype(np.float32) for n, s in TEMPLATE.items()
    }


def _method(name, **options):
    cfg = config_from_dict({"method": {"name": name, **options}, "device": "cpu"})
    return cfg.method_class(cfg)


@pytest.fixture(params=method_names())
def name(request):
    return request.param


def test_round_trip_within_stated_bound_and_bytes(name):
    m = _method(name)
    for downlink in (False, True):
        comp = m.build_compressor(TEMPLATE, downlink)
        comp.set_context(0, 1, 2)
        u = _update()
        bits = comp.encode(u)
        assert isinstance(bits, bytes)
        dec = comp.decode(bits)
        assert set(dec) == set(TEMPLATE)
        for n, spec in TEMPLATE.items():
            assert dec[n].shape == spec.shape and dec[n].dtype == np.float32
            err = np.abs(u[n] - dec[n])
            bound = m.error_bound(u, n)
            assert np.all(err <= bound), (name, n, float(np.max(err - bound)))
        assert sum(comp.tensor_bytes(bits).values()) == len(bits)
        assert set(comp.tensor_bytes(bits)) <= set(TEMPLATE) | {OVERHEAD}


def test_error_feedback_residual(name):
    comp = _method(name).build_compressor(TEMPLATE, False)
    u = _update(3)
    bits, dec, res = compress_with_feedback(comp, u)
    for n in TEMPLATE:
        np.testing.assert_array_equal(res[n], u[n] - dec[n])
    assert bits == comp.encode(u)


def test_deterministic_encode(name):
    a = _method(name).build_compressor(TEMPLATE, False)
    b = _method(name).build_compressor(TEMPLATE, False)
    a.set_context(5, 2, 1)
    b.set_context(5, 2, 1)
    u = _update(7)
    assert a.encode(u) == b.encode(u) == a.encode(u)


def test_bad_options_rejected_naming_the_key(name):
    with pytest.raises(ConfigError, match=r"method\.no_such_option"):
        config_from_dict({"method": {"name": name, "no_such_option": 1}})
    cls = _method(name).__class__
    for f in dataclasses.fields(cls.Options):
        with pytest.raises(ConfigError, match=rf"method\.{f.name}"):
            config_from_dict({"method": {"name": name, f.name: {"not": "a value"}}})
    # another method's own option is rejected too, naming its owner
    for other in method_names():
        ocls = _method(other).__class__
        for f in dataclasses.fields(ocls.Options):
            if other != name and f.name not in {g.name for g in dataclasses.fields(cls.Options)}:
                with pytest.raises(ConfigError, match=rf"method\.{f.name}.*{other}"):
                    config_from_dict({"method": {"name": name, f.name: f.default}})


def test_bad_option_values_rejected():
    with pytest.raises(ConfigError, match=r"method\.levels"):
        config_from_dict({"method": {"name": "qsgd", "levels": 0}})


def test_qsgd_seeded_by_context():
    comp = _method("qsgd", levels=2).build_compressor(TEMPLATE, False)
    u = _update(1)
    comp.set_context(0, 1, 0)
    one = comp.encode(u)
    comp.set_context(0, 1, 1)
    assert comp.encode(u) != one  # another client draws other roundings


@pytest.mark.parametrize("method", ["qsgd", "ef-signsgd"])
def test_baselines_run_two_rounds(method, synthetic_data, tmp_path):
    cfg = small_config(method={"name": method}, train={"rounds": 2})
    s = run_fl(cfg, tmp_path, data=synthetic_data, model_fn=tiny_model_fn)
    assert s["method"] == method and s["config"]["strategy"] == "fedavg"
    assert json.loads((tmp_path / "summary.json").read_text())["config"]["method"]["name"] == method
    again = run_fl(cfg, tmp_path / "b", data=synthetic_data, model_fn=tiny_model_fn)
    assert s["bytes_up"] > 0
    assert (again["bytes_up"], again["final_test_acc"]) == (s["bytes_up"], s["final_test_acc"])
