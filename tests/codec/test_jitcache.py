"""numba cache invalidation when a module compiled into a kernel changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedbench.codec import _jitcache


def test_edit_of_a_dependency_drops_the_dependent_caches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "__pycache__"
    cache.mkdir()
    for m in ("_kernels", "engine", "tables", "quant", "sparse", "limits"):
        (tmp_path / f"{m}.py").write_text(f"# {m}\n")
    monkeypatch.setattr(_jitcache, "_HERE", tmp_path)
    monkeypatch.setattr(_jitcache, "_cache_dir", lambda py_file: cache)

    def touch_caches() -> None:
        for m in ("_kernels", "quant", "sparse"):
            (cache / f"{m}.f-10.py311.nbi").write_bytes(b"i")
            (cache / f"{m}.f-10.py311.1.nbc").write_bytes(b"c")

    touch_caches()
    _jitcache.invalidate_stale()  # no stamps yet: everything goes
    assert not list(cache.glob("*.nb?"))
    touch_caches()
    _jitcache.invalidate_stale()  # unchanged sources: caches stay
    assert len(list(cache.glob("*.nb?"))) == 6
    (tmp_path / "engine.py").write_text("# engine, edited\n")
    _jitcache.invalidate_stale()  # engine.py is compiled into _kernels only
    left = sorted(p.name.split(".")[0] for p in cache.glob("*.nbi"))
    assert left == ["quant", "sparse"]
    touch_caches()
    _jitcache.invalidate_stale()
    (tmp_path / "limits.py").write_text("# limits, edited\n")
    _jitcache.invalidate_stale()  # the int32 bounds are frozen into quant and sparse
    left = sorted(p.name.split(".")[0] for p in cache.glob("*.nbi"))
    assert left == ["_kernels"]
