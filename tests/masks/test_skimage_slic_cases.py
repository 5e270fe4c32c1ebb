"""scikit-image's own slic test cases, rewritten for its current API, against both algorithms.

The inputs and expectations follow skimage/segmentation/tests/test_slic.py (quadrant and
octant images with noise, tiny images for sigma, spacing and connectivity, masks, SLICO,
more segments than pixels), restated here. ``algorithm="reference"`` must give
scikit-image's labels exactly (scikit-image is called on the same input) and meet the
test's expectations. ``algorithm="fast"`` lays seeds and counts distances its own way,
so its labels may differ by design; it must meet the documented quality properties:
the expected regions each get one superpixel and different regions different ones,
labels start at start_label inside the mask with start_label - 1 outside, superpixels
are connected when connectivity is enforced, and every pixel is its own superpixel when
n_segments exceeds the pixel count.
"""
from __future__ import annotations

from itertools import product

import numpy as np
import pytest
from scipy import ndimage
from skimage.segmentation import slic as sk_slic

import umsynth


def _noisy(shape, fill, sd):
    rng = np.random.default_rng(0)
    img = np.zeros(shape)
    for region, value in fill:
        img[region] = value
    return np.clip(img + sd * rng.normal(size=shape), 0, 1)


def _quadrants_rgb():
    return _noisy((20, 21, 3), [((slice(None, 10), slice(None, 10), 0), 1),
                                ((slice(10, None), slice(None, 10), 1), 1),
                                ((slice(10, None), slice(10, None), 2), 1)], 0.01)


def _quadrants_8ch():
    return _noisy((20, 20, 8), [((slice(None, 10), slice(None, 10), slice(0, 2)), 1),
                                ((slice(None, 10), slice(10, None), slice(2, 4)), 1),
                                ((slice(10, None), slice(None, 10), slice(4, 6)), 1),
                                ((slice(10, None), slice(10, None), slice(6, 8)), 1)], 0.01)


def _quadrants_grey():
    return _noisy((20, 21), [((slice(None, 10), slice(None, 10)), 0.33),
                             ((slice(10, None), slice(None, 10)), 0.67),
                             ((slice(10, None), slice(10, None)), 1.0)], 0.0033)


