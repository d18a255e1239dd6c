"""fedbench.data: data set registry, download/verify/mirror, prepare to one .npz, partitions,
task metrics. Importing it needs numpy only; torch is imported by `make_tensor_dataset`."""

from __future__ import annotations

from typing import Any

from fedbench.data.download import download, file_digest, source_digest, verify
from fedbench.data.errors import (
    ChecksumError,
    DataError,
    PartitionError,
    PreparedFormatError,
    SourceFormatError,
    SourceNotFoundError,
    UnknownDatasetError,
)
from fedbench.data.metrics import (
    TaskMetric,
    accuracy,
    average_precision,
    confusion_matrix,
    iou_per_class,
    mean_average_precision,
    mean_iou,
    metric_name,
)
from fedbench.data.partition import partition, partition_labels
from fedbench.data.prepared import PreparedData, load_prepared, prepare, read_meta
from fedbench.data.registry import (
    DATASETS,
    DatasetSpec,
    SourceFile,
    get_spec,
    list_datasets,
    register,
)

__all__ = [
    "DATASETS",
    "ChecksumError",
    "DataError",
    "DatasetSpec",
    "PartitionError",
    "PreparedData",
    "PreparedFormatError",
    "SourceFile",
    "SourceFormatError",
    "SourceNotFoundError",
    "TaskMetric",
    "TensorImageDataset",
    "UnknownDatasetError",
    "accuracy",
    "average_precision",
    "confusion_matrix",
    "download",
    "file_digest",
    "get_spec",
    "iou_per_class",
    "list_datasets",
    "load_prepared",
    "make_tensor_dataset",
    "mean_average_precision",
    "mean_iou",
    "metric_name",
    "partition",
    "partition_labels",
    "prepare",
    "read_meta",
    "register",
    "source_digest",
    "verify",
]


def __getattr__(name: str) -> Any:
    # torch-dependent names load on first use so that `import fedbench.data` stays light
    if name in ("make_tensor_dataset", "TensorImageDataset"):
        from fedbench.data import torch_data

        return getattr(torch_data, name)
    raise AttributeError(f"module 'fedbench.data' has no attribute {name!r}")
