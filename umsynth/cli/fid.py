"""``umsynth fid``: Fréchet distance between two image folders or statistics files.

Modelled on ``python -m pytorch_fid``. torch is imported only when images are read.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from umsynth.cli._actions import add_device, add_no_progress, deprecated
from umsynth.frechet import frechet_distance_from_stats
from umsynth.runtime import resolve_device
from umsynth.stats import FeatureStats

#: the extractor tag of statistics files without one: pytorch-fid's mu/sigma files
PYTORCH_FID_TAG = "pytorch-fid-inception-v3"

DESCRIPTION = """\
Fréchet distance between two sets of images. Each PATH is a folder of images (PNG, JPG,
TIFF or BMP, grey or RGB, read directly in the folder) or a statistics .npz file: one
written by --save-stats or by umsynth.FeatureStats.save, or pytorch-fid's mu/sigma file
(tagged pytorch-fid-inception-v3). The distance itself is exact (no scipy sqrtm; see
umsynth.frechet_distance). The output line names the features: "FD (random CNN
features, ...)" by default, "FID (InceptionV3 features, ...)" with --inception-weights.
Statistics of two different extractors are refused (their distance means nothing)
unless --allow-mixed is given.

Features: by default umsynth-random-cnn-v1, a fixed random CNN (seed 0, five stride-2
3x3 convolutions with ReLU, global average pool, 512 features, images resized to
256x256). It is NOT InceptionV3: its values are not comparable with pytorch-fid's or
published FIDs, only with each other. It needs no download.

With --inception-weights FILE, torchvision's InceptionV3 (2048 features, 299x299) runs
with a weights file you already have: torchvision's inception_v3 ImageNet state dict
(e.g. inception_v3_google-0cc3c7bd.pth). Nothing is ever downloaded. This needs
torchvision. pytorch-fid's pt_inception-2015-12-05 file is not accepted: its FID blocks
differ from torchvision's.
"""


def register(subparsers) -> None:
    """Add the ``fid`` sub-command to the ``umsynth`` parser.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        From ``ArgumentParser.add_subparsers``.
    """
    p = subparsers.add_parser(
        "fid",
        help="Fréchet distance between two image folders or statistics files (not InceptionV3 by default)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("path1", metavar="PATH1", help="folder of images, or a statistics .npz")
    p.add_argument("path2", metavar="PATH2", nargs="?",
                   help="folder of images, or a statistics .npz (optional with --save-stats)")
    p.add_argument("--save-stats", metavar="DIR",
                   help="save the statistics of each image folder as DIR/<folder name>.npz (readable by "
                        "pytorch-fid too); with PATH2 as well, the distance is also printed")
    p.add_argument("--allow-mixed", action="store_true",
                   help="compare statistics of different extractors anyway (the number means little)")
    p.add_argument("--batch-size", type=int, default=50, help="images per batch (default 50)")
    add_device(p)
    p.add_argument("--num-workers", type=int, default=0,
                   help="processes that read images (default 0: the main process)")
    p.add_argument("--inception-weights", metavar="FILE",
                   help="use torchvision's InceptionV3 with this local state dict instead of "
                        "umsynth-random-cnn-v1 (needs torchvision; never downloads)")
    add_no_progress(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Compute and print the FID (and save statistics) for parsed ``umsynth fid`` arguments.

    Parameters
    ----------
    args : argparse.Namespace

    Returns
    -------
    int
        0 on success. Bad input raises ValueError, which ``umsynth`` prints as one line.
    """
    if args.path2 is None and not args.save_stats:
        raise ValueError("give two paths (image folders or .npz statistics), or one path with --save-stats DIR")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.num_workers < 0:
        raise ValueError(f"--num-workers must be >= 0, got {args.num_workers}")
    for path in (args.path1, args.path2):  # fail before minutes of feature extraction
        if path is not None:
            _check_path(path)
    loader = _StatsLoader(args)
    paths = [p for p in (args.path1, args.path2) if p is not None]
    stats = [loader(p) for p in paths]
    if args.save_stats:
        _save(args, paths, stats)
    if len(stats) == 2:
        label = feature_label(stats[0].extractor, stats[1].extractor, args.allow_mixed)
        if stats[0].extractor != stats[1].extractor:  # --allow-mixed: the label says so; drop the tags
            stats[0].extractor = stats[1].extractor = None
        print(f"{label}: {frechet_distance_from_stats(stats[0], stats[1])}")
    return 0


