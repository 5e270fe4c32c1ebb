"""Exact Fréchet distance between Gaussians, without a matrix square root.

The Fréchet (2-Wasserstein) distance between N(mu1, S1) and N(mu2, S2) is

    FD = ||mu1 - mu2||^2 + tr S1 + tr S2 - 2 tr sqrt(S1 S2).

pytorch-fid, clean-fid and MedSynAnalyzer take ``scipy.linalg.sqrtm(S1 @ S2)``: a Schur
decomposition of a non-symmetric product, which is slow (about 20 s at d=2048 on 2 cores)
and returns complex values or negative distances when a covariance is singular. umsynth
uses the identity

    tr sqrt(S1 S2) = ||F1^T F2||_*   (the nuclear norm: the sum of singular values)

which holds for any factors with S1 = F1 F1^T and S2 = F2 F2^T. Every step is a symmetric
or orthogonal LAPACK routine (through numpy.linalg and scipy.linalg.lapack) in float64, so
the result is real and never negative beyond rounding:

- when sigma1 is numerically positive definite, tr sqrt(S1 S2) is the sum of the square
  roots of the eigenvalues of L^T S2 L (S1 = L L^T): one Cholesky, one congruence and one
  symmetric eigenvalue solve (the "product route");
- otherwise a covariance given as a matrix is factored by Cholesky when it is numerically
  positive definite, else by pivoted Cholesky stopped at the numerical rank (pivots
  <= d * eps * max diag dropped; an eigendecomposition only names the offending eigenvalue
  of a matrix that is not positive semi-definite);
- when the raw features are at hand and a sample count n is at most d, the centred feature
  matrix divided by sqrt(n - 1) is the factor: the covariance has rank n - 1 and an n1 x n2
  cross-product replaces the d x d problem (the "Gram route");
- the nuclear norm of B = F1^T F2 comes from the eigenvalues of the symmetric Gram matrix
  B^T B when an a-posteriori error estimate allows it, else from the singular values of B
  (see :func:`frechet_distance`).

``method="polar"`` takes the nuclear norm from a float64 polar iteration of matrix products
with a certified error bound instead (umsynth.kernels.polar): the algorithm of the CUDA kernel,
which torch CUDA tensors and CuPy arrays go through on their device
(umsynth.kernels.frechet_device), and
:func:`frechet_distance_batch` computes a whole table of distances in one batched call.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from umsynth.covariance import SYMMETRY_RTOL  # noqa: F401 - also read as umsynth.frechet.SYMMETRY_RTOL
from umsynth.covariance import PSD_RTOL, as_float64, centre, check_cov_max, gram_factor, scale_exponent
from umsynth.kernels import frechet_device
from umsynth.kernels.arrays import device_ops
from umsynth.kernels.config import resolve_threads
from umsynth.kernels.polar import ConvergenceError, PolarConfig, nuclear_norms_cpu
from umsynth.stats import FeatureStats

__all__ = ["frechet_distance", "frechet_distance_batch", "frechet_distance_from_stats",
           "frechet_distance_features", "METHODS", "PolarConfig", "ConvergenceError"]

_EPS = np.finfo(np.float64).eps
# SYMMETRY_RTOL and PSD_RTOL (umsynth.covariance) bound what is accepted as a covariance.
# The eigenvalue route for the nuclear norm is kept only when its estimated error is below
# this fraction of the distance; measured errors are 100x to 1000x below the estimate.
_EIG_ROUTE_RTOL = 1e-5
# Routes for the nuclear norm: "auto" (gram, else svd, by the error estimate), "gram"
# (eigenvalues of the Gram matrix only), "svd" (LAPACK singular values), "polar" (the GPU
# algorithm: a float64 polar iteration of matrix products, umsynth.kernels.polar).
METHODS = ("auto", "gram", "svd", "polar")


# --------------------------------------------------------------------------- input checks


def _check_mean(mu: Any, name: str) -> np.ndarray:
    mu = np.atleast_1d(as_float64(mu, name))
    if mu.ndim != 1:
        raise ValueError(f"{name} must be a 1-D mean vector, got shape {mu.shape}")
    return mu


# --------------------------------------------------------------------------- factors


def _definite_cholesky(s: np.ndarray, diag_max: float) -> np.ndarray | None:
    """L with L L^T = S (LAPACK's dpotrf; lower triangle, the upper one left unset), or None
    when S is not numerically positive definite (a failed or rounding-level pivot).

    S is symmetric, so ``s.T`` (Fortran order) is S itself and is read without a transposed
    copy; f2py's ``clean`` (zeroing the other triangle by a column-strided loop) cost more
    than the factorization at d = 512, so callers read the lower triangle only.
    """
    from scipy.linalg import lapack

    low, info = lapack.dpotrf(s.T, lower=1, clean=0)
    if info != 0 or float(np.min(np.diag(low))) ** 2 <= 16 * s.shape[0] * _EPS * diag_max:
        return None
    return low


def _cov_factor(s: np.ndarray, name: str, try_cholesky: bool = True) -> np.ndarray:
    """A factor F (d x r) with F F^T = S, r <= d; raises ValueError if S is clearly not PSD.

    Cholesky is used when S is numerically positive definite: it is the fastest route and
    backward stable. A pivot at rounding level means S is (numerically) singular; the
    Cholesky factor would then carry noise columns of size sqrt(eps ||S||), which bias
    tr sqrt upwards. Then LAPACK's pivoted Cholesky (``dpstrf``) stops at the numerical
    rank, dropping the rounding-level part (pivots below ``d * eps * max diag``): a d x r
    factor at a fraction of an eigendecomposition's cost (at d = 2048, rank 999: 3.3 s
    against 41 s, and an error of 1e-11 against 4e-10). Its residual S - F F^T is checked;
    a matrix that is not positive semi-definite leaves a large one and goes to ``eigh``,
    which names the offending eigenvalue.
    """
    d = s.shape[0]
    if d == 0:
        return np.zeros((0, 0))
    diag_max = float(np.max(np.diag(s)))
    if diag_max > 0:
        # try_cholesky False: the caller already found S not numerically positive definite
        low = _definite_cholesky(s, diag_max) if try_cholesky else None
        if low is not None:
            return np.tril(low)
        factor = _pivoted_factor(s, diag_max)
        if factor is not None:
            return factor
    w, v = np.linalg.eigh(s)
    w_abs = float(np.max(np.abs(w)))
    if w[0] < -PSD_RTOL * w_abs:
        raise ValueError(f"{name} is not positive semi-definite: its smallest eigenvalue {w[0]:.3g} "
                         f"is below -{PSD_RTOL:g} times its largest magnitude {w_abs:.3g}")
    keep = w > d * _EPS * max(float(w[-1]), 0.0)
    return v[:, keep] * np.sqrt(w[keep])


def _sqrt_sum(lam: np.ndarray) -> tuple[float, float]:
    """(sum of sqrt(lambda), estimate of its rounding error) for the eigenvalues of a PSD product.

    See :func:`_nuclear_norm`: eigenvalues below delta = eps * lambda_max are lost to
    rounding (sqrt(delta) each); the first-order errors of the others add in quadrature.
    """
    lam = np.clip(lam, 0.0, None)
    total = float(np.sqrt(lam).sum())
    delta = _EPS * float(lam[-1]) if lam.size else 0.0
    if delta == 0.0:  # every eigenvalue 0: the product is exactly 0 (e.g. one image repeated)
        return total, 0.0
    lost = lam < delta
    first = delta / (2.0 * np.sqrt(lam[~lost]))
    return total, float(np.count_nonzero(lost)) * np.sqrt(delta) + float(np.sqrt(first @ first))


def _product_route(s1: np.ndarray, s2: np.ndarray, base: float) -> tuple[float | None, bool]:
    """(tr sqrt(S1 S2) as the sum of sqrt(eig(L^T S2 L)), L = chol(S1), or None; S1 positive definite).

    One Cholesky, LAPACK's ``dsygst`` (L^T S2 L, using the symmetry: about d^3 flops) and one
    symmetric eigenvalue solve: the cheapest exact route. L^T S2 L has the eigenvalues of
    the Gram route's B^T B, so the same error estimate decides. The value is None (take the
    factor route) when S1 is not numerically positive definite (the flag then says so, so
    that the factor route does not try Cholesky again), when the product shows a negative
    eigenvalue (S2 is then indefinite, by Sylvester's law of inertia: the factor route names
    it), or when the estimate is too large. ``s2`` is overwritten while the route runs, and
    restored when it returns None.
    """
    from scipy.linalg import lapack

    diag_max = float(np.max(np.diag(s1))) if s1.size else 0.0
    low = _definite_cholesky(s1, diag_max) if diag_max > 0 else None
    if low is None:
        return None, False
    # L^T S2 L in place of S2's upper triangle (the lower one of s2.T, in Fortran order, which
    # is what dsygst, then dsyevr's tridiagonal reduction, read and write): no copy of S2. Its
    # strict lower triangle is left, so S2 is restored when the factor route needs it.
    d = s2.shape[0]
    diag = np.diag(s2).copy()
    m, info = lapack.dsygst(s2.T, low, itype=2, lower=1, overwrite_a=1)
    lam = None
    if info == 0:
        # eigenvalues only (dsytrd + dsterf, as numpy's eigvalsh) in place, with the optimal
        # workspace (f2py's default shrinks the reduction's blocks)
        lwork, liwork, _ = lapack.dsyevr_lwork(d, lower=1)
        lam, _, _, _, info = lapack.dsyevr(m, compute_v=0, lower=1, lwork=int(lwork), liwork=int(liwork),
                                           overwrite_a=1)
    if info == 0 and lam[0] >= -PSD_RTOL * float(np.max(np.abs(lam))):
        total, est = _sqrt_sum(lam)
        if 2.0 * est <= _EIG_ROUTE_RTOL * (base - 2.0 * total):
            return total, True
    upper = np.triu_indices(d, 1)
    s2[upper] = s2.T[upper]
    np.fill_diagonal(s2, diag)
    return None, True


def _pivoted_factor(s: np.ndarray, diag_max: float) -> np.ndarray | None:
    """F (d x rank) from pivoted Cholesky with rounding-level pivots dropped; None if S - F F^T is not small.

    With the rows of F in pivot order, G = [G1; G2] (G1: the rank pivot rows), the residual
    R = S - G G^T has blocks R11, R21 (the pivot columns) and R22 (the rest). Cholesky's
    rounding analysis bounds |R_ij| <= gamma_{rank+1} ||g_i|| ||g_j|| in the pivot columns
    for any symmetric S, definite or not, and the rows of G are short: ||g_i||^2 = S_ii for
    a pivot row, S_ii - R_ii for the others. So only R22 is formed and checked, a
    (d - rank)^2 rank product instead of d^2 rank for the whole residual; an indefinite
    part that the pivots do not reach leaves a large entry there (tests/frechet).
    """
    from scipy.linalg import lapack

    d = s.shape[0]
    tol = d * _EPS * diag_max
    c, piv, rank, info = lapack.dpstrf(s.T, lower=1, tol=tol)  # s.T is S, in Fortran order
    if info < 0:
        return None
    order = piv - 1
    # dpstrf's output is in Fortran order: the rows of c.T are L's columns, so L^T is read
    # row by row; rows and columns are gathered with np.take along contiguous rows (fancy
    # assignment and transposed gathers were the slow part at d = 512)
    lt = c.T[:rank]  # G^T, columns in pivot order; below its diagonal: dpstrf's leftovers
    lt[:, :rank] = np.triu(lt[:, :rank])
    # a PSD remainder has entries below its largest pivot (< tol); rounding adds ~rank eps
    limit = 2.0 * tol + 4.0 * rank * _EPS * diag_max
    if rank < d:
        rest = order[rank:]
        g2 = lt[:, rank:]
        residual = np.take(np.take(s, rest, axis=0), rest, axis=1)  # S22
        residual -= g2.T @ g2
        if float(np.max(np.abs(residual))) > limit:
            return None
    return np.take(lt, np.argsort(order), axis=1).T  # F: rows in the original order


def _check_method(method: str, config) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}, got {method!r}")
    if config is not None and not isinstance(config, PolarConfig):
        raise TypeError(f"config must be a PolarConfig, got {type(config).__name__}")


def _polar_norms(m: np.ndarray, base: np.ndarray, config) -> np.ndarray:
    return nuclear_norms_cpu(m, base, config or PolarConfig(), resolve_threads(None))


def _nuclear_norm(b: np.ndarray, base: float, method: str = "auto", config=None) -> float:
    """Sum of the singular values of ``b``, for FD = base - 2 * result.

    ``method`` "svd" and "polar" take that route directly; "gram" keeps the eigenvalue
    route whatever its estimated error; "auto" is described below.

    First the eigenvalues of the smaller Gram matrix b^T b or b b^T (one symmetric
    eigenvalue solve: 2x to 3x faster than the SVD). An eigenvalue lambda has an error of
    about eps * lambda_max, so its square root has an error of about
    min(sqrt(delta), delta / (2 sqrt(lambda))) with delta = eps * lambda_max: large only for
    lambdas near zero. Eigenvalues below delta are lost to rounding: each counts
    sqrt(delta). The first-order errors delta / (2 sqrt(lambda)) of the others come from
    independent roundings and are added in quadrature (a linear sum of worst cases
    overstated the error 1e5-fold at d = 4096: 1.5e-5 estimated, 1.6e-10 measured, and sent
    full-rank pairs to the SVD at 2.5x the time). When the estimate exceeds
    _EIG_ROUTE_RTOL of the distance (near-identical or strongly rank-deficient inputs), the
    singular values of ``b`` itself are taken (backward stable: an error of about
    k * eps * sigma_max in the sum).
    """
    if b.size == 0:
        return 0.0
    if method == "svd":
        return float(np.linalg.svd(b, compute_uv=False).sum())
    if method == "polar":
        return float(_polar_norms(b[None], np.array([base]), config)[0])
    gram = b.T @ b if b.shape[1] <= b.shape[0] else b @ b.T
    total, est = _sqrt_sum(np.linalg.eigvalsh(gram))
    if method == "gram" or 2.0 * est <= _EIG_ROUTE_RTOL * (base - 2.0 * total):
        return total
    return float(np.linalg.svd(b, compute_uv=False).sum())


def _feature_side(x: np.ndarray, name: str) -> tuple[np.ndarray, float, np.ndarray, float]:
    """(mean, trace of the covariance, factor, scale) from features x (n, d), n >= 2.

    The covariance is ``scale**2 * factor @ factor.T``: scale is 1 / sqrt(n - 1) when the
    factor is made of the centred features (applied to the small cross-product instead)
    and 1 for a factor of the covariance matrix.
    """
    n = x.shape[0]
    mean, xc = centre(x)
    if n <= x.shape[1]:
        # rank n - 1: the centred features are the factor (the Gram route)
        return mean, float(np.einsum("ij,ij->", xc, xc)) / (n - 1), gram_factor(xc), 1.0 / np.sqrt(n - 1)
    cov = (xc.T @ xc) / (n - 1)
    return mean, float(np.trace(cov)), _cov_factor(cov, name), 1.0


def _distance(mu1: np.ndarray, tr1: float, f1: np.ndarray, scale1: float,
              mu2: np.ndarray, tr2: float, f2: np.ndarray, scale2: float,
              method: str = "auto", config=None) -> float:
    """Assemble the distance from means, traces and scaled factors (see _feature_side)."""
    diff = mu1 - mu2
    base = float(diff @ diff) + tr1 + tr2
    b = f1.T @ f2
    if scale1 * scale2 != 1.0:
        b *= scale1 * scale2
    fd = base - 2.0 * _nuclear_norm(b, base, method, config)
    # sum sigma <= sqrt(tr1 tr2) <= (tr1 + tr2) / 2, so a negative value is rounding, or a
    # covariance indefinite within the accepted tolerance: either way the distance is 0
    return max(fd, 0.0)


# --------------------------------------------------------------------------- public API


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any, *, method: str = "auto",
                     config: "PolarConfig | None" = None, eps: float = 1e-6) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), exactly and fast.

    A drop-in for pytorch-fid's ``calculate_frechet_distance``: same arguments (``eps``
    included), a Python float out, but no ``scipy.linalg.sqrtm``, no complex intermediate
    and no ``eps`` offset.

    Parameters
    ----------
    mu1, mu2 : array_like, shape (d,)
        Means. numpy arrays or CPU torch tensors of any real dtype; computed in float64.
    sigma1, sigma2 : array_like, shape (d, d)
        Covariances: symmetric positive semi-definite. torch CUDA tensors or CuPy arrays
        (all four on one device) are computed there, by the "polar" route.
    method : {"auto", "gram", "svd", "polar"}, optional
        Route for ``tr sqrt(sigma1 sigma2) = ||F1^T F2||_*`` (see Notes): "auto" picks
        "gram" or "svd" by an error estimate; "polar" is the GPU algorithm (a float64
        polar iteration of matrix products with a certified error, ``umsynth.kernels.polar``),
        run on the CPU for numpy input. GPU input accepts "auto" and "polar" only.
    config : PolarConfig, optional
        Settings of the "polar" route (certified relative error, step limit).
    eps : float, optional
        Accepted for pytorch-fid compatibility and unused: pytorch-fid adds ``eps`` to the
        diagonals when ``sqrtm`` of a singular product fails; umsynth's factorization
        handles singular covariances exactly and needs no offset. Must be a finite
        number >= 0.

    Returns
    -------
    float
        ``||mu1 - mu2||^2 + tr sigma1 + tr sigma2 - 2 tr sqrt(sigma1 sigma2)``, >= 0.
        Inputs of any magnitude are computed at a power-of-two scale where float64 has
        room (exactly), and the result scaled back.

    Raises
    ------
    ValueError
        For shapes that do not match, a covariance that is not square, NaN or Inf, a
        covariance that is not symmetric (``max|S - S^T| > 1e-8 max|S|``) or clearly not
        positive semi-definite (an eigenvalue below ``-1e-6`` times the largest magnitude),
        an unknown method, GPU input where no CUDA device can run, or a distance
        beyond float64's range.
    umsynth.ConvergenceError
        When the "polar" route cannot certify its result within ``config.max_iter`` steps.

    Notes
    -----
    Method: when sigma1 is numerically positive definite, ``tr sqrt(S1 S2)`` is the sum of
    the square roots of the eigenvalues of ``L^T S2 L`` (``S1 = L L^T``; LAPACK's dpotrf,
    dsygst, then one symmetric eigenvalue solve), taken when the error estimate below allows.
    Otherwise each covariance is factored, S = F F^T, by Cholesky when it is numerically
    positive definite, otherwise by pivoted Cholesky stopped at the numerical rank (pivots
    ``<= d * eps * max diag`` dropped; ``eigh`` only names the eigenvalue of a matrix that is
    not positive semi-definite). Then ``tr sqrt(S1 S2) = ||F1^T F2||_*``, the sum
    of singular values of ``B = F1^T F2``, taken from ``eigvalsh(B^T B)`` when the
    a-posteriori estimate of that route's error (``sqrt(delta)`` for each eigenvalue below
    ``delta = eps * lambda_max``, plus the root sum of squares of ``delta / (2 sqrt(lambda_i))``
    over the others) is below 1e-5 of the distance, else from the singular values of ``B``
    (LAPACK, backward stable).

    Error: the factorizations are backward stable, so for a positive definite pair the
    result is the exact distance of covariances perturbed by about ``d * eps`` relative;
    against a float64 SVD reference the relative error on ReLU features with decaying
    spectra (d = 64 to 4096) measured 1e-13 to 1e-10 for full-rank covariances and up to
    1e-7 for rank-deficient ones given as matrices. The exact distance is never negative,
    so a negative computed value (rounding, or a covariance indefinite within the accepted
    tolerance) is returned as 0.
    A singular covariance given only as a matrix is ill-conditioned for tr sqrt (its zero
    eigenvalues are known only to rounding), so dropping rounding-level eigenvalues is a
    judgment; when the covariances come from n <= d samples, pass the features instead
    (:func:`frechet_distance_features`, or :class:`~umsynth.FeatureStats` with
    ``keep_features=True``): its factors are exact, and the error measured 1e-14 to 1e-9.

    Examples
    --------
    >>> import numpy as np
    >>> from umsynth import frechet_distance
    >>> d = 4
    >>> round(frechet_distance(np.zeros(d), 4 * np.eye(d), np.ones(d), np.eye(d)), 12)
    8.0
    """
    _check_method(method, config)
    _check_eps(eps)
    ops = device_ops(mu1, sigma1, mu2, sigma2)
    if ops is not None:
        _device_method(method)
        fd = frechet_device.distances(ops, *(a[None] for a in (mu1, sigma1, mu2, sigma2)), config)
        return float(ops.to_numpy(fd)[0])
    mu1 = _check_mean(mu1, "mu1")
    mu2 = _check_mean(mu2, "mu2")
    if mu1.shape != mu2.shape:
        raise ValueError(f"mu1 and mu2 have different lengths: {mu1.shape[0]} and {mu2.shape[0]}")
    d = mu1.shape[0]
    s1, max1 = check_cov_max(sigma1, "sigma1", d)
    s2, max2 = check_cov_max(sigma2, "sigma2", d)
    if np.array_equal(mu1, mu2) and np.array_equal(s1, s2):
        _cov_factor(s1, "sigma1")  # still refuse a covariance that is not PSD
        return 0.0  # one Gaussian: exactly 0, not the rounding of base - 2 tr sqrt
    e = max(scale_exponent(mu1, mu2), scale_exponent(np.array([max1, max2]), power=2), key=abs)
    if e:
        mu1, mu2, s1, s2 = np.ldexp(mu1, -e), np.ldexp(mu2, -e), np.ldexp(s1, -2 * e), np.ldexp(s2, -2 * e)
    if method == "auto":
        diff = mu1 - mu2
        base = float(diff @ diff) + float(np.trace(s1)) + float(np.trace(s2))
        tr_sqrt, definite = _product_route(s1, s2, base)
        if tr_sqrt is not None:
            return _scaled_back(max(base - 2.0 * tr_sqrt, 0.0), e)
        f1 = _cov_factor(s1, "sigma1", try_cholesky=definite)
    else:
        f1 = _cov_factor(s1, "sigma1")
    f2 = _cov_factor(s2, "sigma2")
    fd = _distance(mu1, float(np.trace(s1)), f1, 1.0, mu2, float(np.trace(s2)), f2, 1.0, method, config)
    return _scaled_back(fd, e)


