"""Many Fréchet distances, STDs and KIDs of row samples of one pool of features, batched.

The bootstrap and permutation tests of :mod:`umsynth.metrics.uncertainty` recompute the
calibrated cells for thousands of resamples of the same few hundred kept images. Called
one at a time, :func:`umsynth.frechet.frechet_distance_features` spends most of its time
in Python overhead at these sizes. Here every sample is a vector of counts over the rows
of a pool (real rows first, then the synthetic sets' rows; repeats allowed), and a
:class:`Design` lists the samples and the quantities wanted from them once, for all the
cells of a table. :meth:`Design.evaluate` then computes them for one cell's features:

* per sample: the covariance trace (and, where asked, the mean per-dimension STD), from
  its distinct rows weighted by their counts;
* per Fréchet block (a, b): ``|mu_a - mu_b|^2 + tr C_a + tr C_b - 2 tr sqrt(C_a C_b)``
  where ``tr sqrt(C_a C_b)`` is the nuclear norm of the centred cross-product
  ``(X_a - mu_a)(X_b - mu_b)^T / sqrt((n_a - 1)(n_b - 1))`` (the Gram route of
  :mod:`umsynth.frechet`). Its entries, the traces and the means' distance come from one
  Gram matrix of the pool per cell (rows centred at the real rows' mean);
  rows repeated c times enter once, scaled by sqrt(c) (the same singular values), the
  centring direction is removed by a Householder reflection (as in
  :func:`umsynth.covariance.gram_factor`), and the blocks of one shape share one stacked
  LAPACK call: eigenvalues of their small Gram matrices, or singular values for the blocks
  whose estimated rounding error is too large (as in :mod:`umsynth.frechet`);
* per KID pair (real sample, synthetic sample): the unbiased MMD² of the cubic kernel over
  pairs of different rows, divided by the real sample's kernel spread, from the kernel
  matrix of the pool (computed once per cell) and the count vectors; the same numbers as
  :func:`umsynth.metrics.kid.normalized_kid` with ids.

Where the Gram route would cost more than the direct one (samples of more distinct rows
than ``max(d, GRAM_MIN_ROWS)``, or a Gram matrix above ``GRAM_MAX_ENTRIES``) each block
goes through :func:`umsynth.frechet.frechet_distance_features` instead.
"""
from __future__ import annotations

import numpy as np

from umsynth.covariance import as_float64, centre, scale_exponent
from umsynth.frechet import frechet_distance_features

__all__ = ["Design", "CellValues", "GRAM_MAX_ENTRIES", "GRAM_MIN_ROWS"]

# Largest Gram matrix (pool rows x pool rows) kept for one cell: 128 MiB of float64.
GRAM_MAX_ENTRIES = 1 << 24
# The Gram route serves samples of up to max(d, this) distinct rows: below it the direct
# route's per-call overhead dominates whatever d is.
GRAM_MIN_ROWS = 64
# A block's eigenvalue route is kept when its estimated error is below this fraction of the
# distance (umsynth.frechet keeps 1e-5); the others take the SVD, about twice as slow.
_EIG_RTOL = 1e-10
_EPS = np.finfo(np.float64).eps
# Elements of one temporary (gathered rows, stacked blocks) before work is cut in chunks.
_CHUNK = 1 << 22


class CellValues:
    """What :meth:`Design.evaluate` returns for one cell.

    Attributes
    ----------
    fd : numpy.ndarray
        Fréchet distance of each block, in registration order.
    std : numpy.ndarray
        Mean per-dimension STD (ddof 0) of each sample registered with :meth:`Design.std`.
    kid : numpy.ndarray
        Normalized KID of each KID pair (nan where the real sample's spread is 0).
    """

    def __init__(self, fd: np.ndarray, std: np.ndarray, kid: np.ndarray) -> None:
        self.fd, self.std, self.kid = fd, std, kid


