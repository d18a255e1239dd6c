"""fedbench.plots: figures (PDF + PNG) and results tables from run folders and the codec bench.

Inputs are only run outputs: each run folder's metrics.csv and summary.json (as written by
`fedbench fl`) and the codec benchmark CSV (`fedbench codec bench`). Matplotlib is imported
on first use, so importing this package stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "make_figures": "fedbench.plots.figures",
    "write_table": "fedbench.plots.table",
    "load_runs": "fedbench.plots.runs",
    "PlotInputError": "fedbench.plots.runs",
}
__all__ = ["PlotInputError", "load_runs", "make_figures", "write_table"]


def __getattr__(name: str) -> Any:
    """Import the public functions lazily (they pull in matplotlib and pandas)."""
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'fedbench.plots' has no attribute {name!r}")
