"""Radiomics features of a GPU batch against the CPU path, for the GPU check.

Usage::

    python benchmarks/gpu/radiomics_gpu.py OUTDIR            # comparison and timing row
    python benchmarks/gpu/radiomics_gpu.py --sanitize         # a small run for compute-sanitizer

The comparison: every feature of the six classes (original image, lung ROI and whole
image, gldm_alpha 1) of torch CUDA (and CuPy, if installed) batches against the CPU
features, the largest relative difference, FAIL above 1e-6. The timing row: medians of 5
rounds after one warm-up, of features() on N 512 x 512 phantom slices (N = 32, or
UMSYNTH_GPU_RADIOMICS_N), GPU (torch, synchronised) and CPU (all cores), into
OUTDIR/radiomics_gpu.md.
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np

from umsynth import samples
from umsynth.radiomics import features

CLASSES = ("firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")


def slices(n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    pairs = [samples.chest_slice(seed=s, size=size) for s in range(n)]
    return (np.stack([p[0] for p in pairs]).astype(np.float64), np.stack([p[1] == 1 for p in pairs]))


def worst_relative(got: dict, want: dict) -> tuple[float, str]:
    worst, where = 0.0, ""
    for k, w in want.items():
        g = np.asarray(got[k], dtype=np.float64)
        both_nan = np.isnan(g) & np.isnan(w)
        r = np.where(both_nan, 0.0, np.abs(g - w) / np.maximum(np.abs(w), 1e-12))
        if r.max() > worst:
            worst, where = float(r.max()), k
    return worst, where


def main() -> int:
    import torch

    if sys.argv[1:] == ["--sanitize"]:
        img, mask = slices(2, 64)
        x = torch.from_numpy(img).cuda()
        features(x, torch.from_numpy(mask.astype(np.uint8)).cuda(), classes=CLASSES)
        features(x, classes=CLASSES, gldm_alpha=1)
        torch.cuda.synchronize()
        print("radiomics sanitize driver: ok")
        return 0
    out = sys.argv[1]
    n = int(os.environ.get("UMSYNTH_GPU_RADIOMICS_N", "32"))
    img, mask = slices(n, 512)
    rows, status = [], 0
    frameworks = [("torch", lambda a: torch.from_numpy(a).cuda())]
    try:
        import cupy

        frameworks.append(("cupy", cupy.asarray))
    except ImportError:
        pass
    for roi in (None, mask):
        want = features(img, roi, classes=CLASSES, gldm_alpha=1)
        for name, to_gpu in frameworks:
            got = features(to_gpu(img), None if roi is None else to_gpu(roi.astype(np.uint8)), classes=CLASSES,
                           gldm_alpha=1)
            worst, where = worst_relative(got, want)
            ok = worst <= 1e-6
            status |= not ok
            rows.append(f"| {name}, {'lung ROI' if roi is not None else 'whole image'} | {worst:.2e} ({where}) | "
                        f"{'PASS' if ok else 'FAIL'} |")
    x = torch.from_numpy(img).cuda()

    def gpu():
        features(x, classes=CLASSES)
        torch.cuda.synchronize()

    def cpu():
        features(img, classes=CLASSES)

    times = {}
    for label, f in (("GPU (torch)", gpu), ("CPU", cpu)):
        f()
        t = []
        for _ in range(5):
            t0 = time.perf_counter()
            f()
            t.append(time.perf_counter() - t0)
        times[label] = float(np.median(t))
    lines = ["## Radiomics features on the GPU", "",
             "| input | largest relative difference to the CPU features | result |", "|---|---|---|", *rows, "",
             f"Timing: features() of {n} phantom slices 512 x 512, six classes, whole image, median of 5:", "",
             "| path | s per batch | ms per image |", "|---|---|---|"]
    lines += [f"| {k} | {v:.3f} | {v / n * 1e3:.1f} |" for k, v in times.items()]
    tmp = os.path.join(out, "radiomics_gpu.md.tmp")
    with open(tmp, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    os.replace(tmp, os.path.join(out, "radiomics_gpu.md"))
    print("\n".join(lines))
    return status


if __name__ == "__main__":
    raise SystemExit(main())
