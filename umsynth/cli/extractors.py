"""``umsynth extractors train``: train a CT extractor suite on real images for MM-FID."""
from __future__ import annotations

import argparse
from pathlib import Path

from umsynth.cli import hold_output
from umsynth.cli._actions import action_parser, add_no_progress
from umsynth.files import list_images, read_image

DESCRIPTION = """\
Train umsynth's own CT feature extractors on a folder of real images (ideally SemiCS2
2x2 montages), one small CNN per self-supervised task, no manual labels needed:

  quadrant      which quadrant of the 2x2 montage a slice comes from (anatomical level)
  rotation      0, 90, 180 or 270 degrees
  degradation   clean vs blurred vs noisy vs intensity-shifted
  segmentation  with --labels DIR (label PNGs of the same names: 0 background, 1 lung, 2 lesion)
  meta:KEY      with --meta FILE.csv: one network per column KEY (e.g. kernel, fov); the CSV
                has a header, a "file" column with image file names, and an empty cell
                where a value is unknown

A radiomics member is added (--no-radiomics leaves it out): FRD's feature classes of
each image at every scale, with no training and no weights, so every MM-FID table has one
deterministic row that compares across studies.

The suite (weights plus metadata: tasks, scales, preprocessing, training data summary) is
written atomically to one .safetensors file. With --checkpoint, an interrupted run resumes.
"""


def register(subparsers) -> None:
    """Add the ``extractors`` sub-command (with its ``train`` action)."""
    t = action_parser(subparsers, "extractors", "train CT feature extractor suites for MM-FID",
                      "train", "train a suite on a folder of real images", DESCRIPTION)
    t.add_argument("real", metavar="REAL_DIR", help="folder of real images")
    t.add_argument("--out", required=True, metavar="suite.safetensors", help="suite file to write")
    t.add_argument("--labels", metavar="DIR", help="folder of label maps with the same file names")
    t.add_argument("--meta", metavar="FILE.csv", help="per-image metadata (kernel, FOV, ...) for meta:KEY tasks")
    t.add_argument("--tasks", nargs="+", metavar="TASK",
                   help="tasks to train (default: quadrant rotation degradation, + segmentation with --labels)")
    t.add_argument("--quick", action="store_true", help="tiny networks and few steps (seconds; for trials)")
    t.add_argument("--steps", type=int, help="optimizer steps per task (default 300; --quick 20)")
    t.add_argument("--size", type=int, help="training input size (default 128; --quick 32)")
    t.add_argument("--scales", type=int, nargs="+", metavar="PX",
                   help="scales stored in the suite (default 128 256 512 1024; --quick 32 64)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--no-radiomics", action="store_true",
                   help="leave out the radiomics member (deterministic, no weights; added by default)")
    t.add_argument("--checkpoint", metavar="FILE", help="save after each task and resume from it")
    add_no_progress(t)
    t.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    """Train and save the suite; returns 0."""
    import dataclasses

    import numpy as np

    from umsynth.extractors import TINY_CONFIG, SuiteTrainConfig, save_suite, train_suite  # imports torch

    real = Path(args.real)
    if not real.is_dir():
        raise ValueError(f"{real}: no such folder")
    files = list_images(real)
    labels = None
    if args.labels:
        lab_dir = Path(args.labels)
        if not lab_dir.is_dir():
            raise ValueError(f"--labels {lab_dir}: no such folder")
        missing = [f.name for f in files if not (lab_dir / f.name).is_file()]
        if missing:
            raise ValueError(f"--labels {lab_dir}: no label map for {', '.join(missing[:3])}")
        labels = np.stack([read_image(lab_dir / f.name, "values").astype(np.int64) for f in files])
    meta = _read_meta(args.meta, files) if args.meta else None
    config = TINY_CONFIG if args.quick else SuiteTrainConfig()
    changes = {k: v for k, v in (("steps", args.steps), ("size", args.size),
                                 ("tasks", tuple(args.tasks) if args.tasks else None),
                                 ("scales", tuple(args.scales) if args.scales else None)) if v is not None}
    config = dataclasses.replace(config, seed=args.seed, radiomics=not args.no_radiomics, **changes)
    hold_output(args.out, "extractors train", file=True)  # another umsynth process writing it stops us here
    suite = train_suite(files, config, labels=labels, meta=meta, checkpoint=args.checkpoint,
                        progress=not args.no_progress)
    save_suite(suite, args.out)
    for task, r in suite.training["results"].items():
        held = r.get("held_out") or {}
        line = f"{task:>14}: loss {r['loss']:.3f}, training accuracy {r['accuracy']:.1%} ({r['seconds']:.1f} s)"
        if held.get("accuracy") is not None:
            line += f", held-out {held['accuracy']:.1%} (chance {held['chance']:.1%}, {held['images']} images)"
            if held.get("at_chance"):
                line += "  WARNING: at chance"
        print(line)
    nets = sum(m.task != "radiomics" for m in suite.members)
    extra = " + radiomics" if nets < len(suite.members) else ""
    print(f"wrote {args.out} ({nets} networks{extra}, scales {list(suite.scales)})")
    return 0


def _read_meta(path: str, files: list) -> dict:
    """{column: [value or None per image]} from a CSV with a "file" column."""
    import csv

    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise OSError(f"--meta {path}: {exc}") from None
    if not rows or "file" not in rows[0]:
        raise ValueError(f"--meta {path}: expected a header with a 'file' column and one row per image")
    by_name = {Path(r["file"]).name: r for r in rows}
    keys = [k for k in rows[0] if k != "file"]
    if not keys:
        raise ValueError(f"--meta {path}: no metadata column besides 'file'")
    return {k: [(by_name.get(f.name, {}).get(k) or None) for f in files] for k in keys}
