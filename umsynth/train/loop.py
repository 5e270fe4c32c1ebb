"""The two-phase semi-supervised training loop of SemiCS2 (method.md §4), corrected.

Each iteration runs

1. the **labelled phase** on one labelled batch: a generator update with
   ``GAN + lambda_feat * FM + lambda_l1 * L1 + lambda_seg * (Dice + CE)`` and a
   discriminator update, both computed with the same discriminator weights (pix2pixHD's
   three passes: synthetic detached, real, synthetic);
2. from epoch ``train.unlabelled_start_epoch`` on, the **unlabelled phase** on one unlabelled
   batch: a frozen snapshot of the generator (refreshed every ``train.pseudo_refresh_epochs``
   epochs) draws the pseudo-label (the argmax over its class logits); the generator loss is
   ``GAN + FM + L1`` against the real CT plus ``lambda_pseudo * (Dice + CE)`` counted only on
   pixels where the discriminator's upsampled full-resolution score of the synthetic image
   exceeds ``loss.confidence_threshold``. Other pixels are left out of the loss (never
   relabelled as background); if none passes, the term is 0.

An epoch is ``train.steps_per_epoch`` iterations (default: one pass over the larger set in
use; the smaller set is cycled). The learning rate follows pix2pixHD (constant for
``optim.niter`` epochs, then linear to 0 over ``optim.niter_decay``).

Mask-guided baseline (``model.conditioning = "mask"``, the paper's V2M2I): the generator
sees the manual segmentation, which unlabelled images do not have, so they are excluded
and only the labelled phase runs. Both modes see the same labelled images (the same
annotation budget) for the same number of epochs and steps; only the UM model also learns
from the unlabelled images, which is the point of the method.

Devices: the same call runs on the CPU, one GPU, or under ``torchrun`` with DDP: when
``WORLD_SIZE > 1`` the process group is initialised from the environment (NCCL on GPUs,
Gloo on the CPU) and each process reads its own shard of every batch
(``DistributedSampler``). Losses are per-sample means averaged over the batch, so the
averaged DDP gradient equals the gradient over the whole global batch.
"""
from __future__ import annotations

import copy
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from umsynth.files import atomic_write_text, write_png
from umsynth.progress import progress
from umsynth.models import (MultiscaleDiscriminator, MultiTaskGenerator, PerceptualLoss, confidence_mask,
                            feature_matching_loss, gan_loss, l1_loss, segmentation_loss)
from umsynth.train.checkpoint import (LAST, data_digest, find_checkpoint, kept_checkpoints, load_checkpoint,
                                      pix2pixhd_lr, rng_state, save_checkpoint, set_rng_state, step_name)
from umsynth.train.conditioning import conditioning_channels, conditioning_input
from umsynth.runtime import environment, resolve_device
from umsynth.train.config import Config, config_differences, config_digest, config_from_dict, config_to_dict, validate
from umsynth.train.logs import HISTORY_NAME, write_history_csv, write_index_html

__all__ = ["train", "TrainResult", "build_generator", "build_discriminator", "CHECKPOINT_NAME"]

CHECKPOINT_NAME = LAST
_KEYS = {"um": (torch.float32, 3), "edges": (torch.float32, 3), "ct": (torch.float32, 3),
         "seg": (torch.int64, 2), "has_label": (torch.bool, 0), "index": (torch.int64, 0)}


# ----------------------------------------------------------------------------- building blocks


def build_generator(cfg: Config) -> MultiTaskGenerator:
    """The generator described by ``cfg.model``."""
    m, g = cfg.model, cfg.model.generator
    return MultiTaskGenerator(conditioning_channels(m.conditioning, m.n_classes, m.use_edges), m.n_classes,
                              g.ngf, g.n_downsample, g.n_blocks, g.norm, g.n_local_enhancers, g.n_blocks_local)


def build_discriminator(cfg: Config) -> MultiscaleDiscriminator:
    """The discriminator described by ``cfg.model`` (conditioning + 1 CT channel in)."""
    m, d = cfg.model, cfg.model.discriminator
    return MultiscaleDiscriminator(conditioning_channels(m.conditioning, m.n_classes, m.use_edges) + 1,
                                   d.ndf, d.n_layers, d.num_D, d.norm)


