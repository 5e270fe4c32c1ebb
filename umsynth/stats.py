"""Streaming, mergeable feature statistics (mean and covariance) in float64."""
from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from umsynth.covariance import centre, check_cov
from umsynth.files import atomic_write, read_npz
from umsynth.kernels.arrays import check_finite, device_ops, to_numpy

__all__ = ["FeatureStats", "centre"]

# Written into every .npz; load refuses files from a newer format.
FORMAT_NAME = "umsynth-feature-stats"
FORMAT_VERSION = 1


class FeatureStats:
    """Running mean and covariance of feature vectors, exact to merge across shards.

    Parameters
    ----------
    dim : int
        Feature dimension d.
    keep_features : bool, optional
        Also keep the raw features (as float64 rows). With n <= d samples the Fréchet
        distance then takes the exact small-Gram route instead of the rank-deficient d x d
        covariance. Costs 8 * n * d bytes.
    extractor : str, optional
        Name of the feature extractor that made the features. Saved with the statistics;
        :func:`~umsynth.frechet_distance_from_stats` refuses two statistics whose names differ.

    Attributes
    ----------
    dim : int
    keep_features : bool
    extractor : str or None

    Notes
    -----
    The state is the count n, the float64 mean and the float64 scatter matrix
    ``M2 = sum (x - mean)(x - mean)^T``. Each batch is centred on its own mean (two passes,
    see :func:`centre`) and combined with Chan et al.'s parallel formula

        M2 = M2_a + M2_b + delta delta^T * n_a n_b / (n_a + n_b),  delta = mean_b - mean_a,

    so no sum of raw squares is ever formed: a large common offset (1e6 + noise) does not
    cancel precision away, and shards merged in any grouping match a single pass to
    rounding (about 1e-15 relative).

    A batch given as a torch CUDA tensor or a CuPy array is accumulated on its device, in
    float64 with the same formulas; the statistics then stay there (``mean``, ``cov`` and
    ``features`` are arrays of that framework, :meth:`merge` works between statistics on
    one device, :meth:`save` copies to the host). The first non-empty batch decides where
    they live; a later batch from elsewhere is refused.

    Statistics read from a pytorch-fid file (:meth:`from_pytorch_fid`) have a covariance but
    no sample count (``n`` is None); they can be compared but not merged or updated.

    Examples
    --------
    >>> import numpy as np
    >>> from umsynth import FeatureStats
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((100, 8))
    >>> a, b = FeatureStats(8), FeatureStats(8)
    >>> _ = a.update(x[:30]); _ = b.update(x[30:])
    >>> bool(np.allclose(a.merge(b).cov, np.cov(x, rowvar=False)))
    True
    """

    def __init__(self, dim: int, keep_features: bool = False, extractor: str | None = None) -> None:
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
            raise TypeError(f"dim must be an integer, got {dim!r}")
        dim = int(dim)
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.dim = dim
        self.keep_features = bool(keep_features)
        self.extractor = extractor
        self._n: int | None = 0
        self._mean = np.zeros(dim)
        self._m2: np.ndarray | None = np.zeros((dim, dim))
        self._sigma: np.ndarray | None = None  # only for pytorch-fid statistics (n unknown)
        self._rows: list[np.ndarray] = []
        self._ops = None  # umsynth.kernels.arrays ops while the state lives on a GPU

    # ------------------------------------------------------------------ accumulation

    def update(self, x: Any) -> "FeatureStats":
        """Add a batch of features.

        Parameters
        ----------
        x : array_like, shape (batch, dim) or (dim,)
            numpy array or CPU torch tensor of any real dtype; a 1-D array is one sample.

        Returns
        -------
        FeatureStats
            ``self``, so calls can be chained.

        Raises
        ------
        ValueError
            For a wrong shape or dimension, NaN or Inf, statistics without a sample count,
            or features so large that the covariance overflows float64 (the statistics are
            then left as they were).
        """
        ops = device_ops(x)
        if ops is not None or self._ops is not None:
            return self._update_device(ops, x)
        arr, _ = to_numpy(x, "features")
        if arr.dtype.kind not in "fiub":
            raise TypeError(f"features: expected a real array, got dtype {arr.dtype}")
        arr = np.asarray(arr, dtype=np.float64)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != self.dim:
            raise ValueError(f"features must have shape (batch, {self.dim}), got {arr.shape}")
        check_finite(arr, "features")
        if arr.shape[0] == 0:
            return self
        with np.errstate(over="ignore", invalid="ignore"):  # _combine refuses an overflow
            mean, xc = centre(arr)
            m2 = xc.T @ xc
        self._combine(arr.shape[0], mean, m2, [arr.copy()] if self.keep_features else [])
        return self

    def _update_device(self, ops, x) -> "FeatureStats":
        """update() for a GPU batch: the same steps with the batch's framework."""
        self._require_count("update")
        if ops is None or (self._ops is not None and ops.device != self._ops.device):
            raise ValueError(f"features: these statistics live on {self._ops.device}; pass batches there")
        arr = ops.asarray(x, "features")
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != self.dim:
            raise ValueError(f"features must have shape (batch, {self.dim}), got {tuple(arr.shape)}")
        if arr.shape[0] == 0:
            return self
        if self._ops is None:
            if self._n:
                raise ValueError("features: these statistics hold host data; a GPU batch cannot be added")
            self._ops = ops
            self._mean = ops.zeros(self.dim)
            self._m2 = ops.zeros((self.dim, self.dim))
        mean, xc = centre(arr)
        self._combine(int(arr.shape[0]), mean, xc.T @ xc, [ops.copy(arr)] if self.keep_features else [])
        return self

    @property
    def device_ops(self):
        """GPU operations of the framework holding the statistics; None on the host."""
        return self._ops

    def merge(self, other: "FeatureStats") -> "FeatureStats":
        """Add the statistics of another shard, exactly (Chan's parallel formula).

        Parameters
        ----------
        other : FeatureStats
            Statistics of the same dimension, for example from another process or machine.

        Returns
        -------
        FeatureStats
            ``self``, updated in place. The merged statistics keep features only if both
            sides kept them.

        Raises
        ------
        ValueError
            For different dimensions or extractors, or statistics without a sample count.
        """
        if not isinstance(other, FeatureStats):
            raise TypeError(f"can only merge a FeatureStats, got {type(other).__name__}")
        if other.dim != self.dim:
            raise ValueError(f"cannot merge statistics of dimension {other.dim} into dimension {self.dim}")
        if self.extractor and other.extractor and self.extractor != other.extractor:
            raise ValueError(f"cannot merge statistics of extractor {other.extractor!r} into {self.extractor!r}")
        self._require_count("merge")
        other._require_count("merge")
        if (self._ops is None) != (other._ops is None) or (
                self._ops is not None and self._ops.device != other._ops.device):
            if self._n and other._n:
                raise ValueError("cannot merge statistics held on different devices (host and GPU)")
            if not self._n:  # empty side: adopt the other's device
                self._ops = other._ops
                self._mean, self._m2 = other._mean * 0, other._m2 * 0
        rows = list(other._rows) if (self.keep_features and other.keep_features) else []
        if not other.keep_features:
            self.keep_features = False
            self._rows = []
        self.extractor = self.extractor or other.extractor
        if other._n:
            self._combine(other._n, other._mean, other._m2, rows)
        return self

    def _combine(self, nb: int, mean_b: np.ndarray, m2_b: np.ndarray, rows: list[np.ndarray]) -> None:
        self._require_count("update")
        na = self._n
        n = na + nb
        with np.errstate(over="ignore", invalid="ignore"):
            delta = mean_b - self._mean
            mean = self._mean + delta * (nb / n)
            outer = np.outer if self._ops is None else self._ops.outer
            m2 = self._m2 + m2_b + outer(delta, delta * (na * nb / n))
            # keep M2 exactly symmetric whatever rounding the sums above did
            m2 = (m2 + m2.T) * 0.5
        # nothing that save() could write and load() would refuse: check before committing
        # (max/min propagate NaN; one small device-to-host copy on a GPU)
        if not all(math.isfinite(float(v)) for v in (mean.max(), mean.min(), m2.max(), m2.min())):
            raise ValueError("features: the mean or covariance overflows float64 (features "
                             "of magnitude around 1e154 or more); scale the features down")
        self._mean, self._m2, self._n = mean, m2, n
        self._rows.extend(rows)

    def _require_count(self, what: str) -> None:
        if self._n is None:
            raise ValueError(f"cannot {what}: these statistics have no sample count "
                             "(read from a pytorch-fid mu/sigma file)")

    # ------------------------------------------------------------------ results

    @property
    def n(self) -> int | None:
        """Number of samples seen; None for statistics read from a pytorch-fid file."""
        return self._n

    @property
    def mean(self) -> np.ndarray:
        """Mean feature vector, float64, shape (dim,) (a copy, on the statistics' device)."""
        return self._mean.copy() if self._ops is None else self._ops.copy(self._mean)

    @property
    def cov(self) -> np.ndarray:
        """Unbiased covariance ``M2 / (n - 1)``, float64, shape (dim, dim).

        Raises
        ------
        ValueError
            With fewer than 2 samples.
        """
        if self._n is None:
            return self._sigma.copy()
        if self._n < 2:
            raise ValueError(f"a covariance needs at least 2 samples, these statistics have {self._n}")
        return self._m2 / (self._n - 1)

    @property
    def features(self) -> np.ndarray:
        """The kept raw features, float64, shape (n, dim).

        Raises
        ------
        ValueError
            If the statistics were made without ``keep_features=True``.
        """
        if not self.keep_features:
            raise ValueError("these statistics did not keep their features (keep_features=False)")
        if len(self._rows) != 1:
            # concatenate once and cache: later calls return the same array
            if self._ops is not None:
                self._rows = [self._ops.concat(self._rows)]
            else:
                self._rows = [np.concatenate(self._rows) if self._rows else np.zeros((0, self.dim))]
        return self._rows[0]

    def __repr__(self) -> str:
        return (f"FeatureStats(dim={self.dim}, n={self._n}, keep_features={self.keep_features}, "
                f"extractor={self.extractor!r})")

    # ------------------------------------------------------------------ files

    def save(self, path: str | os.PathLike) -> None:
        """Write the statistics to an .npz file, atomically.

        The file holds ``mu`` and ``sigma`` under pytorch-fid's names, so pytorch-fid can read
        it, and also ``n``, ``dim``, the format name and version, the extractor name, and
        ``features`` when they were kept. ``sigma`` is ``M2 / max(n - 1, 1)``, from which
        :meth:`load` restores M2 for exact merging.

        Parameters
        ----------
        path : str or os.PathLike
            Destination, used exactly as given (no suffix is added).
        """
        if self._n is None:
            sigma, n = self._sigma, -1
        else:
            sigma, n = self._m2 / max(self._n - 1, 1), self._n
        host = (lambda a: a) if self._ops is None else self._ops.to_numpy
        arrays = {
            "format": np.array(FORMAT_NAME),
            "version": np.array(FORMAT_VERSION),
            "n": np.array(n, dtype=np.int64),
            "dim": np.array(self.dim, dtype=np.int64),
            "extractor": np.array(self.extractor or ""),
            "mu": host(self._mean),
            "sigma": host(sigma),
        }
        if self.keep_features:
            arrays["features"] = host(self.features)
        atomic_write(os.fspath(path), lambda tmp: np.savez(tmp, **arrays), suffix=".npz")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FeatureStats":
        """Read statistics written by :meth:`save`, or a pytorch-fid ``mu``/``sigma`` file.

        Parameters
        ----------
        path : str or os.PathLike

        Returns
        -------
        FeatureStats

        Raises
        ------
        ValueError
            For a file that is neither, a newer format version, or inconsistent contents.
        """
        with _open_npz(path) as f:
            if "format" not in f.files:
                return cls._from_mu_sigma(f, path)
            if str(f["format"]) != FORMAT_NAME:
                raise ValueError(f"{path}: unknown statistics format {str(f['format'])!r}")
            version = int(f["version"])
            if version > FORMAT_VERSION:
                raise ValueError(f"{path}: statistics format version {version} is newer than this "
                                 f"umsynth reads ({FORMAT_VERSION}); upgrade umsynth")
            missing = [k for k in ("n", "dim", "extractor") if k not in f.files]
            if missing:
                raise ValueError(f"{path}: statistics file without {', '.join(missing)}")
            n, dim = int(f["n"]), int(f["dim"])
            if n < 0:
                out = cls._from_mu_sigma(f, path)
                out.extractor = str(f["extractor"]) or None
                _check_saved_dim(out.dim, dim, path)
                return out
            mu, sigma = _read_mu_sigma(f, path)
            _check_saved_dim(mu.shape[0], dim, path)
            out = cls(mu.shape[0], keep_features="features" in f.files,
                      extractor=str(f["extractor"]) or None)
            out._n = n
            out._mean = mu
            out._m2 = sigma * max(n - 1, 1)
            if out.keep_features:
                feats = np.asarray(f["features"], dtype=np.float64)
                if feats.shape != (n, out.dim):
                    raise ValueError(f"{path}: features have shape {feats.shape}, expected {(n, out.dim)}")
                out._rows = [feats]
            return out

    @classmethod
    def from_pytorch_fid(cls, path: str | os.PathLike) -> "FeatureStats":
        """Read a pytorch-fid statistics file (``mu`` and ``sigma`` in an .npz).

        Parameters
        ----------
        path : str or os.PathLike

        Returns
        -------
        FeatureStats
            With ``n`` None (pytorch-fid does not store the count) and ``cov`` equal to the
            stored ``sigma``. It can be compared, not merged or updated.

        Raises
        ------
        ValueError
            For missing keys, wrong shapes, NaN or Inf, or a non-symmetric ``sigma``.
        """
        with _open_npz(path) as f:
            return cls._from_mu_sigma(f, path)

    @classmethod
    def _from_mu_sigma(cls, f, path) -> "FeatureStats":
        mu, sigma = _read_mu_sigma(f, path)
        out = cls(mu.shape[0])
        out._n = None
        out._mean = mu
        out._m2 = None
        out._sigma = sigma
        return out

    # ------------------------------------------------------------------ distributed

    def all_reduce(self, group=None) -> "FeatureStats":
        """Combine the statistics of all ``torch.distributed`` processes, exactly, in place.

        Two all-reduces (sums, float64): first n and n * mean give the global mean mu; then
        each process adds ``M2_r + n_r (mean_r - mu)(mean_r - mu)^T``, which sums to the
        global scatter matrix (the parallel-variance identity; no raw sums of squares, so no
        cancellation). Kept raw features are dropped (the covariance route is used).

        Parameters
        ----------
        group : torch.distributed.ProcessGroup, optional
            The processes to combine (default: the whole world). Every process of the group
            must call this method.

        Returns
        -------
        FeatureStats
            ``self``, now the statistics of all processes' samples, identical on every process.

        Raises
        ------
        ValueError
            For statistics without a sample count, or held on a GPU.
        """
        import torch
        import torch.distributed as dist

        self._require_count("all-reduce")
        if self._ops is not None:
            raise ValueError(f"cannot all-reduce statistics held on {self._ops.device}; "
                             "accumulate host features")
        n_r = self._n
        mean_r = self._mean
        head = torch.from_numpy(np.concatenate([[float(n_r)], mean_r * n_r]))
        dist.all_reduce(head, group=group)
        n = int(round(float(head[0])))
        if n == 0:
            return self
        mu = head[1:].numpy() / n
        delta = mean_r - mu
        m2 = self._m2 if n_r else np.zeros((self.dim, self.dim))
        part = torch.from_numpy(m2 + np.outer(delta, delta * n_r))
        dist.all_reduce(part, group=group)
        m2 = part.numpy()
        # keep M2 exactly symmetric whatever rounding the sums did
        self._n, self._mean, self._m2 = n, mu, (m2 + m2.T) * 0.5
        self.keep_features, self._rows = False, []
        return self


def _check_saved_dim(found: int, saved: int, path) -> None:
    if found != saved:
        raise ValueError(f"{path}: the file says dim={saved}, but mu has {found} entries")


def _open_npz(path):
    # every array read up front, no pickles, sizes checked; errors name the file
    return read_npz(path, "statistics file")


def _read_mu_sigma(f, path) -> tuple[np.ndarray, np.ndarray]:
    missing = [k for k in ("mu", "sigma") if k not in f.files]
    if missing:
        raise ValueError(f"{path}: not a statistics file (missing {', '.join(missing)}; has {', '.join(f.files)})")
    mu = np.asarray(f["mu"], dtype=np.float64)
    sigma = np.asarray(f["sigma"], dtype=np.float64)
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise ValueError(f"{path}: mu has shape {mu.shape} and sigma {sigma.shape}; expected (d,) and (d, d)")
    check_finite(mu, f"{path}: mu")
    check_finite(sigma, f"{path}: sigma")
    return mu, check_cov(sigma, f"{path}: sigma", mu.shape[0])
