"""Losses of the multi-task GAN: adversarial, feature matching, L1, Dice + CE, perceptual.

Every function reduces to a per-sample value first and then averages over the batch, so
a loss over a batch split across DDP processes, averaged by DDP, equals the loss over
the whole batch.

Differences from the original SemiCS2 code (method.md §4), on purpose:

- cross-entropy takes logits (the original applied it after a softmax);
- the pseudo-label mask *excludes* pixels from both the Dice and the cross-entropy; the
  original multiplied predictions and targets by it, which turned masked pixels into
  background targets;
- feature matching and LSGAN are real options (the original's flags could not be set).
"""
from __future__ import annotations

import os

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["GAN_MODES", "gan_loss", "feature_matching_loss", "l1_loss", "segmentation_loss",
           "confidence_mask", "FeatureNet", "PerceptualLoss"]

GAN_MODES = ("lsgan", "hinge")


def _per_sample_mean(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).mean(1)


def _wide(x: torch.Tensor) -> torch.Tensor:
    """fp16/bf16 (autocast) to float32 so reductions are accurate; float32/64 stay as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def gan_loss(scores: list[list[torch.Tensor]], real: bool, mode: str = "lsgan",
             for_discriminator: bool = True) -> torch.Tensor:
    """Adversarial loss summed over the discriminator's scales (pix2pixHD).

    Parameters
    ----------
    scores : list of lists of tensors
        Output of :class:`~umsynth.models.MultiscaleDiscriminator`; the last tensor of each
        scale is its patch score map.
    real : bool
        Whether the target is "real".
    mode : {"lsgan", "hinge"}
        LSGAN: mean squared error to 1 (real) or 0 (fake). Hinge: the discriminator
        minimises ``relu(1 - s)`` on real and ``relu(1 + s)`` on fake; the generator
        minimises ``-s`` (``real`` must then be True).
    for_discriminator : bool
        Only matters for hinge.

    Returns
    -------
    Tensor, shape (N,)
        The loss of each sample; take ``.mean()`` for the batch.
    """
    if mode not in GAN_MODES:
        raise ValueError(f"gan mode must be one of {', '.join(GAN_MODES)}, got {mode!r}")
    total = 0
    for scale in scores:
        s = _wide(scale[-1])
        if mode == "lsgan":
            total = total + _per_sample_mean((s - (1.0 if real else 0.0)) ** 2)
        elif for_discriminator:
            total = total + _per_sample_mean(F.relu(1.0 - s) if real else F.relu(1.0 + s))
        else:
            if not real:
                raise ValueError("the hinge generator loss is defined for real=True only")
            total = total - _per_sample_mean(s)
    return total


def feature_matching_loss(fake: list[list[torch.Tensor]], real: list[list[torch.Tensor]],
                          n_layers: int) -> torch.Tensor:
    """pix2pixHD feature matching, per sample, without ``lambda_feat``.

    Sum over scales and hidden layers (all outputs but the score map) of the L1 distance
    between synthetic and (detached) real activations, weighted ``4 / (n_layers + 1)``
    per layer and ``1 / num_D`` per scale. Multiply by ``lambda_feat`` (original 10).
    """
    w = 4.0 / (n_layers + 1) / len(fake)
    total = 0
    for f_scale, r_scale in zip(fake, real):
        for f, r in zip(f_scale[:-1], r_scale[:-1]):
            total = total + w * _per_sample_mean((_wide(f) - _wide(r.detach())).abs())
    return total


def l1_loss(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Per-sample mean absolute difference, shape (N,)."""
    return _per_sample_mean((_wide(fake) - _wide(real)).abs())


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None,
                      dice: bool = True, ce: bool = True, smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice + cross-entropy on logits, counting only ``valid`` pixels.

    Parameters
    ----------
    logits : Tensor (N, K, H, W)
        Raw class scores (no softmax applied).
    target : Tensor (N, H, W), int64
        Class indices 0..K-1 (only read where valid).
    valid : Tensor (N, H, W), bool, optional
        Pixels that count; the others contribute exactly nothing to the loss or its
        gradient. None: all pixels.
    dice, ce : bool
        Which terms to include.
    smooth : float
        Additive smoothing of the Dice ratio (numerator and denominator).

    Returns
    -------
    Tensor, shape (N,)
        Per sample: ``CE_n + Dice_n`` where ``CE_n`` is the mean cross-entropy over the
        sample's valid pixels and ``Dice_n = mean_k 1 - (2 sum p t + s) / (sum p + sum t + s)``
        with sums over its valid pixels, ``p`` the softmax and ``t`` the one-hot target.
        A sample with no valid pixel contributes 0.
    """
    if logits.ndim != 4 or target.shape != logits.shape[:1] + logits.shape[2:]:
        raise ValueError(f"logits (N, K, H, W) and target (N, H, W) do not match: "
                         f"{tuple(logits.shape)} vs {tuple(target.shape)}")
    n, k = logits.shape[:2]
    logits = _wide(logits)
    if valid is None:
        valid = torch.ones_like(target, dtype=torch.bool)
    w = valid.to(logits.dtype)
    # masked pixels get target 0 but weight 0; torch.where keeps their gradient exactly 0
    tgt = torch.where(valid, target, torch.zeros_like(target))
    count = w.flatten(1).sum(1)
    total = logits.new_zeros(n)
    if ce:
        pix = F.cross_entropy(logits, tgt, reduction="none")
        pix = torch.where(valid, pix, torch.zeros_like(pix))
        total = total + pix.flatten(1).sum(1) / count.clamp(min=1)
    if dice:
        p = torch.softmax(logits, dim=1) * w[:, None]
        t = F.one_hot(tgt, k).permute(0, 3, 1, 2).to(p.dtype) * w[:, None]
        inter = (p * t).flatten(2).sum(2)
        denom = p.flatten(2).sum(2) + t.flatten(2).sum(2)
        d = 1.0 - (2.0 * inter + smooth) / (denom + smooth)
        total = total + torch.where(count > 0, d.mean(1), torch.zeros_like(count))
    return total


def confidence_mask(scores: list[list[torch.Tensor]], size: tuple[int, int], threshold: float = 0.5) -> torch.Tensor:
    """Pixels where the discriminator finds the synthetic image realistic.

    The full-resolution scale's patch score map (``scores[0][-1]``) is upsampled
    bilinearly to ``size`` and compared with ``threshold`` (> threshold passes). With
    LSGAN (real target 1, fake 0) the default 0.5 is the midpoint; with hinge the
    midpoint is 0. Returns a detached bool tensor (N, H, W).
    """
    s = scores[0][-1].detach().float()
    up = F.interpolate(s, size=size, mode="bilinear", align_corners=False)
    return up[:, 0] > threshold


class FeatureNet(nn.Module):
    """A small convolutional feature extractor for the optional perceptual loss.

    Layer ``i`` is a 3x3 convolution (padding 1) followed by ReLU; its output is one
    feature map, and the next layer sees it average-pooled by 2. The weights come from a
    safetensors file with tensors ``conv{i}.weight`` (out, in, 3, 3) and ``conv{i}.bias``
    (out,) for i = 0, 1, ...; the layer count and widths are read from the file. umsynth
    ships no weights and never downloads any: train or convert a network yourself (for
    example the first convolutions of a VGG you already have) and save them in this layout.
    """

    def __init__(self, tensors: dict[str, torch.Tensor]):
        super().__init__()
        convs = []
        i = 0
        while f"conv{i}.weight" in tensors:
            wt = tensors[f"conv{i}.weight"]
            b = tensors.get(f"conv{i}.bias")
            if wt.ndim != 4 or wt.shape[2:] != (3, 3) or b is None or b.shape != wt.shape[:1]:
                raise ValueError(f"conv{i}: expected weight (out, in, 3, 3) and bias (out,), got "
                                 f"{tuple(wt.shape)} and {None if b is None else tuple(b.shape)}")
            if convs and wt.shape[1] != convs[-1].out_channels:
                raise ValueError(f"conv{i}: {wt.shape[1]} input channels, but conv{i - 1} has "
                                 f"{convs[-1].out_channels} outputs")
            conv = nn.Conv2d(wt.shape[1], wt.shape[0], 3, padding=1)
            with torch.no_grad():
                conv.weight.copy_(wt)
                conv.bias.copy_(b)
            convs.append(conv)
            i += 1
        if not convs:
            raise ValueError("no 'conv0.weight' tensor: not a FeatureNet weights file")
        self.convs = nn.ModuleList(convs)
        self.in_channels = convs[0].in_channels
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.shape[1] == 1 and self.in_channels != 1:
            x = x.expand(-1, self.in_channels, -1, -1)  # grey to the network's channels
        feats = []
        for i, conv in enumerate(self.convs):
            if i:
                x = F.avg_pool2d(x, 2)
            x = F.relu(conv(x))
            feats.append(x)
        return feats


class PerceptualLoss(nn.Module):
    """Per-sample mean over layers of the L1 distance between :class:`FeatureNet` features.

    Parameters
    ----------
    path : path-like
        A safetensors file in :class:`FeatureNet`'s layout.
    """

    def __init__(self, path: str | os.PathLike):
        super().__init__()
        from safetensors.torch import load_file

        if not os.path.isfile(path):
            raise FileNotFoundError(f"perceptual weights file {str(path)!r} does not exist")
        try:
            tensors = load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types for bad files
            raise OSError(f"cannot read perceptual weights {str(path)!r}: {exc}") from None
        self.net = FeatureNet(tensors)

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        ff, fr = self.net(_wide(fake)), self.net(_wide(real))
        return sum(_per_sample_mean((a - b.detach()).abs()) for a, b in zip(ff, fr)) / len(ff)
