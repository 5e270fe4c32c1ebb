"""umsynth.FeatureStats: streaming, exact merging, files, and the distance from statistics."""
from __future__ import annotations

import numpy as np
import pytest

from umsynth import FeatureStats, frechet_distance, frechet_distance_features, frechet_distance_from_stats


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def shards(x: np.ndarray, seed: int) -> list[np.ndarray]:
    """Split rows at random places into shards of uneven size (some of one row)."""
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(1, len(x)), size=12, replace=False))
    cuts = np.concatenate([cuts, [cuts[-1] + 1]])
    return np.split(x, cuts)


@pytest.mark.parametrize("offset", [0.0, 1e6])
def test_merged_shards_equal_one_pass(offset):
    rng = np.random.default_rng(1)
    noise = rng.standard_normal((2000, 24)) * rng.uniform(0.1, 2.0, size=24)
    x = offset + noise
    # x - offset is exact in float64 here, so the reference sees the noise without cancellation
    ref_mean, ref_cov = (x - offset).mean(axis=0), np.cov(x - offset, rowvar=False)

    one = FeatureStats(24).update(x)
    streamed = FeatureStats(24)
    for part in shards(x, seed=2):
        streamed.update(part)
    # merge tree: pairs of shard statistics, then pairs of those, as from many processes
    level = [FeatureStats(24).update(p) for p in shards(x, seed=3)]
    while len(level) > 1:
        level = [level[i].merge(level[i + 1]) if i + 1 < len(level) else level[i] for i in range(0, len(level), 2)]
    merged = level[0]

    for s in (one, streamed, merged):
        assert s.n == 2000
        assert np.abs(s.mean - offset - ref_mean).max() <= 1e-9  # a few ulps of 1e6
        assert rel_err(s.cov, ref_cov) <= 1e-10
    assert rel_err(merged.cov, one.cov) <= 1e-10
    assert rel_err(streamed.cov, one.cov) <= 1e-10

    if offset:
        # the same data through raw sums of squares loses everything: the test can tell
        naive = (x.T @ x - 2000 * np.outer(x.mean(0), x.mean(0))) / 1999
        assert rel_err(naive, ref_cov) > 1e-5


def test_dtypes_single_rows_and_torch(relu_features):
    x = relu_features(50, 16, seed=4).astype(np.float32)
    want = FeatureStats(16).update(x.astype(np.float64))
    rows = FeatureStats(16)
    for r in x:
        rows.update(r)  # a 1-D array is one sample
    assert rel_err(rows.cov, want.cov) <= 1e-12
    assert np.allclose(rows.mean, want.mean, rtol=1e-14)
    torch = pytest.importorskip("torch")
    t = FeatureStats(16).update(torch.from_numpy(x[:20])).update(torch.from_numpy(x[20:]).to(torch.bfloat16).float())
    assert t.n == 50
    assert FeatureStats(16).update(torch.from_numpy(x)).cov == pytest.approx(want.cov, rel=1e-12)


def test_update_validation():
    s = FeatureStats(4)
    with pytest.raises(ValueError, match=r"shape \(batch, 4\)"):
        s.update(np.ones((3, 5)))
    with pytest.raises(ValueError, match=r"shape \(batch, 4\)"):
        s.update(np.ones((2, 3, 4)))
    bad = np.ones((3, 4))
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        s.update(bad)
    with pytest.raises(ValueError, match="Inf"):
        s.update(np.full((2, 4), np.inf))
    assert s.n == 0  # nothing half-added
    s.update(np.ones(4))
    with pytest.raises(ValueError, match="at least 2 samples"):
        s.cov
    with pytest.raises(ValueError, match="dimension"):
        s.merge(FeatureStats(5))
    with pytest.raises(ValueError, match="dim must be"):
        FeatureStats(0)


