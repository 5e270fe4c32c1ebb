"""Small Fréchet-distance driver for compute-sanitizer (memcheck, racecheck).

Runs the polar-iteration kernels on shapes that are not multiples of the 64 x 64 tile,
tall and square, batched, with the tiled GEMM and its portable twin, and checks each
result against the CPU reference. Exit status 0 only if every result agrees.

    compute-sanitizer --tool memcheck python benchmarks/gpu/fd_sanitize.py
"""
from __future__ import annotations

import sys

import numpy as np


def main() -> int:
    import torch

    import umsynth
    from umsynth.kernels.polar import PolarConfig

    rng = np.random.default_rng(0)
    bad = 0
    for d, n, batch in ((70, 200, 3), (33, 20, 2)):  # full rank; rank-deficient (n < d)
        w = rng.standard_normal((d, d)) / np.arange(1, d + 1)
        sets = [np.maximum(rng.standard_normal((n, d)) @ w.T, 0.0) for _ in range(2 * batch)]
        mus = np.stack([x.mean(0) for x in sets])
        sig = np.stack([np.cov(x, rowvar=False) for x in sets])
        want = umsynth.frechet_distance_batch(mus[:batch], sig[:batch], mus[batch:], sig[batch:], method="svd")
        for portable in (False, True):
            cfg = PolarConfig(portable=portable)
            args = (torch.from_numpy(a).cuda() for a in (mus[:batch], sig[:batch], mus[batch:], sig[batch:]))
            got = umsynth.frechet_distance_batch(*args, config=cfg).cpu().numpy()
            err = np.abs(got - want) / want
            ok = bool(np.all(err <= 1e-6))
            bad += not ok
            print(f"d={d} n={n} batch={batch} portable={portable}: max rel. error {err.max():.2e} "
                  f"{'ok' if ok else 'FAIL'}")
    # a non-square cross-product (Gram route): statistics with kept features on the GPU
    a, b = umsynth.FeatureStats(40, keep_features=True), umsynth.FeatureStats(40, keep_features=True)
    xa, xb = rng.standard_normal((25, 40)), rng.standard_normal((31, 40))
    a.update(torch.from_numpy(xa).cuda())
    b.update(torch.from_numpy(xb).cuda())
    got = umsynth.frechet_distance_from_stats(a, b)
    want = umsynth.frechet_distance_features(xa, xb, method="svd")
    ok = abs(got - want) <= 1e-6 * want
    bad += not ok
    print(f"Gram route 24 x 30: rel. error {abs(got - want) / want:.2e} {'ok' if ok else 'FAIL'}")
    torch.cuda.synchronize()
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