def _check_item(item, name: str) -> None:
    """The dataset contract: a dict of tensors with these dtypes and ranks."""
    if not isinstance(item, dict):
        raise TypeError(f"{name}: items must be dicts of tensors, got {type(item).__name__}")
    for key, (dtype, ndim) in _KEYS.items():
        v = item.get(key)
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"{name}: item key {key!r} must be a torch tensor, got {type(v).__name__}")
        if v.dtype != dtype or v.ndim != ndim:
            raise ValueError(f"{name}: item {key!r} must be {dtype} with {ndim} dims, got {v.dtype} {tuple(v.shape)}")
    h, w = item["ct"].shape[-2:]
    for key in ("um", "edges", "ct"):
        if item[key].shape != (1, h, w):
            raise ValueError(f"{name}: item {key!r} has shape {tuple(item[key].shape)}, expected (1, {h}, {w})")
    if item["seg"].shape != (h, w):
        raise ValueError(f"{name}: item 'seg' has shape {tuple(item['seg'].shape)}, expected ({h}, {w})")


def _identities(ds) -> tuple[str, set]:
    """What identifies a dataset's images across datasets, and the set of them.

    Case names (folder datasets), else ``source_index`` (the position in the cohort or
    folder the images came from), else the items' ``"index"``.
    """
    names = getattr(ds, "names", None)
    if names is not None:
        return "names", set(names)
    src = getattr(ds, "source_index", None)
    if src is not None:
        return "source_index", {int(i) for i in src}
    return "index", {int(ds[i]["index"]) for i in range(len(ds))}


def _check_disjoint(labelled, unlabelled) -> None:
    """Refuse overlapping sets: the original's labelled and unlabelled index ranges overlapped."""
    kind_l, ids_l = _identities(labelled)
    kind_u, ids_u = _identities(unlabelled)
    if kind_l != kind_u:
        return  # different kinds of source: nothing comparable
    both = ids_l & ids_u
    if both:
        raise ValueError(f"labelled and unlabelled datasets share {len(both)} image(s) ({kind_l} "
                         f"{sorted(both)[:5]}); they must be disjoint")


class _ResumableSampler(DistributedSampler):
    """DistributedSampler that can start part-way through a pass (exact resume)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.start = 0

    def __iter__(self):
        return iter(list(super().__iter__())[self.start:])

    def __len__(self):
        return super().__len__() - self.start


class _Stream:
    """An endless, resumable sequence of batches from one dataset (a new shuffle each pass)."""

    def __init__(self, ds, batch_size: int, world: int, rank: int, seed: int, num_workers: int, name: str):
        per_rank = math.ceil(len(ds) / world)
        if per_rank < batch_size:
            raise ValueError(f"{name} dataset has {len(ds)} images: fewer than batch_size={batch_size} "
                             f"per process ({world} process(es))")
        self.sampler = _ResumableSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=seed)
        self.loader = DataLoader(ds, batch_size=batch_size, sampler=self.sampler, drop_last=True,
                                 num_workers=num_workers, generator=torch.Generator().manual_seed(seed))
        self.batches_per_pass = per_rank // batch_size
        self.batch_size = batch_size
        self.passes, self.pos = 0, 0
        self._it = None

    def state(self) -> dict:
        return {"passes": self.passes, "pos": self.pos}

    def load(self, st: dict) -> None:
        self.passes, self.pos, self._it = int(st["passes"]), int(st["pos"]), None

    def next(self) -> dict:
        if self.pos >= self.batches_per_pass:
            self.passes, self.pos, self._it = self.passes + 1, 0, None
        if self._it is None:
            self.sampler.set_epoch(self.passes)
            if hasattr(self.loader.dataset, "set_epoch"):  # new augmentations each pass
                self.loader.dataset.set_epoch(self.passes)
            self.sampler.start = self.pos * self.batch_size
            self._it = iter(self.loader)
        self.pos += 1
        return next(self._it)


def _dist_setup(device_name: str):
    """(world, rank, device, owns_group): from torchrun's environment when WORLD_SIZE > 1."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_name, "train.device")
    if world <= 1:
        return 1, 0, device, False
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    owns = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        owns = True
    return dist.get_world_size(), dist.get_rank(), device, owns


def _clear_run(out: Path) -> None:
    """Remove what an earlier run left in ``out`` (checkpoints, grids, history): a new run starts."""
    for pattern in ("checkpoints/*.pt", "samples/step_*.png", "history.csv", "index.html"):
        for p in out.glob(pattern):
            p.unlink(missing_ok=True)


def _write_yaml(path: Path, data: dict) -> None:
    import yaml

    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))


