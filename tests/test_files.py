"""umsynth.files: the atomic writer (content, permissions, failure), the image reader, suffixes."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

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


# ----------------------------------------------------------------------------- other writers' permissions


def test_every_kind_of_output_gets_the_usual_permissions(tmp_path, umask):
    """np.savez, torch.save, safetensors and nibabel all write through atomic_write: 0o666 & ~umask."""
    torch = pytest.importorskip("torch")
    from umsynth.data.io import write_nifti
    from umsynth.extractors.nets import CTNet
    from umsynth.extractors.suite import Member, Suite, save_suite
    from umsynth.metrics.streaming import SetStats
    from umsynth.stats import FeatureStats
    from umsynth.train.checkpoint import save_checkpoint

    umask(0o027)
    with open(tmp_path / "plain", "w"):
        pass
    expected = _mode(tmp_path / "plain")
    st = FeatureStats(3).update(np.random.default_rng(0).normal(size=(5, 3)))
    st.save(tmp_path / "stats.npz")
    SetStats(5, {("net", 32): st}).save(tmp_path / "set")
    save_checkpoint({"w": torch.zeros(2)}, tmp_path / "ck" / "last.pt")
    save_suite(Suite([Member("ct-x", "rotation", CTNet([4], 4, stem=2), (4,), 4, stem=2)], (32,)),
               tmp_path / "suite.safetensors")
    write_nifti(tmp_path / "v.nii.gz", np.zeros((2, 3, 4), np.float32), (1.0, 1.0, 1.0))
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "plain"]
    assert len(written) == 6
    for p in written:
        assert _mode(p) == expected, p


# ----------------------------------------------------------------------------- names and paths from files


@pytest.mark.parametrize("name", ["ct-rotation", "a", "torchvision-inception-v3-0123456789ab", "x_1.2+b",
                                  "_private", "A" * 128])
def test_safe_names_pass(name):
    assert files.check_name(name, "what") == name


@pytest.mark.parametrize("name", ["", "../x", "..", "a/b", "a\\b", "/tmp/x", ".hidden", "-x", "a..b", "a@32",
                                  "a b", "a\nb", "a\0b", "é", "A" * 129, 5, None, ["a"]])
def test_unsafe_names_are_refused_naming_the_source(name):
    with pytest.raises(ValueError, match=r"^suite\.safetensors: member name: .* is not a safe name"):
        files.check_name(name, "suite.safetensors: member name")


def test_path_inside_keeps_manifest_paths_in_their_folder(tmp_path):
    folder = tmp_path / "stats"
    (folder / "sub").mkdir(parents=True)
    assert files.path_inside(folder, "a@32.npz", "w") == folder / "a@32.npz"
    assert files.path_inside(folder, "sub/b.npz", "w") == folder / "sub" / "b.npz"
    (tmp_path / "outside.npz").write_bytes(b"")
    (folder / "link.npz").symlink_to(tmp_path / "outside.npz")
    (folder / "dirlink").symlink_to(tmp_path)
    for rel in ["../outside.npz", "/tmp/x@32.npz", "sub/../../outside.npz", "C:\\x.npz", "c:x.npz", "",
                "  ", "a\\..\\b", "link.npz", "dirlink/outside.npz", 3, None]:
        with pytest.raises(ValueError, match=r"^m\.json: files: "):
            files.path_inside(folder, rel, "m.json: files")


# ----------------------------------------------------------------------------- .npz files


def test_read_npz_equals_numpy_for_what_savez_writes(tmp_path):
    rng = np.random.default_rng(1)
    arrays = {"f8": rng.normal(size=(3, 4)), "big_endian": np.arange(6, dtype=">f4").reshape(2, 3),
              "fortran": np.asfortranarray(rng.integers(0, 9, (3, 5))), "scalar": np.array(7, np.int16),
              "empty": np.zeros((0, 3)), "text": np.array(["umsynth", "x"]), "flags": np.array([True, False]),
              "c16": np.array([1 + 2j])}
    np.savez(tmp_path / "plain.npz", **arrays)
    np.savez_compressed(tmp_path / "zipped.npz", **arrays)
    for name in ("plain.npz", "zipped.npz"):
        got = files.read_npz(tmp_path / name)
        with np.load(tmp_path / name, allow_pickle=False) as ref:
            assert sorted(got.files) == sorted(ref.files)
            for k in ref.files:
                assert got[k].dtype == ref[k].dtype and got[k].shape == ref[k].shape, k
                assert got[k].flags.f_contiguous == ref[k].flags.f_contiguous, k
                np.testing.assert_array_equal(got[k], ref[k])
    with files.read_npz(tmp_path / "plain.npz", "statistics file") as f:
        with pytest.raises(ValueError, match=r"plain\.npz: this statistics file has no 'mu' entry"):
            f["mu"]


def _forged_npz(path, shape, data: bytes, compress=zipfile.ZIP_STORED, dtype="<f8"):
    """An .npz whose one entry's header claims `shape` but holds `data`."""
    import io

    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": dtype, "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w", compression=compress) as zf:
        zf.writestr("mu.npy", head.getvalue() + data)


