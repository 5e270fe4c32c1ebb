"""``umsynth demo``: the whole SemiCS2 method on embedded data, stage by stage, resumable.

Stages (each leaves ``DIR/stages/<name>.json`` when it has finished; a re-run with the
same configuration skips finished stages, a different configuration starts afresh):

1. ``cohort``: a phantom cohort with few labels, held-out test cases, the real CT slices
   that pydicom ships, and the UMs of all of them;
2. ``train_v2um2i`` / ``train_v2m2i``: the UM-guided model and the mask-guided baseline,
   the same generator, discriminator and number of optimiser steps;
3. ``synthesize``: a synthetic set from each (V2UM2I from the UMs of unlabelled training
   cases, V2M2I from flipped/rotated copies of the few manual masks);
4. ``suite`` and ``mmfid``: a CT extractor suite trained on the real training images, then
   MM-FID / MM-STD of both sets against the held-out real images, with the Wilcoxon test;
5. ``utility``: Dice on held-out real images of a small U-Net trained on the labelled real
   cases alone, and with each synthetic set added;
6. ``report``: figures, ``metrics.json`` and ``report.html``.
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
from umsynth.demo.report import colour_seg, loss_curves, sample_grid, write_json, write_report
from umsynth.demo.utility import SegmenterConfig, utility_experiment
from umsynth.extractors.suite import save_suite
from umsynth.extractors.train import SuiteTrainConfig, train_suite
from umsynth.files import atomic_write, path_inside, write_png
from umsynth.metrics.mmfid import mmfid
from umsynth.metrics.normalize import mm_summary, reference_normalize
from umsynth.runtime import environment, resolve_device
from umsynth.synth import synthesize
from umsynth.train import Config, DiscriminatorConfig, GeneratorConfig, train

__all__ = ["DemoConfig", "run_demo", "STAGES", "METRIC_FIELDS"]

STAGES = ("cohort", "train_v2um2i", "train_v2m2i", "synthesize", "suite", "mmfid", "utility", "report")
# top-level keys of metrics.json (the test checks every one is there)
METRIC_FIELDS = ("created", "config", "environment", "cohort", "training", "synthesis", "mmfid",
                 "utility", "stage_times", "figures")
MODELS = {"v2um2i": "um", "v2m2i": "mask"}


def _demo_generator() -> GeneratorConfig:
    return GeneratorConfig(ngf=16, n_downsample=3, n_blocks=3)


def _demo_discriminator() -> DiscriminatorConfig:
    return DiscriminatorConfig(ndf=16, n_layers=3, num_D=2)


@dataclass
class DemoConfig:
    """What the demo runs. Defaults fit in about 15 minutes on 2 CPU cores.

    Attributes
    ----------
    size : int
        Side of the montages (2x2 phantom slices), a multiple of 16.
    steps : int
        Generator optimiser steps of each model (the same budget for both).
    n_cases : int
        Phantom cases in all; the last `n_test` are held out as real test images.
    n_test : int
    labelled_fraction : float
        Fraction of training cases that keep their manual labels.
    n_synthetic : int
        Images synthesized by each model.
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
        Optimiser steps of each utility segmenter.
    device : str
        "cpu" or "cuda" (see :func:`umsynth.runtime.resolve_device`).
    seed : int

    Raises
    ------
    ValueError
        Naming the field, for a value out of range (checked on construction).
    """

    size: int = 128
    steps: int = 450
    n_cases: int = 60
    n_test: int = 12
    labelled_fraction: float = 0.1
    n_synthetic: int = 24
    generator: GeneratorConfig = field(default_factory=_demo_generator)
    discriminator: DiscriminatorConfig = field(default_factory=_demo_discriminator)
    suite_steps: int = 300
    scales: tuple | None = None
    utility_steps: int = 250
    device: str = "cpu"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.size < 32 or self.size % 16:
            raise ValueError(f"size must be a multiple of 16 and >= 32, got {self.size}")
        for name in ("steps", "n_synthetic", "suite_steps", "utility_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_test < 4:
            raise ValueError(f"n_test must be >= 4 (MM-FID splits the real set in halves), got {self.n_test}")
        if self.n_cases - self.n_test < 4:
            raise ValueError(f"n_cases must leave at least 4 training cases after n_test={self.n_test}, "
                             f"got {self.n_cases}")
        if not 0 < self.labelled_fraction < 1:
            raise ValueError(f"labelled_fraction must be in (0, 1), got {self.labelled_fraction}")
        if not isinstance(self.generator, GeneratorConfig):
            raise TypeError(f"generator must be a GeneratorConfig, got {type(self.generator).__name__}")
        if not isinstance(self.discriminator, DiscriminatorConfig):
            raise TypeError(f"discriminator must be a DiscriminatorConfig, got {type(self.discriminator).__name__}")

    @classmethod
    def quick(cls, **overrides) -> "DemoConfig":
        """A configuration that finishes in well under 2 minutes (for tests)."""
        base = dict(size=64, steps=16, n_cases=16, n_test=6, labelled_fraction=0.25, n_synthetic=6,
                    generator=GeneratorConfig(ngf=8, n_downsample=2, n_blocks=1),
                    discriminator=DiscriminatorConfig(ndf=8, n_layers=3, num_D=2), suite_steps=12,
                    utility_steps=15)
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
        write_json(stamp, {"digest": digest, "config": dataclasses.asdict(cfg)})
        self.times: dict[str, float] = {}

    def _say(self, msg: str) -> None:
        if self.progress:
            print(f"umsynth demo: {msg}", file=sys.stderr, flush=True)

    def run(self, name: str, fn):
        marker = self.dir / f"{name}.json"
        if marker.exists():
            done = json.loads(marker.read_text())
            self.times[name] = done["seconds"]
            self._say(f"{name}: done before, skipped")
            return done["result"]
        self._say(f"{name} ...")
        t0 = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - t0
        self.times[name] = seconds
        write_json(marker, {"seconds": seconds, "result": result})
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
    n_train = cfg.n_cases - cfg.n_test
    labelled = np.asarray(cohort.labelled[:n_train]).copy()
    # the few-labels setting needs labelled and unlabelled training cases both
    want = max(2, int(round(cfg.labelled_fraction * n_train)))
    extra = [i for i in range(n_train) if not labelled[i]][:max(0, want - int(labelled.sum()))]
    labelled[extra] = True
    ums = unsupervised_mask(cohort.images)
    real_montage, real_names = _real_ct_montage(cfg.size)
    arrays = dict(images=cohort.images, labels=cohort.labels, ums=ums, labelled=labelled,
                  kernel=np.array([m.kernel for m in cohort.meta]), fov=np.array([m.fov for m in cohort.meta]))
    if real_montage is not None:
        arrays["real_ct"] = real_montage
        arrays["real_ct_um"] = unsupervised_mask(real_montage)
    _save_arrays(out / "cohort" / "cohort.npz", **arrays)
    for part in ("labelled", "unlabelled", "test"):
        (out / "cohort" / part).mkdir(parents=True, exist_ok=True)
    for i in range(cfg.n_cases):
        part = "test" if i >= n_train else ("labelled" if labelled[i] else "unlabelled")
        write_png(out / "cohort" / part / f"case{i:03d}.png", cohort.images[i])
        write_png(out / "cohort" / part / f"case{i:03d}_um.png", ums[i])
        if part != "unlabelled":
            write_png(out / "cohort" / part / f"case{i:03d}_labels.png", cohort.labels[i])
    return {"n_train_labelled": int(labelled.sum()), "n_train_unlabelled": int(n_train - labelled.sum()),
            "n_test": cfg.n_test, "size": cfg.size, "real_ct_slices": real_names,
            "kernels": {str(k): int(v) for k, v in zip(*np.unique(arrays["kernel"], return_counts=True))},
            "fovs": {str(k): int(v) for k, v in zip(*np.unique(arrays["fov"], return_counts=True))}}


def _splits(data: dict, cfg: DemoConfig):
    n_train = cfg.n_cases - cfg.n_test
    train = SimpleNamespace(images=data["images"][:n_train], labels=data["labels"][:n_train],
                            labelled=data["labelled"], ums=data["ums"][:n_train])
    test = SimpleNamespace(images=data["images"][n_train:], labels=data["labels"][n_train:])
    return train, test


# ----------------------------------------------------------------------------- models


def _train_config(cfg: DemoConfig, conditioning: str, n_labelled: int):

    c = Config()
    c.model.conditioning = conditioning
    c.model.generator = dataclasses.replace(cfg.generator)
    # the second discriminator scale of a 64 px montage has 32 px: two stride-2 layers at most
    c.model.discriminator = dataclasses.replace(
        cfg.discriminator, n_layers=min(cfg.discriminator.n_layers, 2) if cfg.size <= 64 else cfg.discriminator.n_layers)
    c.data.batch_size = max(1, min(4, n_labelled))
    c.train.device = cfg.device
    c.train.seed = cfg.seed
    c.train.max_steps = cfg.steps
    # a few epochs of labelled data first, then the unlabelled phase (method.md §4)
    c.train.unlabelled_start_epoch = 1
    c.train.sample_every = max(1, cfg.steps // 4)
    c.train.log_every = max(1, cfg.steps // 50)
    c.train.checkpoint_every = max(1, cfg.steps // 4)
    c.optim.niter, c.optim.niter_decay = 1000, 1000
    return c


def _datasets(cfg: DemoConfig, train, conditioning: str):

    aug = Augment()
    kw = dict(um_source="disk", ums=train.ums, augment=aug, seed=cfg.seed)
    labelled = MontageDataset.from_cohort(train, "labelled", **kw)
    unlabelled = MontageDataset.from_cohort(train, "unlabelled", **kw) if conditioning == "um" else None
    return labelled, unlabelled


def _stage_train(cfg: DemoConfig, out: Path, name: str, data: dict, progress: bool) -> dict:

    conditioning = MODELS[name]
    tr, _ = _splits(data, cfg)
    labelled, unlabelled = _datasets(cfg, tr, conditioning)
    run_dir = out / "runs" / name
    # "auto": resume only a checkpoint of this very configuration and data, else train anew
    res = train(_train_config(cfg, conditioning, len(labelled)), labelled, unlabelled, run_dir, resume="auto",
                progress=progress)
    history: dict[str, list[float]] = {}
    for row in res.history:
        for k, v in row.items():
            if k not in ("step", "epoch", "lr") and isinstance(v, (int, float)):
                history.setdefault(k, []).append(float(v))
    write_json(run_dir / "history.json", history)
    return {"steps": int(res.steps), "seconds": float(res.seconds),
            "checkpoint": os.path.relpath(res.checkpoint, out), "conditioning": conditioning,
            "n_labelled": len(labelled), "n_unlabelled": 0 if unlabelled is None else len(unlabelled),
            "final_losses": {k: v[-1] for k, v in history.items() if v}}


def _augmented_masks(images: np.ndarray, labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n (image, label) pairs: the few manual cases under the 8 flips/rotations, in turn."""
    out_i, out_l = [], []
    for j in range(n):
        i, t = j % len(images), (j // len(images)) % 8
        a, b = np.rot90(images[i], t % 4), np.rot90(labels[i], t % 4)
        if t >= 4:
            a, b = a[:, ::-1], b[:, ::-1]
        out_i.append(np.ascontiguousarray(a))
        out_l.append(np.ascontiguousarray(b))
    return np.stack(out_i), np.stack(out_l)


def _read_outputs(written: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:

    ct = np.stack([read_png_array(w["ct"]) for w in written])
    seg = np.stack([read_label_png(w["seg"]) for w in written])
    um = np.stack([read_png_array(w["um"]) for w in written]) if all("um" in w for w in written) else ct * 0
    return ct, seg, um


def _stage_synthesize(cfg: DemoConfig, out: Path, data: dict, stages: dict, progress: bool) -> dict:

    tr, _ = _splits(data, cfg)
    result = {}
    sets = {}
    unl = np.flatnonzero(~tr.labelled)
    pick = unl[np.arange(cfg.n_synthetic) % len(unl)]
    # V2UM2I: UMs of unlabelled training cases (no manual label needed)
    sets["v2um2i"] = MontageDataset(tr.images[pick], um_source="disk", ums=tr.ums[pick])
    # V2M2I: the few manual masks, flipped and rotated to reach the same count
    lab = np.flatnonzero(tr.labelled)
    imgs, labs = _augmented_masks(tr.images[lab], tr.labels[lab], cfg.n_synthetic)
    sets["v2m2i"] = MontageDataset(imgs, labs)
    for name, ds in sets.items():
        ckpt = path_inside(out, stages[f"train_{name}"]["checkpoint"], f"stages/train_{name}.json: checkpoint")
        written = synthesize(ckpt, ds, out / "synthetic" / name, device=cfg.device, progress=progress)
        ct, seg, um = _read_outputs(written)
        _save_arrays(out / "synthetic" / f"{name}.npz", ct=ct, seg=seg, um=um)
        result[name] = {"n": len(written), "dir": f"synthetic/{name}"}
    if "real_ct_um" in data:  # the real pydicom slices' UM through the UM-guided model
        ckpt = path_inside(out, stages["train_v2um2i"]["checkpoint"], "stages/train_v2um2i.json: checkpoint")
        ds = MontageDataset(data["real_ct"][None], um_source="disk", ums=data["real_ct_um"][None])
        written = synthesize(ckpt, ds, out / "synthetic" / "from_real_ct", device=cfg.device,
                             names=["pydicom_slices"], progress=progress)
        result["from_real_ct"] = {"n": len(written), "dir": "synthetic/from_real_ct"}
    return result


# ----------------------------------------------------------------------------- metrics


def _stage_suite(cfg: DemoConfig, out: Path, data: dict, progress: bool) -> dict:

    tr, _ = _splits(data, cfg)
    n_train = len(tr.images)
    tcfg = SuiteTrainConfig(channels=(8, 16, 32, 64), stem=2, size=min(64, cfg.size // 2), steps=cfg.suite_steps,
                       batch_size=16, seed=cfg.seed, scales=cfg.mm_scales())
    suite = train_suite(tr.images, tcfg, labels=tr.labels, labelled=tr.labelled,
                        meta={"kernel": list(data["kernel"][:n_train]), "fov": list(data["fov"][:n_train])},
                        checkpoint=out / "suite.partial.safetensors", progress=progress)
    save_suite(suite, out / "suite.safetensors")
    partial = out / "suite.partial.safetensors"
    if partial.exists():
        partial.unlink()
    return {"path": "suite.safetensors", "members": [m.name for m in suite.members],
            "scales": list(cfg.mm_scales())}


def _stage_mmfid(cfg: DemoConfig, out: Path, data: dict, progress: bool) -> dict:

    _, test = _splits(data, cfg)
    syn = {name: _load_arrays(out / "synthetic" / f"{name}.npz")["ct"] for name in MODELS}
    res = mmfid(test.images, syn, out / "suite.safetensors", scales=cfg.mm_scales(), device=cfg.device,
                tsne=out / "tsne.png", knn=True, seed=cfg.seed, progress=progress)
    d = res.to_dict()
    # per-set reference normalization too: meaningful for each set on its own
    fd_ref = reference_normalize(res.fd, res.fd_ref)
    std_ref = reference_normalize(res.std, res.std_real)
    d["reference_normalized"] = {k: {"mm_fid": mm_summary(fd_ref[k])[0], "mm_fid_std": mm_summary(fd_ref[k])[1],
                                     "mm_std": mm_summary(std_ref[k])[0], "mm_std_std": mm_summary(std_ref[k])[1]}
                                 for k in res.fd}
    return d


def _stage_utility(cfg: DemoConfig, out: Path, data: dict, progress: bool) -> dict:

    tr, test = _splits(data, cfg)
    lab = np.flatnonzero(tr.labelled)
    syn = {}
    for name in MODELS:
        a = _load_arrays(out / "synthetic" / f"{name}.npz")
        syn[name] = (a["ct"], a["seg"])
    scfg = SegmenterConfig(steps=cfg.utility_steps, seed=cfg.seed, width=8)
    return utility_experiment(tr.images[lab], tr.labels[lab], syn, test.images, test.labels, scfg,
                              device=cfg.device, progress=progress)


# ----------------------------------------------------------------------------- report


def _nearest(real: np.ndarray, query: np.ndarray) -> np.ndarray:
    """For each query image, the real image closest in pixel L2."""
    r = real.reshape(len(real), -1).astype(np.float64)
    q = query.reshape(len(query), -1).astype(np.float64)
    d = (q**2).sum(1)[:, None] - 2 * q @ r.T + (r**2).sum(1)[None]
    return real[np.argmin(d, axis=1)]


def _figures(cfg: DemoConfig, out: Path, data: dict) -> dict:
    tr, _ = _splits(data, cfg)
    figs = {}
    rows = min(4, cfg.n_synthetic)
    for name in MODELS:
        a = _load_arrays(out / "synthetic" / f"{name}.npz")
        first = "manual mask" if name == "v2m2i" else "UM"
        cond = [colour_seg(s) for s in _augmented_masks(tr.images[tr.labelled], tr.labels[tr.labelled],
                                                          rows)[1]] if name == "v2m2i" else list(a["um"][:rows])
        near = _nearest(tr.images, a["ct"][:rows])
        sample_grid(out / f"samples_{name}.png", {first: cond, "synthetic CT": list(a["ct"][:rows]),
                                                 "synthetic seg": [colour_seg(s) for s in a["seg"][:rows]],
                                                 "nearest real": list(near)})
        figs[f"samples_{name}"] = f"samples_{name}.png"
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
    for name in MODELS:
        h = out / "runs" / name / "history.json"
        if h.exists():
            histories[name] = json.loads(h.read_text())
    if histories:
        loss_curves(out / "loss_curves.png", histories)
        figs["loss_curves"] = "loss_curves.png"
    if (out / "tsne.png").exists():
        figs["tsne"] = "tsne.png"
    return figs


def run_demo(out_dir: str | os.PathLike, cfg: DemoConfig | None = None, progress: bool = True) -> dict:
    """Run (or resume) every stage and return the metrics written to ``out_dir/metrics.json``."""
    cfg = (cfg or DemoConfig()).check()
    # "auto" becomes the device it means; a CUDA device torch cannot use fails before any stage
    cfg = dataclasses.replace(cfg, device=str(resolve_device(cfg.device, "--device")))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    st = _Stages(out, cfg, progress)
    cohort = st.run("cohort", lambda: _stage_cohort(cfg, out))
    data = _load_arrays(out / "cohort" / "cohort.npz")
    training = {name: st.run(f"train_{name}", lambda n=name: _stage_train(cfg, out, n, data, progress))
                for name in MODELS}
    synthesis = st.run("synthesize", lambda: _stage_synthesize(
        cfg, out, data, {f"train_{k}": v for k, v in training.items()}, progress))
    suite = st.run("suite", lambda: _stage_suite(cfg, out, data, progress))
    mm = st.run("mmfid", lambda: _stage_mmfid(cfg, out, data, progress))
    mm["suite_members"] = suite["members"]
    utility = st.run("utility", lambda: _stage_utility(cfg, out, data, progress))

    def report():
        figs = _figures(cfg, out, data)
        metrics = {"created": time.strftime("%Y-%m-%d %H:%M:%S"), "config": dataclasses.asdict(cfg),
                   "environment": environment(cfg.device), "cohort": cohort, "training": training,
                   "synthesis": synthesis, "mmfid": mm, "utility": utility,
                   "stage_times": dict(st.times), "figures": figs}
        write_json(out / "metrics.json", metrics)
        write_report(out, metrics)
        return {"figures": figs}

    st.run("report", report)
    metrics = json.loads((out / "metrics.json").read_text())
    metrics["stage_times"] = dict(st.times)
    write_json(out / "metrics.json", metrics)
    return metrics


def clean(out_dir: str | os.PathLike) -> None:
    """Remove a demo folder's stage markers so the next run starts afresh."""
    shutil.rmtree(Path(out_dir) / "stages", ignore_errors=True)
