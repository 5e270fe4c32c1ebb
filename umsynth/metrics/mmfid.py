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

from umsynth.files import atomic_write_text
from umsynth.frechet import frechet_distance_from_stats
from umsynth.metrics import uncertainty
from umsynth.metrics.extras import bootstrap_cells, tsne_plot, wilcoxon_pairs
from umsynth.metrics.knn import knn_sets
from umsynth.metrics.normalize import cross_set_normalize, mm_summary
from umsynth.metrics.reference import DEFAULT_SPLITS, MIN_REAL, reference_status
from umsynth.metrics.streaming import FEATURE_BUFFER_ELEMENTS, SetStats, stream_stats
from umsynth.metrics.uncertainty import CellFeatures, geometric_mean
from umsynth.stats import FeatureStats

__all__ = ["DEFINITIONS", "mmfid", "MMFIDOptions", "MMFIDResult", "SetStats", "stream_stats", "DEFAULT_KEEP",
           "FEATURE_BUFFER_ELEMENTS", "NORMALIZATIONS"]

# Features kept per (set, cell): the calibrated reference, KID, intervals and the extras use them.
DEFAULT_KEEP = 2000
NORMALIZATIONS = ("auto", "reference", "cross-set")

DEFINITIONS = """\
A suite has K feature networks and S scales. Every image is resized once to each scale
(square, bilinear, antialiased), scaled to [-1, 1], and fed to every network; each
(network, scale) cell gets its own streaming mean and covariance, and the features of a
uniform sample of up to --keep images (default 2000: all of a typical medical set).

  FD[k, s]  = Fréchet distance between the Gaussians of all real and all synthetic
              features (exact; unbiased covariances). Raw, as pytorch-fid reports it.
  STD[k, s] = mean over feature dimensions of the standard deviation (ddof 0) of the
              synthetic features (higher: more varied).

Normalization "reference" (the default): a calibrated ratio per cell.
  FD_n[k, s] = mean FD(A, synthetic chunk) / mean FD(A, B): A is a random half of the
              real images, B the other half, the synthetic chunks hold as many images as
              B, and both means run over 16 random splits. Numerator and denominator are
              distances between samples of the same sizes, so they carry the same
              finite-sample bias: a synthetic set drawn from the real distribution scores
              about 1 at any sample size; worse sets score above 1.
  STD_n[k, s] = STD[k, s] / STD of the real features (1: as varied as the real data).
  KID_n[k, s] = unbiased MMD^2 (cubic polynomial kernel, Binkowski et al. 2018) between
              real and synthetic features, divided by the spread of the real features in
              the kernel's space; about 0 for a perfect set at any size, above 0 otherwise.
  MM-FID = geometric mean of FD_n over the K x S cells (a ratio: no single cell can
           dominate it); MM-STD likewise; MM-KID = mean of KID_n. The arithmetic means
           (the paper's summary) are reported as mm_fid_mean / mm_std_mean.
  With fewer than 20 real images the reference compares tiny halves: the result says so.
Normalization "cross-set" (MedSynAnalyzer's procedure, kept exactly as the authors do it):
  row k of FD (and of STD) is taken over all sets and scales and divided by its L2 norm;
  MM-FID is the arithmetic mean of the cells. It is scale-blind: it only ranks sets.

Uncertainty comes from the images, never from the cells: the interval of MM-FID (and
MM-STD, KID) is a percentile bootstrap over real and synthetic images (over source cases
when the images record them), the same draw in every cell; the difference of two sets
has a bootstrap interval and a permutation p-value (images of the two sets exchanged;
paired sets: swapped case by case), both with the real images held fixed. The Wilcoxon signed-rank test over the K x S cells
is the paper's procedure, reported for comparison only: the cells are the same two
image sets seen through correlated networks and scales, not independent replicates, so
its p-value overstates the evidence.
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
        ``auto`` (default) is ``reference``, the calibrated ratio (see :data:`DEFINITIONS`);
        ``cross-set`` is MedSynAnalyzer's L2 normalization across sets.
    keep : int, optional
        Features kept per set and cell (a seeded uniform sample; default
        :data:`DEFAULT_KEEP`). The calibrated reference, KID and the intervals use them.
    bootstrap : int
        Resamples for the image-level intervals of MM-FID, MM-STD and MM-KID of every set,
        the comparisons of every pair of sets (``extras["intervals"]``,
        ``extras["comparisons"]``), and per-cell percentile intervals of FD (0, the default:
        none; :meth:`MMFIDResult.interval` and :meth:`MMFIDResult.compare` work either way).
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
    sources : dict of str -> sequence, optional
        Set name -> the source case of each of its images (in the set's order). Sets made
        from the same cases are then compared in pairs, case by case, and resampled by case.
    knn_reference : images or SetStats, optional
        The images the generator was trained on, for the k-NN sets (default: the real set).
        The held-out real images' rates against the same reference are reported beside them,
        so that copies can be read against what chance gives.
    splits : int
        Random real splits of the calibrated reference (default 16).

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
    sources: dict | None = None
    knn_reference: object = None
    splits: int = DEFAULT_SPLITS

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
        self.splits = _integer(self.splits, "splits")
        if self.splits < 1:
            raise ValueError(f"splits must be >= 1, got {self.splits}")
        if self.normalization != "cross-set" and self.kept_features < MIN_REAL:
            raise ValueError(f"normalization {self.normalization!r} needs kept features: keep must be >= "
                             f"{MIN_REAL}, got {self.keep} (or use normalization='cross-set')")
        if self.sources is not None and not isinstance(self.sources, dict):
            raise TypeError(f"sources must be a dict of set name -> source id per image, "
                            f"got {type(self.sources).__name__}")

    @property
    def extras_wanted(self) -> bool:
        """Whether an extra that needs kept features (bootstrap, k-NN sets, t-SNE) is asked for."""
        return bool(self.bootstrap) or bool(self.knn) or self.tsne is not None

    @property
    def kept_features(self) -> int:
        """Features kept per set and cell: ``keep``, or :data:`DEFAULT_KEEP`."""
        return DEFAULT_KEEP if self.keep is None else self.keep


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
    need = opts.extras_wanted or opts.normalization != "cross-set"
    real_stats = _set_stats(real, "real", True, need, extractors, scales, kw)
    syn_stats = {name: _set_stats(images, str(name), False, need, extractors, scales, kw)
                 for name, images in sets.items()}
    if opts.save_stats is not None:
        _save_stats(opts.save_stats, real_stats, syn_stats)

    fd_ref, std_real = reference_tables(real_stats, extractors, scales)
    fd, std = {}, {}
    for name, st in syn_stats.items():
        fd[name], std[name] = cell_tables(real_stats, st, extractors, scales)
    features = _cell_features(real_stats, syn_stats, extractors, scales, opts.sources)
    result = _normalized_result(extractors, scales, real_stats.n, {k: v.n for k, v in syn_stats.items()},
                                fd_ref, std_real, fd, std, opts.normalization, features, opts,
                                suite={"digest": suite.digest(), "path": suite_path, "members": extractors})
    _add_extras(result, real_stats, syn_stats, cell, opts, kw)
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


def _cell_features(real: SetStats, synthetic: dict, extractors, scales, sources) -> CellFeatures | None:
    """The kept features of every set, cell by cell, with each kept image's source case; None if any set has none."""
    cells = [(e, s) for e in extractors for s in scales]
    if not real.kept or any(not st.kept for st in synthetic.values()):
        return None
    src = {}
    for name, ids in (sources or {}).items():
        if name not in synthetic:
            raise ValueError(f"sources: no synthetic set named {name!r}; sets: {sorted(synthetic)}")
        ids = np.asarray(ids)
        if ids.ndim != 1 or ids.shape[0] != synthetic[name].n:
            raise ValueError(f"sources[{name!r}] must give one source id per image ({synthetic[name].n}), "
                             f"got shape {ids.shape}")
        src[name] = ids[synthetic[name].kept_index]
    return CellFeatures(cells, {c: real.kept[c] for c in cells},
                        {name: {c: st.kept[c] for c in cells} for name, st in synthetic.items()}, src)


