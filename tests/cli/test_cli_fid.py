"""``umsynth fid`` end to end on small image folders, statistics files, and bad input."""
from __future__ import annotations

import importlib.util
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from umsynth import FeatureStats, frechet_distance_features
from umsynth.cli import main

torch = pytest.importorskip("torch")
from umsynth.extractors import classic as features  # noqa: E402
from umsynth.files import read_image  # noqa: E402

SIZE = 48


def blob_image(rng: np.random.Generator, colour: bool) -> np.ndarray:
    """A smooth random image (sum of Gaussian blobs), uint8, grey (H, W) or colour (H, W, 3)."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    img = np.zeros((SIZE, SIZE, 3 if colour else 1))
    for _ in range(4):
        cy, cx, r = rng.uniform(0, SIZE, 2).tolist() + [rng.uniform(3, 12)]
        img += rng.uniform(0.2, 1.0, img.shape[-1]) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / r**2)[..., None]
    img = np.clip(img / img.max() * 255, 0, 255).astype(np.uint8)
    return img if colour else img[..., 0]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Two folders of 7 images each (grey PNG, RGB PNG, 16-bit TIFF, JPG) and their pixels in [0, 1]."""
    root = tmp_path_factory.mktemp("fid")
    pixels = {}
    for name, seed in (("real", 0), ("fake", 1)):
        rng = np.random.default_rng(seed)
        d = root / name
        d.mkdir()
        pixels[name] = []
        for i in range(7):
            kind = ["grey", "rgb", "tiff16", "grey", "rgb", "jpg", "grey"][i]
            img = blob_image(rng, colour=kind in ("rgb", "jpg"))
            if kind == "tiff16":
                Image.fromarray(img.astype(np.uint16) * 257).save(d / f"{i}.tif")
            elif kind == "jpg":
                Image.fromarray(img).save(d / f"{i}.jpg", quality=95)
                img = np.asarray(Image.open(d / f"{i}.jpg").convert("RGB"))  # what was stored
            else:
                Image.fromarray(img).save(d / f"{i}.png")
            pixels[name].append(img.astype(np.float32) / 255.0)
        (d / "readme.txt").write_text("not an image")
    return root, pixels


def expected_features(pixels: list[np.ndarray]) -> np.ndarray:
    """umsynth-random-cnn-v1 features computed here from known pixels, not through the CLI's reader."""
    ext = features.random_cnn()
    batch = []
    for p in pixels:
        t = torch.from_numpy(p if p.ndim == 3 else np.repeat(p[..., None], 3, axis=2)).permute(2, 0, 1)[None]
        batch.append(torch.nn.functional.interpolate(t, size=(256, 256), mode="bilinear", antialias=True)[0])
    return ext(torch.stack(batch).clamp(0, 1)).astype(np.float64)


def fid_of(argv: list[str], capsys, label: str = f"FD (random CNN features, {features.RANDOM_CNN_NAME})") -> float:
    """The distance printed by ``umsynth fid``; its line must name the features as ``label``."""
    assert main(["fid", *argv]) == 0
    out = capsys.readouterr().out
    m = re.search(r"^(F.*): (\S+)$", out, re.M)
    assert m, out
    assert m.group(1) == label
    return float(m.group(2))


