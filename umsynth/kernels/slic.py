"""The SLIC launchers: every call from Python into the compiled SLIC kernels.

:func:`umsynth.slic` and :func:`umsynth.unsupervised_mask` (umsynth.masks) validate and
convert their input into a :class:`SlicInput`; the functions here turn it into the
kernels' arguments and run them:

- :func:`slic_fast`: the fast SLIC (csrc/slic/slic_steps.h), by :func:`launch_cpu`
  (``umsynth._cpu``, OpenMP) or :func:`launch_cuda` (``umsynth._cuda`` on the array's
  device and the caller's stream, in chunks of images when one launch would not fit);
- :func:`slic_reference`: scikit-image 0.26's SLIC step for step (CPU only);
- :func:`um_fill`: unsupervised masks from given labels.

The scalar settings travel as a :class:`SlicParams`, field for field the C++
``ums::slic::Params``, passed to the bindings by keyword.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from umsynth import _cpu
from umsynth.kernels.arrays import HostImageOps, ImageOps, cuda_module

# DType codes of csrc/slic/slic_kernels.h
DTYPE_CODE = {np.dtype(np.uint8): 0, np.dtype(np.uint16): 1, np.dtype(np.int16): 2,
              np.dtype(np.float32): 3, np.dtype(np.float64): 4}
# Intensity codes of csrc/slic/slic_kernels.h ("raw": features computed in Python)
MODE = {"linear": 0, "lab": 1, "raw": 2}
HOST = HostImageOps()


@dataclass
class SlicInput:
    """An image brought to (D, H, W, C) with its mask (D, H, W) and bookkeeping.

    The arrays are numpy arrays on the CPU path and arrays of the caller's framework
    (torch or CuPy, on the caller's GPU) on the CUDA path; `ops` works on either.
    """

    image: object         # (D, H, W, C), native dtype, C-contiguous
    mask: object | None   # (D, H, W) uint8 or None
    is_2d: bool
    multichannel: bool
    spacing: np.ndarray   # (3,) float64, z first (1 for 2D)
    sigma: np.ndarray     # (3,) float64
    ops: ImageOps = HOST
    mask_count: int = 0   # true pixels of the mask
    mask_box: tuple | None = None  # (lo, hi) corners of the mask's bounding box


@dataclass(frozen=True)
class SlicParams:
    """The scalar settings of one fast-SLIC launch: ``ums::slic::Params``, field for field."""

    wz: float                   # spacing^2 / step^2 per axis
    wy: float
    wx: float
    cw: float                   # (feature scale / compactness)^2
    max_iter: int
    enforce_connectivity: bool
    min_size: int               # components below this merge into a neighbour
    start_label: int
    um_step: int                # > 0: also write the unsupervised mask
    slic_zero: bool = False     # SLICO: per-centre adaptive colour weight

    def kwargs(self) -> dict:
        """The fields as keyword arguments of the bindings."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


# ----------------------------------------------------------------------------- grids


def grid_axes(shape, n_points) -> list[tuple[int, int, int]]:
    """(start, step, count) per axis of scikit-image's regular seed grid."""
    from skimage.util import regular_grid

    out = []
    for sl, dim in zip(regular_grid(shape, n_points), shape):
        start = int(sl.start or 0)
        step = int(sl.step or 1)
        out.append((start, step, len(range(start, dim, step))))
    return out


def fast_grid(shape, n_segments, mask, ops=HOST, count=None, box=None):
    """Seed grid (9 int32), number of cells and spatial step of the fast algorithm.

    Without a mask it is scikit-image's grid. With a mask, the grid covers the mask's
    bounding box with a density that puts about n_segments seeds inside the mask; the
    kernel moves each seed to the cell's masked pixel nearest to it. `count` and `box`
    (the mask's true pixels and bounding box) are computed from `mask` when not given.
    """
    if mask is None:
        axes = grid_axes(shape, n_segments)
        origin = (0, 0, 0)
    else:
        lo, hi = box if box is not None else ops.bbox(mask)
        count = count if count is not None else ops.count(mask)
        box_shape = tuple(h - l for l, h in zip(lo, hi))
        density = count / math.prod(box_shape)
        axes = grid_axes(box_shape, max(1, round(n_segments / density)))
        origin = lo
    grid = np.array([v for (start, step, n), o in zip(axes, origin) for v in (start + o, step, n)],
                    dtype=np.int32)
    n_cells = math.prod(a[2] for a in axes)
    # like skimage, the spatial scale is the largest seed spacing (z is 1 for 2D)
    step = float(max(a[1] for a in axes))
    return grid, n_cells, step


# ----------------------------------------------------------------------------- fast SLIC


def features_numpy(sp: SlicInput, intensity: str) -> np.ndarray:
    """Rescaled (and L*a*b*/100) features in float64, for the pre-smoothing path only."""
    img = sp.image.astype(np.float64)
    vals = img if sp.mask is None else img[sp.mask.view(bool)]
    lo, hi = vals.min(), vals.max()
    img -= lo
    if hi > lo:
        img /= hi - lo
    if intensity == "lab":
        from skimage.color import rgb2lab

        rgb = img if img.shape[3] == 3 else np.repeat(img, 3, axis=3)
        lab = rgb2lab(rgb, channel_axis=-1) / 100.0
        img = lab if img.shape[3] == 3 else lab[..., :1]
    return img


def slic_fast(sp, n_segments, compactness, max_num_iter, enforce, min_size_factor,
              max_size_factor, start_label, intensity, nt, batch=None, um_step=0,
              want_labels=True, slic_zero=False):
    """The fast SLIC of `sp` (or of `batch`, (N, D, H, W, C) images sharing sp's mask).

    Returns the labels of sp's image, or ``(labels, um)`` for a batch (either None when
    not asked for). `max_size_factor` is not used (the fast algorithm never splits).
    """
    image = sp.image if batch is None else batch
    if image.ndim == 4:
        image = image[None]
    N, D, H, W, C = image.shape
    grid, n_cells, step = fast_grid((D, H, W), n_segments, sp.mask, sp.ops, sp.mask_count,
                                    sp.mask_box)
    mode = MODE[intensity]
    if sp.sigma.max() > 0:
        if sp.ops.kind != "numpy":
            raise ValueError("sigma > 0 (pre-smoothing) is not supported on GPU arrays; "
                             "smooth the image on the GPU first and pass sigma=0")
        from scipy.ndimage import gaussian_filter

        feats = []
        for n in range(N):
            one = SlicInput(image[n], sp.mask, sp.is_2d, sp.multichannel, sp.spacing, sp.sigma)
            f = features_numpy(one, intensity)
            feats.append(gaussian_filter(f, sigma=list(sp.sigma) + [0.0], mode="reflect"))
        image = np.ascontiguousarray(np.stack(feats), dtype=np.float32)
        mode = MODE["raw"]
    scale = 100.0 if intensity == "lab" else 1.0  # lab features are L*/100
    w = (sp.spacing / step) ** 2
    n_seeds = n_cells if sp.mask is None else min(n_segments, sp.mask_count)
    region = sp.mask_count if sp.mask is not None else D * H * W
    params = SlicParams(wz=float(w[0]), wy=float(w[1]), wx=float(w[2]),
                        cw=float((scale / compactness) ** 2), max_iter=int(max_num_iter),
                        enforce_connectivity=bool(enforce),
                        min_size=size_limit(min_size_factor * region / n_seeds, region),
                        start_label=int(start_label), um_step=int(um_step),
                        slic_zero=bool(slic_zero))
    launch = launch_cpu if sp.ops.kind == "numpy" else launch_cuda
    labels, um = launch(sp, image, grid, n_cells, mode, params, want_labels, nt)
    if batch is None:
        return labels[0]
    return labels, um


def size_limit(size: float, region: int) -> int:
    """int(size), capped at region + 1: any larger limit has the same effect (every
    piece is below it) and would overflow the kernels' integers."""
    return int(min(size, region + 1))


def launch_cpu(sp, image, grid, n_cells, mode, params, want_labels, nt, gpu_layout=False):
    """The steps of csrc/slic/slic_steps.h on the CPU. gpu_layout: in the CUDA
    launcher's configuration (16-pixel segments, atomic centre sums); tests compare it."""
    N, D, H, W, C = image.shape
    labels = np.empty((N, D, H, W), dtype=np.int64) if want_labels else None
    um = np.empty((N, D, H, W), dtype=np.uint8) if params.um_step > 0 else None
    _cpu.slic_fast(image=image, mask=sp.mask, grid=grid, N=N, D=D, H=H, W=W, C=C, mode=mode,
                   **params.kwargs(), labels=labels, um=um, threads=nt, gpu_layout=gpu_layout)
    return labels, um


def launch_cuda(sp, image, grid, n_cells, mode, params, want_labels, nt):
    """The CUDA launcher on the array's device and the caller's stream, in chunks of
    images when one launch would not fit (2^31 pixels, or the free GPU memory)."""
    cuda = cuda_module()
    ops = sp.ops
    N, D, H, W, C = image.shape
    P = D * H * W
    if P >= 2 ** 31:
        raise ValueError(f"image too large: {P} pixels per image (at most 2^31 - 1)")
    dev = ops.device_index(image)
    item = ops.np_dtype(image).itemsize
    code = DTYPE_CODE[ops.np_dtype(image)]
    labels = ops.empty((N, D, H, W), np.int64, dev) if want_labels else None
    um = ops.empty((N, D, H, W), np.uint8, dev) if params.um_step > 0 else None
    lohi = ops.minmax(image, sp.mask)
    mask_ptr = ops.ptr(sp.mask) if sp.mask is not None else 0
    grid = [int(v) for v in grid]
    chunk, start = max(1, min(N, (2 ** 31 - 1) // P)), 0
    while start < N:
        n = min(chunk, N - start)
        nbytes = int(cuda.slic_scratch_bytes(device=dev, dtype=code, mode=mode, N=n, D=D, H=H,
                                             W=W, C=C, n_cells=n_cells))
        try:
            scratch = ops.empty((nbytes,), np.uint8, dev)
        except ops.oom_errors():
            if n == 1:
                raise MemoryError(f"not enough free GPU memory on cuda:{dev} for one "
                                  f"{D}x{H}x{W} image ({nbytes / 2**20:.0f} MiB of scratch)") from None
            chunk = max(1, n // 2)  # nothing was written yet: retry with smaller chunks
            continue
        cuda.slic_fast(device=dev, stream=ops.stream(dev),
                       image=ops.ptr(image) + start * P * C * item, dtype=code, mask=mask_ptr,
                       grid=grid, N=n, D=D, H=H, W=W, C=C, mode=mode, **params.kwargs(),
                       lohi=ops.ptr(lohi) + start * 16,
                       labels=ops.ptr(labels) + start * P * 8 if labels is not None else 0,
                       um=ops.ptr(um) + start * P if um is not None else 0,
                       scratch=ops.ptr(scratch), scratch_bytes=nbytes)
        del scratch  # back to the framework's pool, reused in stream order
        start += n
    return labels, um


def um_fill(images: np.ndarray, labels: np.ndarray, step: int, nt: int) -> np.ndarray:
    """Unsupervised masks (N, H, W) uint8 of grey images (N, H, W) from their labels (from 1)."""
    N, H, W = images.shape
    um = np.empty((N, H, W), dtype=np.uint8)
    _cpu.unsupervised_mask_fill(image=np.ascontiguousarray(images),
                                labels=np.ascontiguousarray(labels, dtype=np.int32), N=N,
                                P=H * W, start_label=1, step=int(step), um=um, threads=nt)
    return um


# ----------------------------------------------------------------------------- reference


def mask_centroids(mask3d: np.ndarray, n_centroids: int, multichannel: bool):
    """Seeds spread over a mask as scikit-image 0.26 places them (k-means, seed 123)."""
    from scipy.cluster.vq import kmeans2
    from scipy.spatial.distance import pdist, squareform

    coord = np.array(np.nonzero(mask3d), dtype=float).T
    rng = np.random.RandomState(123)  # the legacy generator skimage seeds; same draws
    idx_full = np.arange(len(coord), dtype=int)
    idx = np.sort(rng.choice(idx_full, min(n_centroids, len(coord)), replace=False))
    # skimage sizes the dense k-means subset from the 3D mask it has at this point
    ndim_spatial = mask3d.ndim - 1 if multichannel else mask3d.ndim
    n_dense = int((10 ** ndim_spatial) * n_centroids)
    dense = np.sort(rng.choice(idx_full, n_dense, replace=False)) if len(coord) > n_dense \
        else Ellipsis
    centroids, _ = kmeans2(coord[dense], coord[idx], iter=5)
    dist = squareform(pdist(centroids))
    np.fill_diagonal(dist, np.inf)
    closest = dist.argmin(-1)
    steps = abs(centroids - centroids[closest, :]).mean(0)
    return centroids, steps


def slic_reference(sp, n_segments, compactness, max_num_iter, enforce, min_size_factor,
                   max_size_factor, start_label, intensity, nt, slic_zero=False):
    """scikit-image 0.26's slic, step for step, with the loops in C++."""
    from skimage.util import img_as_float

    img = img_as_float(sp.image)
    dtype = np.float32 if img.dtype == np.float32 else np.float64
    img = img.astype(dtype, copy=True)
    mask = sp.mask
    vals = img if mask is None else img[mask.view(bool)]
    imin, imax = vals.min(), vals.max()
    img -= imin
    if imax != imin:
        img /= imax - imin
    if intensity == "lab":
        from skimage.color import rgb2lab

        rgb = img if img.shape[3] == 3 else np.repeat(img, 3, axis=3)
        img = rgb2lab(rgb, channel_axis=-1)
    # skimage treats the grey-as-RGB call as multichannel: it matters for mask seeding
    multichannel = sp.multichannel or intensity == "lab"
    D, H, W, C = img.shape
    if mask is not None:
        centroids, steps = mask_centroids(mask, n_segments, multichannel)
    else:
        axes = grid_axes((D, H, W), n_segments)
        zz, yy, xx = (np.arange(s, dim, st) for (s, st, _), dim in zip(axes, (D, H, W)))
        centroids = np.stack(np.meshgrid(zz, yy, xx, indexing="ij"), -1).reshape(-1, 3)
        steps = np.array([st for _, st, _ in axes], dtype=float)
    spacing = np.ascontiguousarray(sp.spacing, dtype=dtype)
    sigma = np.asarray(sp.sigma, dtype=dtype)
    if (sigma > 0).any():
        from skimage.filters import gaussian

        img = gaussian(img, sigma=list(sigma) + [0], mode="reflect")
    k = centroids.shape[0]
    segments = np.ascontiguousarray(np.concatenate([centroids, np.zeros((k, C))], axis=-1),
                                    dtype=dtype)
    step = float(np.float32(max(steps)))
    img = np.ascontiguousarray(img * (1.0 / compactness), dtype=dtype)
    windows = np.array([st for _, st, _ in grid_axes((D, H, W), k)], dtype=np.int64)
    run = _cpu.slic_reference_f32 if dtype == np.float32 else _cpu.slic_reference_f64
    labels = np.empty((D, H, W), dtype=np.int64)
    # maskSLIC first moves the seeds with space alone (ignore_color), then runs in full
    for ignore_color in ((True, False) if mask is not None else (False,)):
        run(image=img, mask=mask, segments=segments, step=step, window_steps=windows,
            max_iter=max_num_iter, spacing=spacing, slic_zero=bool(slic_zero),
            ignore_color=ignore_color,
            start_label=start_label, labels=labels, threads=nt)
    if enforce:
        region = int(mask.sum()) if mask is not None else D * H * W
        size = region / k  # skimage's order of operations
        labels = _cpu.enforce_connectivity_reference(
            labels=labels, min_size=size_limit(min_size_factor * size, region),
            max_size=size_limit(max_size_factor * size, region), start_label=start_label)
    return labels
