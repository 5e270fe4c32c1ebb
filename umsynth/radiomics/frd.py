"""The Fréchet Radiomics Distance (FRD) on umsynth's radiomics features and exact Fréchet distance.

FRD (Osuala et al., arXiv 2024; Konz, Osuala et al., Medical Image Analysis 2026) compares
two image sets through the Gaussians of their radiomics features, z-scored with the real
set's statistics. Here the features are :func:`umsynth.radiomics.features` with FRD's 2D
configuration (:data:`FRD_SETTINGS`), accumulated in a mergeable
:class:`~umsynth.FeatureStats`, so a set streams in batches and its statistics merge across
machines. z-scoring is an affine map of each feature, applied to the statistics afterwards:
exactly what z-scoring every feature vector first would give.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from umsynth.frechet import frechet_distance
from umsynth.radiomics.features import FEATURES, feature_names, features
from umsynth.stats import FeatureStats

_FRD_GLCM = tuple(n for n in FEATURES["glcm"] if n not in ("MCC", "SumAverage"))
FRD_SETTINGS: dict[str, Any] = {
    "filters": ("original", "log", "wavelet"),
    "classes": {"firstorder": FEATURES["firstorder"], "glcm": _FRD_GLCM, "glrlm": FEATURES["glrlm"],
                "glszm": FEATURES["glszm"], "ngtdm": FEATURES["ngtdm"]},
    "bin_width": 5.0,
    "voxel_array_shift": 300.0,
    "normalize": True,
    "normalize_scale": 100.0,
    "resampled_spacing": (2.0, 2.0),
    "log_sigma": (2.0, 3.0, 4.0, 5.0),
    "wavelet": "coif1",
}
"""FRD v1's 2D extraction settings (frd-score's ``extraction_2d.yaml``), as features() arguments:
original + LoG (sigma 2, 3, 4, 5 mm) + the four coif1 wavelet bands; first order, GLCM
(without MCC and SumAverage), GLRLM, GLSZM, NGTDM; 693 features."""


@dataclass
class FRDResult:
    """The outcome of :func:`frd`.

    Attributes
    ----------
    frd : float
        ``log(d2)``, frd-score v1's default convention (natural log of the squared distance).
    distance : float
        d2: the squared Fréchet distance between the z-scored feature Gaussians.
    n_real, n_synthetic : int
        Images in each set.
    features : list of str
        The features used: those whose spread over the real set is not zero.
    dropped : list of str
        Features left out because they are constant over the real set (z-scores undefined),
        or constant up to rounding: a standard deviation below 1e-9 of the mean, or mean and
        standard deviation below 1e-12 (the mean of a wavelet detail band is 0 up to rounding).
    """

    frd: float
    distance: float
    n_real: int
    n_synthetic: int
    features: list[str] = field(repr=False)
    dropped: list[str] = field(repr=False)


def _settings(overrides: dict) -> dict:
    unknown = set(overrides) - set(FRD_SETTINGS) - {"gldm_alpha"}
    if unknown:
        raise TypeError(f"unknown FRD setting(s): {', '.join(sorted(unknown))}")
    s = dict(FRD_SETTINGS)
    s.update(overrides)
    return s


def extractor_name(spacing=(1.0, 1.0), **settings) -> str:
    """The name FRD statistics carry: settings that change the features change the name."""
    s = _settings(settings)
    key = json.dumps({k: (list(v) if isinstance(v, tuple) else v) for k, v in sorted(s.items())},
                     sort_keys=True, default=list)
    key += json.dumps([float(x) for x in np.broadcast_to(np.asarray(spacing, float), (2,))])
    return "umsynth-radiomics-frd-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def _batches(images: Any, masks: Any, batch_size: int):
    """(images, masks) batches from an array (N, H, W) or an iterable of batches."""
    if hasattr(images, "shape"):
        n = images.shape[0] if len(images.shape) == 3 else 1
        if len(images.shape) == 2:
            yield images, masks
            return
        for lo in range(0, n, batch_size):
            m = None if masks is None else (masks if len(masks.shape) == 2 else masks[lo:lo + batch_size])
            yield images[lo:lo + batch_size], m
        return
    if masks is not None:
        raise ValueError("masks: give masks with an array of images; an iterable yields (images, masks) pairs")
    for item in images:
        yield (item if isinstance(item, tuple) else (item, None))


def frd_stats(images: Any, masks: Any = None, *, spacing=(1.0, 1.0), batch_size: int = 64,
              stats: FeatureStats | None = None, threads: int | None = None, **settings) -> FeatureStats:
    """Raw FRD features of an image set, accumulated in a :class:`~umsynth.FeatureStats`.

    Parameters
    ----------
    images : array_like (N, H, W) or iterable
        A batch of 2D images, or an iterable of batches (arrays, or ``(images, masks)``
        tuples), so that a large set streams. Sizes may differ between batches.
    masks : array_like, optional
        Regions of interest for an array of images (default: the whole image).
    spacing : (float, float), optional
        Pixel spacing in mm (default 1 mm, as for PNG files).
    batch_size : int, optional
        Images per features() call when ``images`` is one array.
    stats : FeatureStats, optional
        Statistics to add to (same settings); default: new ones.
    threads : int, optional
        Threads of the C++ kernels.
    **settings
        Overrides of :data:`FRD_SETTINGS`.

    Returns
    -------
    FeatureStats
        Of the raw (not z-scored) features, in the order of :func:`frd_feature_names`;
        named by :func:`extractor_name`. Images whose features include NaN (no texture
        pairs in a thin region) are left out, as frd-score drops them.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    s = _settings(settings)
    names = feature_names(s["filters"], s["classes"], s["log_sigma"])
    name = extractor_name(spacing, **settings)
    if stats is None:
        stats = FeatureStats(len(names), extractor=name)
    elif stats.extractor != name or stats.dim != len(names):
        raise ValueError(f"stats: made with other settings ({stats.extractor}), these give {name}")
    for img, msk in _batches(images, masks, batch_size):
        f = features(img, msk, spacing=spacing, threads=threads, **s)
        x = np.stack([f[k] for k in names], axis=1)
        x = x[np.isfinite(x).all(axis=1)]
        if x.shape[0]:
            stats.update(x)
    return stats


