"""SemiCS2 montages (method.md §1): four axial slices of the lung range in a 2x2 grid.

Differences from the original SemiCS2 preparation script, on purpose:

* the montage image is made from the CT (HU, windowed); the original wrote the label array
  into the CT montage file;
* labels above 2 are clamped to 2 (lesion) as in the original, but negative or fractional
  labels are refused instead of being cast silently.
"""
from __future__ import annotations

import operator

import numpy as np

from umsynth.data.window import HU_WINDOW, window_hu
from umsynth.kernels.arrays import check_finite, to_numpy

__all__ = ["select_slices", "tile_2x2", "build_montage", "check_labels"]

#: Highest class: SemiCS2 has 0 background/body, 1 lung, 2 lesion.
MAX_CLASS = 2


def _index(value, name: str, minimum: int) -> int:
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None
    if v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    return v


def select_slices(lung_mask, n: int = 4, trim: float = 0.1) -> np.ndarray:
    """Indices of ``n`` evenly spaced slices in the trimmed lung z-range (method.md §1).

    Parameters
    ----------
    lung_mask : array_like or torch.Tensor, shape (Z, ...)
        Non-zero where there is lung. Axis 0 is the slice axis; any further axes are
        reduced (a (Z,) vector saying which slices hold lung also works).
    n : int
        Number of slices, >= 1.
    trim : float
        Fraction of the lung range cut at each end, in [0, 0.5).

    Returns
    -------
    ndarray, int64, shape (n,)
        ``zmin + i * gap`` for ``i = 0 .. n-1``, strictly increasing.

    Notes
    -----
    With ``z0`` and ``z1`` the first and last slice that holds any lung voxel (slices in
    between need not all hold lung) and ``cut = floor(trim * (z1 - z0))``:
    ``zmin = z0 + cut``, ``zmax = z1 - cut`` and ``gap = (zmax - zmin) // n``, as in the
    original. Since ``n * gap <= zmax - zmin``, the last index ``zmin + (n - 1) * gap`` is at
    most ``zmax - gap``: ``zmax`` itself is never taken. Example: lung on slices 10..50,
    ``trim=0.1``: cut 4, range 14..46, gap 8, slices 14, 22, 30, 38.

    Raises
    ------
    ValueError
        If ``lung_mask`` has no lung voxel, or if the trimmed range is too short to give
        ``n`` distinct slices (``zmax - zmin < n``, i.e. ``gap`` would be 0). The original
        repeated one slice in that case; umsynth refuses.
    """
    arr, _ = to_numpy(lung_mask, "lung_mask")
    if arr.ndim < 1:
        raise ValueError("lung_mask must have a slice axis (shape (Z, ...)), got a scalar")
    check_finite(arr, "lung_mask")
    n = _index(n, "n", 1)
    trim = float(trim)
    if not 0.0 <= trim < 0.5:
        raise ValueError(f"trim must be in [0, 0.5), got {trim}")
    present = arr.reshape(arr.shape[0], -1).any(axis=1) if arr.size else np.zeros(arr.shape[0], bool)
    z = np.flatnonzero(present)
    if z.size == 0:
        raise ValueError(f"lung_mask has no lung voxels (shape {arr.shape})")
    z0, z1 = int(z[0]), int(z[-1])
    cut = int(np.floor(trim * (z1 - z0)))
    zmin, zmax = z0 + cut, z1 - cut
    gap = (zmax - zmin) // n
    if gap < 1:
        raise ValueError(f"lung_mask: the lung spans slices {z0}..{z1}, trimmed to {zmin}..{zmax}, "
                         f"too short for {n} distinct slices (needs zmax - zmin >= {n})")
    return zmin + gap * np.arange(n, dtype=np.int64)


def tile_2x2(slices) -> np.ndarray:
    """Lay four equal-sized 2D slices out as a 2x2 grid (method.md §1).

    Parameters
    ----------
    slices : array_like, shape (4, H, W), or a sequence of four (H, W) arrays
        Slices 0..3, all of one shape.

    Returns
    -------
    ndarray, shape (2H, 2W), dtype of the input
        Left column: slice 0 on top, slice 1 below; right column: slice 2 on top, slice 3
        below.
    """
    if isinstance(slices, (list, tuple)):
        parts = [to_numpy(s, f"slices[{i}]")[0] for i, s in enumerate(slices)]
        if len({p.shape for p in parts}) > 1:
            raise ValueError(f"slices must all have one shape, got {[p.shape for p in parts]}")
        arr = np.stack(parts) if parts else np.empty((0,))
    else:
        arr, _ = to_numpy(slices, "slices")
    if arr.ndim != 3 or arr.shape[0] != 4:
        raise ValueError(f"slices must be 4 slices of shape (H, W), i.e. (4, H, W), got shape {arr.shape}")
    if arr.shape[1] == 0 or arr.shape[2] == 0:
        raise ValueError(f"slices must not be empty, got shape {arr.shape}")
    top = np.concatenate([arr[0], arr[2]], axis=1)
    bottom = np.concatenate([arr[1], arr[3]], axis=1)
    return np.concatenate([top, bottom], axis=0)


