"""The original SemiCS2 unsupervised-mask code, re-implemented as a baseline.

This module exists only so that tests and benchmarks can compare umsynth against what
the published SemiCS2 code computed, and how fast. It keeps the original's choices on
purpose, slowness included (method.md §2):

- SLIC runs on a 3-channel uint8 copy of the grey image, so scikit-image converts it to
  CIE Lab and measures intensity in L*;
- each superpixel's mean is found with one full-image ``np.where`` per label;
- the means are quantized down to multiples of 10.

Do not use it for real work: use :func:`umsynth.unsupervised_mask`.
"""
from __future__ import annotations

import numpy as np
from skimage.segmentation import slic

__all__ = ["original_run"]


def original_run(gray_uint8: np.ndarray) -> np.ndarray:
    """Unsupervised mask exactly as SemiCS2's ``run()`` made it (the baseline).

    Parameters
    ----------
    gray_uint8 : ndarray, uint8, shape (H, W)
        The grey montage.

    Returns
    -------
    ndarray, int, shape (H, W)
        Superpixel means quantized down to multiples of 10 (``np.array(x/10, dtype=int)*10``),
        in the platform's default integer dtype, as the original returned them.
    """
    gray = np.asarray(gray_uint8)
    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise ValueError(f"gray_uint8 must be a 2D uint8 array, got {gray.dtype} {gray.shape}")
    img = np.stack([gray, gray, gray], axis=-1)
    seg = slic(img, n_segments=512, compactness=10.0)
    out = np.zeros(gray.shape, dtype=float)
    for i in np.unique(seg):
        where = np.where(seg == i)
        # the original indexed the 3-channel image, so the mean runs over 3 equal channels
        out[where] = np.mean(img[where])
    return np.array(out / 10, dtype=int) * 10
