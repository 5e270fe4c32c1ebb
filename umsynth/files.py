"""Files: the one atomic writer, the one image reader, and the suffixes umsynth recognises.

Every output of umsynth is written through :func:`atomic_write` (a temporary name beside the
destination, then a rename), so a reader never sees half a file and a crash leaves the old
file as it was. Outputs get the usual permissions, ``0o666`` less the process umask (0644
under the common umask 022), as ``open()`` would give them.

Every image file is read through :func:`read_image`, which returns one of three views of
the pixels (see its ``kind``). This module needs only numpy (Pillow when an image is read);
it sits below :mod:`umsynth.data` and :mod:`umsynth.cli`.
"""
from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

import numpy as np

__all__ = ["IMAGE_SUFFIXES", "NIFTI_SUFFIXES", "ImageReadError", "atomic_write", "atomic_write_text",
           "atomic_write_bytes", "short_reason", "is_nifti", "nifti_stem", "list_images", "read_image", "read_grey",
           "write_png"]

#: suffixes (lower case) of the image files umsynth reads from folders
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
#: suffixes (lower case) of NIfTI volumes, the compressed one first
NIFTI_SUFFIXES = (".nii.gz", ".nii")

# read_image kinds -> what they return
IMAGE_KINDS = ("unit", "grey", "values")
_GREY_MODES = ("L", "1", "P", "RGB", "RGBA", "LA", "CMYK", "YCbCr", "LAB", "HSV", "PA")
_VALUE_MODES = ("L", "P", "1", "I", "I;16", "I;16B", "I;16L")


class ImageReadError(OSError, ValueError):
    """An image file that cannot be opened or decoded.

    Both an ``OSError`` (what the data readers raise for damaged files) and a ``ValueError``
    (what the feature and metric code catch), like :class:`io.UnsupportedOperation`.
    """


# ----------------------------------------------------------------------------- writing


def _new_file(dest: Path, suffix: str) -> Path:
    """Create an empty, unused temporary file beside ``dest`` with mode 0o666 less the umask."""
    for _ in range(100):
        tmp = dest.parent / f".{dest.name}.{secrets.token_hex(4)}{suffix}"
        try:
            # O_EXCL: never reuse another writer's name; mode 0o666 goes through the umask
            # (tempfile.mkstemp would force 0600 on every output)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"{dest}: no free temporary name beside it")  # pragma: no cover


def atomic_write(dest, write: Callable[[str], None], suffix: str = ".tmp") -> None:
    """Call ``write(tmp_path)`` on a new temporary name beside `dest`, then rename it to `dest`.

    Parameters
    ----------
    dest : path-like
        The file to write; its folder must exist.
    write : callable
        Writes the whole file to the path it is given (a ``str``).
    suffix : str, optional
        End of the temporary name (some writers pick the format from it, e.g. ``".npz"``,
        ``".png"``, ``".nii.gz"``).

    Notes
    -----
    Readers never see a half-written file; on any error the temporary file is removed and
    an existing `dest` is left as it was. The new file has mode ``0o666 & ~umask``.
    """
    dest = Path(dest)
    tmp = _new_file(dest, suffix)
    try:
        write(str(tmp))
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(dest, text: str, encoding: str = "utf-8") -> None:
    """Write `text` to `dest` atomically (see :func:`atomic_write`)."""
    atomic_write(dest, lambda tmp: Path(tmp).write_text(text, encoding=encoding))


def atomic_write_bytes(dest, data: bytes) -> None:
    """Write `data` to `dest` atomically (see :func:`atomic_write`)."""
    atomic_write(dest, lambda tmp: Path(tmp).write_bytes(data))


def write_png(path, array) -> None:
    """Write a 2D uint8 or uint16 array as a grey PNG, or an (H, W, 3) uint8 array as RGB, atomically.

    Raises
    ------
    ValueError
        Naming the file, for any other shape or dtype.
    """
    from PIL import Image

    a = np.asarray(array)
    grey = a.ndim == 2 and a.dtype in (np.uint8, np.uint16)
    rgb = a.ndim == 3 and a.shape[2] == 3 and a.dtype == np.uint8
    if not (grey or rgb):
        raise ValueError(f"{path}: write_png needs a 2D uint8 or uint16 array (or (H, W, 3) uint8), "
                         f"got {a.dtype} of shape {a.shape}")
    img = Image.fromarray(np.ascontiguousarray(a))
    atomic_write(path, lambda tmp: img.save(tmp, format="PNG"), suffix=".png")


# ----------------------------------------------------------------------------- names


def is_nifti(path) -> bool:
    """Whether `path`'s name ends in a NIfTI suffix (any case)."""
    return Path(path).name.lower().endswith(NIFTI_SUFFIXES)


