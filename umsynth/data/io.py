"""Reading CT volumes (NIfTI, DICOM) and montages (image files), and writing NIfTI.

Image files are read, and every output written, through :mod:`umsynth.files`; its
``atomic_write``, ``write_png`` and suffix lists are importable from here too.

Every volume comes back in the orientation of :mod:`umsynth.data`: a ``(Z, Y, X)`` array with
Z increasing toward the head, rows running anterior to posterior and columns from the
patient's right to the patient's left (radiological display). The readers get there from
the file's own geometry (the NIfTI affine; DICOM ImageOrientationPatient and
ImagePositionPatient) by flips and axis permutations only, never by resampling. An oblique
acquisition is put on the nearest patient axes (nibabel's ``io_orientation``).

Every reader raises ``OSError`` (unreadable or damaged file), ``FileNotFoundError`` or
``ValueError`` (readable but unusable: 4D, not CT, wrong shape) with a message that starts
with the file's path, so a batch job can print one line per bad file.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from umsynth.data.montage import check_labels
from umsynth.files import (IMAGE_SUFFIXES, NIFTI_SUFFIXES, atomic_write, is_nifti, read_image,
                           short_reason, write_png)

__all__ = [
    "Volume",
    "read_volume",
    "read_nifti",
    "read_dicom_series",
    "to_canonical",
    "read_montage",
    "read_label_png",
    "read_png_array",
    "find_montages",
    "write_nifti",
    "write_png",
    "atomic_write",
    "NIFTI_SUFFIXES",
    "IMAGE_SUFFIXES",
]

#: suffix that marks a montage's label map: ``<stem>.png`` pairs with ``<stem>_labels.png``
LABEL_SUFFIX = "_labels"


@dataclass(frozen=True)
class Volume:
    """A volume in umsynth's orientation.

    Attributes
    ----------
    array : ndarray, shape (Z, Y, X)
        float32 HU for CT; the stored values for masks.
    spacing : tuple of float
        Voxel size in mm along (Z, Y, X).
    path : str
        The file or folder it was read from.
    """

    array: np.ndarray
    spacing: tuple[float, float, float]
    path: str


# ----------------------------------------------------------------------------- orientation


def to_canonical(data: np.ndarray, axes_lps: np.ndarray) -> tuple[np.ndarray, tuple[float, ...]]:
    """Flip and permute a 3D array into the ``(Z, Y, X)`` orientation of umsynth.data.

    Parameters
    ----------
    data : ndarray, 3D
    axes_lps : (3, 3) array
        Column ``a`` is the step, in mm, that one voxel along array axis ``a`` makes in
        DICOM patient coordinates (LPS: +x left, +y posterior, +z superior).

    Returns
    -------
    array : ndarray, C-contiguous, in (Z, Y, X) order
    spacing : (float, float, float), mm along (Z, Y, X)
    """
    from nibabel.orientations import io_orientation

    aff = np.eye(4)
    aff[:3, :3] = axes_lps
    if not np.isfinite(aff).all() or abs(np.linalg.det(aff[:3, :3])) < 1e-12:
        raise ValueError(f"voxel axes are degenerate (direction matrix {axes_lps.tolist()})")
    ornt = io_orientation(aff)  # per array axis: (world axis, +1/-1)
    if np.isnan(ornt).any():
        raise ValueError(f"voxel axes are degenerate (direction matrix {axes_lps.tolist()})")
    step = np.linalg.norm(axes_lps, axis=0)
    perm = [0, 0, 0]
    for a, (world, sign) in enumerate(ornt):
        if sign < 0:
            data = np.flip(data, axis=a)
        perm[2 - int(world)] = a  # world z -> output axis 0, y -> 1, x -> 2
    out = np.ascontiguousarray(np.transpose(data, perm))
    return out, tuple(float(step[a]) for a in perm)


# ----------------------------------------------------------------------------- NIfTI


def read_nifti(path, *, dtype=np.float32) -> Volume:
    """Read a NIfTI-1/2 volume (``.nii`` or ``.nii.gz``) in umsynth's orientation.

    Parameters
    ----------
    path : path-like
    dtype : numpy dtype or None, optional
        Type of the returned array (default float32, for HU). None keeps the stored values
        after the header's scaling (integers stay integers when there is no scaling), as
        wanted for masks.

    Returns
    -------
    Volume
        ``array`` in (Z, Y, X) order, oriented from the image's affine (sform or qform, as
        nibabel chooses). A 2D image is returned as one slice; trailing axes of length 1
        are dropped.

    Raises
    ------
    FileNotFoundError
        No such file.
    OSError
        The file is not NIfTI, or is truncated or corrupt.
    ValueError
        A 4D (or higher) volume with more than one frame, NaN or Inf values, or a
        degenerate affine.
    """
    import nibabel as nib

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file")
    try:
        img = nib.load(str(p))
        data = np.asanyarray(img.dataobj)
        affine = np.asarray(img.affine, dtype=np.float64)
    except Exception as exc:  # nibabel, gzip and zlib raise many types for damaged files
        raise OSError(f"{p}: cannot read NIfTI ({short_reason(exc)})") from exc
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim > 3:
        raise ValueError(f"{p}: {data.ndim}D volume of shape {data.shape}; only 3D volumes are "
                         "supported (split the frames into separate 3D files)")
    if data.ndim < 2 or data.size == 0:
        raise ValueError(f"{p}: expected a 3D volume, got shape {data.shape}")
    if data.ndim == 2:
        data = data[:, :, np.newaxis]
    if data.dtype.kind not in "biuf":
        raise ValueError(f"{p}: unsupported voxel type {data.dtype}")
    if dtype is not None:
        data = data.astype(dtype, copy=False)
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        raise ValueError(f"{p}: volume contains NaN or Inf values")
    axes = affine[:3, :3].copy()
    axes[:2] *= -1  # NIfTI world is RAS, ours LPS
    try:
        arr, spacing = to_canonical(data, axes)
    except ValueError as exc:
        raise ValueError(f"{p}: {exc}") from None
    return Volume(arr, spacing, str(p))


def write_nifti(path, volume, spacing=(1.0, 1.0, 1.0)) -> None:
    """Write a (Z, Y, X) volume in umsynth's orientation as NIfTI, atomically.

    The affine encodes the orientation, so :func:`read_nifti` returns the same array and
    spacing. ``.nii.gz`` names are compressed.

    Parameters
    ----------
    path : path-like
        Destination ending in ``.nii`` or ``.nii.gz``.
    volume : (Z, Y, X) array
    spacing : (float, float, float), optional
        Voxel size in mm along (Z, Y, X), all > 0.
    """
    import nibabel as nib

    p = Path(path)
    if not is_nifti(p):
        raise ValueError(f"{p}: a NIfTI name must end in .nii or .nii.gz")
    vol = np.asarray(volume)
    if vol.ndim != 3:
        raise ValueError(f"volume must be 3D (Z, Y, X), got shape {vol.shape}")
    sz, sy, sx = (float(s) for s in spacing)
    if not min(sz, sy, sx) > 0:
        raise ValueError(f"spacing must be > 0, got {spacing!r}")
    # voxel (i, j, k) = (X, Y, Z): x toward the left (-R), y posterior (-A), z superior
    affine = np.diag([-sx, -sy, sz, 1.0])
    img = nib.Nifti1Image(np.ascontiguousarray(vol.transpose(2, 1, 0)), affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    suffix = ".nii.gz" if p.name.lower().endswith(".gz") else ".nii"
    atomic_write(p, lambda tmp: nib.save(img, tmp), suffix=suffix)


# ----------------------------------------------------------------------------- DICOM


def _dicom_files(path_or_files) -> list[Path]:
    """The files of a series: a folder's files (hidden ones and DICOMDIR left out), one file, or a list."""
    if isinstance(path_or_files, (str, os.PathLike)):
        p = Path(path_or_files)
        if p.is_dir():
            files = sorted(q for q in p.iterdir() if q.is_file() and not q.name.startswith(".")
                           and q.name.upper() != "DICOMDIR")
            if not files:
                raise ValueError(f"{p}: empty folder, no DICOM files in it")
            return files
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such file or folder")
        return [p]
    if not isinstance(path_or_files, Iterable):
        raise TypeError(f"path_or_files must be a path or a list of paths, got {type(path_or_files).__name__}")
    files = [Path(f) for f in path_or_files]
    if not files:
        raise ValueError("path_or_files: empty list, no DICOM files given")
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"{f}: no such file")
    return files


