"""Sample chest-CT images bundled with umsynth, and shortcuts to the phantom they come from.

The phantom itself lives in :mod:`umsynth.data.phantom` (HU volumes, montages, cohorts);
the functions here return it windowed like the SemiCS2 data ([-1500, 100] HU -> [0, 255]),
for tests, demos and benchmarks. Label maps use the project's classes: 0 background/body,
1 lung, 2 lesion.

These shortcuts default to the smooth kernel and the full field of view, the look of the
bundled PNGs; :func:`umsynth.data.phantom.phantom_cohort` varies both. The bundled PNGs
(:func:`bundled`) are committed files, read as they are; :func:`write_bundled` made them
from the current phantom and remakes them after a change to it.
"""
from __future__ import annotations

import os
from pathlib import Path

from umsynth.data import phantom
from umsynth.data.window import HU_WINDOW, window_hu  # noqa: F401  (HU_WINDOW kept here for old callers)

__all__ = ["chest_slice", "chest_montage", "chest_volume", "hu_to_uint8", "bundled", "write_bundled"]

_HERE = Path(__file__).resolve().parent
_BUNDLED = {"chest_montage_0.png": ("montage", 0), "chest_slice_1.png": ("slice", 1)}

#: Kept under its old name: :func:`umsynth.data.window_hu`.
hu_to_uint8 = window_hu


def chest_volume(seed: int = 0, shape: tuple[int, int, int] = (24, 96, 96), hu: bool = False, *,
                 kernel: str | None = "smooth", fov: str | None = "full"):
    """A phantom chest volume: :func:`umsynth.data.phantom.phantom_volume`, optionally windowed.

    Parameters
    ----------
    seed : int
        Selects the patient (anatomy, lesions, kernel, FOV) and the noise.
    shape : tuple of int
        (depth, rows, columns), rows and columns >= 32. z runs toward the head.
    hu : bool
        Return float32 HU instead of the windowed uint8 image.
    kernel, fov : str or None
        Reconstruction kernel and field of view (see :func:`~umsynth.data.phantom.phantom_volume`);
        None draws them from the seed.

    Returns
    -------
    image : ndarray, uint8 (or float32 HU), shape ``shape``
    labels : ndarray, uint8, shape ``shape``; 0 background/body, 1 lung, 2 lesion.
    """
    vol, labels = phantom.phantom_volume(seed, shape, kernel=kernel, fov=fov)
    return (vol if hu else window_hu(vol)), labels


def chest_slice(seed: int = 0, size: int = 512, t: float = 0.5, *, kernel: str | None = "smooth",
                fov: str | None = "full"):
    """One windowed axial phantom slice at height ``t`` of the lung (0 apex .. 1 base).

    ``kernel`` and ``fov`` as in :func:`chest_volume`.

    Returns
    -------
    image : ndarray, uint8 (size, size)
    labels : ndarray, uint8 (size, size); 0 background/body, 1 lung, 2 lesion.
    """
    hu, labels = phantom.phantom_slice(seed, size, t, kernel=kernel, fov=fov)
    return window_hu(hu), labels


def chest_montage(seed: int = 0, size: int = 512, *, kernel: str | None = "smooth", fov: str | None = "full"):
    """A SemiCS2 2x2 montage of one phantom patient (method.md §1), slices ``size`` square.

    ``kernel`` and ``fov`` as in :func:`chest_volume`.

    Returns
    -------
    image : ndarray, uint8 (2*size, 2*size)
    labels : ndarray, uint8 (2*size, 2*size)
    """
    image, labels, _ = phantom.phantom_montage(seed, 2 * size, kernel=kernel, fov=fov)
    return image, labels


def bundled() -> list[Path]:
    """Paths of the sample images shipped with umsynth (labels sit beside them as ``*_labels.png``)."""
    return [_HERE / name for name in _BUNDLED]


def write_bundled(directory: str | os.PathLike | None = None) -> list[Path]:
    """(Re)generate the bundled sample PNGs and their label maps; returns the image paths.

    Run once by the developers; the PNGs are committed so users need no generator run.
    """
    from PIL import Image

    d = Path(directory) if directory is not None else _HERE
    d.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, (kind, seed) in _BUNDLED.items():
        img, lab = chest_montage(seed) if kind == "montage" else chest_slice(seed)
        stem = name[:-4]
        for arr, fname in ((img, name), (lab, stem + "_labels.png")):
            tmp = d / (fname + ".tmp")
            Image.fromarray(arr).save(tmp, format="PNG")
            os.replace(tmp, d / fname)
        paths.append(d / name)
    return paths
