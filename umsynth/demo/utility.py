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

__all__ = ["SegmenterConfig", "Segmenter", "dice_per_class", "dice_per_image", "train_segmenter", "predict",
           "utility_experiment", "bootstrap_mean", "paired_bootstrap", "label_fidelity", "foreground_table"]


#: cross-entropy weights of background/body, lung and lesion (see :class:`SegmenterConfig`)
CLASS_WEIGHTS = (1.0, 3.0, 30.0)


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
    class_weights : tuple of float or None
        Cross-entropy weight of each class (None: all 1). The default up-weights the rare
        classes of the phantom montages (lung ~10 %, lesion ~0.5 % of pixels): with plain
        cross-entropy a width-8 U-Net sat on the "all background" plateau for its whole
        120-step budget in 2 of 3 seeds and never predicted a lesion (results-utility19.md).

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
    class_weights: tuple | None = CLASS_WEIGHTS

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
        if self.class_weights is not None:
            w = tuple(float(v) for v in self.class_weights)
            if len(w) != self.n_classes or not all(np.isfinite(v) and v > 0 for v in w):
                raise ValueError(f"class_weights must be {self.n_classes} finite values > 0 (one per class), "
                                 f"got {self.class_weights}")
            self.class_weights = w


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


def _check_pairs(images, labels, name: str) -> None:
    if len(images) == 0:
        raise ValueError(f"{name}: empty training set")
    if images.shape != labels.shape:
        raise ValueError(f"{name}: images and labels shapes differ: {images.shape} vs {labels.shape}")


def train_segmenter(images: np.ndarray, labels: np.ndarray, cfg: SegmenterConfig,
                    device: str = "cpu", progress: bool = False, desc: str = "segmenter",
                    extra: tuple[np.ndarray, np.ndarray] | None = None) -> Segmenter:
    """Train a :class:`Segmenter` on uint8 images (N,H,W) and class maps (N,H,W).

    Loss: class-weighted cross-entropy (``cfg.class_weights``, so the rare lung and lesion
    classes are not drowned by the background) plus the per-image soft Dice of
    :func:`umsynth.models.segmentation_loss` over the classes, with random left-right flips.
    With ``extra`` (images, labels), every batch is half from ``images`` and half from
    ``extra`` (the first half rounded up); the batch size stays ``cfg.batch_size``.
    """
    from umsynth.progress import progress as progress_bar

    _check_pairs(images, labels, "images")
    if extra is not None:
        _check_pairs(*extra, "extra")
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    net = Segmenter(cfg).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    weight = None if cfg.class_weights is None else torch.tensor(cfg.class_weights, device=device)
    sources = [_to_batch(images, labels)] + ([_to_batch(*extra)] if extra is not None else [])
    counts = [cfg.batch_size] if extra is None else [cfg.batch_size - cfg.batch_size // 2, cfg.batch_size // 2]
    bar = progress_bar(range(cfg.steps), desc=desc, disable=not progress, leave=False)
    for _ in bar:
        xs, ys = [], []
        for (x_all, y_all), k in zip(sources, counts):
            if k:
                idx = torch.randint(len(x_all), (k,), generator=gen)
                xs.append(x_all[idx])
                ys.append(y_all[idx])
        x, y = torch.cat(xs), torch.cat(ys)
        if torch.rand((), generator=gen) < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        x, y = x.to(device), y.to(device)
        logits = net(x)
        loss = F.cross_entropy(logits, y, weight=weight) + segmentation_loss(logits, y, ce=False).mean()
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


def dice_per_image(pred: np.ndarray, target: np.ndarray, n_classes: int = 3) -> np.ndarray:
    """Hard Dice per image and class, (N, n_classes); NaN where a class is absent from both."""
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape or pred.ndim != 3:
        raise ValueError(f"pred and target must be (N, H, W) of one shape, got {pred.shape} vs {target.shape}")
    return np.stack([dice_per_class(p, t, n_classes) for p, t in zip(pred, target)])


def _two_sided_p(boot: np.ndarray) -> float:
    """Bootstrap p-value of "the mean is 0": twice the smaller tail, at least 1/(B+1)."""
    b = len(boot)
    tail = min((boot <= 0).sum(), (boot >= 0).sum())
    return float(min(1.0, 2 * (tail + 1) / (b + 1)))


def bootstrap_mean(values: np.ndarray, confidence: float = 0.95, n_boot: int = 2000, seed: int = 0) -> dict:
    """Mean of a (seeds, images) table with a percentile interval from resampling both.

    Seeds and images are resampled independently (a two-level bootstrap): the interval
    covers the spread from segmenter training and from the choice of test images. NaN
    entries (class absent) are left out of every mean.

    Returns
    -------
    dict
        ``mean``, ``interval`` (low, high), ``p_value`` (two-sided, of mean 0) and ``unit``.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2 or v.size == 0:
        raise ValueError(f"values must be a non-empty (seeds, images) table, got shape {v.shape}")
    if not np.isfinite(v).any():
        return {"mean": None, "interval": (None, None), "p_value": None, "unit": "test images x segmenter seeds"}
    rng = np.random.default_rng(seed)
    s, n = v.shape
    boot = np.empty(n_boot)
    for b in range(n_boot):
        pick = v[rng.integers(s, size=s)][:, rng.integers(n, size=n)]
        boot[b] = np.nanmean(pick) if np.isfinite(pick).any() else np.nan
    boot = boot[np.isfinite(boot)]
    a = (1 - confidence) / 2
    return {"mean": float(np.nanmean(v)), "interval": (float(np.quantile(boot, a)), float(np.quantile(boot, 1 - a))),
            "p_value": _two_sided_p(boot), "unit": "test images x segmenter seeds"}


def paired_bootstrap(a: np.ndarray, b: np.ndarray, confidence: float = 0.95, n_boot: int = 2000,
                     seed: int = 0) -> dict:
    """Difference ``mean(a) - mean(b)`` of two (seeds, images) tables, paired by seed and image.

    Returns the same keys as :func:`bootstrap_mean` with ``difference`` for ``mean``.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"a and b must be paired tables of one shape, got {a.shape} vs {b.shape}")
    r = bootstrap_mean(a - b, confidence, n_boot, seed)
    r["difference"] = r.pop("mean")
    return r


