"""SLIC superpixels and unsupervised masks (UMs), the conditioning input of SemiCS2.

The Python functions here validate, convert and document; the compiled kernels in
``umsynth._cpu`` only loop (scikit-image's split between ``slic`` and ``_slic.pyx``).
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from umsynth import _arrays, _device
from umsynth._config import resolve_threads

__all__ = ["slic", "unsupervised_mask"]

_ALGORITHMS = ("fast", "reference")
_INTENSITIES = ("linear", "lab")
# dtypes the kernels read directly; other real dtypes are converted first
_NATIVE = (np.uint8, np.uint16, np.int16, np.float32, np.float64)
_MODE = {"linear": 0, "lab": 1, "raw": 2}
_HOST = _device.HostOps()


# ----------------------------------------------------------------------------- checks


def _check_dtype(a, name: str, ops=_HOST):
    """Refuse complex/object/bool/string images; widen other real dtypes to a native one."""
    dt = ops.np_dtype(a)
    k = dt.kind
    if k == "b":
        raise TypeError(f"{name}: boolean images are not supported; pass a numeric image "
                        "(a mask goes in the `mask` argument)")
    if k not in "uif":
        raise TypeError(f"{name}: unsupported dtype {dt} (expected uint8, uint16, int16, "
                        "float32 or float64)")
    if dt.type in _NATIVE:
        return a
    if k == "f":  # float16
        return ops.astype(a, np.float32)
    return ops.astype(a, np.float64)


def _check_positive(value, name: str, allow_zero: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return v


def _check_choice(value, name: str, choices) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


@dataclass
class _Spatial:
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
    ops: _device.Ops = _HOST
    mask_count: int = 0   # true pixels of the mask
    mask_box: tuple | None = None  # (lo, hi) corners of the mask's bounding box


def _channels_last(img, channel_axis, ops):
    """The image with its channel axis last (a trailing axis of 1 for grey images)."""
    shape = tuple(img.shape)
    if channel_axis is not None:
        if len(shape) not in (3, 4):
            raise ValueError(f"image: with channel_axis, expected a 3D (H, W, C) or 4D "
                             f"(D, H, W, C) array, got shape {shape}")
        if isinstance(channel_axis, bool) or not isinstance(channel_axis, (int, np.integer)):
            raise TypeError(f"channel_axis must be an integer or None, got {channel_axis!r}")
        if not -len(shape) <= channel_axis < len(shape):
            raise ValueError(f"channel_axis={channel_axis} is out of range for an image "
                             f"of shape {shape}")
        return ops.moveaxis(img, int(channel_axis), -1)
    if len(shape) not in (2, 3):
        raise ValueError(f"image: expected a 2D (H, W) or 3D (D, H, W) array, got "
                         f"{len(shape)} dimensions (shape {shape}); for colour or "
                         "multi-channel images pass channel_axis")
    if len(shape) == 3 and shape[-1] in (3, 4) and min(shape[:2]) > 4:
        raise ValueError(f"image of shape {shape} looks like a colour image: pass "
                         "channel_axis=-1 (or, for a volume whose last axis really has "
                         f"{shape[-1]} voxels, move that axis first)")
    return img[..., None]


def _mask_like(mask, spatial, is_2d, ops, device):
    """The mask as contiguous uint8 (D, H, W) in the image's framework, checked."""
    if ops.kind == "numpy":
        if _device.is_gpu_array(mask):
            raise ValueError("mask is a GPU array but image is on the CPU: pass both on "
                             "the same device")
        m, _ = _arrays.to_numpy(mask, "mask")
    elif _device.is_gpu_array(mask):
        m, mops = _device.wrap(mask, "mask")
        if mops.kind != ops.kind:
            raise TypeError(f"mask is a {mops.kind} array but image is a {ops.kind} array")
    else:  # a host mask for a GPU image: copied once to the image's device
        m = np.asarray(_arrays.to_numpy(mask, "mask")[0])
        if m.dtype.kind not in "biuf":
            raise TypeError(f"mask: unsupported dtype {m.dtype}")
        m = np.ascontiguousarray(m != 0, dtype=np.uint8)
        m = ops.from_host(m, device)
    if tuple(m.shape) != spatial[is_2d:]:
        raise ValueError(f"mask shape {tuple(m.shape)} differs from the image's spatial shape "
                         f"{spatial[is_2d:]}")
    if ops.np_dtype(m).kind not in "biuf":
        raise TypeError(f"mask: unsupported dtype {ops.np_dtype(m)}")
    return ops.to_u8(m).reshape(spatial)


