"""Shared helpers of the Fréchet and feature-statistics tests, as fixtures."""
from __future__ import annotations

import numpy as np
import pytest


def _relu_features(n: int, d: int, seed: int, decay: float = 1.0, mix_seed: int = 0) -> np.ndarray:
    """ReLU features with a decaying spectrum: relu(z W^T), column k of W scaled by k^-decay.

    The mixing matrix depends only on (d, mix_seed), so two seeds give two samples of one
    distribution: a small distance next to large traces, the case where cancellation bites.
    """
    w = np.random.default_rng(mix_seed).standard_normal((d, d)) * np.arange(1, d + 1) ** -decay
    z = np.random.default_rng(seed).standard_normal((n, d))
    return np.maximum(z @ w.T, 0.0)


def _reference_fd(x1: np.ndarray, x2: np.ndarray) -> float:
    """FD from the singular values of the centred feature cross-product, in float64.

    tr sqrt(S1 S2) is the nuclear norm of F1^T F2 for any factors S = F F^T; the centred
    features over sqrt(n - 1) are exact factors, so nothing here is rounded to a covariance.
    """
    a = x1 - x1.mean(axis=0)
    b = x2 - x2.mean(axis=0)
    n1, n2 = len(x1), len(x2)
    tr_sqrt = np.linalg.svd(a @ b.T, compute_uv=False).sum() / np.sqrt((n1 - 1) * (n2 - 1))
    dmu = x1.mean(axis=0) - x2.mean(axis=0)
    return float(dmu @ dmu + (a * a).sum() / (n1 - 1) + (b * b).sum() / (n2 - 1) - 2 * tr_sqrt)


def _moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return x.mean(axis=0), np.cov(x, rowvar=False)


@pytest.fixture
def relu_features():
    """relu_features(n, d, seed, decay=1.0, mix_seed=0): ReLU features with a decaying spectrum."""
    return _relu_features


@pytest.fixture
def reference_fd():
    """reference_fd(x1, x2): the float64 SVD reference FD of two feature sets."""
    return _reference_fd


@pytest.fixture
def moments():
    """moments(x): the mean and unbiased covariance of feature rows."""
    return _moments
