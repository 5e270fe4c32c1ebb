"""Every feature fastrad 1.0.0 computes, against umsynth's, on phantom and real CT slices.

fastrad (PyTorch) is an independent reimplementation of pyradiomics. Features agree to a
relative 1e-6, except where the definitions differ, each checked by its own rule:

- GLRLM: fastrad treats a 2D slice as a one-slice volume and averages all 13 3D angles.
  The 9 angles that leave the slice see every pixel as a run of length 1, which
  pyradiomics' force2D (and umsynth) leave out. So fastrad's value is
  ``(4 * ours + 9 * F1) / 13``, F1 the feature of the length-1 run matrix (closed forms
  below, from the histogram of gray levels alone).
- firstorder StandardDeviation and gldm GrayLevelNonUniformityNormalized are deprecated in
  pyradiomics (equal to sqrt(Variance) and to firstorder Uniformity), so umsynth does not
  return them; they are checked against those equals.
- firstorder Median: fastrad takes torch.median, the lower of the two middle values of an
  even count; pyradiomics (numpy.median) and umsynth average them.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from umsynth.kernels.radiomics_reference import discretize
from umsynth.radiomics import features

fastrad = pytest.importorskip("fastrad")
torch = pytest.importorskip("torch")

RTOL = 1e-6
SPECIAL = {"10th_percentile": "10Percentile", "90th_percentile": "90Percentile", "mcc": "MCC"}


def fastrad_features(image: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    settings = fastrad.FeatureSettings(
        feature_classes=["firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm"], bin_width=25.0, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = fastrad.FeatureExtractor(settings).extract(
            fastrad.MedicalImage(torch.tensor(image[None].astype(np.float64)), (1.0, 1.0, 1.0)),
            fastrad.Mask(torch.tensor(mask[None].astype(np.float32)), (1.0, 1.0, 1.0)))
    out = {}
    for key, value in got.items():
        cls, name = key.split(":")
        out[f"original_{cls}_" + SPECIAL.get(name, "".join(w.capitalize() for w in name.split("_")))] = value
    return out


def length_one_runs(image: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """GLRLM features of a matrix in which every ROI pixel is its own run (closed forms)."""
    q = discretize(image[None].astype(np.float64), mask[None], 25.0)[0]
    level, count = np.unique(q[mask > 0], return_counts=True)
    level = level.astype(np.float64)
    n = count.sum()
    p = count / n
    low, high = (p / level ** 2).sum(), (p * level ** 2).sum()
    return {
        "ShortRunEmphasis": 1.0, "LongRunEmphasis": 1.0, "RunLengthNonUniformityNormalized": 1.0,
        "RunPercentage": 1.0, "RunVariance": 0.0, "RunLengthNonUniformity": float(n),
        "GrayLevelNonUniformity": (count ** 2).sum() / n, "GrayLevelNonUniformityNormalized": (p ** 2).sum(),
        "GrayLevelVariance": (p * (level - (p * level).sum()) ** 2).sum(), "RunEntropy": -(p * np.log2(p)).sum(),
        "LowGrayLevelRunEmphasis": low, "ShortRunLowGrayLevelEmphasis": low, "LongRunLowGrayLevelEmphasis": low,
        "HighGrayLevelRunEmphasis": high, "ShortRunHighGrayLevelEmphasis": high,
        "LongRunHighGrayLevelEmphasis": high,
    }


def cases(phantom_volume, ct_slices):
    """(name, image, mask or None): phantom HU slices and real CT crops, with and without ROI."""
    out = []
    for z in (8, 14):
        hu, lab = phantom_volume["hu"][z], phantom_volume["labels"][z]
        out += [(f"phantom{z}", hu, None), (f"phantom{z}-lung", hu, lab == 1)]
    for name, img in sorted(ct_slices.items()):
        h, w = img.shape
        crop = img[h // 2 - 48:h // 2 + 48, w // 2 - 48:w // 2 + 48]
        out += [(name, crop, None), (f"{name}-body", crop, crop > 40)]
    return out


@pytest.fixture(scope="module")
def compared(phantom_volume, ct_slices):
    rows = []
    for name, image, mask in cases(phantom_volume, ct_slices):
        full = np.ones(image.shape, bool) if mask is None else mask
        if full.sum() < 50 or np.ptp(image[full]) == 0:
            continue
        ours = {k: float(v[0]) for k, v in features(image, mask).items()}
        rows.append((name, ours, fastrad_features(image, full), length_one_runs(image, full),
                     np.sort(image[full].astype(np.float64))))
    assert len(rows) >= 6
    return rows


def test_every_fastrad_feature_agrees(compared):
    checked = 0
    for name, ours, theirs, *_ in compared:
        for key, value in theirs.items():
            if "_glrlm_" in key or key in ("original_firstorder_StandardDeviation", "original_firstorder_Median",
                                           "original_gldm_GrayLevelNonUniformityNormalized"):
                continue
            assert ours[key] == pytest.approx(value, rel=RTOL, abs=1e-12), (name, key)
            checked += 1
    assert checked >= 6 * 77


def test_glrlm_differs_only_by_the_out_of_plane_angles(compared):
    for name, ours, theirs, ones, _ in compared:
        for short, f1 in ones.items():
            key = f"original_glrlm_{short}"
            assert (4 * ours[key] + 9 * f1) / 13 == pytest.approx(theirs[key], rel=RTOL), (name, key)


def test_deprecated_features_equal_their_replacements(compared):
    for name, ours, theirs, *_ in compared:
        assert np.sqrt(ours["original_firstorder_Variance"]) == pytest.approx(
            theirs["original_firstorder_StandardDeviation"], rel=RTOL), name
        assert ours["original_firstorder_Uniformity"] == pytest.approx(
            theirs["original_gldm_GrayLevelNonUniformityNormalized"], rel=RTOL), name


def test_median_differs_only_for_even_counts(compared):
    for name, ours, theirs, _, values in compared:
        n = values.size
        assert ours["original_firstorder_Median"] == pytest.approx((values[(n - 1) // 2] + values[n // 2]) / 2,
                                                                   rel=1e-12), name
        assert theirs["original_firstorder_Median"] == pytest.approx(values[(n - 1) // 2], rel=RTOL), name