def test_read_npz_refuses_damaged_and_hostile_files(tmp_path):
    np.savez(tmp_path / "good.npz", mu=np.arange(100.0), sigma=np.eye(10))
    good = (tmp_path / "good.npz").read_bytes()
    cases = {"empty.npz": b"", "junk.npz": b"not a zip at all"}
    for cut in (10, 100, len(good) // 2, len(good) - 30, len(good) - 1):
        cases[f"cut{cut}.npz"] = good[:cut]
    flipped = bytearray(good)
    flipped[good.index(b"mu.npy") + 200] ^= 0xFF  # a data byte: the CRC no longer matches
    cases["crc.npz"] = bytes(flipped)
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match=rf"^cannot read statistics file .*{name}: ") as info:
            files.read_npz(tmp_path / name, "statistics file")
        assert "\n" not in str(info.value)
    np.savez(tmp_path / "pickled.npz", mu=np.array([{"code": "runs"}], dtype=object))
    with pytest.raises(ValueError, match=r"pickled\.npz: entry 'mu': it holds Python objects"):
        files.read_npz(tmp_path / "pickled.npz", "statistics file")
    # a header claiming 8 TB over 80 bytes of data: refused before anything is allocated
    _forged_npz(tmp_path / "huge.npz", (10**6, 10**6), b"\0" * 80)
    with pytest.raises(ValueError, match=r"huge\.npz: entry 'mu': its header claims"):
        files.read_npz(tmp_path / "huge.npz")
    _forged_npz(tmp_path / "short.npz", (100,), b"\0" * 80)
    with pytest.raises(ValueError, match=r"short\.npz: entry 'mu': its header claims"):
        files.read_npz(tmp_path / "short.npz")
    with pytest.raises(FileNotFoundError, match=r"nope\.npz"):
        files.read_npz(tmp_path / "nope.npz")


def test_read_npz_bounds_a_zip_bomb_by_the_deflate_ratio(tmp_path):
    # 8 MB of zeros deflate to about 8 kB: a real entry within deflate's ratio is read ...
    np.savez_compressed(tmp_path / "zeros.npz", mu=np.zeros(10**6))
    assert files.read_npz(tmp_path / "zeros.npz")["mu"].shape == (10**6,)
    # ... but an entry claiming 800 MB (header and zip directory agreeing) over 1 MB of deflated
    # zeros is refused before the 800 MB are allocated: deflate cannot give that much
    _forged_npz(tmp_path / "bomb.npz", (10**8,), b"\0" * 10**6, compress=zipfile.ZIP_DEFLATED)
    raw = bytearray((tmp_path / "bomb.npz").read_bytes())
    with zipfile.ZipFile(tmp_path / "bomb.npz") as zf:
        info = zf.getinfo("mu.npy")
    claimed = (info.file_size - 10**6 + 8 * 10**8).to_bytes(4, "little")
    raw[22:26] = claimed  # local header: uncompressed size
    cd = raw.rindex(b"PK\x01\x02")
    raw[cd + 24:cd + 28] = claimed  # central directory: uncompressed size
    (tmp_path / "bomb.npz").write_bytes(bytes(raw))
    with zipfile.ZipFile(tmp_path / "bomb.npz") as zf:
        assert zf.getinfo("mu.npy").file_size > 8 * 10**8
    with pytest.raises(ValueError, match=r"bomb\.npz: entry 'mu': its header claims \(100000000,\)"):
        files.read_npz(tmp_path / "bomb.npz")


