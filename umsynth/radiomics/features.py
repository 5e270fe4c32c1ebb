"""Radiomics features of a batch of 2D images, with pyradiomics' names and definitions.

The texture matrices are counted in C++ (umsynth.kernels.radiomics, one image per thread).
First-order, GLCM and NGTDM formulas run there too, image by image on dense matrices
(csrc/radiomics/radiomics_features.h); the formulas shared by GLRLM, GLSZM and GLDM (and
GLCM's MCC) are evaluated here on the sparse matrices of the whole batch at once (segment
sums with ``numpy.bincount``). This module validates, prepares and filters the images.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

from umsynth.kernels.arrays import check_finite, cuda_module, is_gpu_array, to_numpy
from umsynth.kernels.config import resolve_threads
from umsynth.kernels import radiomics as kernels
from umsynth.radiomics import filters as flt

EPS = float(np.spacing(1))  # pyradiomics' epsilon inside logarithms and divisions

FIRSTORDER = ("10Percentile", "90Percentile", "Energy", "Entropy", "InterquartileRange", "Kurtosis",
              "Maximum", "Mean", "MeanAbsoluteDeviation", "Median", "Minimum", "Range",
              "RobustMeanAbsoluteDeviation", "RootMeanSquared", "Skewness", "TotalEnergy",
              "Uniformity", "Variance")
GLCM = ("Autocorrelation", "ClusterProminence", "ClusterShade", "ClusterTendency", "Contrast",
        "Correlation", "DifferenceAverage", "DifferenceEntropy", "DifferenceVariance", "Id", "Idm",
        "Idmn", "Idn", "Imc1", "Imc2", "InverseVariance", "JointAverage", "JointEnergy",
        "JointEntropy", "MCC", "MaximumProbability", "SumAverage", "SumEntropy", "SumSquares")
# GLRLM, GLSZM and GLDM share one set of formulas on a (gray level, length) matrix: the
# generic quantity -> the class's own feature name.
_LENGTH_NAMES = {
    "glrlm": {"short": "ShortRunEmphasis", "long": "LongRunEmphasis",
              "gln": "GrayLevelNonUniformity", "glnn": "GrayLevelNonUniformityNormalized",
              "ln": "RunLengthNonUniformity", "lnn": "RunLengthNonUniformityNormalized",
              "percentage": "RunPercentage", "glv": "GrayLevelVariance", "lv": "RunVariance",
              "entropy": "RunEntropy", "lgle": "LowGrayLevelRunEmphasis",
              "hgle": "HighGrayLevelRunEmphasis", "slgle": "ShortRunLowGrayLevelEmphasis",
              "shgle": "ShortRunHighGrayLevelEmphasis", "llgle": "LongRunLowGrayLevelEmphasis",
              "lhgle": "LongRunHighGrayLevelEmphasis"},
    "glszm": {"short": "SmallAreaEmphasis", "long": "LargeAreaEmphasis",
              "gln": "GrayLevelNonUniformity", "glnn": "GrayLevelNonUniformityNormalized",
              "ln": "SizeZoneNonUniformity", "lnn": "SizeZoneNonUniformityNormalized",
              "percentage": "ZonePercentage", "glv": "GrayLevelVariance", "lv": "ZoneVariance",
              "entropy": "ZoneEntropy", "lgle": "LowGrayLevelZoneEmphasis",
              "hgle": "HighGrayLevelZoneEmphasis", "slgle": "SmallAreaLowGrayLevelEmphasis",
              "shgle": "SmallAreaHighGrayLevelEmphasis", "llgle": "LargeAreaLowGrayLevelEmphasis",
              "lhgle": "LargeAreaHighGrayLevelEmphasis"},
    "gldm": {"short": "SmallDependenceEmphasis", "long": "LargeDependenceEmphasis",
             "gln": "GrayLevelNonUniformity", "ln": "DependenceNonUniformity",
             "lnn": "DependenceNonUniformityNormalized", "glv": "GrayLevelVariance",
             "lv": "DependenceVariance", "entropy": "DependenceEntropy",
             "lgle": "LowGrayLevelEmphasis", "hgle": "HighGrayLevelEmphasis",
             "slgle": "SmallDependenceLowGrayLevelEmphasis",
             "shgle": "SmallDependenceHighGrayLevelEmphasis",
             "llgle": "LargeDependenceLowGrayLevelEmphasis",
             "lhgle": "LargeDependenceHighGrayLevelEmphasis"},
}
NGTDM = ("Busyness", "Coarseness", "Complexity", "Contrast", "Strength")
FEATURES = {
    "firstorder": FIRSTORDER,
    "glcm": GLCM,
    "glrlm": tuple(sorted(_LENGTH_NAMES["glrlm"].values())),
    "glszm": tuple(sorted(_LENGTH_NAMES["glszm"].values())),
    "gldm": tuple(sorted(_LENGTH_NAMES["gldm"].values())),
    "ngtdm": NGTDM,
}
"""Feature class -> pyradiomics' enabled-by-default features, in pyradiomics' (sorted) order."""
CLASSES = tuple(FEATURES)
FILTERS = ("original", "log", "wavelet")


# ---------------------------------------------------------------------------- segment sums

def _segsum(seg: np.ndarray, w: np.ndarray, S: int) -> np.ndarray:
    return np.bincount(seg, weights=w, minlength=S)


def _dense(seg: np.ndarray, k: np.ndarray, w: np.ndarray, S: int, K: int) -> np.ndarray:
    """(S, K) array of the sums of w by (segment, integer k)."""
    return np.bincount(seg * K + k, weights=w, minlength=S * K).reshape(S, K)


def _angle_mean(values: np.ndarray, valid: np.ndarray, N: int) -> np.ndarray:
    """Mean over the angles that hold pairs (pyradiomics drops empty angles); NaN if none."""
    v = np.where(valid, values, 0.0).reshape(N, -1)
    k = valid.reshape(N, -1).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(k > 0, v.sum(axis=1) / np.maximum(k, 1), np.nan)


# ---------------------------------------------------------------------------- first order, GLCM, NGTDM (C++)

def _columns(values: np.ndarray, columns: Sequence[str], wanted: Sequence[str]) -> dict[str, np.ndarray]:
    """The wanted columns of an (N, F) result of the C++ formulas."""
    col = {name: k for k, name in enumerate(columns)}
    return {name: np.ascontiguousarray(values[:, col[name]]) for name in wanted if name in col}


def _glcm(src, N: int, wanted: Sequence[str]) -> dict[str, np.ndarray]:
    """GLCM features: the formulas run in C++ on each image's matrices; MCC (an
    eigenproblem per matrix) here."""
    r = _columns(*src.glcm_features(), wanted)
    if "MCC" in wanted:
        coo = src.glcm()
        tot = _segsum(coo.seg, coo.v, N * 4)
        r["MCC"] = _angle_mean(_mcc(coo, coo.v / np.where(tot > 0, tot, 1.0)[coo.seg], N), tot > 0, N)
    return r


def _mcc(coo: kernels.Coo, p: np.ndarray, N: int) -> np.ndarray:
    """Maximal correlation coefficient: a dense eigenproblem per image and angle."""
    out = np.zeros(N * 4)
    bounds = np.searchsorted(coo.seg, np.arange(N * 4 + 1))
    for n in range(N):
        lo, hi = bounds[n * 4], bounds[n * 4 + 4]
        levels = np.unique(coo.a[lo:hi])
        G = levels.size
        for s in range(n * 4, n * 4 + 4):
            a, b = bounds[s], bounds[s + 1]
            if a == b:
                continue
            if G < 2:
                out[s] = 1.0
                continue
            P = np.zeros((G, G))
            P[np.searchsorted(levels, coo.a[a:b]), np.searchsorted(levels, coo.b[a:b])] = p[a:b]
            px, py = P.sum(axis=1), P.sum(axis=0)
            Q = (P / (px[:, None] * py[None, :] + EPS)) @ P.T
            ev = np.sort(np.linalg.eigvals(Q))
            out[s] = np.sqrt(ev[-2]).real
    return out


# ---------------------------------------------------------------------------- GLRLM / GLSZM / GLDM

def _length_matrix(coo: kernels.Coo, S: int, names: dict[str, str], wanted: Sequence[str]
                   ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The formulas shared by the run-length, size-zone and dependence matrices."""
    seg, c = coo.seg, coo.v
    i = coo.a.astype(np.float64)
    j = coo.b.astype(np.float64)
    nz = _segsum(seg, c, S)
    valid = nz > 0
    nzs = np.where(valid, nz, 1.0)
    Ki = int(coo.a.max(initial=0)) + 1
    Kj = int(coo.b.max(initial=0)) + 1
    pg = _dense(seg, coo.a.astype(np.int64), c, S, Ki)
    pl = _dense(seg, coo.b.astype(np.int64), c, S, Kj)
    pn = c / nzs[seg]
    ui = _segsum(seg, i * pn, S)
    uj = _segsum(seg, j * pn, S)
    q = {
        "short": lambda: _segsum(seg, c / j ** 2, S) / nzs,
        "long": lambda: _segsum(seg, c * j ** 2, S) / nzs,
        "gln": lambda: (pg ** 2).sum(axis=1) / nzs,
        "glnn": lambda: (pg ** 2).sum(axis=1) / nzs ** 2,
        "ln": lambda: (pl ** 2).sum(axis=1) / nzs,
        "lnn": lambda: (pl ** 2).sum(axis=1) / nzs ** 2,
        "percentage": lambda: nz / np.where(valid, _segsum(seg, c * j, S), 1.0),
        "glv": lambda: _segsum(seg, pn * (i - ui[seg]) ** 2, S),
        "lv": lambda: _segsum(seg, pn * (j - uj[seg]) ** 2, S),
        "entropy": lambda: -_segsum(seg, pn * np.log2(pn + EPS), S),
        "lgle": lambda: _segsum(seg, c / i ** 2, S) / nzs,
        "hgle": lambda: _segsum(seg, c * i ** 2, S) / nzs,
        "slgle": lambda: _segsum(seg, c / (i ** 2 * j ** 2), S) / nzs,
        "shgle": lambda: _segsum(seg, c * i ** 2 / j ** 2, S) / nzs,
        "llgle": lambda: _segsum(seg, c * j ** 2 / i ** 2, S) / nzs,
        "lhgle": lambda: _segsum(seg, c * i ** 2 * j ** 2, S) / nzs,
    }
    return {name: q[key]() for key, name in names.items() if name in wanted}, valid


