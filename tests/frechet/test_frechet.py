"""umsynth.frechet_distance and frechet_distance_features against closed forms and a float64 SVD reference."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg

from umsynth import frechet_distance, frechet_distance_features


def sqrtm_route(mu1, sigma1, mu2, sigma2) -> tuple[float, bool]:
    """pytorch-fid's formula (scipy sqrtm of the product, real part); also whether it went complex."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    diff = mu1 - mu2
    fd = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean).real
    return float(fd), bool(np.iscomplexobj(covmean) and np.abs(covmean.imag).max() > 0)


# ----------------------------------------------------------------------------- closed forms


@pytest.mark.parametrize("n", [30, 400])  # rank-deficient and full-rank covariance
def test_identical_inputs_give_zero(moments, relu_features, n):
    mu, sigma = moments(relu_features(n, 96, seed=1))
    fd = frechet_distance(mu, sigma, mu, sigma)
    assert type(fd) is float
    assert 0.0 <= fd <= 1e-12 * np.trace(sigma)


@pytest.mark.parametrize("d,a,b", [(1, 1.0, 2.0), (10, 0.5, 3.0), (300, 2.0, 2.0), (300, 1e-3, 7.0)])
def test_isotropic_gaussians(d, a, b):
    got = frechet_distance(np.zeros(d), a * a * np.eye(d), np.zeros(d), b * b * np.eye(d))
    assert got == pytest.approx(d * (a - b) ** 2, rel=1e-12, abs=1e-12 * d * (a * a + b * b))


def test_diagonal_covariances_with_zero_variances():
    rng = np.random.default_rng(3)
    d = 200
    va, vb = rng.gamma(0.5, size=d), rng.gamma(2.0, size=d)
    va[:20] = 0.0  # dead features on one side only: singular covariance
    vb[10:30] = 0.0
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    want = np.sum((np.sqrt(va) - np.sqrt(vb)) ** 2) + np.sum((mu1 - mu2) ** 2)
    assert frechet_distance(mu1, np.diag(va), mu2, np.diag(vb)) == pytest.approx(want, rel=1e-12)


def test_rotated_commuting_rank_deficient_covariances():
    """S1 = U diag(a) U^T, S2 = U diag(b) U^T with different null spaces: FD = sum (sqrt a - sqrt b)^2."""
    rng = np.random.default_rng(4)
    d = 160
    u, _ = np.linalg.qr(rng.standard_normal((d, d)))
    a = rng.gamma(1.0, size=d) * np.arange(1, d + 1) ** -1.0
    b = a * rng.uniform(0.5, 1.5, size=d)
    a[100:] = 0.0  # rank 100
    b[:20] = 0.0  # rank 140, null space elsewhere
    s1, s2 = (u * a) @ u.T, (u * b) @ u.T
    s1, s2 = (s1 + s1.T) / 2, (s2 + s2.T) / 2
    want = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(np.zeros(d), s1, np.zeros(d), s2, method="svd") == pytest.approx(want, rel=1e-9)
    # "auto" may keep the eigenvalue route where its error estimate is below 1e-5 of the distance
    # (measured here: 5e-9); the bar for every route is 1e-6
    assert frechet_distance(np.zeros(d), s1, np.zeros(d), s2) == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("n", [50, 500])
def test_mean_shift_adds_its_squared_norm(moments, relu_features, n):
    d = 120
    x1, x2 = relu_features(n, d, seed=5), relu_features(n, d, seed=6)
    (mu1, s1), (_, s2) = moments(x1), moments(x2)
    shift = np.random.default_rng(7).standard_normal(d) * 0.1
    base = frechet_distance(mu1, s1, mu1, s2)
    shifted = frechet_distance(mu1, s1, mu1 + shift, s2)
    assert shifted - base == pytest.approx(shift @ shift, rel=1e-9)
    assert frechet_distance_features(x1, x2 + shift) - frechet_distance_features(x1, x2) == pytest.approx(
        (x1.mean(0) - x2.mean(0) - shift) @ (x1.mean(0) - x2.mean(0) - shift)
        - (x1.mean(0) - x2.mean(0)) @ (x1.mean(0) - x2.mean(0)), rel=1e-9)


# ----------------------------------------------------------------------------- reference


