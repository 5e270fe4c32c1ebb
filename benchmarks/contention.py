"""Unsupervised masks under contention: 1, 2 and 4 processes side by side.

Each process makes UMs of the bundled 1024^2 montage (what DataLoader workers do when UMs
are made on the fly), call after call, all starting together. Two policies:

- ``umsynth``: umsynth's defaults (passive OpenMP wait policy, thread count cut to what
  is free when more threads are runnable than cores: umsynth.kernels.config);
- ``spin``: the behaviour before (threads spin about 300k rounds before they sleep, all
  cores per process): OMP_WAIT_POLICY=active, GOMP_SPINCOUNT=300000, threads=cores.

Each call's time is compared with its fair share of the cores: a process alone gets all
of them (the fair time is its own time alone, t_alone); P processes on C cores get C/P
each, so a call's fair time is ``max(t_alone, t_1 * P / C)`` with t_1 the time of one
call on one thread alone (the call's CPU work). The goal is a ratio within 1.3.

Usage: ``python benchmarks/contention.py [--calls 6] [--procs 1 2 4]``. Prints a table;
the figures go into benchmarks/RESULTS.md with the machine's load at the time (other
jobs on the machine count as contention too).
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import time


def _load_montage():
    import numpy as np
    from PIL import Image

    from umsynth.data.samples import bundled

    path = next(p for p in bundled() if "montage" in p.name)
    return np.asarray(Image.open(path))


def _worker(policy, calls, threads, start, out):
    if policy == "spin":
        os.environ["OMP_WAIT_POLICY"] = "active"
        os.environ["GOMP_SPINCOUNT"] = "300000"
    import umsynth  # after the environment: libgomp reads it when it is loaded

    img = _load_montage()
    umsynth.unsupervised_mask(img, threads=threads)  # warm-up (scratch, page faults)
    start.wait()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        umsynth.unsupervised_mask(img, threads=threads)
        times.append(time.perf_counter() - t0)
    out.put(times)


def run(policy, procs, calls, threads=None):
    """Per-call times (s) of `procs` processes started together, one list per process."""
    ctx = mp.get_context("spawn")  # a fresh libgomp per process, with its own environment
    start, out = ctx.Barrier(procs), ctx.Queue()
    ps = [ctx.Process(target=_worker, args=(policy, calls, threads, start, out)) for _ in range(procs)]
    for p in ps:
        p.start()
    res = [out.get() for _ in ps]
    for p in ps:
        p.join()
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=6)
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2, 4])
    args = ap.parse_args(argv)
    from umsynth.kernels.config import usable_cores

    cores = usable_cores()
    print(f"cores: {cores}, load average at start: {os.getloadavg()}")
    t1 = statistics.median(run("umsynth", 1, args.calls, threads=1)[0])
    alone = {pol: statistics.median(run(pol, 1, args.calls, threads=cores if pol == "spin" else None)[0])
             for pol in ("umsynth", "spin")}
    print(f"one thread alone: {t1 * 1e3:.0f} ms; alone, default threads: "
          f"umsynth {alone['umsynth'] * 1e3:.0f} ms, spin {alone['spin'] * 1e3:.0f} ms")
    print(f"{'policy':>8} {'procs':>5} {'fair ms':>8} {'median ms':>10} {'worst ms':>9} "
          f"{'median/fair':>11} {'worst/fair':>10}")
    for procs in args.procs:
        for pol in ("umsynth", "spin"):
            res = run(pol, procs, args.calls, threads=cores if pol == "spin" else None)
            fair = max(alone["umsynth"], t1 * procs / cores)
            flat = [t for r in res for t in r]
            med, worst = statistics.median(flat), max(statistics.median(r) for r in res)
            print(f"{pol:>8} {procs:>5} {fair * 1e3:8.0f} {med * 1e3:10.0f} {worst * 1e3:9.0f} "
                  f"{med / fair:11.2f} {worst / fair:10.2f}")
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
