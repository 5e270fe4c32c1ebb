"""Radiomics features (pyradiomics' definitions, C++ matrices) and the Fréchet Radiomics Distance.

Light to import: numpy only; scipy and PyWavelets load when a filter needs them.
"""
from __future__ import annotations

# The FRD lives in umsynth.radiomics.frd (frd, frd_stats, FRD_SETTINGS) and is umsynth.frd.
# features is imported eagerly: the function shares its module's name.
from umsynth.radiomics.features import CLASSES, FEATURES, feature_matrix, feature_names, features

__all__ = ["CLASSES", "FEATURES", "feature_matrix", "feature_names", "features"]
