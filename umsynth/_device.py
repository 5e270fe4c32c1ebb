"""GPU arrays for the CUDA kernels: CUDA torch tensors and CuPy arrays, without the torch C++ ABI.

Python reads pointers, shapes and the caller's current stream from the array's own
framework, allocates outputs and scratch with that framework, and passes integers to
``umsynth._cuda``. Neither torch nor CuPy is imported unless the caller already holds
one of their arrays.
"""
from __future__ import annotations

import sys
from typing import Any

import numpy as np

# DType codes of csrc/slic/slic_kernels.h
DTYPE_CODE = {np.dtype(np.uint8): 0, np.dtype(np.uint16): 1, np.dtype(np.int16): 2,
              np.dtype(np.float32): 3, np.dtype(np.float64): 4}


def _torch():
    return sys.modules.get("torch")


def _cupy():
    return sys.modules.get("cupy")


def is_cuda_torch(x: Any) -> bool:
    torch = _torch()
    return torch is not None and isinstance(x, torch.Tensor) and x.device.type == "cuda"


def is_gpu_array(x: Any) -> bool:
    """True for a CUDA torch tensor, a CuPy array or any object exporting CUDA memory."""
    if is_cuda_torch(x):
        return True
    if hasattr(x, "__cuda_array_interface__"):
        return True
    dev = getattr(x, "__dlpack_device__", None)
    if dev is not None and not isinstance(x, np.ndarray):
        try:
            return int(dev()[0]) in (2, 3, 13)  # kDLCUDA, kDLCUDAHost, kDLCUDAManaged
        except Exception:  # noqa: BLE001 - an exotic exporter: not a CUDA array
            return False
    return False


class Ops:
    """The few array operations the GPU path needs, done by the array's own framework."""

    def __init__(self, kind: str):
        self.kind = kind  # "torch" or "cupy"
        self.xp = _torch() if kind == "torch" else _cupy()

    # ---- metadata
    def np_dtype(self, a) -> np.dtype:
        if self.kind == "cupy":
            return np.dtype(a.dtype)
        torch = self.xp
        if a.dtype in (torch.bfloat16, torch.float16):
            return np.dtype(np.float16)
        if a.is_complex():
            return np.dtype(np.complex64)
        return np.dtype(str(a.dtype).replace("torch.", ""))

    def astype(self, a, dtype):
        if self.kind == "cupy":
            return a.astype(dtype)
        return a.to(getattr(self.xp, np.dtype(dtype).name))

    def device_index(self, a) -> int:
        return int(a.device.index if self.kind == "torch" else a.device.id)

    # ---- layout
    def moveaxis(self, a, src, dst):
        return self.xp.moveaxis(a, src, dst)

    def contiguous(self, a):
        return a.contiguous() if self.kind == "torch" else self.xp.ascontiguousarray(a)

    def ptr(self, a) -> int:
        return int(a.data_ptr()) if self.kind == "torch" else int(a.data.ptr)

    # ---- reductions (each ends in one small device-to-host copy)
    def all_finite(self, a) -> bool:
        return bool(self.xp.isfinite(a).all().item())

    def any_nan(self, a) -> bool:
        return bool(self.xp.isnan(a).any().item())

    def count(self, m) -> int:
        return int(self.xp.count_nonzero(m).item())

    def bbox(self, m) -> tuple[list[int], list[int]]:
        nz = self.xp.nonzero(m) if self.kind == "cupy" else self.xp.nonzero(m, as_tuple=True)
        lo = [int(v.min().item()) for v in nz]
        hi = [int(v.max().item()) + 1 for v in nz]
        return lo, hi

    def to_u8(self, m):
        if self.kind == "torch":
            return (m != 0).to(self.xp.uint8).contiguous()
        return self.xp.ascontiguousarray(m != 0, dtype=self.xp.uint8)

    def as_bool(self, m):
        return m.bool() if self.kind == "torch" else m.astype(bool)

    def minmax(self, batch, mask_u8):
        """(N, 2) float64 of each image's min and max over the masked pixels (all channels)."""
        n = batch.shape[0]
        flat = batch.reshape(n, -1, batch.shape[-1])
        if mask_u8 is not None:
            flat = flat[:, self.as_bool(mask_u8.reshape(-1))]
        flat = flat.reshape(n, -1)
        if self.kind == "torch":
            if flat.dtype == self.xp.uint16:  # few reductions exist for torch's uint16
                flat = flat.to(self.xp.int32)
            lo, hi = flat.amin(dim=1), flat.amax(dim=1)
            return self.xp.stack([lo, hi], 1).to(self.xp.float64).contiguous()
        return self.xp.ascontiguousarray(self.xp.stack([flat.min(axis=1), flat.max(axis=1)], 1),
                                         dtype=self.xp.float64)

    # ---- allocation on the array's device
    def empty(self, shape, dtype, device: int):
        if self.kind == "torch":
            return self.xp.empty(shape, dtype=getattr(self.xp, np.dtype(dtype).name),
                                 device=f"cuda:{device}")
        with self.xp.cuda.Device(device):
            return self.xp.empty(shape, dtype=dtype)

    def from_host(self, a: np.ndarray, device: int):
        if self.kind == "torch":
            return self.xp.from_numpy(a).to(f"cuda:{device}")
        with self.xp.cuda.Device(device):
            return self.xp.asarray(a)

    def oom_errors(self) -> tuple:
        if self.kind == "torch":
            return (self.xp.cuda.OutOfMemoryError,)
        return (self.xp.cuda.memory.OutOfMemoryError,)

    def stream(self, device: int) -> int:
        """The caller's current stream on `device`, as an integer handle."""
        if self.kind == "torch":
            return int(self.xp.cuda.current_stream(device).cuda_stream)
        with self.xp.cuda.Device(device):
            return int(self.xp.cuda.get_current_stream().ptr)