# ---------------------------------------------------------------------------- driver

def _as_batch(x: Any, name: str) -> np.ndarray:
    if is_gpu_array(x):
        # a GPU mask with host images, or the reverse: the same error as every umsynth
        # kernel where no device is usable, else a clear refusal (never a copy)
        cuda_module()
        raise ValueError(f"{name}: a GPU array with host arrays; pass images and masks on one device "
                         "(umsynth never copies them behind your back)")
    arr, _ = to_numpy(x, name)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"{name} must be one 2D image (H, W) or a batch (N, H, W), got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be real numbers, got dtype {arr.dtype}")
    return arr


def _check_classes(classes: Iterable[str] | dict) -> dict[str, tuple[str, ...]]:
    if isinstance(classes, str):
        classes = (classes,)
    out = {}
    items = classes.items() if isinstance(classes, dict) else ((c, None) for c in classes)
    for cls, names in items:
        if cls not in FEATURES:
            raise ValueError(f"classes: unknown feature class {cls!r}; choose from {CLASSES}")
        names = FEATURES[cls] if names is None else tuple(names)
        bad = [n for n in names if n not in FEATURES[cls]]
        if bad:
            raise ValueError(f"classes: {cls} has no feature {bad[0]!r}; it has {FEATURES[cls]}")
        out[cls] = names
    if not out:
        raise ValueError("classes: choose at least one feature class")
    return out


