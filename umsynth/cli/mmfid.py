"""``umsynth mmfid``: MM-FID and MM-STD of synthetic image sets against a real set."""
from __future__ import annotations

import argparse
from pathlib import Path

DESCRIPTION_HEAD = """\
MM-FID and MM-STD (multi-model, multi-scale Fréchet distance and variety) of one or more
synthetic image folders against a real image folder, with an extractor suite trained by
`umsynth extractors train` (optionally plus InceptionV3 from a local weights file).
Images are read once, in a single streaming pass per set.

REAL and SYN may also be statistics folders written by --save-stats (merged shards too).

"""


def register(subparsers) -> None:
    """Add the ``mmfid`` sub-command to the ``umsynth`` parser."""
    from umsynth.metrics.mmfid import DEFINITIONS

    p = subparsers.add_parser("mmfid", help="MM-FID and MM-STD of synthetic image folders against real images",
                              description=DESCRIPTION_HEAD + DEFINITIONS,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("real", metavar="REAL", help="folder of real images (or a statistics folder)")
    p.add_argument("synthetic", metavar="SYN", nargs="+", help="folder(s) of synthetic images")
    p.add_argument("--suite", required=True, metavar="SUITE", help="extractor suite (.safetensors)")
    p.add_argument("--out", metavar="metrics.json", help="write all tables and summaries as JSON (atomically)")
    p.add_argument("--scales", type=int, nargs="+", metavar="PX", help="override the suite's scales")
    p.add_argument("--normalization", choices=("auto", "reference", "cross-set"), default="auto",
                   help="auto (default) = reference: the calibrated ratio (1 = like real data); cross-set: "
                        "MedSynAnalyzer's L2 normalization across sets (ranks sets only)")
    p.add_argument("--inception-weights", metavar="FILE",
                   help="add torchvision's InceptionV3 with this local state dict as a suite member "
                        "(needs torchvision; never downloads)")
    p.add_argument("--batch-size", type=int, default=32, help="images per batch (default 32)")
    p.add_argument("--device", default="cpu", help="torch device: cpu (default) or cuda[:N]")
    p.add_argument("--bootstrap", type=int, default=0, metavar="B",
                   help="resamples of images for the intervals of MM-FID, MM-STD and KID, and for each pair of "
                        "sets' difference (B bootstrap draws and B permutations; 200 is a good value; "
                        "default 0: none)")
    p.add_argument("--knn-reference", metavar="DIR",
                   help="the generator's training images, for --knn (default: REAL); REAL's own rates "
                        "against it are printed beside them as the chance level")
    p.add_argument("--knn", action="store_true", help="k-NN copy / real / non-real sets (k=5) in --cell")
    p.add_argument("--tsne", metavar="PNG", help="t-SNE plot of real and synthetic features in --cell")
    p.add_argument("--cell", metavar="NAME:PX",
                   help="cell for --knn and --tsne (default: the last extractor at the largest scale)")
    p.add_argument("--keep", type=int, metavar="N",
                   help="features kept per set and cell for the extras (default 2000)")
    p.add_argument("--save-stats", metavar="DIR", help="save each set's statistics under DIR")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the kept sample, the reference's splits, bootstrap and t-SNE")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``umsynth mmfid`` and print the tables; returns 0."""
    from umsynth.metrics.mmfid import mmfid

    for path in [args.real, *args.synthetic]:
        if not Path(path).is_dir():
            raise ValueError(f"{path}: no such folder")
    if not Path(args.suite).is_file():
        raise FileNotFoundError(f"suite file not found: {args.suite}")
    cell = None
    if args.cell:
        name, sep, px = args.cell.rpartition(":")
        if not sep or not px.isdigit():
            raise ValueError(f"--cell must be NAME:PX, e.g. ct-degradation:1024, got {args.cell!r}")
        cell = (name, int(px))
    from umsynth.extractors import inception_member, load_suite

    suite = load_suite(args.suite, args.device if args.device.startswith("cuda") else "cpu")
    if args.inception_weights:
        suite = suite.with_member(inception_member(args.inception_weights, args.device))
    sets = {}
    for path in args.synthetic:
        base = Path(path).resolve().name or "synthetic"
        name, i = base, 2
        while name in sets:
            name, i = f"{base}-{i}", i + 1
        sets[name] = path
    real = args.real
    result = mmfid(real, sets, suite, scales=args.scales, batch_size=args.batch_size, device=args.device,
                   normalization=args.normalization, keep=args.keep, bootstrap=args.bootstrap, knn=args.knn,
                   cell=cell, tsne=args.tsne, save_stats=args.save_stats, seed=args.seed,
                   progress=not args.no_progress, knn_reference=args.knn_reference)
    _print(result)
    if args.out:
        result.save(args.out)
        print(f"wrote {args.out}")
    return 0


def _interval(result, name: str, metric: str) -> str:
    got = result.extras.get("intervals", {}).get(name, {}).get(metric)
    if not got:
        return ""
    lo, hi = got["interval"]
    return f" [{lo:.4g}, {hi:.4g}]"


def _print(result) -> None:
    width = max(len(e) for e in result.extractors) + 2
    head = "".join(f"{s:>12d}" for s in result.scales)
    print(f"real: {result.n_real} images; normalization: {result.normalization}")
    if result.reference.get("status") == "small":
        print(f"warning: {result.reference['message']}")
    for name in result.fd:
        print(f"\n{name} ({result.n_syn[name]} images)")
        tables = [("FD", result.fd[name]), ("FD normalized", result.fd_norm[name]),
                  ("STD", result.std[name]), ("STD normalized", result.std_norm[name])]
        if name in result.kid_norm:
            tables.append(("KID normalized", result.kid_norm[name]))
        for title, tab in tables:
            print(f"  {title:<{width}}{head}")
            for e, row in zip(result.extractors, tab):
                print(f"  {e:<{width}}" + "".join(f"{v:12.5g}" for v in row))
        (m, sd), (ms, ssd) = result.mm_fid[name], result.mm_std[name]
        line = (f"  MM-FID {m:.4f}{_interval(result, name, 'mm_fid')} (cells' std {sd:.4f})   "
                f"MM-STD {ms:.4f}{_interval(result, name, 'mm_std')}")
        if name in result.mm_kid:
            line += f"   KID {result.mm_kid[name][0]:.4g}{_interval(result, name, 'kid')}"
        print(line)
        if result.extras.get("intervals"):
            conf = result.extras["intervals"][name]["mm_fid"]["confidence"]
            print(f"  [ ]: {conf:.0%} intervals, bootstrap over {result.extras['intervals'][name]['mm_fid']['unit']}")
    for pair, by_metric in result.extras.get("comparisons", {}).items():
        for metric, r in by_metric.items():
            lo, hi = r["interval"]
            print(f"{pair} {metric}: difference {r['difference']:+.4g} [{lo:+.4g}, {hi:+.4g}], "
                  f"p = {r['p_value']:.3g} (unit: {r['unit']})")
    for pair, r in result.extras.get("wilcoxon", {}).items():
        print(f"Wilcoxon over cells (the paper's test; cells are not independent) {pair}: "
              f"FD p={r['fd']['pvalue']:.4g}, STD p={r['std']['pvalue']:.4g}")
    for name, r in result.extras.get("knn", {}).items():
        if "fractions" in r:
            print(f"k-NN sets {name}: " + ", ".join(f"{k} {v:.1%}" for k, v in r["fractions"].items()))
