"""MM-FID and MM-STD: multi-model, multi-scale Fréchet distance and variety, in one streaming pass.

Steps of :func:`mmfid`, one function each: check the options (:class:`MMFIDOptions`), load
the suite (:func:`_prepare_suite`), get every set's statistics (streamed by
:func:`umsynth.metrics.streaming.stream_stats`, or given), make the K x S tables
(:func:`reference_tables`, :func:`cell_tables`), normalize and summarise them
(:func:`_normalized_result`), then add the extras asked for (:func:`_add_extras`,
:mod:`umsynth.metrics.extras`).

torch is imported only when :func:`mmfid` runs.
"""
from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass, field, fields

import numpy as np

from umsynth.frechet import frechet_distance_from_stats
from umsynth.metrics.extras import bootstrap_cells, tsne_plot, wilcoxon_pairs
from umsynth.metrics.knn import knn_sets
from umsynth.metrics.normalize import cross_set_normalize, mm_summary, reference_normalize
from umsynth.files import atomic_write_text
from umsynth.metrics.streaming import FEATURE_BUFFER_ELEMENTS, SetStats, stream_stats
from umsynth.stats import FeatureStats

__all__ = ["DEFINITIONS", "mmfid", "MMFIDOptions", "MMFIDResult", "SetStats", "stream_stats", "DEFAULT_KEEP",
           "FEATURE_BUFFER_ELEMENTS", "NORMALIZATIONS"]

# Features kept per (set, cell) for k-NN sets, bootstrap and t-SNE when they are asked for.
DEFAULT_KEEP = 2000
NORMALIZATIONS = ("auto", "reference", "cross-set")

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


# --------------------------------------------------------------------------- options


@dataclass
class MMFIDOptions:
    """How :func:`mmfid` runs: its keyword arguments, checked once.

    ``mmfid(real, synthetic, suite, batch_size=16)`` and
    ``mmfid(real, synthetic, suite, options=MMFIDOptions(batch_size=16))`` are the same call.

    Attributes
    ----------
    scales : sequence of int, optional
        Override the suite's scales (tests use small ones).
    batch_size : int
        Images per batch (each is resized to every scale; memory grows with it). Default 32.
    device : str
        torch device (``cpu``, ``cuda``, ``cuda:1``). Default ``cpu``.
    normalization : {"auto", "reference", "cross-set"}
        ``auto`` (default): ``reference`` for one set, ``cross-set`` for several.
    keep : int, optional
        Features kept per set and cell (a seeded uniform sample) for the extras; default
        :data:`DEFAULT_KEEP` when an extra is asked for, else 0 (see :attr:`kept_features`).
    bootstrap : int
        Resamples for per-cell percentile confidence intervals of FD (0, the default: none).
        They use the kept features (all of them when the set is no larger than ``keep``).
    confidence : float
        Level of the bootstrap intervals, in (0, 1). Default 0.95.
    knn : bool
        k-NN copy / real / non-real sets (:func:`umsynth.metrics.knn.knn_sets`) in ``cell``.
    k : int
        Neighbours for the k-NN radius (the image itself counted). Default 5.
    cell : (str, int), optional
        (extractor name, scale) for k-NN sets and t-SNE; default the last extractor at the
        largest scale (the paper's P4 at 1024).
    tsne : path, optional
        Write a t-SNE PNG of real and synthetic features in ``cell``.
    save_stats : path, optional
        Folder where the statistics of each set are saved (``real/``, ``synthetic/<name>/``), to
        be reused or merged with ``umsynth stats merge``.
    seed : int
        Seeds the kept sample, the bootstrap and t-SNE. Default 0.
    progress : bool
        Show progress bars. Default True.

    Raises
    ------
    ValueError
        For an unknown normalization, batch_size < 1, confidence outside (0, 1),
        bootstrap < 0, keep < 2 when an extra needs features, or k < 2 with ``knn``.
    """

    scales: tuple | None = None
    batch_size: int = 32
    device: str = "cpu"
    normalization: str = "auto"
    keep: int | None = None
    bootstrap: int = 0
    confidence: float = 0.95
    knn: bool = False
    k: int = 5
    cell: tuple | None = None
    tsne: str | os.PathLike | None = None
    save_stats: str | os.PathLike | None = None
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be 'auto', 'reference' or 'cross-set', got {self.normalization!r}")
        self.batch_size = _integer(self.batch_size, "batch_size")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        self.confidence = float(self.confidence)
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")
        self.bootstrap = _integer(self.bootstrap, "bootstrap")
        if self.bootstrap < 0:
            raise ValueError(f"bootstrap must be >= 0, got {self.bootstrap}")
        if self.keep is not None:
            self.keep = _integer(self.keep, "keep")
        if self.extras_wanted and self.kept_features < 2:
            raise ValueError(f"keep must be >= 2 for bootstrap, k-NN sets or t-SNE, got {self.keep}")
        self.k = _integer(self.k, "k")
        if self.knn and self.k < 2:
            raise ValueError(f"k must be >= 2 (the image itself counts), got {self.k}")

    @property
    def extras_wanted(self) -> bool:
        """Whether an extra that needs kept features (bootstrap, k-NN sets, t-SNE) is asked for."""
        return bool(self.bootstrap) or bool(self.knn) or self.tsne is not None

    @property
    def kept_features(self) -> int:
        """Features kept per set and cell: ``keep``, or its default."""
        if self.keep is not None:
            return self.keep
        return DEFAULT_KEEP if self.extras_wanted else 0


