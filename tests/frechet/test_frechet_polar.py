"""The polar-iteration route of the Fréchet distance (the GPU algorithm, run on the CPU).

References: float64 LAPACK singular values of the same factor product (method="svd"), the
SVD of the centred feature cross-product, and closed forms. The shared C++ functions of
csrc/frechet/polar_kernels.h are checked one by one against numpy.
"""
from __future__ import annotations

import numpy as np
import pytest

import umsynth
from umsynth import _cpu, frechet_distance, frechet_distance_batch, frechet_distance_features
from umsynth.kernels import frechet_device, polar
from umsynth.kernels.arrays import TorchOps
from umsynth.kernels.config import cuda_status


BAR = 1e-6  # the accuracy bar on FD, relative


def rel(got: float, want: float) -> float:
    return abs(got - want) / abs(want)


def composed(x: np.ndarray, steps: int, ell0: float = 1e-14) -> np.ndarray:
    """f_steps(x): the scalar map the iteration applies to each scaled singular value."""
    a, b, _, _ = _cpu.polar_schedule(ell0, steps)
    for i in range(steps):
        x = a[i] * x - b[i] * x ** 3
    return x


# ----------------------------------------------------------------------------- shared functions


def test_schedule_cubics_are_optimal_and_normalised():
    a, b, ell, floor = _cpu.polar_schedule(1e-14, 60)
    # two phases from 1e-7 (1e-7 * 1e-7 = 1e-14), then Newton-Schulz
    restart = int(np.flatnonzero(np.diff(ell) < 0)[0]) + 1
    assert ell[0] == 1e-7 and ell[restart] == pytest.approx(1e-7, rel=1e-12)
    assert ell[restart - 1] > 0.999 and ell[-1] == 1.0
    assert np.all(np.diff(ell[:restart]) >= 0) and np.all(np.diff(ell[restart:]) >= 0)
    assert np.all(floor[:restart] == 1e-7) and floor[restart:] == pytest.approx(1e-14, rel=1e-12)
    grid = np.linspace(0.0, 1.0, 200001)
    for i in (0, 10, 18, restart - 1, restart + 5, 59):
        p = a[i] * grid - b[i] * grid ** 3
        lo = ell[i]
        # max 1 on [0, 1] (at x_m^2 = (1 + l + l^2) / 3), equal values at l and 1
        assert p.max() == pytest.approx(1.0, abs=1e-9)
        assert np.all(p >= -1e-15)
        at_lo, at_1 = a[i] * lo - b[i] * lo ** 3, a[i] - b[i]
        if lo >= 0.1:  # optimal on [l, 1]: equal values at both ends
            assert at_lo == pytest.approx(at_1, rel=1e-12)
        else:  # cushioned: optimal on [0.1, 1], so 1 is not sent down to ~l
            assert at_lo < at_1 and at_1 > 0.2
            assert a[i] == pytest.approx(a[0], rel=1e-14) and a[i] > 2.4  # small values grow 2.47x
        nxt = ell[i + 1] if i + 1 < len(ell) and i + 1 != restart else 1.0
        assert at_lo == pytest.approx(nxt, rel=1e-12)
        assert np.all(p[grid >= lo] >= at_lo * (1 - 1e-12))
    assert (a[-1], b[-1]) == pytest.approx((1.5, 0.5), rel=1e-12)  # Newton-Schulz at the end


def test_step_epilogue_matches_numpy():
    rng = np.random.default_rng(0)
    batch, m, k = 3, 37, 20
    x, xg, mm = (rng.standard_normal((batch, m, k)) for _ in range(3))
    active = np.array([1, 0, 1], dtype=np.uint8)
    terms = np.full((batch, 2), 7.0)
    got = x.copy()
    _cpu.polar_step(got, xg, mm, 1.25, 0.3, active, terms, 2)
    for p in (0, 2):
        np.testing.assert_allclose(got[p], 1.25 * x[p] - 0.3 * xg[p], rtol=1e-15, atol=1e-15)
        assert terms[p] == pytest.approx([np.sum(x[p] * mm[p]), np.sum((x[p] - xg[p]) * mm[p])], rel=1e-12)
    np.testing.assert_array_equal(got[1], x[1])  # inactive: untouched
    assert list(terms[1]) == [7.0, 7.0]
    assert _cpu.polar_update(2.0, 0.5, 3.0, 4.0) == 4.0
    assert _cpu.polar_terms(3.0, 4.0, 0.5) == (1.5, -0.5)