def _image_types(filters: Sequence[str], log_sigma: Sequence[float]) -> list[str]:
    if isinstance(filters, str):
        filters = (filters,)
    types = []
    for f in filters:
        if f not in FILTERS:
            raise ValueError(f"filters: unknown filter {f!r}; choose from {FILTERS}")
        if f == "original":
            types.append("original")
        elif f == "log":
            if not len(log_sigma):
                raise ValueError("filters: 'log' needs at least one log_sigma")
            types += [flt.log_name(s) for s in log_sigma]
        else:
            types += [f"wavelet-{b}" for b in flt.WAVELET_BANDS]
    return types


def feature_names(filters: Sequence[str] = ("original",), classes: Iterable[str] | dict = CLASSES,
                  log_sigma: Sequence[float] = ()) -> list[str]:
    """The names :func:`features` returns for these settings, in its (fixed) column order.

    Parameters
    ----------
    filters, classes, log_sigma
        As in :func:`features`.

    Returns
    -------
    list of str
        ``{image type}_{class}_{feature}``, e.g. ``original_glcm_Contrast``.
    """
    cls = _check_classes(classes)
    return [f"{t}_{c}_{n}" for t in _image_types(filters, log_sigma) for c, names in cls.items() for n in names]


def features(images: Any, masks: Any = None, *, filters: Sequence[str] = ("original",),
             classes: Iterable[str] | dict = CLASSES, bin_width: float = 25.0,
             voxel_array_shift: float = 0.0, normalize: bool = False, normalize_scale: float = 1.0,
             spacing: tuple[float, float] = (1.0, 1.0), resampled_spacing: tuple[float, float] | None = None,
             log_sigma: Sequence[float] = (), wavelet: str = "coif1", gldm_alpha: int = 0,
             threads: int | None = None) -> dict[str, np.ndarray]:
    """Radiomics features of a batch of 2D images, as pyradiomics computes them (force2D).

    Parameters
    ----------
    images : array_like, shape (N, H, W) or (H, W)
        numpy array, torch tensor or CuPy array, in HU or grey values (any real dtype). A
        GPU batch (CUDA tensor, CuPy array) is discretised and its texture matrices counted
        on its device by umsynth's CUDA kernels; the matrices, and the values for the first
        order, then come to the host for the formulas. On the GPU only the original image
        type is computed (no filters, ``normalize`` or ``resampled_spacing``), and the masks
        must be on the same device.
    masks : array_like, optional
        Region of interest of each image, the images' shape (non-zero = inside); a single
        (H, W) mask is shared by the batch. Default: the whole image.
    filters : sequence of {"original", "log", "wavelet"}, optional
        Image types: the image itself, the Laplacian of Gaussian at each ``log_sigma``, and
        the four 2D wavelet bands (LH, HL, HH, LL). Default: the original only.
    classes : sequence of str or dict, optional
        Feature classes (``firstorder``, ``glcm``, ``glrlm``, ``glszm``, ``gldm``,
        ``ngtdm``), or a dict class -> feature names for a subset. Default: all six with
        pyradiomics' enabled-by-default features.
    bin_width : float, optional
        Fixed bin width of the discretisation (pyradiomics ``binWidth``, default 25).
    voxel_array_shift : float, optional
        Added to the values for Energy, TotalEnergy and RootMeanSquared
        (``voxelArrayShift``, default 0).
    normalize : bool, optional
        Normalise each whole image to mean 0 and standard deviation ``normalize_scale``
        first (pyradiomics ``normalize``/``normalizeScale``; default off).
    normalize_scale : float, optional
    spacing : (float, float), optional
        Pixel spacing (row, column) in mm; default 1 mm.
    resampled_spacing : (float, float), optional
        Resample to this spacing in mm (B-spline images, nearest-neighbour masks) before
        filtering; default none.
    log_sigma : sequence of float, optional
        Sigmas in mm of the "log" filter.
    wavelet : str, optional
        PyWavelets name of the "wavelet" filter (default ``coif1``).
    gldm_alpha : int, optional
        Dependence threshold of the GLDM (pyradiomics ``gldm_a``, default 0).
    threads : int, optional
        Threads of the C++ kernels (default: :func:`umsynth.get_num_threads`).

    Returns
    -------
    dict of str to numpy.ndarray
        ``{image type}_{class}_{feature}`` (pyradiomics' names, e.g.
        ``original_glcm_Contrast``) -> float64 array of one value per image, in the order of
        :func:`feature_names`. A texture feature with no pairs in any direction (a
        one-pixel-thin region) is NaN.

    Raises
    ------
    ValueError
        For NaN or Inf values, a mask of another shape, an empty mask, an image whose region
        holds one value only, or bad settings (each message names the argument).
    TypeError
        For non-numeric input.
    umsynth.kernels.arrays.CudaUnavailableError
        For GPU input where umsynth's CUDA kernels cannot run (a ValueError).

    Notes
    -----
    Definitions are pyradiomics 3's: fixed-bin-width discretisation anchored at the ROI
    minimum, gray levels as the bin numbers, the four in-plane directions at distance 1
    (symmetric GLCM, features averaged over the directions), 8-connected zones and
    8-neighbourhoods. Known differences, feature by feature: GLCM Imc2 uses
    HXY2 = HX + HY (exact up to G^2 machine epsilons) and is 0 rather than NaN where
    rounding makes HXY2 < HXY; the LoG filter is scipy's sampled Gaussian rather than
    SimpleITK's recursive one; resampling interpolates the whole image (pyradiomics crops to
    the mask's box plus a margin first, which changes the filters only near that box).
    """
    settings = {k: v for k, v in locals().items() if k not in ("images", "masks")}
    return _extract(images, masks, check_constant=True, **settings)