def _prepare(image, n_segments, compactness, spacing, sigma, mask, channel_axis,
             ops=None) -> _Spatial:
    if ops is None:
        img, _ = _arrays.to_numpy(image, "image")
        ops = _HOST
    else:
        img = image
    img = _check_dtype(img, "image", ops)
    multichannel = channel_axis is not None
    img = _channels_last(img, channel_axis, ops)
    if math.prod(img.shape) == 0:
        raise ValueError(f"image is empty (shape {tuple(img.shape)})")
    is_2d = img.ndim == 3
    if is_2d:
        img = img[None]
    img = ops.contiguous(img)
    spatial = tuple(img.shape[:3])

    m, count, box = None, 0, None
    if mask is not None:
        dev = None if ops.kind == "numpy" else ops.device_index(img)
        m = _mask_like(mask, spatial, is_2d, ops, dev)
        count = ops.count(m)
        if count == 0:
            raise ValueError("mask has no true pixel: there is nothing to segment")
        box = ops.bbox(m)

    if ops.np_dtype(img).kind == "f":
        values = img if m is None else img[ops.as_bool(m)]
        if not ops.all_finite(values):
            what = "NaN" if ops.any_nan(values) else "Inf"
            raise ValueError(f"image contains {what} values" + ("" if m is None else " inside the mask"))

    if isinstance(n_segments, bool) or not isinstance(n_segments, (int, np.integer)):
        raise TypeError(f"n_segments must be an integer, got {n_segments!r}")
    n_pix = count if m is not None else math.prod(spatial)
    if n_segments < 1:
        raise ValueError(f"n_segments must be >= 1, got {n_segments}")
    if n_segments > n_pix:
        raise ValueError(f"n_segments={n_segments} is larger than the number of "
                         f"{'masked ' if m is not None else ''}pixels ({n_pix})")
    _check_positive(compactness, "compactness")

    nd = 2 if is_2d else 3
    if spacing is None:
        sp = np.ones(3)
    else:
        if not isinstance(spacing, Iterable):
            raise TypeError(f"spacing must be None or a sequence of {nd} numbers")
        sp = np.asarray(spacing, dtype=np.float64).ravel()
        if sp.size != nd:
            raise ValueError(f"spacing has {sp.size} elements, expected {nd} for a "
                             f"{'2D' if is_2d else '3D'} image")
        if not (np.isfinite(sp).all() and (sp > 0).all()):
            raise ValueError(f"spacing must be finite and > 0, got {spacing!r}")
        if is_2d:
            sp = np.insert(sp, 0, 1.0)
    if np.isscalar(sigma):
        s = _check_positive(sigma, "sigma", allow_zero=True)
        sg = np.full(3, s) / sp
    else:
        sg = np.asarray(sigma, dtype=np.float64).ravel()
        if sg.size != nd or not (np.isfinite(sg).all() and (sg >= 0).all()):
            raise ValueError(f"sigma must be a number or {nd} numbers >= 0, got {sigma!r}")
        if is_2d:
            sg = np.insert(sg, 0, 0.0)
    if is_2d:
        sg[0] = 0.0
    return _Spatial(img, m, is_2d, multichannel, sp, sg, ops, count, box)


# ----------------------------------------------------------------------------- grids


def _grid_axes(shape, n_points) -> list[tuple[int, int, int]]:
    """(start, step, count) per axis of scikit-image's regular seed grid."""
    from skimage.util import regular_grid

    out = []
    for sl, dim in zip(regular_grid(shape, n_points), shape):
        start = int(sl.start or 0)
        step = int(sl.step or 1)
        out.append((start, step, len(range(start, dim, step))))
    return out


