"""Compiled calls of the radiomics texture matrices (csrc/radiomics/), as sparse batches.

Each matrix function takes the discretised batch ``q`` (int32 (N, H, W), gray level 1, 2,
... inside the region of interest, 0 outside) and returns a :class:`Coo`: entry e of the
batch belongs to matrix ``seg[e]`` and holds ``v[e]`` at ``(a[e], b[e])``, grouped by seg in
increasing order, then by (a, b). Gray levels are the bins themselves (not renumbered).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from umsynth.kernels.config import resolve_threads

ANGLES = ((0, 1), (1, 1), (1, 0), (1, -1))  # (dy, dx) of the co-occurrence and run-length matrices


class Coo(NamedTuple):
    """A batch of sparse matrices (see the module docstring)."""

    seg: np.ndarray  # int64
    a: np.ndarray  # int32
    b: np.ndarray  # int32
    v: np.ndarray  # float64


def _cpu():
    from umsynth import _cpu

    return _cpu


def discretize(image: np.ndarray, mask: np.ndarray | None, low: np.ndarray, delta: np.ndarray,
               threads: int | None = None) -> np.ndarray:
    """Bins of a float64 (N, H, W) batch: numpy.digitize against ``low[n] + k * delta[n]``, 0 off the mask."""
    m = None if mask is None else np.ascontiguousarray(mask, dtype=np.uint8)
    return _cpu().radiomics_discretize(image=np.ascontiguousarray(image, dtype=np.float64), mask=m,
                                       low=np.ascontiguousarray(low, dtype=np.float64),
                                       delta=np.ascontiguousarray(delta, dtype=np.float64),
                                       threads=resolve_threads(threads))


def glcm(q: np.ndarray, threads: int | None = None) -> Coo:
    """Symmetric co-occurrence counts; seg = image * 4 + angle (angles as in ANGLES)."""
    return Coo(*_cpu().radiomics_glcm(q=q, threads=resolve_threads(threads)))


def glrlm(q: np.ndarray, threads: int | None = None) -> Coo:
    """Runs by (gray level, run length); seg = image * 4 + angle. An angle in which no line
    holds two ROI pixels has no entries (pyradiomics drops it)."""
    return Coo(*_cpu().radiomics_glrlm(q=q, threads=resolve_threads(threads)))


def glszm(q: np.ndarray, threads: int | None = None) -> Coo:
    """8-connected zones by (gray level, zone size); seg = image."""
    return Coo(*_cpu().radiomics_glszm(q=q, threads=resolve_threads(threads)))


def glszm_from_sizes(q: np.ndarray, size: np.ndarray, threads: int | None = None) -> Coo:
    """:func:`glszm` from the zone sizes at the zones' roots (``size[n, y, x]``: pixels of the
    zone whose smallest pixel index is (y, x), else 0), as the GPU path labels them."""
    return Coo(*_cpu().radiomics_glszm_from_sizes(q=q, size=np.ascontiguousarray(size, dtype=np.int32),
                                                  threads=resolve_threads(threads)))


def gldm(q: np.ndarray, alpha: int = 0, threads: int | None = None) -> Coo:
    """Pixels by (gray level, dependent neighbours + 1); seg = image."""
    return Coo(*_cpu().radiomics_gldm(q=q, alpha=int(alpha), threads=resolve_threads(threads)))


def ngtdm(q: np.ndarray, threads: int | None = None) -> Coo:
    """Per image and present gray level: a = level, b = pixels, v = sum of |level - neighbour mean|."""
    return Coo(*_cpu().radiomics_ngtdm(q=q, threads=resolve_threads(threads)))


def glcm_features(q: np.ndarray, threads: int | None = None) -> tuple[np.ndarray, list[str]]:
    """(N, F) GLCM features of each image (MCC excepted), the mean over the angles that hold
    pairs (NaN where none does), and the F column names."""
    c = _cpu()
    return c.radiomics_glcm_features(q=q, threads=resolve_threads(threads)), c.radiomics_glcm_feature_names()


def glcm_features_dense(counts: np.ndarray, ng: np.ndarray, threads: int | None = None
                        ) -> tuple[np.ndarray, list[str]]:
    """:func:`glcm_features` from dense symmetric uint64 counts (N, 4, G, G) of gray levels
    1..G (the GPU path's matrices); ``ng[n]``: image n's largest gray level."""
    c = _cpu()
    out = c.radiomics_glcm_features_dense(counts=np.ascontiguousarray(counts, dtype=np.uint64),
                                          ng=np.ascontiguousarray(ng, dtype=np.int32), threads=resolve_threads(threads))
    return out, c.radiomics_glcm_feature_names()


def firstorder(image: np.ndarray, q: np.ndarray, shift: float, pixel_area: float,
               threads: int | None = None) -> tuple[np.ndarray, list[str]]:
    """(N, F) first-order features of the pixels with ``q > 0`` (float64 image, its bins q)
    and the F column names."""
    c = _cpu()
    out = c.radiomics_firstorder(image=np.ascontiguousarray(image, dtype=np.float64), q=q, shift=float(shift),
                                 pixel_area=float(pixel_area), threads=resolve_threads(threads))
    return out, c.radiomics_firstorder_feature_names()


def ngtdm_features(q: np.ndarray, threads: int | None = None) -> tuple[np.ndarray, list[str]]:
    """(N, F) NGTDM features of each image and the F column names."""
    c = _cpu()
    return c.radiomics_ngtdm_features(q=q, threads=resolve_threads(threads)), c.radiomics_ngtdm_feature_names()


def ngtdm_features_dense(count: np.ndarray, diff: np.ndarray, threads: int | None = None
                         ) -> tuple[np.ndarray, list[str]]:
    """:func:`ngtdm_features` from dense uint64 pixel counts and difference sums (units of
    1/840) (N, G) of gray levels 1..G (the GPU path's arrays)."""
    c = _cpu()
    out = c.radiomics_ngtdm_features_dense(count=np.ascontiguousarray(count, dtype=np.uint64),
                                           diff=np.ascontiguousarray(diff, dtype=np.uint64),
                                           threads=resolve_threads(threads))
    return out, c.radiomics_ngtdm_feature_names()