@pytest.mark.parametrize(
    "d,n1,n2",
    [
        (64, 600, 900),  # n > d, Cholesky route
        (200, 60, 90),  # n < d: rank-deficient covariances
        (256, 100, 1000),  # one of each
        (1024, 1500, 1300),  # n > d, larger
        (2048, 600, 500),  # n < d at Inception's size
    ],
)
def test_agrees_with_svd_reference(moments, reference_fd, relu_features, d, n1, n2):
    x1 = relu_features(n1, d, seed=11)
    x2 = relu_features(n2, d, seed=12)
    want = reference_fd(x1, x2)
    mu1, s1 = moments(x1)
    mu2, s2 = moments(x2)
    assert want < 0.25 * (np.trace(s1) + np.trace(s2))  # the hard regime: FD far below the traces
    assert frechet_distance_features(x1, x2) == pytest.approx(want, rel=1e-6)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(want, rel=1e-6)


def test_sqrtm_hard_cases_are_handled(moments, reference_fd, relu_features):
    """Rank-deficient covariances: scipy's sqrtm goes complex and negative; umsynth stays exact."""
    d, n = 128, 40
    x1, x2 = relu_features(n, d, seed=21), relu_features(n, d, seed=22)
    mu1, s1 = moments(x1)
    mu2, s2 = moments(x2)

    same_sqrtm, complex_same = sqrtm_route(mu1, s1, mu1, s1)
    assert complex_same and same_sqrtm < 0  # the failure this package exists to avoid
    assert 0.0 <= frechet_distance(mu1, s1, mu1, s1) <= 1e-12 * np.trace(s1)

    want = reference_fd(x1, x2)
    got_sqrtm, complex_diff = sqrtm_route(mu1, s1, mu2, s2)
    assert complex_diff
    assert abs(got_sqrtm - want) > 1e-7 * want  # sqrtm is biased here ...
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(want, rel=1e-7)  # ... umsynth is not
    assert frechet_distance_features(x1, x2) == pytest.approx(want, rel=1e-10)


def test_zero_covariances():
    d = 5
    z = np.zeros((d, d))
    assert frechet_distance(np.zeros(d), z, np.ones(d), z) == pytest.approx(5.0)
    assert frechet_distance(np.zeros(d), z, np.zeros(d), 4 * np.eye(d)) == pytest.approx(20.0)


def test_torch_tensors_and_float32(moments, relu_features):
    torch = pytest.importorskip("torch")
    x1, x2 = relu_features(300, 32, seed=31).astype(np.float32), relu_features(200, 32, seed=32).astype(np.float32)
    mu1, s1 = moments(x1.astype(np.float64))
    mu2, s2 = moments(x2.astype(np.float64))
    want = frechet_distance(mu1, s1, mu2, s2)
    t = [torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in (mu1, s1, mu2, s2)]
    # float32 tensors: the only difference is the float32 rounding of the inputs
    assert frechet_distance(*t) == pytest.approx(want, rel=1e-5)
    assert frechet_distance_features(torch.from_numpy(x1), torch.from_numpy(x2)) == pytest.approx(want, rel=1e-10)
    assert frechet_distance(*[torch.from_numpy(a) for a in (mu1, s1, mu2, s2)]) == want


def test_scalars_like_pytorch_fid():
    # pytorch-fid promotes with atleast_1d / atleast_2d: 1-d Gaussians as scalars
    assert frechet_distance(0.0, 4.0, 1.0, 1.0) == pytest.approx(1.0 + 1.0)


# ----------------------------------------------------------------------------- validation

D = 6
_EYE = np.eye(D)
_ASYM = np.eye(D)
_ASYM[0, 1] = 1e-3
_NEG = np.diag([1.0, 1.0, 1.0, 1.0, 1.0, -0.01])
_NAN = np.eye(D)
_NAN[2, 2] = np.nan


@pytest.mark.parametrize(
    "mu1,sigma1,mu2,sigma2,match",
    [
        (np.zeros(D), _EYE, np.zeros(D + 1), np.eye(D + 1), "different lengths"),
        (np.zeros(D), _EYE, np.zeros(D), np.eye(D + 1), "does not match"),
        (np.zeros(D), np.ones((D, D + 1)), np.zeros(D), _EYE, "square"),
        (np.zeros((D, 2)), _EYE, np.zeros(D), _EYE, "1-D"),
        (np.full(D, np.inf), _EYE, np.zeros(D), _EYE, "mu1 contains Inf"),
        (np.zeros(D), _EYE, np.zeros(D), _NAN, "sigma2 contains NaN"),
        (np.zeros(D), _ASYM, np.zeros(D), _EYE, "sigma1 is not symmetric"),
        (np.zeros(D), _EYE, np.zeros(D), _NEG, "sigma2 is not positive semi-definite"),
        (np.zeros(D), _NEG, np.zeros(D), _NEG, "sigma1 is not positive semi-definite"),
    ],
)
def test_bad_input_raises(mu1, sigma1, mu2, sigma2, match):
    with pytest.raises(ValueError, match=match):
        frechet_distance(mu1, sigma1, mu2, sigma2)


