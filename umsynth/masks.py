"""SLIC superpixels and unsupervised masks (UMs), the conditioning input of SemiCS2.

The Python functions here validate, convert and document; the compiled kernels in
``umsynth._cpu`` only loop (scikit-image's split between ``slic`` and ``_slic.pyx``).
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from umsynth import _arrays
from umsynth._config import resolve_threads

__all__ = ["slic", "unsupervised_mask"]

_ALGORITHMS = ("fast", "reference")
_INTENSITIES = ("linear", "lab")
# dtypes the kernels read directly; other real dtypes are converted first
_NATIVE = (np.uint8, np.uint16, np.int16, np.float32, np.float64)
_MODE = {"linear": 0, "lab": 1, "raw": 2}


# ----------------------------------------------------------------------------- checks


def _check_dtype(a: np.ndarray, name: str) -> np.ndarray:
    """Refuse complex/object/bool/string images; widen other real dtypes to a native one."""
    k = a.dtype.kind
    if k == "b":
        raise TypeError(f"{name}: boolean images are not supported; pass a numeric image "
                        "(a mask goes in the `mask` argument)")
    if k not in "uif":
        raise TypeError(f"{name}: unsupported dtype {a.dtype} (expected uint8, uint16, int16, "
                        "float32 or float64)")
    if a.dtype.type in _NATIVE:
        return a
    if k == "f":  # float16
        return a.astype(np.float32)
    return a.astype(np.float64)


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
    """An image brought to (D, H, W, C) with its mask (D, H, W) and bookkeeping."""

    image: np.ndarray     # (D, H, W, C), native dtype, C-contiguous
    mask: np.ndarray | None  # (D, H, W) uint8 or None
    is_2d: bool
    multichannel: bool
    spacing: np.ndarray   # (3,) float64, z first (1 for 2D)
    sigma: np.ndarray     # (3,) float64


def _prepare(image, n_segments, compactness, spacing, sigma, mask, channel_axis) -> _Spatial:
    img, _ = _arrays.to_numpy(image, "image")
    img = _check_dtype(img, "image")
    multichannel = channel_axis is not None
    if multichannel:
        if img.ndim not in (3, 4):
            raise ValueError(f"image: with channel_axis, expected a 3D (H, W, C) or 4D "
                             f"(D, H, W, C) array, got shape {img.shape}")
        try:
            img = np.moveaxis(img, channel_axis, -1)
        except np.exceptions.AxisError:
            raise ValueError(f"channel_axis={channel_axis} is out of range for an image "
                             f"of shape {img.shape}") from None
    else:
        if img.ndim not in (2, 3):
            raise ValueError(f"image: expected a 2D (H, W) or 3D (D, H, W) array, got "
                             f"{img.ndim} dimensions (shape {img.shape}); for colour or "
                             "multi-channel images pass channel_axis")
        if img.ndim == 3 and img.shape[-1] in (3, 4) and min(img.shape[:2]) > 4:
            raise ValueError(f"image of shape {img.shape} looks like a colour image: pass "
                             "channel_axis=-1 (or, for a volume whose last axis really has "
                             f"{img.shape[-1]} voxels, move that axis first)")
        img = img[..., np.newaxis]
    if img.size == 0:
        raise ValueError(f"image is empty (shape {img.shape})")
    is_2d = img.ndim == 3
    if is_2d:
        img = img[np.newaxis]
    img = np.ascontiguousarray(img)
    spatial = img.shape[:3]

    m = None
    if mask is not None:
        m, _ = _arrays.to_numpy(mask, "mask")
        if m.shape != spatial[is_2d:]:
            raise ValueError(f"mask shape {m.shape} differs from the image's spatial shape "
                             f"{spatial[is_2d:]}")
        if m.dtype.kind not in "biuf":
            raise TypeError(f"mask: unsupported dtype {m.dtype}")
        m = np.ascontiguousarray(m != 0, dtype=np.uint8).reshape(spatial)
        if not m.any():
            raise ValueError("mask has no true pixel: there is nothing to segment")

    values = img if m is None else img[m.view(bool)]
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        what = "NaN" if np.isnan(values).any() else "Inf"
        raise ValueError(f"image contains {what} values" + ("" if m is None else " inside the mask"))

    if isinstance(n_segments, bool) or not isinstance(n_segments, (int, np.integer)):
        raise TypeError(f"n_segments must be an integer, got {n_segments!r}")
    n_pix = int(values.shape[0] // img.shape[3] if m is not None else math.prod(spatial))
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
    return _Spatial(img, m, is_2d, multichannel, sp, sg)


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


def _fast_grid(shape, n_segments, mask) -> tuple[np.ndarray, int, float]:
    """Seed grid (9 int32), number of cells and spatial step of the fast algorithm.

    Without a mask it is scikit-image's grid. With a mask, the grid covers the mask's
    bounding box with a density that puts about n_segments seeds inside the mask; the
    kernel moves each seed to the cell's masked pixel nearest to it.
    """
    if mask is None:
        axes = _grid_axes(shape, n_segments)
        origin = (0, 0, 0)
    else:
        nz = np.nonzero(mask)
        lo = [int(a.min()) for a in nz]
        hi = [int(a.max()) + 1 for a in nz]
        box = tuple(h - l for l, h in zip(lo, hi))
        density = len(nz[0]) / math.prod(box)
        axes = _grid_axes(box, max(1, round(n_segments / density)))
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
         mask=None, channel_axis=None, intensity="linear", algorithm="fast", *, threads=None):
    """Segment an image into SLIC superpixels (supervoxels in 3D).

    Parameters
    ----------
    image : (H, W) or (D, H, W) array, or with a channel axis (see `channel_axis`)
        numpy array or CPU torch tensor of uint8, uint16, int16, float32 or float64
        (other real dtypes are converted), contiguous or not. Torch tensors are read
        without a copy where the dtype allows.
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
        integers, and enforces connectivity with a union-find labelling. Its results
        are identical for any thread count. ``"reference"``: reproduces scikit-image
        0.26 label for label (the same seeds, windows, float precision and
        connectivity pass); CPU only and slower.
    threads : int, optional
        Cap on the number of threads (default: ``UMSYNTH_NUM_THREADS`` or all cores).

    Returns
    -------
    labels : array of int64, shaped like the image's spatial axes
        numpy array for numpy input, torch tensor for torch input.

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
    _, kind = _arrays.to_numpy(image, "image")
    sp = _prepare(image, n_segments, compactness, spacing, sigma, mask, channel_axis)
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
    return _arrays.like(labels, kind)


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
    from umsynth import _cpu

    image = sp.image if batch is None else batch  # batch: (N, D, H, W, C)
    if image.ndim == 4:
        image = image[np.newaxis]
    N, D, H, W, C = image.shape
    grid, n_cells, step = _fast_grid((D, H, W), n_segments, sp.mask)
    mode = _MODE[intensity]
    if sp.sigma.max() > 0:
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
    n_seeds = n_cells if sp.mask is None else min(n_segments, int(sp.mask.sum()))
    region = int(sp.mask.sum()) if sp.mask is not None else D * H * W
    min_size = int(min_size_factor * region / n_seeds)
    labels = np.empty((N, D, H, W), dtype=np.int64) if want_labels else None
    um = np.empty((N, D, H, W), dtype=np.uint8) if um_step > 0 else None
    _cpu.slic_fast(image, sp.mask, np.tile(grid, N), N, D, H, W, C, mode, float(w[0]),
                   float(w[1]), float(w[2]), float(cw), max_num_iter, enforce, min_size,
                   start_label, um_step, labels, um, nt)
    if batch is None:
        return labels[0]
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
                      algorithm="fast", return_labels=False, *, threads=None):
    """Unsupervised masks (UMs): SLIC superpixels filled with their mean intensity.

    Each pixel gets the mean grey level of its superpixel, rounded down to a multiple
    of `step` (``floor(mean / step) * step``). The defaults reproduce the original
    SemiCS2 ``run()``: scikit-image's SLIC with 512 segments and compactness 10 on a
    3-channel copy of the grey montage (CIE Lab), then the quantized means.

    Parameters
    ----------
    images : (H, W), (N, H, W) or (N, 1, H, W) array
        Grey images as a numpy array or CPU torch tensor. Batches are processed in
        parallel in C++ and give exactly the images' one-by-one results.
    n_segments, compactness, intensity, algorithm
        As in :func:`umsynth.slic` (``algorithm="reference"`` follows scikit-image
        exactly, image by image).
    step : int, optional
        Quantization step on the 0..255 scale (1 keeps the means, floored).
    return_labels : bool, optional
        Also return the superpixel labels (int64, starting at 1).
    threads : int, optional
        Cap on the number of threads.

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
    arr, kind = _arrays.to_numpy(images, "images")
    in_shape = arr.shape
    if arr.ndim == 4:
        if arr.shape[1] != 1:
            raise ValueError(f"images: a 4D batch must be (N, 1, H, W), got shape {in_shape}")
        arr = arr[:, 0]
    elif arr.ndim == 2:
        arr = arr[np.newaxis]
    elif arr.ndim != 3:
        raise ValueError(f"images: expected (H, W), (N, H, W) or (N, 1, H, W), got shape {in_shape}")
    arr = _check_dtype(arr, "images")
    if arr.size == 0:
        raise ValueError(f"images is empty (shape {in_shape})")
    N, H, W = arr.shape
    # validate everything on the first image; the others share shape and dtype
    sp = _prepare(arr[0], n_segments, compactness, None, 0, None, None)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError("images contain NaN or Inf values")
    nt = resolve_threads(threads)
    from umsynth import _cpu

    if algorithm == "fast":
        batch = np.ascontiguousarray(arr).reshape(N, 1, H, W, 1)
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
    if not return_labels:
        return _arrays.like(um, kind)
    return _arrays.like(um, kind), _arrays.like(labels.reshape(in_shape), kind)
