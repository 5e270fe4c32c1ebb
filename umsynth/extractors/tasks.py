"""Self-supervised training tasks for the CT extractors: batches of (input, target).

Every task reads the same training tensor: montages resized once to ``2 * size`` square,
float32 in [0, 1], shape (N, 1, 2 size, 2 size). Inputs leave a task at ``size`` square,
scaled to [-1, 1] (mean 0.5, std 0.5, as MedSynAnalyzer does).

``quadrant``   slice position: one quadrant of the 2x2 montage; target its index 0..3
               (0 top left, 1 bottom left, 2 top right, 3 bottom right, the montage order
               of method.md §1). It learns the anatomical level of a slice.
``rotation``   the whole image turned by k * 90 degrees; target k.
``degradation`` target 0 clean, 1 Gaussian blur, 2 Gaussian noise, 3 intensity shift
               (gain and offset): a real-vs-degraded network sensitive to what a generator
               gets wrong.
``meta:<key>`` a per-image metadata value (reconstruction kernel, FOV type, ...), one class
               per distinct value; only where the value is known.
``segmentation`` the label map (0 background, 1 lung, 2 lesion) of labelled images.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["Task", "make_task", "batch", "gaussian_blur", "degrade", "DEGRADATIONS"]

DEGRADATIONS = ("blur", "noise", "shift")


@dataclass
class Task:
    """One training task.

    Attributes
    ----------
    name : str
    classes : int
    head : {"classify", "segment"}
    pool : torch.Tensor
        Indices of the training images the task may draw (labelled ones for segmentation).
    targets : torch.Tensor or None
        Per-image class ids (meta tasks) or label maps (segmentation); None otherwise.
    values : list of str
        Class names.
    """

    name: str
    classes: int
    head: str
    pool: torch.Tensor
    targets: torch.Tensor | None = None
    values: tuple = ()


def make_task(name: str, n: int, labels=None, labelled=None, meta_values=None) -> Task:
    """Build a task over ``n`` training images.

    Parameters
    ----------
    name : str
        ``quadrant``, ``rotation``, ``degradation``, ``segmentation`` or ``meta:<key>``.
    n : int
        Number of training images.
    labels : torch.Tensor, optional
        (n, 1, 2 size, 2 size) int64 label maps (segmentation).
    labelled : torch.Tensor, optional
        (n,) bool: which label maps are real manual labels.
    meta_values : sequence, optional
        Per-image metadata values for ``meta:<key>``; None entries are unknown.
    """
    everyone = torch.arange(n)
    if name == "quadrant":
        return Task(name, 4, "classify", everyone, values=("top-left", "bottom-left", "top-right", "bottom-right"))
    if name == "rotation":
        return Task(name, 4, "classify", everyone, values=("0", "90", "180", "270"))
    if name == "degradation":
        return Task(name, 1 + len(DEGRADATIONS), "classify", everyone, values=("clean",) + DEGRADATIONS)
    if name == "segmentation":
        if labels is None:
            raise ValueError("task 'segmentation' needs label maps (labels=...)")
        pool = everyone if labelled is None else everyone[torch.as_tensor(labelled, dtype=torch.bool)]
        if len(pool) == 0:
            raise ValueError("task 'segmentation': no labelled image")
        classes = max(int(labels.max()) + 1, 2)
        return Task(name, classes, "segment", pool, targets=labels, values=tuple(str(c) for c in range(classes)))
    if name.startswith("meta:"):
        if meta_values is None or len(meta_values) != n:
            raise ValueError(f"task {name!r} needs one metadata value per training image")
        known = sorted({str(v) for v in meta_values if v is not None})
        if len(known) < 2:
            raise ValueError(f"task {name!r}: metadata has {len(known)} distinct known value(s); need >= 2")
        ids = torch.tensor([known.index(str(v)) if v is not None else -1 for v in meta_values])
        return Task(name, len(known), "classify", everyone[ids >= 0], targets=ids, values=tuple(known))
    raise ValueError(f"unknown task {name!r}; expected quadrant, rotation, degradation, segmentation or meta:<key>")


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur of (B, 1, H, W) with a per-image sigma (B,) in pixels, reflect padding."""
    radius = max(1, int(math.ceil(3.0 * float(sigma.max()))))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t[None, :] / sigma[:, None].clamp_min(1e-3)) ** 2)
    k = k / k.sum(dim=1, keepdim=True)  # (B, taps)
    b, _, h, w = x.shape
    y = F.pad(x.reshape(1, b, h, w), (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, k[:, None, None, :], groups=b)  # along x
    y = F.conv2d(y, k[:, None, :, None], groups=b)  # along y
    return y.reshape(b, 1, h, w)


def degrade(x: torch.Tensor, kind: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Apply degradation ``kind`` (0 none, 1 blur, 2 noise, 3 shift) per image, random strength.

    Strengths are relative to a 128-pixel image: blur sigma 0.6..2 px (scaled with size),
    noise std 0.02..0.12, gain 0.85..1.15 with offset 0.03..0.12 of either sign.
    """
    b, size = x.shape[0], x.shape[-1]
    u = torch.rand(b, generator=gen)
    out = x.clone()
    blur = kind == 1
    if blur.any():
        sigma = (0.6 + 1.4 * u[blur]) * size / 128
        out[blur] = gaussian_blur(x[blur], sigma)
    noise = kind == 2
    if noise.any():
        std = (0.02 + 0.10 * u[noise]).view(-1, 1, 1, 1)
        out[noise] = x[noise] + std * torch.randn(x[noise].shape, generator=gen)
    shift = kind == 3
    if shift.any():
        gain = (0.85 + 0.3 * torch.rand(int(shift.sum()), generator=gen)).view(-1, 1, 1, 1)
        sign = torch.where(torch.rand(int(shift.sum()), generator=gen) < 0.5, -1.0, 1.0).view(-1, 1, 1, 1)
        out[shift] = x[shift] * gain + sign * (0.03 + 0.09 * u[shift]).view(-1, 1, 1, 1)
    return out.clamp(0.0, 1.0)


def batch(task: Task, montages: torch.Tensor, size: int, batch_size: int,
          gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw one training batch: (inputs (B, 1, size, size) in [-1, 1], targets)."""
    pick = task.pool[torch.randint(len(task.pool), (batch_size,), generator=gen)]
    m = montages[pick]
    if task.name == "quadrant":
        q = torch.randint(4, (batch_size,), generator=gen)
        r, c = (q % 2) * size, (q // 2) * size
        x = torch.stack([m[i, :, r[i]:r[i] + size, c[i]:c[i] + size] for i in range(batch_size)])
        return x * 2.0 - 1.0, q
    x = F.avg_pool2d(m, 2)  # the whole montage at size x size
    if task.name == "rotation":
        k = torch.randint(4, (batch_size,), generator=gen)
        x = torch.stack([torch.rot90(x[i], int(k[i]), dims=(1, 2)) for i in range(batch_size)])
        return x * 2.0 - 1.0, k
    if task.name == "degradation":
        k = torch.randint(1 + len(DEGRADATIONS), (batch_size,), generator=gen)
        return degrade(x, k, gen) * 2.0 - 1.0, k
    if task.name == "segmentation":
        y = task.targets[pick][:, 0, ::2, ::2]  # nearest-neighbour halving of the label maps
        return x * 2.0 - 1.0, y.long()
    return x * 2.0 - 1.0, task.targets[pick]
