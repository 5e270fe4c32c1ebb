"""Real CT slices that ship with pydicom and pydicom-data (method.md §7), read offline.

They are unseen real-world inputs for tests and the demo: none is a chest volume with a lung
mask, so labelled work uses :mod:`umsynth.data.phantom`.
"""
from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

__all__ = ["REAL_CT_FILES", "RealSlices", "real_ct_slices"]

#: name -> (file name for ``pydicom.data.get_testdata_file``, what it is)
REAL_CT_FILES = {
    "CT_small": ("CT_small.dcm", "128 x 128 chest crop (pydicom), HU -896..1167"),
    "693_UNCR": ("693_UNCR.dcm", "512 x 512 head CT (pydicom-data)"),
    "explicit_VR-UN": ("explicit_VR-UN.dcm", "512 x 512 abdominal CT, JPEG 2000, stored upside-down "
                       "(pydicom-data)"),
}


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

    from umsynth.data.io import read_dicom_series

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
