"""Superpixel metrics (Stutz et al.) on a 1024^2 CT montage with about 500 labels.

Run:  python -m pytest benchmarks/test_bench_superpixel_metrics.py --benchmark-only

The labels are a grid of 47 px squares (22 x 22 blocks), the ground truth is the phantom's
lung / lesion labels; each metric is timed on its own.
"""
from __future__ import annotations

import numpy as np
import pytest

from umsynth.metrics import superpixel as sp
from umsynth.samples import chest_montage


@pytest.fixture(scope="module")
def montage():
    img, gt = chest_montage(seed=0)
    labels = (np.arange(1024)[:, None] // 47) * 32 + np.arange(1024)[None, :] // 47
    return {"image": img, "gt": gt, "labels": labels}


CALLS = {
    "boundary_recall": lambda m: sp.boundary_recall(m["labels"], m["gt"]),
    "undersegmentation_error": lambda m: sp.undersegmentation_error(m["labels"], m["gt"]),
    "achievable_segmentation_accuracy": lambda m: sp.achievable_segmentation_accuracy(m["labels"], m["gt"]),
    "explained_variation": lambda m: sp.explained_variation(m["labels"], m["image"]),
    "compactness": lambda m: sp.compactness(m["labels"]),
}


@pytest.mark.parametrize("metric", list(CALLS))
def test_superpixel_metric(benchmark, montage, metric):
    benchmark.group = "superpixel metrics 1024^2"
    benchmark(CALLS[metric], montage)
