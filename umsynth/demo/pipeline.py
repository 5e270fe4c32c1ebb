"""``umsynth demo``: the SemiCS2 claim tested as a controlled experiment on embedded data, resumable.

Design (issue 19). The phantom cohort is split into three disjoint groups: training cases (a
few labelled, the rest unlabelled), a synthesis pool and a test set. Stages (each leaves
``DIR/stages/<name>.json`` when it has finished; a re-run with the same configuration skips
finished stages, a different configuration starts afresh, old checkpoints included):

1. ``cohort``: the phantom cohort, its split, the UMs, the real CT slices that pydicom ships;
2. ``controls``: the pool's real images (the perfect generator) and a degraded copy of them;
3. per training seed, ``train_v2um2i_seed<S>`` then ``train_v2m2i_seed<S>``: the UM-guided
   model, then the mask-guided baseline with as many generator and discriminator updates as
   the UM-guided model made in both its phases (the same networks and optimiser);
4. per seed, ``synthesize_seed<S>``: one image per pool case from each model, V2UM2I from the
   case's UM and V2M2I from its manual mask, upright; each image records its source case;
5. ``suite``: a CT extractor suite trained on the training images;
6. per seed, ``mmfid_seed<S>``: MM-FID, MM-STD and KID of the models and the controls
   against the test images, with intervals and the paired comparison over source cases;
7. ``utility_controls`` and per seed ``utility_seed<S>``: Dice on the test images of one
   segmenter recipe trained on the labelled real cases alone and with each set (half of each
   batch synthetic), over several segmenter seeds; label fidelity of every set;
8. ``verdict`` and ``report``: the verdict on each claim, figures, ``metrics.json`` and
   ``report.html``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from umsynth import unsupervised_mask
from umsynth.data.datasets import Augment, MontageDataset
from umsynth.data.io import read_label_png, read_png_array
from umsynth.data.montage import tile_2x2
from umsynth.data.phantom import phantom_cohort
from umsynth.data.samples import real_ct_slices
from umsynth.data.window import window_hu
from umsynth.demo.evaluate import CONTROLS, MODELS, degrade, judge, mmfid_sets, utility_sets, verdict_of
from umsynth.demo.report import (colour_seg, interval_chart, loss_curves, sample_grid, write_json,
                                 write_report)
from umsynth.demo.utility import SegmenterConfig, label_fidelity
from umsynth.extractors.suite import save_suite
from umsynth.extractors.train import SuiteTrainConfig, train_suite
from umsynth.files import atomic_write, path_inside, write_png
from umsynth.runtime import environment, resolve_device
from umsynth.synth import synthesize
from umsynth.train import Config, DiscriminatorConfig, GeneratorConfig, train

__all__ = ["DemoConfig", "run_demo", "STAGES", "METRIC_FIELDS"]

# top-level keys of metrics.json (the test checks every one is there)
METRIC_FIELDS = ("created", "config", "quick", "environment", "cohort", "design", "training", "synthesis",
                 "mmfid", "controls", "utility", "verdict", "warnings", "stage_times", "stage_cpu_seconds",
                 "figures", "started")


def _demo_generator() -> GeneratorConfig:
    return GeneratorConfig(ngf=16, n_downsample=3, n_blocks=3)


def _demo_discriminator() -> DiscriminatorConfig:
    return DiscriminatorConfig(ndf=16, n_layers=3, num_D=2)


@dataclass
class DemoConfig:
    """What the demo runs. Defaults are sized for about 15 minutes on 2 idle CPU cores.

    Attributes
    ----------
    size : int
        Side of the montages (2x2 phantom slices), a multiple of 16.
    steps : int
        Iterations of the UM-guided model (each runs a labelled phase and, after the first
        epoch, an unlabelled phase). The mask-guided model gets as many iterations as the
        UM-guided one made generator updates, so both make the same number of generator
        and of discriminator updates.
    n_cases : int
        Phantom cases in all: training cases, then ``n_pool`` pool cases, then ``n_test``.
    n_pool : int
        Synthesis pool: both models make one image from each pool case.
    n_test : int
        Held-out real test images (MM-FID's real set and the segmenters' test set).
    labelled_fraction : float
        Fraction of training cases that keep their manual labels.
    seeds : int
        Training seeds (``seed``, ``seed + 1``, ...); each trains both models. With two or
        more, the verdict's intervals come from the seeds.
    generator : umsynth.train.GeneratorConfig
        The generator of both models (default: ngf 16, 3 downsamplings, 3 blocks).
    discriminator : umsynth.train.DiscriminatorConfig
        The discriminator of both models (default: ndf 16, 3 layers, 2 scales). Its
        ``n_layers`` is capped at 2 for montages of 64 px or less, whose second scale has
        only 32 px.
    suite_steps : int
        Optimiser steps per extractor task.
    scales : tuple of int or None
        MM-FID scales; None: size/8, size/4, size/2, size.
    utility_steps : int
        Optimiser steps of each utility segmenter (the same in every arm). The lesion
        class (~0.5 % of pixels) is learnt last: at 120 steps some segmenter seeds still
        missed it, 150 found it in every seed of the real-only arm (results-utility19.md).
    utility_batch : int
        Batch size of every utility segmenter; a mixed arm's batches are half synthetic.
    segmenter_seeds : int
        Segmenter seeds per utility arm (>= 3 for an interval over seeds).
    device : str
        "cpu" or "cuda" (see :func:`umsynth.runtime.resolve_device`).
    seed : int
        Seed of the cohort and the first training seed.
    smoke : bool
        Set by :meth:`quick`: the report is titled as a smoke test.

    Raises
    ------
    ValueError
        Naming the field, for a value out of range (checked on construction).
    """

    size: int = 128
    steps: int = 300
    n_cases: int = 84
    n_pool: int = 24
    n_test: int = 24
    labelled_fraction: float = 0.15
    seeds: int = 1
    generator: GeneratorConfig = field(default_factory=_demo_generator)
    discriminator: DiscriminatorConfig = field(default_factory=_demo_discriminator)
    suite_steps: int = 300
    scales: tuple | None = None
    utility_steps: int = 150
    utility_batch: int = 6
    segmenter_seeds: int = 3
    device: str = "cpu"
    seed: int = 0
    smoke: bool = False

    def __post_init__(self) -> None:
        if self.size < 64 or self.size % 16:
            raise ValueError(f"size must be a multiple of 16 and >= 64 (the phantom's smallest montage), "
                             f"got {self.size}")
        for name in ("steps", "suite_steps", "utility_steps", "seeds"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.utility_batch < 2:
            raise ValueError(f"utility_batch must be >= 2 (half real, half synthetic), got {self.utility_batch}")
        if self.segmenter_seeds < 1:
            raise ValueError(f"segmenter_seeds must be >= 1, got {self.segmenter_seeds}")
        # MM-FID's k-NN sets (k = 5, the image itself counted) need more than 5 real images
        # on each side: the test images and the training images they are measured against
        if self.n_test < 6:
            raise ValueError(f"n_test must be >= 6 (MM-FID's reference and k-NN sets), got {self.n_test}")
        if self.n_pool < 4:
            raise ValueError(f"n_pool must be >= 4 (the paired comparison resamples pool cases), got {self.n_pool}")
        if self.n_cases - self.n_test - self.n_pool < 6:
            raise ValueError(f"n_cases must leave at least 6 training cases after n_pool={self.n_pool} and "
                             f"n_test={self.n_test}, got {self.n_cases}")
        if not 0 < self.labelled_fraction < 1:
            raise ValueError(f"labelled_fraction must be in (0, 1), got {self.labelled_fraction}")
        if not isinstance(self.generator, GeneratorConfig):
            raise TypeError(f"generator must be a GeneratorConfig, got {type(self.generator).__name__}")
        if not isinstance(self.discriminator, DiscriminatorConfig):
            raise TypeError(f"discriminator must be a DiscriminatorConfig, got {type(self.discriminator).__name__}")

    @classmethod
    def quick(cls, **overrides) -> "DemoConfig":
        """A smoke-test configuration that finishes in a few minutes (for tests)."""
        base = dict(size=64, steps=16, n_cases=20, n_pool=6, n_test=6, labelled_fraction=0.25,
                    generator=GeneratorConfig(ngf=8, n_downsample=2, n_blocks=1),
                    discriminator=DiscriminatorConfig(ndf=8, n_layers=3, num_D=2), suite_steps=12,
                    utility_steps=10, utility_batch=4, smoke=True)
        base.update(overrides)
        return cls(**base)

    def check(self) -> "DemoConfig":
        """Check the fields again (after changing them in place); returns self."""
        self.__post_init__()
        return self

    def mm_scales(self) -> tuple:
        if self.scales:
            return tuple(int(s) for s in self.scales)
        return tuple(sorted({max(16, self.size // d) for d in (8, 4, 2, 1)}))

    def training_seeds(self) -> list[int]:
        return [self.seed + k for k in range(self.seeds)]

    def stages(self) -> tuple:
        """Every stage name of this configuration, in running order."""
        per_seed = [f"{stage}_seed{s}" for s in self.training_seeds()
                     for stage in ("train_v2um2i", "train_v2m2i", "synthesize")]
        return (("cohort", "controls") + tuple(per_seed) + ("suite",)
                + tuple(f"mmfid_seed{s}" for s in self.training_seeds()) + ("utility_controls",)
                + tuple(f"utility_seed{s}" for s in self.training_seeds()) + ("verdict", "report"))


#: the stages of the default configuration
STAGES = DemoConfig().stages()


# ----------------------------------------------------------------------------- stage runner


class _Stages:
    """Runs stages once: a finished stage's JSON result is read back instead of re-running it."""

    def __init__(self, out: Path, cfg: DemoConfig, progress: bool) -> None:
        self.dir = out / "stages"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.progress = progress
        key = json.dumps(dataclasses.asdict(cfg), sort_keys=True, default=list)
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        stamp = self.dir / "config.json"
        if stamp.exists() and json.loads(stamp.read_text()).get("digest") != digest:
            self._say("configuration changed: running every stage again")
            for f in self.dir.glob("*.json"):
                f.unlink()
            # the old runs' checkpoints belong to the old configuration: never resume from them
            shutil.rmtree(out / "runs", ignore_errors=True)
        write_json(stamp, {"digest": digest, "config": dataclasses.asdict(cfg)})
        self.times: dict[str, float] = {}
        self.cpu: dict[str, float | None] = {}

    def _say(self, msg: str) -> None:
        if self.progress:
            print(f"umsynth demo: {msg}", file=sys.stderr, flush=True)

    def run(self, name: str, fn):
        marker = self.dir / f"{name}.json"
        if marker.exists():
            done = json.loads(marker.read_text())
            self.times[name] = done["seconds"]
            self.cpu[name] = done.get("cpu_seconds")
            self._say(f"{name}: done before, skipped")
            return done["result"]
        self._say(f"{name} ...")
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        seconds = time.perf_counter() - t0
        self.times[name] = seconds
        # CPU seconds of all threads: on a shared machine, wall time says little about the cost
        self.cpu[name] = time.process_time() - c0
        write_json(marker, {"seconds": seconds, "cpu_seconds": self.cpu[name], "result": result})
        self._say(f"{name}: {seconds:.1f} s")
        return result


