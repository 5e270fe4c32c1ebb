"""``umsynth demo``: the whole method on embedded data, with a report to look at."""
from __future__ import annotations

import argparse

from umsynth.cli import hold_output
from umsynth.cli._actions import add_device, add_no_progress

#: how long ``--quick`` takes (the README says the same; tests/cli/test_readme_commands.py checks)
QUICK_TIME = "about 3 minutes of CPU time on 2 cores"

DESCRIPTION = """\
Run the SemiCS2 method end to end on umsynth's embedded data: a phantom chest-CT cohort
with few manual labels (plus the real CT slices that pydicom ships), no download, no GPU.

A paired experiment: the cohort is split into training cases, a synthesis pool and a test
set. The UM-guided model (V2UM2I) and the mask-guided baseline (V2M2I) train with the same
number of generator and discriminator updates, then each makes one image per pool case
(from its UM, from its manual mask). MM-FID, MM-STD and KID against the test images and a
utility experiment (Dice of one segmenter recipe trained with each set, several seeds) are
reported beside two controls, the pool's real images and a degraded copy, and each claim
gets a verdict ("supported", "not supported", "inconclusive at this budget") from the
interval of the difference. DIR/metrics.json and DIR/report.html. Re-running with the same
options resumes: finished stages are skipped.

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
    p.add_argument("--steps", type=int, default=None, help="generator steps per model (default 300; quick 16)")
    p.add_argument("--cases", type=int, default=None, help="phantom cases in all (default 84: 24 pool, 24 test; quick 20)")
    p.add_argument("--seed", type=int, default=0, help="seed of the cohort and the first training seed (default 0)")
    p.add_argument("--seeds", type=int, default=1, metavar="N",
                   help="training seeds (default 1); with N >= 2 the verdict's intervals come from the seeds")
    add_no_progress(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from umsynth.demo import DemoConfig, run_demo  # imports torch: only when the demo runs

    over = {k: v for k, v in (("size", args.size), ("steps", args.steps), ("n_cases", args.cases)) if v is not None}
    over.update(device=args.device, seed=args.seed, seeds=args.seeds)
    cfg = DemoConfig.quick(**over) if args.quick else DemoConfig(**over)
    hold_output(args.out, "demo")  # another umsynth process writing the folder stops us here
    metrics = run_demo(args.out, cfg, progress=not args.no_progress)
    print(f"report: {args.out}/report.html   metrics: {args.out}/metrics.json")
    for claim, v in metrics["verdict"].items():
        lo, hi = v["interval"]
        iv = "n/a" if lo is None else f"[{lo:.3g}, {hi:.3g}]"
        print(f"  {claim}: {v['verdict']} (V2UM2I - V2M2I {v['metric']} = {v['difference']}, 95 % {iv}, "
              f"unit: {v['unit']})")
    return 0

