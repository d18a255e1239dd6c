"""Metrics on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from fedbench.data import (
    TaskMetric,
    accuracy,
    average_precision,
    confusion_matrix,
    mean_average_precision,
    mean_iou,
    metric_name,
)


def test_accuracy():
    logits = np.array([[2.0, 1.0], [0.0, 3.0], [1.0, 0.5], [0.1, 0.2]])
    assert accuracy(logits, [0, 1, 1, 1]) == 0.75
    assert accuracy(np.array([1, 2, 3]), np.array([1, 0, 3])) == pytest.approx(2 / 3)


def test_confusion_and_miou_ignore():
    target = np.array([[0, 0, 1, 255], [1, 1, 2, 2]])
    pred = np.array([[0, 1, 1, 2], [1, 1, 2, 0]])
    conf = confusion_matrix(pred, target, 3)
    np.testing.assert_array_equal(conf, [[1, 1, 0], [0, 3, 0], [1, 0, 1]])
    # IoU: c0 1/(2+2-1)=1/3, c1 3/(3+4-3)=3/4, c2 1/(2+1-1)=1/2
    assert mean_iou(pred, target, 3) == pytest.approx((1 / 3 + 3 / 4 + 1 / 2) / 3)


def test_miou_skips_absent_classes():
    t = np.array([0, 0, 1])
    assert mean_iou(t, t, 5) == 1.0


def test_average_precision_known():
    # ranking: 0.9(+), 0.8(-), 0.7(+), 0.6(-): AP = 1*1/2 + 2/3*1/2 = 5/6
    assert average_precision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx(5 / 6)
    assert average_precision([0.1, 0.2], [1, 1]) == 1.0
    assert np.isnan(average_precision([0.1, 0.2], [0, 0]))


def test_average_precision_ties_one_threshold():
    # all tied: one threshold at recall 1 with precision 1/2 (sklearn agrees)
    assert average_precision([0.5] * 4, [1, 0, 1, 0]) == pytest.approx(0.5)


def test_map_matches_brute_force():
    rng = np.random.default_rng(0)
    scores = rng.random((50, 4))
    targets = (rng.random((50, 4)) < 0.3).astype(int)

    def ap_bruteforce(s, t):
        # mean of precision at each positive's rank (no ties in random floats)
        order = np.argsort(-s)
        t = t[order]
        hits = np.cumsum(t)
        return np.mean([hits[i] / (i + 1) for i in range(len(t)) if t[i]])

    want = np.mean([ap_bruteforce(scores[:, c], targets[:, c]) for c in range(4)])
    assert mean_average_precision(scores, targets) == pytest.approx(want)


def test_task_metric_streaming_equals_batch():
    import torch

    rng = np.random.default_rng(1)
    logits = rng.normal(size=(20, 3, 5, 5)).astype(np.float32)
    masks = rng.integers(0, 3, (20, 5, 5))
    masks[:, 0, 0] = 255
    m = TaskMetric("segmentation", 3)
    for i in range(0, 20, 6):
        m.update(torch.from_numpy(logits[i : i + 6]), torch.from_numpy(masks[i : i + 6]))
    assert m.compute() == pytest.approx(mean_iou(logits.argmax(1), masks, 3))
    assert m.name == "miou" == metric_name("segmentation")

    cls = TaskMetric("classification", 3)
    cls.update(torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]), torch.tensor([0, 0]))
    assert cls.compute() == 0.5
    ml = TaskMetric("multilabel", 2)
    ml.update(np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([[1, 0], [0, 1]]))
    assert ml.compute() == 1.0 and ml.name == "map"
    ml.reset()
    assert np.isnan(ml.compute())
