"""``umsynth stats merge``: combine feature statistics computed on separate machines."""
from __future__ import annotations

import argparse
from pathlib import Path

from umsynth.cli import hold_output

DESCRIPTION = """\
Merge shards of feature statistics exactly (Chan's parallel formula for mean and
covariance): the result equals one pass over all the images, to rounding.

Each IN is either a FeatureStats .npz file (umsynth fid --save-stats, FeatureStats.save)
or a statistics folder written by `umsynth mmfid --save-stats` (one folder per set, with a
setstats.json). All INs must be of the same kind; --out OUT is written as that kind.
(The older form `umsynth stats merge OUT IN1 IN2 ...` still works.)
"""


def register(subparsers) -> None:
    """Add the ``stats`` sub-command (with its ``merge`` action) to the ``umsynth`` parser."""
    from umsynth.cli._actions import action_parser

    m = action_parser(subparsers, "stats", "feature statistics: merge shards",
                      "merge", "merge statistics shards into one", DESCRIPTION)
    m.add_argument("inputs", metavar="IN", nargs="+", help="statistics shards")
    m.add_argument("--out", metavar="OUT", help="merged statistics (.npz file, or folder for set statistics)")
    m.set_defaults(func=run_merge)


def run_merge(args: argparse.Namespace) -> int:
    """Merge the shards named in ``args.inputs`` into ``args.out``; returns 0."""
    from umsynth.cli._actions import deprecated
    from umsynth.metrics.streaming import SetStats
    from umsynth.stats import FeatureStats

    if args.out is None:  # the older form: OUT first
        if len(args.inputs) < 2:
            raise ValueError("--out OUT is required")
        deprecated("stats merge", "stats merge OUT IN ...", "stats merge IN ... --out OUT")
        args.out, args.inputs = args.inputs[0], args.inputs[1:]
    paths = [Path(p) for p in args.inputs]
    for p in paths:
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such file or folder")
    kinds = {p.is_dir() for p in paths}
    if len(kinds) != 1:
        raise ValueError("IN must be all .npz files or all statistics folders, not a mix")
    folders = kinds == {True}
    hold_output(args.out, "stats merge", file=not folders)  # a second merge into OUT stops here
    load = SetStats.load if folders else FeatureStats.load  # their errors name the file
    merged = load(paths[0])
    for p in paths[1:]:
        shard = load(p)
        try:
            merged.merge(shard)
        except ValueError as exc:
            raise ValueError(f"{p}: {exc}") from None
    merged.save(args.out)
    if folders:
        print(f"merged {len(paths)} statistics folders ({merged.n} images, {len(merged.cells)} cells) "
              f"into {args.out}")
    else:
        print(f"merged {len(paths)} files ({merged.n} samples, dim {merged.dim}) into {args.out}")
    return 0
