"""``umsynth demo``: the whole method on embedded data, with a report to look at."""
from __future__ import annotations

import argparse

from umsynth.cli import hold_output
from umsynth.cli._actions import add_device, add_no_progress

#: how long ``--quick`` takes (the README says the same; tests/cli/test_readme_commands.py checks)
QUICK_TIME = "under 2 minutes on 2 CPU cores"

DESCRIPTION = """\
Run the SemiCS2 method end to end on umsynth's embedded data: a phantom chest-CT cohort
with few manual labels (plus the real CT slices that pydicom ships), no download, no GPU.

Stages: cohort and UMs; training of the UM-guided model (V2UM2I) and of the mask-guided
baseline (V2M2I) on the same budget; a synthetic set from each; a CT extractor suite and
MM-FID / MM-STD against held-out real images with a Wilcoxon test; utility (Dice of a small
segmenter trained with and without the synthetic pairs); DIR/metrics.json and
DIR/report.html. Re-running with the same options resumes: finished stages are skipped.

Defaults take about 15 minutes on 2 CPU cores; --quick (a smoke test, not a result) takes
{quick}.
"""


def register(subparsers) -> None:
    """Add the ``demo`` sub-command to ``subparsers``."""
    p = subparsers.add_parser("demo", help="the whole method on embedded data, with report.html",
                              description=DESCRIPTION.format(quick=QUICK_TIME), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="out/demo", metavar="DIR", help="output folder (default out/demo)")
    p.add_argument("--quick", action="store_true", help=f"a tiny smoke test ({QUICK_TIME})")
    add_device(p)
    p.add_argument("--size", type=int, default=None, help="montage side in pixels (default 128; quick 64)")
    p.add_argument("--steps", type=int, default=None, help="generator steps per model (default 450; quick 16)")
    p.add_argument("--cases", type=int, default=None, help="phantom cases in all (default 60; quick 16)")
    p.add_argument("--seed", type=int, default=0, help="seed of the cohort and of every run (default 0)")
    add_no_progress(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from umsynth.demo import DemoConfig, run_demo  # imports torch: only when the demo runs

    over = {k: v for k, v in (("size", args.size), ("steps", args.steps), ("n_cases", args.cases)) if v is not None}
    over.update(device=args.device, seed=args.seed)
    cfg = DemoConfig.quick(**over) if args.quick else DemoConfig(**over)
    hold_output(args.out, "demo")  # another umsynth process writing the folder stops us here
    metrics = run_demo(args.out, cfg, progress=not args.no_progress)
    mm = metrics["mmfid"]
    print(f"report: {args.out}/report.html   metrics: {args.out}/metrics.json")
    for name, s in mm.get("reference_normalized", {}).items():
        print(f"  {name}: MM-FID {s['mm_fid']:.3f}  MM-STD {s['mm_std']:.3f}  (reference-normalized)")
    for arm, u in metrics["utility"].items():
        d = u["mean_foreground"]
        print(f"  utility {arm}: mean Dice {'n/a' if d is None else f'{d:.3f}'}")
    return 0

