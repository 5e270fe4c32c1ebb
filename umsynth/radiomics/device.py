"""The radiomics matrices of a GPU batch (CUDA torch tensor or CuPy array).

Discretisation and every texture matrix are computed on the device by the CUDA launchers
of csrc/radiomics/radiomics_cuda.cu (the per-pixel functions of radiomics_kernels.h, the
text the CPU launcher runs in the tests). The matrices are small: they come to the host,
and the formulas of :mod:`umsynth.radiomics.features` (C++ on dense matrices, numpy on
sparse ones) evaluate them exactly as on the CPU path. The first-order features and the
size-zone pairs read the discretised batch and the values on the host: one explicit copy,
the features' own input, never a fallback of the whole computation.

:class:`DeviceMatrices` and :class:`HostMatrices` (features.py) offer the same methods.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from umsynth.kernels import radiomics as kernels
from umsynth.kernels.arrays import ImageOps, cuda_module, is_gpu_array, wrap

# A batch is split so that the largest device matrix (run lengths: N x 4 x G x (L + 1)
# uint64) stays below this many bytes.
_MATRIX_BYTES = 1 << 28


def _coo_from_dense(m: np.ndarray, b_offset: int = 1) -> kernels.Coo:
    """A Coo of the non-zero cells of dense (S, G, K) counts: seg = first index, a = row + 1
    (gray level), b = column + b_offset."""
    s, i, j = np.nonzero(m)  # C order: grouped by segment, then (a, b)
    return kernels.Coo(s.astype(np.int64), (i + 1).astype(np.int32), (j + b_offset).astype(np.int32),
                       m[s, i, j].astype(np.float64))


class DeviceMatrices:
    """Discretised GPU batch and its matrices (the methods of features.HostMatrices).

    Parameters
    ----------
    img : GPU array (N, H, W)
        float64, contiguous, on one device.
    roi : GPU array (N, H, W) of uint8, or None
    ops : ImageOps
        The batch's framework.
    bin_width : float
    threads : int or None
        Threads of the host formulas.
    """

    def __init__(self, img: Any, roi: Any, ops: ImageOps, bin_width: float, threads: int | None):
        self.cuda = cuda_module()
        self.ops, self.threads = ops, threads
        self.N, self.H, self.W = (int(s) for s in img.shape)
        self.device = ops.device_index(img)
        self.stream = ops.stream(self.device)
        lo, _ = minmax(ops, img, roi)
        low = lo - np.mod(lo, bin_width)  # pyradiomics: minimum - minimum % binWidth
        delta = (low + bin_width) - low
        self.q = ops.empty((self.N, self.H, self.W), np.int32, self.device)
        # named, so that neither buffer is freed (and reused) before the kernel has run
        low_d, delta_d = ops.from_host(low, self.device), ops.from_host(delta, self.device)
        self.cuda.radiomics_discretize(image=ops.ptr(img), mask=0 if roi is None else ops.ptr(roi), N=self.N,
                                       H=self.H, W=self.W, low=ops.ptr(low_d), delta=ops.ptr(delta_d),
                                       q=ops.ptr(self.q), stream=self.stream)
        self.img, self.roi = img, roi
        self.q_host = ops.to_host(self.q)  # the first order and the zones' pairs read it
        self.ng = self.q_host.reshape(self.N, -1).max(axis=1).astype(np.int32)
        self.G = int(self.ng.max())
        self._glcm = None  # the co-occurrence counts, kept for MCC

    def _zeros(self, shape):
        """Zeroed counts; int64 on the device (the kernels add to them as uint64, same bits)."""
        a = self.ops.empty(shape, np.int64, self.device)
        a[...] = 0
        return a

    def _host(self, a) -> np.ndarray:
        return self.ops.to_host(a).view(np.uint64)

    def _counted(self, tail: tuple, launch) -> np.ndarray:
        """Dense uint64 counts (N, *tail) on the host; ``launch(q, n, out)`` counts n images
        from the device pointer q into out, a chunk of images at a time (see _MATRIX_BYTES)."""
        out = np.empty((self.N, *tail), np.uint64)
        step = max(1, min(self.N, _MATRIX_BYTES // (8 * int(np.prod(tail)))))
        for lo in range(0, self.N, step):
            hi = min(self.N, lo + step)
            m = self._zeros((hi - lo, *tail))
            launch(self._q(lo), hi - lo, self.ops.ptr(m))
            out[lo:hi] = self._host(m)
        return out

    def _q(self, lo: int) -> int:
        return self.ops.ptr(self.q) + lo * self.H * self.W * 4

    def firstorder(self, shift: float, pixel_area: float):
        return kernels.firstorder(self.ops.to_host(self.img), self.q_host, shift, pixel_area, self.threads)

    def _glcm_counts(self) -> np.ndarray:
        if self._glcm is None:
            G = self.G
            self._glcm = self._counted((4, G, G), lambda q, n, out: self.cuda.radiomics_glcm(
                q=q, N=n, H=self.H, W=self.W, G=G, out=out, stream=self.stream))
        return self._glcm

    def glcm_features(self):
        return kernels.glcm_features_dense(self._glcm_counts(), self.ng, self.threads)

    def glcm(self) -> kernels.Coo:
        return _coo_from_dense(self._glcm_counts().reshape(-1, self.G, self.G))

    def glrlm(self) -> kernels.Coo:
        G, L1 = self.G, max(self.H, self.W) + 1
        out = self._counted((4, G, L1), lambda q, n, m: self.cuda.radiomics_glrlm(
            q=q, N=n, H=self.H, W=self.W, G=G, out=m, stream=self.stream))
        # pyradiomics drops an angle in which no line holds two ROI pixels
        out[~_angles_with_runs(self.q_host)] = 0
        return _coo_from_dense(out.reshape(-1, G, L1), b_offset=0)

    def glszm(self) -> kernels.Coo:
        parent = self.ops.empty((self.N, self.H, self.W), np.int32, self.device)
        size = self.ops.empty((self.N, self.H, self.W), np.int32, self.device)
        self.cuda.radiomics_glszm(q=self.ops.ptr(self.q), N=self.N, H=self.H, W=self.W, parent=self.ops.ptr(parent),
                                  size=self.ops.ptr(size), stream=self.stream)
        return kernels.glszm_from_sizes(self.q_host, self.ops.to_host(size), self.threads)

    def gldm(self, alpha: int) -> kernels.Coo:
        m = self._zeros((self.N, self.G, 9))
        self.cuda.radiomics_gldm(q=self.ops.ptr(self.q), N=self.N, H=self.H, W=self.W, G=self.G, alpha=int(alpha),
                                 out=self.ops.ptr(m), stream=self.stream)
        return _coo_from_dense(self._host(m))

    def ngtdm_features(self):
        count, diff = self._zeros((self.N, self.G)), self._zeros((self.N, self.G))
        self.cuda.radiomics_ngtdm(q=self.ops.ptr(self.q), N=self.N, H=self.H, W=self.W, G=self.G,
                                  count=self.ops.ptr(count), diff=self.ops.ptr(diff), stream=self.stream)
        return kernels.ngtdm_features_dense(self._host(count), self._host(diff), self.threads)


def _angles_with_runs(q: np.ndarray) -> np.ndarray:
    """(N, 4) bool: whether some line of each angle holds two ROI pixels (q > 0)."""
    N, H, W = q.shape
    n, y, x = np.nonzero(q)
    out = np.zeros((N, 4), bool)
    # the line of each ROI pixel per angle: row, diagonal y - x, column, anti-diagonal y + x
    for a, (line, count) in enumerate(((y, H), (y - x + W - 1, H + W - 1), (x, W), (y + x, H + W - 1))):
        per_line = np.bincount(n * count + line, minlength=N * count).reshape(N, count)
        out[:, a] = (per_line > 1).any(axis=1)
    return out


def minmax(ops: ImageOps, img: Any, roi: Any) -> tuple[np.ndarray, np.ndarray]:
    """Each image's minimum and maximum over its ROI, as host float64 arrays."""
    xp = ops.xp
    if ops.kind == "torch":
        lo = img if roi is None else xp.where(roi.bool(), img, float("inf"))
        hi = img if roi is None else xp.where(roi.bool(), img, float("-inf"))
        return ops.to_host(lo.amin(dim=(1, 2))), ops.to_host(hi.amax(dim=(1, 2)))
    lo = img if roi is None else xp.where(roi.astype(bool), img, np.inf)
    hi = img if roi is None else xp.where(roi.astype(bool), img, -np.inf)
    return ops.to_host(lo.min(axis=(1, 2))), ops.to_host(hi.max(axis=(1, 2)))