def frd_feature_names(**settings) -> list[str]:
    """Column names of FRD statistics (693 with the default settings)."""
    s = _settings(settings)
    return feature_names(s["filters"], s["classes"], s["log_sigma"])


def frd(real: Any, synthetic: Any, *, real_masks: Any = None, synthetic_masks: Any = None,
        spacing=(1.0, 1.0), batch_size: int = 64, threads: int | None = None, method: str = "auto",
        **settings) -> FRDResult:
    """Fréchet Radiomics Distance between a real and a synthetic image set.

    Parameters
    ----------
    real, synthetic : array_like, iterable of batches, or FeatureStats
        2D images (N, H, W) (numpy or CPU torch), an iterable of such batches, or statistics
        from :func:`frd_stats` (or ``umsynth frd --save-stats``) with the same settings.
    real_masks, synthetic_masks : array_like, optional
        Regions of interest (default: the whole image).
    spacing : (float, float), optional
        Pixel spacing in mm of both sets (default 1 mm).
    batch_size : int, optional
        Images per extraction call.
    threads : int, optional
        Threads of the C++ kernels.
    method : str, optional
        Route of the exact Fréchet distance (see :func:`umsynth.frechet_distance`).
    **settings
        Overrides of :data:`FRD_SETTINGS` (``filters``, ``classes``, ``bin_width``,
        ``voxel_array_shift``, ``normalize``, ``normalize_scale``, ``resampled_spacing``,
        ``log_sigma``, ``wavelet``).

    Returns
    -------
    FRDResult
        ``frd = log(d2)`` and the squared distance ``d2`` itself.

    Raises
    ------
    ValueError
        For bad images (see :func:`~umsynth.radiomics.features`), statistics made with other
        settings, fewer than 2 usable images in a set, or no feature that varies over the
        real set.

    Notes
    -----
    Each feature is z-scored with the real set's mean and (population) standard deviation,
    then d2 is the squared Fréchet distance between N(mean, cov) of the two z-scored sets
    (covariances with divisor n - 1), computed exactly. Relation to frd-score 1.0 (v1):
    the same formula, ``log(d2)``, the same settings; frd-score's numbers differ where its
    pipeline differs: it appends pyradiomics' numeric diagnostics (e.g. the image mean) to
    the features, rounds features to float32, removes one corner pixel from whole-image
    masks, drops features with NaN or Inf after z-scoring (here: constant over the real
    set, up to rounding), and its 2D images, stored as 1-pixel-thick volumes, get no LoG features from
    pyradiomics (it needs 4 pixels along every axis); scipy's ``sqrtm`` there adds its own
    error. umsynth's LoG is scipy's sampled Gaussian (pyradiomics: SimpleITK's recursive
    one). Numbers are comparable between umsynth runs with the same settings, not with
    published frd-score values.
    """
    name = extractor_name(spacing, **settings)

    def stats_of(x, m, which):
        if isinstance(x, FeatureStats):
            if m is not None:
                raise ValueError(f"{which}_masks: given with precomputed statistics")
            if x.extractor != name:
                raise ValueError(f"{which}: statistics made with other settings ({x.extractor}); these give {name}")
            return x
        return frd_stats(x, m, spacing=spacing, batch_size=batch_size, threads=threads, **settings)

    a = stats_of(real, real_masks, "real")
    b = stats_of(synthetic, synthetic_masks, "synthetic")
    for s, which in ((a, "real"), (b, "synthetic")):
        if s.n is None or s.n < 2:
            raise ValueError(f"{which}: FRD needs at least 2 images with finite features, got {s.n}")
    names = frd_feature_names(**settings)
    mean_r, var_r = a.mean, np.diag(a.cov) * (a.n - 1) / a.n  # population variance, as frd-score
    # constant features, also those constant up to rounding, whose z-scores would be rounding
    # noise: a spread below 1e-9 of the mean, or values below 1e-12 (a wavelet detail band's
    # mean is 0 up to rounding)
    sd_r = np.sqrt(var_r)
    keep = (sd_r > 1e-9 * np.abs(mean_r)) & (np.maximum(sd_r, np.abs(mean_r)) > 1e-12)
    if not keep.any():
        raise ValueError("real: every feature is constant over the real set; FRD is undefined")
    sd = np.sqrt(var_r[keep])
    mu1 = (mean_r[keep] - mean_r[keep]) / sd
    mu2 = (b.mean[keep] - mean_r[keep]) / sd
    scale = np.outer(sd, sd)
    c1 = a.cov[np.ix_(keep, keep)] / scale
    c2 = b.cov[np.ix_(keep, keep)] / scale
    d2 = frechet_distance(mu1, c1, mu2, c2, method=method)
    return FRDResult(frd=math.log(d2) if d2 > 0 else -math.inf, distance=d2, n_real=int(a.n),
                     n_synthetic=int(b.n), features=[n for n, k in zip(names, keep) if k],
                     dropped=[n for n, k in zip(names, keep) if not k])
