"""umsynth.data.io: NIfTI and DICOM round trips in every orientation, montages, bad files.

The DICOM files are written here with pydicom from hand-set ImagePositionPatient,
ImageOrientationPatient and rescale values; the expected arrays are closed forms of those
geometries, not the reader's own logic.
"""
from __future__ import annotations

import functools
import itertools

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from umsynth.data import io
from umsynth.data.phantom import phantom_volume

SHAPE = (12, 40, 48)  # (Z, Y, X): unequal sides, so a swapped axis cannot pass
SPACING = (2.5, 0.75, 0.6)  # mm along (Z, Y, X)


@functools.lru_cache(maxsize=None)
def _phantom(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    hu, lab = phantom_volume(seed, shape=(SHAPE[0], 48, 48))
    # crop to unequal Y and X sides; the volume stays in umsynth's orientation
    hu, lab = hu[:, 4:44, :], lab[:, 4:44, :]
    hu.setflags(write=False)
    lab.setflags(write=False)
    return hu, lab


# ----------------------------------------------------------------------------- DICOM


@pytest.mark.parametrize("geometry", ["axial", "flipped", "coronal"])
def test_dicom_series_round_trip(tmp_path, geometry, write_series):
    hu, _ = _phantom()
    expected = write_series(tmp_path / "s", hu, geometry)
    vol = io.read_dicom_series(tmp_path / "s")
    assert vol.array.dtype == np.float32 and vol.array.shape == SHAPE
    np.testing.assert_array_equal(vol.array, expected)
    # and the quantization is all that separates it from the phantom
    assert np.abs(vol.array - hu).max() <= 1.0
    np.testing.assert_allclose(vol.spacing, SPACING, rtol=1e-5)


def test_dicom_files_list_and_rle(tmp_path, write_series):
    hu, _ = _phantom(1)
    expected = write_series(tmp_path / "s", hu, "axial", rle=True)
    files = sorted((tmp_path / "s").iterdir())[::-1]
    from pydicom import dcmread
    assert dcmread(files[0]).file_meta.TransferSyntaxUID.name == "RLE Lossless"
    vol = io.read_dicom_series(files)
    np.testing.assert_array_equal(vol.array, expected)


def test_dicom_single_files_from_pydicom_data():
    """Real files: a plain axial slice, and a JPEG 2000 slice stored with rows running upward."""
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    path = get_testdata_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    vol = io.read_dicom_series(path)
    assert vol.array.shape == (1, 128, 128)
    np.testing.assert_array_equal(vol.array[0], ds.pixel_array.astype(np.float32) - 1024)

    path = get_testdata_file("explicit_VR-UN.dcm")
    if path is None:
        pytest.skip("pydicom-data is not installed")
    ds = pydicom.dcmread(path)
    assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, -1, 0]
    raw = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    vol = io.read_dicom_series(path)
    np.testing.assert_array_equal(vol.array[0], raw[::-1])  # rows flipped to anterior-on-top


def _write_one(write_ct_dicom, path, **kw):
    args = dict(ipp=(0, 0, 0), iop=(1, 0, 0, 0, 1, 0), pixel_spacing=(1, 1))
    args.update(kw)
    write_ct_dicom(path, np.zeros((8, 8), np.int16), **args)


