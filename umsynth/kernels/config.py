"""Build and run-time configuration: thread caps, wait policy, which compiled modules exist.

Contention: OpenMP threads that spin while they wait take cores from every other
process. Unless the user chose otherwise, the OpenMP wait policy is set to passive
here, before ``umsynth._cpu`` (and with it libgomp) is loaded, and the default thread
count shrinks to a fair share of the cores when more threads are runnable than cores,
and inside a torch DataLoader worker (:func:`default_threads`).
"""
from __future__ import annotations

import math
import os
import sys

import numpy as np

# libgomp reads these once, when it is loaded: before the import below. A value the
# user set is kept. Passive: an idle OpenMP thread sleeps at once instead of spinning
# (the four processes on two cores took 4-6x their fair share while spinning).
os.environ.setdefault("OMP_WAIT_POLICY", "passive")
if os.environ["OMP_WAIT_POLICY"].strip().lower() == "passive":
    os.environ.setdefault("GOMP_SPINCOUNT", "0")

from umsynth import _cpu  # noqa: E402 - after the environment above, on purpose

_ENV = "UMSYNTH_NUM_THREADS"
# More threads than this are refused: no kernel gains from them, and libgomp ends the
# process (or crashes) when it cannot create them (50000 did, 100000 segfaulted).
MAX_THREADS = 1024
_threads: int | None = None


def check_threads(n, name: str = "threads") -> int:
    """``n`` as an int in 1..MAX_THREADS, else a ValueError/TypeError naming `name`."""
    if isinstance(n, str):
        try:
            n = int(n.strip())
        except ValueError:
            raise ValueError(f"{name}={n!r} is not an integer") from None
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {n!r}")
    n = int(n)
    if not 1 <= n <= MAX_THREADS:
        raise ValueError(f"{name} must be between 1 and {MAX_THREADS}, got {n}")
    return n


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _runnable_elsewhere() -> float:
    """Threads runnable now besides this one: /proc/loadavg's count of runnable
    entities (it includes the reader), else the one-minute load average."""
    try:
        with open("/proc/loadavg", encoding="ascii") as f:
            return max(0.0, float(f.read().split()[3].split("/")[0]) - 1.0)
    except (OSError, IndexError, ValueError):
        try:
            return max(0.0, os.getloadavg()[0] - 1.0)
        except (AttributeError, OSError):
            return 0.0


def _dataloader_workers() -> int:
    """The number of DataLoader workers when called inside one, else 0 (torch is
    consulted only if the caller already imported it)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return 0
    try:
        info = torch.utils.data.get_worker_info()
    except AttributeError:
        return 0
    return int(info.num_workers) if info is not None else 0


def fair_share_threads(limit: int, cores: int, busy: float, workers: int = 0) -> int:
    """The thread count of a call: `limit` cut to a fair share of `cores` (pure).

    Parameters
    ----------
    limit : int
        The most threads a call may take (OpenMP's default).
    cores : int
        Cores this process may run on.
    busy : float
        Threads runnable now besides the caller.
    workers : int
        DataLoader workers when the caller is one, else 0.

    Returns
    -------
    int
        Inside a DataLoader worker at most ``cores // workers``. When more threads would
        be runnable than there are cores, the larger of the free cores and
        ``cores // (1 + ceil(busy / cores))``: a count of threads cannot tell one process
        holding every core from as many single-threaded ones, so the others are counted
        as ``ceil(busy / cores)`` processes that fill the machine each. Without that
        second term a process that came second kept one thread beside one that took
        every core (on 16 cores, 1/8 of its fair share). The price: beside many
        single-threaded processes it takes a little more than an even share (2 threads
        beside 100 others on 16 cores). On 2 cores both terms give 1. At least 1.
    """
    n = limit
    if workers > 0:
        n = min(n, max(1, cores // workers))
    if busy + n > cores:
        share = cores // (1 + math.ceil(busy / cores))
        n = min(n, max(int(cores - busy), share))
    return max(1, n)


def default_threads() -> int:
    """Threads for a call that names none: OpenMP's default, cut to a fair share.

    Inside a torch DataLoader worker: the cores divided among the workers. Whenever
    more threads are runnable than there are cores: what is free, or a share as if the
    others were whole-machine processes, whichever is more (:func:`fair_share_threads`).
    Alone a process uses every core; on two cores under contention it takes one thread.
    """
    limit = min(int(_cpu.max_threads()), MAX_THREADS)
    return fair_share_threads(limit, usable_cores(), _runnable_elsewhere(), _dataloader_workers())


def set_num_threads(n: int | None) -> None:
    """Cap the threads the C++ kernels use (None: back to the default).

    The default is the ``UMSYNTH_NUM_THREADS`` environment variable, else the OpenMP
    default (all cores), cut to a fair share under contention (:func:`default_threads`).
    A ``threads=`` argument on a call overrides both. At most ``MAX_THREADS`` (1024).
    """
    global _threads
    if n is not None:
        n = check_threads(n, "set_num_threads(n)")
    _threads = n


def get_num_threads() -> int:
    """The thread count kernels will use when a call passes no ``threads=``."""
    return resolve_threads(None)


def resolve_threads(threads: int | None) -> int:
    """Resolve a ``threads=`` argument against the global cap and the environment.

    An explicit count (argument, :func:`set_num_threads`, ``UMSYNTH_NUM_THREADS``) is
    used as given, within 1..MAX_THREADS; otherwise :func:`default_threads`.
    """
    if threads is not None:
        return check_threads(threads)
    if _threads is not None:
        return _threads
    env = os.environ.get(_ENV, "").strip()
    if env:
        return check_threads(env, _ENV)
    return default_threads()


def cuda_status() -> tuple[bool, str]:
    """(usable, reason): whether a CUDA device can be used now, and why not in plain words."""
    try:
        from umsynth import _cuda  # noqa: F401
    except ImportError:
        return False, "umsynth was built without CUDA (nvcc was not found at build time)"
    ok, reason = _cuda.device_status()
    return bool(ok), str(reason)


def show_config(file=None) -> dict:
    """Print and return the build and run-time configuration.

    Reports the compiled modules, the CUDA architectures built, whether a CUDA device
    is usable now (and if not, why), and the OpenMP thread count.
    """
    info: dict = {"umsynth": __import__("umsynth").__version__, "numpy": np.__version__}
    info["cpu_module"] = True
    info["openmp_threads"] = get_num_threads()
    try:
        from umsynth import _cuda

        info["cuda_module"] = True
        info["cuda_architectures"] = _cuda.architectures()
    except ImportError:
        info["cuda_module"] = False
        info["cuda_architectures"] = None
    usable, reason = cuda_status()
    info["cuda_device_usable"] = usable
    info["cuda_reason"] = reason
    out = file or sys.stdout
    for k, v in info.items():
        print(f"{k:>20}: {v}", file=out)
    return info
