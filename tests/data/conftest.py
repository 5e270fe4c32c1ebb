"""Shared helpers of the data tests: a DICOM CT writer (pydicom) and a series writer."""
from __future__ import annotations

import numpy as np
import pytest

#: default voxel size in mm along (Z, Y, X) of written series: unequal, so a swapped axis cannot pass
SPACING = (2.5, 0.75, 0.6)


def _write_ct_dicom(path, pixels, *, ipp, iop, pixel_spacing, slope=1.0, intercept=-1024.0,
                   series_uid="1.2.3.4", modality="CT", rle=False, **extra) -> None:
    """Write one single-frame CT image file (int16 stored values) with pydicom."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, RLELossless, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = "1.2.3"
    ds.SeriesInstanceUID = series_uid
    ds.Modality = modality
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.PixelSpacing = [f"{v:.6g}" for v in pixel_spacing]
    ds.ImagePositionPatient = [f"{v:.6g}" for v in ipp]
    ds.ImageOrientationPatient = [f"{v:.6g}" for v in iop]
    ds.RescaleSlope = f"{slope:.6g}"
    ds.RescaleIntercept = f"{intercept:.6g}"
    for key, value in extra.items():
        setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<i2").tobytes()
    if rle:
        ds.compress(RLELossless)
    ds.save_as(str(path), enforce_file_format=True)


def _quantize(hu, slope, intercept):
    """(stored int16, the HU they stand for) for given rescale values."""
    stored = np.clip(np.rint((hu.astype(np.float64) - intercept) / slope), -32768, 32767).astype(np.int16)
    return stored, (stored * slope + intercept).astype(np.float32)


def _write_series(folder, hu, geometry="axial", *, spacing=SPACING, rle=False, seed=0, **extra):
    """Write a (Z, Y, X) volume as a DICOM series in one of three acquisition geometries.

    Files get shuffled numeric names, so file order says nothing about position.
    Returns the HU the reader must give back (the volume after int16 quantization).

    * "axial": standard axial slices, IOP [1,0,0, 0,1,0]: stored slice k == hu[k]; slopes
      and intercepts differ from file to file;
    * "flipped": rows run toward anterior, IOP [1,0,0, 0,-1,0]: stored == hu[k][::-1];
    * "coronal": IOP [1,0,0, 0,0,-1], one file per Y, rows running head to feet:
      stored slice y == hu[::-1, y, :], PixelSpacing (dz, dx), slice gap dy.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    dz, dy, dx = spacing
    Z, Y, X = hu.shape
    expected = np.empty(hu.shape, np.float32)
    files = []
    if geometry in ("axial", "flipped"):
        for k in range(Z):
            slope, intercept = [(1.0, -1024.0), (0.5, -1000.0), (2.0, -2048.0)][k % 3]
            stored, back = _quantize(hu[k], slope, intercept)
            expected[k] = back
            if geometry == "axial":
                files.append((stored, (10.0, -20.0, 30.0 + k * dz), (1, 0, 0, 0, 1, 0), (dy, dx),
                              slope, intercept))
            else:
                files.append((stored[::-1], (10.0, -20.0 + (Y - 1) * dy, 30.0 + k * dz),
                              (1, 0, 0, 0, -1, 0), (dy, dx), slope, intercept))
    elif geometry == "coronal":
        stored_all, expected[:] = _quantize(hu, 0.5, -1024.0)
        for y in range(Y):
            files.append((stored_all[::-1, y, :], (10.0, -20.0 + y * dy, 30.0 + (Z - 1) * dz),
                          (1, 0, 0, 0, 0, -1), (dz, dx), 0.5, -1024.0))
    else:
        raise ValueError(geometry)
    names = rng.permutation(len(files))
    for (stored, ipp, iop, ps, slope, intercept), name in zip(files, names):
        _write_ct_dicom(folder / f"{name:04d}.dcm", stored, ipp=ipp, iop=iop, pixel_spacing=ps,
                       slope=slope, intercept=intercept, rle=rle, **extra)
    return expected


@pytest.fixture(scope="session")
def write_ct_dicom():
    """``write_ct_dicom(path, pixels, *, ipp, iop, pixel_spacing, slope, intercept, ...)``: one CT file."""
    pytest.importorskip("pydicom")
    return _write_ct_dicom


@pytest.fixture(scope="session")
def write_series():
    """``write_series(folder, hu, geometry, *, spacing, rle, seed, ...)`` -> the HU a reader must return."""
    pytest.importorskip("pydicom")
    return _write_series
