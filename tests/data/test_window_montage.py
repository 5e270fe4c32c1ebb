"""HU windowing, SemiCS2 slice choice and 2x2 montages (method.md §1), and the real CT slices."""
from __future__ import annotations

import numpy as np
import pytest
from skimage.exposure import rescale_intensity

from umsynth.data import HU_WINDOW, build_montage, real_ct_slices, select_slices, tile_2x2, window_hu

# ----------------------------------------------------------------------------- windowing


def test_window_values_by_hand():
    hu = np.array([-3000, -1500, -1000, -700, 0, 100, 2000], dtype=np.float32)
    # (hu + 1500) * 255 / 1600: 0, 0, 79.6875 -> 80, 127.5 -> 128 (tie to even), 239.06 -> 239, 255, 255
    assert window_hu(hu).tolist() == [0, 0, 80, 128, 239, 255, 255]
    assert window_hu(hu).dtype == np.uint8
    assert HU_WINDOW == (-1500.0, 100.0)


def test_window_rounds_ties_to_even():
    # window (0, 510): one grey level per 2 HU, so odd HU fall on exact halves
    assert window_hu(np.array([1, 3, 5, 509]), (0, 510)).tolist() == [0, 2, 2, 254]


def test_window_matches_skimage_rescale():
    hu = np.random.default_rng(0).uniform(-2500, 1500, (64, 64))
    for window in [HU_WINDOW, (-1000.0, 400.0), (-160.0, 240.0)]:
        ref = rescale_intensity(hu, in_range=window, out_range=(0.0, 255.0))  # clips to the window
        assert np.array_equal(window_hu(hu, window), np.rint(ref).astype(np.uint8))


def test_window_keeps_shape_and_takes_integers_and_torch():
    hu = np.arange(-1500, 100, 25, dtype=np.int16).reshape(2, 4, 8)
    out = window_hu(hu)
    assert out.shape == hu.shape
    assert np.array_equal(out, window_hu(hu.astype(np.float64)))
    torch = pytest.importorskip("torch")
    assert np.array_equal(window_hu(torch.from_numpy(hu)), out)


@pytest.mark.parametrize("hu,window,exc,match", [
    (np.array([0.0, np.nan]), HU_WINDOW, ValueError, "hu contains NaN"),
    (np.array([np.inf]), HU_WINDOW, ValueError, "hu contains Inf"),
    (np.zeros(3), (100.0, -1500.0), ValueError, "low < high"),
    (np.zeros(3), (5.0, 5.0), ValueError, "low < high"),
    (np.zeros(3), (-np.inf, 0.0), ValueError, "finite"),
    (np.zeros(3), "wide", TypeError, "pair"),
    (np.array(["a"]), HU_WINDOW, TypeError, "real numbers"),
])
def test_window_bad_input(hu, window, exc, match):
    with pytest.raises(exc, match=match):
        window_hu(hu, window)


# ----------------------------------------------------------------------------- slice choice


def _mask(depth, lung_slices):
    m = np.zeros((depth, 6, 5), bool)
    m[list(lung_slices), 2, 3] = True
    return m


@pytest.mark.parametrize("lung,n,trim,expected", [
    # lung 10..50: cut floor(0.1 * 40) = 4, range 14..46, gap 32 // 4 = 8
    (range(10, 51), 4, 0.1, [14, 22, 30, 38]),
    # lung 5..20: cut floor(1.5) = 1, range 6..19, gap 13 // 4 = 3
    (range(5, 21), 4, 0.1, [6, 9, 12, 15]),
    # holes inside the range do not matter, only the first and last lung slice
    ([10, 30, 50], 4, 0.1, [14, 22, 30, 38]),
    # no trim: range 0..7, gap 1
    (range(0, 8), 4, 0.0, [0, 1, 2, 3]),
    # trim 0.25 on 0..63: cut 15, range 15..48, gap 33 // 3 = 11
    (range(0, 64), 3, 0.25, [15, 26, 37]),
    (range(3, 10), 1, 0.1, [3]),
])
def test_select_slices_by_hand(lung, n, trim, expected):
    got = select_slices(_mask(64, lung), n=n, trim=trim)
    assert got.tolist() == expected
    assert got.dtype == np.int64
    # a per-slice vector and a label volume give the same choice
    vec = np.zeros(64, bool)
    vec[list(lung)] = True
    assert select_slices(vec, n=n, trim=trim).tolist() == expected
    assert select_slices(_mask(64, lung).astype(np.uint8) * 2, n=n, trim=trim).tolist() == expected


