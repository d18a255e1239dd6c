"""Constants the plot tests' generated inputs are made from (a plain module: the test folders
are not packages, so `from conftest import ...` could find another folder's conftest)."""

from __future__ import annotations

METHOD_RATIO = {"fp32": 1.0, "unscaled": 40.0, "adf": 60.0, "stc": 30.0}
# Majority-class share of each data set's test set, as the summaries' majority_acc.
MAJORITY = {"pneumoniamnist": 0.625, "cifar10": 0.1}
# adf's sweep: variant names sort (base, dense, sparsity0.99) otherwise than their sparsities.
ADF_SWEEP = {"base": 0.9, "dense": 0.3, "sparsity0.99": 0.99}
CODEC_ROWS = (  # name, bytes over H0, encode params/s, threads: names as fedbench codec bench
    ("nnc", 0.95, 2e7, 2),
    ("sparse", 1.02, 5e7, 2),
    ("nncodec", 0.95, 4e6, 1),
    ("zstd-19/int32", 1.3, 1e7, 1),
    ("zstd-19/min:int8", 1.25, 3e7, 1),
    ("lzma-9/min:int8", 1.2, 2e6, 1),
    ("nnc-1t", 0.95, 1e7, 1),
)