def _extract(images: Any, masks: Any, *, check_constant: bool, filters: Sequence[str] = ("original",),
             classes: Iterable[str] | dict = CLASSES, bin_width: float = 25.0, voxel_array_shift: float = 0.0,
             normalize: bool = False, normalize_scale: float = 1.0, spacing=(1.0, 1.0), resampled_spacing=None,
             log_sigma: Sequence[float] = (), wavelet: str = "coif1", gldm_alpha: int = 0,
             threads: int | None = None) -> dict[str, np.ndarray]:
    """:func:`features` itself; ``check_constant=False`` lets an image constant in its region through
    (every formula has a defined value for one gray level: the MM-FID member must not stop on a
    blank synthetic image)."""
    cls = _check_classes(classes)
    types = _image_types(filters, log_sigma)
    if is_gpu_array(images):
        if not bin_width > 0:
            raise ValueError(f"bin_width must be > 0, got {bin_width}")
        res = _extract_device(images, masks, cls, check_constant=check_constant, filters=filters,
                              bin_width=float(bin_width), voxel_array_shift=float(voxel_array_shift),
                              normalize=normalize, spacing=_pair(spacing, "spacing"),
                              resampled_spacing=resampled_spacing, gldm_alpha=int(gldm_alpha), threads=threads)
        return {f"original_{c}_{f}": res[c][f] for c, names in cls.items() for f in names}
    img = _as_batch(images, "images")
    check_finite(img, "images")
    img = np.asarray(img, dtype=np.float64)  # no copy when it is float64 already
    N, H, W = img.shape
    if N == 0:
        raise ValueError("images: the batch is empty")
    if H * W >= 2 ** 31:
        raise ValueError(f"images: {H} x {W} is more than 2^31 pixels per image")
    roi = None
    if masks is not None:
        m = _as_batch(masks, "masks")
        if m.shape[0] == 1 and N > 1:
            m = np.broadcast_to(m, img.shape)
        if m.shape != img.shape:
            raise ValueError(f"masks must have the images' shape {img.shape}, got {m.shape}")
        roi = np.ascontiguousarray(m != 0)
        empty = np.flatnonzero(~roi.reshape(N, -1).any(axis=1))
        if empty.size:
            raise ValueError(f"masks: the mask of image {int(empty[0])} is empty")
    if not bin_width > 0:
        raise ValueError(f"bin_width must be > 0, got {bin_width}")
    spacing = _pair(spacing, "spacing")
    if check_constant:
        _check_constant(img, roi, "images")
    if normalize:
        if not normalize_scale > 0:
            raise ValueError(f"normalize_scale must be > 0, got {normalize_scale}")
        img = flt.normalize(img, float(normalize_scale))
    if resampled_spacing is not None:
        new = _pair(resampled_spacing, "resampled_spacing")
        img, roi = flt.resample(img, roi, spacing, new)
        spacing = new
        if roi is not None:
            empty = np.flatnonzero(~roi.reshape(N, -1).any(axis=1))
            if empty.size:
                raise ValueError(f"masks: the mask of image {int(empty[0])} is empty after resampling")
    out: dict[str, np.ndarray] = {}
    workers = min(resolve_threads(threads), len(types))

    def one(item):
        name, filtered = item
        # with several image types, each worker thread takes one type at a time and its
        # kernels run on one thread: numpy and the C++ calls release the GIL, so the
        # Python formulas run in parallel too
        return name, _one_image_type(filtered, roi, cls, float(bin_width), float(voxel_array_shift),
                                     spacing[0] * spacing[1], int(gldm_alpha), 1 if workers > 1 else threads)

    images_by_type = _filtered(img, filters, log_sigma, spacing, wavelet)
    if workers > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(one, images_by_type))
    else:
        results = [one(item) for item in images_by_type]
    for name, res in results:
        for c, names in cls.items():
            for f in names:
                out[f"{name}_{c}_{f}"] = res[c][f]
    return {k: out[k] for k in feature_names(filters, classes, log_sigma)}


