"""umsynth.frd and ``umsynth frd``: the FRD formula against a direct numpy/scipy computation,
streaming and merging, settings checks and the command line."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import umsynth
from umsynth.cli import main
from umsynth.radiomics.features import feature_matrix
from umsynth.radiomics.frd import FRD_SETTINGS, frd, frd_feature_names, frd_stats

# a small configuration keeps the covariance full-rank with few images
SMALL = dict(filters=("original",), classes={"firstorder": ("Mean", "Variance", "Skewness", "Entropy"),
                                             "glcm": ("Contrast", "JointEntropy")},
             resampled_spacing=(2.0, 2.0))


@pytest.fixture(scope="module")
def sets(phantom_volume):
    hu = phantom_volume["hu"].astype(np.float64)
    real = hu[2:22]
    rng = np.random.default_rng(0)
    synthetic = hu[2:22] * 0.9 + rng.normal(0, 30, hu[2:22].shape)
    return real, synthetic


def direct_frd(real, synthetic, **settings):
    """z-score with the real set's mean and population std, np.cov, scipy's sqrtm."""
    from scipy import linalg

    s = {**FRD_SETTINGS, **settings}
    x, _ = feature_matrix(real, **s)
    y, _ = feature_matrix(synthetic, **s)
    mu, sd = x.mean(0), x.std(0)
    keep = sd > 0
    zx, zy = (x[:, keep] - mu[keep]) / sd[keep], (y[:, keep] - mu[keep]) / sd[keep]
    c1, c2 = np.cov(zx, rowvar=False), np.cov(zy, rowvar=False)
    covmean = linalg.sqrtm(c1 @ c2).real
    d = zx.mean(0) - zy.mean(0)
    return d @ d + np.trace(c1) + np.trace(c2) - 2 * np.trace(covmean)


def test_frd_matches_direct_computation(sets):
    real, synthetic = sets
    got = frd(real, synthetic, **SMALL)
    want = direct_frd(real, synthetic, **SMALL)
    assert got.distance == pytest.approx(want, rel=1e-6)
    assert got.frd == pytest.approx(np.log(want), abs=1e-6)
    assert (got.n_real, got.n_synthetic) == (20, 20) and len(got.features) == 6
    # the top-level export is the same function
    assert umsynth.frd(real, synthetic, **SMALL).distance == got.distance


def test_same_set_gives_zero_distance(sets):
    real, _ = sets
    got = frd(real, real, **SMALL)
    assert abs(got.distance) < 1e-9


def test_streamed_and_merged_statistics_equal_one_pass(sets, tmp_path):
    real, synthetic = sets
    whole = frd_stats(real, **SMALL)
    streamed = frd_stats((real[i:i + 3] for i in range(0, 20, 3)), **SMALL)
    a, b = frd_stats(real[:7], **SMALL), frd_stats(real[7:], **SMALL)
    merged = a.merge(b)
    for s in (streamed, merged):
        assert s.n == 20
        np.testing.assert_allclose(s.mean, whole.mean, rtol=1e-12)
        np.testing.assert_allclose(s.cov, whole.cov, rtol=1e-9, atol=1e-12)
    path = tmp_path / "real.npz"
    whole.save(path)
    got = frd(umsynth.FeatureStats.load(path), synthetic, **SMALL)
    assert got.distance == pytest.approx(frd(real, synthetic, **SMALL).distance, rel=1e-12)


def test_statistics_of_other_settings_are_refused(sets):
    real, synthetic = sets
    stats = frd_stats(real, **SMALL)
    with pytest.raises(ValueError, match="statistics made with other settings"):
        frd(stats, synthetic, **{**SMALL, "bin_width": 10.0})
    with pytest.raises(TypeError, match="unknown FRD setting"):
        frd(real, synthetic, bins=3)
    with pytest.raises(ValueError, match="at least 2 images"):
        frd(real[:1], synthetic, **SMALL)


def test_default_configuration_has_693_features():
    names = frd_feature_names()
    assert len(names) == 9 * 77 and len(set(names)) == len(names)
    assert "log-sigma-5-0-mm-3D_glszm_ZoneEntropy" in names and "wavelet-LL_ngtdm_Strength" in names
    assert not any("_glcm_MCC" in n or "_glcm_SumAverage" in n or "_gldm_" in n for n in names)


def test_default_frd_runs_on_a_small_set(phantom_volume):
    hu = phantom_volume["hu"].astype(np.float64)
    got = frd(hu[3:9], hu[10:16])
    assert np.isfinite(got.frd) and got.distance > 0 and len(got.features) + len(got.dropped) == 693
    # a wavelet detail band's mean is 0 up to rounding noise: z-scoring it would score noise
    assert {f"wavelet-{b}_firstorder_Mean" for b in ("LH", "HL", "HH")} <= set(got.dropped)
    # so the value does not depend on how the images were batched
    assert frd(hu[3:9], hu[10:16], batch_size=4).frd == pytest.approx(got.frd, rel=1e-9)


# ---------------------------------------------------------------------------- command line

def write_pngs(folder, images):
    from PIL import Image

    folder.mkdir()
    for k, img in enumerate(images):
        Image.fromarray(img).save(folder / f"img{k:02d}.png")


def test_cli_frd_and_save_stats(phantom_volume, tmp_path, capsys):
    grey = phantom_volume["image"]
    write_pngs(tmp_path / "real", grey[2:9])
    write_pngs(tmp_path / "syn", grey[12:18])
    out = tmp_path / "real.npz"
    assert main(["frd", str(tmp_path / "real"), str(tmp_path / "syn"), "--save-stats", str(out),
                 "--batch-size", "5"]) == 0
    text = capsys.readouterr().out
    assert "FRD:" in text and out.is_file()
    value = float(text.split("FRD:")[1].split()[0])
    # PNGs are read as float32 in [0, 1]
    want = frd(grey[2:9].astype(np.float32) / 255, grey[12:18].astype(np.float32) / 255)
    assert value == pytest.approx(want.frd, rel=1e-9)
    # the saved statistics stand in for the folder
    assert main(["frd", str(out), str(tmp_path / "syn")]) == 0
    assert float(capsys.readouterr().out.split("FRD:")[1].split()[0]) == pytest.approx(value, rel=1e-12)


def test_cli_errors_and_help(tmp_path, capsys):
    assert main(["frd", str(tmp_path / "missing"), str(tmp_path)]) == 2
    assert "no such folder or file" in capsys.readouterr().err
    assert main(["frd", str(tmp_path)]) == 2
    assert "--save-stats" in capsys.readouterr().err
    r = subprocess.run([sys.executable, "-m", "umsynth", "frd", "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    for cite in ("Osuala", "Konz", "Medical Image", "2024", "2026", "frd-score"):
        assert cite in r.stdout
