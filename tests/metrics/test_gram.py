"""Batched distances of row samples (umsynth.metrics.gram) against the one-at-a-time functions,
and the shared resampling engine (umsynth.metrics.uncertainty.resample) against the definitions."""
import numpy as np
import pytest

from umsynth.frechet import frechet_distance_features
from umsynth.metrics import gram, uncertainty
from umsynth.metrics.gram import Design
from umsynth.metrics.kid import normalized_kid
from umsynth.metrics.reference import calibrated_cell, split_plan
from umsynth.metrics.uncertainty import RESAMPLE_SPLITS, CellFeatures, geometric_mean, resample


def _pool(rng, d, nr, ns):
    real = rng.normal(size=(nr, d)) @ rng.normal(size=(d, d)) / np.sqrt(d) + 2.0
    syn = rng.normal(0.3, 1.2, size=(ns, d)) + 2.0
    return real, syn


def _random_design(rng, nr, ns, blocks=30):
    """Blocks of random samples with repeated rows: left from the real rows, right from anywhere."""
    design, pairs = Design(nr), []
    for _ in range(blocks):
        a = rng.integers(0, nr, rng.integers(2, nr + 1))
        b = rng.integers(0, nr + ns, rng.integers(2, nr + ns + 1))
        design.frechet(design.sample(a), design.sample(b))
        pairs.append((a, b))
    return design, pairs


@pytest.mark.parametrize("d, nr, ns", [(48, 12, 10), (6, 30, 25), (64, 40, 40)])
def test_frechet_blocks_equal_the_one_at_a_time_distance(d, nr, ns):
    # n <= d, n > d and both; every sample repeats rows
    rng = np.random.default_rng(d)
    real, syn = _pool(rng, d, nr, ns)
    pool = np.concatenate([real, syn])
    design, pairs = _random_design(rng, nr, ns)
    got = design.evaluate([real, syn]).fd
    svd = np.array([frechet_distance_features(pool[a], pool[b], method="svd") for a, b in pairs])
    np.testing.assert_allclose(got, svd, rtol=1e-11)
    # the default route takes eigenvalues where its error estimate allows (<= 1e-5 of FD)
    auto = np.array([frechet_distance_features(pool[a], pool[b]) for a, b in pairs])
    np.testing.assert_allclose(got, auto, rtol=1e-6)


def test_direct_route_gives_the_same_distances(monkeypatch):
    rng = np.random.default_rng(1)
    real, syn = _pool(rng, 16, 20, 20)
    design, _ = _random_design(rng, 20, 20)
    batched = design.evaluate([real, syn]).fd
    monkeypatch.setattr(gram, "GRAM_MIN_ROWS", 2)  # samples hold more distinct rows than d: direct route
    design._compiled = None
    direct = design.evaluate([real, syn]).fd
    np.testing.assert_allclose(batched, direct, rtol=1e-6)


def test_kid_and_std_of_resamples_equal_the_definitions():
    rng = np.random.default_rng(2)
    real, syn = _pool(rng, 8, 15, 12)
    design, want_kid, want_std = Design(15), [], []
    for _ in range(12):
        ir, js = rng.integers(0, 15, 15), rng.integers(0, 12, 12)
        r, s = design.sample(ir), design.sample(15 + js)
        design.kid(r, s)
        design.std(s)
        want_kid.append(normalized_kid(real[ir], syn[js], ir, js))
        want_std.append(syn[js].std(axis=0).mean())
    got = design.evaluate([real, syn])
    np.testing.assert_allclose(got.kid, want_kid, rtol=1e-10)
    np.testing.assert_allclose(got.std, want_std, rtol=1e-12)


def test_one_distinct_row_and_bad_designs():
    rng = np.random.default_rng(3)
    real, syn = _pool(rng, 5, 6, 6)
    design = Design(6)
    design.frechet(design.sample([2, 2, 2]), design.sample([7, 8, 8]))
    got = design.evaluate([real, syn]).fd[0]
    pool = np.concatenate([real, syn])
    assert got == pytest.approx(frechet_distance_features(pool[[2, 2, 2]], pool[[7, 8, 8]], method="svd"), rel=1e-12)
    bad = Design(6)
    bad.frechet(bad.sample([7, 8]), bad.sample([1, 2]))
    with pytest.raises(ValueError, match="left"):
        bad.evaluate([real, syn])
    small = Design(6)
    small.frechet(small.sample([1]), small.sample([7, 8]))
    with pytest.raises(ValueError, match="at least 2 rows"):
        small.evaluate([real, syn])
    with pytest.raises(ValueError, match="NaN"):
        design.evaluate([real, np.full_like(syn, np.nan)])


# --------------------------------------------------------------------------- the engine

D, CELLS = 12, [("a", 32), ("b", 32)]


