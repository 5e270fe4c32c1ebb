"""The radiomics member of an MM-FID suite: mapping, file format, training default, streaming."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from umsynth.extractors import (  # noqa: E402
    TINY_CONFIG, Member, Suite, load_suite, radiomics_member, save_suite, train_suite,
)
from umsynth.extractors.nets import CTNet  # noqa: E402
from umsynth.radiomics import features  # noqa: E402
from umsynth.radiomics.member import MEMBER_SETTINGS, RadiomicsNet  # noqa: E402


@pytest.fixture(scope="module")
def grey():
    """Four 48 x 48 8-bit grey images with texture (integers 0..255)."""
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, size=(4, 48, 48)).astype(np.float64)
    x[:, 10:30, 5:40] = np.clip(x[:, 10:30, 5:40] * 0.3 + 150, 0, 255).round()
    return x


def _as_input(g: np.ndarray) -> torch.Tensor:
    """What MM-FID gives a member: uint8 / 255 to [0, 1], then to [-1, 1] (suite PREPROCESSING)."""
    return torch.from_numpy((g / 255.0 - 0.5) / 0.5).float()[:, None]


def test_member_sees_grey_values_and_returns_asinh_of_the_features(grey):
    net = RadiomicsNet()
    got = net.features(_as_input(grey)).numpy()
    assert got.shape == (4, net.dims) and got.dtype == np.float64
    # grey values back from float32 [-1, 1] to 0..255, within float32 rounding
    ref = features(grey, filters=("original",), classes=MEMBER_SETTINGS["classes"], bin_width=5.0)
    assert list(ref) == net.names and net.dims == 77
    mean = got[:, net.names.index("original_firstorder_Mean")]
    np.testing.assert_allclose(np.sinh(mean), grey.mean(axis=(1, 2)), rtol=1e-6)
    maximum = got[:, net.names.index("original_firstorder_Maximum")]
    np.testing.assert_allclose(maximum, np.arcsinh(grey.max(axis=(1, 2))), rtol=1e-6)
    # texture: the same gray levels (bins of width 5 hold no float32 rounding of integers)
    for k in ("original_glcm_Contrast", "original_glszm_ZonePercentage", "original_ngtdm_Busyness"):
        np.testing.assert_allclose(got[:, net.names.index(k)], np.arcsinh(ref[k]), rtol=1e-9, err_msg=k)


def test_member_accepts_a_constant_image_that_features_refuses(grey):
    x = grey.copy()
    x[1] = 77.0
    with pytest.raises(ValueError, match="constant"):
        features(x)
    got = RadiomicsNet().features(_as_input(x)).numpy()
    assert np.isfinite(got).all()
    names = RadiomicsNet().names
    assert got[1, names.index("original_firstorder_Variance")] == 0.0
    assert got[1, names.index("original_glcm_Contrast")] == 0.0


def test_member_settings_are_checked():
    with pytest.raises(ValueError, match="settings: unknown"):
        RadiomicsNet({"bin_width": 5.0, "normalise": True})
    with pytest.raises(ValueError, match="classes"):
        RadiomicsNet({"classes": ["glxm"]})
    with pytest.raises(ValueError, match=r"x must be \(B, 1, H, W\)"):
        RadiomicsNet().features(torch.zeros(2, 3, 16, 16))


def _tiny_suite():
    net = CTNet((4, 8), 4, "classify", stem=2)
    return Suite([Member("ct-rotation", "rotation", net, (4, 8), 4, "classify", (), 2), radiomics_member()],
                 scales=(32,))


def test_suite_file_stores_settings_only_and_rebuilds_the_member(tmp_path, grey):
    from safetensors import safe_open

    suite = _tiny_suite()
    path = tmp_path / "s.safetensors"
    save_suite(suite, path)
    with safe_open(str(path), framework="pt") as f:
        keys = list(f.keys())
        meta = json.loads(f.metadata()["umsynth_suite"])
    assert keys and all(k.startswith("ct-rotation.") for k in keys)  # no tensor for the radiomics member
    assert meta["version"] == 2
    spec = meta["members"][1]
    assert spec["kind"] == "radiomics" and spec["settings"] == MEMBER_SETTINGS and spec["dims"] == 77
    back = load_suite(path)
    assert back.names == suite.names and back.digest() == suite.digest()
    x = _as_input(grey)
    assert torch.equal(back.members[1].net.features(x), suite.members[1].net.features(x))
    # a suite without the member keeps version 1, which older umsynth reads
    save_suite(Suite(suite.members[:1], scales=(32,)), tmp_path / "v1.safetensors")
    with safe_open(str(tmp_path / "v1.safetensors"), framework="pt") as f:
        assert json.loads(f.metadata()["umsynth_suite"])["version"] == 1


def test_digest_follows_the_settings_and_bad_settings_in_a_file_are_refused(tmp_path):
    a = _tiny_suite()
    other = dict(MEMBER_SETTINGS, bin_width=10.0)
    b = Suite([a.members[0], radiomics_member(other)], scales=(32,))
    assert a.digest() != b.digest()
    path = tmp_path / "bad.safetensors"
    save_suite(a, path)
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["umsynth_suite"])
    meta["members"][1]["settings"]["normalise"] = True
    save_file(load_file(str(path)), str(path), metadata={"umsynth_suite": json.dumps(meta)})
    with pytest.raises(ValueError, match="radiomics member 'radiomics': bad settings"):
        load_suite(path)


def test_train_suite_adds_the_member_by_default_and_leaves_it_out_on_request():
    rng = np.random.default_rng(0)
    imgs = rng.random((6, 48, 48)).astype(np.float32)
    cfg = dataclasses.replace(TINY_CONFIG, tasks=("rotation",), steps=2, held_out=0.0)
    with_member = train_suite(imgs, cfg, progress=False)
    assert with_member.names == ["ct-rotation", "radiomics"]
    assert isinstance(with_member.members[-1].net, RadiomicsNet)
    without = train_suite(imgs, dataclasses.replace(cfg, radiomics=False), progress=False)
    assert without.names == ["ct-rotation"]


def test_streaming_statistics_of_the_member_cell(grey):
    import torch.nn.functional as F

    from umsynth.metrics.streaming import stream_stats

    suite = Suite([radiomics_member()], scales=(32, 48))
    images = (grey / 255.0).astype(np.float32)
    stats = stream_stats(images, suite, batch_size=3, progress=False)
    x = torch.from_numpy(images)[:, None]
    for s in (32, 48):
        xs = x if s == 48 else F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
        f = RadiomicsNet().features(xs * 2 - 1).numpy()
        np.testing.assert_allclose(stats.cells[("radiomics", s)].mean, f.mean(axis=0), rtol=1e-9, atol=1e-12)
