"""``umsynth prepare``: CT volumes with masks -> SemiCS2 montages, label montages and UMs."""
from __future__ import annotations

import argparse
import sys

from umsynth.cli import hold_output
from umsynth.cli._actions import add_no_progress, deprecated
from umsynth.cli.masks import check_args as check_um_args

DESCRIPTION = """\
Turn CT volumes and their lung/lesion masks into SemiCS2 training data: a 2x2 montage of four
axial slices of the lung range (HU window [-1500, 100] -> 0..255 by default, 10 % of the lung
z-range trimmed at each end), its label montage, and its unsupervised mask (UM).

Pairing rule, in VOLUMES_DIR (one level deep):
  <case>.nii.gz or <case>.nii          a CT volume (names ending in _mask are masks)
  <case>/                              a DICOM series folder (any sub-folder except masks/)
  <case>_mask.nii.gz or <case>_mask.nii  its mask, beside it, or
  masks/<case>.nii.gz or masks/<case>.nii
Each CT needs exactly one mask, a NIfTI of the same shape with classes 0 background/body,
1 lung, 2 lesion (values above 2 count as lesion). Other files are ignored.

Writes, in OUT_DIR: images/<case>.png, labels/<case>.png, ums/<case>.png,
superpixels/<case>.png (SLIC labels, 16-bit) and cases/<case>.json (sources, slices,
settings; written last). A rerun skips cases finished with the same settings. A bad case
gets one error line naming the file and the reason, leaves nothing behind, and the batch
goes on. To train semi-supervised, list the cases whose labels may be used in
OUT_DIR/labelled.txt (one name per line); without that file every case counts as labelled.
Exit status: 0 when every case is done, 2 when some case failed or for bad arguments.
"""


def register(subparsers) -> None:
    """Add the ``prepare`` sub-command to ``subparsers``."""
    p = subparsers.add_parser("prepare", help="CT volumes + masks -> montages, label montages and UMs",
                              description=DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("volumes_dir", metavar="VOLUMES_DIR", help="folder of CT volumes and masks")
    p.add_argument("old_out", metavar="OUT_DIR", nargs="?", help=argparse.SUPPRESS)  # deprecated form
    p.add_argument("--out", dest="out_dir", metavar="OUT_DIR", help="output folder (created if missing)")
    p.add_argument("--window", type=float, nargs=2, default=(-1500.0, 100.0), metavar=("LOW", "HIGH"),
                   help="HU window mapped to 0..255 (default -1500 100)")
    p.add_argument("--trim", type=float, default=0.1,
                   help="fraction of the lung z-range cut at each end (default 0.1)")
    p.add_argument("--n-segments", type=int, default=512, help="approximate number of superpixels (default 512)")
    p.add_argument("--compactness", type=float, default=10.0, help="SLIC compactness (default 10)")
    p.add_argument("--step", type=int, default=10, help="quantization step of the UM on 0..255 (default 10)")
    p.add_argument("--intensity", choices=("lab", "linear"), default="lab",
                   help="SLIC intensity space (default lab, as the original)")
    p.add_argument("--overwrite", action="store_true", help="redo cases that are already finished")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads (default: all)")
    add_no_progress(p)
    p.set_defaults(func=run)


def _check_args(args) -> None:
    if args.old_out is not None:
        if args.out_dir is not None:
            raise ValueError("give the output folder once, as --out OUT_DIR")
        deprecated("prepare", "prepare VOLUMES_DIR OUT_DIR", "prepare VOLUMES_DIR --out OUT_DIR")
        args.out_dir = args.old_out
    if args.out_dir is None:
        raise ValueError("--out OUT_DIR is required")
    check_um_args(args)  # --n-segments, --step, --compactness, --threads: as `umsynth masks`
    if not 0 <= args.trim < 0.5:
        raise ValueError(f"--trim must be in [0, 0.5), got {args.trim}")
    if not args.window[0] < args.window[1]:
        raise ValueError(f"--window must have LOW < HIGH, got {args.window[0]} {args.window[1]}")


def run(args) -> int:
    """Run ``umsynth prepare``; returns 0, or 2 if any case failed."""
    from tqdm import tqdm

    from umsynth.data.prepare import PrepareConfig, prepare
    from umsynth.masks import UMConfig

    _check_args(args)
    config = PrepareConfig(window=tuple(args.window), trim=args.trim,
                           um=UMConfig(n_segments=args.n_segments, compactness=args.compactness,
                                       step=args.step, intensity=args.intensity))

    def report(name: str, msg: str) -> None:
        tqdm.write(f"umsynth prepare: error: {msg}", file=sys.stderr)

    hold_output(args.out_dir, "prepare")  # another umsynth process writing OUT_DIR stops us here
    summary = prepare(args.volumes_dir, args.out_dir, config, overwrite=args.overwrite,
                      threads=args.threads, progress=not args.no_progress, on_error=report)
    print(f"umsynth prepare: {summary.line()}; outputs in {args.out_dir}")
    return 2 if summary.failed else 0
