"""The C++ texture matrices: hand-counted 4 x 4 cases and the numpy reference on random input."""
from __future__ import annotations

import numpy as np
import pytest

from umsynth.kernels import radiomics as K
from umsynth.kernels import radiomics_reference as R

# Gray levels 1..3 inside the region of interest, 0 outside it.
Q = np.array([[[1, 1, 2, 0],
               [1, 2, 2, 0],
               [3, 3, 3, 0],
               [0, 0, 0, 0]]], dtype=np.int32)


def as_dict(coo: K.Coo) -> dict:
    return {(int(s), int(a), int(b)): float(v) for s, a, b, v in zip(*coo)}


def test_glcm_hand_counted():
    # symmetric counts of (level, level) pairs per angle, counted by hand
    want = {
        0: {(1, 1): 2, (1, 2): 2, (2, 1): 2, (2, 2): 2, (3, 3): 4},  # (0, 1): right
        1: {(1, 2): 2, (2, 1): 2, (1, 3): 1, (3, 1): 1, (2, 3): 1, (3, 2): 1},  # (1, 1)
        2: {(1, 1): 2, (1, 2): 1, (2, 1): 1, (2, 2): 2, (1, 3): 1, (3, 1): 1, (2, 3): 2, (3, 2): 2},
        3: {(1, 1): 2, (2, 2): 2, (2, 3): 2, (3, 2): 2},  # (1, -1)
    }
    flat = {(a, i, j): v for a, d in want.items() for (i, j), v in d.items()}
    assert as_dict(K.glcm(Q)) == flat


def test_glrlm_hand_counted():
    want = {
        0: {(1, 2): 1, (2, 1): 1, (1, 1): 1, (2, 2): 1, (3, 3): 1},  # rows
        1: {(1, 1): 3, (2, 1): 3, (3, 1): 3},  # diagonals: every run has length 1
        2: {(1, 2): 1, (1, 1): 1, (2, 1): 1, (2, 2): 1, (3, 1): 3},  # columns
        3: {(1, 1): 1, (1, 2): 1, (2, 2): 1, (2, 1): 1, (3, 1): 3},  # anti-diagonals
    }
    assert as_dict(K.glrlm(Q)) == {(a, g, r): v for a, d in want.items() for (g, r), v in d.items()}


def test_glszm_hand_counted_and_eight_connected():
    assert as_dict(K.glszm(Q)) == {(0, 1, 3): 1, (0, 2, 3): 1, (0, 3, 3): 1}
    # two pixels touching at a corner are one zone (4-connectivity would give two)
    diag = np.array([[[1, 0], [0, 1]]], dtype=np.int32)
    assert as_dict(K.glszm(diag)) == {(0, 1, 2): 1}


def test_gldm_hand_counted():
    # (level, dependent neighbours + 1): six pixels with 2 equal neighbours, (2,0) and (2,2) with 1
    assert as_dict(K.gldm(Q)) == {(0, 1, 3): 3, (0, 2, 3): 3, (0, 3, 2): 2, (0, 3, 3): 1}
    # alpha 1: every level-1/level-2 neighbour now counts
    got = as_dict(K.gldm(Q, alpha=1))
    assert got[(0, 2, 9)] == 1  # the centre (1, 1) depends on all eight neighbours


def test_ngtdm_hand_counted():
    got = K.ngtdm(Q)
    assert got.a.tolist() == [1, 2, 3] and got.b.tolist() == [3, 3, 3]
    # sums of |level - mean of ROI neighbours|, by hand: 1/3 + 3/5 + 1, 1/3 + 0 + 1/5, 1 + 4/5 + 2/3
    np.testing.assert_allclose(got.v, [29 / 15, 8 / 15, 37 / 15], rtol=1e-15)


def test_thin_mask_drops_the_across_angle():
    # one row of ROI pixels: every line across it holds a single pixel, so pyradiomics
    # drops those three angles and keeps the row direction only
    q = np.zeros((1, 3, 5), np.int32)
    q[0, 1] = [1, 1, 2, 2, 2]
    got = as_dict(K.glrlm(q))
    assert got == {(0, 1, 2): 1, (0, 2, 3): 1}


def random_batch(rng, n=3, h=13, w=17, levels=6, fill=0.7):
    q = rng.integers(1, levels + 1, (n, h, w)).astype(np.int32)
    q[rng.random(q.shape) > fill] = 0
    return q


@pytest.mark.parametrize("kind", ["glcm", "glrlm", "glszm", "gldm", "ngtdm"])
@pytest.mark.parametrize("seed", [0, 1])
def test_cpp_matches_numpy_reference(kind, seed):
    rng = np.random.default_rng(seed)
    q = random_batch(rng, levels=2 + 4 * seed, fill=0.6 + 0.3 * seed)
    got, want = getattr(K, kind)(q, threads=2), getattr(R, kind)(q)
    for x, y in zip(got[:3], want[:3]):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_allclose(got.v, want.v, rtol=1e-13)


def test_gldm_alpha_matches_reference():
    q = random_batch(np.random.default_rng(5), levels=9)
    got, want = K.gldm(q, alpha=2), R.gldm(q, alpha=2)
    assert as_dict(got) == as_dict(want)


def test_many_gray_levels_take_the_sorted_path():
    # more gray levels than the dense counter holds: the sort path must give the same counts
    rng = np.random.default_rng(3)
    q = rng.integers(1, 5000, (1, 40, 60)).astype(np.int32)
    for kind in ("glcm", "glrlm"):
        assert as_dict(getattr(K, kind)(q)) == as_dict(getattr(R, kind)(q))


def test_discretize_matches_numpy_digitize():
    rng = np.random.default_rng(2)
    # values on and next to bin edges, negative and fractional bin widths
    for width in (25.0, 5.0, 0.1, 3.7):
        img = np.round(rng.normal(-40, 80, (3, 9, 11)) / width) * width
        img[:, 0, :3] += [-1e-9, 0.0, 1e-9]
        mask = (rng.random(img.shape) < 0.8).astype(np.uint8)
        mn = np.array([im[m > 0].min() for im, m in zip(img, mask)])
        low = mn - np.mod(mn, width)
        got = K.discretize(img, mask, low, (low + width) - low)
        np.testing.assert_array_equal(got, R.discretize(img, mask, width))