def test_select_slices_too_short_or_empty():
    with pytest.raises(ValueError, match="lung_mask has no lung voxels"):
        select_slices(np.zeros((10, 4, 4)))
    # lung 0..3, no trim: zmax - zmin = 3 < 4, gap would be 0
    with pytest.raises(ValueError, match="lung_mask.*too short for 4"):
        select_slices(_mask(10, range(0, 4)), trim=0.0)
    assert select_slices(_mask(10, range(0, 5)), trim=0.0).tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="lung_mask.*too short"):
        select_slices(_mask(10, [6]))


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"n": 0}, ValueError, "n must be >= 1"),
    ({"n": 2.5}, TypeError, "n must be an integer"),
    ({"trim": 0.5}, ValueError, "trim"),
    ({"trim": -0.1}, ValueError, "trim"),
])
def test_select_slices_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        select_slices(_mask(64, range(10, 50)), **kwargs)


# ----------------------------------------------------------------------------- tiling


def test_tile_2x2_layout():
    slices = np.stack([np.full((3, 5), k, np.int16) for k in range(4)])
    out = tile_2x2(slices)
    assert out.shape == (6, 10) and out.dtype == np.int16
    assert (out[:3, :5] == 0).all() and (out[3:, :5] == 1).all()  # left column: 0 over 1
    assert (out[:3, 5:] == 2).all() and (out[3:, 5:] == 3).all()  # right column: 2 over 3
    assert np.array_equal(tile_2x2(list(slices)), out)


@pytest.mark.parametrize("bad", [np.zeros((3, 4, 4)), np.zeros((4, 4)), [np.zeros((2, 2))] * 3,
                                 [np.zeros((2, 2))] * 3 + [np.zeros((2, 3))], np.zeros((4, 0, 3))])
def test_tile_2x2_bad_input(bad):
    with pytest.raises(ValueError, match="slices"):
        tile_2x2(bad)


# ----------------------------------------------------------------------------- montages


def _volume():
    """20 slices of 4 x 6; slice k holds HU -1500 + 80 k; lung on slices 2..17."""
    z = np.arange(20, dtype=np.float32)
    hu = np.broadcast_to((-1500.0 + 80.0 * z)[:, None, None], (20, 4, 6)).copy()
    labels = np.zeros((20, 4, 6), np.uint8)
    labels[2:18, 1, 1] = 1
    labels[9, 2, 2] = 7  # a class above 2: clamped to lesion
    return hu, labels


def test_build_montage_by_hand():
    hu, labels = _volume()
    image, lab, idx = build_montage(hu, labels)
    # lung 2..17: cut floor(1.5) = 1, range 3..16, gap 13 // 4 = 3
    assert idx.tolist() == [3, 6, 9, 12]
    assert image.shape == lab.shape == (8, 12) and image.dtype == lab.dtype == np.uint8
    # the image is the windowed CT of those slices, not the labels (the original's bug)
    # (80 k) * 255 / 1600 for k = 3, 6, 9, 12: 38.25, 76.5 (tie: to even), 114.75, 153
    grey = [38, 76, 115, 153]
    assert (image[:4, :6] == grey[0]).all() and (image[4:, :6] == grey[1]).all()
    assert (image[:4, 6:] == grey[2]).all() and (image[4:, 6:] == grey[3]).all()
    # labels of the same slices, same layout; 7 clamped to 2 (slice 9 is the top-right tile)
    assert lab[1, 1] == lab[5, 1] == lab[1, 7] == lab[5, 7] == 1
    assert lab[2, 8] == 2 and lab.max() == 2
    assert int((lab > 0).sum()) == 5


def test_build_montage_lesions_count_as_lung_and_window_applies():
    hu, labels = _volume()
    labels[0, 0, 0] = labels[19, 0, 0] = 2  # lesions alone on slices 0 and 19 extend the range
    image, _, idx = build_montage(hu, labels, window=(-1500.0, -1180.0))
    assert idx.tolist() == [1, 5, 9, 13]  # range 0..19: cut 1, range 1..18, gap 17 // 4 = 4
    # slice 1 is -1420 HU: (80 / 320) * 255 = 63.75 -> 64; slices 5, 9, 13 are above the window
    assert (image[:4, :6] == 64).all()
    assert (image[4:, :] == 255).all() and (image[:, 6:] == 255).all()
    _, _, only_lung = build_montage(hu, labels, lung_classes=(1,))
    assert only_lung.tolist() == [3, 6, 9, 12]


