"""GPU arrays (torch CUDA tensors, CuPy arrays): the few operations the Fréchet code needs.

Nothing here imports torch or CuPy unless the caller already passed one of their arrays.
The compiled kernels receive raw pointers and the current stream as integers.
"""
from __future__ import annotations

import sys
from typing import Any

import numpy as np


def is_cupy(x: Any) -> bool:
    cp = sys.modules.get("cupy")
    return cp is not None and isinstance(x, cp.ndarray)


def is_torch_cuda(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor) and x.device.type == "cuda"


def device_ops(*arrays: Any) -> "TorchOps | CupyOps | None":
    """Ops for the GPU framework of ``arrays``; None if all are host arrays.

    Raises
    ------
    ValueError
        For a mix of GPU and host arrays, of frameworks, or of devices.
    """
    kinds = {"torch" if is_torch_cuda(a) else "cupy" if is_cupy(a) else "host" for a in arrays}
    if kinds == {"host"}:
        return None
    if len(kinds) > 1:
        raise ValueError(f"inputs mix {' and '.join(sorted(kinds))} arrays; pass all of them on one device")
    ops = TorchOps(arrays[0]) if kinds == {"torch"} else CupyOps(arrays[0])
    for a in arrays:
        if ops.device_of(a) != ops.device:
            raise ValueError(f"inputs are on different devices: {ops.device} and {ops.device_of(a)}")
    return ops


def cuda_module():
    """The compiled CUDA module, or a clear error saying why it cannot run."""
    from umsynth._config import cuda_status

    usable, reason = cuda_status()
    if not usable:
        raise ValueError(f"GPU input, but the CUDA kernels cannot run: {reason}")
    from umsynth import _cuda

    return _cuda


class TorchOps:
    """float64 operations on one torch CUDA device (also usable on CPU tensors in tests)."""

    name = "torch"

    def __init__(self, like: Any) -> None:
        import torch

        self.torch = torch
        self.device = like.device

    def device_of(self, a: Any):
        return a.device

    def asarray(self, a: Any, name: str):
        t = self.torch
        if a.is_complex():
            raise TypeError(f"{name}: complex tensors are not supported (dtype {a.dtype})")
        a = a.detach().to(dtype=t.float64)
        if not bool(t.isfinite(a).all()):
            raise ValueError(f"{name} contains {'NaN' if bool(t.isnan(a).any()) else 'Inf'} values")
        return a

    def zeros(self, shape, dtype="float64"):
        return self.torch.zeros(shape, dtype=getattr(self.torch, dtype), device=self.device)

    def full(self, shape, value, dtype):
        return self.torch.full(shape, value, dtype=getattr(self.torch, dtype), device=self.device)

    def copy(self, a):
        return a.clone()

    def contiguous(self, a):
        return a.contiguous()

    def transpose(self, a):
        return a.transpose(-1, -2)

    def diagonal(self, a):
        return self.torch.diagonal(a, dim1=-2, dim2=-1)

    def frobenius(self, a):
        return self.torch.linalg.matrix_norm(a)

    def amax(self, a, axis):
        return self.torch.amax(a, dim=axis)

    def amin(self, a, axis):
        return self.torch.amin(a, dim=axis)

    def cholesky(self, a):
        """(L, ok): Cholesky factors of a batch and which ones succeeded."""
        low, info = self.torch.linalg.cholesky_ex(a)
        return low, info == 0

    def eigh(self, a):
        return self.torch.linalg.eigh(a)

    def outer(self, u, v):
        return self.torch.outer(u, v)

    def concat(self, parts):
        return self.torch.cat(parts)

    def where(self, c, a, b):
        return self.torch.where(c, a, b)

    def to_numpy(self, a) -> np.ndarray:
        return a.detach().cpu().numpy()

    def from_numpy(self, a: np.ndarray):
        return self.torch.from_numpy(np.ascontiguousarray(a)).to(self.device)

    def pointer(self, a) -> int:
        return int(a.data_ptr())

    def stream(self) -> int:
        return int(self.torch.cuda.current_stream(self.device).cuda_stream)

    def device_guard(self):
        return self.torch.cuda.device(self.device)


class CupyOps:
    """float64 operations on one CuPy device."""

    name = "cupy"

    def __init__(self, like: Any) -> None:
        import cupy

        self.cp = cupy
        self.device = like.device

    def device_of(self, a: Any):
        return a.device

    def asarray(self, a: Any, name: str):
        cp = self.cp
        if a.dtype.kind not in "fiub":
            raise TypeError(f"{name}: expected a real array, got dtype {a.dtype}")
        a = a.astype(cp.float64)
        if not bool(cp.isfinite(a).all()):
            raise ValueError(f"{name} contains {'NaN' if bool(cp.isnan(a).any()) else 'Inf'} values")
        return a

    def zeros(self, shape, dtype="float64"):
        with self.device:
            return self.cp.zeros(shape, dtype=dtype)

    def full(self, shape, value, dtype):
        with self.device:
            return self.cp.full(shape, value, dtype=dtype)

    def copy(self, a):
        return a.copy()

    def contiguous(self, a):
        return self.cp.ascontiguousarray(a)

    def transpose(self, a):
        return self.cp.swapaxes(a, -1, -2)

    def diagonal(self, a):
        return self.cp.diagonal(a, axis1=-2, axis2=-1)

    def frobenius(self, a):
        return self.cp.sqrt((a * a).sum(axis=(-2, -1)))

    def amax(self, a, axis):
        return self.cp.amax(a, axis=axis)

    def amin(self, a, axis):
        return self.cp.amin(a, axis=axis)

    def cholesky(self, a):
        # CuPy fills a failed factor with NaN (or raises, by configuration): test both
        try:
            low = self.cp.linalg.cholesky(a)
        except self.cp.linalg.LinAlgError:
            low = self.cp.full(a.shape, self.cp.nan)
        ok = self.cp.isfinite(low).all(axis=(-2, -1))
        return self.cp.where(ok[..., None, None], low, 0.0), ok

    def eigh(self, a):
        return self.cp.linalg.eigh(a)

    def outer(self, u, v):
        return self.cp.outer(u, v)

    def concat(self, parts):
        return self.cp.concatenate(parts)

    def where(self, c, a, b):
        return self.cp.where(c, a, b)

    def to_numpy(self, a) -> np.ndarray:
        return self.cp.asnumpy(a)

    def from_numpy(self, a: np.ndarray):
        with self.device:
            return self.cp.asarray(a)

    def pointer(self, a) -> int:
        return int(a.data.ptr)

    def stream(self) -> int:
        return int(self.cp.cuda.get_current_stream().ptr)

    def device_guard(self):
        return self.device
