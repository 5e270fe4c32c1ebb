"""umsynth.radiomics.features: API, errors, closed forms and the filters."""
from __future__ import annotations

import numpy as np
import pytest

from umsynth.radiomics import feature_matrix, feature_names, features
from umsynth.radiomics import filters as flt
from umsynth.radiomics.features import FEATURES


@pytest.fixture(scope="module")
def batch(phantom_volume):
    return phantom_volume["hu"][6:10].astype(np.float64), phantom_volume["labels"][6:10]


def test_names_follow_pyradiomics_and_the_column_order(batch):
    img, _ = batch
    got = features(img)
    assert list(got) == feature_names()
    assert len(got) == 18 + 24 + 16 + 16 + 14 + 5
    assert "original_glcm_Contrast" in got and "original_firstorder_10Percentile" in got
    x, names = feature_matrix(img)
    assert x.shape == (4, len(names)) and names == list(got)
    np.testing.assert_array_equal(x[:, names.index("original_ngtdm_Busyness")], got["original_ngtdm_Busyness"])


def test_batch_equals_one_image_at_a_time(batch):
    img, lab = batch
    masks = lab == 1
    together = features(img, masks)
    for n in range(len(img)):
        alone = features(img[n], masks[n])
        for k in together:
            assert together[k][n] == pytest.approx(alone[k][0], rel=1e-12, abs=1e-15), k


def test_torch_and_integer_input_give_the_same_features(batch):
    torch = pytest.importorskip("torch")
    img, _ = batch
    ref = features(img.round())
    for other in (torch.from_numpy(img.round()), img.round().astype(np.int16)):
        got = features(other)
        for k in ref:
            np.testing.assert_allclose(got[k], ref[k], rtol=1e-12, err_msg=k)


def test_shared_mask_is_broadcast(batch):
    img, lab = batch
    one = lab[0] > 0
    a = features(img, one)
    b = features(img, np.broadcast_to(one, img.shape))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_first_order_closed_forms():
    rng = np.random.default_rng(0)
    img = rng.normal(100, 30, (2, 20, 30))
    f = features(img, classes=["firstorder"], voxel_array_shift=7.0, spacing=(0.5, 2.0))
    x = img.reshape(2, -1)
    np.testing.assert_allclose(f["original_firstorder_Mean"], x.mean(1))
    np.testing.assert_allclose(f["original_firstorder_Variance"], x.var(1))
    np.testing.assert_allclose(f["original_firstorder_Energy"], ((x + 7) ** 2).sum(1))
    np.testing.assert_allclose(f["original_firstorder_TotalEnergy"], ((x + 7) ** 2).sum(1) * 1.0)
    np.testing.assert_allclose(f["original_firstorder_RootMeanSquared"], np.sqrt(((x + 7) ** 2).mean(1)))
    np.testing.assert_allclose(f["original_firstorder_90Percentile"], np.percentile(x, 90, axis=1))
    d = x - x.mean(1, keepdims=True)
    np.testing.assert_allclose(f["original_firstorder_Kurtosis"], (d ** 4).mean(1) / x.var(1) ** 2)


def test_glcm_closed_forms_on_stripes():
    # vertical stripes 0/100 (bins 1 and 5 at width 25): every horizontal pair differs by
    # 4 levels, every vertical pair is equal
    img = np.tile([0.0, 100.0], (6, 3))[None]
    f = features(img, classes={"glcm": ["Contrast", "JointAverage", "Correlation", "Id"]})
    # angles: horizontal contrast 16, diagonal 16, vertical 0, anti-diagonal 16 -> mean 12
    assert f["original_glcm_Contrast"][0] == pytest.approx(12.0)
    assert f["original_glcm_JointAverage"][0] == pytest.approx(3.0)
    assert f["original_glcm_Id"][0] == pytest.approx((0.2 + 0.2 + 1 + 0.2) / 4)
    # horizontal, diagonal: perfectly anti-correlated; vertical: perfectly correlated
    assert f["original_glcm_Correlation"][0] == pytest.approx((-1 - 1 + 1 - 1) / 4)


@pytest.mark.parametrize("bad, match", [
    (dict(masks=np.zeros((4, 96, 96))), "mask of image 0 is empty"),
    (dict(masks=np.ones((4, 96, 95))), "masks must have the images' shape"),
    (dict(classes=["glcm", "shape"]), "unknown feature class 'shape'"),
    (dict(classes={"glcm": ["Nope"]}), "glcm has no feature 'Nope'"),
    (dict(filters=["gabor"]), "unknown filter 'gabor'"),
    (dict(filters=["log"]), "'log' needs at least one log_sigma"),
    (dict(bin_width=0), "bin_width must be > 0"),
    (dict(spacing=(1.0, -1.0)), "spacing must be one or two positive numbers"),
])
def test_bad_settings_are_refused(batch, bad, match):
    img, _ = batch
    with pytest.raises(ValueError, match=match):
        features(img, **bad)


