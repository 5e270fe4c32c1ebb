"""Covariance matrices: centring, checks and tolerances, the Gram-route factor.

The layer below both :mod:`umsynth.stats` (which accumulates covariances) and
:mod:`umsynth.frechet` with :mod:`umsynth.kernels.frechet_device` (which compare them), so
that each reads its checks and tolerances from here rather than from the other.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from umsynth.kernels.arrays import check_finite, to_numpy

__all__ = ["SYMMETRY_RTOL", "PSD_RTOL", "as_float64", "centre", "check_cov", "check_cov_max",
           "gram_factor", "scale_exponent"]

# A covariance is refused as non-symmetric beyond this relative difference (max |S - S^T| / max |S|).
SYMMETRY_RTOL = 1e-8
# ... and as not positive semi-definite when an eigenvalue is below -PSD_RTOL * max |eigenvalue|.
PSD_RTOL = 1e-6


def as_float64(x: Any, name: str, finite: bool = True) -> np.ndarray:
    """A real numpy array or CPU tensor as a finite float64 numpy array.

    ``finite=False`` leaves the NaN/Inf check to the caller (check_cov reads it off the
    maximum and minimum it needs anyway).

    Raises
    ------
    TypeError
        For a complex or non-numeric dtype.
    ValueError
        For NaN or Inf, naming `name`.
    """
    arr, _ = to_numpy(x, name)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{name}: expected a real float array, got dtype {arr.dtype}")
    arr = np.asarray(arr, dtype=np.float64)
    if finite:
        check_finite(arr, name)
    return arr


def scale_exponent(*arrays: np.ndarray, power: int = 1) -> int:
    """e such that dividing by 2^e brings the arrays' magnitudes near 1, where needed.

    0 while the largest magnitude m (of the arrays' entries, each entry's |v|^(1/power))
    lies in [2^-200, 2^200]: there the covariances (m^2) and the Gram matrices of their
    factors (m^4) neither overflow nor underflow in float64 (LAPACK failed to converge on
    covariances near 1e300). Outside that range,
    the exponent of m. Scaling by a power of two is exact, and Fréchet distances scale with
    its square, so callers divide by 2^e and multiply the result back.
    """
    m = max((float(np.max(np.abs(a))) for a in arrays if a.size), default=0.0)
    if power == 2:
        m = float(np.sqrt(m))
    if m == 0.0 or 2.0 ** -200 <= m <= 2.0 ** 200:
        return 0
    return int(np.frexp(m)[1])


def centre(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and centred copy of the rows of a float64 array, to full precision.

    Parameters
    ----------
    x : numpy.ndarray, shape (n, d), float64

    Returns
    -------
    mean : numpy.ndarray, shape (d,)
    centred : numpy.ndarray, shape (n, d)
        ``x - mean``.

    Notes
    -----
    Two passes: the mean of the first centring is subtracted again, which removes the
    rounding error of the first mean (matters when all features share a large offset).
    """
    # positional axes: the same code centres torch and CuPy arrays on their device
    mean = x.mean(0)
    xc = x - mean
    fix = xc.mean(0)
    xc -= fix
    return mean + fix, xc


def check_cov(sigma: Any, name: str, dim: int) -> np.ndarray:
    """Validate a covariance matrix and return its symmetrised float64 copy.

    Parameters
    ----------
    sigma : array_like, shape (dim, dim)
    name : str
        Named in error messages.
    dim : int
        The dimension the matrix must have (that of its mean).

    Returns
    -------
    numpy.ndarray, shape (dim, dim)
        ``(S + S^T) / 2`` in float64 (exactly symmetric).

    Raises
    ------
    ValueError
        For a matrix that is not square or not dim x dim, NaN or Inf, or one that is not
        symmetric (``max |S - S^T| > SYMMETRY_RTOL * max |S|``).
    """
    return check_cov_max(sigma, name, dim)[0]


