"""HU windowing: Hounsfield units to the uint8 grey levels SemiCS2 trains on."""
from __future__ import annotations

import numpy as np

from umsynth.kernels.arrays import check_finite, to_numpy

__all__ = ["HU_WINDOW", "window_hu"]

#: SemiCS2's window (method.md §1): -1500 HU maps to 0, 100 HU to 255.
HU_WINDOW = (-1500.0, 100.0)


def _check_window(window) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in window)
    except (TypeError, ValueError):
        raise TypeError(f"window must be a pair of numbers (low, high), got {window!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError(f"window must be finite, got ({lo}, {hi})")
    if not lo < hi:
        raise ValueError(f"window must have low < high, got ({lo}, {hi})")
    return lo, hi


def window_hu(hu, window=HU_WINDOW) -> np.ndarray:
    """Clip HU values to a window and map the window linearly onto uint8 [0, 255].

    Parameters
    ----------
    hu : array_like or torch.Tensor, any shape
        Hounsfield units (integer or floating point, finite).
    window : (float, float)
        ``(low, high)`` in HU with ``low < high``. Default: SemiCS2's ``(-1500, 100)``.

    Returns
    -------
    ndarray, uint8, same shape as ``hu``
        ``rint((clip(hu, low, high) - low) * 255 / (high - low))``, computed in float64 in
        that order. ``low`` and below give 0, ``high`` and above give 255; values in between
        are rounded to the nearest grey level, ties to even (``numpy.rint``: -700 HU, exactly
        127.5, gives 128; -1020 HU, exactly 76.5, gives 76), not truncated. With the default
        window one grey level spans 1600 / 255 ~= 6.27 HU, and -1000 HU (air) gives 80.

    Raises
    ------
    TypeError
        If ``hu`` is not numeric or ``window`` is not a pair of numbers.
    ValueError
        If ``hu`` holds NaN or Inf, or the window is not finite with ``low < high``.
    """
    arr, _ = to_numpy(hu, "hu")
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"hu must hold real numbers, got dtype {arr.dtype}")
    check_finite(arr, "hu")
    lo, hi = _check_window(window)
    # multiply before dividing: exact halves (e.g. -700 HU -> 127.5) stay exact and round to even
    scaled = (np.clip(arr.astype(np.float64, copy=False), lo, hi) - lo) * 255.0 / (hi - lo)
    return np.rint(scaled).astype(np.uint8)