def test_dicom_bad_inputs(tmp_path, write_series, write_ct_dicom):
    hu, _ = _phantom()
    # truncated file in a series
    s = tmp_path / "truncated"
    write_series(s, hu[:4], "axial")
    victim = sorted(s.iterdir())[1]
    victim.write_bytes(victim.read_bytes()[:-500])
    with pytest.raises(OSError, match=rf"{victim.name}.*(pixel data|DICOM)"):
        io.read_dicom_series(s)
    # not DICOM at all
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"this is not a dicom file" * 20)
    with pytest.raises(OSError, match=r"junk\.dcm: not a readable DICOM file"):
        io.read_dicom_series(junk)
    # non-CT modality
    mr = tmp_path / "mr.dcm"
    _write_one(write_ct_dicom, mr, modality="MR")
    with pytest.raises(ValueError, match=r"mr\.dcm: modality is MR, not CT"):
        io.read_dicom_series(mr)
    # 4D: two files at one position, and temporal positions
    four = tmp_path / "four"
    four.mkdir()
    for name in ("a.dcm", "b.dcm"):
        _write_one(write_ct_dicom, four / name)
    with pytest.raises(ValueError, match=r"a\.dcm and .*b\.dcm: two slices at the same position.*4D"):
        io.read_dicom_series(four)
    temporal = tmp_path / "temporal"
    temporal.mkdir()
    for t in (1, 2):
        _write_one(write_ct_dicom, temporal / f"{t}.dcm", ipp=(0, 0, t), TemporalPositionIdentifier=t)
    with pytest.raises(ValueError, match=r"temporal.*4D series \(2 temporal positions\)"):
        io.read_dicom_series(temporal)
    # several series in one folder
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    _write_one(write_ct_dicom, mixed / "a.dcm", series_uid="1.1")
    _write_one(write_ct_dicom, mixed / "b.dcm", ipp=(0, 0, 1), series_uid="1.2")
    with pytest.raises(ValueError, match=r"mixed: holds 2 DICOM series"):
        io.read_dicom_series(mixed)
    # empty folder, missing path
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty: empty folder"):
        io.read_dicom_series(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        io.read_dicom_series(tmp_path / "nowhere")


# ----------------------------------------------------------------------------- NIfTI


def _lps_axes_of_canonical(spacing):
    """LPS step of one voxel along each canonical axis (Z, Y, X): +z, +y, +x."""
    dz, dy, dx = spacing
    return np.array([[0, 0, dx], [0, dy, 0], [dz, 0, 0]], dtype=float)


@pytest.mark.parametrize("perm,flips", [((2, 1, 0), (False, False, False)),  # write_nifti's layout
                                        ((2, 1, 0), (True, True, False)),  # RAS+ (nibabel canonical)
                                        ((0, 2, 1), (True, False, True)),
                                        ((1, 0, 2), (False, True, True))])
def test_nifti_round_trip_any_axes(tmp_path, perm, flips):
    """Store the canonical volume with permuted and flipped axes and the matching affine."""
    hu, _ = _phantom()
    data = hu
    axes = _lps_axes_of_canonical(SPACING)
    for a, f in enumerate(flips):
        if f:
            data = np.flip(data, axis=a)
            axes[:, a] *= -1
    data = np.transpose(data, perm)
    axes = axes[:, list(perm)]
    affine = np.eye(4)
    affine[:3, :3] = axes * np.array([[-1], [-1], [1]])  # LPS -> RAS
    affine[:3, 3] = (-12.0, 7.0, 30.0)
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(np.ascontiguousarray(data), affine), str(path))
    vol = io.read_nifti(path)
    np.testing.assert_array_equal(vol.array, hu)
    np.testing.assert_allclose(vol.spacing, SPACING, rtol=1e-6)


def test_nifti_closed_form_ras():
    """A RAS+ image (i toward the patient's right, j anterior, k superior): hand-made answer."""
    d = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)  # (i, j, k)
    img = nib.Nifti1Image(d, np.diag([2.0, 3.0, 4.0, 1.0]))
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.nii"
        nib.save(img, str(path))
        vol = io.read_nifti(path, dtype=None)
    expected = np.empty((4, 3, 2), np.int16)
    for i, j, k in itertools.product(range(2), range(3), range(4)):
        expected[k, 2 - j, 1 - i] = d[i, j, k]  # X runs right->left, Y anterior->posterior
    np.testing.assert_array_equal(vol.array, expected)
    assert vol.array.dtype == np.int16 and vol.spacing == (4.0, 3.0, 2.0)