def _fast_grid(shape, n_segments, mask, ops=_HOST, count=None, box=None):
    """Seed grid (9 int32), number of cells and spatial step of the fast algorithm.

    Without a mask it is scikit-image's grid. With a mask, the grid covers the mask's
    bounding box with a density that puts about n_segments seeds inside the mask; the
    kernel moves each seed to the cell's masked pixel nearest to it. `count` and `box`
    (the mask's true pixels and bounding box) are computed from `mask` when not given.
    """
    if mask is None:
        axes = _grid_axes(shape, n_segments)
        origin = (0, 0, 0)
    else:
        lo, hi = box if box is not None else ops.bbox(mask)
        count = count if count is not None else ops.count(mask)
        box_shape = tuple(h - l for l, h in zip(lo, hi))
        density = count / math.prod(box_shape)
        axes = _grid_axes(box_shape, max(1, round(n_segments / density)))
        origin = lo
    grid = np.array([v for (start, step, n), o in zip(axes, origin) for v in (start + o, step, n)],
                    dtype=np.int32)
    n_cells = math.prod(a[2] for a in axes)
    # like skimage, the spatial scale is the largest seed spacing (z is 1 for 2D)
    step = float(max(a[1] for a in axes))
    return grid, n_cells, step


# ----------------------------------------------------------------------------- slic


