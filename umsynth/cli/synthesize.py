"""``umsynth synthesize``: synthetic CT montages and segmentations from a trained checkpoint."""
from __future__ import annotations

import argparse
import sys

from umsynth.cli import hold_output
from umsynth.cli._actions import add_device, add_from_checkpoint, add_no_progress
from umsynth.synth import Variety, load_generator, synthesize

DESCRIPTION = """\
Run a trained generator on unsupervised masks and write, per image, <name>_ct.png (uint8),
<name>_seg.png (classes 0 background, 1 lung, 2 lesion) and <name>_um.png (the UM used);
NIfTI inputs also get <name>_ct.nii.gz (HU) and <name>_seg.nii.gz.

INPUTS are grey montages (PNG/TIFF files or folders, or 2D NIfTI in HU) whose UMs are
computed here, or UMs themselves with --ums. With --phantom N, the UMs of N new phantom
montages are used instead.

Variety (each variant draws its own random numbers from --seed, input and variant):
  --requantize STEP  quantize the UM with STEP instead of the training step (coarser guidance)
  --jitter G         add one uniform offset in [-G, G] grey levels to every superpixel
  --reseed           new SLIC seeds: the seed grid is shifted by a random offset
  --variants K       K synthetic images per input
"""


def register(subparsers) -> None:
    """Add the ``synthesize`` sub-command to ``subparsers``."""
    p = subparsers.add_parser("synthesize", help="synthetic CT montages from a checkpoint and UMs",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="training checkpoint (RUN/checkpoints/last.pt) or run folder")
    add_from_checkpoint(p, "with a run folder, which checkpoint")
    p.add_argument("inputs", nargs="*", metavar="INPUTS", help="montage files or folders (or UMs with --ums)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    p.add_argument("--ums", action="store_true", help="INPUTS are UMs, not montages")
    p.add_argument("--phantom", type=int, metavar="N", help="use N phantom montages instead of INPUTS")
    p.add_argument("--phantom-size", type=int, default=None, metavar="S",
                   help="phantom montage size (default: the checkpoint's data.phantom_size)")
    p.add_argument("--phantom-seed", type=int, default=1000, help="phantom cohort seed (default 1000)")
    p.add_argument("--requantize", type=int, default=None, metavar="STEP", help="UM quantization step")
    p.add_argument("--jitter", type=float, default=0.0, metavar="G", help="superpixel intensity jitter")
    p.add_argument("--reseed", action="store_true", help="UMs from new SLIC seeds")
    p.add_argument("--variants", type=int, default=1, metavar="K", help="images per input (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the variety options (default 0)")
    p.add_argument("--batch-size", type=int, default=4, help="images per generator call (default 4)")
    add_device(p)
    p.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none", help="autocast on CUDA")
    add_no_progress(p)
    p.set_defaults(func=run)


def checkpoint_path(args) -> str:
    """The file that CHECKPOINT and --from-checkpoint NAME name (a file, or a run folder's checkpoint)."""
    from pathlib import Path

    from umsynth.train.checkpoint import find_checkpoint  # imports torch

    run_dir = Path(args.checkpoint)
    if args.from_checkpoint is None:
        return str(find_checkpoint(run_dir))
    if not run_dir.is_dir():
        raise ValueError(f"--from-checkpoint picks a checkpoint of a run folder; {run_dir} is not a folder")
    return str(find_checkpoint(args.from_checkpoint, run_dir))


def run(args) -> int:
    """Run ``umsynth synthesize``."""
    args.checkpoint = checkpoint_path(args)
    variety = Variety(requantize=args.requantize, jitter=args.jitter, reseed=args.reseed,
                      variants=args.variants, seed=args.seed)
    if args.phantom is not None:
        if args.inputs:
            raise ValueError("give INPUTS or --phantom N, not both")
        if args.phantom < 1:
            raise ValueError(f"--phantom must be >= 1, got {args.phantom}")
        # torch and scipy: only for --phantom
        from umsynth.data.datasets import MontageDataset
        from umsynth.data.phantom import phantom_cohort

        _, cfg = load_generator(args.checkpoint, "cpu")
        size = args.phantom_size or cfg.data.phantom_size
        cohort = phantom_cohort(args.phantom, size, args.phantom_seed, 1.0)
        inputs = MontageDataset.from_cohort(cohort, "all", tr=cfg.data.tr)
    elif args.inputs:
        inputs = args.inputs
    else:
        raise ValueError("no inputs: give montage files or folders, or --phantom N")
    failed = []

    def report(path: str, msg: str) -> None:  # one line per unreadable input; the others go on
        failed.append(path)
        print(f"umsynth synthesize: error: {msg if msg.startswith(path) else f'{path}: {msg}'}", file=sys.stderr)

    hold_output(args.out, "synthesize")  # another umsynth process writing the folder stops us here
    done = synthesize(args.checkpoint, inputs, args.out, variety=variety, batch_size=args.batch_size,
                      device=args.device, amp=args.amp, inputs_are="ums" if args.ums else "images",
                      progress=not args.no_progress, on_error=report)
    print(f"umsynth synthesize: {len(done)} images written to {args.out}"
          + (f"; {len(failed)} inputs failed" if failed else ""))
    return 2 if failed else 0