def check_cov_max(sigma: Any, name: str, dim: int) -> tuple[np.ndarray, float]:
    """:func:`check_cov`, and the largest magnitude of its result (for :func:`scale_exponent`).

    Passes over the matrix are what it costs: one tiled S + S^T, whose maximum and minimum
    also reveal NaN or Inf, and S - (S + S^T) / 2 (by blocks of rows) for the symmetry check.
    """
    s = np.atleast_2d(as_float64(sigma, name, finite=False))
    if s.ndim != 2 or s.shape[0] != s.shape[1]:
        raise ValueError(f"{name} must be a square covariance matrix, got shape {s.shape}")
    if s.shape[0] != dim:
        raise ValueError(f"{name} has shape {s.shape}, which does not match the mean's dimension {dim}")
    if not s.size:
        return s.copy(), 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        sym = _plus_transpose(s)
    sym *= 0.5
    top = max(float(sym.max()), -float(sym.min()))
    if not np.isfinite(top):
        check_finite(s, name)  # NaN or Inf in S
        sym = 0.5 * s + 0.5 * s.T  # S + S^T overflowed (entries beyond half of float64's range)
        top = max(float(sym.max()), -float(sym.min()))
    asym = 2.0 * _max_abs_difference(s, sym)  # max |S - S^T|
    if asym > SYMMETRY_RTOL * top:  # max |S| >= top: read only when top does not settle it
        scale = max(float(s.max()), -float(s.min()))
        if asym > SYMMETRY_RTOL * scale:
            raise ValueError(f"{name} is not symmetric: max |S - S^T| = {asym:.3g} is more than "
                             f"{SYMMETRY_RTOL:g} of max |S| = {scale:.3g}")
    return sym, top


def _max_abs_difference(a: np.ndarray, b: np.ndarray, chunk: int = 1 << 15) -> float:
    """max |a - b| for 2-D arrays of one shape, by blocks of rows through a small buffer: a fresh
    full-size temporary costs page faults (about 1 ms per 2 MiB on the shared VM), more than
    the subtraction."""
    rows = max(1, chunk // a.shape[1])
    buf = np.empty((min(rows, a.shape[0]), a.shape[1]))
    top = 0.0
    for i in range(0, a.shape[0], rows):
        part = buf[:min(rows, a.shape[0] - i)]
        np.subtract(a[i:i + rows], b[i:i + rows], out=part)
        top = max(top, float(part.max()), -float(part.min()))
    return top


def _plus_transpose(s: np.ndarray, block: int = 16) -> np.ndarray:
    """S + S^T for a square array, by tiles: element-wise S^T reads memory with a stride of
    one row (a page at d = 512), and numpy's loop then misses the TLB at every element; a
    block view makes numpy walk tile by tile (1.5x to 2x faster at d = 512 and 2048).
    S + S^T is exactly symmetric (s_ij + s_ji is one rounding)."""
    d = s.shape[0]
    k = d - d % block
    out = np.empty((d, d))
    if k:
        def tiles(a):  # (tile row, tile column, row in tile, column in tile)
            return a[:k, :k].reshape(k // block, block, k // block, block).transpose(0, 2, 1, 3)
        np.add(tiles(s), tiles(s.T), out=tiles(out))
    np.add(s[k:], s.T[k:], out=out[k:])
    np.add(s[:k, k:], s.T[:k, k:], out=out[:k, k:])
    return out


def gram_factor(xc):
    """Factor (d x (n - 1)) of the scatter matrix xc^T xc of centred rows xc (n x d).

    Centred rows sum to zero, so the all-ones vector is an exact null direction that
    would give the small cross-product a structurally zero singular value (sqrt-sized
    error on the eigenvalue route). A Householder reflection H with H 1 = -sqrt(n) e1
    turns that direction into the first row of H xc, which is dropped; H is orthogonal,
    so (H xc)^T (H xc) = xc^T xc. Works on numpy, torch and CuPy arrays alike.
    """
    n = xc.shape[0]
    r = np.sqrt(n)
    # rows 1.. of H xc, H = I - v v^T / (n + r), v = 1 + r e1
    w = (xc.sum(0) + r * xc[0]) / (n + r)  # positional axis: numpy, torch and CuPy alike
    return (xc[1:] - w).T
