"""The multi-task GAN of SemiCS2: generator, multiscale discriminator and losses (imports torch)."""
from __future__ import annotations

from umsynth.models.discriminator import MultiscaleDiscriminator, PatchDiscriminator
from umsynth.models.generator import NORMS, MultiTaskGenerator
from umsynth.models.losses import (
    GAN_MODES,
    FeatureNet,
    PerceptualLoss,
    confidence_mask,
    feature_matching_loss,
    gan_loss,
    l1_loss,
    segmentation_loss,
)

__all__ = ["MultiTaskGenerator", "MultiscaleDiscriminator", "PatchDiscriminator", "NORMS", "GAN_MODES",
           "gan_loss", "feature_matching_loss", "l1_loss", "segmentation_loss", "confidence_mask",
           "FeatureNet", "PerceptualLoss"]
