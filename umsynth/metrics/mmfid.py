"""MM-FID and MM-STD: multi-model, multi-scale Fréchet distance and variety, in one streaming pass.

torch is imported only when :func:`mmfid` runs.
"""
from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass, field

import numpy as np

from umsynth.metrics.normalize import cross_set_normalize, mm_summary, reference_normalize
from umsynth.stats import FeatureStats

__all__ = ["DEFINITIONS", "mmfid", "MMFIDResult", "SetStats", "stream_stats", "allreduce_stats",
           "DEFAULT_KEEP", "FEATURE_BUFFER_ELEMENTS"]

SETSTATS_FORMAT = "umsynth-mmfid-set-stats"
SETSTATS_MANIFEST = "setstats.json"
# Numbers (float64) a cell's feature buffer holds before its statistics are updated.
FEATURE_BUFFER_ELEMENTS = 2**20
# Features kept per (set, cell) for k-NN sets, bootstrap and t-SNE when they are asked for.
DEFAULT_KEEP = 2000

DEFINITIONS = """\
A suite has K feature networks and S scales. Every image is resized once to each scale
(square, bilinear, antialiased), scaled to [-1, 1], and fed to every network; each
(network, scale) cell gets its own streaming mean and covariance.

  FD[k, s]  = Fréchet distance between the Gaussians of real and synthetic features
              (exact, umsynth.frechet_distance_from_stats; unbiased covariances).
  STD[k, s] = mean over feature dimensions of the standard deviation (ddof 0) of the
              synthetic features (higher: more varied).

Normalization "reference" (default for one synthetic set):
  FD_n[k, s]  = FD[k, s] / FD(real images with even index, real images with odd index)
  STD_n[k, s] = STD[k, s] / STD of the real features
  (1 = as far as one half of the real data is from the other; as varied as the real data.)
Normalization "cross-set" (default for several sets; MedSynAnalyzer's procedure):
  row k of FD (and of STD) is taken over all sets and scales and divided by its L2 norm.
  It is scale-blind and only ranks sets against each other.

  MM-FID = mean of FD_n over the K x S cells (reported with its std, ddof 0); lower is better.
  MM-STD = mean of STD_n over the cells (with its std); closer to the real data is better.
"""


# --------------------------------------------------------------------------- streaming


class _Reservoir:
    """Uniform sample of at most ``cap`` images from a stream (Vitter's algorithm R, seeded)."""

    def __init__(self, cap: int, seed: int) -> None:
        self.cap = int(cap)
        self.seen = 0
        self.index: list[int] = []
        self.rng = np.random.default_rng(seed)

    def slots(self, indices) -> np.ndarray:
        """Slot of each new image in the sample (-1: not kept); a kept slot may evict an older image."""
        out = np.full(len(indices), -1, dtype=np.int64)
        for j, i in enumerate(indices):
            if len(self.index) < self.cap:
                out[j] = len(self.index)
                self.index.append(int(i))
            else:
                r = int(self.rng.integers(0, self.seen + 1))
                if r < self.cap:
                    out[j] = r
                    self.index[r] = int(i)
            self.seen += 1
        return out