def _normalized_result(extractors, scales, n_real: int, n_syn: dict, fd_ref, std_real, fd: dict, std: dict,
                       normalization: str, features: CellFeatures | None, opts: MMFIDOptions,
                       suite: dict) -> MMFIDResult:
    """The tables normalized (``auto`` is the calibrated ``reference``) and summarised."""
    if normalization == "auto":
        normalization = "reference"
    shape = (len(extractors), len(scales))
    calibrated = {}
    if features is not None:
        for name in fd:
            calibrated[name] = uncertainty.summaries(features.real, features.sets[name], features.cells,
                                                     splits=opts.splits, seed=opts.seed)
    elif normalization == "reference":
        raise ValueError("normalization 'reference' needs the images' features, which these statistics do not "
                         "hold (saved before features were kept?): pass the images, or normalization='cross-set'")
    if normalization == "reference":
        fd_norm = {k: v["mm_fid_cells"].reshape(shape) for k, v in calibrated.items()}
        std_norm = {k: v["mm_std_cells"].reshape(shape) for k, v in calibrated.items()}
        summary = {k: (geometric_mean(v), float(v.std())) for k, v in fd_norm.items()}
        summary_std = {k: (geometric_mean(v), float(v.std())) for k, v in std_norm.items()}
    else:
        fd_norm, std_norm = cross_set_normalize(fd), cross_set_normalize(std)
        summary = {k: mm_summary(v) for k, v in fd_norm.items()}
        summary_std = {k: mm_summary(v) for k, v in std_norm.items()}
    result = MMFIDResult(extractors, scales, n_real, fd_ref, std_real, fd, std, n_syn, normalization, fd_norm,
                         std_norm, summary, summary_std, suite=suite)
    result.mm_fid_mean = {k: mm_summary(v) for k, v in fd_norm.items()}
    result.mm_std_mean = {k: mm_summary(v) for k, v in std_norm.items()}
    for k, v in calibrated.items():
        result.fd_reference[k] = v["fd_den"].reshape(shape)
        result.fd_comparison[k] = v["fd_num"].reshape(shape)
        result.kid_norm[k] = v["kid_cells"].reshape(shape)
        result.mm_kid[k] = (v["kid"], float(v["kid_cells"].std()))
    result.reference = {**reference_status(n_real), "splits": opts.splits,
                        "kept_real": None if features is None else features.n_real}
    result._features, result._seed = features, opts.seed
    return result


