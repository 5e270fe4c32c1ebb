"""KID against a direct pairwise computation and its defining property (unbiasedness)."""
import numpy as np
import pytest

from umsynth.metrics.kid import kid, kid_scale, mmd2_unbiased, polynomial_kernel


def _k(a, b):
    return (float(np.dot(a, b)) / a.size + 1.0) ** 3


def _mmd2_loops(x, y):
    n, m = len(x), len(y)
    kxx = sum(_k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kyy = sum(_k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kxy = sum(_k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return kxx + kyy - 2 * kxy


def test_mmd2_equals_pairwise_loops():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(9, 5)), rng.normal(0.3, 1.2, size=(13, 5))
    assert mmd2_unbiased(x, y) == pytest.approx(_mmd2_loops(x, y), rel=1e-12)
    assert polynomial_kernel(x, y)[2, 3] == pytest.approx(_k(x[2], y[3]), rel=1e-14)


def test_kid_subsets_average_the_loops():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(20, 4)), rng.normal(size=(15, 4))
    mean, std = kid(x, y, subsets=7, subset_size=6, seed=3)
    draw = np.random.default_rng(3)
    vals = [_mmd2_loops(x[draw.choice(20, 6, replace=False)], y[draw.choice(15, 6, replace=False)])
            for _ in range(7)]
    assert mean == pytest.approx(np.mean(vals), rel=1e-12)
    assert std == pytest.approx(np.std(vals), rel=1e-9)


def test_kid_is_unbiased_where_the_v_statistic_is_not():
    # same distribution: the mean over draws is 0 within its standard error; the biased
    # estimate (diagonal kept) sits far above 0 at this small n
    rng = np.random.default_rng(2)
    u, v = [], []
    for _ in range(300):
        x, y = rng.normal(size=(8, 6)), rng.normal(size=(8, 6))
        u.append(mmd2_unbiased(x, y))
        v.append(polynomial_kernel(x, x).mean() + polynomial_kernel(y, y).mean() - 2 * polynomial_kernel(x, y).mean())
    u, v = np.array(u), np.array(v)
    assert abs(u.mean()) < 3 * u.std() / np.sqrt(u.size)
    assert v.mean() > 10 * v.std() / np.sqrt(v.size)


def test_kid_scale_is_half_the_mean_pairwise_feature_distance():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(10, 3))
    k = polynomial_kernel(x, x)
    pairs = [k[i, i] + k[j, j] - 2 * k[i, j] for i in range(10) for j in range(10) if i != j]
    assert kid_scale(x) == pytest.approx(0.5 * np.mean(pairs), rel=1e-12)


@pytest.mark.parametrize("bad, match", [(np.zeros((1, 3)), "at least 2"), (np.zeros(3), "2-D"),
                                        (np.full((3, 3), np.nan), "NaN")])
def test_kid_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        mmd2_unbiased(bad, np.zeros((4, 3)))


def test_normalized_kid_of_a_resample_leaves_out_pairs_of_one_image():
    # what MM-FID's KID cells and their bootstrap use: the loops over pairs of different images
    from umsynth.metrics.kid import normalized_kid

    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(9, 4)), rng.normal(0.2, 1.0, size=(7, 4))
    ix, iy = np.array([0, 0, 1, 2, 3, 3, 3, 5, 8]), np.array([1, 1, 2, 4, 5, 6, 6])
    xr, yr = x[ix], y[iy]

    def distinct_mean(a, b, ia, ib):
        vals = [_k(a[i], b[j]) for i in range(len(a)) for j in range(len(b)) if ia is None or ia[i] != ib[j]]
        return np.mean(vals)

    mmd2 = distinct_mean(xr, xr, ix, ix) + distinct_mean(yr, yr, iy, iy) - 2 * distinct_mean(xr, yr, None, None)
    spread = 0.5 * np.mean([_k(xr[i], xr[i]) + _k(xr[j], xr[j]) - 2 * _k(xr[i], xr[j])
                            for i in range(9) for j in range(9) if ix[i] != ix[j]])
    assert normalized_kid(xr, yr, ix, iy) == pytest.approx(mmd2 / spread, rel=1e-12)
    assert normalized_kid(x, y) == pytest.approx(_mmd2_loops(x, y) / kid_scale(x), rel=1e-12)
