"""``umsynth fid``: Fréchet distance between two image folders or statistics files.

Modelled on ``python -m pytorch_fid``. torch is imported only when images are read.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from umsynth.frechet import frechet_distance_from_stats
from umsynth.runtime import resolve_device
from umsynth.stats import FeatureStats

DESCRIPTION = """\
Fréchet distance (FID) between two sets of images. Each PATH is a folder of images
(PNG, JPG, TIFF or BMP, grey or RGB, read directly in the folder) or a statistics .npz
file: one written by --save-stats or by umsynth.FeatureStats.save, or pytorch-fid's
mu/sigma file. The distance itself is exact (no scipy sqrtm; see umsynth.frechet_distance).

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
    p.add_argument("--save-stats", metavar="OUT.npz",
                   help="save the statistics of PATH1 to OUT.npz (readable by pytorch-fid too); "
                        "with PATH2 as well, the FID is also printed")
    p.add_argument("--batch-size", type=int, default=50, help="images per batch (default 50)")
    p.add_argument("--device", default="cpu",
                   help="torch device for the network: cpu (default), cuda[:N] or auto")
    p.add_argument("--num-workers", type=int, default=0,
                   help="processes that read images (default 0: the main process)")
    p.add_argument("--inception-weights", metavar="FILE",
                   help="use torchvision's InceptionV3 with this local state dict instead of "
                        "umsynth-random-cnn-v1 (needs torchvision; never downloads)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
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
        raise ValueError("give two paths (image folders or .npz statistics), or one path with --save-stats OUT.npz")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.num_workers < 0:
        raise ValueError(f"--num-workers must be >= 0, got {args.num_workers}")
    for path in (args.path1, args.path2):  # fail before minutes of feature extraction
        if path is not None:
            _check_path(path)
    loader = _StatsLoader(args)
    stats1 = loader(args.path1)
    if args.save_stats:
        stats1.save(args.save_stats)
        print(f"saved statistics of {stats1.n} images ({stats1.extractor}) to {args.save_stats}")
    if args.path2 is not None:
        stats2 = loader(args.path2)
        print("FID: ", frechet_distance_from_stats(stats1, stats2))
    return 0


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
        return FeatureStats.load(p)

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