def _to_uint8(x: torch.Tensor, lo: float, hi: float) -> np.ndarray:
    return (((x.float().clamp(lo, hi) - lo) / (hi - lo)) * 255).round().byte().cpu().numpy()


# ----------------------------------------------------------------------------- the result


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes
    ----------
    generator : MultiTaskGenerator
        The trained generator, on the run's device, in training mode.
    discriminator : MultiscaleDiscriminator or None
        The trained discriminator (None when ``loss.gan`` is "none").
    history : list of dict
        One dict per iteration: ``step``, ``epoch``, ``lr`` and the loss values.
    steps : int
        Iterations done in all (this run and any it resumed).
    steps_run : int
        Iterations done by this call.
    epochs_done : int
    checkpoint : pathlib.Path or None
        The last checkpoint written.
    out_dir : pathlib.Path
    seconds : float
        Wall time of this call's iterations.
    unlabelled_excluded : int
        Unlabelled images left out (mask conditioning).
    world_size : int
        Processes of the run (DDP).
    device : str
        The device of this process.
    ema : MultiTaskGenerator or None
        The moving average of the generator (``train.ema``), in eval mode.
    resumed : bool
        Whether this call continued from a checkpoint.
    """

    generator: MultiTaskGenerator
    discriminator: MultiscaleDiscriminator | None
    history: list
    steps: int
    steps_run: int
    epochs_done: int
    checkpoint: Path | None
    out_dir: Path
    seconds: float
    unlabelled_excluded: int
    world_size: int
    device: str
    ema: MultiTaskGenerator | None = None
    resumed: bool = False

    def __getitem__(self, key: str):
        """``result["steps"]``: the dict-style access of earlier versions, which returned a dict."""
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)


# ----------------------------------------------------------------------------- the run


class _Run:
    """Everything one training run holds; ``train`` below is its only user."""

    def __init__(self, cfg: Config, labelled, unlabelled, out_dir: Path, progress: bool, validation=None):
        self.cfg, self.out = cfg, out_dir
        t = cfg.train
        self.world, self.rank, self.device, self.owns_group = _dist_setup(t.device)
        self.main = self.rank == 0
        self.progress = progress and self.main
        self.use_unlabelled = (cfg.model.conditioning == "um" and unlabelled is not None and len(unlabelled) > 0)
        self.excluded = 0 if unlabelled is None or self.use_unlabelled else len(unlabelled)
        self.amp = None
        if self.device.type == "cuda" and t.amp != "none":
            self.amp = torch.bfloat16 if t.amp == "bf16" else torch.float16
        cl = self.device.type == "cuda" if t.channels_last is None else t.channels_last
        self.memory_format = torch.channels_last if cl else torch.contiguous_format
        torch.manual_seed(t.seed)  # the same initial weights on every process
        self.G = build_generator(cfg).to(self.device, memory_format=self.memory_format)
        self.gan = cfg.loss.gan != "none"
        self.D = build_discriminator(cfg).to(self.device, memory_format=self.memory_format) if self.gan else None
        o = cfg.optim
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=o.lr, betas=(o.beta1, o.beta2))
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=o.lr, betas=(o.beta1, o.beta2)) if self.gan else None
        fp16 = self.amp == torch.float16
        self.scaler_G = torch.amp.GradScaler("cuda", enabled=fp16)
        self.scaler_D = torch.amp.GradScaler("cuda", enabled=fp16)
        self.perceptual = None
        if cfg.loss.perceptual_weights and cfg.loss.lambda_perceptual > 0:
            self.perceptual = PerceptualLoss(cfg.loss.perceptual_weights).to(self.device)
        self.snapshot: MultiTaskGenerator | None = None
        self.G_run, self.D_run, self.D_frozen = self._wrap()
        self.lab = _Stream(labelled, cfg.data.batch_size, self.world, self.rank, t.seed, cfg.data.num_workers,
                           "labelled")
        self.unl = (_Stream(unlabelled, cfg.data.batch_size, self.world, self.rank, t.seed + 1,
                            cfg.data.num_workers, "unlabelled") if self.use_unlabelled else None)
        self.steps_per_epoch = t.steps_per_epoch or max(self.lab.batches_per_pass,
                                                        self.unl.batches_per_pass if self.unl else 0)
        self.epochs = o.niter + o.niter_decay
        self.epoch, self.step_in_epoch, self.step = 0, 0, 0
        self.history: list[dict] = []
        self.ema = None
        if t.ema > 0:
            self.ema = copy.deepcopy(self.G).requires_grad_(False).eval()
        # the grid's images: the validation set when there is one (and it can condition the model)
        usable = validation is not None and len(validation) > 0 and (
            cfg.model.conditioning == "um" or all(bool(validation[i]["has_label"])
                                                 for i in range(min(cfg.data.validation_n, len(validation)))))
        grid_src = validation if usable else labelled
        n = min(cfg.data.validation_n, len(grid_src))
        self.fixed = torch.utils.data.default_collate([grid_src[i] for i in range(n)])
        self.fixed_are = "validation" if usable else "training"
        self.digests = {"config": config_digest(cfg),
                        "data": data_digest(labelled, unlabelled if self.use_unlabelled else None)}
        self.writer = None
        self._saved_at = -1
        self.resumed = False

    def _wrap(self):
        G_run, D_run, D_frozen = self.G, self.D, self.D
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            lo = self.cfg.loss
            ct_used = self.gan or lo.lambda_l1 > 0 or self.perceptual is not None
            seg_used = lo.lambda_seg > 0 and (lo.lambda_pseudo > 0 or not self.use_unlabelled)
            G_run = DDP(self.G, device_ids=ids, find_unused_parameters=not (ct_used and seg_used))
            D_run = DDP(self.D, device_ids=ids) if self.gan else None
        if self.cfg.train.compile:
            G_run = torch.compile(G_run)
            D_run = torch.compile(D_run) if self.gan else None
            D_frozen = torch.compile(self.D) if self.gan else None
        return G_run, D_run, D_frozen

    # ------------------------------------------------------------------ state

    def state(self) -> dict:
        return {
            "format": 2,
            "config": config_to_dict(self.cfg),
            "digests": dict(self.digests),
            "generator": self.G.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else {},
            "discriminator": self.D.state_dict() if self.gan else {},
            "snapshot": self.snapshot.state_dict() if self.snapshot is not None else {},
            "opt_G": self.opt_G.state_dict(),
            "opt_D": self.opt_D.state_dict() if self.gan else {},
            "scaler_G": self.scaler_G.state_dict(),
            "scaler_D": self.scaler_D.state_dict(),
            "epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "step": self.step,
            "streams": {"labelled": self.lab.state(), "unlabelled": self.unl.state() if self.unl else {}},
            "rng": rng_state(),
            "history": self.history,
            "world_size": self.world,
        }

    def mismatch(self, st: dict) -> str | None:
        """Why this run must not resume from checkpoint ``st`` (None: it may)."""
        digests = st.get("digests") or {}
        if not digests:
            return "the checkpoint carries no configuration and data digests (written by an older umsynth)"
        if digests.get("config") != self.digests["config"]:
            try:
                changed = config_differences(config_from_dict(st["config"]), self.cfg)
            except (ValueError, TypeError):
                changed = []
            what = f": {'; '.join(changed[:6])}" if changed else ""
            return f"the checkpoint was trained with another configuration{what}"
        if digests.get("data") != self.digests["data"]:
            return "the checkpoint was trained on other data (the training data digest differs)"
        return None

    def load(self, st: dict) -> None:
        reason = self.mismatch(st)
        if reason:
            raise ValueError(f"cannot resume: {reason}; start a new run (another folder, or without resume)")
        if int(st.get("world_size", 1)) != self.world:
            raise ValueError(f"the checkpoint was written by {st.get('world_size')} process(es), this run has "
                             f"{self.world}: the data order could not continue exactly")
        self.G.load_state_dict(st["generator"])
        self.opt_G.load_state_dict(st["opt_G"])
        self.scaler_G.load_state_dict(st["scaler_G"])
        if self.gan:
            self.D.load_state_dict(st["discriminator"])
            self.opt_D.load_state_dict(st["opt_D"])
            self.scaler_D.load_state_dict(st["scaler_D"])
        if st["snapshot"]:
            self._refresh_snapshot()
            self.snapshot.load_state_dict(st["snapshot"])
        if self.ema is not None:
            self.ema.load_state_dict(st["ema"])
        self.epoch, self.step_in_epoch, self.step = int(st["epoch"]), int(st["step_in_epoch"]), int(st["step"])
        if self.step_in_epoch >= self.steps_per_epoch:  # written by an older umsynth: not yet rolled over
            self.step_in_epoch -= 1
            self._next_position()
        self.lab.load(st["streams"]["labelled"])
        if self.unl is not None and st["streams"]["unlabelled"]:
            self.unl.load(st["streams"]["unlabelled"])
        self.history = list(st["history"])
        set_rng_state(st["rng"])

    def _next_position(self) -> None:
        """Count one more step of the epoch; the step that ends it moves on to the next epoch."""
        self.step_in_epoch += 1
        if self.step_in_epoch >= self.steps_per_epoch:
            self.epoch, self.step_in_epoch = self.epoch + 1, 0

    def init_from(self, st: dict) -> None:
        """Fine-tuning: the networks' weights from ``st``; optimisers, counters and data order start anew."""
        saved = config_from_dict(st["config"])
        if config_to_dict(saved.model) != config_to_dict(self.cfg.model):
            raise ValueError("the checkpoint's model section differs from this config's: its weights do not fit")
        self.G.load_state_dict(st["generator"])
        if self.gan and st.get("discriminator"):
            self.D.load_state_dict(st["discriminator"])
        if self.ema is not None:
            self.ema.load_state_dict(st.get("ema") or st["generator"])

    def save(self) -> Path | None:
        """Write last.pt (and a kept step_*.pt on ``checkpoint.keep_every`` steps), history.csv."""
        if not self.main:
            return None
        folder = self.out / "checkpoints"
        last = folder / CHECKPOINT_NAME
        if self._saved_at == self.step and last.exists():
            return last
        c = self.cfg.checkpoint
        keep = [folder / step_name(self.step)] if c.keep_every and self.step and self.step % c.keep_every == 0 else []
        save_checkpoint(self.state(), last, *keep)
        if c.keep_last is not None:
            for old in kept_checkpoints(self.out)[:-c.keep_last]:
                old.unlink(missing_ok=True)
        write_history_csv(self.out / HISTORY_NAME, self.history)
        self._saved_at = self.step
        return last

    # ------------------------------------------------------------------ one phase

    def _refresh_snapshot(self) -> None:
        if self.snapshot is None:
            self.snapshot = copy.deepcopy(self.G).requires_grad_(False)
        else:
            self.snapshot.load_state_dict(self.G.state_dict())
        self.snapshot.eval()

    @torch.no_grad()
    def _update_ema(self) -> None:
        decay = self.cfg.train.ema
        for avg, cur in zip(self.ema.parameters(), self.G.parameters()):
            avg.lerp_(cur.detach(), 1.0 - decay)
        for avg, cur in zip(self.ema.buffers(), self.G.buffers()):
            avg.copy_(cur)

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None)

    def _prepare(self, batch: dict):
        m = self.cfg.model
        cond = conditioning_input(batch, m.conditioning, m.n_classes, m.use_edges)
        # the networks' dtype: float32, or float64 when built under torch.set_default_dtype(float64)
        dtype = next(self.G.parameters()).dtype
        cond = cond.to(self.device, dtype, non_blocking=True).contiguous(memory_format=self.memory_format)
        real = batch["ct"].to(self.device, dtype, non_blocking=True).contiguous(memory_format=self.memory_format)
        return cond, real

    def _phase(self, batch: dict, labelled: bool) -> dict:
        """One generator and one discriminator update on ``batch``; returns the loss values."""
        lo = self.cfg.loss
        cond, real = self._prepare(batch)
        out: dict[str, float] = {}
        if labelled:
            if not bool(batch["has_label"].all()):
                raise ValueError("the labelled dataset yielded an item with has_label=False")
            target, weight, tag = batch["seg"].to(self.device), lo.lambda_seg, "seg"
        else:
            with torch.no_grad(), self._autocast():
                target = self.snapshot(cond)[1].argmax(1)
            weight, tag = lo.lambda_pseudo, "pseudo"
        with self._autocast():
            fake, logits = self.G_run(cond)

        # pix2pixHD's order: both losses see the same discriminator (three passes: synthetic
        # detached, real, synthetic); D's gradients are computed first, its step comes last
        terms: dict[str, torch.Tensor] = {}
        valid = None
        if self.gan:
            self.D.requires_grad_(True)
            with self._autocast():
                scores = self.D_run(torch.cat([torch.cat([cond, fake.detach()], 1), torch.cat([cond, real], 1)]))
            s_pool = [[f.chunk(2)[0] for f in s] for s in scores]
            s_real = [[f.chunk(2)[1].detach() for f in s] for s in scores]
            loss_D = 0.5 * (gan_loss(s_pool, False, lo.gan) + gan_loss([[f.chunk(2)[1] for f in s] for s in scores],
                                                                        True, lo.gan)).mean()
            self.opt_D.zero_grad(set_to_none=True)
            self.scaler_D.scale(loss_D).backward()
            out["D"] = loss_D.item()
            self.D.requires_grad_(False)  # the generator's pass must not touch D's gradients
            with self._autocast():
                s_fake = self.D_frozen(torch.cat([cond, fake], 1))
            if lo.lambda_gan > 0:
                terms["G_gan"] = lo.lambda_gan * gan_loss(s_fake, True, lo.gan, for_discriminator=False)
            if lo.lambda_feat > 0:
                terms["G_feat"] = lo.lambda_feat * feature_matching_loss(s_fake, s_real, self.D.n_layers)
            if not labelled:
                valid = confidence_mask(s_fake, tuple(real.shape[-2:]), lo.confidence_threshold)
        if lo.lambda_l1 > 0:
            terms["G_l1"] = lo.lambda_l1 * l1_loss(fake, real)
        if self.perceptual is not None:
            terms["G_perc"] = lo.lambda_perceptual * self.perceptual(fake, real)
        if weight > 0 and (lo.dice or lo.ce):
            terms[f"G_{tag}"] = weight * segmentation_loss(logits, target, valid, lo.dice, lo.ce, lo.dice_smooth)
        if not terms:
            raise ValueError("every generator loss term is switched off")
        loss_G = sum(terms.values()).mean()
        self.opt_G.zero_grad(set_to_none=True)
        self.scaler_G.scale(loss_G).backward()
        self.scaler_G.step(self.opt_G)
        self.scaler_G.update()
        if self.gan:
            self.D.requires_grad_(True)
            self.scaler_D.step(self.opt_D)
            self.scaler_D.update()
        sfx = "" if labelled else "_u"
        out.update({k + sfx: v.mean().item() for k, v in terms.items()})
        out["G" + sfx] = loss_G.item()
        if valid is not None:
            out["valid_fraction"] = valid.float().mean().item()
        if "D" in out and not labelled:
            out["D_u"] = out.pop("D")
        return out

    # ------------------------------------------------------------------ logging

    def _samples(self) -> None:
        """Write the fixed images' grid (UM | real | synthetic | real seg | synthetic seg) and index.html.

        The EMA generator draws it when there is one (it is what synthesis uses).
        """
        net = self.ema if self.ema is not None else self.G
        was = net.training
        net.eval()
        with torch.no_grad(), self._autocast():
            cond, real = self._prepare(self.fixed)
            fake, logits = net(cond)
        net.train(was)
        k = self.cfg.model.n_classes - 1
        first = self.fixed["um"][:, 0] if self.cfg.model.conditioning == "um" else self.fixed["seg"].float() / k * 2 - 1
        cols = [first, real[:, 0].cpu(), fake[:, 0].float().cpu(),
                self.fixed["seg"].float() / k * 2 - 1, logits.argmax(1).float().cpu() / k * 2 - 1]
        rows = [np.concatenate([_to_uint8(c[i], -1.0, 1.0) for c in cols], axis=1) for i in range(len(first))]
        grid = np.concatenate(rows, axis=0)
        d = self.out / "samples"
        d.mkdir(parents=True, exist_ok=True)
        write_png(d / f"step_{self.step:07d}.png", grid)
        if self.writer is not None:
            self.writer.add_image("samples/um_real_fake_seg_fakeseg", grid, self.step, dataformats="HW")
        self._index()

    def _index(self) -> None:
        samples = sorted((int(p.stem[5:]), f"samples/{p.name}") for p in (self.out / "samples").glob("step_*.png")
                         if p.stem[5:].isdigit())
        ckpts = [f"checkpoints/{p.name}" for p in kept_checkpoints(self.out)]
        if (self.out / "checkpoints" / CHECKPOINT_NAME).exists():
            ckpts.append(f"checkpoints/{CHECKPOINT_NAME}")
        first = "UM" if self.cfg.model.conditioning == "um" else "mask"
        caption = (f"{len(self.fixed['ct'])} {self.fixed_are} images, one per row; columns: {first} | real CT | "
                   f"synthetic CT{' (EMA generator)' if self.ema is not None else ''} | real segmentation | "
                   "synthetic segmentation")
        write_index_html(self.out, samples, ckpts, title=f"umsynth training run {self.out.name}", caption=caption,
                         last=self.history[-1] if self.history else None)

    def _open_writer(self) -> None:
        if not (self.main and self.cfg.train.tensorboard):
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional: say so once, history.csv has the losses
            print(f"umsynth train: tensorboard is not installed: losses are in {self.out / HISTORY_NAME} only "
                  '(pip install "umsynth[logging]" for TensorBoard)', file=sys.stderr)
            return
        self.writer = SummaryWriter(str(self.out / "tensorboard"), purge_step=self.step)

    # ------------------------------------------------------------------ loop

    def run(self) -> "TrainResult":
        t, o = self.cfg.train, self.cfg.optim
        total = self.epochs * self.steps_per_epoch
        if t.max_steps is not None:
            total = min(total, t.max_steps)
        self._open_writer()
        bar = progress(total=total, initial=min(self.step, total), desc="train", unit="it",
                       disable=not self.progress)
        t0, start_step = time.perf_counter(), self.step
        entered = None  # the epoch whose learning rate and snapshot are set up
        # A position is always stored rolled over (the step that ends an epoch leaves epoch + 1,
        # step_in_epoch 0), and nothing happens between the last step and the final save: a
        # run resumed from any checkpoint, the last one included, ends with the same state.
        while self.epoch < self.epochs and self.step < total:
            if entered != self.epoch:
                lr = pix2pixhd_lr(self.epoch, o.lr, o.niter, o.niter_decay)
                for opt in (self.opt_G, self.opt_D):
                    for group in (opt.param_groups if opt is not None else ()):
                        group["lr"] = lr
                semi = self.unl is not None and self.epoch >= t.unlabelled_start_epoch
                if semi and self.step_in_epoch == 0 and (
                        self.snapshot is None or (self.epoch - t.unlabelled_start_epoch) % t.pseudo_refresh_epochs == 0):
                    self._refresh_snapshot()
                entered = self.epoch
            losses = self._phase(self.lab.next(), labelled=True)
            if semi:
                losses.update(self._phase(self.unl.next(), labelled=False))
            if self.ema is not None:  # once per iteration, after both phases
                self._update_ema()
            self.step += 1
            for k, v in losses.items():
                if not math.isfinite(v):
                    raise FloatingPointError(f"loss {k} is {v} at step {self.step}; "
                                             "lower optim.lr or check the data")
            self.history.append({"step": self.step, "epoch": self.epoch, "lr": lr, **losses})
            self._next_position()
            bar.update(1)
            self._log(losses, bar)
            keep = self.cfg.checkpoint.keep_every
            if (t.checkpoint_every and self.step % t.checkpoint_every == 0) or (keep and self.step % keep == 0):
                self.save()
        bar.close()
        elapsed = time.perf_counter() - t0
        path = self.save()
        if self.main:
            self._samples()  # the last grid and index.html, also with sample_every 0
        if self.writer is not None:
            self.writer.close()
        return TrainResult(generator=self.G, discriminator=self.D, history=self.history, steps=self.step,
                           steps_run=self.step - start_step, epochs_done=self.epoch,
                           checkpoint=Path(path) if path else None, out_dir=self.out, seconds=elapsed,
                           unlabelled_excluded=self.excluded, world_size=self.world, device=str(self.device),
                           ema=self.ema, resumed=self.resumed)

    def _log(self, losses: dict, bar) -> None:
        t = self.cfg.train
        if not self.main:
            return
        if self.step % t.log_every == 0 or self.step == 1:
            bar.set_postfix({k: f"{v:.3g}" for k, v in losses.items()}, refresh=False)
            if self.writer is not None:
                for k, v in losses.items():
                    self.writer.add_scalar(f"loss/{k}", v, self.step)
        if t.sample_every and self.step % t.sample_every == 0:
            self._samples()


