"""Feature extractors: umsynth's own CT networks for MM-FID (networks, self-supervised tasks,
suites) and the classic ones of ``umsynth fid`` (:mod:`umsynth.extractors.classic`).

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
    radiomics_member,
    save_suite,
)
from umsynth.extractors.train import TINY_CONFIG, SuiteTrainConfig, TrainConfig, default_tasks, train_suite

# TrainConfig is the old name of SuiteTrainConfig, kept so that existing code runs.
__all__ = ["CTNet", "DEFAULT_SCALES", "Member", "Suite", "inception_member", "load_suite", "radiomics_member",
           "save_suite",            "TINY_CONFIG", "SuiteTrainConfig", "TrainConfig", "default_tasks", "train_suite"]