def test_tolerances_accept_rounding():
    # asymmetry and negative eigenvalues at rounding level are not errors
    rng = np.random.default_rng(41)
    a = rng.standard_normal((D, 3))
    s = a @ a.T  # rank 3: tiny negative eigenvalues from rounding
    s_noisy = s + 1e-12 * rng.standard_normal((D, D))
    assert frechet_distance(np.zeros(D), s_noisy, np.zeros(D), s) >= 0.0
    with pytest.raises(ValueError, match="not positive semi-definite"):
        frechet_distance(np.zeros(D), s - 1e-3 * np.abs(s).max() * np.eye(D), np.zeros(D), s)


def test_features_bad_input():
    x = np.ones((5, 3))
    with pytest.raises(ValueError, match="different feature dimensions"):
        frechet_distance_features(x, np.ones((5, 4)))
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance_features(x, np.ones((1, 3)))
    with pytest.raises(ValueError, match="2-D"):
        frechet_distance_features(np.ones(3), x)
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="x2 contains NaN"):
        frechet_distance_features(x, bad)


def test_importing_the_fid_modules_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys, umsynth, umsynth.frechet, umsynth.stats, umsynth.cli.fid; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_auto_keeps_the_eigenvalue_route_for_full_rank_decaying_spectra(monkeypatch):
    # d = 512, n = 600, spectrum ~ k^-1.7: the old linear error bound (1.7e-5 of the distance)
    # sent this pair to the SVD; the quadrature estimate (2e-6) keeps the eigenvalue route,
    # whose error against the singular-value reference measured 3e-10
    d, n = 512, 600
    w = np.random.default_rng(0).standard_normal((d, d)) * np.arange(1, d + 1) ** -1.7
    x1, x2 = (np.maximum(np.random.default_rng(s).standard_normal((n, d)) @ w.T, 0.0) for s in (1, 2))
    mu1, mu2 = x1.mean(0), x2.mean(0)
    s1, s2 = np.cov(x1, rowvar=False), np.cov(x2, rowvar=False)
    f1, f2 = np.linalg.cholesky(s1), np.linalg.cholesky(s2)
    ref = float((mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2)
                - 2 * np.linalg.svd(f1.T @ f2, compute_uv=False).sum())

    def no_svd(*args, **kwargs):
        raise AssertionError("auto fell back to the SVD")

    monkeypatch.setattr(np.linalg, "svd", no_svd)
    got = frechet_distance(mu1, s1, mu2, s2)
    assert abs(got / ref - 1) < 1e-6


def test_singular_covariances_use_pivoted_cholesky_not_eigh(monkeypatch, relu_features):
    # covariances of n < d samples (rank n - 1) given as matrices: the pivoted Cholesky factor
    # (no eigendecomposition) matches the exact distance of the features
    d, n = 300, 120
    x1, x2 = relu_features(n, d, seed=1), relu_features(n, d, seed=2)
    want = frechet_distance_features(x1, x2, method="svd")
    mu1, mu2 = x1.mean(0), x2.mean(0)
    s1, s2 = np.cov(x1, rowvar=False), np.cov(x2, rowvar=False)

    def no_eigh(*args, **kwargs):
        raise AssertionError("eigh was called")

    monkeypatch.setattr(np.linalg, "eigh", no_eigh)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(want, rel=1e-6)
    monkeypatch.undo()
    # an indefinite matrix still gets the eigenvalue named
    bad = s1.copy()
    bad -= 0.5 * np.trace(s1) / d * np.eye(d)
    with pytest.raises(ValueError, match="not positive semi-definite"):
        frechet_distance(mu1, bad, mu2, s2)


# ----------------------------------------------------------------- pytorch-fid's eps, scale


def _pair(seed=0, d=6):
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((40, d)), rng.standard_normal((30, d)) + 0.4
    return x, y, (x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))


def test_eps_is_accepted_as_in_pytorch_fid_and_changes_nothing():
    _, _, args = _pair()
    assert frechet_distance(*args, eps=1e-6) == frechet_distance(*args)
    with pytest.raises(TypeError):  # keyword-only after the four arrays, as documented
        frechet_distance(*args, "svd")
    with pytest.raises(ValueError, match="eps"):
        frechet_distance(*args, eps=-1.0)
    with pytest.raises(TypeError, match="eps"):
        frechet_distance(*args, eps="small")


