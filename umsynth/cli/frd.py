"""``umsynth frd``: Fréchet Radiomics Distance between two image folders or statistics files."""
from __future__ import annotations

import argparse
from pathlib import Path

DESCRIPTION = """\
Fréchet Radiomics Distance (FRD) between a real and a synthetic set of 2D images.

FRD: R. Osuala et al., "Towards learning contrast kinetics with multi-condition latent
diffusion models", arXiv:2403.13890 (2024); N. Konz, R. Osuala et al., "Fréchet Radiomic
Distance (FRD): a versatile metric for comparing medical imaging datasets", Medical Image
Analysis, 103943 (2026), arXiv:2412.01496.

Each PATH is a folder of images (PNG, JPG, TIFF or BMP; colour is converted to grey) or a
statistics .npz written by --save-stats. The features are umsynth's C++ radiomics with
FRD v1's 2D settings: each image normalised to mean 0 and standard deviation 100,
resampled to 2 mm pixels (B-spline; pixels are taken as 1 mm), then the original, the
Laplacian of Gaussian at sigma 2, 3, 4, 5 mm and the four coif1 wavelet bands; first
order (shift 300), GLCM, GLRLM, GLSZM and NGTDM at bin width 5: 693 features. They are
z-scored with the REAL set's mean and standard deviation; FRD = log(d2), d2 the squared
Fréchet distance of the two feature Gaussians, computed exactly (no sqrtm).

How the numbers relate to frd-score's (v1): same formula and settings, but frd-score also
feeds pyradiomics' numeric diagnostics (e.g. the image mean) into the features, rounds them
to float32, drops a corner pixel of whole-image masks, and - storing 2D images as
one-pixel-thick volumes - gets no LoG features from pyradiomics; umsynth's LoG is a sampled
Gaussian, not SimpleITK's recursive one. Compare umsynth FRDs with each other, not with
published frd-score values. Lower is more similar.
"""


def register(subparsers) -> None:
    """Add the ``frd`` sub-command to the ``umsynth`` parser.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        From ``ArgumentParser.add_subparsers``.
    """
    p = subparsers.add_parser("frd", help="Fréchet Radiomics Distance between two image folders or statistics",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("real", metavar="REAL", help="folder of real images, or a statistics .npz")
    p.add_argument("synthetic", metavar="SYN", nargs="?",
                   help="folder of synthetic images, or a statistics .npz (optional with --save-stats)")
    p.add_argument("--save-stats", metavar="DIR",
                   help="save the raw feature statistics of REAL under DIR as <REAL's name>.npz, as "
                        "'umsynth fid' does (a path ending in .npz is taken as the file itself); "
                        "mergeable with 'umsynth stats merge'; with SYN as well, the FRD is also printed")
    p.add_argument("--spacing", type=float, default=1.0, metavar="MM", help="pixel spacing in mm (default 1)")
    p.add_argument("--batch-size", type=int, default=64, help="images per batch (default 64)")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads (default: all)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Compute and print the FRD (and save statistics) for parsed ``umsynth frd`` arguments.

    Returns
    -------
    int
        0 on success. Bad input raises ValueError, which ``umsynth`` prints as one line.
    """
    from umsynth.radiomics.frd import frd

    if args.synthetic is None and not args.save_stats:
        raise ValueError("give REAL and SYN (image folders or .npz statistics), or REAL with --save-stats DIR")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if not args.spacing > 0:
        raise ValueError(f"--spacing must be > 0, got {args.spacing}")
    for path in (args.real, args.synthetic):
        if path is not None:
            _check_path(path)
    real = _stats(args.real, args)
    if args.save_stats:
        out = Path(args.save_stats)
        if out.suffix.lower() != ".npz":
            out.mkdir(parents=True, exist_ok=True)
            out = out / f"{Path(args.real).resolve().stem or 'real'}.npz"
        real.save(out)
        print(f"saved statistics of {real.n} images ({real.extractor}) to {out}")
    if args.synthetic is not None:
        result = frd(real, _stats(args.synthetic, args), spacing=(args.spacing,) * 2)
        print(f"FRD: {result.frd}")
        print(f"squared distance: {result.distance}  ({len(result.features)} features, "
              f"{len(result.dropped)} constant over REAL left out; {result.n_real} real, "
              f"{result.n_synthetic} synthetic images)")
    return 0


def _check_path(path: str) -> Path:
    p = Path(path)
    if p.is_dir():
        return p
    if p.is_file():
        if p.suffix.lower() != ".npz":
            raise ValueError(f"{p}: expected a folder of images or a .npz statistics file")
        return p
    raise ValueError(f"{p}: no such folder or file")


def _stats(path: str, args: argparse.Namespace):
    from umsynth.radiomics.frd import frd_stats
    from umsynth.stats import FeatureStats

    p = _check_path(path)
    if p.is_file():
        return FeatureStats.load(p)
    return frd_stats(_folder_batches(p, args.batch_size), spacing=(args.spacing,) * 2,
                     threads=args.threads)


def _folder_batches(folder: Path, batch_size: int):
    """Batches of equal-size grey images from a folder, in name order."""
    import numpy as np

    from umsynth.files import list_images, read_image

    batch: list = []
    for path in list_images(folder):
        img = read_image(path)
        if img.ndim == 3:  # ITU-R 601 luma
            img = img @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        if batch and (img.shape != batch[0].shape or len(batch) == batch_size):
            yield np.stack(batch)
            batch = []
        batch.append(img)
    if batch:
        yield np.stack(batch)
