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


def gldm(q: np.ndarray, alpha: int = 0, threads: int | None = None) -> Coo:
    """Pixels by (gray level, dependent neighbours + 1); seg = image."""
    return Coo(*_cpu().radiomics_gldm(q=q, alpha=int(alpha), threads=resolve_threads(threads)))


def ngtdm(q: np.ndarray, threads: int | None = None) -> Coo:
    """Per image and present gray level: a = level, b = pixels, v = sum of |level - neighbour mean|."""
    return Coo(*_cpu().radiomics_ngtdm(q=q, threads=resolve_threads(threads)))