@pytest.mark.parametrize("k", [2.0 ** 500, 2.0 ** -450])
def test_distance_is_homogeneous_far_from_unit_scale(k):
    """FD(k mu, k^2 S) = k^2 FD(mu, S): with powers of two, exactly in exact arithmetic;
    near 1e150 LAPACK failed to converge before, near 1e-135 squares underflowed."""
    x, y, (mu1, s1, mu2, s2) = _pair(1)
    want = frechet_distance(mu1, s1, mu2, s2)
    got = frechet_distance(mu1 * k, s1 * (k * k), mu2 * k, s2 * (k * k))
    assert got / (k * k) == pytest.approx(want, rel=1e-12)
    assert frechet_distance_features(x * k, y * k) / (k * k) == pytest.approx(
        frechet_distance_features(x, y), rel=1e-12)


def test_distance_beyond_float64_is_a_clear_error():
    _, _, (mu1, s1, mu2, s2) = _pair(2)
    big = 2.0 ** 1000
    with pytest.raises(ValueError, match="beyond float64"):
        frechet_distance(mu1 * big, s1, mu2 * (-big), s2)


# ------------------------------------------------- pivoted factor: the trailing residual check


def _hidden_indefinite(kind: str, d: int = 60, rank: int = 30, size: float = 1e-3, seed: int = 0) -> np.ndarray:
    """A PSD rank-`rank` matrix with an indefinite part that pivoted Cholesky does not pivot on.

    "offdiag": a zero-diagonal block [[0, B], [B^T, 0]] among the null directions (its
    diagonal is 0, so dpstrf stops before it; only its off-diagonal entries show it);
    "schur": a coupling C to the range with a zero diagonal block, whose Schur complement
    -C^T A^-1 C is negative definite. Rows and columns are shuffled.
    """
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((rank, rank))
    s = np.zeros((d, d))
    s[:rank, :rank] = a @ a.T + rank * np.eye(rank)
    scale = np.abs(s).max()
    if kind == "offdiag":
        half = (d - rank) // 2
        b = size * scale * rng.standard_normal((half, half))
        s[rank:rank + half, rank + half:rank + 2 * half] = b
        s[rank + half:rank + 2 * half, rank:rank + half] = b.T
    else:
        c = size * scale * rng.standard_normal((rank, d - rank))
        s[:rank, rank:] = c
        s[rank:, :rank] = c.T
    p = rng.permutation(d)
    return s[np.ix_(p, p)]


@pytest.mark.parametrize("kind", ["offdiag", "schur"])
def test_indefinite_part_beyond_the_pivots_is_refused(kind):
    s = _hidden_indefinite(kind)
    assert np.linalg.eigvalsh(s)[0] < -1e-6 * np.abs(np.linalg.eigvalsh(s)).max()  # clearly indefinite
    d = s.shape[0]
    with pytest.raises(ValueError, match="sigma1 is not positive semi-definite"):
        frechet_distance(np.zeros(d), s, np.zeros(d), np.eye(d))
    with pytest.raises(ValueError, match="sigma2 is not positive semi-definite"):
        frechet_distance(np.zeros(d), np.eye(d), np.zeros(d), s, method="svd")


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("kind", ["offdiag", "schur", "noise"])
def test_pivoted_factor_is_accepted_only_with_a_small_full_residual(kind, seed):
    """The factor route checks only the trailing block of S - F F^T; whatever it accepts must
    have the whole residual (computed here in full) within its limit, for sizes of the
    indefinite part from rounding level to clearly indefinite."""
    from umsynth.frechet import _EPS, _pivoted_factor

    for size in (1e-15, 1e-12, 1e-9, 1e-6, 1e-3):
        if kind == "noise":  # PSD rank 30 plus symmetric noise everywhere
            rng = np.random.default_rng(seed)
            a = rng.standard_normal((60, 30))
            s = a @ a.T
            e = rng.standard_normal(s.shape) * size * np.abs(s).max()
            s = s + (e + e.T)
        else:
            s = _hidden_indefinite(kind, size=size, seed=seed)
        d = s.shape[0]
        diag_max = float(np.max(np.diag(s)))
        f = _pivoted_factor(s, diag_max)
        if f is None:
            continue
        limit = 2 * d * _EPS * diag_max + 4 * f.shape[1] * _EPS * diag_max
        assert np.abs(s - f @ f.T).max() <= 1.01 * limit, (kind, seed, size)
    # and the clearly indefinite ones are refused
    if kind != "noise":
        s = _hidden_indefinite(kind, size=1e-3, seed=seed)
        assert _pivoted_factor(s, float(np.max(np.diag(s)))) is None


