"""Training a suite of CT extractors with self-supervised tasks (no manual labels needed)."""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from umsynth.extractors import tasks as _tasks
from umsynth.extractors.nets import CTNet
from umsynth.extractors.suite import (DEFAULT_SCALES, Member, Suite, array_digest, check_scales, load_suite,
                                      save_suite)

__all__ = ["SuiteTrainConfig", "TrainConfig", "TINY_CONFIG", "train_suite", "default_tasks"]

BASE_TASKS = ("quadrant", "rotation", "degradation")


@dataclass
class SuiteTrainConfig:
    """How a suite of CT extractors is trained (``TrainConfig`` is its old name, kept as an alias).

    Attributes
    ----------
    tasks : tuple of str or None
        Task names (see :mod:`umsynth.extractors.tasks`). None: quadrant, rotation and
        degradation, plus segmentation when label maps are given and ``meta:<key>`` for each
        metadata key given.
    channels : tuple of int
        Widths of the stem and of each trunk stage; the feature dimension is the last.
    stem : int
        Patchify stem size and stride (see :class:`~umsynth.extractors.CTNet`).
    size : int
        Training input size (the montage is resized once to ``2 * size``; tasks see ``size``).
    steps : int
        Optimizer steps per task.
    batch_size : int
    lr : float
        Adam learning rate, constant.
    seed : int
        Seeds the weights and every random draw: the same data and config give the same suite.
    scales : tuple of int
        Scales saved in the suite (where MM-FID will evaluate the networks).

    Raises
    ------
    ValueError
        Naming the field, for a value out of range (checked on construction).
    """

    tasks: tuple | None = None
    channels: tuple = (16, 32, 64, 128)
    stem: int = 4
    size: int = 128
    steps: int = 300
    batch_size: int = 16
    lr: float = 2e-3
    seed: int = 0
    scales: tuple = DEFAULT_SCALES

    def __post_init__(self) -> None:
        for name in ("size", "steps", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.size < 16:
            raise ValueError(f"size must be >= 16, got {self.size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        try:
            check_scales(self.scales)
        except ValueError as exc:
            raise ValueError(f"scales: {exc}") from None

    def check(self) -> "SuiteTrainConfig":
        """Check the fields again (after changing them in place); returns self."""
        self.__post_init__()
        return self


#: The old name of :class:`SuiteTrainConfig` (``umsynth.train.TrainConfig`` is another class:
#: the run section of the GAN's training configuration).
TrainConfig = SuiteTrainConfig

# For tests and `--quick`: trains in seconds on a CPU.
TINY_CONFIG = SuiteTrainConfig(channels=(8, 16, 32), stem=2, size=32, steps=20, batch_size=8, scales=(32, 64))


def default_tasks(labels=None, meta=None) -> tuple:
    """The tasks trained when ``SuiteTrainConfig.tasks`` is None (see :class:`SuiteTrainConfig`)."""
    out = list(BASE_TASKS)
    if labels is not None:
        out.append("segmentation")
    out += [f"meta:{k}" for k in (meta or {})]
    return tuple(out)


def _montage_tensor(images, size: int, progress: bool) -> tuple[torch.Tensor, int]:
    """All training images resized once to (N, 1, 2 size, 2 size), float32 in [0, 1]."""
    from umsynth.progress import progress as progress_bar

    from umsynth.extractors.sources import as_source

    src = as_source(images, "images")
    out = []
    for _, img in progress_bar(src, total=src.length, desc="reading", unit="img", disable=not progress):
        out.append(F.interpolate(img[None], size=(2 * size, 2 * size), mode="bilinear",
                                 align_corners=False, antialias=True)[0])
    return torch.stack(out).clamp_(0.0, 1.0), len(out)


def _labels_tensor(labels, n: int, size: int) -> torch.Tensor:
    lab = torch.as_tensor(np.asarray(labels))
    if lab.ndim != 3 or lab.shape[0] != n:
        raise ValueError(f"labels must have shape ({n}, H, W), got {tuple(lab.shape)}")
    if lab.dtype.is_floating_point or lab.min() < 0:
        raise ValueError("labels must be non-negative integer class ids")
    lab = F.interpolate(lab[:, None].float(), size=(2 * size, 2 * size), mode="nearest")
    return lab.long()


def train_suite(images, config: SuiteTrainConfig | None = None, labels=None, labelled=None, meta: dict | None = None,
                checkpoint: str | os.PathLike | None = None, progress: bool = True) -> Suite:
    """Train one CT feature network per task on real images and return the suite.

    Parameters
    ----------
    images : folder, array (N, H, W) or iterable of images
        Real CT images, ideally SemiCS2 2x2 montages (the quadrant task assumes that layout).
    config : SuiteTrainConfig, optional
        Default: ``SuiteTrainConfig()`` (a few minutes on 2 CPU cores for ~100 images).
        :data:`TINY_CONFIG` trains in seconds.
    labels : array_like (N, H, W) of int, optional
        Segmentation label maps; enables the segmentation task.
    labelled : array_like (N,) of bool, optional
        Which label maps are manual labels (default: all).
    meta : dict of str -> sequence, optional
        Per-image metadata (e.g. ``{"kernel": [...], "fov": [...]}``, None where unknown);
        one ``meta:<key>`` network each.
    checkpoint : path, optional
        The suite so far is saved here after each task; a run with the same config and
        data resumes from it, skipping finished tasks.
    progress : bool, optional
        tqdm bars on stderr.

    Returns
    -------
    Suite
        Networks in eval mode, the config's scales, and a training summary (data size and
        digest, config, per-task final loss and accuracy, seconds).
    """
    from umsynth.progress import progress as progress_bar

    config = (config or SuiteTrainConfig()).check()
    task_names = tuple(config.tasks) if config.tasks is not None else default_tasks(labels, meta)
    montages, n = _montage_tensor(images, config.size, progress)
    lab = _labels_tensor(labels, n, config.size) if labels is not None else None
    summary = {"config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()},
               "tasks": list(task_names),
               "data": {"images": n, "mean": float(montages.mean()), "std": float(montages.std()),
                        "digest": array_digest(montages.numpy()),
                        "labelled": int(n if labelled is None else np.count_nonzero(labelled)) if lab is not None else 0,
                        "meta_keys": sorted(meta or {})},
               "results": {}}
    done = _resume(checkpoint, summary)
    members = list(done.members) if done else []
    for name in task_names:
        if any(m.task == name for m in members):
            continue
        task = _tasks.make_task(name, n, labels=lab, labelled=labelled,
                                meta_values=(meta or {}).get(name[5:]) if name.startswith("meta:") else None)
        net, result = _train_one(task, montages, config, progress, progress_bar)
        members.append(Member(f"ct-{name.replace(':', '-')}", name, net, tuple(config.channels), task.classes,
                              task.head, task.values, config.stem))
        summary["results"][name] = result
        if checkpoint is not None:
            save_suite(Suite(members, config.scales, summary), checkpoint)
    return Suite(members, config.scales, summary).to("cpu")


def _resume(checkpoint, summary: dict) -> Suite | None:
    if checkpoint is None or not os.path.exists(checkpoint):
        return None
    old = load_suite(checkpoint)
    same = (old.training.get("config") == summary["config"] and old.training.get("data") == summary["data"])
    if not same:
        raise ValueError(f"checkpoint {checkpoint} was made with another config or other data; "
                         "delete it or pass another path")
    summary["results"].update(old.training.get("results", {}))
    return old


def _train_one(task, montages, config: SuiteTrainConfig, progress: bool, tqdm) -> tuple[CTNet, dict]:
    """Train one network on one task; returns it in eval mode and its training summary."""
    seed = config.seed * 1000 + sum(task.name.encode())  # each task its own stream, stable
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = CTNet(config.channels, task.classes, task.head, stem=config.stem)
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    net.train()
    losses, hits, total = [], 0, 0
    start = time.perf_counter()
    tail = max(1, config.steps // 5)  # loss and accuracy reported over the last fifth
    for step in tqdm(range(config.steps), desc=f"task {task.name}", unit="step", disable=not progress):
        x, y = _tasks.batch(task, montages, config.size, config.batch_size, gen)
        out = net(x)
        loss = F.cross_entropy(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step >= config.steps - tail:
            losses.append(float(loss.detach()))
            hits += int((out.argmax(1) == y).sum())
            total += y.numel()
    net.eval()
    return net, {"loss": float(np.mean(losses)), "accuracy": hits / total, "classes": task.classes,
                 "steps": config.steps, "seconds": round(time.perf_counter() - start, 3)}