@dataclass
class SetStats:
    """Everything one pass over one image set produces.

    Attributes
    ----------
    n : int
        Images seen (over all processes).
    cells : dict of (str, int) -> FeatureStats
        Statistics per (extractor name, scale).
    halves : tuple of two such dicts, or None
        Statistics of the even- and odd-indexed images (real sets only).
    kept : dict of (str, int) -> numpy.ndarray (m, d)
        Features of a uniform sample of at most ``keep`` images (same images in every cell).
    kept_index : numpy.ndarray (m,)
        Indices of the kept images in the set.
    """

    n: int
    cells: dict
    halves: tuple | None = None
    kept: dict = field(default_factory=dict)
    kept_index: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def save(self, folder: str | os.PathLike) -> None:
        """Write the statistics to a folder: one FeatureStats .npz per cell (and half), and
        ``setstats.json`` listing them, written last so that a folder with it is complete.
        Kept features are not saved."""
        folder = os.fspath(folder)
        os.makedirs(folder, exist_ok=True)
        entries = []
        for (e, s), st in self.cells.items():
            files = [f"{e}@{s}.npz"] + ([f"{e}@{s}.even.npz", f"{e}@{s}.odd.npz"] if self.halves else [])
            parts = [st] + ([self.halves[0][(e, s)], self.halves[1][(e, s)]] if self.halves else [])
            for fname, part in zip(files, parts):
                part.save(os.path.join(folder, fname))
            entries.append({"extractor": e, "scale": s, "files": files})
        manifest = {"format": SETSTATS_FORMAT, "version": 1, "n": self.n, "split": self.halves is not None,
                    "cells": entries}
        atomic_write_text(os.path.join(folder, SETSTATS_MANIFEST), json.dumps(manifest, indent=1) + "\n")

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "SetStats":
        """Read a folder written by :meth:`save`.

        Raises
        ------
        ValueError
            If the folder has no ``setstats.json`` or a listed file is missing or unreadable.
        """
        folder = os.fspath(folder)
        path = os.path.join(folder, SETSTATS_MANIFEST)
        try:
            with open(path, encoding="utf-8") as fh:
                manifest = json.load(fh)
        except FileNotFoundError:
            raise ValueError(f"{folder} holds no {SETSTATS_MANIFEST}: not a statistics folder") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot read {path}: {exc}") from None
        if manifest.get("format") != SETSTATS_FORMAT:
            raise ValueError(f"{path}: unknown format {manifest.get('format')!r}")
        cells, even, odd = {}, {}, {}
        for entry in manifest["cells"]:
            key = (entry["extractor"], int(entry["scale"]))
            parts = [FeatureStats.load(os.path.join(folder, f)) for f in entry["files"]]
            cells[key] = parts[0]
            if manifest["split"]:
                even[key], odd[key] = parts[1], parts[2]
        return cls(int(manifest["n"]), cells, (even, odd) if manifest["split"] else None)

    def merge(self, other: "SetStats") -> "SetStats":
        """Add another shard's statistics, cell by cell, exactly (in place; kept features dropped)."""
        if set(other.cells) != set(self.cells):
            raise ValueError("cannot merge statistics of different cells (another suite or other scales)")
        if (self.halves is None) != (other.halves is None):
            raise ValueError("cannot merge statistics with and without the real halves")
        for key, st in self.cells.items():
            st.merge(other.cells[key])
            if self.halves:
                self.halves[0][key].merge(other.halves[0][key])
                self.halves[1][key].merge(other.halves[1][key])
        self.n += other.n
        self.kept, self.kept_index = {}, np.zeros(0, dtype=np.int64)
        return self


def _dist_info() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _resize(imgs: list, stacked, size: int, device):
    """(B, 1, size, size) on ``device``: bilinear, antialiased, from a stack or image by image."""
    import torch
    import torch.nn.functional as F

    def one(x):
        if x.shape[-2:] == (size, size):
            return x
        return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)

    if stacked is not None:
        return one(stacked)
    return torch.cat([one(t[None].to(device)) for t in imgs])


