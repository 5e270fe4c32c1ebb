"""Utility of synthetic pairs: does adding them help a segmentation model on real CT?

The paper's utility test (method.md §6): train a segmentation network on the few labelled
real cases alone, and on those plus synthetic (CT, segmentation) pairs, then compare Dice
on held-out real images. This module holds the small network, its training loop and the
Dice metric; the demo calls :func:`utility_experiment`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from umsynth.models.losses import segmentation_loss

__all__ = ["SegmenterConfig", "Segmenter", "dice_per_class", "train_segmenter", "predict",
           "utility_experiment"]


@dataclass
class SegmenterConfig:
    """A small U-Net and its training budget.

    Attributes
    ----------
    width : int
        Channels of the first level; each level below doubles them.
    depth : int
        Number of stride-2 levels.
    steps : int
        Optimiser steps (the same for every arm of the comparison).
    batch_size : int
    lr : float
        Adam learning rate.
    n_classes : int
        Output classes (0 background, 1 lung, 2 lesion).
    seed : int
        Seeds the initial weights and the batch order, so arms differ only in data.

    Raises
    ------
    ValueError
        Naming the field, for a value out of range (checked on construction).
    """

    width: int = 16
    depth: int = 3
    steps: int = 300
    batch_size: int = 8
    lr: float = 5e-3
    n_classes: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("depth", "steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.width < 4 or self.width % 4:
            raise ValueError(f"width must be a multiple of 4 (group norm of 4 groups), got {self.width}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {self.n_classes}")


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(4, cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(4, cout), nn.ReLU(inplace=True))


class Segmenter(nn.Module):
    """U-Net: `depth` levels of two 3x3 convs, max-pool down, bilinear up, skip concat."""

    def __init__(self, cfg: SegmenterConfig) -> None:
        super().__init__()
        widths = [cfg.width * 2**i for i in range(cfg.depth + 1)]
        self.down = nn.ModuleList([_block(1, widths[0])] + [_block(widths[i], widths[i + 1])
                                                             for i in range(cfg.depth)])
        self.up = nn.ModuleList([_block(widths[i + 1] + widths[i], widths[i])
                                 for i in reversed(range(cfg.depth))])
        self.head = nn.Conv2d(widths[0], cfg.n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, blk in enumerate(self.down):
            x = blk(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        skips.pop()
        for blk in self.up:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = blk(torch.cat([x, skip], dim=1))
        return self.head(x)


def dice_per_class(pred: np.ndarray, target: np.ndarray, n_classes: int = 3) -> np.ndarray:
    """Hard Dice per class over a whole set, ``2|P∩T| / (|P|+|T|)``.

    Classes absent from both prediction and target get NaN (no evidence either way).
    """
    pred = np.asarray(pred)
    target = np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {pred.shape} vs {target.shape}")
    out = np.full(n_classes, np.nan)
    for c in range(n_classes):
        p, t = pred == c, target == c
        denom = int(p.sum()) + int(t.sum())
        if denom:
            out[c] = 2.0 * int((p & t).sum()) / denom
    return out


def _to_batch(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).unsqueeze(1) / 127.5 - 1.0
    y = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64))
    return x, y


def train_segmenter(images: np.ndarray, labels: np.ndarray, cfg: SegmenterConfig,
                    device: str = "cpu", progress: bool = False, desc: str = "segmenter") -> Segmenter:
    """Train a :class:`Segmenter` on uint8 images (N,H,W) and class maps (N,H,W).

    Loss: cross-entropy on logits plus soft Dice over the classes, with random flips.
    """
    from umsynth.progress import progress as progress_bar

    if len(images) == 0:
        raise ValueError("images: empty training set")
    if images.shape != labels.shape:
        raise ValueError(f"images and labels shapes differ: {images.shape} vs {labels.shape}")
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    net = Segmenter(cfg).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    x_all, y_all = _to_batch(images, labels)
    n = len(x_all)
    bar = progress_bar(range(cfg.steps), desc=desc, disable=not progress, leave=False)
    for _ in bar:
        idx = torch.randint(n, (min(cfg.batch_size, n),), generator=gen)
        x, y = x_all[idx], y_all[idx]
        if torch.rand((), generator=gen) < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        x, y = x.to(device), y.to(device)
        loss = segmentation_loss(net(x), y).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    return net.eval()


@torch.no_grad()
def predict(net: Segmenter, images: np.ndarray, device: str = "cpu", batch_size: int = 16) -> np.ndarray:
    """Class maps (N,H,W) uint8 for uint8 images (N,H,W)."""
    out = []
    for i in range(0, len(images), batch_size):
        x, _ = _to_batch(images[i:i + batch_size], np.zeros_like(images[i:i + batch_size]))
        out.append(net(x.to(device)).argmax(1).to("cpu", torch.uint8).numpy())
    return np.concatenate(out)


def utility_experiment(real_images: np.ndarray, real_labels: np.ndarray,
                       synthetic: dict[str, tuple[np.ndarray, np.ndarray]],
                       test_images: np.ndarray, test_labels: np.ndarray,
                       cfg: SegmenterConfig, device: str = "cpu", progress: bool = False) -> dict:
    """Dice on held-out real images for "real only" and for "real + each synthetic set".

    Every arm trains with the same config (seed, steps, batch size): only the data differ.

    Returns
    -------
    dict
        ``{arm: {"dice": [per class], "mean_foreground": float, "n_train": int}}`` with
        arms ``"real_only"`` and ``"real+<name>"`` for each synthetic set.
    """
    arms = {"real_only": (real_images, real_labels)}
    for name, (imgs, labs) in synthetic.items():
        arms[f"real+{name}"] = (np.concatenate([real_images, imgs]), np.concatenate([real_labels, labs]))
    result = {}
    for arm, (imgs, labs) in arms.items():
        net = train_segmenter(imgs, labs, cfg, device=device, progress=progress, desc=f"utility {arm}")
        dice = dice_per_class(predict(net, test_images, device), test_labels, cfg.n_classes)
        fg = dice[1:]
        result[arm] = {"dice": [None if np.isnan(v) else float(v) for v in dice],
                       "mean_foreground": float(np.nanmean(fg)) if np.isfinite(fg).any() else None,
                       "n_train": int(len(imgs))}
    return result