def train(config: Config, labelled: Dataset, unlabelled: Dataset | None = None,
          out_dir: str | os.PathLike = "runs/umsynth", *, resume: bool | str | os.PathLike = False,
          progress: bool | None = None, validation: Dataset | None = None,
          init_from: str | os.PathLike | None = None) -> TrainResult:
    """Train the multi-task generator semi-supervised (method.md §4).

    Parameters
    ----------
    config : Config
        The run's configuration (:func:`umsynth.train.load_config`).
    labelled : Dataset
        Items as :class:`umsynth.data.datasets.MontageDataset` yields them, all with a
        manual segmentation.
    unlabelled : Dataset or None
        Images without segmentations; must not share an ``"index"`` with ``labelled``
        (when both come from the same source). Ignored (excluded) in "mask" mode.
    out_dir : path-like
        Receives ``config.yaml`` (the resolved config), ``versions.yaml``,
        ``checkpoints/last.pt`` (and ``step_NNNNNNN.pt`` every ``checkpoint.keep_every``
        steps, the newest ``checkpoint.keep_last`` of them), ``history.csv`` (step, epoch,
        lr and every loss), ``samples/step_NNNNNNN.png`` (a grid of the validation images
        every ``train.sample_every`` steps and at the end), ``index.html`` (links to all of
        them) and, when TensorBoard is installed and ``train.tensorboard`` is on,
        ``tensorboard/``. A run that does not resume first removes the checkpoints, grids
        and history of an earlier run in this folder.
    resume : bool, "auto" or path-like
        Continue exactly where a checkpoint stopped. True: from ``out_dir/checkpoints/last.pt``;
        a path or a checkpoint name of this run ("step_0005000", "5000"): from that one.
        "auto": from last.pt when it exists and fits this run, else start anew (saying why).
        A checkpoint fits when its configuration digest (every field but
        :data:`~umsynth.train.config.RUN_CONTROL_FIELDS`) and training data digest equal this
        run's; otherwise True or a path raise ValueError. A run killed at any moment and
        resumed (from last.pt) ends bit for bit as the uninterrupted run when both run on the
        same device and build with the same ``torch.get_num_threads()``: CPU convolutions add
        up in an order that depends on torch's thread count (the C++ kernels' threads,
        ``UMSYNTH_NUM_THREADS``, do not change any value).
    progress : bool or None
        Show the progress bar (None: ``config.train.progress``).
    validation : Dataset, optional
        Images for the sample grids (the first ``data.validation_n``), never trained on.
        None: the first labelled training images.
    init_from : path-like or str, optional
        Fine-tuning: start from this checkpoint's weights (a file, a run folder, or a name in
        ``out_dir``) with new optimisers at step 0. The model section must match. Ignored when
        the run resumes.

    Returns
    -------
    TrainResult
        The trained networks, the loss history, the checkpoint path and a few counts.
    """
    cfg = validate(copy.deepcopy(config))
    if labelled is None or len(labelled) == 0:
        raise ValueError("labelled dataset is empty: at least one labelled montage is needed")
    _check_item(labelled[0], "labelled")
    if unlabelled is not None and len(unlabelled):
        _check_item(unlabelled[0], "unlabelled")
        if tuple(unlabelled[0]["ct"].shape) != tuple(labelled[0]["ct"].shape):
            raise ValueError(f"labelled and unlabelled images differ in size: {tuple(labelled[0]['ct'].shape)} "
                             f"vs {tuple(unlabelled[0]['ct'].shape)}")
        _check_disjoint(labelled, unlabelled)
    out = Path(out_dir)
    auto = isinstance(resume, str) and resume == "auto"
    if init_from is not None and resume and not auto:
        raise ValueError("give resume or init_from (fine-tuning), not both")
    run = _Run(cfg, labelled, unlabelled, out, cfg.train.progress if progress is None else bool(progress),
               validation)
    try:
        state = None
        if auto:
            last = out / "checkpoints" / CHECKPOINT_NAME
            if last.is_file():
                state = load_checkpoint(last, map_location=run.device)
                reason = run.mismatch(state)
                if reason:
                    state = None
                    if run.main:
                        print(f"umsynth train: not resuming from {last}: {reason}; starting anew", file=sys.stderr)
        elif resume:
            path = out / "checkpoints" / CHECKPOINT_NAME if resume is True else find_checkpoint(resume, out)
            state = load_checkpoint(path, map_location=run.device)
        if state is not None:
            run.load(state)
            run.resumed = True
        else:
            if init_from is not None:
                run.init_from(load_checkpoint(find_checkpoint(init_from, out), map_location=run.device))
            if run.main:
                _clear_run(out)
        if run.main:
            out.mkdir(parents=True, exist_ok=True)
            _write_yaml(out / "config.yaml", config_to_dict(cfg))
            _write_yaml(out / "versions.yaml", {**environment(run.device), "world_size": run.world})
        return run.run()
    finally:
        if run.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()
