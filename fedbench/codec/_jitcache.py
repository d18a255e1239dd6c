"""Invalidate numba's on-disk caches of the codec kernels when a module they compile in changes.

numba's ``cache=True`` index only records the defining file's timestamp and size, but our
kernels inline functions and freeze global tables from other modules (engine.py and tables.py
into _kernels.py, tables.py into quant.py). After an edit to one of those, numba would keep
loading the old machine code. So, before any kernel module is imported, we hash the sources
each kernel module depends on and compare with a stamp stored beside its cache files; on a
mismatch the module's cache files (``<module>.*.nbi`` / ``.nbc``) are deleted and the stamp is
rewritten, and numba recompiles on first use. Any failure here (read-only tree, odd cache
locator) just leaves numba's own behaviour in place.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_HERE = Path(__file__).resolve().parent

# kernel module -> every codec module whose code or tables end up in its compiled kernels.
DEPENDENCIES: dict[str, tuple[str, ...]] = {
    "_kernels": ("_kernels", "engine", "tables"),
    "engine": ("engine", "tables"),
    "quant": ("quant", "tables", "limits"),
    "tables": ("tables",),
    "sparse": ("sparse", "limits"),
}


def _cache_dir(py_file: Path) -> Path | None:
    """The directory numba caches py_file's functions in (its own locator order), or None."""
    try:
        from numba.core.caching import _CacheImpl

        def probe() -> None:  # a stand-in function "defined" in py_file
            return None

        for cls in _CacheImpl._locator_classes:
            loc = cls.from_function(probe, str(py_file))
            if loc is not None:
                return Path(loc.get_cache_path())
    except (ImportError, AttributeError, TypeError, OSError):
        return py_file.parent / "__pycache__"  # numba internals moved: the in-tree default
    return None


def _digest(modules: tuple[str, ...]) -> str:
    """sha256 over the named modules' sources (and the numba version, for good measure)."""
    import numba

    h = hashlib.sha256(numba.__version__.encode())
    for m in modules:
        h.update(m.encode())
        h.update((_HERE / f"{m}.py").read_bytes())
    return h.hexdigest()


def invalidate_stale() -> None:
    """Delete the cached machine code of every kernel module whose dependencies changed."""
    for mod, deps in DEPENDENCIES.items():
        try:
            py_file = _HERE / f"{mod}.py"
            cache = _cache_dir(py_file)
            if cache is None or not cache.is_dir():
                continue
            stamp = cache / f"{mod}.srcstamp"
            want = _digest(deps)
            try:
                have = stamp.read_text()
            except OSError:
                have = ""
            if have == want:
                continue
            for f in cache.glob(f"{mod}.*.nb[ic]"):
                try:
                    f.unlink()
                except FileNotFoundError:
                    pass  # another process got there first
            tmp = cache / f"{mod}.srcstamp.{os.getpid()}"
            tmp.write_text(want)
            os.replace(tmp, stamp)  # atomic: concurrent imports see old or new, never half
        except OSError:
            continue