def test_error_bound_formula_and_convergence_test():
    s, alpha, k, ell, ell0 = 1e-9, 3.0, 50.0, 0.9, 1e-14
    want = 4 / 3 * s + np.sqrt(4 / 3 * k * alpha * s / (ell / ell0))
    assert _cpu.polar_error_bound(s, alpha, k, ell, ell0) == pytest.approx(want, rel=1e-14)
    assert _cpu.polar_error_bound(-s, alpha, k, ell, ell0) == pytest.approx(want, rel=1e-14)
    assert _cpu.polar_error_bound(s, alpha, k, 0.4, ell0) < 0  # not certifiable yet
    assert _cpu.polar_converged(10.0, 4.0, 1e-8, 1e-7, 0.0)  # 2e-8 <= 1e-7 * (2 - 2e-8)
    assert not _cpu.polar_converged(10.0, 4.99, 1e-8, 1e-7, 0.0)  # FD 0.02: 2e-8 > 2e-9
    assert _cpu.polar_converged(10.0, 5.0, 1e-8, 1e-7, 1e-7)  # FD ~ 0: rounding floor
    assert not _cpu.polar_converged(10.0, 4.0, -1.0, 1e-7, 1.0)


_, _, _ELL, _ = _cpu.polar_schedule(1e-14, 80)
# the first certifiable step of each phase, the last step of phase 1, and late Newton-Schulz
_FIRST = np.flatnonzero((_ELL[1:] >= 0.5) & (_ELL[:-1] < 0.5)) + 1
_CERT_STEPS = sorted({int(_FIRST[0]), int(_FIRST[1]), int(np.flatnonzero(np.diff(_ELL) < 0)[0]), 79})


@pytest.mark.parametrize("steps", _CERT_STEPS)
def test_error_bound_holds_for_any_spectrum(steps):
    """e = sum sigma (1 - f) <= bound(s) for spectra down to 1e-20, zeros included (scalar model)."""
    rng = np.random.default_rng(steps)
    _, _, ell, floor = _cpu.polar_schedule(1e-14, steps + 1)
    for spectrum in (np.logspace(0, -20, 300), np.r_[np.logspace(0, -3, 50), np.zeros(50)],
                     rng.uniform(0, 1, 200) ** 8, np.r_[1.0, np.full(99, 3e-15)]):
        alpha = np.sqrt(np.sum(spectrum ** 2))
        f = composed(spectrum / alpha, steps)
        assert np.all((f >= 0) & (f <= 1 + 1e-15))
        e = np.sum(spectrum * (1 - f))
        s = np.sum(spectrum * f * (1 - f * f))
        bound = _cpu.polar_error_bound(s, alpha, float(spectrum.size), ell[steps], floor[steps])
        assert bound >= 0 and e <= bound * (1 + 1e-9) + 1e-15 * alpha


# ----------------------------------------------------------------------------- accuracy


def rotated_pair(d: int, cond: float, seed: int, spread: float = 0.1, tilt: float = 1e-3):
    """Covariances U diag(l) U^T and V diag(l (1 + spread u)) V^T, condition number cond."""
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.standard_normal((d, d)))
    v, _ = np.linalg.qr(u + tilt * rng.standard_normal((d, d)))
    lam = np.logspace(0, -np.log10(cond), d)
    s1 = (u * lam) @ u.T
    s2 = (v * (lam * (1 + spread * rng.uniform(-1, 1, d)))) @ v.T
    return (s1 + s1.T) / 2, (s2 + s2.T) / 2, rng.standard_normal(d) * 1e-3


