"""Multiscale PatchGAN discriminator (pix2pixHD) that returns its intermediate features.

Its input is the conditioning (UM + edges, or the one-hot mask + edges) concatenated with
a CT image; it never sees the segmentation (method.md §3). Each scale is an
``n_layers`` PatchGAN; scale ``i`` sees the input average-pooled ``i`` times. Every scale
returns the list of its layer outputs, the last being the patch scores, so the
feature-matching loss can compare real and synthetic activations.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from umsynth.models.generator import norm_layer

__all__ = ["PatchDiscriminator", "MultiscaleDiscriminator"]


class PatchDiscriminator(nn.Module):
    """pix2pixHD's NLayerDiscriminator: 4x4 convolutions, LeakyReLU 0.2, no sigmoid."""

    def __init__(self, in_channels: int, ndf: int = 64, n_layers: int = 3, norm: str = "instance"):
        super().__init__()
        pad = math.ceil((4 - 1) / 2)
        stages = [nn.Sequential(nn.Conv2d(in_channels, ndf, 4, stride=2, padding=pad), nn.LeakyReLU(0.2, True))]
        c = ndf
        for n in range(1, n_layers + 1):
            c_out = min(c * 2, 512)
            stride = 2 if n < n_layers else 1  # the last hidden layer keeps the resolution
            stages.append(nn.Sequential(nn.Conv2d(c, c_out, 4, stride=stride, padding=pad),
                                        norm_layer(norm, c_out), nn.LeakyReLU(0.2, True)))
            c = c_out
        stages.append(nn.Sequential(nn.Conv2d(c, 1, 4, stride=1, padding=pad)))
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out


class MultiscaleDiscriminator(nn.Module):
    """``num_D`` PatchGANs on the input at full, half, quarter ... resolution.

    Parameters
    ----------
    in_channels : int
        Conditioning channels + 1 (the CT image).
    ndf : int
        Filters of the first layer (original 64).
    n_layers : int
        Stride-2 layers per PatchGAN (original 3).
    num_D : int
        Number of scales (original 2).
    norm : {"instance", "batch", "none"}

    Notes
    -----
    ``forward`` returns a list over scales (full resolution first) of lists of layer
    outputs; ``out[0][-1]`` is the full-resolution patch score map that the
    discriminator-confidence mask is built from.
    """

    def __init__(self, in_channels: int, ndf: int = 64, n_layers: int = 3, num_D: int = 2,
                 norm: str = "instance"):
        super().__init__()
        for name, v in (("in_channels", in_channels), ("ndf", ndf), ("n_layers", n_layers), ("num_D", num_D)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        norm_layer(norm, 1)
        self.n_layers = n_layers
        self.scales = nn.ModuleList(PatchDiscriminator(in_channels, ndf, n_layers, norm) for _ in range(num_D))

    @property
    def num_D(self) -> int:
        return len(self.scales)

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        out = []
        for i, d in enumerate(self.scales):
            if i:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            out.append(d(x))
        return out
