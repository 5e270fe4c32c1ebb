"""The Fréchet distance on a GPU: factors and cross-products with torch or CuPy, the
nuclear norm with umsynth's polar-iteration kernel (umsynth.kernels.polar). No covariance leaves
the device; only the convergence flags and, for a single distance, the result do.

The steps mirror the CPU code in umsynth.frechet: a covariance is factored by Cholesky
when it is numerically positive definite (cuSOLVER, through the caller's framework), else
by a symmetric eigendecomposition with rounding-level eigenvalues set to zero (zero
columns give zero singular values, which the polar iteration keeps at zero).
"""
from __future__ import annotations

import numpy as np

from umsynth.covariance import PSD_RTOL, SYMMETRY_RTOL, gram_factor
from umsynth.kernels.polar import PolarConfig, nuclear_norms_gpu

_EPS = np.finfo(np.float64).eps


def check_batch_shapes(mu1, s1, mu2, s2) -> None:
    """Raise ValueError unless the shapes are (B, d), (B, d, d), (B, d), (B, d, d), B >= 1."""
    if len(mu1) != 2 or tuple(mu2) != tuple(mu1):
        raise ValueError(f"mus1 and mus2 must both have shape (B, d), got {tuple(mu1)} and {tuple(mu2)}")
    batch, d = mu1
    for name, shape in (("sigmas1", s1), ("sigmas2", s2)):
        if tuple(shape) != (batch, d, d):
            raise ValueError(f"{name} must have shape {(batch, d, d)} to match the means, got {tuple(shape)}")
    if batch < 1:
        raise ValueError("the batch is empty (B = 0)")


def symmetrised(ops, s, name: str):
    """Refuse non-symmetric covariances (as umsynth.covariance.check_cov) and symmetrise."""
    diff = s - ops.transpose(s)
    scale = ops.amax(abs(s), (-2, -1))
    asym = ops.amax(abs(diff), (-2, -1))
    bad = ops.to_numpy(asym > SYMMETRY_RTOL * scale)
    if bad.any():
        p = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}[{p}] is not symmetric: max |S - S^T| is more than {SYMMETRY_RTOL:g} of max |S|")
    return s - 0.5 * diff


def cov_factors(ops, s, name: str):
    """Factors F (B, d, d) with F F^T = S for a batch of symmetric covariances."""
    d = int(s.shape[-1])
    diag_max = ops.amax(ops.diagonal(s), -1)
    low, ok = ops.cholesky(s)
    pivot = ops.amin(ops.diagonal(low), -1)
    ok = ok & (diag_max > 0) & (pivot * pivot > 16 * d * _EPS * diag_max)
    if bool(ok.all()):
        return low
    w, v = ops.eigh(s)
    w_abs = ops.amax(abs(w), -1)
    bad = ops.to_numpy((w[:, 0] < -PSD_RTOL * w_abs) & ~ok)
    if bad.any():
        p = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}[{p}] is not positive semi-definite: an eigenvalue is below "
                         f"-{PSD_RTOL:g} times the largest magnitude")
    top = w[:, -1:]
    keep = w > d * _EPS * ops.where(top > 0, top, top * 0)
    root = ops.where(keep, w, w * 0) ** 0.5
    return ops.where(ok[:, None, None], low, v * root[:, None, :])


def _norms(ops, m, base, config, runner):
    config = config or PolarConfig()
    if runner is not None:  # tests: the CPU reference behind the same device code
        return runner(ops, m, base, config)
    return nuclear_norms_gpu(ops, m, base, config)


def distances(ops, mus1, sigmas1, mus2, sigmas2, config=None, runner=None):
    """FDs (B,) on the device for batched means (B, d) and covariances (B, d, d)."""
    check_batch_shapes(mus1.shape, sigmas1.shape, mus2.shape, sigmas2.shape)
    mu1, mu2 = ops.asarray(mus1, "mus1"), ops.asarray(mus2, "mus2")
    s1 = symmetrised(ops, ops.asarray(sigmas1, "sigmas1"), "sigmas1")
    s2 = symmetrised(ops, ops.asarray(sigmas2, "sigmas2"), "sigmas2")
    diff = mu1 - mu2
    base = ops.contiguous((diff * diff).sum(-1) + ops.diagonal(s1).sum(-1) + ops.diagonal(s2).sum(-1))
    m = ops.transpose(cov_factors(ops, s1, "sigmas1")) @ cov_factors(ops, s2, "sigmas2")
    fd = base - 2.0 * _norms(ops, m, base, config, runner)
    return ops.where(fd > 0, fd, fd * 0)


def _stats_factor(ops, s, name: str):
    """(mean, trace, factor) of one FeatureStats on the device (Gram route for n <= d)."""
    if s.keep_features and s.n is not None and s.n <= s.dim:
        f = gram_factor(s.features - s.mean) * (1.0 / np.sqrt(s.n - 1))
        return s.mean, (f * f).sum(), f
    cov = symmetrised(ops, s.cov[None], name)
    return s.mean, ops.diagonal(cov).sum(-1)[0], cov_factors(ops, cov, name)[0]


def stats_distance(a, b, config=None, runner=None) -> float:
    """FD of two FeatureStats held on one GPU."""
    ops = a.device_ops
    if ops is None or b.device_ops is None or b.device_ops.device != ops.device:
        raise ValueError("both statistics must be on the same GPU (one is on the host or another device)")
    mu1, tr1, f1 = _stats_factor(ops, a, "a.cov")
    mu2, tr2, f2 = _stats_factor(ops, b, "b.cov")
    diff = mu1 - mu2
    base = ops.contiguous(((diff * diff).sum() + tr1 + tr2).reshape(1))
    fd = base - 2.0 * _norms(ops, (ops.transpose(f1) @ f2)[None], base, config, runner)
    return max(float(ops.to_numpy(fd)[0]), 0.0)
