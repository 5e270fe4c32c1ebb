"""Build and run-time configuration: thread caps, which compiled modules exist."""
from __future__ import annotations

import os
import sys

import numpy as np

from umsynth import _cpu

_ENV = "UMSYNTH_NUM_THREADS"
_threads: int | None = None


def set_num_threads(n: int | None) -> None:
    """Cap the threads the C++ kernels use (None: back to the default).

    The default is the ``UMSYNTH_NUM_THREADS`` environment variable, else the OpenMP
    default (all cores). A ``threads=`` argument on a call overrides both.
    """
    global _threads
    if n is not None:
        n = int(n)
        if n < 1:
            raise ValueError(f"threads must be >= 1, got {n}")
    _threads = n


def get_num_threads() -> int:
    """The thread count kernels will use when a call passes no ``threads=``."""
    return resolve_threads(None)


def resolve_threads(threads: int | None) -> int:
    """Resolve a ``threads=`` argument against the global cap and the environment."""
    if threads is None:
        threads = _threads
    if threads is None:
        env = os.environ.get(_ENV, "").strip()
        if env:
            try:
                threads = int(env)
            except ValueError:
                raise ValueError(f"{_ENV}={env!r} is not an integer") from None
    if threads is None:
        return int(_cpu.max_threads())
    threads = int(threads)
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    return threads


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
