"""SLIC superpixels and unsupervised masks (UMs), the conditioning input of SemiCS2.

The Python functions here validate, convert and document; the launchers in
:mod:`umsynth.kernels.slic` run the compiled kernels, which only loop (scikit-image's
split between ``slic`` and ``_slic.pyx``). :class:`UMConfig` names the settings that
define a UM.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from umsynth.kernels import slic as slic_kernels
from umsynth.kernels.arrays import (cuda_module, is_gpu_array, is_torch, like, parse_device,
                                    to_numpy, wrap)
from umsynth.kernels.config import resolve_threads

__all__ = ["slic", "unsupervised_mask", "UMConfig"]

_ALGORITHMS = ("fast", "reference")
_INTENSITIES = ("linear", "lab")
# dtypes the kernels read directly; other real dtypes are converted first
_NATIVE = (np.uint8, np.uint16, np.int16, np.float32, np.float64)
_HOST = slic_kernels.HOST
# Input limits, checked before anything is copied. Pixels: the kernels index an
# image's pixels with 32-bit integers. Channels: a sane bound far above hyperspectral
# band counts. Compactness: below 1e-10 the colour weight (1/compactness)^2 overflows
# float32 distances (at 1e-20 every pixel came out unlabelled); the colour term already
# dominates completely from about 1e-6. Iterations: k-means converges in tens.
MAX_PIXELS = 2 ** 31 - 1
MAX_CHANNELS = 1024
MIN_COMPACTNESS = 1e-10
MAX_ITER = 10_000


# ----------------------------------------------------------------------------- checks


def _check_dtype(a, name: str, ops=_HOST):
    """Refuse complex/object/bool/string images; widen other real dtypes to a native one.

    Non-native byte order (big-endian NIfTI through nibabel, ``>f4`` ...) is converted
    to native order: the kernels read memory as it is.
    """
    dt = ops.np_dtype(a)
    k = dt.kind
    if k in "biuf" and not dt.isnative:
        dt = dt.newbyteorder("=")
        a = ops.astype(a, dt)
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


def _check_size(shape, channel_axis, name: str) -> None:
    """Refuse images the kernels cannot index, before anything is copied."""
    shape = tuple(int(v) for v in shape)
    spatial = list(shape)
    channels = 1
    if channel_axis is not None and isinstance(channel_axis, (int, np.integer)) \
            and not isinstance(channel_axis, bool) and -len(shape) <= channel_axis < len(shape):
        channels = spatial.pop(int(channel_axis))
    if math.prod(spatial) > MAX_PIXELS:
        raise ValueError(f"{name} of shape {shape} has {math.prod(spatial)} pixels per image; "
                         f"at most {MAX_PIXELS} (2^31 - 1) are supported")
    if channels > MAX_CHANNELS:
        raise ValueError(f"{name} of shape {shape} has {channels} channels; at most "
                         f"{MAX_CHANNELS} are supported")


def _check_int(value, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be between {lo} and {hi}, got {value}")
    return int(value)


def _check_compactness(value) -> float:
    c = _check_positive(value, "compactness")
    if c < MIN_COMPACTNESS:
        raise ValueError(f"compactness must be >= {MIN_COMPACTNESS:g}, got {value!r} (below, "
                         "the colour weight (1/compactness)^2 overflows float32; the colour "
                         "term already decides alone from about 1e-6)")
    return c


def _shape_of(x):
    """The shape of an array-like without converting it (None where it has none)."""
    shape = getattr(x, "shape", None)
    return tuple(shape) if shape is not None else None


def _normal_range(batch, ops, mask=None):
    """float64 images whose value range is subnormal or overflows, scaled by a power of two.

    The kernels rescale by 1 / (max - min); for a range below 2^-1000 that overflows,
    above 2^1000 the range itself does. A power of two changes every value exactly (up
    from subnormals) or by far less than the range (down), and (v - min) / (max - min)
    not at all, so the labels and masks are those of the exact computation. batch:
    (N, ...) with the channels last; mask: the pixels that count, shared by the batch.
    """
    if ops.np_dtype(batch) != np.float64 or math.prod(batch.shape) == 0:
        return batch
    n = batch.shape[0]
    lohi = np.asarray(ops.to_host(ops.minmax(batch, mask)), dtype=np.float64)
    out = batch
    with np.errstate(over="ignore"):
        for i, (lo, hi) in enumerate(lohi):
            r = hi - lo
            if r == 0 or (np.isfinite(r) and 2.0 ** -1000 <= r <= 2.0 ** 1000):
                continue
            k = -int(np.frexp(r)[1]) if np.isfinite(r) else -int(np.frexp(max(abs(lo), abs(hi)))[1]) - 1
            if out is batch:
                out = ops.copy(batch)
            img = out[i]
            while k:  # steps of at most 2^1000: each factor is a finite double
                step = max(-1000, min(1000, k))
                img = img * (2.0 ** step)
                k -= step
            out[i] = img
        if out is not batch and ops.kind == "numpy":
            big = np.finfo(np.float64).max  # pixels outside a mask may overflow: keep them finite
            np.clip(out, -big, big, out=out)
    return out


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
                         "channel_axis=-1. umsynth's channel_axis defaults to None (grey "
                         "images and volumes), unlike scikit-image's slic, whose default is "
                         "-1; for a volume whose last axis really has "
                         f"{shape[-1]} voxels, move that axis first")
    return img[..., None]


def _mask_like(mask, spatial, is_2d, ops, device):
    """The mask as contiguous uint8 (D, H, W) in the image's framework, checked."""
    if ops.kind == "numpy":
        if is_gpu_array(mask):
            raise ValueError("mask is a GPU array but image is on the CPU: pass both on "
                             "the same device")
        m, _ = to_numpy(mask, "mask")
    elif is_gpu_array(mask):
        m, mops = wrap(mask, "mask")
        if mops.kind != ops.kind:
            raise TypeError(f"mask is a {mops.kind} array but image is a {ops.kind} array")
    else:  # a host mask for a GPU image: copied once to the image's device
        m = np.asarray(to_numpy(mask, "mask")[0])
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
             ops=None) -> slic_kernels.SlicInput:
    if ops is None:
        img, _ = to_numpy(image, "image")
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
        img = _normal_range(img[None], ops, m)[0]

    if isinstance(n_segments, bool) or not isinstance(n_segments, (int, np.integer)):
        raise TypeError(f"n_segments must be an integer, got {n_segments!r}")
    if n_segments < 1:
        raise ValueError(f"n_segments must be >= 1, got {n_segments}")
    _check_compactness(compactness)

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
    return slic_kernels.SlicInput(img, m, is_2d, multichannel, sp, sg, ops, count, box)