def _octants(channels):
    shape = (20, 21, 22)
    halves = [(slice(None, n // 2), slice(n // 2, None)) for n in shape]
    octs = list(product(*halves))
    if channels:
        fill = [(s + (slice(None),), c) for s, c in zip(octs, product([0, 1], repeat=3))]
        img = _noisy(shape + (3,), [], 0.0)
        for s, c in fill:
            img[s] = c
        img = np.clip(img + 0.01 * np.random.default_rng(0).normal(size=img.shape), 0, 1)
    else:
        img = _noisy(shape, [(s, v) for s, v in zip(octs, np.arange(0, 1.000001, 1 / 7))], 0.001)
    return img, octs


_Q = [np.s_[:10, :10], np.s_[:10, 10:], np.s_[10:, :10], np.s_[10:, 10:]]
_QM = [np.s_[2:10, 2:10], np.s_[2:10, 10:-2], np.s_[10:-2, 2:10], np.s_[10:-2, 10:-2]]
_OUT2 = [np.s_[:2, :], np.s_[-2:, :], np.s_[:, :2], np.s_[:, -2:]]


def _mask2d(shape):
    m = np.zeros(shape, bool)
    m[2:-2, 2:-2] = True
    return m


def _mask_cols(shape):
    m = np.zeros(shape, bool)
    m[:, 1:-1] = True
    return m


def _tiny_sigma():
    img = np.array([[1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]], float)
    return img + 0.1 * np.random.default_rng(0).normal(size=img.shape)


def _tiny_spacing():
    img = np.array([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0]], float)
    return img + 0.1 * np.random.default_rng(0).normal(size=img.shape)


_TINY_CONN = np.array([[0, 0, 0, 1, 1, 1], [1, 0, 0, 1, 1, 0], [0, 0, 0, 1, 1, 0]], float)


# name, image factory, keyword arguments (both libraries), expected regions (each one
# superpixel, all different), outside-mask regions (label start_label - 1), expected
# number of distinct labels (None: not stated), exact expected labels (None: not stated),
# whether fast must also meet the exact labels
CASES = [
    ("color_2d", _quadrants_rgb, dict(n_segments=4, sigma=0, enforce_connectivity=False,
                                      channel_axis=-1, convert2lab=True), _Q, [], 4, None),
    ("multichannel_2d", _quadrants_8ch, dict(n_segments=4, enforce_connectivity=False,
                                             channel_axis=-1), _Q, [], 4, None),
    ("gray_2d", _quadrants_grey, dict(n_segments=4, sigma=0, compactness=1, channel_axis=None),
     _Q, [], 4, None),
    ("color_3d", lambda: _octants(True)[0], dict(n_segments=8, sigma=0, channel_axis=-1,
                                                 convert2lab=True), _octants(True)[1], [], 8, None),
    ("gray_3d", lambda: _octants(False)[0], dict(n_segments=8, sigma=0, compactness=1,
                                                 channel_axis=None), _octants(False)[1], [], 8, None),
    ("list_sigma", _tiny_sigma, dict(n_segments=2, sigma=[50, 1], channel_axis=None),
     [np.s_[:, :3], np.s_[:, 3:]], [], 2, np.array([[1, 1, 1, 2, 2, 2]] * 2)),
    ("non_spaced", _tiny_spacing, dict(n_segments=2, sigma=0, compactness=1.0, channel_axis=None),
     [], [], 2, np.array([[1, 1, 1, 2, 2], [1, 1, 2, 2, 2]])),
    ("spaced", _tiny_spacing, dict(n_segments=2, sigma=0, compactness=1.0, spacing=[500, 1],
                                   channel_axis=None),
     [np.s_[:1, :], np.s_[1:, :]], [], 2, np.array([[1] * 5, [2] * 5])),
    ("enforce_connectivity", lambda: _TINY_CONN, dict(n_segments=2, compactness=1e-4,
                                                       channel_axis=None),
     [np.s_[:, :3], np.s_[:, 3:]], [], 2, np.array([[1, 1, 1, 2, 2, 2]] * 3)),
    ("enforce_low_max_size", lambda: _TINY_CONN, dict(n_segments=2, compactness=1e-4,
                                                       max_size_factor=0.8, channel_axis=None),
     [], [], None, np.array([[1, 1, 1, 2, 2, 2]] * 3)),
    ("disconnected", lambda: _TINY_CONN, dict(n_segments=2, compactness=1e-4,
                                              enforce_connectivity=False, channel_axis=None),
     [], [], 2, _TINY_CONN.astype(int) + 1),
    ("slic_zero", _quadrants_rgb, dict(n_segments=4, sigma=0, slic_zero=True, channel_axis=-1,
                                       convert2lab=True), _Q, [], 4, None),
    ("more_segments_than_pixels", _quadrants_grey, dict(n_segments=500, sigma=0, compactness=1,
                                                        channel_axis=None),
     [], [], 420, np.arange(1, 421).reshape(20, 21)),
    ("color_2d_mask", _quadrants_rgb, dict(n_segments=4, sigma=0, enforce_connectivity=False,
                                           channel_axis=-1, convert2lab=True, mask=_mask2d((20, 21))),
     _QM, _OUT2, 5, None),
    ("multichannel_2d_mask", _quadrants_8ch, dict(n_segments=4, enforce_connectivity=False,
                                                  channel_axis=-1, mask=_mask2d((20, 20))),
     _QM, _OUT2, 5, None),
    ("gray_2d_mask", _quadrants_grey, dict(n_segments=4, sigma=0, compactness=1, channel_axis=None,
                                           mask=_mask2d((20, 21))), _QM, _OUT2, 5, None),
    ("list_sigma_mask", _tiny_sigma, dict(n_segments=2, sigma=[50, 1], channel_axis=None,
                                          mask=_mask_cols((2, 6))),
     [np.s_[:, 1:3], np.s_[:, 3:5]], [np.s_[:, :1], np.s_[:, -1:]], 3,
     np.array([[0, 1, 1, 2, 2, 0]] * 2)),
    ("spacing_mask", _tiny_spacing, dict(n_segments=2, sigma=0, compactness=1.0, spacing=[500, 1],
                                         channel_axis=None, mask=_mask_cols((2, 5))),
     [], [np.s_[:, :1], np.s_[:, -1:]], 3, np.array([[0, 1, 1, 1, 0], [0, 2, 2, 2, 0]])),
    ("enforce_connectivity_mask", lambda: _TINY_CONN, dict(n_segments=2, compactness=1e-4,
                                                            channel_axis=None,
                                                            mask=_mask_cols((3, 6))),
     [np.s_[:, 1:3], np.s_[:, 3:5]], [np.s_[:, :1], np.s_[:, -1:]], 3,
     np.array([[0, 1, 1, 2, 2, 0]] * 3)),
    ("slic_zero_mask", _quadrants_rgb, dict(n_segments=4, sigma=0, slic_zero=True, channel_axis=-1,
                                            convert2lab=True, mask=_mask2d((20, 21))),
     _QM, _OUT2, 5, None),
    ("more_segments_than_pixels_mask", _quadrants_grey,
     dict(n_segments=500, sigma=0, compactness=1, channel_axis=None, mask=_mask2d((20, 21))),
     [], _OUT2, 273, None),
    ("color_3d_mask", lambda: _octants(True)[0],
     dict(n_segments=8, sigma=0, spacing=[2, 1, 1], channel_axis=-1, convert2lab=True,
          mask=np.pad(np.ones((16, 17, 18), bool), 2)),
     None, [], 9, None),
    ("gray_3d_mask", lambda: _octants(False)[0],
     dict(n_segments=8, sigma=0, compactness=1, channel_axis=None,
          mask=np.pad(np.ones((16, 17, 18), bool), 2)), None, [], 9, None),
]


def _sk_kwargs(kw):
    out = dict(kw)
    if out.get("convert2lab") is None and out.get("channel_axis") is not None:
        out["convert2lab"] = False  # umsynth's default for colour: no Lab unless asked
    return out


def _ours(img, kw, algorithm):
    return np.asarray(umsynth.slic(img, algorithm=algorithm, **kw))


def _region_checks(seg, regions, outside, n_unique, start_label=1):
    if n_unique is not None:
        assert len(np.unique(seg)) == n_unique
    seen = []
    for r in regions or []:
        vals = np.unique(seg[r])
        assert len(vals) == 1, f"region {r} holds labels {vals}"
        seen.append(int(vals[0]))
    assert len(set(seen)) == len(seen), f"regions share labels: {seen}"
    for r in outside:
        assert (seg[r] == start_label - 1).all()


def _inner_octants(shape):
    """The 3D mask cases' regions, as scikit-image's test takes them: each octant less
    2 voxels at each face (``seg[octant][2:-2, 2:-2, 2:-2]``)."""
    return [tuple(slice((a.start or 0) + 2, (a.stop or n) - 2) for a, n in zip(s, shape))
            for s in _octants(False)[1]]


@pytest.mark.parametrize("name,make,kw,regions,outside,n_unique,exact",
                         CASES, ids=[c[0] for c in CASES])
def test_reference_equals_scikit_image(name, make, kw, regions, outside, n_unique, exact):
    img = make()
    ours = _ours(img, kw, "reference")
    theirs = sk_slic(img, **_sk_kwargs(kw))
    assert np.array_equal(ours, theirs)
    if regions is None:  # the octants, inside the mask
        regions = _inner_octants(img.shape[:3])
    _region_checks(ours, regions, outside, n_unique)
    if exact is not None:
        assert np.array_equal(ours, exact)


@pytest.mark.parametrize("name,make,kw,regions,outside,n_unique,exact",
                         CASES, ids=[c[0] for c in CASES])
def test_fast_meets_the_quality_properties(name, make, kw, regions, outside, n_unique, exact):
    img = make()
    seg = _ours(img, kw, "fast")
    assert seg.shape == img.shape[:seg.ndim] and seg.dtype == np.int64
    mask = kw.get("mask")
    inside = np.ones(seg.shape, bool) if mask is None else mask
    assert (seg[inside] >= 1).all() and (seg[~inside] == 0).all()
    if regions is None:
        regions = _inner_octants(img.shape[:3])
    _region_checks(seg, regions, outside, n_unique if regions or kw["n_segments"] > 100 else None)
    if kw.get("enforce_connectivity", True):
        for v in np.unique(seg[inside]):
            assert ndimage.label(seg == v)[1] == 1, f"superpixel {v} is not connected"
    if kw["n_segments"] >= inside.sum():
        assert np.array_equal(np.sort(seg[inside]), np.arange(1, inside.sum() + 1))


def test_invalid_lab_conversion():
    img = np.array([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0]], float) + 1
    for algorithm in ("fast", "reference"):
        with pytest.raises(ValueError):
            umsynth.slic(img, channel_axis=-1, convert2lab=True, algorithm=algorithm)
    with pytest.raises(ValueError, match="RGB"):
        umsynth.slic(np.ones((6, 6, 4)), channel_axis=-1, convert2lab=True)


def test_colour_image_without_channel_axis_explains_the_default():
    with pytest.raises(ValueError, match=r"channel_axis=-1.*scikit-image.*-1"):
        umsynth.slic(_quadrants_rgb(), n_segments=4)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32, np.float64])
def test_dtype_support_matches_scikit_image(dtype):
    img = (_quadrants_grey() * 200).astype(dtype)
    assert np.array_equal(umsynth.slic(img, n_segments=4, algorithm="reference"),
                          sk_slic(img, n_segments=4, channel_axis=None))
