"""Semi-supervised training of the multi-task GAN.

Names are imported from their submodules on first use, so ``umsynth.train.config`` (and
the command line's parser) do not import torch.
"""
from __future__ import annotations

import importlib

# public name -> submodule that defines it
_EXPORTS = {
    "train": "loop",
    "build_generator": "loop",
    "build_discriminator": "loop",
    "Config": "config",
    "ModelConfig": "config",
    "GeneratorConfig": "config",
    "DiscriminatorConfig": "config",
    "LossConfig": "config",
    "OptimConfig": "config",
    "DataConfig": "config",
    "TrainConfig": "config",
    "load_config": "config",
    "apply_overrides": "config",
    "config_to_dict": "config",
    "save_checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "pix2pixhd_lr": "checkpoint",
    "boundary_edges": "conditioning",
    "conditioning_input": "conditioning",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'umsynth.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"umsynth.train.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
