"""Task metrics: accuracy, mIoU (confusion matrix, 255 ignored), mAP (per-class AP)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

IGNORE_INDEX = 255


def _np(a: Any) -> np.ndarray:
    """numpy view of a numpy array or a (possibly CUDA, grad-requiring) torch tensor."""
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def accuracy(outputs: Any, targets: Any) -> float:
    """Top-1 accuracy; outputs are logits [N, C] or predicted labels [N]."""
    out, t = _np(outputs), _np(targets).reshape(-1)
    pred = out.argmax(1) if out.ndim == 2 else out.reshape(-1)
    return float((pred == t).mean()) if len(t) else float("nan")


def confusion_matrix(
    pred: Any, target: Any, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> np.ndarray:
    """[num_classes, num_classes] int64 counts, rows = target, cols = prediction."""
    p, t = _np(pred).reshape(-1).astype(np.int64), _np(target).reshape(-1).astype(np.int64)
    keep = (t != ignore_index) & (t >= 0) & (t < num_classes)
    idx = t[keep] * num_classes + p[keep]
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def iou_per_class(conf: np.ndarray) -> np.ndarray:
    """IoU of each class from a confusion matrix; nan for classes absent in target and pred."""
    conf = np.asarray(conf, dtype=np.float64)
    tp = np.diag(conf)
    denom = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, tp / denom, np.nan)


def mean_iou(pred: Any, target: Any, num_classes: int, ignore_index: int = IGNORE_INDEX) -> float:
    """Mean IoU over classes present in target or prediction (pixels at ignore_index skipped)."""
    return float(
        np.nanmean(iou_per_class(confusion_matrix(pred, target, num_classes, ignore_index)))
    )


def average_precision(scores: Any, targets: Any) -> float:
    """Average precision of one class (sklearn's definition: sum of (R_n - R_{n-1}) P_n,
    tied scores taken as one threshold); nan when there is no positive."""
    s, t = _np(scores).reshape(-1).astype(np.float64), _np(targets).reshape(-1) > 0
    npos = int(t.sum())
    if npos == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s, t = s[order], t[order]
    tp = np.cumsum(t)
    # last index of each run of equal scores = one threshold
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]
    tp = tp[last].astype(np.float64)
    precision = tp / (last + 1)
    recall = tp / npos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def mean_average_precision(scores: Any, targets: Any) -> float:
    """Mean over classes (with at least one positive) of the per-class AP; scores [N, C]."""
    s, t = _np(scores), _np(targets)
    aps = [average_precision(s[:, c], t[:, c]) for c in range(s.shape[1])]
    return float(np.nanmean(aps)) if not np.all(np.isnan(aps)) else float("nan")


class TaskMetric:
    """Streaming metric of a task: update(outputs, targets) per batch, then compute().

    classification: accuracy of logits [N, C]; multilabel: mAP of logits [N, C] against
    0/1 targets [N, C]; segmentation: mIoU of logits [N, C, H, W] against masks [N, H, W].
    """

    NAMES: ClassVar[dict[str, str]] = {
        "classification": "accuracy",
        "multilabel": "map",
        "segmentation": "miou",
    }

    def __init__(self, task: str, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        if task not in self.NAMES:
            raise ValueError(f"unknown task {task!r}")
        self.task, self.num_classes, self.ignore_index = task, num_classes, ignore_index
        self.name = self.NAMES[task]
        self.reset()

    def reset(self) -> None:
        """Forget everything seen so far."""
        self._correct = 0
        self._count = 0
        self._scores: list[np.ndarray] = []
        self._targets: list[np.ndarray] = []
        self._conf = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def update(self, outputs: Any, targets: Any) -> None:
        """Add one batch of model outputs (logits) and targets."""
        if self.task == "segmentation":
            pred = outputs.argmax(1) if hasattr(outputs, "argmax") else _np(outputs).argmax(1)
            self._conf += confusion_matrix(pred, targets, self.num_classes, self.ignore_index)
        elif self.task == "multilabel":
            self._scores.append(_np(outputs).astype(np.float32))
            self._targets.append(_np(targets).astype(np.uint8))
        else:
            pred = outputs.argmax(1) if hasattr(outputs, "argmax") else _np(outputs).argmax(1)
            p, t = _np(pred).reshape(-1), _np(targets).reshape(-1)
            self._correct += int((p == t).sum())
            self._count += len(t)

    def compute(self) -> float:
        """The metric over everything since the last reset (nan when nothing was seen)."""
        if self.task == "segmentation":
            return (
                float(np.nanmean(iou_per_class(self._conf))) if self._conf.any() else float("nan")
            )
        if self.task == "multilabel":
            if not self._scores:
                return float("nan")
            return mean_average_precision(
                np.concatenate(self._scores), np.concatenate(self._targets)
            )
        return self._correct / self._count if self._count else float("nan")


def metric_name(task: str) -> str:
    """The metric a task is scored with: 'accuracy', 'map' or 'miou'."""
    return TaskMetric.NAMES[task]