def slic(image, n_segments=100, compactness=10.0, max_num_iter=10, sigma=0, spacing=None,
         enforce_connectivity=True, min_size_factor=0.5, max_size_factor=3.0, start_label=1,
         mask=None, channel_axis=None, intensity="linear", algorithm="fast", *, threads=None,
         device=None):
    """Segment an image into SLIC superpixels (supervoxels in 3D).

    Parameters
    ----------
    image : (H, W) or (D, H, W) array, or with a channel axis (see `channel_axis`)
        numpy array, torch tensor (CPU or CUDA) or CuPy array of uint8, uint16, int16,
        float32 or float64 (other real dtypes are converted), contiguous or not. Arrays
        are read without a copy where the dtype allows. A GPU array is segmented on its
        own device, on the caller's current stream, and never copied to the host.
    n_segments : int, optional
        Approximate number of superpixels (seeds are laid on scikit-image's regular grid).
    compactness : float, optional
        Balance of intensity and space: higher values give more compact, square
        superpixels. The intensity distance is measured on the image rescaled to
        [0, 1] (or in CIE L*/100 with ``intensity="lab"``), as in scikit-image.
    max_num_iter : int, optional
        Maximum number of k-means iterations. The fast algorithm stops early once an
        iteration changes no label (a fixed point: more passes would change nothing).
    sigma : float or sequence of floats, optional
        Width of a Gaussian pre-smoothing per spatial axis; a scalar is divided by
        `spacing`, as in scikit-image.
    spacing : sequence of floats, optional
        Voxel spacing per spatial axis (z, y, x); weights the spatial distance.
    enforce_connectivity : bool, optional
        Make every superpixel one connected piece (6-connectivity in 3D, 4 in 2D) and
        merge pieces smaller than ``min_size_factor * (pixels / n_seeds)`` into a
        neighbour.
    min_size_factor : float, optional
        Smallest superpixel kept, relative to the expected size.
    max_size_factor : float, optional
        Used by ``algorithm="reference"`` exactly as scikit-image uses it (its
        breadth-first search stops growing a piece at this size, which splits larger
        pieces). The fast algorithm never splits a connected superpixel and ignores it.
    start_label : {0, 1}, optional
        Label of the first superpixel. Pixels outside `mask` get ``start_label - 1``.
    mask : array of bool, optional
        Segment only where true (maskSLIC). Seeds are spread over the mask.
    channel_axis : int or None, optional
        Axis of the channels for multi-channel images; None for grey images.
    intensity : {"linear", "lab"}, optional
        ``"linear"`` rescales the image to [0, 1] (scikit-image's grey path). ``"lab"``
        maps it through CIE L* (grey) or L*a*b* (3 channels) first, which reproduces
        scikit-image's call on an RGB copy of a grey image: that call equals grey SLIC
        on L*/100 with compactness / 100.
    algorithm : {"fast", "reference"}, optional
        ``"fast"`` (default): a deterministic parallel SLIC that compares each pixel
        with the seeds of the neighbouring grid cells only, accumulates centre sums in
        integers, and enforces connectivity with a union-find labelling. The CPU
        and the GPU run the same steps (csrc/slic/slic_steps.h): labels are identical
        for any thread count, batch size and device. ``"reference"``: reproduces scikit-image
        0.26 label for label (the same seeds, windows, float precision and
        connectivity pass); it runs on the CPU only and is slower. GPU arrays are
        refused with it rather than copied.
    threads : int, optional
        Cap on the number of threads (default: ``UMSYNTH_NUM_THREADS`` or all cores).
    device : {None, "cpu", "cuda", "cuda:N"}, optional
        Where to run. None: where the image lives. A GPU image with ``"cpu"`` (or
        another GPU) is an error, never a silent copy. A host image with ``"cuda"`` is
        copied to that GPU, segmented there and returned on the host. The CUDA path
        gives the CPU path's labels bit for bit; it does not pre-smooth (``sigma``
        must be 0) and needs umsynth built with CUDA and a usable device
        (:func:`umsynth.show_config`).

    Returns
    -------
    labels : array of int64, shaped like the image's spatial axes
        The kind of array passed (numpy, torch tensor, CuPy array), on its device.

    Raises
    ------
    ValueError
        Wrong number of dimensions, empty image, NaN or Inf, n_segments < 1 or larger
        than the number of pixels, compactness <= 0, a mask of another shape or with
        no true pixel, an apparent colour image without channel_axis.
    TypeError
        Complex, object, string or boolean images; non-integer n_segments.

    Examples
    --------
    >>> import numpy as np, umsynth
    >>> img = (np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8)
    >>> labels = umsynth.slic(img, n_segments=16, compactness=10)
    >>> labels.shape, labels.min()
    ((64, 64), 1)
    """
    _check_choice(algorithm, "algorithm", _ALGORITHMS)
    _check_choice(intensity, "intensity", _INTENSITIES)
    if start_label not in (0, 1):
        raise ValueError(f"start_label must be 0 or 1, got {start_label!r}")
    if isinstance(max_num_iter, bool) or not isinstance(max_num_iter, (int, np.integer)) \
            or max_num_iter < 0:
        raise ValueError(f"max_num_iter must be an integer >= 0, got {max_num_iter!r}")
    _check_positive(min_size_factor, "min_size_factor", allow_zero=True)
    _check_positive(max_size_factor, "max_size_factor")
    args = dict(n_segments=n_segments, compactness=compactness, max_num_iter=max_num_iter,
                sigma=sigma, spacing=spacing, enforce_connectivity=enforce_connectivity,
                min_size_factor=min_size_factor, max_size_factor=max_size_factor,
                start_label=start_label, mask=mask, channel_axis=channel_axis,
                intensity=intensity, algorithm=algorithm, threads=threads)
    arr, ops = _on_device(image, "image", device, algorithm)
    if ops is None and _device.parse_device(device)[0] == "cuda":
        return _via_gpu(slic, image, "image", device, args)
    if ops is None:
        _, kind = _arrays.to_numpy(image, "image")
        sp = _prepare(image, n_segments, compactness, spacing, sigma, mask, channel_axis)
    else:
        sp = _prepare(arr, n_segments, compactness, spacing, sigma, mask, channel_axis, ops)
    if intensity == "lab" and sp.image.shape[3] not in (1, 3):
        raise ValueError(f"intensity='lab' needs a grey or 3-channel (RGB) image, got "
                         f"{sp.image.shape[3]} channels")
    nt = resolve_threads(threads)
    run = _slic_reference if algorithm == "reference" else _slic_fast
    labels = run(sp, int(n_segments), float(compactness), int(max_num_iter),
                 bool(enforce_connectivity), float(min_size_factor), float(max_size_factor),
                 int(start_label), intensity, nt)
    if sp.is_2d:
        labels = labels[0]
    return labels if ops is not None else _arrays.like(labels, kind)