def test_bad_images_are_refused(batch):
    img, lab = batch
    for value, what in ((np.nan, "NaN"), (np.inf, "Inf")):
        x = img.copy()
        x[1, 2, 3] = value
        with pytest.raises(ValueError, match=f"images contains {what}"):
            features(x)
    with pytest.raises(ValueError, match="image 0 is constant"):
        features(np.full((2, 8, 8), 3.0))
    x = img.copy()
    x[2][lab[2] == 1] = -800.0
    with pytest.raises(ValueError, match="image 2 is constant inside its region"):
        features(x, lab == 1)
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        features(np.zeros((2, 2, 8, 8)))
    with pytest.raises(TypeError, match="real numbers"):
        features(np.array([["a", "b"], ["c", "d"]]))


def test_one_pixel_thin_region_has_nan_texture_where_no_pairs_exist():
    img = np.arange(30.0).reshape(1, 5, 6) * 20
    mask = np.zeros((1, 5, 6), bool)
    mask[0, 2, 1] = mask[0, 0, 4] = True  # two isolated pixels: no pair in any direction
    f = features(img, mask, classes={"glcm": ["Contrast"], "glszm": ["ZonePercentage"]})
    assert np.isnan(f["original_glcm_Contrast"][0])
    assert f["original_glszm_ZonePercentage"][0] == 1.0


# ---------------------------------------------------------------------------- filters

def test_normalize_matches_sample_statistics():
    rng = np.random.default_rng(1)
    img = rng.normal(40, 9, (2, 10, 12))
    out = flt.normalize(img, 100.0)
    np.testing.assert_allclose(out.mean(axis=(1, 2)), 0, atol=1e-12)
    np.testing.assert_allclose(out.std(axis=(1, 2), ddof=1), 100.0)


def test_resample_grid_and_ramp():
    # a linear ramp is reproduced by the cubic B-spline at the new pixel centres, away
    # from the boundary (whose mirrored coefficients bend it)
    y, x = np.mgrid[0:60, 0:81].astype(np.float64)
    img = (3 * y + 0.5 * x)[None]
    out, mask = flt.resample(img, np.ones_like(img, bool), (1.0, 1.0), (2.0, 2.0))
    assert out.shape == (1, 30, 41) and mask.all()
    cy, cx = np.mgrid[0:30, 0:41] * 2.0 + 0.5
    np.testing.assert_allclose(out[0][8:-8, 8:-8], (3 * cy + 0.5 * cx)[8:-8, 8:-8], atol=1e-6)


def test_log_of_a_paraboloid_is_four_sigma_squared():
    y, x = np.mgrid[-20:21, -20:21].astype(np.float64)
    img = (x ** 2 + y ** 2)[None]
    out = flt.laplacian_of_gaussian(img, 2.0, (1.0, 1.0))
    # Gaussian smoothing keeps the Laplacian of a quadratic (4) away from the edges; the
    # sampled kernel of sigma = 2 pixels is 1.3 % low (SimpleITK's recursive one differs too)
    np.testing.assert_allclose(out[0][10:-10, 10:-10], 4 * 2.0 ** 2, rtol=2e-2)
    with pytest.raises(ValueError, match="sigma 5.0 mm needs an image larger"):
        flt.laplacian_of_gaussian(np.zeros((1, 5, 5)), 5.0, (1.0, 1.0))


def test_wavelet_bands_of_constant_and_stripes():
    pytest.importorskip("pywt")
    bands = flt.wavelet(np.full((1, 7, 9), 3.0))
    assert set(bands) == {"LH", "HL", "HH", "LL"} and bands["LL"].shape == (1, 7, 9)
    np.testing.assert_allclose(bands["LL"], 6.0)  # low-pass gains sqrt(2) per axis
    for b in ("LH", "HL", "HH"):
        np.testing.assert_allclose(bands[b], 0.0, atol=1e-12)
    # horizontal stripes (varying along y only): only the "high along y" band LH responds
    img = np.tile(np.array([0.0, 10.0] * 4)[:, None], (1, 8))[None]
    got = flt.wavelet(img)
    assert np.abs(got["LH"]).max() > 1 and np.abs(got["HL"]).max() < 1e-9


def test_filtered_feature_names_and_values(batch):
    pytest.importorskip("pywt")
    img, _ = batch
    f = features(img[:2], filters=("original", "log", "wavelet"), log_sigma=(2.0, 3.0),
                 classes={"firstorder": ["Mean"]})
    assert list(f) == ["original_firstorder_Mean", "log-sigma-2-0-mm-3D_firstorder_Mean",
                       "log-sigma-3-0-mm-3D_firstorder_Mean", "wavelet-LH_firstorder_Mean",
                       "wavelet-HL_firstorder_Mean", "wavelet-HH_firstorder_Mean",
                       "wavelet-LL_firstorder_Mean"]
    np.testing.assert_allclose(f["log-sigma-2-0-mm-3D_firstorder_Mean"],
                               flt.laplacian_of_gaussian(img[:2], 2.0, (1.0, 1.0)).mean(axis=(1, 2)))


def test_every_class_is_complete():
    assert {c: len(v) for c, v in FEATURES.items()} == {
        "firstorder": 18, "glcm": 24, "glrlm": 16, "glszm": 16, "gldm": 14, "ngtdm": 5}
