"""Sample CT data that ships with umsynth or its dependencies, read offline.

Two kinds of samples live here (the one home of samples; :mod:`umsynth.samples` is the
short public name of the phantom shortcuts):

* **phantom shortcuts and bundled PNGs**: :func:`chest_slice`, :func:`chest_montage` and
  :func:`chest_volume` return the chest phantom of :mod:`umsynth.data.phantom` windowed like
  the SemiCS2 data ([-1500, 100] HU -> [0, 255]), for tests, demos and benchmarks. They
  default to the smooth kernel and the full field of view, the look of the bundled PNGs;
  :func:`umsynth.data.phantom.phantom_cohort` varies both. The bundled PNGs
  (:func:`bundled`, in ``umsynth/data/sample_images/``) are committed files, read as they
  are; :func:`write_bundled` made them from the current phantom and remakes them after a
  change to it.
* **real CT slices** that ship with pydicom and pydicom-data (method.md §7):
  :func:`real_ct_slices`. They are unseen real-world inputs for tests and the demo: none is
  a chest volume with a lung mask, so labelled work uses the phantom.

Label maps use the project's classes: 0 background/body, 1 lung, 2 lesion.
"""
from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from umsynth.data import phantom
from umsynth.data.io import read_dicom_series
from umsynth.data.window import HU_WINDOW, window_hu
from umsynth.files import write_png

__all__ = ["chest_slice", "chest_montage", "chest_volume", "hu_to_uint8", "bundled", "write_bundled",
           "BUNDLED_DIR", "HU_WINDOW", "REAL_CT_FILES", "RealSlices", "real_ct_slices"]

#: folder of the bundled sample PNGs
BUNDLED_DIR = Path(__file__).resolve().parent / "sample_images"
_BUNDLED = {"chest_montage_0.png": ("montage", 0), "chest_slice_1.png": ("slice", 1)}

#: Kept under its old name: :func:`umsynth.data.window_hu`.
hu_to_uint8 = window_hu

#: name -> (file name for ``pydicom.data.get_testdata_file``, what it is)
REAL_CT_FILES = {
    "CT_small": ("CT_small.dcm", "128 x 128 chest crop (pydicom), HU -896..1167"),
    "693_UNCR": ("693_UNCR.dcm", "512 x 512 head CT (pydicom-data)"),
    "explicit_VR-UN": ("explicit_VR-UN.dcm", "512 x 512 abdominal CT, JPEG 2000, stored upside-down "
                       "(pydicom-data)"),
}


# ----------------------------------------------------------------------------- the phantom


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
    return [BUNDLED_DIR / name for name in _BUNDLED]


def write_bundled(directory: str | os.PathLike | None = None) -> list[Path]:
    """(Re)generate the bundled sample PNGs and their label maps; returns the image paths.

    Run once by the developers; the PNGs are committed so users need no generator run.
    """
    d = Path(directory) if directory is not None else BUNDLED_DIR
    d.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, (kind, seed) in _BUNDLED.items():
        img, lab = chest_montage(seed) if kind == "montage" else chest_slice(seed)
        write_png(d / name, img)
        write_png(d / f"{name[:-4]}_labels.png", lab)
        paths.append(d / name)
    return paths


# ----------------------------------------------------------------------------- real CT


@dataclass(frozen=True)
class RealSlices(Mapping):
    """Read-only mapping ``name -> HU slice`` (float32, (H, W), umsynth's orientation).

    Attributes
    ----------
    spacing : dict
        ``name -> (row, column)`` pixel spacing in mm.
    skipped : dict
        ``name -> reason`` for each file that could not be read here (pydicom-data not
        installed, or no installed decoder for its compression).
    """

    slices: dict
    spacing: dict = field(default_factory=dict)
    skipped: dict = field(default_factory=dict)

    def __getitem__(self, name):
        return self.slices[name]

    def __iter__(self):
        return iter(self.slices)

    def __len__(self):
        return len(self.slices)


@functools.lru_cache(maxsize=None)
def _read(name: str):
    """(HU slice read-only, spacing) or (None, reason)."""
    from pydicom.data import get_testdata_file

    filename = REAL_CT_FILES[name][0]
    # never get_testdata_files(glob) and never download: offline, that hangs
    path = get_testdata_file(filename, download=False)
    if path is None:
        return None, f"{filename} is not installed (pydicom-data provides it)"
    try:
        vol = read_dicom_series(path)
    except (OSError, ValueError) as exc:  # e.g. no decoder for the transfer syntax
        return None, f"{filename}: {exc}"
    hu = np.ascontiguousarray(vol.array[0], dtype=np.float32)
    hu.setflags(write=False)
    return hu, vol.spacing[1:]


def real_ct_slices(names=None) -> RealSlices:
    """The real CT slices of pydicom's test data, in HU, read from disk with no download.

    Parameters
    ----------
    names : sequence of str, optional
        Keys of :data:`REAL_CT_FILES`; default all.

    Returns
    -------
    RealSlices
        ``name -> float32 (H, W)`` HU (``stored * RescaleSlope + RescaleIntercept``), in
        umsynth's orientation (anterior at the top, the patient's right on the image's left;
        ``explicit_VR-UN``, stored bottom-up, comes back flipped upright). The arrays are
        read-only and shared between calls: copy one before changing it. A file that
        cannot be read here (pydicom-data missing; a compression no installed decoder
        handles: JPEG 2000 needs Pillow with OpenJPEG) is left out and listed in
        ``.skipped`` with the reason, rather than failing.

    Raises
    ------
    ValueError
        For a name not in :data:`REAL_CT_FILES`.
    """
    names = list(REAL_CT_FILES) if names is None else [names] if isinstance(names, str) else list(names)
    unknown = [n for n in names if n not in REAL_CT_FILES]
    if unknown:
        raise ValueError(f"names: unknown real CT slices {unknown}; known: {list(REAL_CT_FILES)}")
    slices, spacing, skipped = {}, {}, {}
    for name in names:
        hu, extra = _read(name)
        if hu is None:
            skipped[name] = extra
        else:
            slices[name], spacing[name] = hu, extra
    return RealSlices(slices, spacing, skipped)
