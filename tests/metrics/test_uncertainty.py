"""Image-level intervals and set comparisons: calibrated under the null, sensitive to a real change."""
import numpy as np
import pytest

from umsynth.metrics.uncertainty import CellFeatures, compare, interval

D, CELLS = 16, [("a", 32), ("b", 32)]


def _sample(rng, n, shift=0.0):
    base = rng.normal(size=(n, D)) + shift
    # two correlated "networks": the second sees a fixed mixing of the first
    mix = np.linspace(0.5, 1.5, D)
    return {CELLS[0]: base, CELLS[1]: np.tanh(base * mix)}


def test_two_perfect_sets_are_rarely_significant():
    rng = np.random.default_rng(0)
    small = 0
    for rep in range(20):
        f = CellFeatures(CELLS, _sample(rng, 24), {"A": _sample(rng, 24), "B": _sample(rng, 24)})
        got = compare(f, "A", "B", resamples=20, permutations=60, seed=rep, splits=4)
        assert got["unit"] == "images" and set(got) >= {"difference", "interval", "p_value", "unit"}
        small += got["p_value"] < 0.05
    assert small <= 2


def test_noise_is_detected_paired_by_source():
    rng = np.random.default_rng(1)
    real, perfect = _sample(rng, 24), _sample(rng, 24)
    noisy = {c: v + rng.normal(scale=0.8, size=v.shape) for c, v in perfect.items()}
    ids = np.arange(24)
    f = CellFeatures(CELLS, real, {"perfect": perfect, "noisy": noisy}, {"perfect": ids, "noisy": ids})
    got = compare(f, "perfect", "noisy", resamples=40, permutations=60, seed=0, splits=4)
    assert got["unit"] == "source cases (paired)"
    assert got["p_value"] < 0.05 and got["difference"] < 0
    assert got["interval"][1] < 0
    for metric in ("mm_std", "kid"):
        other = compare(f, "perfect", "noisy", metric=metric, resamples=20, permutations=40, seed=0, splits=4)
        assert other["p_value"] < 0.05, metric


def test_interval_of_a_perfect_set_contains_one():
    rng = np.random.default_rng(2)
    hits = 0
    for rep in range(10):
        f = CellFeatures(CELLS, _sample(rng, 30), {"syn": _sample(rng, 30)})
        lo, hi = interval(f, "syn", resamples=40, seed=rep)["interval"]
        assert lo <= hi
        hits += lo <= 1.0 <= hi
    assert hits >= 8


def test_bad_arguments():
    rng = np.random.default_rng(3)
    f = CellFeatures(CELLS, _sample(rng, 10), {"A": _sample(rng, 10), "B": _sample(rng, 10)},
                     {"A": np.arange(10), "B": np.arange(1, 11)})
    with pytest.raises(ValueError, match="metric"):
        interval(f, "A", metric="fid")
    with pytest.raises(ValueError, match="no set named"):
        interval(f, "C")
    with pytest.raises(ValueError, match="different source cases"):
        compare(f, "A", "B")
    with pytest.raises(ValueError, match="confidence"):
        interval(f, "A", confidence=1.5)
