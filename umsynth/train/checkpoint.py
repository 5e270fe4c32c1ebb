"""Checkpoints that survive interruptions and resume a run exactly.

A checkpoint is one ``torch.save`` file holding only tensors, numbers, strings, lists and
dicts, so it loads with ``torch.load(weights_only=True)`` (no arbitrary code runs). It is
written to a temporary name in the same folder and renamed over the target, so a crash
leaves the previous checkpoint intact. It holds the networks, the pseudo-label snapshot,
both optimisers (and fp16 grad scalers), the step counters, the data-order positions,
and the Python, NumPy and torch (CPU and CUDA) random states.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from umsynth.files import atomic_write
from umsynth.weights import check_checkpoint

__all__ = ["save_checkpoint", "load_checkpoint", "rng_state", "set_rng_state", "pix2pixhd_lr"]


def pix2pixhd_lr(epoch: int, lr: float, niter: int, niter_decay: int) -> float:
    """Learning rate of 0-based ``epoch`` under pix2pixHD's schedule.

    Constant ``lr`` for epochs 0..niter, then lowered by ``lr / niter_decay`` after each
    further epoch, reaching 0 after ``niter + niter_decay`` epochs (as pix2pixHD's
    ``update_learning_rate``, which runs at the end of every epoch past ``niter``).
    """
    if epoch <= niter or niter_decay == 0:
        return float(lr)
    return float(max(0.0, lr - (epoch - niter) * lr / niter_decay))


def rng_state() -> dict:
    """Python, NumPy and torch random states as weights-only-loadable values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    py = random.getstate()
    state = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(state: dict, path: str | os.PathLike) -> Path:
    """Write ``state`` atomically (temp file in the same folder, then ``os.replace``)."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(dest, lambda tmp: torch.save(state, tmp))
    return dest


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load a checkpoint with ``torch.load(weights_only=True)``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    OSError
        If it is not a readable weights-only checkpoint.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint {str(p)!r} does not exist")
    try:
        state = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise OSError(f"cannot read checkpoint {str(p)!r}: {exc}") from None
    if not isinstance(state, dict) or "generator" not in state or "config" not in state:
        raise OSError(f"{str(p)!r} is not a umsynth training checkpoint")
    check_checkpoint(state, p)  # config within limits, tensor shapes as it says: before any network is built
    return state