def _check_eps(eps) -> None:
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.integer, np.floating)):
        raise TypeError(f"eps must be a number, got {eps!r}")
    if not (np.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")


def _scaled_back(fd: float, e: int) -> float:
    """A distance computed on inputs divided by 2^e (covariances by 4^e), scaled back."""
    if not e:
        return fd
    with np.errstate(over="ignore"):
        out = float(np.ldexp(fd, 2 * e))
    if not np.isfinite(out):
        raise ValueError(f"the Fréchet distance ({fd:.6g} * 2^{2 * e}) is beyond float64's range")
    return out


def _device_method(method: str) -> None:
    if method not in ("auto", "polar"):
        raise ValueError(f"method={method!r} runs on the CPU only; GPU input takes 'auto' or 'polar'")


def frechet_distance_batch(mus1: Any, sigmas1: Any, mus2: Any, sigmas2: Any, *, method: str = "auto",
                           config: "PolarConfig | None" = None) -> Any:
    """Fréchet distances of B pairs of Gaussians of one dimension, in one call.

    Parameters
    ----------
    mus1, mus2 : array_like, shape (B, d)
        Means.
    sigmas1, sigmas2 : array_like, shape (B, d, d)
        Covariances. On the GPU (torch CUDA or CuPy, all on one device) every pair goes
        through one batched polar iteration: one launch sequence for the whole table.
    method, config
        As in :func:`frechet_distance`. On the CPU "polar" runs the GPU algorithm batched
        exactly as the kernel batches it; the other routes take the pairs one by one.

    Returns
    -------
    numpy.ndarray or GPU array, shape (B,)
        The distances, float64: a numpy array for host input, else an array of the
        inputs' framework on their device.

    Raises
    ------
    ValueError, umsynth.ConvergenceError
        As :func:`frechet_distance`; an error names the argument and the pair index.
    """
    _check_method(method, config)
    ops = device_ops(mus1, sigmas1, mus2, sigmas2)
    if ops is not None:
        _device_method(method)
        return frechet_device.distances(ops, mus1, sigmas1, mus2, sigmas2, config)
    mus1, mus2 = as_float64(mus1, "mus1"), as_float64(mus2, "mus2")
    sigmas1, sigmas2 = as_float64(sigmas1, "sigmas1"), as_float64(sigmas2, "sigmas2")
    frechet_device.check_batch_shapes(mus1.shape, sigmas1.shape, mus2.shape, sigmas2.shape)
    batch, d = mus1.shape
    if method != "polar":
        return np.array([frechet_distance(mus1[p], sigmas1[p], mus2[p], sigmas2[p], method=method)
                         for p in range(batch)], dtype=np.float64)
    m = np.zeros((batch, d, d))
    base = np.zeros(batch)
    exps = np.zeros(batch, dtype=np.int64)
    for p in range(batch):
        s1, max1 = check_cov_max(sigmas1[p], f"sigmas1[{p}]", d)
        s2, max2 = check_cov_max(sigmas2[p], f"sigmas2[{p}]", d)
        mu1, mu2 = mus1[p], mus2[p]
        e = max(scale_exponent(mu1, mu2), scale_exponent(np.array([max1, max2]), power=2), key=abs)
        if e:  # each pair at its own power-of-two scale, as in frechet_distance
            mu1, mu2, s1, s2 = np.ldexp(mu1, -e), np.ldexp(mu2, -e), np.ldexp(s1, -2 * e), np.ldexp(s2, -2 * e)
        exps[p] = e
        f1, f2 = _cov_factor(s1, f"sigmas1[{p}]"), _cov_factor(s2, f"sigmas2[{p}]")
        # dropped eigen-directions become zero columns: zero singular values, harmless
        m[p, :f1.shape[1], :f2.shape[1]] = f1.T @ f2
        diff = mu1 - mu2
        base[p] = float(diff @ diff) + float(np.trace(s1)) + float(np.trace(s2))
    fd = np.maximum(base - 2.0 * _polar_norms(m, base, config), 0.0)
    return np.array([_scaled_back(float(v), int(e)) for v, e in zip(fd, exps)], dtype=np.float64)


def frechet_distance_features(x1: Any, x2: Any, *, method: str = "auto",
                              config: "PolarConfig | None" = None) -> float:
    """Fréchet distance between the Gaussians fitted to two feature sets.

    Parameters
    ----------
    x1 : array_like, shape (n1, d)
        Features of the first set, one row per sample (numpy or CPU torch, any real dtype;
        computed in float64).
    x2 : array_like, shape (n2, d)
        Features of the second set.
    method, config
        Route for the nuclear norm, as in :func:`frechet_distance` (CPU input only).

    Returns
    -------
    float
        The distance between N(mean(x1), cov(x1)) and N(mean(x2), cov(x2)), with unbiased
        (n - 1) covariances, as :func:`frechet_distance` would give for them.

    Raises
    ------
    ValueError
        For arrays that are not 2-D, different feature dimensions, fewer than 2 rows, NaN
        or Inf.

    Notes
    -----
    A set with n <= d samples has a covariance of rank n - 1; its centred features divided by
    sqrt(n - 1) are then an exact factor (the centring direction removed by a Householder
    reflection, leaving n - 1 columns), and the work is an (n1 - 1) x (n2 - 1) cross-product
    and its nuclear norm, taken as in :func:`frechet_distance`. Against a float64 SVD
    reference the relative error measured 1e-14 to 2e-9; at n = 1000, d = 2048 it takes
    about 0.25 s on 2 cores, about 100x less than ``sqrtm`` (benchmarks/RESULTS.md). A set
    with n > d goes through its d x d covariance as in :func:`frechet_distance`.
    """
    _check_method(method, config)
    a = _check_features(x1, "x1")
    b = _check_features(x2, "x2")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"x1 and x2 have different feature dimensions: {a.shape[1]} and {b.shape[1]}")
    e = scale_exponent(a, b)
    if e:  # features near float64's limits: at a power-of-two scale, as in frechet_distance
        a, b = np.ldexp(a, -e), np.ldexp(b, -e)
    fd = _distance(*_feature_side(a, "cov(x1)"), *_feature_side(b, "cov(x2)"), method, config)
    return _scaled_back(fd, e)