def check_labels(labels: np.ndarray) -> np.ndarray:
    """An integer class map with classes above MAX_CLASS clamped to it, as uint8.

    Raises
    ------
    TypeError
        For a dtype that is not bool, integer or float.
    ValueError
        For negative, fractional, NaN or Inf labels.
    """
    if labels.dtype.kind == "b":
        return labels.astype(np.uint8)
    if labels.dtype.kind == "f":
        check_finite(labels, "labels")
        if labels.size and not np.array_equal(labels, np.round(labels)):
            raise ValueError("labels must hold whole class numbers, got fractional values")
    elif labels.dtype.kind not in "iu":
        raise TypeError(f"labels must be an integer class map, got dtype {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise ValueError(f"labels must be >= 0, got minimum {labels.min()}")
    return np.minimum(labels, MAX_CLASS).astype(np.uint8)


def montage_from_slices(hu_slices, label_slices, window=HU_WINDOW) -> tuple[np.ndarray, np.ndarray]:
    """Window four HU slices and tile them with their (clamped) label slices.

    The last step of :func:`build_montage`, for callers that already hold the four slices.

    Parameters
    ----------
    hu_slices : array_like, shape (4, H, W)
    label_slices : array_like, shape (4, H, W)
    window : (float, float)

    Returns
    -------
    image : ndarray, uint8 (2H, 2W)
    labels : ndarray, uint8 (2H, 2W), classes above 2 clamped to 2
    """
    hu_arr, _ = to_numpy(hu_slices, "hu_slices")
    lab_arr, _ = to_numpy(label_slices, "label_slices")
    if hu_arr.shape != lab_arr.shape:
        raise ValueError(f"hu_slices and label_slices must have one shape, got {hu_arr.shape} and {lab_arr.shape}")
    return tile_2x2(window_hu(hu_arr, window)), tile_2x2(check_labels(lab_arr))


def build_montage(hu, labels, *, window=HU_WINDOW, n: int = 4, trim: float = 0.1,
                  lung_classes=(1, 2)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A SemiCS2 2x2 montage of a CT volume and its label volume (method.md §1).

    Parameters
    ----------
    hu : array_like or torch.Tensor, shape (Z, H, W)
        CT in Hounsfield units, in umsynth's orientation (see :mod:`umsynth.data`).
    labels : array_like or torch.Tensor, shape (Z, H, W)
        Class map: 0 background/body, 1 lung, 2 lesion; classes above 2 are clamped to 2.
        Integer, bool, or float holding whole numbers.
    window : (float, float)
        HU window for :func:`~umsynth.data.window_hu`.
    n : int
        Number of slices; must be 4 (a 2x2 grid).
    trim : float
        Fraction of the lung z-range trimmed at each end (see :func:`select_slices`).
    lung_classes : sequence of int
        Classes (after clamping) that count as lung when finding the lung z-range. The
        default counts lesions as lung, since they lie inside it.

    Returns
    -------
    image : ndarray, uint8 (2H, 2W)
        The windowed CT of the chosen slices. (The original SemiCS2 script wrote the label
        array here; umsynth writes the image.)
    labels : ndarray, uint8 (2H, 2W)
        The clamped labels of the same slices, laid out the same way.
    slice_indices : ndarray, int64 (4,)
        The chosen slices, left column top to bottom, then right column.

    Raises
    ------
    ValueError
        For shapes that differ or are not 3D, NaN/Inf HU, negative or fractional labels,
        ``n != 4``, or a lung range that is empty or too short (see :func:`select_slices`).
    """
    hu_arr, _ = to_numpy(hu, "hu")
    lab_arr, _ = to_numpy(labels, "labels")
    if hu_arr.ndim != 3:
        raise ValueError(f"hu must be a (Z, H, W) volume, got shape {hu_arr.shape}")
    if lab_arr.shape != hu_arr.shape:
        raise ValueError(f"labels shape {lab_arr.shape} differs from hu shape {hu_arr.shape}")
    if _index(n, "n", 1) != 4:
        raise ValueError(f"n must be 4 for a 2x2 montage, got {n}")
    classes = check_labels(lab_arr)
    lung = np.isin(classes, np.asarray(lung_classes, dtype=np.int64))
    idx = select_slices(lung, n=n, trim=trim)
    image, label_montage = montage_from_slices(hu_arr[idx], classes[idx], window)
    return image, label_montage, idx