def _integer(value, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an integer, got {value!r}") from None


def _options(options, kwargs: dict) -> MMFIDOptions:
    """The options of one :func:`mmfid` call, given as an :class:`MMFIDOptions` or as keywords."""
    if options is None:
        unknown = sorted(set(kwargs) - {f.name for f in fields(MMFIDOptions)})
        if unknown:
            raise TypeError(f"mmfid() got unexpected keyword arguments {unknown}")
        return MMFIDOptions(**kwargs)
    if not isinstance(options, MMFIDOptions):
        raise TypeError(f"options must be an MMFIDOptions, got {type(options).__name__}")
    if kwargs:
        raise TypeError(f"pass options or keyword arguments, not both (got options and {sorted(kwargs)})")
    return options


# --------------------------------------------------------------------------- the metric


def mmfid(real, synthetic, suite, *, options: MMFIDOptions | None = None, **kwargs) -> MMFIDResult:
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
    options : MMFIDOptions, optional
        How to run; or give its fields as keyword arguments instead (not both).
    **kwargs
        The fields of :class:`MMFIDOptions`: ``scales``, ``batch_size``, ``device``,
        ``normalization``, ``keep``, ``bootstrap``, ``confidence``, ``knn``, ``k``, ``cell``,
        ``tsne``, ``save_stats``, ``seed``, ``progress``.

    Returns
    -------
    MMFIDResult
        With several sets, ``extras["wilcoxon"]`` holds a Wilcoxon signed-rank test over
        the K x S normalized cells for every pair of sets.

    Raises
    ------
    ValueError
        Empty sets, unreadable images (named), too few real images (< 4), bad arguments.
    TypeError
        Unknown keyword arguments, or both ``options`` and keyword arguments.
    """
    opts = _options(options, kwargs)
    suite, suite_path, device = _prepare_suite(suite, opts)
    sets = dict(synthetic) if isinstance(synthetic, dict) else {"synthetic": synthetic}
    if not sets:
        raise ValueError("synthetic: no sets given")
    extractors, scales = suite.names, list(suite.scales)
    cell = _check_cell(opts.cell, extractors, scales)

    kw = dict(suite=suite, batch_size=opts.batch_size, device=device, keep=opts.kept_features, seed=opts.seed,
              progress=opts.progress)
    real_stats = _set_stats(real, "real", True, opts.extras_wanted, extractors, scales, kw)
    syn_stats = {name: _set_stats(images, str(name), False, opts.extras_wanted, extractors, scales, kw)
                 for name, images in sets.items()}
    if opts.save_stats is not None:
        _save_stats(opts.save_stats, real_stats, syn_stats)

    fd_ref, std_real = reference_tables(real_stats, extractors, scales)
    fd, std = {}, {}
    for name, st in syn_stats.items():
        fd[name], std[name] = cell_tables(real_stats, st, extractors, scales)
    result = _normalized_result(extractors, scales, real_stats.n, {k: v.n for k, v in syn_stats.items()},
                                fd_ref, std_real, fd, std, opts.normalization,
                                suite={"digest": suite.digest(), "path": suite_path, "members": extractors})
    _add_extras(result, real_stats, syn_stats, cell, opts)
    return result


def _prepare_suite(suite, opts: MMFIDOptions):
    """(suite on the device with the options' scales, its file path or None, torch device string)."""
    import torch

    # the extractors package imports torch: imported when the metric runs
    from umsynth.extractors.suite import Suite, check_scales, load_suite

    device = str(torch.device(opts.device))
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device}: no CUDA device is usable here")
    suite_path = None
    if not isinstance(suite, Suite):
        suite_path = os.fspath(suite)
        suite = load_suite(suite_path, device)
    if opts.scales is not None:
        suite = Suite(suite.members, check_scales(opts.scales), suite.training, suite.preprocessing)
    suite.to(device)
    return suite, suite_path, device


def _save_stats(folder, real: SetStats, synthetic: dict) -> None:
    """Each set's statistics under ``folder``: ``real/`` and ``synthetic/<name>/``."""
    real.save(os.path.join(os.fspath(folder), "real"))
    for name, st in synthetic.items():
        st.save(os.path.join(os.fspath(folder), "synthetic", str(name)))


def _normalized_result(extractors, scales, n_real: int, n_syn: dict, fd_ref, std_real, fd: dict, std: dict,
                       normalization: str, suite: dict) -> MMFIDResult:
    """The raw tables normalized (``auto``: reference for one set, cross-set for several) and summarised."""
    if normalization == "auto":
        normalization = "reference" if len(fd) == 1 else "cross-set"
    if normalization == "reference":
        fd_norm, std_norm = reference_normalize(fd, fd_ref), reference_normalize(std, std_real)
    else:
        fd_norm, std_norm = cross_set_normalize(fd), cross_set_normalize(std)
    return MMFIDResult(extractors, scales, n_real, fd_ref, std_real, fd, std, n_syn, normalization, fd_norm,
                       std_norm, {k: mm_summary(v) for k, v in fd_norm.items()},
                       {k: mm_summary(v) for k, v in std_norm.items()}, suite=suite)


def _add_extras(result: MMFIDResult, real: SetStats, synthetic: dict, cell, opts: MMFIDOptions) -> None:
    """Bootstrap intervals, k-NN sets, Wilcoxon tests (several sets) and t-SNE, into ``result.extras``."""
    extractors, scales = result.extractors, result.scales
    if opts.bootstrap:
        reference = result.fd_ref if result.normalization == "reference" else None
        result.extras["bootstrap"] = {name: bootstrap_cells(real, st, extractors, scales, opts.bootstrap,
                                                            opts.confidence, opts.seed, reference)
                                      for name, st in synthetic.items()}
    if opts.knn:
        result.extras["knn"] = {}
        for name, st in synthetic.items():
            got = knn_sets(real.kept[cell], st.kept[cell], k=opts.k)
            result.extras["knn"][name] = {"cell": list(cell), "k": got["k"], "counts": got["counts"],
                                          "fractions": got["fractions"], "images": int(got["labels"].size)}
    if len(synthetic) > 1:
        result.extras["wilcoxon"] = wilcoxon_pairs(result.fd_norm, result.std_norm)
    if opts.tsne is not None:
        tsne_plot({"real": real.kept[cell], **{n: s.kept[cell] for n, s in synthetic.items()}},
                  opts.tsne, title=f"t-SNE of {cell[0]} features at {cell[1]} px", seed=opts.seed)
        result.extras["tsne"] = {"path": os.fspath(opts.tsne), "cell": list(cell)}


def _set_stats(images, name: str, split: bool, extras: bool, extractors, scales, kw) -> SetStats:
    """Statistics of one set: given (SetStats or a folder with setstats.json), or streamed."""
    if SetStats.is_folder(images):
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


# --------------------------------------------------------------------------- tables


def cell_tables(real: SetStats, syn: SetStats, extractors, scales) -> tuple[np.ndarray, np.ndarray]:
    """(FD table, STD table) of one synthetic set against the real set."""
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
