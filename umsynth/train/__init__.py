"""Semi-supervised training of the multi-task GAN.

Names are imported from their submodules on first use, so ``umsynth.train.config`` (and
the command line's parser) do not import torch.
"""
from __future__ import annotations

from umsynth._lazy import lazy_exports

# public name -> submodule that defines it
_EXPORTS = {
    "train": "loop",
    "TrainResult": "loop",
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
    "config_digest": "config",
    "CheckpointConfig": "config",
    "find_checkpoint": "checkpoint",
    "data_digest": "checkpoint",
    "save_checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "pix2pixhd_lr": "checkpoint",
    "boundary_edges": "conditioning",
    "conditioning_input": "conditioning",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