class Design:
    """Samples of a pool's rows and the quantities wanted from them (the same for every cell).

    Parameters
    ----------
    n_left : int
        The first ``n_left`` pool rows (the real images): the left sample of a Fréchet
        block and the real sample of a KID pair hold only these.
    """

    def __init__(self, n_left: int) -> None:
        self.n_left = int(n_left)
        self._rows: list[np.ndarray] = []
        self._counts: list[np.ndarray] = []
        self._blocks: list[tuple[int, int]] = []
        self._kid: list[tuple[int, int]] = []
        self._std: list[int] = []
        self._compiled = None

    def sample(self, rows) -> int:
        """Register the sample made of pool rows ``rows`` (a row given c times counts c times); returns its id."""
        rows, counts = np.unique(np.asarray(rows, dtype=np.int64), return_counts=True)
        self._rows.append(rows)
        self._counts.append(counts)
        self._compiled = None
        return len(self._rows) - 1

    def frechet(self, a: int, b: int) -> int:
        """Register the Fréchet distance between samples ``a`` (left rows only) and ``b``; returns its id."""
        self._blocks.append((int(a), int(b)))
        self._compiled = None
        return len(self._blocks) - 1

    def kid(self, real: int, syn: int) -> int:
        """Register the normalized KID of samples ``real`` (left rows only) and ``syn``; returns its id."""
        self._kid.append((int(real), int(syn)))
        self._compiled = None
        return len(self._kid) - 1

    def std(self, a: int) -> int:
        """Register the mean per-dimension STD (ddof 0) of sample ``a``; returns its id."""
        self._std.append(int(a))
        self._compiled = None
        return len(self._std) - 1

    def evaluate(self, parts) -> CellValues:
        """All registered quantities for one cell.

        Parameters
        ----------
        parts : sequence of array_like, shape (n_i, d)
            The pool, part by part (real rows first); sample rows index their concatenation.

        Returns
        -------
        CellValues

        Raises
        ------
        ValueError
            For features that are not finite, not 2-D, fewer rows than the samples refer to,
            or a Fréchet sample of fewer than 2 rows.
        """
        parts = [as_float64(p, "features") for p in parts]
        x = np.concatenate(parts)
        if x.ndim != 2:
            raise ValueError(f"features must be 2-D (samples, features), got shape {x.shape}")
        if self._compiled is None:
            self._compiled = _Compiled(self)
        plan = self._compiled
        if plan.max_row >= x.shape[0] or self.n_left > x.shape[0]:
            raise ValueError(f"the pool has {x.shape[0]} rows; the design refers to {max(plan.max_row + 1, self.n_left)}")
        return CellValues(plan.frechet(x), plan.std(x, np.cumsum([len(p) for p in parts])[:-1]), plan.kid(x))


def _stack(ids, rows, counts) -> tuple:
    """(ids, stacked rows, stacked counts as float) of samples with equally many distinct rows."""
    return np.asarray(ids), np.stack([rows[i] for i in ids]), np.stack([counts[i] for i in ids]).astype(np.float64)


def _by_size(ids, rows) -> list:
    groups: dict = {}
    for i in ids:
        groups.setdefault(rows[i].size, []).append(i)
    return list(groups.values())