def test_write_nifti_round_trip(tmp_path, write_series):
    hu, lab = _phantom(2)
    io.write_nifti(tmp_path / "ct.nii.gz", hu, SPACING)
    io.write_nifti(tmp_path / "mask.nii", lab, SPACING)
    ct = io.read_nifti(tmp_path / "ct.nii.gz")
    mask = io.read_nifti(tmp_path / "mask.nii", dtype=None)
    np.testing.assert_array_equal(ct.array, hu)
    np.testing.assert_array_equal(mask.array, lab)
    assert mask.array.dtype == np.uint8
    np.testing.assert_allclose(ct.spacing, SPACING, rtol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct.nii.gz", "mask.nii"]  # no temp files
    # and the same HU as the DICOM route
    expected = write_series(tmp_path / "s", hu, "flipped")
    np.testing.assert_allclose(io.read_dicom_series(tmp_path / "s").array, ct.array, atol=1.0)
    np.testing.assert_array_equal(io.read_volume(tmp_path / "s").array, expected)


def test_nifti_bad_inputs(tmp_path):
    hu, _ = _phantom()
    good = tmp_path / "good.nii.gz"
    io.write_nifti(good, hu)
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(OSError, match=r"truncated\.nii\.gz: cannot read NIfTI"):
        io.read_nifti(truncated)
    corrupt = tmp_path / "corrupt.nii"
    corrupt.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(OSError, match=r"corrupt\.nii: cannot read NIfTI"):
        io.read_nifti(corrupt)
    four = tmp_path / "four.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 3), np.int16), np.eye(4)), str(four))
    with pytest.raises(ValueError, match=r"four\.nii\.gz: 4D volume of shape \(4, 4, 4, 3\)"):
        io.read_nifti(four)
    nan = tmp_path / "nan.nii"
    nib.save(nib.Nifti1Image(np.full((4, 4, 4), np.nan, np.float32), np.eye(4)), str(nan))
    with pytest.raises(ValueError, match=r"nan\.nii: volume contains NaN"):
        io.read_nifti(nan)
    with pytest.raises(FileNotFoundError, match="missing"):
        io.read_nifti(tmp_path / "missing.nii")
    # a trailing axis of one frame is fine
    one = tmp_path / "one.nii"
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6, 1), np.int16), np.eye(4)), str(one))
    assert io.read_nifti(one).array.shape == (6, 5, 4)


# ----------------------------------------------------------------------------- montages, writing


def test_montages_and_labels(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    lab = rng.integers(0, 4, (20, 30), dtype=np.uint8)  # 3 must come back as 2
    io.write_png(tmp_path / "a.png", img)
    io.write_png(tmp_path / "a_labels.png", lab)
    Image.fromarray(img).save(tmp_path / "b.tif")
    (tmp_path / "notes.txt").write_text("ignored")
    found = io.find_montages(tmp_path)
    assert [(s, p.name, None if q is None else q.name) for s, p, q in found] == \
        [("a", "a.png", "a_labels.png"), ("b", "b.tif", None)]
    image, labels = io.read_montage(tmp_path / "a.png", tmp_path / "a_labels.png")
    np.testing.assert_array_equal(image, img)
    np.testing.assert_array_equal(labels, np.minimum(lab, 2))
    # a palette label map stores indices: they are the classes, not the palette's colours
    pal = Image.fromarray(lab.clip(0, 2), mode="P")
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    pal.save(tmp_path / "pal.png")
    np.testing.assert_array_equal(io.read_label_png(tmp_path / "pal.png"), lab.clip(0, 2))
    # 16-bit values survive write_png
    deep = rng.integers(0, 65536, (5, 7)).astype(np.uint16)
    io.write_png(tmp_path / "deep.png", deep)
    np.testing.assert_array_equal(io.read_png_array(tmp_path / "deep.png"), deep)

    Image.fromarray(np.dstack([lab] * 3)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match=r"rgb\.png: image has mode RGB"):
        io.read_label_png(tmp_path / "rgb.png")
    io.write_png(tmp_path / "small_labels.png", lab[:10])
    with pytest.raises(ValueError, match=r"small_labels\.png: label map shape \(10, 30\)"):
        io.read_montage(tmp_path / "a.png", tmp_path / "small_labels.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(OSError, match=r"broken\.png: cannot read image"):
        io.read_montage(tmp_path / "broken.png")


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    dest = tmp_path / "x.png"
    io.write_png(dest, np.full((4, 4), 7, np.uint8))

    def fail(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        io.atomic_write(dest, fail)
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]
    np.testing.assert_array_equal(io.read_png_array(dest), 7)
    with pytest.raises(ValueError, match="2D uint8 or uint16"):
        io.write_png(dest, np.zeros((4, 4), np.float32))
