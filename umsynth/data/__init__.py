"""CT data: HU windowing, SemiCS2 montages, the chest-CT phantom cohort and real sample slices.

Orientation convention
----------------------
Every volume in umsynth is a ``(Z, Y, X)`` array, ``(slice, row, column)``:

* ``Z`` (slice index) increases toward the head (inferior -> superior), so ``vol[0]`` is the
  lowest slice, the one nearest the feet;
* ``Y`` (row index) increases from anterior to posterior: the patient's front is at the top
  of each slice, the table (under a supine patient) at the bottom;
* ``X`` (column index) increases from the patient's right to the patient's left: the
  patient's right side is on the image's left (radiological display, as on a standard
  axial CT viewer).

In DICOM's patient coordinates (LPS) this means rows run along +y and columns along +x
(ImageOrientationPatient ``[1, 0, 0, 0, 1, 0]``) and slices are ordered by increasing
position along +z. Every reader and generator in ``umsynth.data`` returns this orientation,
so no slice comes back upside-down or mirrored.

Label maps use SemiCS2's three classes: 0 background/body, 1 lung, 2 lesion.

Submodules are imported on first use of a name listed here, so ``import umsynth.data`` stays
light.
"""
from __future__ import annotations

from umsynth._lazy import lazy_exports
from umsynth.masks import UMConfig  # defined beside the UM; umsynth imports it anyway

# public name -> submodule that defines it (one line per name)
_EXPORTS = {
    "HU_WINDOW": "window",
    "window_hu": "window",
    "select_slices": "montage",
    "tile_2x2": "montage",
    "build_montage": "montage",
    "phantom_volume": "phantom",
    "phantom_cohort": "phantom",
    "PhantomCohort": "phantom",
    "real_ct_slices": "samples",
    "Volume": "io",
    "read_volume": "io",
    "read_nifti": "io",
    "read_dicom_series": "io",
    "read_montage": "io",
    "write_nifti": "io",
    "write_png": "io",
    "PrepareConfig": "prepare",
    "MontageDataset": "datasets",
    "Augment": "datasets",
}

__all__ = sorted([*_EXPORTS, "UMConfig"])


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