def _floats(ds, keyword: str, n: int, default, path: Path) -> np.ndarray | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None if default is None else np.asarray(default, dtype=np.float64)
    try:
        out = np.asarray([float(v) for v in (value if n > 1 else [value])], dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: {keyword} is not numeric ({value!r})") from None
    if out.size != n or not np.isfinite(out).all():
        raise ValueError(f"{path}: {keyword} must be {n} finite numbers, got {value!r}")
    return out


@dataclass
class _Slice:
    path: Path
    hu: np.ndarray
    iop: np.ndarray | None
    ipp: np.ndarray | None
    pixel_spacing: np.ndarray
    thickness: float | None
    series: str
    temporal: str


def _read_dicom_slice(path: Path) -> _Slice:
    """One single-frame CT image file, its pixels in HU and its geometry."""
    import pydicom

    try:
        ds = pydicom.dcmread(str(path))
    except Exception as exc:  # pydicom raises many types for damaged or non-DICOM files
        raise OSError(f"{path}: not a readable DICOM file ({short_reason(exc)})") from exc
    modality = str(ds.get("Modality", "") or "").strip().upper()
    if modality and modality != "CT":
        raise ValueError(f"{path}: modality is {modality}, not CT")
    if "PixelData" not in ds:
        raise ValueError(f"{path}: no pixel data (not an image)")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise ValueError(f"{path}: multi-frame DICOM ({frames} frames) is not supported; "
                         "convert it to single-frame files or to NIfTI")
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        raise ValueError(f"{path}: colour image (SamplesPerPixel={ds.SamplesPerPixel}), not CT")
    try:
        raw = ds.pixel_array
    except Exception as exc:  # truncated pixel data, or no installed decoder
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", str(syntax))
        raise OSError(f"{path}: cannot decode the pixel data (transfer syntax {name}; "
                      f"{short_reason(exc)})") from exc
    if raw.ndim != 2:
        raise ValueError(f"{path}: expected a 2D image, got pixel data of shape {raw.shape}")
    slope = _floats(ds, "RescaleSlope", 1, 1.0, path)[0]
    intercept = _floats(ds, "RescaleIntercept", 1, 0.0, path)[0]
    hu = (raw.astype(np.float64) * slope + intercept).astype(np.float32)
    thickness = _floats(ds, "SliceThickness", 1, None, path)
    return _Slice(path, hu, _floats(ds, "ImageOrientationPatient", 6, None, path),
                  _floats(ds, "ImagePositionPatient", 3, None, path),
                  _floats(ds, "PixelSpacing", 2, (1.0, 1.0), path),
                  None if thickness is None else float(thickness[0]),
                  str(ds.get("SeriesInstanceUID", "") or ""),
                  str(ds.get("TemporalPositionIdentifier", "") or ""))


def _check_series(slices: list[_Slice], where: str) -> None:
    """One series, one frame per position, one size and orientation."""
    series = sorted({s.series for s in slices if s.series})
    if len(series) > 1:
        raise ValueError(f"{where}: holds {len(series)} DICOM series ({', '.join(series[:3])}"
                         f"{', ...' if len(series) > 3 else ''}); give each series its own folder")
    temporal = {s.temporal for s in slices if s.temporal}
    if len(temporal) > 1:
        raise ValueError(f"{where}: 4D series ({len(temporal)} temporal positions); only 3D "
                         "volumes are supported")
    first = slices[0]
    for s in slices[1:]:
        if s.hu.shape != first.hu.shape:
            raise ValueError(f"{s.path}: image size {s.hu.shape} differs from {first.path}'s "
                             f"{first.hu.shape}")
        if (s.iop is None) != (first.iop is None) or (
                s.iop is not None and not np.allclose(s.iop, first.iop, atol=1e-4)):
            raise ValueError(f"{s.path}: ImageOrientationPatient differs from {first.path}'s")


def read_dicom_series(path_or_files) -> Volume:
    """Read a DICOM CT series (or one DICOM file) as HU in umsynth's orientation.

    Parameters
    ----------
    path_or_files : path-like or sequence of path-like
        A folder holding one series (every file in it except hidden files and DICOMDIR
        must be a CT image of that series), a single file, or a list of files.

    Returns
    -------
    Volume
        ``array``: float32 HU, ``stored * RescaleSlope + RescaleIntercept`` per file,
        in (Z, Y, X) order. Slices are sorted by their position along the slice normal
        (ImagePositionPatient projected on the cross product of the ImageOrientationPatient
        vectors), whatever the file names and order; rows and columns are flipped or
        swapped as ImageOrientationPatient requires. ``spacing``: the median distance
        between slices (SliceThickness for a single file, else 1) and PixelSpacing.

    Notes
    -----
    Compressed pixel data is decoded by whatever pydicom has installed: RLE Lossless and
    deflate natively, JPEG baseline/extended and JPEG 2000 through Pillow; JPEG-LS and
    JPEG lossless need pylibjpeg or GDCM and fail with a message naming the syntax. A
    file without Modality is accepted; another modality than CT is not. Multi-frame
    (enhanced) files are not supported. A single file without ImageOrientationPatient is
    taken as a standard axial slice.

    Raises
    ------
    FileNotFoundError, OSError
        Missing, unreadable, truncated or undecodable files.
    ValueError
        An empty folder, a non-CT modality, several series, a 4D series (several temporal
        positions, or two slices at the same position), slices of different sizes or
        orientations, missing geometry in a multi-file series.
    """
    files = _dicom_files(path_or_files)
    where = str(path_or_files) if isinstance(path_or_files, (str, os.PathLike)) else str(files[0].parent)
    slices = [_read_dicom_slice(f) for f in files]
    _check_series(slices, where)
    first = slices[0]
    if len(slices) > 1 and any(s.iop is None or s.ipp is None for s in slices):
        bad = next(s for s in slices if s.iop is None or s.ipp is None)
        raise ValueError(f"{bad.path}: no ImageOrientationPatient/ImagePositionPatient, so the "
                         "slices cannot be ordered")
    iop = first.iop if first.iop is not None else np.array([1.0, 0, 0, 0, 1.0, 0])
    row_dir, col_dir = iop[:3], iop[3:]  # along a row (column index), along a column (row index)
    normal = np.cross(row_dir, col_dir)
    if np.linalg.norm(normal) < 1e-3:
        raise ValueError(f"{first.path}: ImageOrientationPatient {iop.tolist()} is degenerate")
    normal /= np.linalg.norm(normal)
    if len(slices) > 1:
        pos = np.array([float(s.ipp @ normal) for s in slices])
        order = np.argsort(pos, kind="stable")
        pos, slices = pos[order], [slices[i] for i in order]
        gaps = np.diff(pos)
        if (gaps < 1e-3).any():
            k = int(np.argmax(gaps < 1e-3))
            raise ValueError(f"{slices[k].path} and {slices[k + 1].path}: two slices at the same "
                             "position (a 4D series or duplicated files); only 3D volumes are supported")
        dz = float(np.median(gaps))
    else:
        dz = first.thickness if first.thickness and first.thickness > 0 else 1.0
    data = np.stack([s.hu for s in slices])  # (slice, row, column)
    dy, dx = first.pixel_spacing  # DICOM: row spacing first, then column spacing
    axes = np.stack([normal * dz, col_dir / np.linalg.norm(col_dir) * dy,
                     row_dir / np.linalg.norm(row_dir) * dx], axis=1)
    try:
        arr, spacing = to_canonical(data, axes)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    return Volume(arr, spacing, where)


def read_volume(path, *, dtype=np.float32) -> Volume:
    """Read a CT volume from a NIfTI file, a DICOM series folder or a DICOM file.

    ``.nii``/``.nii.gz`` go to :func:`read_nifti` (with `dtype`), anything else to
    :func:`read_dicom_series`.
    """
    p = Path(path)
    if is_nifti(p):
        return read_nifti(p, dtype=dtype)
    return read_dicom_series(p)


# ----------------------------------------------------------------------------- montages


def read_png_array(path) -> np.ndarray:
    """The stored values of a grey or palette PNG/TIFF (uint8, uint16 or int32), unconverted.

    For label maps, UMs and superpixel labels, where values are numbers, not colours:
    :func:`umsynth.files.read_image` with ``kind="values"``. Colour images are refused with
    a ValueError.
    """
    return read_image(path, "values")


def read_label_png(path) -> np.ndarray:
    """Read a label map (grey or palette PNG/TIFF of class numbers) as uint8 classes 0..2.

    Values above 2 are clamped to 2, as :func:`umsynth.data.build_montage` does.
    """
    arr = read_png_array(path)
    try:
        return check_labels(arr)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None


def read_montage(path, labels_path=None) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a montage image (PNG/TIFF) as uint8 grey and, if given, its label map.

    Grey conversion is that of ``umsynth masks`` (:func:`umsynth.files.read_grey`).

    Returns
    -------
    image : ndarray, uint8 (H, W)
    labels : ndarray, uint8 (H, W), classes 0..2, or None
    """
    p = Path(path)
    image = read_image(p, "grey")
    if labels_path is None:
        return image, None
    labels = read_label_png(labels_path)
    if labels.shape != image.shape:
        raise ValueError(f"{labels_path}: label map shape {labels.shape} differs from the "
                         f"image's {image.shape} ({p})")
    return image, labels


def find_montages(folder) -> list[tuple[str, Path, Path | None]]:
    """Montages in a folder and their label maps, by the pairing rule ``<stem>_labels.<ext>``.

    Returns
    -------
    list of (stem, image_path, labels_path or None), sorted by stem
        Every image file (:data:`umsynth.files.IMAGE_SUFFIXES`) whose stem does not end in
        ``_labels`` is a montage; its label map is the file ``<stem>_labels`` with the same
        suffix or another image suffix, when present.
    """
    d = Path(folder)
    if not d.is_dir():
        raise FileNotFoundError(f"{d}: no such folder")
    files = {q.name: q for q in d.iterdir() if q.is_file() and not q.name.startswith(".")
             and q.suffix.lower() in IMAGE_SUFFIXES}
    out = []
    for name, q in sorted(files.items()):
        if q.stem.endswith(LABEL_SUFFIX):
            continue
        lab = next((files[n] for n in (q.stem + LABEL_SUFFIX + s for s in (q.suffix,) + IMAGE_SUFFIXES)
                    if n in files), None)
        out.append((q.stem, q, lab))
    return out
