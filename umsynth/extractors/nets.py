"""The CT feature network: a small fully convolutional trunk and a task head.

The trunk is a patchify stem (a ``stem`` x ``stem`` convolution with stride ``stem`` to
``channels[0]``) and then one stage per further width, each a 3x3 stride-2 convolution and a
3x3 convolution; every convolution is followed by GroupNorm and ReLU. The stem keeps the
cost low at 1024 pixels: with the default stem 4 a 1024 x 1024 image costs about 0.7 GMAC
per network, against 3.6 for a stride-2 first stage of 16 channels at 512 x 512 (the
benchmark found network time to be over 90 % of an MM-FID pass). The trunk is fully
convolutional, so one set of weights runs at every scale of a suite (128 to 1024 pixels).
The features are the global average of the last stage: ``channels[-1]`` numbers per image.
GroupNorm (not BatchNorm) keeps a network's output for one image independent of the other
images in its batch.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

__all__ = ["CTNet"]


def _groups(c: int) -> int:
    """Largest of 8, 4, 2, 1 dividing c: GroupNorm needs channels divisible by groups."""
    return next(g for g in (8, 4, 2, 1) if c % g == 0)


class CTNet(nn.Module):
    """Trunk plus one head (classification or segmentation).

    Parameters
    ----------
    channels : sequence of int
        Output channels of each stage; the feature dimension is ``channels[-1]``.
    classes : int
        Classes of the head.
    head : {"classify", "segment"}
        ``classify``: a linear layer on the pooled features. ``segment``: a 1x1 convolution
        on the last stage, upsampled bilinearly to the input size.
    in_channels : int, optional
        Input channels (1: grey CT).
    stem : int, optional
        Kernel size and stride of the patchify stem (default 4; 1 disables the downsampling).
    """

    def __init__(self, channels, classes: int, head: str = "classify", in_channels: int = 1,
                 stem: int = 4) -> None:
        super().__init__()
        channels = [int(c) for c in channels]
        if not channels or min(channels) < 1:
            raise ValueError(f"channels must be a non-empty list of positive ints, got {channels}")
        if int(classes) < 2:
            raise ValueError(f"classes must be >= 2, got {classes}")
        if head not in ("classify", "segment"):
            raise ValueError(f"head must be 'classify' or 'segment', got {head!r}")
        if int(stem) < 1:
            raise ValueError(f"stem must be >= 1, got {stem}")
        self.stem = int(stem)
        c0 = channels[0]
        layers = [nn.Conv2d(int(in_channels), c0, self.stem, stride=self.stem, bias=False),
                  nn.GroupNorm(_groups(c0), c0), nn.ReLU(inplace=True)]
        cin = c0
        for c in channels[1:]:
            layers += [nn.Conv2d(cin, c, 3, stride=2, padding=1, bias=False), nn.GroupNorm(_groups(c), c),
                       nn.ReLU(inplace=True),
                       nn.Conv2d(c, c, 3, padding=1, bias=False), nn.GroupNorm(_groups(c), c),
                       nn.ReLU(inplace=True)]
            cin = c
        self.trunk = nn.Sequential(*layers)
        self.head_kind = head
        self.head = nn.Linear(cin, int(classes)) if head == "classify" else nn.Conv2d(cin, int(classes), 1)
        self.dims = cin

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled trunk features, (batch, dims), of inputs (batch, 1, H, W) scaled to [-1, 1]."""
        return self.trunk(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Head output: logits (batch, classes), or (batch, classes, H, W) for segmentation."""
        f = self.trunk(x)
        if self.head_kind == "classify":
            return self.head(f.mean(dim=(2, 3)))
        return F.interpolate(self.head(f), size=x.shape[-2:], mode="bilinear", align_corners=False)
