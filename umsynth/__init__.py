"""umsynth: annotated CT image synthesis from unsupervised masks.

Importing umsynth needs only numpy; it never imports torch and never touches a GPU.
"""
from __future__ import annotations

__version__ = "0.1.0"

from umsynth.kernels.config import get_num_threads, set_num_threads, show_config
from umsynth.masks import slic, unsupervised_mask
from umsynth.frechet import (
    ConvergenceError,
    PolarConfig,
    frechet_distance,
    frechet_distance_batch,
    frechet_distance_features,
    frechet_distance_from_stats,
)
from umsynth.stats import FeatureStats


def mmfid(real, synthetic, suite, **kwargs):
    """MM-FID and MM-STD; see :func:`umsynth.metrics.mmfid.mmfid` (imports torch when called)."""
    from umsynth.metrics.mmfid import mmfid as _mmfid

    return _mmfid(real, synthetic, suite, **kwargs)


def frd(real, synthetic, **kwargs):
    """Fréchet Radiomics Distance; see :func:`umsynth.radiomics.frd.frd` (imports scipy when called)."""
    from umsynth.radiomics.frd import frd as _frd

    return _frd(real, synthetic, **kwargs)


__all__ = [
    "__version__",
    "slic",
    "unsupervised_mask",
    "frechet_distance",
    "PolarConfig",
    "ConvergenceError",
    "frechet_distance_batch",
    "frechet_distance_from_stats",
    "frechet_distance_features",
    "FeatureStats",
    "mmfid",
    "frd",
    "show_config",
    "get_num_threads",
    "set_num_threads",
]
