"""Time the whole FRD feature extraction (``frd_stats``, FRD_SETTINGS) on 512 x 512 images.

Usage::

    python benchmarks/frd_time.py [--n 1000] [--batch 64] [--threads 2] [--repeats 1] [--kind noise]

Prints CPU (user + sys of the process, all threads) and wall seconds, per image and for
the whole run, with the load average beside them. Images: Gaussian-smoothed noise rescaled
to -1000..1000 HU ("noise") or umsynth's phantom chest slices with fresh noise ("phantom"),
made before the clock starts.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np


def make_images(kind: str, n: int, size: int = 512, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "phantom":
        from umsynth import samples

        base = np.stack([samples.chest_slice(seed=s, size=size)[0] for s in range(min(n, 16))]).astype(np.float64)
        return np.stack([base[k % len(base)] + rng.normal(0, 3, (size, size)) for k in range(n)])
    from scipy import ndimage

    out = np.empty((n, size, size))
    for k in range(n):
        x = ndimage.gaussian_filter(rng.normal(size=(size, size)), 4.0)
        out[k] = (x - x.min()) / (x.max() - x.min()) * 2000 - 1000
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--kind", choices=("noise", "phantom"), default="noise")
    a = ap.parse_args()
    from umsynth.radiomics.frd import frd_stats

    distinct = min(a.n, 64)  # images repeat past 64: the cost does not depend on which
    imgs = make_images(a.kind, distinct)

    def batches():
        for lo in range(0, a.n, a.batch):
            idx = np.arange(lo, min(a.n, lo + a.batch)) % distinct
            yield imgs[idx]

    for r in range(a.repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        frd_stats(batches(), threads=a.threads)
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        print(f"repeat {r}: n={a.n} threads={a.threads} kind={a.kind}: CPU {cpu:.2f} s ({cpu / a.n * 1e3:.1f} ms/image), "
              f"wall {wall:.2f} s ({wall / a.n * 1e3:.1f} ms/image); load {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
