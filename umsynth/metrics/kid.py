"""Kernel inception distance: the unbiased MMD² between two feature sets (Bińkowski et al., ICLR 2018).

With the cubic polynomial kernel k(x, y) = (x·y / d + 1)³ on d-dimensional features,

    MMD²_u = mean_{i≠j} k(x_i, x_j) + mean_{i≠j} k(y_i, y_j) - 2 mean_{i,j} k(x_i, y_j)

is an unbiased estimate of the squared maximum mean discrepancy: two samples of one
distribution score 0 on average at any sample size (FD has a bias of order 1/n instead).
KID averages it over random subsets of both sets, as the paper and torchmetrics do.

For tables across extractors, :func:`kid_scale` gives a dimensionless unit: the spread of
the real features in the kernel's feature space, E‖φ(x) - Eφ‖² = E k(x, x) - E k(x, x').
"""
from __future__ import annotations

import numpy as np

__all__ = ["polynomial_kernel", "mmd2_unbiased", "kid", "kid_scale", "normalized_kid", "DEFAULT_SUBSETS",
           "DEFAULT_SUBSET_SIZE"]

DEFAULT_SUBSETS = 100
DEFAULT_SUBSET_SIZE = 1000


def _features(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (samples, features) array, got shape {a.shape}")
    if a.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 samples for the unbiased MMD, got {a.shape[0]}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return a


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Gram matrix of the cubic polynomial kernel (x·y / d + 1)³, float64."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def _pair_mean(k: np.ndarray, ids=None) -> float:
    """Mean of ``k`` over ordered pairs of different images.

    ``ids`` gives the image of each row when a bootstrap resample repeats images: pairs of
    one image with itself are then left out, as the diagonal is for a plain sample.
    """
    if ids is None:
        n = k.shape[0]
        return float((k.sum() - np.trace(k)) / (n * (n - 1)))
    ids = np.asarray(ids)
    keep = ids[:, None] != ids[None, :]
    return float(k[keep].sum() / max(int(keep.sum()), 1))


def _spread(kxx: np.ndarray, ids=None) -> float:
    """Half the mean squared kernel distance between different images (see :func:`kid_scale`)."""
    diag = np.diag(kxx)
    return 0.5 * _pair_mean(diag[:, None] + diag[None, :] - 2.0 * kxx, ids)


def _mmd2(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray, x_ids=None, y_ids=None) -> float:
    return _pair_mean(kxx, x_ids) + _pair_mean(kyy, y_ids) - 2.0 * float(kxy.mean())


def _pair(x, y) -> tuple[np.ndarray, np.ndarray]:
    a, b = _features(x, "x"), _features(y, "y")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"x and y have different feature dimensions: {a.shape[1]} and {b.shape[1]}")
    return a, b


def mmd2_unbiased(x, y, x_ids=None, y_ids=None) -> float:
    """Unbiased MMD² of two feature sets with the cubic polynomial kernel (all pairs, O(n²)).

    Parameters
    ----------
    x : array_like, shape (n, d)
    y : array_like, shape (m, d)
    x_ids, y_ids : array_like, optional
        The image of each row, for bootstrap resamples that repeat images (pairs of one
        image with itself are left out).

    Returns
    -------
    float
        Can be slightly negative: the estimate is unbiased, not clipped.
    """
    a, b = _pair(x, y)
    return _mmd2(polynomial_kernel(a, a), polynomial_kernel(b, b), polynomial_kernel(a, b), x_ids, y_ids)


def kid(x, y, *, subsets: int = DEFAULT_SUBSETS, subset_size: int = DEFAULT_SUBSET_SIZE,
        seed: int = 0) -> tuple[float, float]:
    """KID: the unbiased MMD² averaged over random subsets of both sets.

    Parameters
    ----------
    x, y : array_like, shape (n, d) and (m, d)
    subsets : int, optional
        Number of subset pairs (100, as in the paper and torchmetrics).
    subset_size : int, optional
        Samples per subset, capped at the smaller set's size. When both sets fit in one
        subset, the whole sets are used once (every subset would be the same).
    seed : int, optional

    Returns
    -------
    (float, float)
        Mean and standard deviation (ddof 0) over the subsets.
    """
    a, b = _pair(x, y)
    if int(subsets) < 1 or int(subset_size) < 2:
        raise ValueError(f"subsets must be >= 1 and subset_size >= 2, got {subsets} and {subset_size}")
    m = min(int(subset_size), a.shape[0], b.shape[0])
    if m == a.shape[0] == b.shape[0]:
        return mmd2_unbiased(a, b), 0.0
    rng = np.random.default_rng(seed)
    vals = np.array([mmd2_unbiased(a[rng.choice(a.shape[0], m, replace=False)],
                                   b[rng.choice(b.shape[0], m, replace=False)]) for _ in range(int(subsets))])
    return float(vals.mean()), float(vals.std())


def kid_scale(x, ids=None) -> float:
    """E‖φ(x) - Eφ‖² of one feature set under the cubic kernel: mean k(x, x) - mean_{i≠j} k(x_i, x_j).

    The spread of the features in the kernel's feature space; KID divided by it is
    dimensionless (0 for identical distributions). Computed as half the mean of
    k(x_i, x_i) + k(x_j, x_j) - 2 k(x_i, x_j) over pairs of different images, which is the
    same for a plain sample and stays >= 0 when a resample repeats images (``ids``).
    """
    a = _features(x, "x")
    return _spread(polynomial_kernel(a, a), ids)


def normalized_kid(real, syn, real_ids=None, syn_ids=None) -> float:
    """MMD² of ``real`` and ``syn`` divided by :func:`kid_scale` of ``real`` (one real Gram matrix for both).

    Raises
    ------
    ValueError
        When the real features do not vary (the scale is 0), or for bad input.
    """
    a, b = _pair(real, syn)
    kaa = polynomial_kernel(a, a)
    scale = _spread(kaa, real_ids)
    if not scale > 0:
        raise ValueError("KID: the real features do not vary in this cell (kernel spread is 0)")
    return _mmd2(kaa, polynomial_kernel(b, b), polynomial_kernel(a, b), real_ids, syn_ids) / scale