def _features(seed, n=14, sources=False):
    rng = np.random.default_rng(seed)

    def sample(shift):
        base = rng.normal(size=(n, D)) + shift
        return {CELLS[0]: base, CELLS[1]: np.tanh(base)}

    src = {"A": np.arange(n) // 2, "B": np.arange(n) // 2} if sources else {}
    return CellFeatures(CELLS, sample(0.0), {"A": sample(0.0), "B": sample(0.4)}, src)


def _definition(f, ir, name, rows, splits, seed):
    """The three summaries of one replicate, one distance at a time (the definitions)."""
    real = {c: f.real[c][ir] for c in f.cells}
    syn = {c: f.sets[name][c][rows] for c in f.cells}
    plan = split_plan(len(ir), len(rows), splits, seed, ir)
    pairs = np.array([calibrated_cell(real[c], syn[c], plan, frechet_distance_features) for c in f.cells])
    fd = geometric_mean(pairs[:, 0] / pairs[:, 1])
    std = geometric_mean([syn[c].std(0).mean() / real[c].std(0).mean() for c in f.cells])
    kid = np.mean([normalized_kid(real[c], syn[c], ir, rows) for c in f.cells])
    return {"mm_fid": fd, "mm_std": std, "kid": kid}


@pytest.mark.parametrize("sources", [False, True])
def test_replicates_are_the_definitions_on_the_same_draws(sources):
    f = _features(4, sources=sources)
    got = resample(f, ["A", "B"], [("A", "B")], resamples=6, permutations=5, seed=7, splits=3)
    unit = "cases" if sources else "images"
    real, seeds, rows = uncertainty._draws(f, [("A", unit), ("B", unit)], 6, 7)
    ident = np.arange(f.n_real)
    for r in range(6):
        want = {s: _definition(f, real[r], s, rows[(s, unit)][r], RESAMPLE_SPLITS, seeds[r]) for s in "AB"}
        # a comparison's replicates hold the real images fixed (as its permutations do)
        fixed = {s: _definition(f, ident, s, rows[(s, unit)][r], RESAMPLE_SPLITS, seeds[r]) for s in "AB"}
        for m in uncertainty.METRICS:
            assert got[("interval", "A")]["values"][m][r] == pytest.approx(want["A"][m], rel=1e-7)
            diff = got[("compare", "A", "B")][m]["boots"][r]
            assert diff == pytest.approx(fixed["A"][m] - fixed["B"][m], rel=1e-6, abs=1e-9)
    # paired sets draw the same cases for both sets
    if sources:
        assert all(np.array_equal(f.sources["A"][a], f.sources["B"][b])
                   for a, b in zip(rows[("A", unit)], rows[("B", unit)]))
    # the observed difference and the permutation statistic
    obs = {s: _definition(f, ident, s, np.arange(f.n(s)), 3, 7) for s in "AB"}
    tested = {s: _definition(f, ident, s, np.arange(f.n(s)), RESAMPLE_SPLITS, 7) for s in "AB"}
    for m in uncertainty.METRICS:
        entry = got[("compare", "A", "B")][m]
        assert entry["difference"] == pytest.approx(obs["A"][m] - obs["B"][m], rel=1e-7, abs=1e-9)
        assert entry["tested"] == pytest.approx(tested["A"][m] - tested["B"][m], rel=1e-7, abs=1e-9)


def test_permutations_are_the_definitions():
    f = _features(5)
    got = resample(f, pairs=[("A", "B")], resamples=2, permutations=4, seed=2)
    offsets = {"A": f.n_real, "B": f.n_real + f.n("A")}
    perms = uncertainty._permutations(f, "A", "B", None, 4, 2, offsets)
    pooled = {c: np.concatenate([f.real[c], f.sets["A"][c], f.sets["B"][c]]) for c in f.cells}
    pf = CellFeatures(f.cells, f.real, {"P": pooled})
    ident = np.arange(f.n_real)
    for k, (ra, rb) in enumerate(perms):
        d = _definition(pf, ident, "P", ra, RESAMPLE_SPLITS, 2)["mm_fid"] - \
            _definition(pf, ident, "P", rb, RESAMPLE_SPLITS, 2)["mm_fid"]
        assert got[("compare", "A", "B")]["mm_fid"]["permuted"][k] == pytest.approx(d, rel=1e-7, abs=1e-9)


def test_a_sets_draws_do_not_depend_on_the_other_sets_asked_for():
    f = _features(6)
    alone = resample(f, ["A"], resamples=5, seed=3)[("interval", "A")]["values"]
    joint = resample(f, ["A", "B"], [("A", "B")], resamples=5, permutations=3, seed=3)[("interval", "A")]["values"]
    for m in uncertainty.METRICS:  # the same draws (the pool holds other rows: rounding differs)
        np.testing.assert_allclose(alone[m], joint[m], rtol=1e-12)
    one = uncertainty.interval(f, "A", "kid", resamples=5, seed=3)
    want = uncertainty.interval_result({"unit": "images", "values": joint}, "kid", 0.95)
    assert one["interval"] == pytest.approx(want["interval"], rel=1e-12) and one["unit"] == "images"