def _check_features(x: Any, name: str) -> np.ndarray:
    arr = as_float64(x, name)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (samples, features) array, got shape {arr.shape}")
    if arr.shape[0] < 2:
        raise ValueError(f"{name} has {arr.shape[0]} sample(s); a covariance needs at least 2")
    return arr


def frechet_distance_from_stats(a: Any, b: Any, *, method: str = "auto",
                                config: "PolarConfig | None" = None) -> float:
    """Fréchet distance between two :class:`~umsynth.FeatureStats`.

    Parameters
    ----------
    a, b : FeatureStats
        Statistics of the two sets, of the same dimension. Each needs at least 2 samples,
        or a covariance read from a pytorch-fid file.
        Statistics accumulated on a GPU are compared there, by the "polar" route.
    method, config
        Route for the nuclear norm and its settings, as in :func:`frechet_distance`.

    Returns
    -------
    float
        The distance between N(a.mean, a.cov) and N(b.mean, b.cov).

    Raises
    ------
    ValueError
        For different dimensions, fewer than 2 samples, statistics made by different named
        feature extractors, or a covariance that is not positive semi-definite.

    Notes
    -----
    A side that kept its features (``keep_features=True``) and has n <= d samples takes the
    exact Gram route of :func:`frechet_distance_features`; otherwise its covariance is
    factored as in :func:`frechet_distance`.
    """
    for name, s in (("a", a), ("b", b)):
        if not isinstance(s, FeatureStats):
            raise TypeError(f"{name}: expected a FeatureStats, got {type(s).__name__}")
    if a.dim != b.dim:
        raise ValueError(f"the statistics have different feature dimensions: {a.dim} and {b.dim}")
    if a.extractor and b.extractor and a.extractor != b.extractor:
        raise ValueError(f"the statistics come from different feature extractors: "
                         f"{a.extractor!r} and {b.extractor!r}")
    _check_method(method, config)
    if a.device_ops is not None or b.device_ops is not None:
        _device_method(method)
        return frechet_device.stats_distance(a, b, config)
    ca, cb = a.cov, b.cov  # raise for fewer than 2 samples
    if np.array_equal(a.mean, b.mean) and np.array_equal(ca, cb):
        return 0.0  # the same statistics: exactly 0
    e = max(scale_exponent(a.mean, b.mean), scale_exponent(ca, cb, power=2), key=abs)
    fd = _distance(*_stats_side(a, ca, e, "a"), *_stats_side(b, cb, e, "b"), method, config)
    return _scaled_back(fd, e)


def _stats_side(s, cov, e: int, name: str) -> tuple[np.ndarray, float, np.ndarray, float]:
    """One side's mean, trace, factor and scale, its values divided by 2^e (see
    scale_exponent)."""
    mean, cov = np.ldexp(s.mean, -e), np.ldexp(cov, -2 * e)
    if s.keep_features and s.n is not None and s.n <= s.dim:
        return mean, float(np.trace(cov)), gram_factor(np.ldexp(s.features, -e) - mean), 1.0 / np.sqrt(s.n - 1)
    return mean, float(np.trace(cov)), _cov_factor(cov, f"{name}.cov"), 1.0
