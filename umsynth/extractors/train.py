"""Training a suite of CT extractors with self-supervised tasks (no manual labels needed)."""
from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from umsynth.extractors import tasks as _tasks
from umsynth.extractors.nets import CTNet
from umsynth.extractors.suite import (DEFAULT_SCALES, Member, Suite, array_digest, check_scales, load_suite,
                                      radiomics_member, save_suite)

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
        Scales saved in the suite (where MM-FID will evaluate the networks). Each training
        batch is shown at one of them, drawn in turn, so every network sees every input size
        it will be asked about (``batch_size`` images, fewer above ``2 * size`` so that a step
        costs about the same at every scale; detail finer than ``size`` is interpolated).
    held_out : float
        Fraction of the images kept out of training (at least 1 image when there are 5 or
        more) on which each task's accuracy is measured at every scale and recorded in the
        suite's metadata. 0 disables it.
    radiomics : bool
        Add the radiomics member (:func:`~umsynth.extractors.suite.radiomics_member`: no
        training, no weights, the same features in every study), so that every MM-FID table
        has one deterministic row. False leaves it out.

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
    held_out: float = 0.2
    radiomics: bool = True

    def __post_init__(self) -> None:
        for name in ("size", "steps", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.size < 16:
            raise ValueError(f"size must be >= 16, got {self.size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 <= float(self.held_out) < 1:
            raise ValueError(f"held_out must be in [0, 1), got {self.held_out}")
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
TINY_CONFIG = SuiteTrainConfig(channels=(8, 16, 32), stem=2, size=32, steps=40, batch_size=8, scales=(32, 64))


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
        Progress on stderr (:func:`umsynth.progress.progress`).

    Returns
    -------
    Suite
        Networks in eval mode (then the radiomics member unless ``config.radiomics`` is
        False), the config's scales, and a training summary (data size and
        digest, config, per-task final loss and accuracy, seconds).
    """
    from umsynth.progress import progress as progress_bar

    config = (config or SuiteTrainConfig()).check()
    task_names = tuple(config.tasks) if config.tasks is not None else default_tasks(labels, meta)
    montages, n = _montage_tensor(images, config.size, progress)
    lab = _labels_tensor(labels, n, config.size) if labels is not None else None
    train_idx, held_idx = held_out_split(n, config.held_out, config.seed)
    summary = {"config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()},
               "tasks": list(task_names),
               "data": {"images": n, "mean": float(montages.mean()), "std": float(montages.std()),
                        "digest": array_digest(montages.numpy()),
                        "labelled": int(n if labelled is None else np.count_nonzero(labelled)) if lab is not None else 0,
                        "meta_keys": sorted(meta or {}), "held_out_images": int(len(held_idx))},
               "results": {}}
    done = _resume(checkpoint, summary)
    members = list(done.members) if done else []
    for name in task_names:
        if any(m.task == name for m in members):
            continue
        task = _tasks.make_task(name, n, labels=lab, labelled=labelled,
                                meta_values=(meta or {}).get(name[5:]) if name.startswith("meta:") else None)
        train_task, held_task = _restrict(task, train_idx), _restrict(task, held_idx)
        if len(train_task.pool) == 0:  # e.g. every labelled image fell in the held-out part
            train_task, held_task = task, _restrict(task, held_idx[:0])
        net, result = _train_one(train_task, montages, config, progress, progress_bar)
        result["held_out"] = held_out_score(net, held_task, montages, config)
        _warn_at_chance(name, result["held_out"])
        members.append(Member(f"ct-{name.replace(':', '-')}", name, net, tuple(config.channels), task.classes,
                              task.head, task.values, config.stem))
        summary["results"][name] = result
        if checkpoint is not None:
            save_suite(Suite(members, config.scales, summary), checkpoint)
    if config.radiomics and not any(m.task == "radiomics" for m in members):
        members.append(radiomics_member())
    return Suite(members, config.scales, summary).to("cpu")


def held_out_split(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(training indices, held-out indices): a seeded ``fraction`` of ``n`` images held out (none below 5)."""
    k = int(round(n * float(fraction))) if n >= 5 and fraction > 0 else 0
    k = max(k, 1) if n >= 5 and fraction > 0 else 0
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed) + 7919))
    return perm[k:].sort().values, perm[:k].sort().values


