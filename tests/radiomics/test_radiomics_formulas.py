"""The C++ feature formulas: first order against numpy, and the dense entry points (what
the GPU path feeds from the device's matrices) against the CPU path on the same images.

The dense matrices here are built from the numpy references of umsynth.kernels.
radiomics_reference (scipy labelling for the zones), independently of the C++ counting.
"""
from __future__ import annotations

import numpy as np
import pytest

from umsynth.kernels import radiomics as K
from umsynth.kernels import radiomics_reference as R

from test_radiomics_matrices import random_batch


def _bins(img: np.ndarray, width: float, mask: np.ndarray | None = None) -> np.ndarray:
    m = np.ones(img.shape, np.uint8) if mask is None else mask.astype(np.uint8)
    mn = np.array([im[k > 0].min() for im, k in zip(img, m)])
    low = mn - np.mod(mn, width)
    return K.discretize(img, m, low, (low + width) - low)


@pytest.mark.parametrize("width", [1000.0, 25.0, 0.5])
def test_firstorder_percentiles_and_moments_match_numpy(width):
    # coarse bins put many values (and ties) in one bin; few-pixel ROIs hit the edge ranks
    rng = np.random.default_rng(4)
    img = np.round(rng.normal(0, 60, (6, 11, 13)), 1)
    mask = rng.random(img.shape) < 0.6
    mask[1] = False
    mask[1, 3, 4] = True  # one pixel
    mask[2] = False
    mask[2, 0, :2] = True  # two pixels
    q = _bins(img, width, mask)
    got, names = K.firstorder(img, q, 7.0, 2.0)
    col = {n: k for k, n in enumerate(names)}
    for n in range(len(img)):
        x = img[n][mask[n]]
        p = np.percentile(x, [10, 25, 50, 75, 90])
        inside = x[(x >= p[0]) & (x <= p[4])]  # empty for two pixels: NaN, as pyradiomics
        d = x - x.mean()
        var = (d ** 2).mean()
        want = {"10Percentile": p[0], "90Percentile": p[4], "Median": p[2], "InterquartileRange": p[3] - p[1],
                "Minimum": x.min(), "Maximum": x.max(), "Range": np.ptp(x), "Mean": x.mean(), "Variance": var,
                "MeanAbsoluteDeviation": np.abs(d).mean(),
                "RobustMeanAbsoluteDeviation": np.abs(inside - inside.mean()).mean() if inside.size else np.nan,
                "Energy": ((x + 7) ** 2).sum(), "TotalEnergy": ((x + 7) ** 2).sum() * 2.0,
                "RootMeanSquared": np.sqrt(((x + 7) ** 2).mean()),
                "Skewness": (d ** 3).mean() / var ** 1.5 if var else 0.0,
                "Kurtosis": (d ** 4).mean() / var ** 2 if var else 0.0}
        _, counts = np.unique(q[n][mask[n]], return_counts=True)
        pr = counts / counts.sum()
        want["Entropy"] = -(pr * np.log2(pr + np.spacing(1))).sum()
        want["Uniformity"] = (pr ** 2).sum()
        for name, value in want.items():
            assert got[n, col[name]] == pytest.approx(value, rel=1e-12, abs=1e-9, nan_ok=True), (n, name)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_glcm_dense_counts_give_the_cpu_features(seed):
    rng = np.random.default_rng(seed)
    q = random_batch(rng, n=4, levels=3 + 5 * seed, fill=0.5 + 0.2 * seed)
    q[3] = 0
    q[3, 2, 3:6] = [1, 2, 2]  # only the row angle holds pairs
    ref = R.glcm(q)
    G = int(q.max())
    counts = np.zeros((len(q), 4, G, G), np.uint64)
    counts.reshape(-1, G, G)[ref.seg, ref.a - 1, ref.b - 1] = ref.v
    ng = q.reshape(len(q), -1).max(axis=1)
    want, _ = K.glcm_features(q)
    np.testing.assert_allclose(K.glcm_features_dense(counts, ng)[0], want, rtol=1e-12, atol=1e-14)


def test_ngtdm_dense_sums_give_the_cpu_features():
    rng = np.random.default_rng(7)
    q = random_batch(rng, n=4, levels=9, fill=0.8)
    ref = R.ngtdm(q)
    G = int(q.max())
    count = np.zeros((len(q), G), np.uint64)
    diff = np.zeros((len(q), G), np.uint64)
    count[ref.seg, ref.a - 1] = ref.b
    diff[ref.seg, ref.a - 1] = np.round(ref.v * 840)  # the kernels' integer units
    want, _ = K.ngtdm_features(q)
    np.testing.assert_allclose(K.ngtdm_features_dense(count, diff)[0], want, rtol=1e-12)


def test_zone_sizes_at_the_roots_give_the_size_zone_matrix():
    from scipy import ndimage

    rng = np.random.default_rng(8)
    q = random_batch(rng, n=3, h=15, w=12, levels=3, fill=0.8)
    size = np.zeros_like(q)
    for n, img in enumerate(q):
        for g in np.unique(img[img > 0]):
            lab, nz = ndimage.label(img == g, structure=np.ones((3, 3)))
            for z in range(1, nz + 1):
                pix = np.flatnonzero(lab.ravel() == z)
                size[n].ravel()[pix.min()] = pix.size  # the root: the zone's smallest index
    got = K.glszm_from_sizes(q, size)
    want = R.glszm(q)
    for x, y in zip(got, want):
        np.testing.assert_array_equal(x, y)