def feature_matrix(images: Any, masks: Any = None, **settings) -> tuple[np.ndarray, list[str]]:
    """:func:`features` as an (N, F) float64 matrix and its column names (fixed order).

    The form a feature extractor needs: the same settings always give the same columns.
    """
    d = features(images, masks, **settings)
    names = list(d)
    return np.stack([d[k] for k in names], axis=1), names


def _pair(v: Any, name: str) -> tuple[float, float]:
    t = tuple(float(x) for x in np.atleast_1d(v))
    if len(t) == 1:
        t = t * 2
    if len(t) != 2 or not all(np.isfinite(x) and x > 0 for x in t):
        raise ValueError(f"{name} must be one or two positive numbers (mm), got {v!r}")
    return t


def _check_constant(img: np.ndarray, roi: np.ndarray | None, name: str) -> None:
    if roi is None:
        lo, hi = img.min(axis=(1, 2)), img.max(axis=(1, 2))
    else:
        lo = np.where(roi, img, np.inf).min(axis=(1, 2))
        hi = np.where(roi, img, -np.inf).max(axis=(1, 2))
    flat = np.flatnonzero(lo == hi)
    if flat.size:
        raise ValueError(f"{name}: image {int(flat[0])} is constant inside its region of interest, "
                         "so its texture is undefined")