def _save(args, paths: list, stats: list) -> None:
    """--save-stats DIR: DIR/<folder name>.npz for each image folder (DIR.npz: the old form, PATH1 only)."""
    if args.save_stats.lower().endswith(".npz"):
        deprecated("fid", "--save-stats FILE.npz", "--save-stats DIR (writes DIR/<folder name>.npz)")
        targets = [(Path(args.save_stats), stats[0])]
    else:
        folder = Path(args.save_stats)
        folder.mkdir(parents=True, exist_ok=True)
        targets, used = [], set()
        for path, st in zip(paths, stats):
            if not Path(path).is_dir():
                continue  # already statistics
            base = Path(path).resolve().name or "images"
            name, i = base, 2
            while name in used:
                name, i = f"{base}-{i}", i + 1
            used.add(name)
            targets.append((folder / f"{name}.npz", st))
    for target, st in targets:
        st.save(target)
        print(f"saved statistics of {st.n} images ({st.extractor}) to {target}")


def feature_label(name1: str | None, name2: str | None, allow_mixed: bool) -> str:
    """What the printed distance is: "FD (random CNN features, NAME)", "FID (InceptionV3 features, NAME)".

    Raises ValueError for two different extractors (or an unknown one) unless ``allow_mixed``.
    """
    if name1 != name2 or name1 is None:
        shown = [n or "an unknown extractor" for n in (name1, name2)]
        if not allow_mixed:
            raise ValueError(f"PATH1's features come from {shown[0]}, PATH2's from {shown[1]}: distances between "
                             "different features mean nothing; compute both with the same extractor, or pass "
                             "--allow-mixed")
        return f"FD (mixed features: {shown[0]} vs {shown[1]})"
    if name1.startswith("umsynth-random-cnn"):
        return f"FD (random CNN features, {name1})"
    if "inception" in name1:
        return f"FID (InceptionV3 features, {name1})"
    return f"FD ({name1} features)"


def _check_path(path: str) -> Path:
    """A folder, or an existing .npz file; anything else is one clear error."""
    p = Path(path)
    if p.is_dir():
        return p
    if p.is_file():
        if p.suffix.lower() != ".npz":
            raise ValueError(f"{p}: expected a folder of images or a .npz statistics file")
        return p
    raise ValueError(f"{p}: no such folder or file")


class _StatsLoader:
    """Turns a PATH into FeatureStats, building the extractor once, on first need."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self._extractor = None

    def __call__(self, path: str):
        p = _check_path(path)
        if p.is_dir():
            from umsynth.extractors.classic import folder_stats  # imports torch: only for folders

            return folder_stats(p, self.extractor(), batch_size=self.args.batch_size,
                                num_workers=self.args.num_workers, progress=not self.args.no_progress)
        stats = FeatureStats.load(p)
        if stats.extractor is None:
            with np.load(p, allow_pickle=False) as f:
                if "format" not in f.files:  # pytorch-fid's mu/sigma file: its own InceptionV3
                    stats.extractor = PYTORCH_FID_TAG
        return stats

    def extractor(self):
        if self._extractor is None:
            from umsynth.extractors import classic  # imports torch

            device = str(resolve_device(self.args.device, "--device"))
            if self.args.inception_weights:
                self._extractor = classic.inception_v3(self.args.inception_weights, device)
            else:
                self._extractor = classic.random_cnn(device)
        return self._extractor


if __name__ == "__main__":  # pragma: no cover
    import sys

    from umsynth.cli import main

    sys.exit(main(["fid", *sys.argv[1:]]))