def device_batch(images: Any, masks: Any) -> tuple[Any, Any, ImageOps]:
    """(float64 contiguous (N, H, W) batch, uint8 ROI or None, ops) of GPU input; raises
    CudaUnavailableError where no CUDA device is usable, ValueError/TypeError for bad input."""
    cuda_module()
    x, ops = wrap(images, "images")
    if len(x.shape) == 2:
        x = x[None]
    if len(x.shape) != 3:
        raise ValueError(f"images must be one 2D image (H, W) or a batch (N, H, W), got shape {tuple(x.shape)}")
    if ops.np_dtype(x).kind not in "biuf":
        raise TypeError(f"images must be real numbers, got dtype {x.dtype}")
    img = ops.contiguous(ops.astype(x, np.float64))
    if not ops.all_finite(img):
        raise ValueError(f"images contains {'NaN' if ops.any_nan(img) else 'Inf'} values")
    if img.shape[0] == 0:
        raise ValueError("images: the batch is empty")
    roi = None
    if masks is not None:
        if not is_gpu_array(masks):
            raise ValueError("masks: give GPU masks with GPU images (umsynth never copies them behind your back)")
        m, mops = wrap(masks, "masks")
        if mops.kind != ops.kind or mops.device_index(m) != ops.device_index(img):
            raise ValueError("masks must be on the images' device and framework")
        if len(m.shape) == 2:
            m = m[None]
        if m.shape[0] == 1 and img.shape[0] > 1:
            m = m.expand(img.shape) if ops.kind == "torch" else ops.xp.broadcast_to(m, img.shape)
        if tuple(m.shape) != tuple(img.shape):
            raise ValueError(f"masks must have the images' shape {tuple(img.shape)}, got {tuple(m.shape)}")
        roi = ops.to_u8(m)
        counts = ops.to_host(roi.reshape(img.shape[0], -1).sum(1) if ops.kind == "torch"
                             else roi.reshape(img.shape[0], -1).sum(axis=1))
        empty = np.flatnonzero(counts == 0)
        if empty.size:
            raise ValueError(f"masks: the mask of image {int(empty[0])} is empty")
    return img, roi, ops