def test_build_montage_inputs():
    hu, labels = _volume()
    ref = build_montage(hu, labels)
    # float labels holding whole numbers, bool masks and torch tensors are accepted
    for lab in (labels.astype(np.float32), labels.astype(np.int64)):
        got = build_montage(hu, lab)
        assert all(np.array_equal(a, b) for a, b in zip(got, ref))
    torch = pytest.importorskip("torch")
    got = build_montage(torch.from_numpy(hu), torch.from_numpy(labels))
    assert all(np.array_equal(a, b) for a, b in zip(got, ref))
    _, lab, _ = build_montage(hu, labels > 0)
    assert lab.max() == 1


@pytest.mark.parametrize("change,exc,match", [
    (lambda h, l: (h[:, :3], l), ValueError, "labels shape"),
    (lambda h, l: (h[0], l[0]), ValueError, r"\(Z, H, W\)"),
    (lambda h, l: (h, l.astype(np.int16) - 1), ValueError, "labels must be >= 0"),
    (lambda h, l: (h, l + 0.5), ValueError, "whole class numbers"),
    (lambda h, l: (np.where(l == 1, np.nan, h), l), ValueError, "hu contains NaN"),
    (lambda h, l: (h, np.zeros_like(l)), ValueError, "no lung voxels"),
])
def test_build_montage_bad_input(change, exc, match):
    hu, labels = change(*_volume())
    with pytest.raises(exc, match=match):
        build_montage(hu, labels)


def test_build_montage_needs_four_slices():
    with pytest.raises(ValueError, match="n must be 4"):
        build_montage(*_volume(), n=3)


# ----------------------------------------------------------------------------- real CT slices


def _pydicom_hu(filename):
    """Independent reference: pydicom's pixel data with the rescale applied by hand."""
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    path = get_testdata_file(filename, download=False)
    if path is None:
        pytest.skip(f"{filename} not installed")
    ds = pydicom.dcmread(path)
    return ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept), ds


def test_real_ct_small_hu_range():
    got = real_ct_slices(["CT_small"])
    hu = got["CT_small"]
    assert hu.dtype == np.float32 and hu.shape == (128, 128)
    assert (hu.min(), hu.max()) == (-896.0, 1167.0)  # method.md §7
    ref, _ = _pydicom_hu("CT_small.dcm")
    assert np.array_equal(hu, ref)
    assert got.spacing["CT_small"] == pytest.approx((0.661468, 0.661468))
    assert not hu.flags.writeable


def test_real_ct_all_slices_upright():
    got = real_ct_slices()
    for name in got.skipped:
        assert got.skipped[name]  # a reason for each file left out
    if "693_UNCR" in got:
        ref, _ = _pydicom_hu("693_UNCR.dcm")
        assert np.array_equal(got["693_UNCR"], ref)
        assert got["693_UNCR"].shape == (512, 512)
    if "explicit_VR-UN" not in got:
        pytest.skip(f"explicit_VR-UN: {got.skipped.get('explicit_VR-UN')}")
    hu = got["explicit_VR-UN"]
    ref, ds = _pydicom_hu("explicit_VR-UN.dcm")
    assert [float(v) for v in ds.ImageOrientationPatient][4] == -1.0  # stored bottom-up
    assert np.array_equal(hu, ref[::-1])
    # upright: the spine (bone near the centre column) and the table lie in the lower half
    rows, _ = np.nonzero(hu[:, 236:276] > 300)
    assert np.median(rows) > 256
    # air around the body is about -1000 HU; soft tissue dominates the body
    assert np.median(hu[:20]) == pytest.approx(-1000, abs=40)
    body = hu[(hu > -200) & (hu < 200)]
    assert -60 < np.median(body) < 90


def test_real_ct_unknown_name():
    with pytest.raises(ValueError, match="names: unknown"):
        real_ct_slices(["lungs.dcm"])