# ----------------------------------------------------------------------------- data


def _save_arrays(path: Path, **arrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: np.savez_compressed(tmp, **arrays), suffix=".npz")


def _load_arrays(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _real_ct_montage(size: int) -> tuple[np.ndarray | None, list[str]]:
    """The pydicom sample slices, windowed and tiled 2x2 like a montage (None if none read)."""
    from PIL import Image

    slices = real_ct_slices().slices
    names = list(slices)
    if not names:
        return None, []
    half = size // 2
    tiles = [np.asarray(Image.fromarray(window_hu(slices[n])).resize((half, half), Image.BILINEAR))
             for n in names]
    while len(tiles) < 4:  # fewer than 4 sample slices: repeat them, mirrored
        tiles.append(tiles[len(tiles) % len(names)][:, ::-1])
    return tile_2x2(np.stack(tiles[:4])), names


def _stage_cohort(cfg: DemoConfig, out: Path) -> dict:

    cohort = phantom_cohort(cfg.n_cases, size=cfg.size, seed=cfg.seed, labelled_fraction=cfg.labelled_fraction)
    n_train = cfg.n_cases - cfg.n_test - cfg.n_pool
    group = np.array(["train"] * n_train + ["pool"] * cfg.n_pool + ["test"] * cfg.n_test)
    labelled = np.zeros(cfg.n_cases, bool)
    labelled[:n_train] = cohort.labelled[:n_train]
    # the few-labels setting needs labelled and unlabelled training cases both
    want = max(2, int(round(cfg.labelled_fraction * n_train)))
    extra = [i for i in range(n_train) if not labelled[i]][:max(0, want - int(labelled.sum()))]
    labelled[extra] = True
    ums = unsupervised_mask(cohort.images)
    real_montage, real_names = _real_ct_montage(cfg.size)
    arrays = dict(images=cohort.images, labels=cohort.labels, ums=ums, labelled=labelled, group=group,
                  kernel=np.array([m.kernel for m in cohort.meta]), fov=np.array([m.fov for m in cohort.meta]))
    if real_montage is not None:
        arrays["real_ct"] = real_montage
        arrays["real_ct_um"] = unsupervised_mask(real_montage)
    _save_arrays(out / "cohort" / "cohort.npz", **arrays)
    for i in range(cfg.n_cases):
        part = group[i] if group[i] != "train" else ("labelled" if labelled[i] else "unlabelled")
        d = out / "cohort" / part
        d.mkdir(parents=True, exist_ok=True)
        write_png(d / f"case{i:03d}.png", cohort.images[i])
        write_png(d / f"case{i:03d}_um.png", ums[i])
        if part != "unlabelled":
            write_png(d / f"case{i:03d}_labels.png", cohort.labels[i])
    ids = {g: np.flatnonzero(group == g).tolist() for g in ("train", "pool", "test")}
    return {"groups": {"train_labelled": [i for i in ids["train"] if labelled[i]],
                       "train_unlabelled": [i for i in ids["train"] if not labelled[i]],
                       "pool": ids["pool"], "test": ids["test"]},
            "n_train_labelled": int(labelled.sum()), "n_train_unlabelled": int(n_train - labelled.sum()),
            "n_pool": cfg.n_pool, "n_test": cfg.n_test, "size": cfg.size, "real_ct_slices": real_names,
            "kernels": {str(k): int(v) for k, v in zip(*np.unique(arrays["kernel"], return_counts=True))},
            "fovs": {str(k): int(v) for k, v in zip(*np.unique(arrays["fov"], return_counts=True))},
            "lesion_pixels_per_image": float((cohort.labels == 2).sum(axis=(1, 2)).mean())}


def _splits(data: dict):
    g = data["group"]
    tr = g == "train"
    train = SimpleNamespace(images=data["images"][tr], labels=data["labels"][tr], labelled=data["labelled"][tr],
                            ums=data["ums"][tr])
    pick = lambda name: SimpleNamespace(images=data["images"][g == name], labels=data["labels"][g == name],  # noqa: E731
                                        ums=data["ums"][g == name], ids=np.flatnonzero(g == name))
    return train, pick("pool"), pick("test")


def _stage_controls(cfg: DemoConfig, out: Path, data: dict) -> dict:
    _, pool, _ = _splits(data)
    _save_arrays(out / "synthetic" / "real.npz", ct=pool.images, seg=pool.labels, sources=pool.ids)
    _save_arrays(out / "synthetic" / "degraded.npz", ct=degrade(pool.images, cfg.seed), seg=pool.labels,
                 sources=pool.ids)
    return {"real": {"n": cfg.n_pool, "what": "the pool cases' real images (the perfect generator)"},
            "degraded": {"n": cfg.n_pool, "what": "the same images blurred (1 px) with noise (10 grey levels)"}}


# ----------------------------------------------------------------------------- models


def _train_config(cfg: DemoConfig, conditioning: str, n_labelled: int, seed: int, steps: int):

    c = Config()
    c.model.conditioning = conditioning
    c.model.generator = dataclasses.replace(cfg.generator)
    # the second discriminator scale of a 64 px montage has 32 px: two stride-2 layers at most
    c.model.discriminator = dataclasses.replace(
        cfg.discriminator, n_layers=min(cfg.discriminator.n_layers, 2) if cfg.size <= 64 else cfg.discriminator.n_layers)
    c.data.batch_size = max(1, min(4, n_labelled))
    c.train.device = cfg.device
    c.train.seed = seed
    c.train.max_steps = steps
    # a few epochs of labelled data first, then the unlabelled phase (method.md §4)
    c.train.unlabelled_start_epoch = 1
    c.train.sample_every = max(1, steps // 4)
    c.train.log_every = max(1, steps // 50)
    c.train.checkpoint_every = max(1, steps // 4)
    c.optim.niter, c.optim.niter_decay = 1000, 1000
    return c


def _updates(history: list[dict]) -> tuple[int, int]:
    """Generator and discriminator updates of a run: one of each per phase that logged them."""
    g = sum(("G" in row) + ("G_u" in row) for row in history)
    d = sum(("D" in row) + ("D_u" in row) for row in history)
    return int(g), int(d)


def _stage_train(cfg: DemoConfig, out: Path, name: str, seed: int, data: dict, budget: int | None,
                 progress: bool) -> dict:

    conditioning = MODELS[name]
    tr, _, _ = _splits(data)
    kw = dict(um_source="disk", ums=tr.ums, augment=Augment(), seed=seed)
    labelled = MontageDataset.from_cohort(tr, "labelled", **kw)
    unlabelled = MontageDataset.from_cohort(tr, "unlabelled", **kw) if conditioning == "um" else None
    steps = cfg.steps if budget is None else budget
    run_dir = out / "runs" / f"{name}_seed{seed}"
    res = train(_train_config(cfg, conditioning, len(labelled), seed, steps), labelled, unlabelled, run_dir,
                resume="auto", progress=progress)
    history: dict[str, list] = {"step": [int(row["step"]) for row in res.history]}
    keys = sorted({k for row in res.history for k, v in row.items()
                   if k not in ("step", "epoch", "lr") and isinstance(v, (int, float))})
    for k in keys:
        history[k] = [float(row[k]) if k in row else None for row in res.history]
    write_json(run_dir / "history.json", history)
    g_updates, d_updates = _updates(res.history)
    return {"iterations": int(res.steps), "generator_updates": g_updates, "discriminator_updates": d_updates,
            "seconds": float(res.seconds), "run": os.path.relpath(run_dir, out),
            "checkpoint": os.path.relpath(res.checkpoint, out), "conditioning": conditioning,
            "n_labelled": len(labelled), "n_unlabelled": 0 if unlabelled is None else len(unlabelled),
            "final_losses": {k: next((x for x in reversed(v) if x is not None), None) for k, v in history.items()
                             if k != "step"}}


def _read_outputs(written: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    ct = np.stack([read_png_array(w["ct"]) for w in written])
    seg = np.stack([read_label_png(w["seg"]) for w in written])
    return ct, seg


def _stage_synthesize(cfg: DemoConfig, out: Path, seed: int, data: dict, training: dict, progress: bool) -> dict:

    _, pool, _ = _splits(data)
    names = [f"case{i:03d}" for i in pool.ids]
    # paired design: the same pool cases, V2UM2I from their UMs, V2M2I from their manual masks
    inputs = {"v2um2i": MontageDataset(pool.images, um_source="disk", ums=pool.ums),
              "v2m2i": MontageDataset(pool.images, pool.labels)}
    result = {}
    for name, ds in inputs.items():
        ckpt = path_inside(out, training[name]["checkpoint"], f"training[{name!r}]: checkpoint")
        folder = out / "synthetic" / f"{name}_seed{seed}"
        written = synthesize(ckpt, ds, folder, device=cfg.device, names=names, progress=progress)
        ct, seg = _read_outputs(written)
        # the label a user of V2M2I's pairs would train with is the mask it was conditioned on
        label = pool.labels if name == "v2m2i" else seg
        _save_arrays(out / "synthetic" / f"{name}_seed{seed}.npz", ct=ct, seg=seg, label=label, sources=pool.ids)
        result[name] = {"n": len(written), "dir": os.path.relpath(folder, out), "sources": pool.ids.tolist()}
    if "real_ct_um" in data and seed == cfg.seed:  # the real pydicom slices' UM through the UM-guided model
        ds = MontageDataset(data["real_ct"][None], um_source="disk", ums=data["real_ct_um"][None])
        ckpt = path_inside(out, training["v2um2i"]["checkpoint"], "training['v2um2i']: checkpoint")
        written = synthesize(ckpt, ds, out / "synthetic" / "from_real_ct",
                             device=cfg.device, names=["pydicom_slices"], progress=progress)
        result["from_real_ct"] = {"n": len(written), "dir": "synthetic/from_real_ct"}
    return result


# ----------------------------------------------------------------------------- metrics


def _stage_suite(cfg: DemoConfig, out: Path, data: dict, progress: bool) -> dict:

    tr, _, _ = _splits(data)
    g = data["group"] == "train"
    tcfg = SuiteTrainConfig(channels=(8, 16, 32, 64), stem=2, size=min(64, cfg.size // 2), steps=cfg.suite_steps,
                            batch_size=16, seed=cfg.seed, scales=cfg.mm_scales())
    suite = train_suite(tr.images, tcfg, labels=tr.labels, labelled=tr.labelled,
                        meta={"kernel": list(data["kernel"][g]), "fov": list(data["fov"][g])},
                        checkpoint=out / "suite.partial.safetensors", progress=progress)
    save_suite(suite, out / "suite.safetensors")
    partial = out / "suite.partial.safetensors"
    if partial.exists():
        partial.unlink()
    return {"path": "suite.safetensors", "members": [m.name for m in suite.members],
            "scales": list(cfg.mm_scales())}


def _set_arrays(out: Path, name: str, seed: int | None) -> dict:
    return _load_arrays(out / "synthetic" / (f"{name}.npz" if seed is None else f"{name}_seed{seed}.npz"))


def _stage_mmfid(cfg: DemoConfig, out: Path, seed: int, data: dict, progress: bool) -> dict:

    tr, _, test = _splits(data)
    arrays = {name: _set_arrays(out, name, seed) for name in MODELS}
    arrays.update({name: _set_arrays(out, name, None) for name in CONTROLS})
    tsne = out / "tsne.png" if seed == cfg.seed else None
    return mmfid_sets(test.images, {k: v["ct"] for k, v in arrays.items()},
                      {k: v["sources"] for k, v in arrays.items()}, out / "suite.safetensors",
                      scales=cfg.mm_scales(), device=cfg.device, seed=seed, knn_reference=tr.images, tsne=tsne,
                      progress=progress)


def _segmenter(cfg: DemoConfig) -> SegmenterConfig:
    """Every utility arm's segmenter: width 8 and the default loss (class-weighted
    cross-entropy + soft Dice, :class:`SegmenterConfig`), on the demo's step and batch budget."""
    return SegmenterConfig(steps=cfg.utility_steps, batch_size=cfg.utility_batch, seed=cfg.seed, width=8)


def _stage_utility(cfg: DemoConfig, out: Path, names, seed: int | None, data: dict, progress: bool) -> dict:

    tr, pool, test = _splits(data)
    lab = tr.labelled
    arrays = {name: _set_arrays(out, name, seed) for name in names}
    sets = {name: (a["ct"], a["label"] if "label" in a else a["seg"]) for name, a in arrays.items()}
    truth = {name: pool.labels for name in names}
    res = utility_sets(tr.images[lab], tr.labels[lab], sets, test.images, test.labels, truth, _segmenter(cfg),
                       seeds=cfg.segmenter_seeds, device=cfg.device, progress=progress,
                       baseline=seed is None)  # the real-only arm runs once, with the controls
    # V2M2I's own segmentation head, beside the mask it was given (which matches by construction)
    for name, a in arrays.items():
        if "label" in a and not np.array_equal(a["label"], a["seg"]):
            res["label_fidelity"][f"{name} (seg head)"] = label_fidelity(a["seg"], pool.labels)
    return res


# ----------------------------------------------------------------------------- report


def _nearest(real: np.ndarray, query: np.ndarray) -> np.ndarray:
    """For each query image, the real image closest in pixel L2."""
    r = real.reshape(len(real), -1).astype(np.float64)
    q = query.reshape(len(query), -1).astype(np.float64)
    d = (q**2).sum(1)[:, None] - 2 * q @ r.T + (r**2).sum(1)[None]
    return real[np.argmin(d, axis=1)]


def _figures(cfg: DemoConfig, out: Path, data: dict, mm: dict, utility: dict) -> dict:
    tr, pool, _ = _splits(data)
    figs = {}
    rows = min(4, cfg.n_pool)
    seed = cfg.seed
    for name in MODELS:
        a = _set_arrays(out, name, seed)
        cond = [colour_seg(s) for s in pool.labels[:rows]] if name == "v2m2i" else list(pool.ums[:rows])
        sample_grid(out / f"samples_{name}.png",
                    {"manual mask (input)" if name == "v2m2i" else "UM (input)": cond,
                     "synthetic CT": list(a["ct"][:rows]), "synthetic seg": [colour_seg(s) for s in a["seg"][:rows]],
                     "source case (real)": list(pool.images[:rows]),
                     "nearest training image": list(_nearest(tr.images, a["ct"][:rows]))})
        figs[f"samples_{name}"] = f"samples_{name}.png"
    deg = _set_arrays(out, "degraded", None)
    sample_grid(out / "samples_controls.png", {"real (pool case)": list(pool.images[:rows]),
                                               "degraded": list(deg["ct"][:rows]),
                                               "ground truth": [colour_seg(s) for s in pool.labels[:rows]]})
    figs["samples_controls"] = "samples_controls.png"
    real_dir = out / "synthetic" / "from_real_ct"
    if "real_ct" in data and real_dir.exists():
        ct = sorted(p for p in real_dir.glob("*.png") if "seg" not in p.stem and "um" not in p.stem)
        seg = sorted(real_dir.glob("*seg*.png"))
        if ct and seg:
            sample_grid(out / "samples_real_ct.png", {"real CT (pydicom)": [data["real_ct"]],
                                                     "its UM": [data["real_ct_um"]],
                                                     "V2UM2I CT": [read_png_array(ct[0])],
                                                     "V2UM2I seg": [colour_seg(read_label_png(seg[0]))]})
            figs["samples_real_ct"] = "samples_real_ct.png"
    histories = {}
    for s in cfg.training_seeds()[:1]:
        for name in MODELS:
            h = out / "runs" / f"{name}_seed{s}" / "history.json"
            if h.exists():
                histories[name] = json.loads(h.read_text())
    if histories:
        loss_curves(out / "loss_curves.png", histories)
        figs["loss_curves"] = "loss_curves.png"
    order = ["real", "v2um2i", "v2m2i", "degraded"]  # the models stand between the two controls
    sets = mm["sets"]
    interval_chart(out / "mmfid_chart.png",
                   {"MM-FID (lower is better, 1 = like real)": {n: (sets[n]["mm_fid"], sets[n]["mm_fid_interval"])
                                                                for n in order},
                    "MM-STD (1 = as varied as real)": {n: (sets[n]["mm_std"], sets[n]["mm_std_interval"])
                                                       for n in order}},
                   refline=1.0)
    figs["mmfid_chart"] = "mmfid_chart.png"
    arms = {"real only": utility["real_only"]}
    arms.update({f"+{n}": utility[f"real+{n}"] for n in order})
    interval_chart(out / "utility_chart.png",
                   {"mean foreground Dice on test images": {k: (v["mean_foreground"]["mean"],
                                                                v["mean_foreground"]["interval"])
                                                            for k, v in arms.items()},
                    "lesion Dice": {k: (v["per_class"][2]["mean"], v["per_class"][2]["interval"])
                                    for k, v in arms.items()}})
    figs["utility_chart"] = "utility_chart.png"
    if (out / "tsne.png").exists():
        figs["tsne"] = "tsne.png"
    return figs


def _merge_arms(per_seed: list[dict]) -> dict:
    """One utility arm over all training seeds: its per-image tables stacked on the seed axis."""
    from umsynth.demo.utility import _summary

    first = per_seed[0]
    if len(per_seed) == 1:
        return first
    per = np.concatenate([np.array(p["per_image"], dtype=np.float64) for p in per_seed])
    dice = np.nanmean([[np.nan if v is None else v for v in p["dice"]] for p in per_seed], axis=0)
    return {**first, **_summary(per, per.shape[-1]), "dice": dice.tolist(),
            "per_image": [[[None if not np.isfinite(x) else float(x) for x in r] for r in s] for s in per],
            "predicted_classes": sorted(set().union(*(p["predicted_classes"] for p in per_seed))),
            "predicted_classes_per_seed": [c for p in per_seed for c in p.get("predicted_classes_per_seed", [])]}


def _warnings(mm: dict, utility: dict, verdict: dict, quick: bool) -> dict:
    """Warnings keyed by where they belong: ``mmfid.<set>``, ``utility.<arm>``, ``verdict.<claim>``."""
    w: dict[str, list[str]] = {}
    if quick:
        w["config"] = ["--quick is a smoke test: too few steps and images for any result"]
    ref = mm.get("reference")
    status = ref.get("status") if isinstance(ref, dict) else ref
    if status and str(status) != "ok":
        msg = ref.get("message", "") if isinstance(ref, dict) else ""
        w["mmfid"] = [f"reference status '{status}': {msg}".strip()]
    sens = mm.get("sensitivity", {}).get("mm_fid")
    if sens and sens.get("interval") and verdict_of(sens["interval"], +1, sens.get("p_value")) != "supported":
        w.setdefault("mmfid", []).append(
            "sensitivity check failed: MM-FID does not find the degraded control significantly worse than the real "
            "images at this size, so an inconclusive fidelity verdict says little about the models")
    for arm, v in utility.items():
        # per segmenter: a seed that collapsed to one class hides in the union over seeds
        seeds = v.get("predicted_classes_per_seed") or [v.get("predicted_classes", [])]
        one = sum(len(c) <= 1 for c in seeds)
        no_lesion = sum(2 not in c for c in seeds)
        if one:
            w.setdefault(f"utility.{arm}", []).append(
                f"one-class segmenter in {one} of {len(seeds)} segmenter runs (one class everywhere)")
        if no_lesion > one:
            w.setdefault(f"utility.{arm}", []).append(
                f"no lesion predicted in {no_lesion} of {len(seeds)} segmenter runs")
    one_class = [a for a in (f"real+{n}" for n in MODELS) if len(utility[a].get("predicted_classes", [])) <= 1]
    if one_class:
        w["verdict.utility"] = [f"one-class segmenter in {', '.join(one_class)}: the Dice difference means nothing"]
    for claim, r in verdict.items():
        lo, hi = r["interval"]
        d = r["difference"]
        if d is not None and lo is not None and hi - lo > 2 * abs(d):
            w.setdefault(f"verdict.{claim}", []).append("the interval is wider than the effect: more seeds or cases are needed")
    return w


def run_demo(out_dir: str | os.PathLike, cfg: DemoConfig | None = None, progress: bool = True) -> dict:
    """Run (or resume) every stage and return the metrics written to ``out_dir/metrics.json``."""
    cfg = (cfg or DemoConfig()).check()
    # "auto" becomes the device it means; a CUDA device torch cannot use fails before any stage
    cfg = dataclasses.replace(cfg, device=str(resolve_device(cfg.device, "--device")))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    st = _Stages(out, cfg, progress)
    cohort = st.run("cohort", lambda: _stage_cohort(cfg, out))
    data = _load_arrays(out / "cohort" / "cohort.npz")
    controls = st.run("controls", lambda: _stage_controls(cfg, out, data))
    training, synthesis = {}, {}
    for s in cfg.training_seeds():
        t = {"v2um2i": st.run(f"train_v2um2i_seed{s}",
                              lambda: _stage_train(cfg, out, "v2um2i", s, data, None, progress))}
        # equal budgets: as many V2M2I iterations as V2UM2I made generator updates (both phases)
        t["v2m2i"] = st.run(f"train_v2m2i_seed{s}", lambda: _stage_train(
            cfg, out, "v2m2i", s, data, t["v2um2i"]["generator_updates"], progress))
        training[s] = t
        synthesis[s] = st.run(f"synthesize_seed{s}", lambda: _stage_synthesize(cfg, out, s, data, t, progress))
    suite = st.run("suite", lambda: _stage_suite(cfg, out, data, progress))
    mm = {s: st.run(f"mmfid_seed{s}", lambda: _stage_mmfid(cfg, out, s, data, progress))
          for s in cfg.training_seeds()}
    ut_controls = st.run("utility_controls", lambda: _stage_utility(cfg, out, CONTROLS, None, data, progress))
    ut = {s: st.run(f"utility_seed{s}", lambda: _stage_utility(cfg, out, tuple(MODELS), s, data, progress))
          for s in cfg.training_seeds()}
    verdict = st.run("verdict", lambda: judge([mm[s] for s in cfg.training_seeds()],
                                              [ut[s] for s in cfg.training_seeds()]))
    first = cfg.seed
    arms = dict(ut_controls["arms"])
    for name in MODELS:
        arms[f"real+{name}"] = _merge_arms([ut[s]["arms"][f"real+{name}"] for s in cfg.training_seeds()])
    fidelity = dict(ut_controls["label_fidelity"])
    fidelity.update(ut[first]["label_fidelity"])

    def report():
        figs = _figures(cfg, out, data, mm[first], arms)
        env = environment(cfg.device)
        env.update(_demo_libraries())
        mm_main = dict(mm[first])
        mm_main["suite_members"] = suite["members"]
        if cfg.seeds > 1:
            mm_main["per_seed"] = {str(s): {"sets": mm[s]["sets"], "comparison": mm[s]["comparison"]} for s in mm}
        metrics = {
            "created": _now(), "started": _now(started), "config": dataclasses.asdict(cfg), "quick": cfg.smoke,
            "environment": env, "cohort": cohort,
            "design": {"groups": cohort["groups"],
                       "source_cases": {name: synthesis[first][name]["sources"] for name in MODELS},
                       "training_seeds": cfg.training_seeds(), "segmenter_seeds": cfg.segmenter_seeds,
                       "scales": list(cfg.mm_scales()),
                       "utility": {"steps": cfg.utility_steps, "batch_size": cfg.utility_batch,
                                   "synthetic_per_batch": cfg.utility_batch // 2,
                                   **{k: v for k, v in dataclasses.asdict(_segmenter(cfg)).items()
                                      if k in ("width", "depth", "lr", "class_weights")}}},
            "training": {name: training[first][name] for name in MODELS} | (
                {"per_seed": {str(s): training[s] for s in training}} if cfg.seeds > 1 else {}),
            "synthesis": {str(s): v for s, v in synthesis.items()},
            "mmfid": mm_main,
            "controls": {name: mm[first]["sets"][name] for name in CONTROLS} | {
                "made": controls, "sensitivity": mm[first].get("sensitivity", {})},
            "utility": {"arms": arms, "label_fidelity": fidelity},
            "verdict": verdict, "warnings": _warnings(mm[first], arms, verdict, cfg.smoke),
            "stage_times": dict(st.times), "stage_cpu_seconds": dict(st.cpu), "figures": figs}
        write_json(out / "metrics.json", metrics)
        write_report(out, metrics)
        return {"figures": figs}

    st.run("report", report)
    metrics = json.loads((out / "metrics.json").read_text())
    metrics["stage_times"] = dict(st.times)
    metrics["stage_cpu_seconds"] = dict(st.cpu)
    write_json(out / "metrics.json", metrics)
    write_report(out, metrics)
    return metrics


def _now(t: float | None = None) -> str:
    """Local time with its UTC offset and zone name, e.g. ``2026-11-30 12:00:00 +0000 (UTC)``."""
    return time.strftime("%Y-%m-%d %H:%M:%S %z (%Z)", time.localtime(t))


def _demo_libraries() -> dict:
    """Versions of the libraries the demo's figures and data use, beside :func:`environment`'s."""
    from importlib import metadata

    out = {}
    for dist in ("matplotlib", "Pillow", "pydicom", "scikit-learn", "tqdm"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def clean(out_dir: str | os.PathLike) -> None:
    """Remove a demo folder's stage markers so the next run starts afresh."""
    shutil.rmtree(Path(out_dir) / "stages", ignore_errors=True)