def stream_stats(images, suite, *, name: str = "images", batch_size: int = 32, device: str = "cpu",
                 split: bool = False, keep: int = 0, seed: int = 0, progress: bool = True) -> SetStats:
    """One pass over an image set: feature statistics for every (extractor, scale) cell.

    Parameters
    ----------
    images : folder, array (N, H, W), tensor, or iterable of images
        See :func:`mmfid`.
    suite : umsynth.extractors.Suite
        Networks already on ``device``.
    name : str, optional
        For messages and progress bars.
    batch_size : int, optional
    device : str, optional
    split : bool, optional
        Also keep statistics of the even- and odd-indexed images (the real reference).
    keep : int, optional
        Keep the features of a uniform sample of at most this many images (0: none).
    seed : int, optional
        Seeds the sample.
    progress : bool, optional

    Returns
    -------
    SetStats

    Notes
    -----
    Memory: one batch of images at every scale, one d x d scatter matrix per cell (and per
    half), a feature buffer of about 8 MB per cell (:data:`FEATURE_BUFFER_ELEMENTS`), and
    ``keep`` feature rows per cell; nothing grows with the number of images.
    Under ``torch.distributed``, process r reads the images with ``index % world == r``
    and the statistics are all-reduced exactly (:func:`allreduce_stats`) at the end.
    """
    import torch
    from tqdm.auto import tqdm

    from umsynth.extractors.sources import as_source

    src = as_source(images, name)
    rank, world = _dist_info()
    digest = suite.digest()
    members = suite.members
    scales = suite.scales
    cells = [(m.name, s) for m in members for s in scales]
    # exact small-sample Fréchet route when the set is known to be small
    small = src.length is not None and src.length <= max(m.dims for m in members)
    dims = {m.name: m.dims for m in members}

    def fresh():
        return {c: FeatureStats(dims[c[0]], keep_features=small, extractor=f"{c[0]}@{digest}/{c[1]}")
                for c in cells}

    # split: the even and odd halves are accumulated and merged into the full set at the end
    parts = (fresh(), fresh()) if split else (fresh(),)
    res = _Reservoir(keep, seed) if keep > 0 else None
    kept = {c: np.zeros((keep, dims[c[0]]), np.float32) for c in cells} if res else {}
    # features wait in per-cell buffers of about FEATURE_BUFFER_ELEMENTS numbers (8 MB), so the
    # O(d^2) work of a statistics update is paid once per buffer, not once per batch
    buffers = {c: [] for c in cells}
    rows = {c: max(int(batch_size), min(4096, FEATURE_BUFFER_ELEMENTS // dims[c[0]])) for c in cells}

    def drain(c):
        f = np.concatenate([b[0] for b in buffers[c]])
        even = np.concatenate([b[1] for b in buffers[c]])
        buffers[c] = []
        if split:
            _update(parts[0][c], f[even], name, c)
            _update(parts[1][c], f[~even], name, c)
        else:
            _update(parts[0][c], f, name, c)

    def flush(buf_idx, buf_img):
        idx = np.asarray(buf_idx)
        shapes = {tuple(t.shape) for t in buf_img}
        stacked = torch.stack(buf_img).to(device) if len(shapes) == 1 else None
        slots = res.slots(idx) if res else None
        with torch.inference_mode():
            for s in scales:
                x = _resize(buf_img, stacked, s, device) * 2.0 - 1.0
                for m in members:
                    f = m.net.features(x).double().cpu().numpy()
                    c = (m.name, s)
                    buffers[c].append((f, idx % 2 == 0))
                    if sum(len(b[0]) for b in buffers[c]) >= rows[c]:
                        drain(c)
                    if res is not None:
                        ok = slots >= 0
                        kept[c][slots[ok]] = f[ok]

    total = None if src.length is None else len(range(rank, src.length, world))
    with tqdm(total=total, desc=name, unit="img", disable=not progress) as bar:
        buf_idx, buf_img = [], []
        for i, img in src.iterate(rank, world):
            buf_idx.append(i)
            buf_img.append(img)
            if len(buf_idx) == batch_size:
                flush(buf_idx, buf_img)
                bar.update(len(buf_idx))
                buf_idx, buf_img = [], []
        if buf_idx:
            flush(buf_idx, buf_img)
            bar.update(len(buf_idx))
    for c in cells:
        if buffers[c]:
            drain(c)
    if world > 1:
        for group in parts:
            for st in group.values():
                allreduce_stats(st)
    if split:
        full = {c: FeatureStats(dims[c[0]], keep_features=small, extractor=parts[0][c].extractor)
                .merge(parts[0][c]).merge(parts[1][c]) for c in cells}
        halves = parts
    else:
        full, halves = parts[0], None
    m = len(res.index) if res else 0
    kept = {c: v[:m] for c, v in kept.items()}
    kept_index = np.asarray(res.index if res else [], dtype=np.int64)
    if world > 1:
        kept, kept_index = _gather_kept(kept, kept_index, keep, seed)
    n = full[cells[0]].n
    return SetStats(int(n), full, halves, kept, kept_index)


def _update(stats: FeatureStats, f: np.ndarray, name: str, cell) -> None:
    try:
        stats.update(f)
    except ValueError as exc:
        raise ValueError(f"{name}: features of {cell[0]} at scale {cell[1]}: {exc}") from None


def allreduce_stats(stats: FeatureStats) -> FeatureStats:
    """Combine the statistics of all ``torch.distributed`` processes, exactly, in place.

    Two all-reduces (sums, float64): first n and n * mean give the global mean mu; then
    each process adds ``M2_r + n_r (mean_r - mu)(mean_r - mu)^T``, which sums to the
    global scatter matrix (the parallel-variance identity; no raw sums of squares, so no
    cancellation). Kept raw features are dropped (the covariance route is used).

    Parameters
    ----------
    stats : FeatureStats
        This process's statistics (with a sample count).

    Returns
    -------
    FeatureStats
        ``stats``, now the statistics of all processes' samples, identical on every process.
    """
    import torch
    import torch.distributed as dist

    n_r = stats.n
    if n_r is None:
        raise ValueError("cannot all-reduce statistics without a sample count")
    mean_r = stats.mean
    head = torch.from_numpy(np.concatenate([[float(n_r)], mean_r * n_r]))
    dist.all_reduce(head)
    n = int(round(float(head[0])))
    if n == 0:
        return stats
    mu = head[1:].numpy() / n
    delta = mean_r - mu
    m2 = stats._m2 if n_r else np.zeros((stats.dim, stats.dim))
    part = torch.from_numpy(m2 + np.outer(delta, delta * n_r))
    dist.all_reduce(part)
    m2 = part.numpy()
    stats._n, stats._mean, stats._m2 = n, mu, (m2 + m2.T) * 0.5
    stats.keep_features, stats._rows = False, []
    return stats


def _gather_kept(kept: dict, index: np.ndarray, keep: int, seed: int):
    """All processes' kept features; a seeded uniform subsample if more than ``keep``."""
    import torch.distributed as dist

    got = [None] * dist.get_world_size()
    dist.all_gather_object(got, (index, kept))
    index = np.concatenate([g[0] for g in got])
    order = np.argsort(index, kind="stable")
    if len(order) > keep:
        order = np.sort(np.random.default_rng(seed).choice(order, keep, replace=False))
    merged = {c: np.concatenate([g[1][c] for g in got])[order] for c in kept}
    return merged, index[order]


# --------------------------------------------------------------------------- result


@dataclass
class MMFIDResult:
    """Tables and summaries of one MM-FID run.

    Attributes
    ----------
    extractors : list of str
        Row names (K).
    scales : list of int
        Column names (S).
    n_real : int
    fd_ref, std_real : numpy.ndarray (K, S)
        FD between the real halves, and STD of the real features.
    fd, std : dict of set name -> numpy.ndarray (K, S)
        Raw tables.
    normalization : str
        ``reference`` or ``cross-set``: the one used for ``mm_fid`` / ``mm_std``.
    fd_norm, std_norm : dict of set name -> numpy.ndarray (K, S)
        Normalized tables (chosen normalization).
    mm_fid, mm_std : dict of set name -> (mean, std)
    n_syn : dict of set name -> int
    extras : dict
        ``bootstrap``, ``knn``, ``wilcoxon``, ``tsne`` when computed.
    """

    extractors: list
    scales: list
    n_real: int
    fd_ref: np.ndarray
    std_real: np.ndarray
    fd: dict
    std: dict
    n_syn: dict
    normalization: str
    fd_norm: dict = field(default_factory=dict)
    std_norm: dict = field(default_factory=dict)
    mm_fid: dict = field(default_factory=dict)
    mm_std: dict = field(default_factory=dict)
    extras: dict = field(default_factory=dict)
    suite: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready dict (tables as nested lists, rows = extractors, columns = scales)."""
        sets = {}
        for k in self.fd:
            sets[k] = {"n": self.n_syn[k], "fd": self.fd[k].tolist(), "std": self.std[k].tolist(),
                       "fd_normalized": self.fd_norm[k].tolist(), "std_normalized": self.std_norm[k].tolist(),
                       "mm_fid": self.mm_fid[k][0], "mm_fid_std": self.mm_fid[k][1],
                       "mm_std": self.mm_std[k][0], "mm_std_std": self.mm_std[k][1]}
            for extra in ("bootstrap", "knn"):
                if k in self.extras.get(extra, {}):
                    sets[k][extra] = self.extras[extra][k]
        out = {"definitions": DEFINITIONS, "normalization": self.normalization, "extractors": self.extractors,
               "scales": self.scales, "suite": self.suite, "n_real": self.n_real,
               "reference": {"fd_real_halves": self.fd_ref.tolist(), "std_real": self.std_real.tolist()},
               "sets": sets}
        for extra in ("wilcoxon", "tsne"):
            if extra in self.extras:
                out[extra] = self.extras[extra]
        return out

    def save(self, path: str | os.PathLike) -> None:
        """Write :meth:`to_dict` as JSON, atomically (temp file beside it, then rename)."""
        atomic_write_text(os.fspath(path), json.dumps(self.to_dict(), indent=1) + "\n")


def atomic_write_text(path: str, text: str) -> None:
    """Write text to a temporary file in the same folder and rename it onto ``path``."""
    from umsynth.data.io import atomic_write

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)

    atomic_write(path, write)


# --------------------------------------------------------------------------- tables


def cell_tables(real: SetStats, syn: SetStats, extractors, scales) -> tuple[np.ndarray, np.ndarray]:
    """(FD table, STD table) of one synthetic set against the real set."""
    from umsynth.frechet import frechet_distance_from_stats

    fd = np.empty((len(extractors), len(scales)))
    std = np.empty_like(fd)
    for (i, e), (j, s) in itertools.product(enumerate(extractors), enumerate(scales)):
        fd[i, j] = frechet_distance_from_stats(real.cells[(e, s)], syn.cells[(e, s)])
        std[i, j] = feature_std(syn.cells[(e, s)])
    return fd, std


def feature_std(stats: FeatureStats) -> float:
    """Mean over dimensions of the per-dimension standard deviation, ddof 0."""
    n = stats.n
    if n is None or n < 2:
        raise ValueError(f"STD needs at least 2 images, got {n}")
    var = np.diag(stats.cov) * ((n - 1) / n)
    return float(np.sqrt(np.clip(var, 0.0, None)).mean())


def reference_tables(real: SetStats, extractors, scales) -> tuple[np.ndarray, np.ndarray]:
    """(FD between the even and odd real halves, STD of all real features)."""
    from umsynth.frechet import frechet_distance_from_stats

    if real.halves is None:
        raise ValueError("the real statistics were made without split=True")
    fd = np.empty((len(extractors), len(scales)))
    std = np.empty_like(fd)
    for (i, e), (j, s) in itertools.product(enumerate(extractors), enumerate(scales)):
        a, b = real.halves[0][(e, s)], real.halves[1][(e, s)]
        if min(a.n, b.n) < 2:
            raise ValueError(f"the real set has {real.n} images; the reference needs at least 4 "
                             "(2 in each half)")
        fd[i, j] = frechet_distance_from_stats(a, b)
        std[i, j] = feature_std(real.cells[(e, s)])
    return fd, std


# --------------------------------------------------------------------------- public API


def mmfid(real, synthetic, suite, *, scales=None, batch_size: int = 32, device: str = "cpu",
          normalization: str = "auto", keep: int | None = None, bootstrap: int = 0,
          confidence: float = 0.95, knn: bool = False, k: int = 5, cell=None, tsne=None,
          save_stats=None, seed: int = 0, progress: bool = True) -> MMFIDResult:
    """MM-FID and MM-STD of one or several synthetic sets against a real set.

    Every image is resized once to each scale and fed to every network of the suite; each
    (network, scale) cell gets streaming statistics. FD[k, s] is the Fréchet distance of
    real and synthetic features in cell (k, s); STD[k, s] the mean per-dimension standard
    deviation of the synthetic features. MM-FID and MM-STD are the means of the
    normalized cells (see :data:`DEFINITIONS`, also printed by ``umsynth mmfid --help``,
    and :mod:`umsynth.metrics.normalize`).

    Parameters
    ----------
    real : folder, array (N, H, W) or (N, H, W, 3), torch tensor, or iterable of images
        uint8 (/255), uint16 (/65535) or float in [0, 1]; grey or colour (made grey). Also
        :class:`SetStats` (or a folder written by :meth:`SetStats.save`) from an earlier
        pass with the same suite, e.g. shards merged with ``umsynth stats merge``.
    synthetic : same kinds as ``real``, or a dict of set name -> such a set
        A dict compares several sets (default names for one set: ``"synthetic"``).
    suite : umsynth.extractors.Suite or path to a suite file
    scales : sequence of int, optional
        Override the suite's scales (tests use small ones).
    batch_size : int, optional
        Images per batch (each is resized to every scale; memory grows with it).
    device : str, optional
        torch device (``cpu``, ``cuda``, ``cuda:1``).
    normalization : {"auto", "reference", "cross-set"}, optional
        ``auto``: ``reference`` for one set, ``cross-set`` for several.
    keep : int, optional
        Features kept per set and cell (a seeded uniform sample) for the extras; default
        :data:`DEFAULT_KEEP` when an extra is asked for, else 0.
    bootstrap : int, optional
        Resamples for per-cell percentile confidence intervals of FD (0: none). They use
        the kept features (all of them when the set is no larger than ``keep``).
    confidence : float, optional
        Level of the bootstrap intervals.
    knn : bool, optional
        k-NN copy / real / non-real sets (:func:`umsynth.metrics.knn.knn_sets`) in ``cell``.
    k : int, optional
        Neighbours for the k-NN radius (the image itself counted).
    cell : (str, int), optional
        (extractor name, scale) for k-NN sets and t-SNE; default the last extractor at the
        largest scale (the paper's P4 at 1024).
    tsne : path, optional
        Write a t-SNE PNG of real and synthetic features in ``cell``.
    save_stats : path, optional
        Folder where the statistics of each set are saved (``real/``, ``synthetic/<name>/``), to
        be reused or merged with ``umsynth stats merge``.
    seed : int, optional
        Seeds the kept sample, the bootstrap and t-SNE.
    progress : bool, optional

    Returns
    -------
    MMFIDResult
        With several sets, ``extras["wilcoxon"]`` holds a Wilcoxon signed-rank test over
        the K x S normalized cells for every pair of sets.

    Raises
    ------
    ValueError
        Empty sets, unreadable images (named), too few real images (< 4), bad arguments.
    """
    import torch

    from umsynth.extractors.suite import Suite, _check_scales, load_suite

    if normalization not in ("auto", "reference", "cross-set"):
        raise ValueError(f"normalization must be 'auto', 'reference' or 'cross-set', got {normalization!r}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if int(bootstrap) < 0:
        raise ValueError(f"bootstrap must be >= 0, got {bootstrap}")
    device = str(torch.device(device))
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device}: no CUDA device is usable here")
    suite_path = None
    if not isinstance(suite, Suite):
        suite_path = os.fspath(suite)
        suite = load_suite(suite_path, device)
    if scales is not None:
        suite = Suite(suite.members, _check_scales(scales), suite.training, suite.preprocessing)
    suite.to(device)
    sets = dict(synthetic) if isinstance(synthetic, dict) else {"synthetic": synthetic}
    if not sets:
        raise ValueError("synthetic: no sets given")
    extras_wanted = bool(bootstrap) or knn or tsne is not None
    keep = (DEFAULT_KEEP if extras_wanted else 0) if keep is None else int(keep)
    if extras_wanted and keep < 2:
        raise ValueError(f"keep must be >= 2 for bootstrap, k-NN sets or t-SNE, got {keep}")
    extractors, scales = suite.names, list(suite.scales)
    cell = _check_cell(cell, extractors, scales)

    kw = dict(suite=suite, batch_size=int(batch_size), device=device, keep=keep, seed=seed, progress=progress)
    real_stats = _set_stats(real, "real", True, extras_wanted, extractors, scales, kw)
    syn_stats = {name: _set_stats(images, str(name), False, extras_wanted, extractors, scales, kw)
                 for name, images in sets.items()}
    if save_stats is not None:
        real_stats.save(os.path.join(os.fspath(save_stats), "real"))
        for name, st in syn_stats.items():
            st.save(os.path.join(os.fspath(save_stats), "synthetic", str(name)))

    fd_ref, std_real = reference_tables(real_stats, extractors, scales)
    fd, std = {}, {}
    for name, st in syn_stats.items():
        fd[name], std[name] = cell_tables(real_stats, st, extractors, scales)
    if normalization == "auto":
        normalization = "reference" if len(sets) == 1 else "cross-set"
    if normalization == "reference":
        fd_norm, std_norm = reference_normalize(fd, fd_ref), reference_normalize(std, std_real)
    else:
        fd_norm, std_norm = cross_set_normalize(fd), cross_set_normalize(std)
    result = MMFIDResult(extractors, scales, real_stats.n, fd_ref, std_real, fd, std,
                         {k: v.n for k, v in syn_stats.items()}, normalization, fd_norm, std_norm,
                         {k: mm_summary(v) for k, v in fd_norm.items()},
                         {k: mm_summary(v) for k, v in std_norm.items()},
                         suite={"digest": suite.digest(), "path": suite_path, "members": extractors})
    if bootstrap:
        result.extras["bootstrap"] = {name: bootstrap_cells(real_stats, st, extractors, scales, int(bootstrap),
                                                            confidence, seed, fd_ref if normalization == "reference"
                                                            else None)
                                      for name, st in syn_stats.items()}
    if knn:
        from umsynth.metrics.knn import knn_sets

        result.extras["knn"] = {}
        for name, st in syn_stats.items():
            got = knn_sets(real_stats.kept[cell], st.kept[cell], k=k)
            result.extras["knn"][name] = {"cell": list(cell), "k": got["k"], "counts": got["counts"],
                                          "fractions": got["fractions"], "images": int(got["labels"].size)}
    if len(sets) > 1:
        result.extras["wilcoxon"] = wilcoxon_pairs(fd_norm, std_norm)
    if tsne is not None:
        tsne_plot({"real": real_stats.kept[cell], **{n: s.kept[cell] for n, s in syn_stats.items()}},
                  tsne, title=f"t-SNE of {cell[0]} features at {cell[1]} px", seed=seed)
        result.extras["tsne"] = {"path": os.fspath(tsne), "cell": list(cell)}
    return result


def _set_stats(images, name: str, split: bool, extras: bool, extractors, scales, kw) -> SetStats:
    """Statistics of one set: given (SetStats or a folder with setstats.json), or streamed."""
    if isinstance(images, (str, os.PathLike)) and os.path.isfile(os.path.join(images, SETSTATS_MANIFEST)):
        images = SetStats.load(images)
    if not isinstance(images, SetStats):
        return stream_stats(images, name=name, split=split, **kw)
    want = {(e, s) for e in extractors for s in scales}
    if not want <= set(images.cells):
        missing = sorted(want - set(images.cells))[:3]
        raise ValueError(f"{name}: the given statistics lack cells {missing} of this suite and scales")
    if split and images.halves is None:
        raise ValueError(f"{name}: the real statistics were made without the even/odd halves")
    if extras and not images.kept:
        raise ValueError(f"{name}: bootstrap, k-NN sets and t-SNE need features, which saved statistics "
                         "do not hold; pass the images")
    return images


def _check_cell(cell, extractors, scales) -> tuple:
    if cell is None:
        return extractors[-1], max(scales)
    try:
        name, scale = cell
        scale = int(scale)
    except (TypeError, ValueError):
        raise ValueError(f"cell must be (extractor name, scale), got {cell!r}") from None
    if name not in extractors or scale not in scales:
        raise ValueError(f"cell {cell!r} is not in the table: extractors {extractors}, scales {scales}")
    return name, scale


# --------------------------------------------------------------------------- extras


def bootstrap_cells(real: SetStats, syn: SetStats, extractors, scales, resamples: int, confidence: float,
                    seed: int, reference=None) -> dict:
    """Percentile bootstrap intervals of FD per cell, resampling kept real and synthetic features.

    The same resampled images are used in every cell of one replicate. With ``reference``
    the intervals are also given divided by it (the reference held fixed).

    Returns
    -------
    dict
        ``low``, ``high`` (K x S lists), ``confidence``, ``resamples``, ``images``
        (real, synthetic features resampled); ``low_normalized``, ``high_normalized``.
    """
    from umsynth.frechet import frechet_distance_features

    rng = np.random.default_rng(seed)
    nr, ns = len(real.kept_index), len(syn.kept_index)
    if min(nr, ns) < 2:
        raise ValueError("the bootstrap needs at least 2 kept images in each set")
    reps = np.empty((resamples, len(extractors), len(scales)))
    for b in range(resamples):
        ir, js = rng.integers(0, nr, nr), rng.integers(0, ns, ns)
        for (i, e), (j, s) in itertools.product(enumerate(extractors), enumerate(scales)):
            reps[b, i, j] = frechet_distance_features(real.kept[(e, s)][ir], syn.kept[(e, s)][js])
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(reps, alpha, axis=0), np.quantile(reps, 1.0 - alpha, axis=0)
    out = {"low": low.tolist(), "high": high.tolist(), "confidence": confidence, "resamples": resamples,
           "images": [nr, ns]}
    if reference is not None:
        out["low_normalized"] = (low / reference).tolist()
        out["high_normalized"] = (high / reference).tolist()
    return out


def wilcoxon_pairs(fd_norm: dict, std_norm: dict) -> dict:
    """Wilcoxon signed-rank tests (scipy, two-sided) over the cells, for every pair of sets.

    Returns
    -------
    dict
        ``"A vs B"`` -> {"fd": {"statistic", "pvalue"}, "std": {...}}. When every cell is
        equal the p-value is 1.
    """
    from scipy.stats import wilcoxon

    out = {}
    for a, b in itertools.combinations(list(fd_norm), 2):
        entry = {}
        for what, tab in (("fd", fd_norm), ("std", std_norm)):
            x, y = np.ravel(tab[a]), np.ravel(tab[b])
            if np.all(x == y):
                entry[what] = {"statistic": 0.0, "pvalue": 1.0}
            else:
                r = wilcoxon(x, y)
                entry[what] = {"statistic": float(r.statistic), "pvalue": float(r.pvalue)}
        out[f"{a} vs {b}"] = entry
    return out


def tsne_plot(features: dict, path, title: str = "", seed: int = 0) -> None:
    """t-SNE (scikit-learn) of several feature sets in one scatter plot, saved as PNG atomically.

    Parameters
    ----------
    features : dict of str -> array (n_i, d)
        Label -> features; the first is drawn as the real set.
    path : path
        PNG to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    names = list(features)
    x = np.concatenate([np.asarray(features[n], dtype=np.float64) for n in names])
    if x.shape[0] < 5:
        raise ValueError(f"t-SNE needs at least 5 images in all, got {x.shape[0]}")
    emb = TSNE(n_components=2, perplexity=min(30.0, (x.shape[0] - 1) / 3.0), init="pca",
               random_state=seed).fit_transform(x)
    fig, ax = plt.subplots(figsize=(6, 6), dpi=120)
    start = 0
    for i, n in enumerate(names):
        m = len(features[n])
        ax.scatter(emb[start:start + m, 0], emb[start:start + m, 1], s=10, alpha=0.7, label=f"{n} ({m})",
                   marker="o" if i == 0 else "^")
        start += m
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(loc="best")
    fig.tight_layout()
    from umsynth.data.io import atomic_write

    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"), suffix=".png")
    finally:
        plt.close(fig)