@pytest.mark.parametrize("d,n", [(64, 600), (256, 400)])
def test_covariances_full_rank(moments, reference_fd, relu_features, d, n):
    x1, x2 = relu_features(n, d, seed=1), relu_features(n, d, seed=2)
    (mu1, s1), (mu2, s2) = moments(x1), moments(x2)
    want = frechet_distance(mu1, s1, mu2, s2, method="svd")
    assert rel(frechet_distance(mu1, s1, mu2, s2, method="polar"), want) <= BAR
    assert rel(want, reference_fd(x1, x2)) <= BAR  # and the svd route is the reference's


@pytest.mark.parametrize("cond", [1e6, 1e13])
def test_ill_conditioned_covariances(cond):
    d = 128
    s1, s2, dmu = rotated_pair(d, cond, seed=3)
    want = frechet_distance(np.zeros(d), s1, dmu, s2, method="svd")
    assert rel(frechet_distance(np.zeros(d), s1, dmu, s2, method="polar"), want) <= BAR


@pytest.mark.parametrize("d,n1,n2", [(200, 60, 90), (512, 150, 200), (4096, 120, 100)])
def test_features_rank_deficient(moments, reference_fd, relu_features, d, n1, n2):
    x1, x2 = relu_features(n1, d, seed=4), relu_features(n2, d, seed=5)
    want = reference_fd(x1, x2)
    assert rel(frechet_distance_features(x1, x2, method="polar"), want) <= BAR
    if d <= 200:  # the same n < d covariances given as matrices: truncated-eigh factors
        (mu1, s1), (mu2, s2) = moments(x1), moments(x2)
        got = frechet_distance(mu1, s1, mu2, s2, method="polar")
        assert rel(got, frechet_distance(mu1, s1, mu2, s2, method="svd")) <= BAR


@pytest.mark.parametrize("spread,ratio", [(1e-2, 1e-5), (1e-3, 1e-7)])
def test_nearly_identical_commuting_pair_closed_form(spread, ratio):
    """FD down to 4e-8 of the traces: sum (sqrt a - sqrt b)^2 computed without cancellation.

    (Below about 1e-9 no float64 route is exact: the SVD route itself was 4e-7 off at
    FD / traces = 4e-10, the polar route 2.5e-6, within its rounding floor.)
    """
    d = 128
    rng = np.random.default_rng(6)
    u, _ = np.linalg.qr(rng.standard_normal((d, d)))
    a = np.logspace(0, -6, d)
    eps = rng.uniform(-1, 1, d) * spread
    b = a * (1 + eps)
    s1, s2 = (u * a) @ u.T, (u * b) @ u.T
    s1, s2 = (s1 + s1.T) / 2, (s2 + s2.T) / 2
    want = np.sum(a * (1 - np.sqrt(1 + eps)) ** 2)  # (sqrt a - sqrt b)^2, rearranged
    assert want < ratio * (a.sum() + b.sum())
    assert rel(frechet_distance(np.zeros(d), s1, np.zeros(d), s2, method="polar"), want) <= BAR


def test_nearly_identical_samples_and_identical_inputs(moments, relu_features):
    x = relu_features(3000, 96, seed=7)
    (mu1, s1), (mu2, s2) = moments(x[:1500]), moments(x[1500:] * (1 + 1e-4))
    want = frechet_distance(mu1, s1, mu2, s2, method="svd")
    assert want < 1e-2 * (np.trace(s1) + np.trace(s2))
    assert rel(frechet_distance(mu1, s1, mu2, s2, method="polar"), want) <= BAR
    same = frechet_distance(mu1, s1, mu1, s1, method="polar")
    assert 0.0 <= same <= 1e-12 * np.trace(s1)


# ----------------------------------------------------------------------------- API


