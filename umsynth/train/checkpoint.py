"""Checkpoints that survive interruptions and resume a run exactly.

A checkpoint is one ``torch.save`` file holding only tensors, numbers, strings, lists and
dicts, so it loads with ``torch.load(weights_only=True)`` (no arbitrary code runs). It is
written to a temporary name in the same folder and renamed over the target, so a crash
leaves the previous checkpoint intact. It holds the networks, the pseudo-label snapshot,
both optimisers (and fp16 grad scalers), the step counters, the data-order positions,
and the Python, NumPy and torch (CPU and CUDA) random states, the EMA generator when there
is one, and the digests of the run's configuration and training data (:func:`data_digest`,
:func:`umsynth.train.config.config_digest`): a run never resumes from a checkpoint whose
digests differ from its own.

A run folder holds ``checkpoints/last.pt`` and the kept ``checkpoints/step_NNNNNNN.pt``;
:func:`find_checkpoint` turns a file, a run folder or a name ("last", "step_0000500",
"500") into the file.
"""
from __future__ import annotations

import hashlib
import io
import os
import random
import re
from pathlib import Path

import numpy as np
import torch

from umsynth.files import atomic_write_bytes
from umsynth.weights import check_checkpoint

__all__ = ["save_checkpoint", "load_checkpoint", "find_checkpoint", "kept_checkpoints", "step_name", "data_digest",
           "rng_state", "set_rng_state", "pix2pixhd_lr", "LAST", "STEP_PATTERN"]

#: the checkpoint every run updates, in ``RUN/checkpoints/``
LAST = "last.pt"
#: the kept ones: ``step_0005000.pt``
STEP_PATTERN = re.compile(r"step_(\d{7,})\.pt")


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


def save_checkpoint(state: dict, path: str | os.PathLike, *copies: str | os.PathLike) -> Path:
    """Write ``state`` atomically (temp file in the same folder, then ``os.replace``).

    ``copies``: further files that receive the same bytes (serialized once). They are
    written before ``path``: a run resumes from ``path`` (``last.pt``), so a crash between
    the writes repeats the step and writes a missing copy again, never leaves it out.
    """
    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getvalue()
    for target in (*copies, path):
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, data)
    return Path(path)


def step_name(step: int) -> str:
    """The file name of the checkpoint kept at ``step``."""
    return f"step_{int(step):07d}.pt"


def kept_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """The ``step_*.pt`` checkpoints of a run folder, oldest first."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := STEP_PATTERN.fullmatch(p.name))]
    return [p for _, p in sorted(found)]


def find_checkpoint(spec: str | os.PathLike, run_dir: str | os.PathLike | None = None) -> Path:
    """The checkpoint file that ``spec`` names.

    Parameters
    ----------
    spec : path-like or str
        A checkpoint file; a run folder (its ``checkpoints/last.pt``); or, with `run_dir`,
        a name in ``run_dir/checkpoints``: ``"last"``, ``"step_0005000"`` (``.pt`` optional)
        or a step number ``"5000"``.
    run_dir : path-like, optional
        The run folder that names refer to.

    Raises
    ------
    FileNotFoundError
        Naming the file looked for and, for names, the checkpoints the run has.
    """
    p = Path(spec)
    if p.is_file():
        return p
    if p.is_dir():
        return _existing(p / "checkpoints" / LAST, p)
    text = str(spec)
    if run_dir is None or os.sep in text or "/" in text:
        raise FileNotFoundError(f"checkpoint {text!r} does not exist")
    name = step_name(int(text)) if text.isdigit() else (text if text.endswith(".pt") else text + ".pt")
    return _existing(Path(run_dir) / "checkpoints" / name, Path(run_dir))


def _existing(path: Path, run_dir: Path) -> Path:
    if path.is_file():
        return path
    have = [p.stem for p in kept_checkpoints(run_dir)]
    if (run_dir / "checkpoints" / LAST).is_file():
        have.append("last")
    listed = f"; it has: {', '.join(have)}" if have else "; it has no checkpoint"
    raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist{listed}")


def data_digest(*datasets) -> str:
    """SHA-256 (16 hex digits) of the training data: what a checkpoint was trained on.

    A dataset with a ``fingerprint()`` method (:class:`umsynth.data.datasets.MontageDataset`)
    is described by it; any other is hashed item by item (every tensor's dtype, shape and
    bytes), so its items must not be random draws. None counts as "no dataset".
    """
    h = hashlib.sha256()
    for ds in datasets:
        if ds is None:
            h.update(b"none;")
            continue
        fingerprint = getattr(ds, "fingerprint", None)
        if callable(fingerprint):
            h.update(f"fp:{fingerprint()};".encode())
            continue
        h.update(f"n:{len(ds)};".encode())
        for i in range(len(ds)):
            item = ds[i]
            for key in sorted(item):
                v = item[key]
                if isinstance(v, torch.Tensor):
                    v = v.detach().cpu().contiguous()
                    h.update(f"{key}:{v.dtype}:{tuple(v.shape)};".encode())
                    h.update(v.numpy().tobytes() if v.dtype != torch.bfloat16 else v.float().numpy().tobytes())
                else:
                    h.update(f"{key}:{v!r};".encode())
    return h.hexdigest()[:16]


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load a checkpoint with ``torch.load(weights_only=True)``.

    ``path``: a checkpoint file, or a run folder (its ``checkpoints/last.pt``).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    OSError
        If it is not a readable weights-only checkpoint.
    """
    p = find_checkpoint(path)
    try:
        state = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise OSError(f"cannot read checkpoint {str(p)!r}: {exc}") from None
    if not isinstance(state, dict) or "generator" not in state or "config" not in state:
        raise OSError(f"{str(p)!r} is not a umsynth training checkpoint")
    check_checkpoint(state, p)  # config within limits, tensor shapes as it says: before any network is built
    return state