def _on_device(x, name, device, algorithm):
    """(array, Ops) for a GPU array that may run where it is; (None, None) for host input."""
    target, index = _device.parse_device(device)
    if not _device.is_gpu_array(x):
        if target == "cuda" and algorithm == "reference":
            raise ValueError("algorithm='reference' runs on the CPU only; use device='cpu' "
                             "or algorithm='fast'")
        return None, None
    if target == "cpu":
        raise ValueError(f"{name} is a GPU array but device='cpu': copy it to the host first "
                         "(.cpu() / .get()); umsynth never does that behind your back")
    if algorithm == "reference":
        raise ValueError("algorithm='reference' runs on the CPU only; for GPU arrays use "
                         "algorithm='fast' (or copy the array to the host)")
    _device.cuda_module()  # a clear error when no device is usable, before any GPU work
    arr, ops = _device.wrap(x, name)
    if index is not None and index != ops.device_index(arr):
        raise ValueError(f"{name} is on cuda:{ops.device_index(arr)} but device={device!r}")
    return arr, ops


def _via_gpu(func, x, name, device, args):
    """Run `func` on a host array copied to the GPU named by `device`; results come back."""
    _device.cuda_module()
    index = _device.parse_device(device)[1] or 0
    import torch

    was_torch = _arrays.is_torch(x)
    host, _ = _arrays.to_numpy(x, name)
    out = func(torch.from_numpy(np.ascontiguousarray(host)).to(f"cuda:{index}"),
               **{**args, "device": None})
    outs = out if isinstance(out, tuple) else (out,)
    back = tuple(o.cpu() if was_torch else o.cpu().numpy() for o in outs)
    return back if isinstance(out, tuple) else back[0]


def _features_numpy(sp: _Spatial, intensity: str) -> np.ndarray:
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


def _slic_fast(sp, n_segments, compactness, max_num_iter, enforce, min_size_factor,
               max_size_factor, start_label, intensity, nt, batch=None, um_step=0,
               want_labels=True):
    image = sp.image if batch is None else batch  # batch: (N, D, H, W, C)
    if image.ndim == 4:
        image = image[None]
    N, D, H, W, C = image.shape
    grid, n_cells, step = _fast_grid((D, H, W), n_segments, sp.mask, sp.ops, sp.mask_count,
                                     sp.mask_box)
    mode = _MODE[intensity]
    if sp.sigma.max() > 0:
        if sp.ops.kind != "numpy":
            raise ValueError("sigma > 0 (pre-smoothing) is not supported on GPU arrays; "
                             "smooth the image on the GPU first and pass sigma=0")
        from scipy.ndimage import gaussian_filter

        feats = []
        for n in range(N):
            one = _Spatial(image[n], sp.mask, sp.is_2d, sp.multichannel, sp.spacing, sp.sigma)
            f = _features_numpy(one, intensity)
            feats.append(gaussian_filter(f, sigma=list(sp.sigma) + [0.0], mode="reflect"))
        image = np.ascontiguousarray(np.stack(feats), dtype=np.float32)
        mode = _MODE["raw"]
    scale = 100.0 if intensity == "lab" else 1.0  # lab features are L*/100
    w = (sp.spacing / step) ** 2
    cw = (scale / compactness) ** 2
    n_seeds = n_cells if sp.mask is None else min(n_segments, sp.mask_count)
    region = sp.mask_count if sp.mask is not None else D * H * W
    min_size = int(min_size_factor * region / n_seeds)
    args = (mode, float(w[0]), float(w[1]), float(w[2]), float(cw), int(max_num_iter),
            bool(enforce), min_size, int(start_label), int(um_step))
    launch = _launch_cpu if sp.ops.kind == "numpy" else _launch_cuda
    labels, um = launch(sp, image, grid, n_cells, args, want_labels, nt)
    if batch is None:
        return labels[0]
    return labels, um


def _launch_cpu(sp, image, grid, n_cells, args, want_labels, nt, gpu_layout=False):
    """The steps of csrc/slic/slic_steps.h on the CPU. gpu_layout: in the CUDA
    launcher's configuration (16-pixel segments, atomic centre sums); tests compare it."""
    from umsynth import _cpu

    N, D, H, W, C = image.shape
    labels = np.empty((N, D, H, W), dtype=np.int64) if want_labels else None
    um = np.empty((N, D, H, W), dtype=np.uint8) if args[-1] > 0 else None
    _cpu.slic_fast(image, sp.mask, grid, N, D, H, W, C, *args, labels, um, nt, gpu_layout)
    return labels, um