# ----------------------------------------------------------------------------- slic


def slic(image, n_segments=100, compactness=10.0, max_num_iter=10, sigma=0, spacing=None,
         enforce_connectivity=True, min_size_factor=0.5, max_size_factor=3.0, start_label=1,
         mask=None, channel_axis=None, intensity="linear", algorithm="fast", *, threads=None,
         device=None, slic_zero=False, convert2lab=None):
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
        Above the number of (masked) pixels, every pixel is its own segment, as in
        scikit-image.
    compactness : float, optional
        Balance of intensity and space: higher values give more compact, square
        superpixels. The intensity distance is measured on the image rescaled to
        [0, 1] (or in CIE L*/100 with ``intensity="lab"``), as in scikit-image. At
        least 1e-10 (below, float32 distances overflow). With `slic_zero`, the
        initial compactness.
    max_num_iter : int, optional
        Maximum number of k-means iterations (0 to 10000). The fast algorithm stops
        early once an iteration changes no label (a fixed point: more passes would
        change nothing).
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
        Number of threads, 1 to 1024 (default: ``UMSYNTH_NUM_THREADS``, else all cores,
        or a fair share of them under contention: see
        :func:`umsynth.kernels.config.default_threads`).
    device : {None, "cpu", "cuda", "cuda:N"}, optional
        Where to run. None: where the image lives. A GPU image with ``"cpu"`` (or
        another GPU) is an error, never a silent copy. A host image with ``"cuda"`` is
        copied to that GPU, segmented there and returned on the host. The CUDA path
        gives the CPU path's labels bit for bit; it does not pre-smooth (``sigma``
        must be 0) and needs umsynth built with CUDA and a usable device
        (:func:`umsynth.show_config`).
    slic_zero : bool, optional
        SLICO (scikit-image's ``slic_zero``): each superpixel's colour distance is
        divided by the largest one seen among its pixels so far (in units of
        `compactness`, at least 1), so smooth and textured regions get compact
        superpixels alike. Both algorithms; ``"reference"`` gives scikit-image's labels.
    convert2lab : bool or None, optional
        scikit-image's switch, for RGB images: True converts a 3-channel image to CIE
        L*a*b* (``intensity="lab"``) and refuses other channel counts, False keeps the
        values (``intensity="linear"``); both leave grey images linear, as scikit-image
        does. None (default): `intensity` decides. scikit-image's None converts
        3-channel images; umsynth keeps `intensity`'s default ("linear") instead.

    Returns
    -------
    labels : array of int64, shaped like the image's spatial axes
        The kind of array passed (numpy, torch tensor, CuPy array), on its device.

    Raises
    ------
    ValueError
        Wrong number of dimensions, empty image, more than 2^31 - 1 pixels or 1024
        channels, NaN or Inf, n_segments < 1, compactness < 1e-10, max_num_iter
        outside 0..10000, threads outside 1..1024, a mask of another shape or with no
        true pixel, an apparent colour image without channel_axis.
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
    max_num_iter = _check_int(max_num_iter, "max_num_iter", 0, MAX_ITER)
    _check_positive(min_size_factor, "min_size_factor", allow_zero=True)
    _check_positive(max_size_factor, "max_size_factor")
    _check_compactness(compactness)
    if not isinstance(slic_zero, (bool, np.bool_)):
        raise TypeError(f"slic_zero must be True or False, got {slic_zero!r}")
    nt = resolve_threads(threads)
    shape = _shape_of(image)
    if shape is not None:
        _check_size(shape, channel_axis, "image")
    if convert2lab is not None:
        if intensity != "linear":
            raise ValueError("pass either intensity or convert2lab (scikit-image's name), not both")
        if not isinstance(convert2lab, (bool, np.bool_)):
            raise TypeError(f"convert2lab must be True, False or None, got {convert2lab!r}")
        if convert2lab and channel_axis is not None and shape is not None \
                and len(shape) > 2 and -len(shape) <= channel_axis < len(shape):
            if shape[channel_axis] != 3:
                raise ValueError(f"convert2lab=True needs an RGB image (3 channels), got "
                                 f"{shape[channel_axis]} channels")
            intensity = "lab"
    args = dict(n_segments=n_segments, compactness=compactness, max_num_iter=max_num_iter,
                sigma=sigma, spacing=spacing, enforce_connectivity=enforce_connectivity,
                min_size_factor=min_size_factor, max_size_factor=max_size_factor,
                start_label=start_label, mask=mask, channel_axis=channel_axis,
                intensity=intensity, algorithm=algorithm, threads=nt, slic_zero=slic_zero)
    arr, ops = _on_device(image, "image", device, algorithm)
    if ops is None and parse_device(device)[0] == "cuda":
        return _via_gpu(slic, image, "image", device, args)
    if ops is None:
        _, kind = to_numpy(image, "image")
        sp = _prepare(image, n_segments, compactness, spacing, sigma, mask, channel_axis)
    else:
        sp = _prepare(arr, n_segments, compactness, spacing, sigma, mask, channel_axis, ops)
    if intensity == "lab" and sp.image.shape[3] not in (1, 3):
        raise ValueError(f"intensity='lab' needs a grey or 3-channel (RGB) image, got "
                         f"{sp.image.shape[3]} channels")
    # above the pixel count, every pixel is a seed (scikit-image's regular_grid and mask
    # seeding give the same result for any larger number)
    n_pix = sp.mask_count if sp.mask is not None else math.prod(sp.image.shape[:3])
    n_seg = min(int(n_segments), n_pix)
    run = slic_kernels.slic_reference if algorithm == "reference" else slic_kernels.slic_fast
    labels = run(sp, n_seg, float(compactness), int(max_num_iter),
                 bool(enforce_connectivity), float(min_size_factor), float(max_size_factor),
                 int(start_label), intensity, nt, slic_zero=bool(slic_zero))
    if sp.is_2d:
        labels = labels[0]
    return labels if ops is not None else like(labels, kind)


def _on_device(x, name, device, algorithm):
    """(array, Ops) for a GPU array that may run where it is; (None, None) for host input."""
    target, index = parse_device(device)
    if not is_gpu_array(x):
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
    cuda_module()  # a clear error when no device is usable, before any GPU work
    arr, ops = wrap(x, name)
    if index is not None and index != ops.device_index(arr):
        raise ValueError(f"{name} is on cuda:{ops.device_index(arr)} but device={device!r}")
    return arr, ops


def _via_gpu(func, x, name, device, args):
    """Run `func` on a host array copied to the GPU named by `device`; results come back."""
    cuda_module()
    index = parse_device(device)[1] or 0
    import torch

    was_torch = is_torch(x)
    host, _ = to_numpy(x, name)
    out = func(torch.from_numpy(np.ascontiguousarray(host)).to(f"cuda:{index}"),
               **{**args, "device": None})
    outs = out if isinstance(out, tuple) else (out,)
    back = tuple(o.cpu() if was_torch else o.cpu().numpy() for o in outs)
    return back if isinstance(out, tuple) else back[0]


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
    _check_compactness(compactness)
    threads = resolve_threads(threads)
    shape = _shape_of(images)
    if shape is not None and len(shape) in (2, 3, 4):
        _check_size(shape[-2:], None, "images")
    garr, ops = _on_device(images, "images", device, algorithm)
    if ops is None and parse_device(device)[0] == "cuda":
        return _via_gpu(unsupervised_mask, images, "images", device,
                        dict(n_segments=n_segments, compactness=compactness, step=step,
                             intensity=intensity, algorithm=algorithm,
                             return_labels=return_labels, threads=threads))
    if ops is None:
        arr, kind = to_numpy(images, "images")
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
    if ops.np_dtype(arr).kind == "f" and not ops.all_finite(arr):
        raise ValueError("images contain NaN or Inf values")
    arr = _normal_range(arr, ops)
    # validate everything on the first image; the others share shape and dtype
    sp = _prepare(arr[0], n_segments, compactness, None, 0, None, None,
                  None if ops is _HOST else ops)
    n_segments = min(int(n_segments), H * W)  # every pixel a seed, as in slic
    nt = threads
    if algorithm == "fast":
        batch = ops.contiguous(arr).reshape(N, 1, H, W, 1)
        # slic's defaults: 10 iterations, connectivity, min_size_factor 0.5, labels from 1
        labels, um = slic_kernels.slic_fast(
            sp, n_segments=int(n_segments), compactness=float(compactness), max_num_iter=10,
            enforce=True, min_size_factor=0.5, max_size_factor=3.0, start_label=1,
            intensity=intensity, nt=nt, batch=batch, um_step=int(step), want_labels=return_labels)
        um = um.reshape(N, H, W)
    else:
        labels = np.stack([slic(a, n_segments=n_segments, compactness=compactness,
                                intensity=intensity, algorithm="reference", threads=nt)
                           for a in arr])
        um = slic_kernels.um_fill(arr, labels, step, nt)
    um = um.reshape(in_shape)
    if ops is not _HOST:  # already the caller's kind of array, on its device
        return (um, labels.reshape(in_shape)) if return_labels else um
    if not return_labels:
        return like(um, kind)
    return like(um, kind), like(labels.reshape(in_shape), kind)


# ----------------------------------------------------------------------------- UM settings


@dataclass(frozen=True)
class UMConfig:
    """The arguments of :func:`umsynth.unsupervised_mask` that define a UM.

    Defaults are SemiCS2's (method.md §2): 512 superpixels, compactness 10, means
    quantized to multiples of 10, SLIC in CIE L*.
    """

    n_segments: int = 512
    compactness: float = 10.0
    step: int = 10
    intensity: str = "lab"

    def compute(self, image, *, threads=None) -> tuple[np.ndarray, np.ndarray]:
        """UM (uint8, same shape) and superpixel labels (int64, from 1) of one grey image."""
        return unsupervised_mask(image, n_segments=self.n_segments, compactness=self.compactness,
                                 step=self.step, intensity=self.intensity, return_labels=True,
                                 threads=threads)