def _add_extras(result: MMFIDResult, real: SetStats, synthetic: dict, cell, opts: MMFIDOptions, kw: dict) -> None:
    """Intervals and comparisons, per-cell bootstrap, k-NN sets, Wilcoxon tests and t-SNE, into ``result.extras``."""
    extractors, scales = result.extractors, result.scales
    if opts.bootstrap:
        result.extras["bootstrap"] = {name: bootstrap_cells(real, st, extractors, scales, opts.bootstrap,
                                                            opts.confidence, opts.seed)
                                      for name, st in synthetic.items()}
        if result._features is not None:
            # one pass of resampling serves every set, pair and metric
            names = list(synthetic)
            pairs = list(itertools.combinations(names, 2))
            got = result._resampled(names, pairs, opts.bootstrap, opts.bootstrap, opts.seed)
            result.extras["intervals"] = {name: {m: uncertainty.interval_result(got[("interval", name)], m,
                                                                                opts.confidence)
                                                 for m in uncertainty.METRICS} for name in names}
            result.extras["comparisons"] = {f"{a} vs {b}": {m: uncertainty.compare_result(got[("compare", a, b)], m,
                                                                                          opts.confidence)
                                                            for m in uncertainty.METRICS} for a, b in pairs}
    if opts.knn:
        result.extras["knn"] = _knn(real, synthetic, cell, opts, kw)
    if len(synthetic) > 1:
        result.extras["wilcoxon"] = wilcoxon_pairs(result.fd_norm, result.std_norm)
    if opts.tsne is not None:
        tsne_plot({"real": real.kept[cell], **{n: s.kept[cell] for n, s in synthetic.items()}},
                  opts.tsne, title=f"t-SNE of {cell[0]} features at {cell[1]} px", seed=opts.seed)
        result.extras["tsne"] = {"path": os.fspath(opts.tsne), "cell": list(cell)}


