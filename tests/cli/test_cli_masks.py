"""``umsynth masks``: the real command line on a small folder, the bundled default, bad input."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.measure import label as connected_components

from umsynth import samples
from umsynth.cli import main
from umsynth.cli.masks import EDGE_COLOUR
from umsynth.files import read_grey

SIZE = 128


@pytest.fixture(scope="module")
def png_folder(tmp_path_factory):
    """A folder of small phantom slices in several formats; returns (folder, {stem: grey uint8})."""
    d = tmp_path_factory.mktemp("images")
    grey = {}
    for seed, (stem, fmt) in enumerate([("plain", "png"), ("colour", "png"), ("deep", "png"), ("tiff", "tif")]):
        img, _ = samples.chest_slice(seed=seed, size=SIZE)
        path = d / f"{stem}.{fmt}"
        if stem == "colour":
            Image.fromarray(np.dstack([img] * 3)).save(path)
        elif stem == "deep":
            Image.fromarray(img.astype(np.uint16) * 257).save(path)  # 16-bit, maps back to img
        else:
            Image.fromarray(img).save(path)
        grey[stem] = img
    (d / "notes.txt").write_text("not an image, and not picked up from a folder")
    return d, grey


def _check_um(um: np.ndarray, grey: np.ndarray, step: int) -> None:
    """The UM holds superpixel means quantized down to multiples of ``step``.

    Each 8-connected region of one UM value v is a union of whole (connected) superpixels,
    each with its mean in [v, v + step), so the region's grey mean lies there too.
    """
    assert um.dtype == np.uint8 and um.shape == grey.shape
    assert np.all(um % step == 0)
    comps = connected_components(um.astype(np.int32) + 1, background=0, connectivity=2)
    n = comps.max()
    sums = np.bincount(comps.ravel(), weights=grey.ravel().astype(float), minlength=n + 1)[1:]
    counts = np.bincount(comps.ravel(), minlength=n + 1)[1:]
    values = np.zeros(n + 1, np.int64)
    values[comps.ravel()] = um.ravel()
    means, v = sums / counts, values[1:]
    # 0.5 of slack for implementations that round the mean to an integer before quantizing
    assert np.all(means >= v - 0.5) and np.all(means < v + step + 0.5), np.c_[means, v][
        (means < v - 0.5) | (means >= v + step + 0.5)][:5]
    assert n > 4  # a real partition, not one flat value


def _check_edges(edges: np.ndarray, grey: np.ndarray) -> np.ndarray:
    assert edges.shape == grey.shape + (3,) and edges.dtype == np.uint8
    marked = np.all(edges == EDGE_COLOUR, axis=-1)
    # off the boundaries the grey image shows through unchanged
    np.testing.assert_array_equal(edges[~marked], np.repeat(grey[~marked][:, None], 3, axis=1))
    assert 0.005 < marked.mean() < 0.5
    return marked


def _srcs(index: Path) -> list[Path]:
    return [index.parent / s for s in re.findall(r'<img src="([^"]+)"', index.read_text())]


def test_folder_of_images(png_folder, tmp_path, capsys):
    folder, grey = png_folder
    out = tmp_path / "out"
    rc = main(["masks", str(folder), "--out", str(out), "--step", "20", "--threads", "1"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "4 done, 0 failed" in captured.out
    for stem, img in grey.items():
        um = np.asarray(Image.open(out / f"{stem}_um.png"))
        _check_um(um, img, step=20)
        _check_edges(np.asarray(Image.open(out / f"{stem}_edges.png")), img)
    index = out / "index.html"
    srcs = _srcs(index)
    assert len(srcs) == 3 * len(grey) and all(p.exists() for p in srcs)
    assert " ms</td>" in index.read_text()
    # nothing half-written is left behind
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{s}_{k}.png" for s in grey for k in ("um", "edges")] + ["index.html"])


def test_n_segments_changes_the_partition(png_folder, tmp_path):
    folder, grey = png_folder
    marked = {}
    for n in (16, 256):
        out = tmp_path / str(n)
        assert main(["masks", str(folder / "plain.png"), "--out", str(out), "--n-segments", str(n)]) == 0
        marked[n] = _check_edges(np.asarray(Image.open(out / "plain_edges.png")), grey["plain"]).sum()
    assert marked[256] > 2 * marked[16]


def test_bundled_default(tmp_path, capsys):
    out = tmp_path / "bundled"
    rc = main(["masks", "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "2 done, 0 failed" in captured.out
    for path in samples.bundled():
        img = np.asarray(Image.open(path))
        um = np.asarray(Image.open(out / f"{path.stem}_um.png"))
        _check_um(um, img, step=10)
        _check_edges(np.asarray(Image.open(out / f"{path.stem}_edges.png")), img)
    shapes = sorted(np.asarray(Image.open(p)).shape for p in samples.bundled())
    assert shapes == [(512, 512), (1024, 1024)]
    assert all(p.exists() for p in _srcs(out / "index.html"))


def test_unreadable_file_fails_alone(png_folder, tmp_path):
    folder, grey = png_folder
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n but then garbage")
    out = tmp_path / "out"
    # the installed entry point, as a user runs it
    proc = subprocess.run([sys.executable, "-m", "umsynth", "masks", str(broken), str(folder / "plain.png"),
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    # outside a terminal the progress display writes "masks: NN% ..." lines: not errors
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("masks:")]
    assert len(lines) == 1 and "broken.png" in lines[0], proc.stderr
    assert "1 done, 1 failed" in proc.stdout
    assert (out / "plain_um.png").exists() and not (out / "broken_um.png").exists()
    assert "broken.png" in (out / "index.html").read_text()


def test_missing_path_is_reported(tmp_path, capsys):
    rc = main(["masks", str(tmp_path / "nope.png"), "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert rc == 2
    assert "nope.png" in captured.err and "0 done, 1 failed" in captured.out


@pytest.mark.parametrize("flag,value", [("--step", "0"), ("--step", "256"), ("--n-segments", "0"),
                                        ("--threads", "0"), ("--compactness", "-1")])
def test_bad_arguments_give_one_error_line(flag, value, tmp_path, capsys):
    rc = main(["masks", "--out", str(tmp_path / "out"), flag, value])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and flag in err[0]


# ---------------------------------------------------------------- reading images

def test_read_grey_conversions(tmp_path):
    deep = np.array([[0, 257, 65535], [32896, 300, 65534]], np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    # v * 255 / 65535 rounded: 300 -> 1.17 -> 1, 65534 -> 254.996 -> 255
    np.testing.assert_array_equal(read_grey(tmp_path / "deep.png"), [[0, 1, 255], [128, 1, 255]])

    rng = np.random.default_rng(0)
    g = rng.integers(0, 256, (9, 7), dtype=np.uint8)
    Image.fromarray(np.dstack([g, g, g])).save(tmp_path / "grey_rgb.png")
    np.testing.assert_array_equal(read_grey(tmp_path / "grey_rgb.png"), g)

    rgb = rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    luma = rgb @ np.array([0.299, 0.587, 0.114])
    assert np.abs(read_grey(tmp_path / "rgb.png").astype(float) - luma).max() <= 1.0

    Image.fromarray(rng.random((5, 5)).astype(np.float32)).save(tmp_path / "float.tif")
    with pytest.raises(ValueError, match="pixel type"):
        read_grey(tmp_path / "float.tif")