# ----------------------------------------------------------------------------- temporary files and locks


def _dead_pid() -> int:
    """The pid of a process that has ended (reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temporary_names_are_recognisable_and_stale_ones_are_cleaned(tmp_path):
    seen = []
    files.atomic_write(tmp_path / "out.npz", lambda tmp: seen.append(Path(tmp).name) or Path(tmp).write_bytes(b"x"),
                       suffix=".npz")
    assert seen[0].startswith(f"{files.TEMP_PREFIX}{os.getpid()}-") and seen[0].endswith("out.npz.npz")
    (tmp_path / "sub").mkdir()
    dead = _dead_pid()
    stale = [tmp_path / f"{files.TEMP_PREFIX}{dead}-0000-a.pt.tmp", tmp_path / "sub" / f"{files.TEMP_PREFIX}{dead}-1-b"]
    mine = tmp_path / f"{files.TEMP_PREFIX}{os.getpid()}-2-c.tmp"
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.2)
        running = tmp_path / f"{files.TEMP_PREFIX}{alive.pid}-3-d.tmp"
        reused = tmp_path / f"{files.TEMP_PREFIX}{alive.pid}-4-e.tmp"  # written before that process started
        other = tmp_path / ".hidden-user-file"
        for p in stale + [mine, running, reused, other]:
            p.write_bytes(b"partial")
        an_hour_ago = time.time() - 3600
        os.utime(reused, (an_hour_ago, an_hour_ago))
        removed = files.clean_stale_temps(tmp_path)
        expect_removed = set(stale) | ({reused} if Path("/proc/self/stat").exists() else set())
        assert set(removed) == expect_removed
        assert all(p.exists() for p in (mine, running, other))
        assert not any(p.exists() for p in expect_removed)
    finally:
        alive.kill()
        alive.wait()


_HOLD = """
import sys, time
from umsynth.files import output_lock
with output_lock(sys.argv[1], "holder", file=sys.argv[2] == "file"):
    print("held", flush=True)
    time.sleep(60)
"""


def _holder(path, kind="folder"):
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(path), kind], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.parametrize("kind", ["folder", "file"])
def test_output_lock_stops_a_second_process_and_a_killed_holder_frees_it(tmp_path, kind):
    target = tmp_path / ("out" if kind == "folder" else "suite.safetensors")
    holder = _holder(target, kind)
    try:
        with pytest.raises(files.OutputBusyError, match=rf"in use by another umsynth process \(umsynth holder, "
                                                          rf"pid {holder.pid} on "):
            with files.output_lock(target, "second", file=kind == "file"):
                pass
    finally:
        holder.kill()  # SIGKILL: no clean-up runs in the holder
        holder.wait()
    lock_dir = target if kind == "folder" else target.parent
    stale_tmp = lock_dir / f"{files.TEMP_PREFIX}{holder.pid}-0-x.tmp"
    stale_tmp.write_bytes(b"left by the killed holder")
    with files.output_lock(target, "second", file=kind == "file"):
        locks = [p for p in lock_dir.iterdir() if p.name.endswith(files.LOCK_NAME)]
        assert len(locks) == 1 and f'"pid": {os.getpid()}' in locks[0].read_text()
        assert not stale_tmp.exists()
        with files.output_lock(target, "nested", file=kind == "file"):  # the same process may enter again
            pass
        assert locks[0].exists()
    assert not any(p.name.endswith(files.LOCK_NAME) for p in lock_dir.iterdir())


def test_a_lock_that_wrote_nothing_leaves_no_new_folder(tmp_path):
    with files.output_lock(tmp_path / "new" / "out", "x"):
        assert (tmp_path / "new" / "out" / files.LOCK_NAME).is_file()
    assert not (tmp_path / "new" / "out").exists()
    with files.output_lock(tmp_path / "kept", "x"):
        (tmp_path / "kept" / "result.txt").write_text("written")
    assert [p.name for p in (tmp_path / "kept").iterdir()] == ["result.txt"]
    (tmp_path / "old").mkdir()
    with files.output_lock(tmp_path / "old", "x"):
        pass
    assert (tmp_path / "old").is_dir()