def test_not_converging_raises(moments, relu_features):
    x1, x2 = relu_features(300, 64, seed=8), relu_features(300, 64, seed=9)
    (mu1, s1), (mu2, s2) = moments(x1), moments(x2)
    for steps in (1, 10):  # 10: the interval is still below 1/2, nothing is certified
        with pytest.raises(umsynth.ConvergenceError, match="not certified"):
            frechet_distance(mu1, s1, mu2, s2, method="polar", config=umsynth.PolarConfig(max_iter=steps))


def test_batch_equals_singles(moments, relu_features):
    d = 48
    xs = [relu_features(200, d, seed=s) for s in range(10, 16)]
    st = [moments(x) for x in xs]
    st[2] = (st[2][0], moments(xs[2][:20])[1])  # one rank-deficient covariance in the batch
    mus1 = np.stack([m for m, _ in st[:3]])
    sig1 = np.stack([s for _, s in st[:3]])
    mus2 = np.stack([m for m, _ in st[3:]])
    sig2 = np.stack([s for _, s in st[3:]])
    got = frechet_distance_batch(mus1, sig1, mus2, sig2, method="polar")
    assert isinstance(got, np.ndarray) and got.shape == (3,) and got.dtype == np.float64
    for p in range(3):
        single = frechet_distance(mus1[p], sig1[p], mus2[p], sig2[p], method="polar")
        assert got[p] == pytest.approx(single, rel=1e-9)
        assert rel(got[p], frechet_distance(mus1[p], sig1[p], mus2[p], sig2[p], method="svd")) <= BAR
    np.testing.assert_allclose(frechet_distance_batch(mus1, sig1, mus2, sig2), got, rtol=BAR)


def test_bad_arguments():
    mu, s = np.zeros(4), np.eye(4)
    with pytest.raises(ValueError, match="method must be one of"):
        frechet_distance(mu, s, mu, s, method="sqrtm")
    with pytest.raises(ValueError, match="max_iter"):
        polar.PolarConfig(max_iter=0)
    with pytest.raises(ValueError, match="sigmas2 must have shape"):
        frechet_distance_batch(mu[None], s[None], mu[None], s)
    with pytest.raises(ValueError, match=r"sigmas1\[0\] is not symmetric"):
        frechet_distance_batch(mu[None], (s + np.triu(np.ones((4, 4)), 1))[None], mu[None], s[None],
                               method="polar")


def _cpu_runner(ops, m, base, config):
    """The CPU reference behind the device code path (torch CPU tensors in, tensor out)."""
    t = polar.nuclear_norms_cpu(ops.to_numpy(m), ops.to_numpy(base), config, 2)
    return ops.from_numpy(t)


def test_device_code_path_with_cpu_torch_tensors(moments, reference_fd, relu_features):
    """The torch side of the GPU route (validation, factors, cross-products, batching, stats)."""
    torch = pytest.importorskip("torch")
    d = 40
    xs = [relu_features(n, d, seed=s) for n, s in ((300, 20), (25, 21), (300, 22), (400, 23))]
    st = [moments(x) for x in xs]
    mus1, sig1 = (torch.from_numpy(np.stack([v[i] for v in st[:2]])) for i in (0, 1))
    mus2, sig2 = (torch.from_numpy(np.stack([v[i] for v in st[2:]])) for i in (0, 1))
    ops = TorchOps(mus1)
    got = frechet_device.distances(ops, mus1, sig1, mus2, sig2, runner=_cpu_runner)
    want = frechet_distance_batch(mus1.numpy(), sig1.numpy(), mus2.numpy(), sig2.numpy(), method="svd")
    assert torch.is_tensor(got)
    np.testing.assert_allclose(got.numpy(), want, rtol=BAR)

    # FeatureStats accumulated with torch ops (Gram route for n <= d on one side)
    a, b = umsynth.FeatureStats(d, keep_features=True), umsynth.FeatureStats(d)
    a._update_device(ops, torch.from_numpy(xs[1][:10]))
    a._update_device(ops, torch.from_numpy(xs[1][10:]))
    b._update_device(ops, torch.from_numpy(xs[0]))
    np.testing.assert_allclose(b.cov.numpy(), np.cov(xs[0], rowvar=False), rtol=1e-12, atol=1e-14)
    fd = frechet_device.stats_distance(a, b, runner=_cpu_runner)
    assert rel(fd, reference_fd(xs[1], xs[0])) <= BAR