def _filtered(img, filters, log_sigma, spacing, wavelet):
    """(image type, filtered batch) in the order of the image types."""
    for f in ((filters,) if isinstance(filters, str) else filters):
        if f == "original":
            yield "original", img
        elif f == "log":
            for s in log_sigma:
                if not s > 0:
                    raise ValueError(f"log_sigma must be > 0, got {s}")
                yield flt.log_name(s), flt.laplacian_of_gaussian(img, float(s), spacing)
        elif f == "wavelet":
            bands = flt.wavelet(img, wavelet)
            for b in flt.WAVELET_BANDS:
                yield f"wavelet-{b}", bands[b]


class HostMatrices:
    """A discretised host batch and its matrices, counted by the C++ CPU launchers.

    umsynth.radiomics.device.DeviceMatrices offers the same methods for a GPU batch;
    :func:`_evaluate` reads either.
    """

    def __init__(self, img: np.ndarray, roi: np.ndarray | None, bin_width: float, threads: int | None):
        N = img.shape[0]
        mn = img.min(axis=(1, 2)) if roi is None else np.where(roi, img, np.inf).min(axis=(1, 2))
        low = mn - np.mod(mn, bin_width)  # pyradiomics: minimum - minimum % binWidth
        delta = (low + bin_width) - low  # the step numpy.arange really takes
        self.img, self.threads, self.N = img, threads, N
        self.q_full = q = kernels.discretize(img, roi, low, delta, threads)
        if roi is not None:  # the matrices only see the ROI: count inside the batch's ROI box
            inside = roi.any(axis=0)
            ys, xs = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
            q = np.ascontiguousarray(q[:, ys[0]:ys[-1] + 1, xs[0]:xs[-1] + 1])
        self.q = q

    def firstorder(self, shift: float, pixel_area: float):
        return kernels.firstorder(self.img, self.q_full, shift, pixel_area, self.threads)

    def glcm_features(self):
        return kernels.glcm_features(self.q, self.threads)

    def glcm(self) -> kernels.Coo:
        return kernels.glcm(self.q, self.threads)

    def glrlm(self) -> kernels.Coo:
        return kernels.glrlm(self.q, self.threads)

    def glszm(self) -> kernels.Coo:
        return kernels.glszm(self.q, self.threads)

    def gldm(self, alpha: int) -> kernels.Coo:
        return kernels.gldm(self.q, alpha, self.threads)

    def ngtdm_features(self):
        return kernels.ngtdm_features(self.q, self.threads)