def nifti_stem(path) -> str | None:
    """`path`'s name without its NIfTI suffix (``a.nii.gz`` -> ``a``); None if it is not NIfTI."""
    name = Path(path).name
    for s in NIFTI_SUFFIXES:
        if name.lower().endswith(s):
            return name[: -len(s)]
    return None


def list_images(folder) -> list[Path]:
    """The image files directly in `folder` (not in sub-folders), sorted by name.

    Parameters
    ----------
    folder : path-like

    Returns
    -------
    list of pathlib.Path
        Files ending in one of :data:`IMAGE_SUFFIXES` (any case); hidden files are left out.

    Raises
    ------
    FileNotFoundError
        If `folder` is not a folder.
    ValueError
        If it holds no image file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                   and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no images ({', '.join(e[1:] for e in IMAGE_SUFFIXES)}) found in folder {folder}")
    return files


# ----------------------------------------------------------------------------- reading


class _Unsupported(Exception):
    """A decoded image whose pixel type has no meaning for the requested kind."""


def short_reason(exc: BaseException) -> str:
    """``exc`` as a short reason (its type name when the message is empty)."""
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def _as_unit(im) -> np.ndarray:
    mode = im.mode
    if mode in ("1", "L", "LA"):
        return np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    if mode.startswith("I;16") or mode == "I":
        return np.clip(np.asarray(im).astype(np.float32) / 65535.0, 0.0, 1.0)
    if mode == "F":
        raise _Unsupported("float pixels have no known scale; save it as 8 or 16 bit")
    return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


def _as_grey(im) -> np.ndarray:
    if im.mode in _GREY_MODES:
        return np.asarray(im.convert("L"), dtype=np.uint8)
    arr = np.asarray(im)
    if arr.dtype.kind not in "iu":
        raise _Unsupported(f"unsupported pixel type {arr.dtype}; save the image as 8- or 16-bit")
    if arr.ndim != 2 or arr.size and (arr.min() < 0 or arr.max() > 65535):
        raise _Unsupported(f"unsupported image (mode {im.mode}, shape {arr.shape}); save it as 8- or "
                           "16-bit grey")
    # exact rounding of v * 255 / 65535 in integers
    return ((arr.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def _as_values(im) -> np.ndarray:
    arr = np.asarray(im)
    if im.mode not in _VALUE_MODES or arr.ndim != 2:
        raise _Unsupported(f"image has mode {im.mode} (shape {arr.shape}); expected numbers stored as "
                           "an 8- or 16-bit grey or palette image")
    return arr


_CONVERT = {"unit": _as_unit, "grey": _as_grey, "values": _as_values}


def read_image(path, kind: str = "unit") -> np.ndarray:
    """Read one image file (PNG, TIFF, JPEG, BMP; a multi-page file gives its first page).

    Parameters
    ----------
    path : path-like
    kind : {"unit", "grey", "values"}, optional
        What to return:

        ``"unit"`` (default)
            float32 in [0, 1], shape (H, W) for grey or (H, W, 3) for colour: 8-bit images
            divided by 255, 16-bit (and 32-bit integer) ones by 65535; alpha dropped,
            palette images as RGB. For feature extractors.
        ``"grey"``
            uint8 (H, W): 8-bit grey as stored, colour through ITU-R 601 luma (alpha
            ignored), 16-bit grey scaled by 255/65535 and rounded. What ``umsynth masks``
            and the montage readers use.
        ``"values"``
            The stored numbers of a grey or palette image (uint8, uint16 or int32),
            unconverted: for label maps, UMs and superpixel labels, where values are
            numbers, not colours. Colour images are refused.

    Returns
    -------
    numpy.ndarray

    Raises
    ------
    FileNotFoundError
        No such file.
    ImageReadError
        (an ``OSError`` and a ``ValueError``) The file cannot be opened or decoded.
    ValueError
        The pixels have no meaning for `kind` (float pixels; colour for ``"values"``).
        Every message starts with the file's path.
    """
    if kind not in _CONVERT:
        raise ValueError(f"kind must be one of {', '.join(IMAGE_KINDS)}, got {kind!r}")
    from PIL import Image

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file")
    try:
        with Image.open(p) as im:
            im.load()
            return _CONVERT[kind](im)
    except _Unsupported as exc:
        raise ValueError(f"{p}: {exc}") from None
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError ...
        raise ImageReadError(f"{p}: cannot read image ({short_reason(exc)})") from exc


def read_grey(path) -> np.ndarray:
    """Read an image file as a 2D uint8 grey array: :func:`read_image` with ``kind="grey"``."""
    return read_image(path, "grey")
