"""scikit-image's Lab call against umsynth's fast Lab SLIC, interleaved in one process.

On a noisy machine two separate benchmark groups can run minutes apart under different
load; here each round times one scikit-image call and five umsynth calls back to back, so
the ratio compares like with like. Run: python benchmarks/slic_ratio_interleaved.py [ROUNDS]
"""
from __future__ import annotations

import sys
import time

import numpy as np
from skimage.segmentation import slic as sk_slic

import umsynth
from umsynth.samples import chest_montage


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(rounds: int = 10) -> None:
    montage, _ = chest_montage(0)
    rgb = np.stack([montage] * 3, -1)  # the original pipeline's call
    kw = dict(n_segments=512, compactness=10)
    ours = lambda: umsynth.slic(montage, intensity="lab", **kw)  # noqa: E731
    ours()
    sk_times, our_times, ratios = [], [], []
    for _ in range(rounds):
        sk_times.append(_seconds(lambda: sk_slic(rgb, **kw)))
        batch = [_seconds(ours) for _ in range(5)]
        our_times += batch
        ratios.append(sk_times[-1] / np.median(batch))
    print(f"1024^2, {rounds} rounds: scikit-image Lab median {np.median(sk_times) * 1e3:.1f} ms, "
          f"umsynth fast Lab median {np.median(our_times) * 1e3:.1f} ms "
          f"(min {min(our_times) * 1e3:.1f}); ratio of medians "
          f"{np.median(sk_times) / np.median(our_times):.1f}x, per-round ratios median "
          f"{np.median(ratios):.1f}x (range {min(ratios):.1f}x to {max(ratios):.1f}x)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