def run_error(argv: list[str], capsys) -> str:
    """Run a failing command; return its single stderr line."""
    assert main(["fid", "--no-progress", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_fid_between_folders(folders, capsys):
    root, pixels = folders
    got = fid_of([str(root / "real"), str(root / "fake")], capsys)
    want = frechet_distance_features(expected_features(pixels["real"]), expected_features(pixels["fake"]))
    assert got == pytest.approx(want, rel=1e-4)  # float32 network; the distance itself is float64
    assert got > 0.01  # two different sets
    assert fid_of([str(root / "real"), str(root / "real"), "--batch-size", "3"], capsys) == pytest.approx(0.0, abs=1e-9)


def test_progress_bar_over_images(folders, capsys):
    root, _ = folders
    assert main(["fid", str(root / "real"), str(root / "fake"), "--batch-size", "4"]) == 0
    err = capsys.readouterr().err
    assert "7/7" in err and "img" in err


def test_save_stats_and_reuse(folders, tmp_path, capsys):
    root, _ = folders
    direct = fid_of([str(root / "real"), str(root / "fake"), "--no-progress"], capsys)
    # --save-stats DIR: one file per image folder, named after it (as `umsynth mmfid --save-stats DIR`)
    assert main(["fid", str(root / "real"), str(root / "fake"), "--save-stats", str(tmp_path / "st"),
                 "--no-progress"]) == 0
    assert sorted(p.name for p in (tmp_path / "st").iterdir()) == ["fake.npz", "real.npz"]
    out = tmp_path / "st" / "real.npz"
    assert main(["fid", str(root / "real"), "--save-stats", str(tmp_path / "st1"), "--no-progress"]) == 0
    assert "saved statistics of 7 images" in capsys.readouterr().out
    assert (tmp_path / "st1" / "real.npz").read_bytes() == out.read_bytes()
    stats = FeatureStats.load(out)
    assert stats.n == 7 and stats.dim == 512 and stats.extractor == features.RANDOM_CNN_NAME
    assert stats.keep_features  # 7 <= 512 images: the exact small-Gram route stays available
    assert fid_of([str(out), str(root / "fake"), "--no-progress"], capsys) == pytest.approx(direct, rel=1e-12)

    # pytorch-fid's format in both directions: their mu/sigma file is read, tagged as theirs, and
    # not compared with another extractor's statistics unless --allow-mixed says so
    theirs = tmp_path / "pytorch_fid.npz"
    with np.load(out) as f:
        np.savez_compressed(theirs, mu=f["mu"], sigma=f["sigma"])
    line = run_error([str(theirs), str(root / "fake")], capsys)
    assert "pytorch-fid-inception-v3" in line and features.RANDOM_CNN_NAME in line and "--allow-mixed" in line
    mixed = f"FD (mixed features: pytorch-fid-inception-v3 vs {features.RANDOM_CNN_NAME})"
    assert fid_of([str(theirs), str(root / "fake"), "--no-progress", "--allow-mixed"], capsys,
                  mixed) == pytest.approx(direct, rel=1e-6)
    assert fid_of([str(theirs), str(theirs)], capsys, "FID (InceptionV3 features, pytorch-fid-inception-v3)") == 0
    # ... and with two stats files and no network at all
    fake = tmp_path / "st" / "fake.npz"
    assert fid_of([str(out), str(fake)], capsys) == pytest.approx(direct, rel=1e-12)
    # the old form, --save-stats FILE.npz, still works and says it is deprecated
    assert main(["fid", str(root / "fake"), "--save-stats", str(tmp_path / "old.npz"), "--no-progress"]) == 0
    assert "deprecated" in capsys.readouterr().err
    assert (tmp_path / "old.npz").read_bytes() == fake.read_bytes()


def test_num_workers_give_the_same_result(folders, capsys):
    root, _ = folders
    one = fid_of([str(root / "real"), str(root / "fake"), "--no-progress"], capsys)
    two = fid_of([str(root / "real"), str(root / "fake"), "--no-progress", "--num-workers", "2"], capsys)
    assert two == one


def test_bad_input_gives_one_clear_line(folders, tmp_path, capsys, monkeypatch):
    root, _ = folders
    real = str(root / "real")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no images" in run_error([str(empty), real], capsys)

    broken = tmp_path / "broken"
    broken.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(broken / "a.png")
    (broken / "b.png").write_bytes(b"\x89PNG not really")
    line = run_error([str(broken), real], capsys)
    assert "cannot read image" in line and "b.png" in line
    line = run_error([str(broken), real, "--num-workers", "1"], capsys)
    assert "b.png" in line

    single = tmp_path / "single"
    single.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(single / "a.png")
    assert "at least 2 samples" in run_error([str(single), real], capsys)

    np.savez(tmp_path / "d4.npz", mu=np.zeros(4), sigma=np.eye(4))
    np.savez(tmp_path / "d8.npz", mu=np.zeros(8), sigma=np.eye(8))
    assert "different feature dimensions: 4 and 8" in run_error([str(tmp_path / "d4.npz"), str(tmp_path / "d8.npz")], capsys)
    assert "different feature dimensions: 4 and 512" in run_error([str(tmp_path / "d4.npz"), real, "--allow-mixed"],
                                                                  capsys)
    np.savez(tmp_path / "nan.npz", mu=np.array([0.0, np.nan]), sigma=np.eye(2))
    assert "NaN" in run_error([str(tmp_path / "nan.npz"), str(tmp_path / "nan.npz")], capsys)

    assert "no such folder or file" in run_error([str(tmp_path / "missing"), real], capsys)
    (tmp_path / "x.txt").write_text("hi")
    assert "expected a folder of images or a .npz" in run_error([str(tmp_path / "x.txt"), real], capsys)
    assert "give two paths" in run_error([real], capsys)
    assert "--batch-size" in run_error([real, real, "--batch-size", "0"], capsys)
    assert "--device" in run_error([real, real, "--device", "tpu"], capsys)

    # NaN coming out of the network is named
    good = features.random_cnn

    def nan_cnn(device="cpu"):
        ext = good(device)
        forward = ext._forward
        ext._forward = lambda x: forward(x) * float("nan")
        return ext

    monkeypatch.setattr(features, "random_cnn", nan_cnn)
    line = run_error([real, real], capsys)
    assert "NaN" in line and "umsynth-random-cnn-v1 features" in line


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is usable here")
def test_cuda_request_without_cuda(folders, capsys):
    root, _ = folders
    assert "no CUDA device" in run_error([str(root / "real"), str(root / "fake"), "--device", "cuda"], capsys)


def _torchvision_usable() -> bool:
    if importlib.util.find_spec("torchvision") is None:
        return False
    try:
        import torchvision  # noqa: F401
    except Exception:
        return False
    return True


@pytest.mark.skipif(_torchvision_usable(), reason="torchvision imports here; the error path cannot be shown")
def test_inception_without_torchvision_is_a_clear_error(folders, tmp_path, capsys):
    root, _ = folders
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"")
    line = run_error([str(root / "real"), str(root / "fake"), "--inception-weights", str(weights)], capsys)
    assert "needs torchvision" in line


@pytest.mark.skipif(not _torchvision_usable(), reason="torchvision cannot be imported here")
def test_inception_refuses_files_that_are_not_inception(folders, tmp_path, capsys):
    root, _ = folders
    torch.save({"fc.weight": torch.zeros(1008, 2048)}, tmp_path / "w.pth")
    line = run_error([str(root / "real"), str(root / "fake"), "--inception-weights", str(tmp_path / "w.pth")], capsys)
    assert "InceptionV3" in line


def test_help_says_not_inception():
    out = subprocess.run([sys.executable, "-m", "umsynth", "fid", "--help"], capture_output=True, text=True, check=True).stdout
    assert "NOT InceptionV3" in out and "umsynth-random-cnn-v1" in out and "--inception-weights" in out


def test_extractor_is_fixed_and_documented():
    a, b = features.random_cnn(), features.random_cnn()
    x = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    fa, fb = a(x), b(x)
    assert fa.shape == (2, 512) and np.array_equal(fa, fb)
    assert a.name == "umsynth-random-cnn-v1" and a.image_size == 256
    assert "manual_seed(0)" in features.__doc__ and "not InceptionV3" in features.__doc__


def test_sixteen_bit_and_eight_bit_read_the_same(tmp_path):
    img = blob_image(np.random.default_rng(5), colour=False)
    Image.fromarray(img).save(tmp_path / "a.png")
    Image.fromarray(img.astype(np.uint16) * 257).save(tmp_path / "a.tif")
    a, b = read_image(tmp_path / "a.png"), read_image(tmp_path / "a.tif")
    assert a.shape == (SIZE, SIZE) and np.allclose(a, b, atol=1e-7)
