"""The calibrated reference: a perfect synthetic set scores about 1 at every size."""
import numpy as np
import pytest

from umsynth.frechet import frechet_distance_features
from umsynth.metrics.reference import calibrated_cell, reference_status, split_plan
from umsynth.metrics.uncertainty import geometric_mean, summaries

D = 64


def _gaussian(seed=0):
    rng = np.random.default_rng(seed)
    lin = rng.normal(size=(D, D)) / np.sqrt(D)
    lin[:, :8] *= 4.0  # a few strong directions, as network features have
    mu = rng.normal(size=D)
    return lambda n, r: r.normal(size=(n, D)) @ lin.T + mu


@pytest.mark.parametrize("n", [12, 48, 200])
def test_perfect_set_scores_one_and_noise_scores_higher(n):
    draw, rng = _gaussian(), np.random.default_rng(n)
    perfect, noisy, old = [], [], []
    cell = [("gauss", 0)]
    for rep in range(20):
        real, syn = draw(n, rng), draw(n, rng)
        perfect.append(summaries({cell[0]: real}, {cell[0]: syn}, cell, seed=rep, metrics=("mm_fid",))["mm_fid"])
        bad = syn + rng.normal(scale=0.5, size=syn.shape)
        noisy.append(summaries({cell[0]: real}, {cell[0]: bad}, cell, seed=rep, metrics=("mm_fid",))["mm_fid"])
        old.append(frechet_distance_features(real, syn) / frechet_distance_features(real[::2], real[1::2]))
    assert 0.8 <= np.median(perfect) <= 1.25
    assert np.median(noisy) > np.median(perfect)
    # the even/odd-halves reference it replaces is biased low (about 0.5)
    assert np.median(old) < 0.75


def test_plan_sizes_and_disjointness():
    plan = split_plan(13, 30, splits=5, seed=1)
    assert plan.sizes == (6, 7)
    for a, b, chunks in zip(plan.real_a, plan.real_b, plan.chunks):
        assert len(a) == 6 and len(b) == 7 and not set(a) & set(b)
        assert len(chunks) == 30 // 7
        flat = np.concatenate(chunks)
        assert len(set(flat.tolist())) == flat.size and all(len(c) == 7 for c in chunks)
    small = split_plan(40, 3)
    assert small.sizes == (20, 3)


def test_calibrated_cell_is_the_mean_of_its_distances():
    rng = np.random.default_rng(0)
    real, syn = rng.normal(size=(10, 3)), rng.normal(size=(8, 3))
    plan = split_plan(10, 8, splits=3, seed=2)
    num, den = calibrated_cell(real, syn, plan, frechet_distance_features)
    want_den = np.mean([frechet_distance_features(real[a], real[b]) for a, b in zip(plan.real_a, plan.real_b)])
    want_num = np.mean([np.mean([frechet_distance_features(real[a], syn[c]) for c in ch])
                        for a, ch in zip(plan.real_a, plan.chunks)])
    assert (num, den) == pytest.approx((want_num, want_den), rel=1e-12)


def test_geometric_mean_is_not_dominated_by_one_cell():
    cells = np.ones(16)
    cells[3] = 3691.0  # one ratio exploding, as the old reference did
    assert geometric_mean(cells) == pytest.approx(3691.0 ** (1 / 16))
    assert geometric_mean(cells) < 2 < cells.mean()


def test_reference_status_and_limits():
    assert reference_status(12)["status"] == "small" and "12" in reference_status(12)["message"]
    assert reference_status(200)["status"] == "ok"
    with pytest.raises(ValueError, match="at least 4 real"):
        split_plan(3, 10)
    with pytest.raises(ValueError, match="at least 2 images"):
        split_plan(10, 1)