def wrap(x: Any, name: str) -> tuple[Any, Ops]:
    """A GPU array as (array, Ops); objects other than torch/CuPy become CuPy views."""
    if is_cuda_torch(x):
        return x.detach(), Ops("torch")
    cupy = _cupy()
    if cupy is not None and isinstance(x, cupy.ndarray):
        return x, Ops("cupy")
    try:
        import cupy  # noqa: F811 - only for arrays of a third framework
    except ImportError:
        raise TypeError(f"{name}: GPU arrays other than torch tensors need CuPy to be read; "
                        "pass a torch tensor or a CuPy array") from None
    try:
        if hasattr(x, "__cuda_array_interface__"):
            return cupy.asarray(x), Ops("cupy")
        return cupy.from_dlpack(x), Ops("cupy")
    except Exception as e:  # noqa: BLE001 - report what the exporter refused
        raise TypeError(f"{name}: could not read the GPU array ({e})") from None


def parse_device(device) -> tuple[str, int | None]:
    """("cpu", None), ("cuda", index) or ("cuda", None) for "cuda" without an index."""
    if device is None:
        return "", None
    text = str(device).strip().lower()
    if text == "cpu":
        return "cpu", None
    if text == "cuda":
        return "cuda", None
    if text.startswith("cuda:") and text[5:].isdigit():
        return "cuda", int(text[5:])
    if isinstance(device, (int, np.integer)) and not isinstance(device, bool) and device >= 0:
        return "cuda", int(device)
    raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or a GPU index, got {device!r}")


def cuda_module():
    """umsynth._cuda when it is built and a device is usable, else a clear RuntimeError."""
    from umsynth._config import cuda_status

    usable, reason = cuda_status()
    if not usable:
        raise RuntimeError(f"cannot run on the GPU: {reason}. umsynth never copies a GPU array "
                           "to the CPU behind your back; move it with .cpu() / .get() to use "
                           "the CPU path")
    from umsynth import _cuda

    return _cuda


class HostOps(Ops):
    """The same operations on numpy arrays (the CPU path)."""

    def __init__(self):
        self.kind = "numpy"
        self.xp = np

    def np_dtype(self, a) -> np.dtype:
        return a.dtype

    def astype(self, a, dtype):
        return a.astype(dtype)

    def contiguous(self, a):
        return np.ascontiguousarray(a)

    def all_finite(self, a) -> bool:
        return bool(np.isfinite(a).all())

    def any_nan(self, a) -> bool:
        return bool(np.isnan(a).any())

    def count(self, m) -> int:
        return int(np.count_nonzero(m))

    def bbox(self, m) -> tuple[list[int], list[int]]:
        nz = np.nonzero(m)
        return [int(v.min()) for v in nz], [int(v.max()) + 1 for v in nz]

    def to_u8(self, m):
        return np.ascontiguousarray(m != 0, dtype=np.uint8)

    def as_bool(self, m):
        return m.astype(bool, copy=False)
