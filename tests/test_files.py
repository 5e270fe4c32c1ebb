"""umsynth.files: the atomic writer (content, permissions, failure), the image reader, suffixes."""
from __future__ import annotations

import os
import stat

import numpy as np
import pytest
from PIL import Image

from umsynth import files


@pytest.fixture
def umask():
    """Set a umask for the test and restore the old one afterwards."""
    old = os.umask(0o022)
    os.umask(old)

    def set_(mask: int) -> None:
        os.umask(mask)

    yield set_
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_outputs_get_the_permissions_open_gives(tmp_path, umask, mask):
    umask(mask)
    # the reference: what a plain open() creates under the same umask
    with open(tmp_path / "plain.txt", "w") as fh:
        fh.write("x")
    expected = _mode(tmp_path / "plain.txt")
    assert expected == 0o666 & ~mask
    files.atomic_write_text(tmp_path / "a.txt", "héllo\n")
    files.atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    files.atomic_write(tmp_path / "c.npz", lambda tmp: np.savez(tmp, x=np.arange(3)), suffix=".npz")
    files.write_png(tmp_path / "d.png", np.zeros((3, 4), np.uint8))
    for name in ("a.txt", "b.bin", "c.npz", "d.png"):
        assert _mode(tmp_path / name) == expected, name
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo\n"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    with np.load(tmp_path / "c.npz", allow_pickle=False) as f:
        np.testing.assert_array_equal(f["x"], [0, 1, 2])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.bin", "c.npz", "d.png", "plain.txt"]


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    dest = tmp_path / "out.txt"
    dest.write_text("old")

    def fail(tmp):
        with open(tmp, "w") as fh:
            fh.write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        files.atomic_write(dest, fail)
    assert dest.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_write_png_refuses_other_arrays(tmp_path):
    with pytest.raises(ValueError, match=r"x\.png: write_png needs"):
        files.write_png(tmp_path / "x.png", np.zeros((3, 4), np.float32))
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    files.write_png(tmp_path / "rgb.png", rgb)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "rgb.png")), rgb)


def test_read_image_kinds_by_hand(tmp_path):
    deep = np.array([[0, 257, 65535], [32896, 300, 65534]], np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    np.testing.assert_array_equal(files.read_image(tmp_path / "deep.png", "values"), deep)
    # v * 255 / 65535 rounded: 300 -> 1.17 -> 1, 65534 -> 254.996 -> 255
    np.testing.assert_array_equal(files.read_grey(tmp_path / "deep.png"), [[0, 1, 255], [128, 1, 255]])
    np.testing.assert_allclose(files.read_image(tmp_path / "deep.png"), deep / 65535.0, atol=1e-7)

    rgb = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [10, 20, 30]]], np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    unit = files.read_image(tmp_path / "rgb.png")
    assert unit.dtype == np.float32 and unit.shape == (2, 2, 3)
    np.testing.assert_allclose(unit, rgb / 255.0, atol=1e-7)
    luma = rgb @ np.array([0.299, 0.587, 0.114])
    assert np.abs(files.read_grey(tmp_path / "rgb.png").astype(float) - luma).max() <= 1.0
    with pytest.raises(ValueError, match=r"rgb\.png: image has mode RGB"):
        files.read_image(tmp_path / "rgb.png", "values")

    Image.fromarray(np.ones((4, 4), np.float32)).save(tmp_path / "float.tif")
    for kind in ("unit", "grey", "values"):
        with pytest.raises(ValueError, match=r"float\.tif: "):
            files.read_image(tmp_path / "float.tif", kind)
    with pytest.raises(ValueError, match="kind must be one of"):
        files.read_image(tmp_path / "deep.png", "colour")


def test_read_image_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.png: no such file"):
        files.read_image(tmp_path / "nope.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    for kind in ("unit", "grey", "values"):
        with pytest.raises(files.ImageReadError, match=r"broken\.png: cannot read image") as info:
            files.read_image(tmp_path / "broken.png", kind)
        # caught by readers that expect OSError and by code that expects ValueError alike
        assert isinstance(info.value, OSError) and isinstance(info.value, ValueError)


def test_list_images_and_suffixes(tmp_path):
    for name in ("b.PNG", "a.jpg", "c.tif", ".hidden.png", "notes.txt", "d.bmp", "e.tiff", "f.jpeg"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub.png").mkdir()
    assert [p.name for p in files.list_images(tmp_path)] == ["a.jpg", "b.PNG", "c.tif", "d.bmp", "e.tiff",
                                                             "f.jpeg"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        files.list_images(tmp_path / "empty")
    with pytest.raises(FileNotFoundError):
        files.list_images(tmp_path / "missing")
    assert files.is_nifti("a/CT.NII.GZ") and files.is_nifti("b.nii") and not files.is_nifti("c.gz")
    assert files.nifti_stem("a/case.nii.gz") == "case" and files.nifti_stem("x.Nii") == "x"
    assert files.nifti_stem("x.png") is None