def _one_image_type(img: np.ndarray, roi: np.ndarray | None, cls: dict, bin_width: float, shift: float,
                    pixel_area: float, alpha: int, threads: int | None) -> dict[str, dict[str, np.ndarray]]:
    return _evaluate(HostMatrices(img, roi, bin_width, threads), cls, shift, pixel_area, alpha)


def _evaluate(src, cls: dict, shift: float, pixel_area: float, alpha: int) -> dict[str, dict[str, np.ndarray]]:
    """Every wanted feature from a HostMatrices or DeviceMatrices source."""
    N = src.N
    res: dict[str, dict[str, np.ndarray]] = {}
    for c, names in cls.items():
        if c == "firstorder":
            res[c] = _columns(*src.firstorder(shift, pixel_area), names)
        elif c == "glcm":
            res[c] = _glcm(src, N, names)
        elif c == "glrlm":
            vals, valid = _length_matrix(src.glrlm(), N * 4, _LENGTH_NAMES[c], names)
            res[c] = {k: _angle_mean(v, valid, N) for k, v in vals.items()}
        elif c in ("glszm", "gldm"):
            vals, _ = _length_matrix(src.glszm() if c == "glszm" else src.gldm(alpha), N, _LENGTH_NAMES[c], names)
            res[c] = vals
        else:
            res[c] = _columns(*src.ngtdm_features(), names)
    return res


def _extract_device(images: Any, masks: Any, cls: dict, *, check_constant: bool, filters, bin_width: float,
                    voxel_array_shift: float, normalize: bool, spacing, resampled_spacing, gldm_alpha: int,
                    threads: int | None) -> dict[str, dict[str, np.ndarray]]:
    """:func:`_extract` of a GPU batch: the original image's features (see umsynth.radiomics.device)."""
    from umsynth.radiomics import device

    img, roi, ops = device.device_batch(images, masks)
    if tuple((filters,) if isinstance(filters, str) else filters) != ("original",):
        raise ValueError("filters: features of GPU arrays are computed for the original image only; "
                         "LoG and wavelet images are filtered on the host (move the batch with .cpu() / .get())")
    for name, value in (("normalize", normalize), ("resampled_spacing", resampled_spacing)):
        if value:
            raise ValueError(f"{name}: not available for GPU arrays (the images are prepared on the host); "
                             "move the batch with .cpu() / .get()")
    if check_constant:
        lo, hi = device.minmax(ops, img, roi)
        flat = np.flatnonzero(lo == hi)
        if flat.size:
            raise ValueError(f"images: image {int(flat[0])} is constant inside its region of interest, "
                             "so its texture is undefined")
    src = device.DeviceMatrices(img, roi, ops, bin_width, threads)
    return _evaluate(src, cls, voxel_array_shift, spacing[0] * spacing[1], gldm_alpha)