# ----------------------------------------------------------------------------- GPU

_GPU, _WHY = cuda_status()
gpu = pytest.mark.skipif(not _GPU, reason=_WHY)


def _cuda_torch():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device here")
    return torch


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("portable", [False, True])
def test_gpu_kernel_matches_cpu_reference(moments, relu_features, portable):
    torch = _cuda_torch()
    x1, x2 = relu_features(400, 200, seed=30), relu_features(90, 200, seed=31)
    (mu1, s1), (mu2, s2) = moments(x1), moments(x2)
    want = frechet_distance(mu1, s1, mu2, s2, method="polar")
    cfg = polar.PolarConfig(portable=portable)
    got = frechet_distance(*(torch.from_numpy(a).cuda() for a in (mu1, s1, mu2, s2)), config=cfg)
    assert rel(got, want) <= BAR
    assert rel(got, frechet_distance(mu1, s1, mu2, s2, method="svd")) <= BAR


@pytest.mark.gpu
@gpu
def test_gpu_batch_returns_device_tensor_and_matches_singles(moments, relu_features):
    torch = _cuda_torch()
    d = 128
    st = [moments(relu_features(500, d, seed=s)) for s in range(40, 48)]
    mus = torch.from_numpy(np.stack([m for m, _ in st])).cuda()
    sig = torch.from_numpy(np.stack([s for _, s in st])).cuda()
    got = frechet_distance_batch(mus[:4], sig[:4], mus[4:], sig[4:])
    assert got.device.type == "cuda" and got.shape == (4,)
    want = frechet_distance_batch(*(t.cpu().numpy() for t in (mus[:4], sig[:4], mus[4:], sig[4:])),
                                  method="svd")
    np.testing.assert_allclose(got.cpu().numpy(), want, rtol=BAR)


@pytest.mark.gpu
@gpu
def test_gpu_feature_stats_accumulate_and_merge_on_device(relu_features):
    torch = _cuda_torch()
    x = relu_features(900, 64, seed=50) + 1e3  # a large common offset
    a, b, whole = umsynth.FeatureStats(64), umsynth.FeatureStats(64), umsynth.FeatureStats(64)
    a.update(torch.from_numpy(x[:300]).cuda())
    b.update(torch.from_numpy(x[300:]).cuda())
    whole.update(x)
    a.merge(b)
    assert a.cov.device.type == "cuda"
    np.testing.assert_allclose(a.cov.cpu().numpy(), whole.cov, rtol=1e-10, atol=1e-10 * np.abs(whole.cov).max())
    c = umsynth.FeatureStats(64)
    c.update(torch.from_numpy(relu_features(700, 64, seed=51)).cuda())
    want = umsynth.frechet_distance(whole.mean, whole.cov, c.mean.cpu().numpy(), c.cov.cpu().numpy(), method="svd")
    assert rel(umsynth.frechet_distance_from_stats(a, c), want) <= BAR


@pytest.mark.gpu
@gpu
def test_gpu_cupy_input(moments, relu_features):
    cp = pytest.importorskip("cupy")
    x1, x2 = relu_features(300, 96, seed=60), relu_features(300, 96, seed=61)
    (mu1, s1), (mu2, s2) = moments(x1), moments(x2)
    got = frechet_distance_batch(*(cp.asarray(a[None]) for a in (mu1, s1, mu2, s2)))
    assert isinstance(got, cp.ndarray)
    assert rel(float(got[0]), frechet_distance(mu1, s1, mu2, s2, method="svd")) <= BAR


def test_gpu_input_without_device_is_a_clear_error():
    """Where no device is usable, GPU arrays cannot even be made; the route name check stays."""
    with pytest.raises(ValueError, match="runs on the CPU only"):
        from umsynth.frechet import _device_method

        _device_method("svd")