def _foreground(d: np.ndarray) -> np.ndarray:
    """Mean of the foreground classes per entry (NaN when none is present)."""
    fg = d[..., 1:]
    with np.errstate(all="ignore"):
        return np.where(np.isfinite(fg).any(-1), np.nanmean(np.where(np.isfinite(fg), fg, np.nan), -1), np.nan)


def _summary(per: np.ndarray, n_classes: int) -> dict:
    """Per-class and mean-foreground Dice with intervals, from (seeds, images, classes)."""
    return {"per_class": [bootstrap_mean(per[..., c]) for c in range(n_classes)],
            "mean_foreground": bootstrap_mean(_foreground(per))}


def utility_experiment(real_images: np.ndarray, real_labels: np.ndarray,
                       synthetic: dict[str, tuple[np.ndarray, np.ndarray]],
                       test_images: np.ndarray, test_labels: np.ndarray,
                       cfg: SegmenterConfig, seeds: int = 3, device: str = "cpu", progress: bool = False,
                       baseline: bool = True) -> dict:
    """Dice on held-out real images for "real only" and for "real + each synthetic set".

    Every arm trains with the same config (steps, batch size) and the same ``seeds``
    segmenter seeds (``cfg.seed``, ``cfg.seed + 1``, ...): only the data differ. A mixed
    arm's batches are half real, half synthetic.

    Returns
    -------
    dict
        ``{arm: {...}}`` for arms ``"real_only"`` (unless ``baseline`` is False) and
        ``"real+<name>"``. Each has ``dice``
        (per class, pooled over seeds and images), ``per_class`` and ``mean_foreground``
        (mean with a bootstrap interval over test images and seeds), ``per_image``
        (seeds x images x classes, NaN as None), ``predicted_classes`` (classes any seed
        predicted anywhere on the test set), ``predicted_classes_per_seed`` (the same for
        each seed: a one-class segmenter shows here), ``n_train``.
    """
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    arms = {"real_only": None} if baseline else {}
    arms.update({f"real+{name}": pair for name, pair in synthetic.items()})
    result = {}
    for arm, extra in arms.items():
        per, pooled, seen, by_seed = [], np.zeros((cfg.n_classes, 3)), set(), []
        for k in range(seeds):
            c = SegmenterConfig(**{**cfg.__dict__, "seed": cfg.seed + k})
            net = train_segmenter(real_images, real_labels, c, device=device, progress=progress,
                                  desc=f"utility {arm} seed {k}", extra=extra)
            pred = predict(net, test_images, device)
            by_seed.append(sorted(int(v) for v in np.unique(pred)))
            seen.update(by_seed[-1])
            per.append(dice_per_image(pred, test_labels, cfg.n_classes))
            for cl in range(cfg.n_classes):
                p, t = pred == cl, test_labels == cl
                pooled[cl] += (int((p & t).sum()), int(p.sum()), int(t.sum()))
        per = np.stack(per)
        with np.errstate(invalid="ignore", divide="ignore"):
            dice = 2 * pooled[:, 0] / (pooled[:, 1] + pooled[:, 2])
        result[arm] = {"dice": [None if not np.isfinite(v) else float(v) for v in dice],
                       **_summary(per, cfg.n_classes),
                       "per_image": [[[None if not np.isfinite(x) else float(x) for x in row] for row in s] for s in per],
                       "predicted_classes": sorted(seen), "predicted_classes_per_seed": by_seed,
                       "n_train": int(len(real_images) + (0 if extra is None else len(extra[0])))}
    return result


def label_fidelity(labels: np.ndarray, truth: np.ndarray, n_classes: int = 3) -> dict:
    """Dice per class of a synthetic set's labels against the ground truth of its source cases."""
    per = dice_per_image(labels, truth, n_classes)[None]
    return _summary(per, n_classes)


def foreground_table(result: dict, arm: str) -> np.ndarray:
    """(seeds, images) mean-foreground Dice of one arm of :func:`utility_experiment`."""
    per = np.array(result[arm]["per_image"], dtype=np.float64)
    return _foreground(per)