def _launch_cuda(sp, image, grid, n_cells, args, want_labels, nt):
    """The CUDA launcher on the array's device and the caller's stream, in chunks of
    images when one launch would not fit (2^31 pixels, or the free GPU memory)."""
    cuda = _device.cuda_module()
    ops = sp.ops
    N, D, H, W, C = image.shape
    P = D * H * W
    if P >= 2 ** 31:
        raise ValueError(f"image too large: {P} pixels per image (at most 2^31 - 1)")
    dev = ops.device_index(image)
    item = ops.np_dtype(image).itemsize
    code = _device.DTYPE_CODE[ops.np_dtype(image)]
    labels = ops.empty((N, D, H, W), np.int64, dev) if want_labels else None
    um = ops.empty((N, D, H, W), np.uint8, dev) if args[-1] > 0 else None
    lohi = ops.minmax(image, sp.mask)
    mask_ptr = ops.ptr(sp.mask) if sp.mask is not None else 0
    chunk, start = max(1, min(N, (2 ** 31 - 1) // P)), 0
    while start < N:
        n = min(chunk, N - start)
        nbytes = int(cuda.slic_scratch_bytes(dev, code, args[0], n, D, H, W, C, n_cells))
        try:
            scratch = ops.empty((nbytes,), np.uint8, dev)
        except ops.oom_errors():
            if n == 1:
                raise MemoryError(f"not enough free GPU memory on cuda:{dev} for one "
                                  f"{D}x{H}x{W} image ({nbytes / 2**20:.0f} MiB of scratch)") from None
            chunk = max(1, n // 2)  # nothing was written yet: retry with smaller chunks
            continue
        cuda.slic_fast(dev, ops.stream(dev), ops.ptr(image) + start * P * C * item, code,
                       mask_ptr, [int(v) for v in grid], n, D, H, W, C, *args,
                       ops.ptr(lohi) + start * 16,
                       ops.ptr(labels) + start * P * 8 if labels is not None else 0,
                       ops.ptr(um) + start * P if um is not None else 0,
                       ops.ptr(scratch), nbytes)
        del scratch  # back to the framework's pool, reused in stream order
        start += n
    return labels, um


# ----------------------------------------------------------------------------- reference


def _mask_centroids(mask3d: np.ndarray, n_centroids: int, multichannel: bool):
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


def _slic_reference(sp, n_segments, compactness, max_num_iter, enforce, min_size_factor,
                    max_size_factor, start_label, intensity, nt):
    """scikit-image 0.26's slic, step for step, with the loops in C++."""
    from skimage.util import img_as_float

    from umsynth import _cpu

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
        centroids, steps = _mask_centroids(mask, n_segments, multichannel)
    else:
        axes = _grid_axes((D, H, W), n_segments)
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
    windows = np.array([st for _, st, _ in _grid_axes((D, H, W), k)], dtype=np.int64)
    run = _cpu.slic_reference_f32 if dtype == np.float32 else _cpu.slic_reference_f64
    labels = np.empty((D, H, W), dtype=np.int64)
    if mask is not None:  # maskSLIC: first move the seeds with space alone
        run(img, mask, segments, step, windows, max_num_iter, spacing, True, start_label,
            labels, nt)
    run(img, mask, segments, step, windows, max_num_iter, spacing, False, start_label, labels, nt)
    if enforce:
        size = (int(mask.sum()) if mask is not None else D * H * W) / k
        labels = _cpu.enforce_connectivity_reference(labels, int(min_size_factor * size),
                                                     int(max_size_factor * size), start_label)
    return labels


# ----------------------------------------------------------------------------- UM


def unsupervised_mask(images, n_segments=512, compactness=10.0, step=10, intensity="lab",
                      algorithm="fast", return_labels=False, *, threads=None, device=None):
    """Unsupervised masks (UMs): SLIC superpixels filled with their mean intensity.

    Each pixel gets the mean grey level of its superpixel, rounded down to a multiple
    of `step` (``floor(mean / step) * step``). The defaults reproduce the original
    SemiCS2 ``run()``: scikit-image's SLIC with 512 segments and compactness 10 on a
    3-channel copy of the grey montage (CIE Lab), then the quantized means.

    Parameters
    ----------
    images : (H, W), (N, H, W) or (N, 1, H, W) array
        Grey images as a numpy array, torch tensor (CPU or CUDA) or CuPy array.
        Batches are processed in parallel and give exactly the images' one-by-one
        results. GPU arrays stay on their device (the caller's current stream); the
        result is the same kind of array on the same device, equal bit for bit to the
        CPU path's.
    n_segments, compactness, intensity, algorithm
        As in :func:`umsynth.slic` (``algorithm="reference"`` follows scikit-image
        exactly, image by image).
    step : int, optional
        Quantization step on the 0..255 scale (1 keeps the means, floored).
    return_labels : bool, optional
        Also return the superpixel labels (int64, starting at 1).
    threads : int, optional
        Cap on the number of threads.
    device : {None, "cpu", "cuda", "cuda:N"}, optional
        As in :func:`umsynth.slic`.

    Returns
    -------
    um : uint8 array shaped like `images`
        Values on the 0..255 grey scale. uint8 images are used as they are; images of
        other dtypes are mapped to 0..255 by their own min..max (SLIC's own linear
        rescale), so window CT (for example to [-1500, 100] HU) before calling this
        when UMs must be comparable across images.
    labels : int64 array shaped like `images`
        Only with ``return_labels=True``.

    Notes
    -----
    The means and the quantization are one pass in C++ over integer (fixed-point)
    sums; no per-label scan of the image.
    """
    _check_choice(algorithm, "algorithm", _ALGORITHMS)
    _check_choice(intensity, "intensity", _INTENSITIES)
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or not 1 <= step <= 255:
        raise ValueError(f"step must be an integer in 1..255, got {step!r}")
    garr, ops = _on_device(images, "images", device, algorithm)
    if ops is None and _device.parse_device(device)[0] == "cuda":
        return _via_gpu(unsupervised_mask, images, "images", device,
                        dict(n_segments=n_segments, compactness=compactness, step=step,
                             intensity=intensity, algorithm=algorithm,
                             return_labels=return_labels, threads=threads))
    if ops is None:
        arr, kind = _arrays.to_numpy(images, "images")
        ops = _HOST
    else:
        arr, kind = garr, ops.kind
    in_shape = tuple(arr.shape)
    if arr.ndim == 4:
        if arr.shape[1] != 1:
            raise ValueError(f"images: a 4D batch must be (N, 1, H, W), got shape {in_shape}")
        arr = arr[:, 0]
    elif arr.ndim == 2:
        arr = arr[None]
    elif arr.ndim != 3:
        raise ValueError(f"images: expected (H, W), (N, H, W) or (N, 1, H, W), got shape {in_shape}")
    arr = _check_dtype(arr, "images", ops)
    if math.prod(arr.shape) == 0:
        raise ValueError(f"images is empty (shape {in_shape})")
    N, H, W = arr.shape
    # validate everything on the first image; the others share shape and dtype
    sp = _prepare(arr[0], n_segments, compactness, None, 0, None, None,
                  None if ops is _HOST else ops)
    if ops.np_dtype(arr).kind == "f" and not ops.all_finite(arr):
        raise ValueError("images contain NaN or Inf values")
    nt = resolve_threads(threads)
    from umsynth import _cpu

    if algorithm == "fast":
        batch = ops.contiguous(arr).reshape(N, 1, H, W, 1)
        labels, um = _slic_fast(sp, int(n_segments), float(compactness), 10, True, 0.5, 3.0, 1,
                                intensity, nt, batch=batch, um_step=int(step),
                                want_labels=return_labels)
        um = um.reshape(N, H, W)
    else:
        labels = np.stack([slic(a, n_segments=n_segments, compactness=compactness,
                                intensity=intensity, algorithm="reference", threads=nt)
                           for a in arr])
        um = np.empty((N, H, W), dtype=np.uint8)
        _cpu.unsupervised_mask_fill(np.ascontiguousarray(arr), labels.astype(np.int32), N, H * W,
                                    1, int(step), um, nt)
    um = um.reshape(in_shape)
    if ops is not _HOST:  # already the caller's kind of array, on its device
        return (um, labels.reshape(in_shape)) if return_labels else um
    if not return_labels:
        return _arrays.like(um, kind)
    return _arrays.like(um, kind), _arrays.like(labels.reshape(in_shape), kind)
