"""Image sources for MM-FID and extractor training: folders, arrays, tensors, iterables.

Every source becomes a stream of (global index, image) with the image a float32 torch
tensor (1, H, W) in [0, 1]: uint8 / 255, uint16 / 65535, floats as given (they must lie in
[0, 1]); colour (H, W, 3) becomes grey with ITU-R BT.601 luma weights.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["ImageSource", "as_source", "to_unit_grey"]

LUMA = (0.299, 0.587, 0.114)


def to_unit_grey(img, name: str):
    """One image (H, W) or (H, W, 3|4), numpy or torch, any integer/float dtype -> float32 (1, H, W) tensor."""
    import torch

    if not isinstance(img, torch.Tensor):
        img = np.ascontiguousarray(img)
        # torch warns on read-only arrays; a view of one image is small to copy
        img = torch.from_numpy(img if img.flags.writeable else img.copy())
    t = img
    t = t.detach().cpu()
    if t.ndim == 3 and t.shape[0] == 1:
        t = t[0]
    if t.ndim == 3 and t.shape[-1] in (3, 4):
        t = t[..., :3]
        is_int = not t.is_floating_point()
        scale = _int_scale(t.dtype, name) if is_int else 1.0
        t = (t.double() @ torch.tensor(LUMA, dtype=torch.float64)) / scale
    elif t.ndim == 2:
        if t.dtype == torch.bool:
            raise TypeError(f"{name}: boolean images are not supported")
        t = t.double() / (_int_scale(t.dtype, name) if not t.is_floating_point() else 1.0)
    else:
        raise ValueError(f"{name}: expected a grey (H, W) or colour (H, W, 3) image, got shape {tuple(t.shape)}")
    if t.shape[0] < 2 or t.shape[1] < 2:
        raise ValueError(f"{name}: image of shape {tuple(t.shape)} is too small")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or Inf values")
    lo, hi = float(t.min()), float(t.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"{name}: float images must lie in [0, 1], got values in [{lo:.4g}, {hi:.4g}]")
    return t.float()[None]


def _int_scale(dtype, name: str) -> float:
    import torch

    if dtype == torch.uint8:
        return 255.0
    if dtype in (torch.uint16, torch.int16, torch.int32, torch.int64):
        return 65535.0
    raise TypeError(f"{name}: unsupported image dtype {dtype}")


class ImageSource:
    """A sequence or stream of images with an optional known length.

    Parameters
    ----------
    items : sequence or iterable
        Paths (read with :func:`umsynth.files.read_image`), arrays or tensors.
    name : str
        Used in error messages (e.g. the folder name).
    length : int or None
    """

    def __init__(self, items, name: str, length: int | None) -> None:
        self.items = items
        self.name = name
        self.length = length

    def __iter__(self):
        return self.iterate()

    def iterate(self, rank: int = 0, world: int = 1):
        """Yield (index, image) for the indices ``i % world == rank``; others are skipped unread."""
        from umsynth.files import read_image

        i = -1
        for i, item in enumerate(self.items):
            if i % world != rank:
                continue
            if isinstance(item, (str, os.PathLike)):
                img = read_image(item)
                label = f"{item}"
            else:
                img = item
                label = f"{self.name}[{i}]"
            yield i, to_unit_grey(img, label)
        if i < 0:
            raise ValueError(f"{self.name}: no images")


def as_source(images, name: str) -> ImageSource:
    """Wrap what the user passed: a folder, a list of files, an (N, H, W[, 3]) array/tensor, or an iterable.

    Raises
    ------
    ValueError
        For a missing or empty folder, or an empty array.
    """
    if isinstance(images, ImageSource):
        return images
    if isinstance(images, (str, os.PathLike)):
        p = Path(images)
        if not p.is_dir():
            raise ValueError(f"{name}: {p} is not a folder of images")
        from umsynth.files import list_images

        files = list_images(p)
        return ImageSource(files, str(p), len(files))
    if hasattr(images, "ndim") and hasattr(images, "shape"):
        if images.ndim == 4 and images.shape[1] == 1:  # (N, 1, H, W) tensors
            images = images[:, 0]
        if images.ndim not in (3, 4):
            raise ValueError(f"{name}: expected an (N, H, W) stack of images, got shape {tuple(images.shape)}")
        if images.shape[0] == 0:
            raise ValueError(f"{name}: no images (empty array)")
        return ImageSource(images, name, int(images.shape[0]))
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError(f"{name}: no images (empty list)")
        return ImageSource(images, name, len(images))
    try:
        iter(images)
    except TypeError:
        raise TypeError(f"{name}: expected a folder, an array of images or an iterable of images, "
                        f"got {type(images).__name__}") from None
    return ImageSource(images, name, None)