def test_keep_features_and_merge(relu_features):
    x = relu_features(30, 8, seed=5)
    a = FeatureStats(8, keep_features=True).update(x[:10])
    b = FeatureStats(8, keep_features=True).update(x[10:])
    assert np.array_equal(a.merge(b).features, x)
    c = FeatureStats(8).update(x)
    assert not FeatureStats(8, keep_features=True).update(x).merge(c).keep_features
    with pytest.raises(ValueError, match="keep_features"):
        c.features


def test_save_load_round_trip(relu_features, tmp_path):
    x = relu_features(400, 32, seed=6)
    parts = [FeatureStats(32, extractor="net").update(p) for p in np.array_split(x, 3)]
    paths = []
    for i, p in enumerate(parts):
        paths.append(tmp_path / f"shard{i}.npz")
        p.save(paths[-1])
    loaded = [FeatureStats.load(p) for p in paths]
    assert [s.n for s in loaded] == [s.n for s in parts]
    assert loaded[0].extractor == "net"
    merged = loaded[0].merge(loaded[1]).merge(loaded[2])
    one = FeatureStats(32).update(x)
    assert merged.n == 400
    assert rel_err(merged.cov, one.cov) <= 1e-10
    assert np.array_equal(loaded[2].mean, parts[2].mean)

    kept = FeatureStats(32, keep_features=True).update(x[:20])
    kept.save(tmp_path / "kept.npz")
    back = FeatureStats.load(tmp_path / "kept.npz")
    assert back.keep_features and np.array_equal(back.features, x[:20])
    assert list(tmp_path.glob(".tmp-*")) == []  # the atomic write left nothing behind


def test_pytorch_fid_format_both_ways(relu_features, tmp_path):
    x = relu_features(300, 16, seed=7)
    mu, sigma = x.mean(axis=0), np.cov(x, rowvar=False)
    theirs = tmp_path / "theirs.npz"
    np.savez_compressed(theirs, mu=mu, sigma=sigma)  # what pytorch-fid --save-stats writes
    for s in (FeatureStats.from_pytorch_fid(theirs), FeatureStats.load(theirs)):
        assert s.n is None and s.dim == 16
        assert np.array_equal(s.mean, mu) and np.allclose(s.cov, sigma, rtol=1e-15, atol=0)
        with pytest.raises(ValueError, match="no sample count"):
            s.merge(FeatureStats(16).update(x))
        with pytest.raises(ValueError, match="no sample count"):
            FeatureStats(16).update(x).merge(s)
        with pytest.raises(ValueError, match="no sample count"):
            s.update(x)
    ours = tmp_path / "ours.npz"
    FeatureStats(16).update(x).save(ours)
    with np.load(ours) as f:  # how pytorch-fid reads a stats file
        m, s = f["mu"][:], f["sigma"][:]
    assert np.allclose(m, mu, rtol=1e-13) and rel_err(s, sigma) <= 1e-12
    # a pytorch-fid file compares with ours
    d = frechet_distance_from_stats(FeatureStats.load(theirs), FeatureStats.load(ours))
    assert 0.0 <= d <= 1e-10


