"""Sample chest-CT images bundled with umsynth, and shortcuts to the phantom they come from.

The short public name of :mod:`umsynth.data.samples`, where these functions live (see
there): ``from umsynth.samples import chest_montage`` and
``from umsynth.data.samples import chest_montage`` are the same function.
"""
from __future__ import annotations

from umsynth.data.samples import (HU_WINDOW, bundled, chest_montage, chest_slice, chest_volume, hu_to_uint8,
                                  window_hu, write_bundled)  # noqa: F401  (HU_WINDOW, window_hu: old names)

__all__ = ["chest_slice", "chest_montage", "chest_volume", "hu_to_uint8", "bundled", "write_bundled"]
