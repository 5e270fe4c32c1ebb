"""Radiomics features (pyradiomics' definitions, C++ matrices) and the Fréchet Radiomics Distance.

Light to import: numpy only; scipy and PyWavelets load when a filter needs them.
"""
from __future__ import annotations

from umsynth._lazy import lazy_exports

_EXPORTS = {
    "features": "features",
    "feature_matrix": "features",
    "feature_names": "features",
    "FEATURES": "features",
    "CLASSES": "features",
    "frd": "frd",
    "FRDResult": "frd",
    "frd_stats": "frd",
    "FRD_SETTINGS": "frd",
}
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
__all__ = sorted(_EXPORTS)