def test_bad_files(tmp_path):
    np.savez(tmp_path / "other.npz", a=np.ones(3))
    with pytest.raises(ValueError, match="missing mu, sigma"):
        FeatureStats.load(tmp_path / "other.npz")
    np.savez(tmp_path / "shape.npz", mu=np.ones(3), sigma=np.ones((3, 4)))
    with pytest.raises(ValueError, match="expected"):
        FeatureStats.from_pytorch_fid(tmp_path / "shape.npz")
    np.savez(tmp_path / "nan.npz", mu=np.array([np.nan, 0.0]), sigma=np.eye(2))
    with pytest.raises(ValueError, match="NaN"):
        FeatureStats.load(tmp_path / "nan.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="cannot read statistics file"):
        FeatureStats.load(tmp_path / "junk.npz")
    s = FeatureStats(2).update(np.eye(2) * 3)
    s.save(tmp_path / "ok.npz")
    with np.load(tmp_path / "ok.npz") as f:
        arrays = dict(f)
    arrays["version"] = np.array(99)
    np.savez(tmp_path / "newer.npz", **arrays)
    with pytest.raises(ValueError, match="newer"):
        FeatureStats.load(tmp_path / "newer.npz")


@pytest.mark.parametrize("n1,n2,keep", [(40, 60, True), (40, 60, False), (500, 700, False), (40, 700, True)])
def test_distance_from_stats_matches_features(reference_fd, relu_features, n1, n2, keep):
    d = 96
    x1, x2 = relu_features(n1, d, seed=8), relu_features(n2, d, seed=9)
    a = FeatureStats(d, keep_features=keep).update(x1[: n1 // 2]).update(x1[n1 // 2:])
    b = FeatureStats(d, keep_features=keep).update(x2)
    want = reference_fd(x1, x2)
    assert frechet_distance_from_stats(a, b) == pytest.approx(want, rel=1e-6)
    assert frechet_distance_features(x1, x2) == pytest.approx(want, rel=1e-9)
    assert frechet_distance(a.mean, a.cov, b.mean, b.cov) == pytest.approx(want, rel=1e-6)
    if keep:  # kept features give the exact small-Gram route
        assert frechet_distance_from_stats(a, b) == pytest.approx(want, rel=1e-9)


def test_distance_from_stats_refuses_mismatches():
    a = FeatureStats(4, extractor="one").update(np.random.default_rng(0).standard_normal((5, 4)))
    with pytest.raises(ValueError, match="different feature dimensions: 4 and 6"):
        frechet_distance_from_stats(a, FeatureStats(6).update(np.ones((3, 6))))
    b = FeatureStats(4, extractor="two").update(np.random.default_rng(1).standard_normal((5, 4)))
    with pytest.raises(ValueError, match="different feature extractors"):
        frechet_distance_from_stats(a, b)
    with pytest.raises(ValueError, match="at least 2 samples"):
        frechet_distance_from_stats(a, FeatureStats(4).update(np.ones(4)))
    with pytest.raises(TypeError):
        frechet_distance_from_stats(a, np.ones(4))


# ----------------------------------------------------------------- hardening


@pytest.mark.parametrize("dim,exc", [(2.7, TypeError), (True, TypeError), ("4", TypeError),
                                     (0, ValueError)])
def test_dim_must_be_a_positive_integer(dim, exc):
    with pytest.raises(exc, match="dim"):
        FeatureStats(dim)


def test_overflowing_update_is_refused_and_leaves_the_state(tmp_path):
    rng = np.random.default_rng(0)
    s = FeatureStats(4).update(rng.standard_normal((5, 4)))
    before = s.cov.copy()
    with pytest.raises(ValueError, match="overflows float64"):
        s.update(rng.standard_normal((6, 4)) * 1e200)
    assert s.n == 5 and np.array_equal(s.cov, before)
    s.save(tmp_path / "s.npz")  # still writable and readable
    assert np.array_equal(FeatureStats.load(tmp_path / "s.npz").cov, before)


def test_saved_dim_is_checked_on_load(tmp_path):
    s = FeatureStats(3).update(np.random.default_rng(0).standard_normal((4, 3)))
    s.save(tmp_path / "s.npz")
    data = dict(np.load(tmp_path / "s.npz"))
    data["dim"] = np.array(5)
    np.savez(tmp_path / "bad.npz", **data)
    with pytest.raises(ValueError, match="dim=5"):
        FeatureStats.load(tmp_path / "bad.npz")


def test_big_endian_features_give_native_results():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20, 5))
    a = FeatureStats(5).update(x)
    b = FeatureStats(5).update(x.astype(">f8"))
    assert np.array_equal(a.cov, b.cov) and np.array_equal(a.mean, b.mean)