def _knn(real: SetStats, synthetic: dict, cell, opts: MMFIDOptions, kw: dict) -> dict:
    """k-NN sets of every synthetic set against the reference images, and the held-out real images' rates.

    With ``knn_reference`` (the generator's training images), every real image is held out
    and gets its rates against that reference. Without it the real images are the
    reference; their chance rates then come from a split: the even-indexed kept real images
    against the odd ones.
    """
    def entry(ref, x):
        got = knn_sets(ref, x, k=opts.k)
        return {"cell": list(cell), "k": got["k"], "counts": got["counts"], "fractions": got["fractions"],
                "images": int(got["labels"].size), "reference_images": int(len(ref))}

    real_f = real.kept[cell]
    if opts.knn_reference is not None:
        ref = _set_stats(opts.knn_reference, "knn_reference", False, True, [cell[0]], [cell[1]], kw).kept[cell]
        held, what = real_f, "real images (all held out)"
    else:
        ref, held, what = real_f, None, "odd-indexed kept real images against the even-indexed ones"
    out = {name: entry(ref, st.kept[cell]) for name, st in synthetic.items()}
    try:
        chance = entry(ref, held) if held is not None else entry(real_f[0::2], real_f[1::2])
    except ValueError as exc:  # too few real images for a k-NN radius
        chance = {"error": str(exc)}
    out["held-out real"] = {**chance, "what": what}
    return out


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
        raise ValueError(f"{name}: the calibrated reference, KID, intervals, k-NN sets and t-SNE need features, "
                         "which these saved statistics do not hold; pass the images, or use "
                         "normalization='cross-set' without extras")
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
        FD between the even- and odd-indexed real images (the old, uncalibrated reference,
        kept for comparison), and STD of the real features.
    fd, std : dict of set name -> numpy.ndarray (K, S)
        Raw tables (all images).
    normalization : str
        ``reference`` (calibrated) or ``cross-set``: the one used for ``mm_fid`` / ``mm_std``.
    fd_norm, std_norm : dict of set name -> numpy.ndarray (K, S)
        Normalized tables (chosen normalization).
    mm_fid, mm_std : dict of set name -> (summary, std of the cells)
        The summary is the geometric mean of the cells under ``reference`` and the
        arithmetic mean under ``cross-set`` (the authors' procedure).
    mm_fid_mean, mm_std_mean : dict of set name -> (mean, std)
        Arithmetic means of the normalized cells, as the paper reports them.
    fd_comparison, fd_reference : dict of set name -> numpy.ndarray (K, S)
        The two averages of the calibrated ratio per cell (FD_n = comparison / reference).
    kid_norm : dict of set name -> numpy.ndarray (K, S)
        KID per cell, divided by the real features' spread in the kernel's space.
    mm_kid : dict of set name -> (mean, std)
    reference : dict
        ``status`` ("ok" or "small"), ``message``, ``splits``, ``kept_real``.
    n_syn : dict of set name -> int
    extras : dict
        ``intervals``, ``comparisons``, ``bootstrap``, ``knn``, ``wilcoxon``, ``tsne`` when computed.
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
    mm_fid_mean: dict = field(default_factory=dict)
    mm_std_mean: dict = field(default_factory=dict)
    fd_comparison: dict = field(default_factory=dict)
    fd_reference: dict = field(default_factory=dict)
    kid_norm: dict = field(default_factory=dict)
    mm_kid: dict = field(default_factory=dict)
    reference: dict = field(default_factory=dict)
    _features: CellFeatures | None = field(default=None, repr=False, compare=False)
    _seed: int = field(default=0, repr=False, compare=False)
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def _need_features(self) -> CellFeatures:
        if self._features is None:
            raise ValueError("this result holds no per-image features (statistics loaded without them, or "
                             "keep=0): intervals and comparisons need them")
        return self._features

    def interval(self, name: str, confidence: float = 0.95, *, metric: str = "mm_fid",
                 resamples: int = uncertainty.DEFAULT_RESAMPLES, seed: int | None = None) -> tuple[float, float]:
        """Confidence interval of one set's MM-FID (or ``metric="mm_std"`` / ``"kid"``).

        A percentile bootstrap over images: real and synthetic images are drawn with
        replacement (source cases, when the set records them), the same draw for every
        cell, and the calibrated summary is recomputed (4 random real splits a replicate,
        so the split noise is inside the interval).

        Returns
        -------
        (float, float)
            (low, high) at ``confidence``.
        """
        uncertainty.check_request(self._need_features(), [name], metric, confidence, resamples)
        # every set's replicates at once: the other sets' (and metrics') intervals come from the same pass
        got = self._resampled(list(self._features.sets), (), resamples, 0, self._seed if seed is None else seed)
        return uncertainty.interval_result(got[("interval", name)], metric, confidence)["interval"]

    def compare(self, a: str, b: str, *, metric: str = "mm_fid", confidence: float = 0.95,
                resamples: int = uncertainty.DEFAULT_RESAMPLES,
                permutations: int = uncertainty.DEFAULT_PERMUTATIONS, seed: int | None = None) -> dict:
        """The difference ``metric(a) - metric(b)`` with a bootstrap interval and a permutation p-value.

        Images are the replication unit (source cases, paired, when both sets record the
        same cases: ``mmfid(..., sources=...)``); see :func:`umsynth.metrics.uncertainty.compare`.

        Returns
        -------
        dict
            ``difference``, ``interval`` (low, high), ``p_value``, ``unit``, and the settings.
        """
        uncertainty.check_request(self._need_features(), [a, b], metric, confidence, resamples, permutations)
        got = self._resampled((), [(a, b)], resamples, permutations, self._seed if seed is None else seed)
        return uncertainty.compare_result(got[("compare", a, b)], metric, confidence)

    def _resampled(self, names, pairs, resamples: int, permutations: int, seed: int) -> dict:
        """:func:`umsynth.metrics.uncertainty.resample`, remembered: intervals and comparisons of
        every metric come from one pass (the answers do not depend on which are asked together)."""
        splits = self.reference.get("splits", uncertainty.DEFAULT_SPLITS)

        def key(k):  # an interval's replicates depend on the draws only
            return (int(resamples), int(seed)) + k if k[0] == "interval" else \
                (int(resamples), int(permutations), int(seed), splits) + k

        todo_names = [n for n in names if key(("interval", n)) not in self._cache]
        todo_pairs = [p for p in pairs if key(("compare",) + tuple(p)) not in self._cache]
        if todo_names or todo_pairs:
            got = uncertainty.resample(self._need_features(), todo_names, todo_pairs, resamples=resamples,
                                       permutations=permutations, seed=seed, splits=splits)
            self._cache.update({key(k): v for k, v in got.items()})
        return {k: self._cache[key(k)] for k in [("interval", n) for n in names] + [("compare",) + tuple(p) for p in pairs]}

    def to_dict(self) -> dict:
        """JSON-ready dict (tables as nested lists, rows = extractors, columns = scales)."""
        sets = {}
        for k in self.fd:
            sets[k] = {"n": self.n_syn[k], "fd": self.fd[k].tolist(), "std": self.std[k].tolist(),
                       "fd_normalized": self.fd_norm[k].tolist(), "std_normalized": self.std_norm[k].tolist(),
                       "mm_fid": self.mm_fid[k][0], "mm_fid_std": self.mm_fid[k][1],
                       "mm_std": self.mm_std[k][0], "mm_std_std": self.mm_std[k][1]}
            if k in self.mm_fid_mean:
                sets[k]["mm_fid_mean"] = self.mm_fid_mean[k][0]
                sets[k]["mm_std_mean"] = self.mm_std_mean[k][0]
            if k in self.mm_kid:
                sets[k].update(mm_kid=self.mm_kid[k][0], mm_kid_std=self.mm_kid[k][1],
                               kid_normalized=self.kid_norm[k].tolist(),
                               fd_comparison=self.fd_comparison[k].tolist(),
                               fd_reference=self.fd_reference[k].tolist())
            for extra in ("bootstrap", "knn", "intervals"):
                if k in self.extras.get(extra, {}):
                    sets[k][extra] = self.extras[extra][k]
        out = {"definitions": DEFINITIONS, "normalization": self.normalization, "extractors": self.extractors,
               "scales": self.scales, "suite": self.suite, "n_real": self.n_real,
               "reference": {**self.reference, "fd_real_halves": self.fd_ref.tolist(),
                             "std_real": self.std_real.tolist()},
               "sets": sets}
        if "held-out real" in self.extras.get("knn", {}):
            out["knn_held_out_real"] = self.extras["knn"]["held-out real"]
        for extra in ("comparisons", "wilcoxon", "tsne"):
            if extra in self.extras:
                out[extra] = self.extras[extra]
        return out

    def save(self, path: str | os.PathLike) -> None:
        """Write :meth:`to_dict` as JSON, atomically (temp file beside it, then rename)."""
        atomic_write_text(os.fspath(path), json.dumps(self.to_dict(), indent=1) + "\n")
