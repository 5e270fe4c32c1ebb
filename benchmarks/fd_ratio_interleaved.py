"""frechet_distance against one numpy.linalg.eigvalsh of the d x d covariance, interleaved.

Issue 18 asks umsynth's Fréchet distance to stay within 2.5x of one symmetric eigenvalue
solve of a d x d matrix (the floor of any exact route), in the same run. On a shared machine
two benchmark groups minutes apart see different loads; here each round times one eigvalsh
and one umsynth call back to back (their order alternating), and the median of the per-round
ratios is reported, with the relative error against the benchmark's singular-value reference.

Run: python benchmarks/fd_ratio_interleaved.py [--rounds 15] [--large]
(--large adds d = 2048 and 4096: minutes per round at d = 4096 on 2 cores).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_bench_frechet import METHODS, SAMPLES, case  # noqa: E402


def _seconds(fn, args) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def rows(large: bool):
    """(d, n, method name) for the benchmark's umsynth rows: covariances for n > d, and for
    n < d both the features and the covariances."""
    for d in SAMPLES if large else (512,):
        big, small = SAMPLES[d]
        yield d, big, "umsynth"
        yield d, small, "umsynth"
        yield d, small, "umsynth-cov"


def main(rounds: int, large: bool) -> None:
    print(f"load average {os.getloadavg()[0]:.2f}, {rounds} rounds, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'default')}")
    for d, n, name in rows(large):
        c = case(d, n)
        fn, args = METHODS[name](c, n, d)
        floor = METHODS["numpy-eigvalsh"](c, n, d)
        fn(*args)  # warm-up (imports, thread pools)
        ours, theirs, ratios, rel = [], [], [], 0.0
        for r in range(rounds):
            if r % 2:
                t_fd, got = _seconds(fn, args)
                t_eig, _ = _seconds(*floor)
            else:
                t_eig, _ = _seconds(*floor)
                t_fd, got = _seconds(fn, args)
            ours.append(t_fd)
            theirs.append(t_eig)
            ratios.append(t_fd / t_eig)
            rel = max(rel, abs(got - c["ref"]) / c["ref"])
        print(f"d={d} n={n} {name:12s} umsynth median {np.median(ours) * 1e3:9.1f} ms, eigvalsh median "
              f"{np.median(theirs) * 1e3:9.1f} ms; per-round ratio median {np.median(ratios):.2f}x "
              f"(range {min(ratios):.2f}x to {max(ratios):.2f}x); rel. error {rel:.1e}", flush=True)
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--large", action="store_true", help="add d = 2048 and 4096 (minutes)")
    opts = parser.parse_args()
    main(opts.rounds, opts.large)
