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
call on one thread alone (the call's CPU work). The goal is a ratio within 1.3 for every
process: the table gives the median call and the slowest process's median call.

The measurement is repeated in rounds; each round measures t_1 and t_alone again just
before its side-by-side runs, and the table gives the median over rounds of each round's
ratios, so a load that changes during the run moves both sides of a ratio alike. The
fair share assumes that nothing else runs: the column ``others`` is the median number of
runnable threads that are not the benchmark's, sampled during the runs (Linux); above
zero, the machine was not quiet and the ratios include that load.

Usage: ``python benchmarks/contention.py [--calls 6] [--rounds 3] [--procs 1 2 4]``.
"""
from __future__ import annotations

import argparse
import glob
import multiprocessing as mp
import os
import queue
import statistics
import time

POLICIES = ("umsynth", "spin")


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


def _runnable(pid: int) -> int:
    """Runnable threads of process `pid` (0 once it is gone)."""
    n = 0
    for stat in glob.glob(f"/proc/{pid}/task/*/stat"):
        try:
            with open(stat, encoding="ascii", errors="replace") as f:
                text = f.read()
        except OSError:
            continue
        n += text[text.rfind(")") + 2:].startswith("R")
    return n


def _others(pids) -> float | None:
    """Runnable threads on the machine now that are neither this process nor `pids`'s."""
    try:
        with open("/proc/loadavg", encoding="ascii") as f:
            total = int(f.read().split()[3].split("/")[0])
    except (OSError, IndexError, ValueError):
        return None
    return max(0, total - 1 - sum(_runnable(p) for p in pids))


def run(policy, procs, calls, threads=None):
    """`procs` processes started together: (per-call times in s, one list per process;
    the median count of other runnable threads sampled meanwhile, or None)."""
    ctx = mp.get_context("spawn")  # a fresh libgomp per process, with its own environment
    start, out = ctx.Barrier(procs), ctx.Queue()
    ps = [ctx.Process(target=_worker, args=(policy, calls, threads, start, out)) for _ in range(procs)]
    for p in ps:
        p.start()
    res, seen, dead = [], [], 0
    while len(res) < procs:
        try:
            res.append(out.get(timeout=0.02))
        except queue.Empty:
            seen.append(_others([p.pid for p in ps]))
            dead = dead + 1 if not any(p.is_alive() for p in ps) else 0
            if dead > 100:  # two seconds after the last one ended: a worker failed
                raise RuntimeError(f"{policy}: {procs - len(res)} of {procs} processes gave no result")
    for p in ps:
        p.join()
    seen = [s for s in seen if s is not None]
    return res, (statistics.median(seen) if seen else None)


def one_round(procs_list, calls, cores):
    """One round: t_1, t_alone, then each process count under each policy.
    Returns ({(policy, procs): (fair, per-process medians, all calls, others)}, t_1, alone)."""
    t1 = statistics.median(run("umsynth", 1, calls, threads=1)[0][0])
    alone = {pol: statistics.median(run(pol, 1, calls, threads=cores if pol == "spin" else None)[0][0])
             for pol in POLICIES}
    rows = {}
    for procs in procs_list:
        fair = max(alone["umsynth"], t1 * procs / cores)
        for pol in POLICIES:
            res, others = run(pol, procs, calls, threads=cores if pol == "spin" else None)
            rows[pol, procs] = (fair, [statistics.median(r) for r in res], [t for r in res for t in r], others)
    return rows, t1, alone


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=6, help="calls per process and run (default 6)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds; ratios are medians over rounds (default 3)")
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2, 4])
    args = ap.parse_args(argv)
    if args.calls < 1 or args.rounds < 1 or min(args.procs) < 1:
        ap.error("--calls, --rounds and --procs must be >= 1")
    from umsynth.kernels.config import usable_cores

    cores = usable_cores()
    print(f"cores: {cores}; {args.rounds} rounds of {args.calls} calls per process; "
          f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    rounds = []
    for r in range(args.rounds):
        rows, t1, alone = one_round(args.procs, args.calls, cores)
        rounds.append(rows)
        print(f"round {r + 1}: one thread alone {t1 * 1e3:.0f} ms; alone with default threads: "
              f"umsynth {alone['umsynth'] * 1e3:.0f} ms, spin {alone['spin'] * 1e3:.0f} ms", flush=True)

    def med(values):
        return statistics.median(values)

    head = (f"{'policy':>8} {'procs':>5} {'fair ms':>8} {'median ms':>10} {'slowest ms':>11} "
            f"{'median/fair':>11} {'slowest/fair':>12} {'others':>6}")
    print("medians over rounds; slowest: the slowest process's median call")
    print(head)
    print("-" * len(head))
    for procs in args.procs:
        for pol in POLICIES:
            got = [rows[pol, procs] for rows in rounds]
            fair = med([g[0] for g in got])
            median = med([med(g[2]) for g in got])
            slowest = med([max(g[1]) for g in got])
            r_med = med([med(g[2]) / g[0] for g in got])
            r_slow = med([max(g[1]) / g[0] for g in got])
            others = [g[3] for g in got if g[3] is not None]
            o = f"{med(others):6.1f}" if others else f"{'n/a':>6}"
            print(f"{pol:>8} {procs:>5} {fair * 1e3:8.0f} {median * 1e3:10.0f} {slowest * 1e3:11.0f} "
                  f"{r_med:11.2f} {r_slow:12.2f} {o}")
    print(f"load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