def _restrict(task, idx: torch.Tensor):
    """The task over the images in ``idx`` only (its pool intersected with them)."""
    keep = torch.isin(task.pool, idx)
    return replace(task, pool=task.pool[keep])


def _scale_batch(config: SuiteTrainConfig, scale: int) -> int:
    """Images per batch at ``scale``: ``batch_size`` up to twice ``size``; above, about the pixels of
    ``batch_size`` images at ``2 * size`` (at least 2), so that a step costs about the same."""
    return max(2, min(config.batch_size, int(round(config.batch_size * (2 * config.size / scale) ** 2))))


def _at_scale(x: torch.Tensor, y: torch.Tensor, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A task batch resized to ``scale`` (inputs bilinear and antialiased; label maps nearest)."""
    if x.shape[-1] == scale:
        return x, y
    x = F.interpolate(x, size=(scale, scale), mode="bilinear", align_corners=False, antialias=True)
    if y.ndim == 3:
        y = F.interpolate(y[:, None].float(), size=(scale, scale), mode="nearest")[:, 0].long()
    return x, y


def held_out_score(net, task, montages: torch.Tensor, config: SuiteTrainConfig, draws: int = 64) -> dict:
    """Accuracy of ``net`` on the task's held-out images at every scale, beside the chance level.

    Chance is 1 / classes for the self-supervised tasks (their targets are drawn uniformly),
    and the share of the most frequent class among the held-out targets otherwise (metadata,
    segmentation pixels): what always guessing that class scores. None when no image is held out.
    """
    if len(task.pool) == 0:
        return {"images": 0, "accuracy": None, "chance": None, "per_scale": {}}
    gen = torch.Generator().manual_seed(config.seed + 104729)
    per_scale, hits, total, counts = {}, 0, 0, {}
    with torch.no_grad():
        for scale in config.scales:
            x, y = _tasks.batch(task, montages, config.size, draws, gen)
            x, y = _at_scale(x, y, int(scale))
            pred = net(x).argmax(1)
            ok = int((pred == y).sum())
            per_scale[int(scale)] = ok / y.numel()
            hits, total = hits + ok, total + y.numel()
            for v, c in zip(*torch.unique(y, return_counts=True)):
                counts[int(v)] = counts.get(int(v), 0) + int(c)
    if task.targets is None:
        chance = 1.0 / task.classes
    elif task.head == "classify":
        _, per_class = torch.unique(task.targets[task.pool], return_counts=True)
        chance = float(per_class.max()) / len(task.pool)
    else:
        chance = max(counts.values()) / total
    return {"images": int(len(task.pool.unique())), "accuracy": hits / total, "chance": chance,
            "per_scale": per_scale}


def _warn_at_chance(name: str, score: dict) -> None:
    """Warn when a task's held-out accuracy is within two binomial standard errors of chance."""
    acc, chance = score.get("accuracy"), score.get("chance")
    if acc is None:
        return
    n = 64 * max(len(score["per_scale"]), 1)
    margin = 2.0 * math.sqrt(chance * (1.0 - chance) / n)
    if acc <= chance + margin:
        score["at_chance"] = True
        warnings.warn(f"extractor task {name!r} stays at chance on held-out images (accuracy {acc:.1%}, chance "
                      f"{chance:.1%}): its features carry little information; train longer or drop the task",
                      stacklevel=3)
    else:
        score["at_chance"] = False


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


def _train_one(task, montages, config: SuiteTrainConfig, progress: bool, bar) -> tuple[CTNet, dict]:
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
    scales = [int(v) for v in config.scales]
    for step in bar(range(config.steps), desc=f"task {task.name}", unit="step", disable=not progress):
        scale = scales[step % len(scales)]  # every scale in turn
        x, y = _tasks.batch(task, montages, config.size, _scale_batch(config, scale), gen)
        x, y = _at_scale(x, y, scale)
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
