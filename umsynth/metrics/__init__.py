"""Quality metrics. ``umsynth.metrics.superpixel`` holds the superpixel metrics of Stutz et al."""
from __future__ import annotations

from umsynth.metrics import superpixel
from umsynth.metrics.superpixel import *  # noqa: F401,F403  (the names in superpixel.__all__)

__all__ = list(superpixel.__all__)
