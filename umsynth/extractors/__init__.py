"""umsynth's own CT feature extractors for MM-FID: networks, self-supervised tasks, suites.

Importing this package imports torch.
"""
from __future__ import annotations

from umsynth.extractors.nets import CTNet
from umsynth.extractors.suite import (
    DEFAULT_SCALES,
    Member,
    Suite,
    inception_member,
    load_suite,
    save_suite,
)
from umsynth.extractors.train import TINY_CONFIG, TrainConfig, default_tasks, train_suite

__all__ = ["CTNet", "DEFAULT_SCALES", "Member", "Suite", "inception_member", "load_suite", "save_suite",
           "TINY_CONFIG", "TrainConfig", "default_tasks", "train_suite"]
