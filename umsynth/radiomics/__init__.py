"""Radiomics features (pyradiomics' definitions, C++ matrices) and the Fréchet Radiomics Distance.

Light to import: numpy only; scipy and PyWavelets load when a filter needs them.
"""
from __future__ import annotations

from umsynth._lazy import lazy_exports
# imported eagerly: the function shares its module's name, which a lazy export would lose
from umsynth.radiomics.features import CLASSES, FEATURES, feature_matrix, feature_names, features

_EXPORTS = {"frd": "frd", "FRDResult": "frd", "frd_stats": "frd", "FRD_SETTINGS": "frd"}
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
__all__ = ["CLASSES", "FEATURES", "feature_matrix", "feature_names", "features", *sorted(_EXPORTS)]