def test_check_cov_symmetrises_exactly():
    from umsynth.covariance import check_cov, check_cov_max

    rng = np.random.default_rng(8)
    for d in (1, 5, 16, 37, 100):  # multiples of the tile size and not
        a = rng.standard_normal((d, d))
        s = a @ a.T
        s[np.triu_indices(d, 1)] *= 1 + 1e-12  # asymmetric within the tolerance
        got, top = check_cov_max(s, "s", d)
        assert np.array_equal(got, (s + s.T) / 2) and np.array_equal(got, got.T)
        assert top == np.abs(got).max()
        for layout in (np.asfortranarray(s), np.kron(s, np.ones((2, 2)))[::2, ::2]):  # any strides
            assert np.array_equal(check_cov(layout, "s", d), got)
    huge = np.array([[1.7e308, 1.6e308], [1.6e308, 1.75e308]])  # S + S^T would overflow
    assert np.array_equal(check_cov(huge, "s", 2), huge)
    with pytest.raises(ValueError, match="sigma contains Inf"):
        check_cov(np.array([[1.0, np.inf], [np.inf, 1.0]]), "sigma", 2)
    with pytest.raises(ValueError, match="sigma contains Inf"):  # S + S^T has NaN there
        check_cov(np.array([[1.0, np.inf], [-np.inf, 1.0]]), "sigma", 2)
    with pytest.raises(ValueError, match="sigma contains NaN"):
        check_cov(np.array([[1.0, 0.0], [0.0, np.nan]]), "sigma", 2)
    with pytest.raises(ValueError, match=r"not symmetric: max \|S - S\^T\| = 2 .* max \|S\| = 1"):
        check_cov(np.array([[0.0, 1.0], [-1.0, 0.0]]), "sigma", 2)  # (S + S^T) / 2 = 0


def test_product_route_fallback_sees_the_covariance_intact(monkeypatch, moments, relu_features):
    """The product route overwrites its copy of sigma2 and restores it when it hands over to
    the factor route: for a near-identical pair (estimate too large) and an indefinite
    sigma2, the factor route must see sigma2 itself."""
    import umsynth.frechet as fr

    d = 48
    mu1, s1 = moments(relu_features(400, d, seed=3))
    rng = np.random.default_rng(5)
    v = rng.standard_normal(d)
    s2 = s1 + 1e-10 * np.trace(s1) / d * np.outer(v, v)  # FD ~ 1e-10 of the traces
    given = s2.copy()
    factored = []
    real = fr._cov_factor

    def spy(s, name, try_cholesky=True):
        factored.append(name)
        return real(s, name, try_cholesky)

    monkeypatch.setattr(fr, "_cov_factor", spy)
    got = frechet_distance(mu1, s1, mu1, s2)
    assert factored == ["sigma1", "sigma2"]  # the product route handed over
    monkeypatch.undo()
    assert np.array_equal(s2, given)
    want = frechet_distance(mu1, s1, mu1, s2, method="svd")
    assert got == pytest.approx(want, rel=1e-6, abs=1e-13 * np.trace(s1))
    # an indefinite sigma2 is named with its own smallest eigenvalue, not that of L^T S2 L
    bad = s1 - 0.5 * np.trace(s1) / d * np.eye(d)
    lam = np.linalg.eigvalsh(bad)[0]
    with pytest.raises(ValueError, match=f"sigma2 is not positive semi-definite: its smallest eigenvalue {lam:.3g} "):
        frechet_distance(mu1, s1, mu1, bad)


def test_a_set_of_one_repeated_image_gives_the_closed_form_without_warnings():
    """cov(x2) = 0 (one image repeated, as a bootstrap draw can make): FD = |mu1 - mu2|^2 + tr cov(x1)."""
    rng = np.random.default_rng(4)
    x1 = rng.standard_normal((10, 32))
    x2 = np.repeat(rng.standard_normal((1, 32)), 6, axis=0)
    want = float(((x1.mean(0) - x2[0]) ** 2).sum() + np.trace(np.cov(x1, rowvar=False)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = frechet_distance_features(x1, x2)
        both = frechet_distance_features(x2, x2 + 1.0)
    assert got == pytest.approx(want, rel=1e-12)
    assert both == pytest.approx(32.0, rel=1e-12)  # two point masses 1 apart in each of 32 dims
