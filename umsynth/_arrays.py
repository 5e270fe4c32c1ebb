"""Array plumbing shared by every public function: numpy and torch in, the same kind out.

torch is optional and never imported here unless the caller already passed a tensor.
"""
from __future__ import annotations

import sys
from typing import Any

import numpy as np


def is_torch(x: Any) -> bool:
    """True for a torch.Tensor, without importing torch when the caller has not."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def to_numpy(x: Any, name: str) -> tuple[np.ndarray, str]:
    """Return a numpy view of ``x`` (no copy where possible) and the kind it came as.

    kind is ``"numpy"`` or ``"torch"``. CUDA tensors and CuPy arrays are refused with a
    clear error, never copied to the host behind the caller's back (functions with a CUDA
    path, such as umsynth.slic, route them to it before calling this).
    """
    if is_torch(x):
        if x.device.type != "cpu":
            raise ValueError(f"{name}: tensor on device {x.device} is not supported by the CPU path; "
                             "move it with .cpu() or build umsynth with CUDA")
        if x.is_complex():
            raise TypeError(f"{name}: complex tensors are not supported (dtype {x.dtype})")
        t = x.detach()
        if t.dtype == _torch_bfloat16():
            t = t.float()
        return t.resolve_conj().resolve_neg().numpy(), "torch"
    if hasattr(x, "__cuda_array_interface__"):
        raise ValueError(f"{name}: GPU arrays (CuPy) are not supported by the CPU path")
    if isinstance(x, np.ndarray):
        return x, "numpy"
    if isinstance(x, (list, tuple)) or np.isscalar(x):
        return np.asarray(x), "numpy"
    raise TypeError(f"{name}: expected a numpy array or torch tensor, got {type(x).__name__}")


def _torch_bfloat16():
    return sys.modules["torch"].bfloat16


def like(out: np.ndarray, kind: str) -> Any:
    """Wrap a numpy result as the kind of array the caller passed (shares memory)."""
    if kind == "torch":
        return sys.modules["torch"].from_numpy(np.ascontiguousarray(out))
    return out


def check_finite(a: np.ndarray, name: str) -> None:
    """Raise ValueError naming ``name`` if a float array holds NaN or Inf."""
    if a.dtype.kind == "f" and a.size and not np.isfinite(a).all():
        what = "NaN" if np.isnan(a).any() else "Inf"
        raise ValueError(f"{name} contains {what} values")