class _Compiled:
    """A design's samples and blocks grouped by size, so that each group is one stacked computation."""

    def __init__(self, design: Design) -> None:
        rows, counts = design._rows, design._counts
        self.n_left, self.rows, self.counts = design.n_left, rows, counts
        self.n = np.array([c.sum() for c in counts], dtype=np.float64)
        self.max_row = max((int(r[-1]) for r in rows if r.size), default=-1)
        blocks = np.array(design._blocks, dtype=np.int64).reshape(-1, 2)
        self.blocks = blocks
        left = [rows[a] for a in np.unique(np.concatenate([blocks[:, 0], np.array(design._kid, dtype=np.int64)
                                                           .reshape(-1, 2)[:, 0]]))]
        if any(r.size and r[-1] >= self.n_left for r in left):
            raise ValueError("the left sample of a Fréchet block or KID pair must hold left (real) rows only")
        used = np.unique(blocks)
        if used.size and self.n[used].min() < 2:
            raise ValueError("a Fréchet distance needs samples of at least 2 rows")
        self.max_k = int(max((rows[i].size for i in used), default=0))
        self.trace_groups = [_stack(g, rows, counts) for g in _by_size(used.tolist(), rows)]
        keys: dict = {}
        for j, (a, b) in enumerate(blocks):
            keys.setdefault((rows[a].size, rows[b].size), []).append(j)
        self.block_groups = []
        for ids in keys.values():
            _, ia, ca = _stack(blocks[ids, 0], rows, counts)
            _, ib, cb = _stack(blocks[ids, 1], rows, counts)
            self.block_groups.append((np.array(ids), ia, ca, ib, cb))
        self.std_ids = np.array(design._std, dtype=np.int64)
        self.std_samples, self.std_index = np.unique(self.std_ids, return_inverse=True)
        pairs = np.array(design._kid, dtype=np.int64).reshape(-1, 2)
        self.kid_samples, inverse = np.unique(pairs, return_inverse=True)
        self.kid_index = inverse.reshape(pairs.shape)
        self._matrices: dict = {}

    def _dense(self, samples: np.ndarray, n_rows: int) -> np.ndarray:
        """Counts of ``samples`` as a dense (samples, rows) matrix (made once per design and pool size)."""
        key = (id(samples), n_rows)
        if key not in self._matrices:
            c = np.zeros((len(samples), n_rows))
            for i, s in enumerate(samples):
                c[i, self.rows[s]] = self.counts[s]
            self._matrices[key] = c
        return self._matrices[key]

    def gram_fits(self, x: np.ndarray) -> bool:
        """Whether the Gram route pays for this cell (see the module's notes)."""
        return (x.shape[0] ** 2 <= GRAM_MAX_ENTRIES and self.max_k <= max(x.shape[1], GRAM_MIN_ROWS)
                and scale_exponent(x) == 0)

    def frechet(self, x: np.ndarray) -> np.ndarray:
        blocks = self.blocks
        if not len(blocks):
            return np.empty(0)
        if not self.gram_fits(x):
            return np.array([frechet_distance_features(np.repeat(x[self.rows[a]], self.counts[a], axis=0),
                                                       np.repeat(x[self.rows[b]], self.counts[b], axis=0))
                             for a, b in blocks])
        # one frame for every sample: the real rows' mean at the origin
        mu, _ = centre(x[:self.n_left])
        z = x - mu
        gram = z @ z.T
        diag = np.diag(gram)
        ns = len(self.rows)
        quad, trace = np.empty(ns), np.empty(ns)  # |mean|^2 and tr C of each sample
        for group, idx_all, cnt_all in self.trace_groups:
            step = max(1, _CHUNK // idx_all.shape[1] ** 2)
            for s in range(0, len(group), step):
                ids, idx, cnt = group[s:s + step], idx_all[s:s + step], cnt_all[s:s + step]
                w = cnt / cnt.sum(1, keepdims=True)
                q = np.einsum("bi,bi->b", np.einsum("bij,bj->bi", gram[idx[:, :, None], idx[:, None, :]], w), w)
                n = self.n[ids]
                quad[ids], trace[ids] = q, np.maximum((cnt * diag[idx]).sum(1) - n * q, 0.0) / (n - 1.0)
        out = np.empty(len(blocks))
        for ids, ia, ca, ib, cb in self.block_groups:
            step = max(1, _CHUNK // (ia.shape[1] * ib.shape[1]))
            for s in range(0, len(ids), step):
                sel = ids[s:s + step]
                a, b = blocks[sel, 0], blocks[sel, 1]
                m, cross = _cross_products(gram, ia[s:s + step], ca[s:s + step], ib[s:s + step], cb[s:s + step])
                base = np.maximum(quad[a] + quad[b] - 2.0 * cross, 0.0) + trace[a] + trace[b]
                out[sel] = _distances(m, base, 1.0 / np.sqrt((self.n[a] - 1.0) * (self.n[b] - 1.0)))
        return out

    def std(self, x: np.ndarray, starts) -> np.ndarray:
        if not self.std_ids.size:
            return np.empty(0)
        # each part centred at its own mean, so that E[y^2] - E[y]^2 does not cancel
        y = np.concatenate([p - p.mean(0) for p in np.split(x, starts)])
        c = self._dense(self.std_samples, x.shape[0])
        c = c / c.sum(1, keepdims=True)
        mean = c @ y
        var = np.maximum(c @ (y * y) - mean * mean, 0.0)
        return np.sqrt(var).mean(1)[self.std_index]

    def kid(self, x: np.ndarray) -> np.ndarray:
        if not self.kid_index.size:
            return np.empty(0)
        d = x.shape[1]
        c = self._dense(self.kid_samples, x.shape[0])
        # C K, the kernel matrix made block of columns by block of columns
        kc = np.empty_like(c)
        step = max(1, _CHUNK // x.shape[0])
        for s in range(0, x.shape[0], step):
            kc[:, s:s + step] = c @ ((x @ x[s:s + step].T / d + 1.0) ** 3)
        diag = (np.einsum("ij,ij->i", x, x) / d + 1.0) ** 3
        n = c.sum(1)
        quad = np.einsum("ij,ij->i", kc, c)
        kept = np.maximum(n * n - (c * c).sum(1), 1.0)  # ordered pairs of rows of different images
        pair_mean = (quad - (c * c) @ diag) / kept
        spread = (n * (c @ diag) - quad) / kept  # kid._spread, summed in closed form
        r, s = self.kid_index[:, 0], self.kid_index[:, 1]
        mmd2 = pair_mean[r] + pair_mean[s] - 2.0 * np.einsum("ij,ij->i", kc[r], c[s]) / (n[r] * n[s])
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(spread[r] > 0, mmd2 / spread[r], np.nan)


def _householder_rows(m: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Rows 1.. of H m, for the reflection H that maps s (positive entries) to -|s| e1.

    ``s^T m = 0`` (weighted-centred rows), so the dropped row 0 of H m is zero up to
    rounding, and H is orthogonal: the singular values are kept, less the structural zero.
    """
    norm = np.sqrt(np.einsum("bi,bi->b", s, s))
    u = np.einsum("bi,bij->bj", s, m) + norm[:, None] * m[:, 0, :]
    return m[:, 1:, :] - s[:, 1:, None] * (u / (norm * (norm + s[:, 0]))[:, None])[:, None, :]


def _cross_products(gram: np.ndarray, ia, ca, ib, cb) -> tuple[np.ndarray, np.ndarray]:
    """Weighted, centred cross-products of stacked blocks (centring direction removed), and mean_a . mean_b.

    Row i of block a, column j of block b: sqrt(c_i c_j) (x_i - mu_a) . (x_j - mu_b), with
    count-weighted means; shape (blocks, k_a - 1, k_b - 1).
    """
    g = gram[ia[:, :, None], ib[:, None, :]]
    wa, wb = ca / ca.sum(1, keepdims=True), cb / cb.sum(1, keepdims=True)
    row = np.einsum("bij,bj->bi", g, wb)
    col = np.einsum("bi,bij->bj", wa, g)
    cross = np.einsum("bi,bi->b", wa, row)
    g -= row[:, :, None]
    g -= (col - cross[:, None])[:, None, :]
    sa, sb = np.sqrt(ca), np.sqrt(cb)
    g *= sa[:, :, None] * sb[:, None, :]
    if ia.shape[1] < 2 or ib.shape[1] < 2:
        return np.zeros((ia.shape[0], 0, 0)), cross  # one distinct row: a zero covariance
    g = _householder_rows(g, sa)
    return _householder_rows(g.transpose(0, 2, 1), sb), cross


def _distances(m: np.ndarray, base: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """FD = base - 2 scale ||m||_* of stacked blocks.

    As in :func:`umsynth.frechet._nuclear_norm`: the square roots of the eigenvalues of the
    smaller Gram matrix of each block (half the time of an SVD), kept where their
    estimated rounding error is below ``_EIG_RTOL`` of the distance; the other blocks
    take the singular values of ``m`` (backward stable).
    """
    if m.shape[1] == 0 or m.shape[2] == 0:
        return np.maximum(base, 0.0)
    small = m @ m.transpose(0, 2, 1) if m.shape[1] <= m.shape[2] else m.transpose(0, 2, 1) @ m
    lam = np.maximum(np.linalg.eigvalsh(small), 0.0)
    delta = _EPS * lam[:, -1:]
    lost = lam < delta
    with np.errstate(divide="ignore", invalid="ignore"):
        first = np.where(lost, 0.0, delta / (2.0 * np.sqrt(lam)))
    est = lost.sum(1) * np.sqrt(delta[:, 0]) + np.sqrt((first * first).sum(1))
    nuc = np.sqrt(lam).sum(1)
    fd = base - 2.0 * scale * nuc
    redo = ~(2.0 * scale * est <= _EIG_RTOL * fd)
    if redo.any():
        nuc[redo] = np.linalg.svd(m[redo], compute_uv=False).sum(1)
        fd = base - 2.0 * scale * nuc
    # sum sigma <= (tr_a + tr_b) / 2: a negative distance is rounding (as in umsynth.frechet)
    return np.maximum(fd, 0.0)
