"""Array and device plumbing of every call into the compiled kernels (numpy, torch, CuPy).

- Host arrays: :func:`to_numpy` reads numpy arrays and CPU tensors without a copy where
  it can, :func:`like` hands a result back as the caller's kind, :func:`check_finite`.
- GPU arrays (CUDA torch tensors, CuPy arrays, other CUDA exporters read through CuPy):
  Python reads pointers, shapes and the caller's current stream from the array's own
  framework, allocates outputs and scratch with it, and passes integers to
  ``umsynth._cuda``; no torch C++ ABI is involved. :class:`ImageOps` serves the SLIC
  launchers, :class:`TorchOps` / :class:`CupyOps` (from :func:`device_ops`) the float64
  Fréchet code.
- :func:`cuda_module`: the one gate to ``umsynth._cuda``; where it cannot run it raises
  :class:`CudaUnavailableError`, never copies a GPU array to the host.

Neither torch nor CuPy is imported here unless the caller already passed one of their
arrays.
"""
from __future__ import annotations

import sys
from typing import Any

import numpy as np

from umsynth.kernels.config import cuda_status

# ----------------------------------------------------------------------------- host arrays


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


# ----------------------------------------------------------------------------- GPU arrays


def is_cupy(x: Any) -> bool:
    cp = sys.modules.get("cupy")
    return cp is not None and isinstance(x, cp.ndarray)


def is_cuda_torch(x: Any) -> bool:
    torch = sys.modules.get("torch")
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


# ----------------------------------------------------------------------------- the CUDA module


class CudaUnavailableError(ValueError, RuntimeError):
    """GPU input, but umsynth's CUDA kernels cannot run here (not built, or no usable device).

    A ValueError (the input cannot be served on this machine); also a RuntimeError, which
    the SLIC functions raised for it before.
    """


def cuda_module():
    """``umsynth._cuda`` when it is built and a device is usable.

    Raises
    ------
    CudaUnavailableError
        Otherwise, with the reason in words (umsynth never copies a GPU array to the host
        behind the caller's back).
    """
    usable, reason = cuda_status()
    if not usable:
        raise CudaUnavailableError(f"GPU input, but umsynth cannot run on the GPU: {reason}. "
                                   "umsynth never copies a GPU array to the CPU behind your "
                                   "back; move it with .cpu() / .get() to use the CPU path")
    from umsynth import _cuda  # built only where nvcc was found

    return _cuda


# ----------------------------------------------------------------------------- SLIC images


class ImageOps:
    """The few image operations the SLIC launchers need, done by the array's own framework."""

    def __init__(self, kind: str):
        self.kind = kind  # "torch" or "cupy"
        self.xp = sys.modules.get("torch" if kind == "torch" else "cupy")

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

    def copy(self, a):
        return a.clone() if self.kind == "torch" else a.copy()

    def to_host(self, a) -> np.ndarray:
        return a.cpu().numpy() if self.kind == "torch" else a.get()

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


class HostImageOps(ImageOps):
    """The same operations on numpy arrays (the CPU path)."""

    def __init__(self):
        self.kind = "numpy"
        self.xp = np

    def np_dtype(self, a) -> np.dtype:
        return a.dtype

    def astype(self, a, dtype):
        return a.astype(dtype)

    def copy(self, a):
        return a.copy()

    def to_host(self, a) -> np.ndarray:
        return a

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


def wrap(x: Any, name: str) -> tuple[Any, ImageOps]:
    """A GPU array as (array, ImageOps); objects other than torch/CuPy become CuPy views."""
    if is_cuda_torch(x):
        return x.detach(), ImageOps("torch")
    cupy = sys.modules.get("cupy")
    if cupy is not None and isinstance(x, cupy.ndarray):
        return x, ImageOps("cupy")
    try:
        import cupy  # noqa: F811 - only for arrays of a third framework
    except ImportError:
        raise TypeError(f"{name}: GPU arrays other than torch tensors need CuPy to be read; "
                        "pass a torch tensor or a CuPy array") from None
    try:
        if hasattr(x, "__cuda_array_interface__"):
            return cupy.asarray(x), ImageOps("cupy")
        return cupy.from_dlpack(x), ImageOps("cupy")
    except Exception as e:  # noqa: BLE001 - report what the exporter refused
        raise TypeError(f"{name}: could not read the GPU array ({e})") from None


# ----------------------------------------------------------------------------- float64 maths


def device_ops(*arrays: Any) -> "TorchOps | CupyOps | None":
    """Ops for the GPU framework of ``arrays``; None if all are host arrays.

    Raises
    ------
    ValueError
        For a mix of GPU and host arrays, of frameworks, or of devices.
    """
    kinds = {"torch" if is_cuda_torch(a) else "cupy" if is_cupy(a) else "host" for a in arrays}
    if kinds == {"host"}:
        return None
    if len(kinds) > 1:
        raise ValueError(f"inputs mix {' and '.join(sorted(kinds))} arrays; pass all of them on one device")
    ops = TorchOps(arrays[0]) if kinds == {"torch"} else CupyOps(arrays[0])
    for a in arrays:
        if ops.device_of(a) != ops.device:
            raise ValueError(f"inputs are on different devices: {ops.device} and {ops.device_of(a)}")
    return ops


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
