"""``umsynth prepare``: pairing, outputs equal to the library's pieces, resume, bad cases."""
from __future__ import annotations

import functools
import json
import re

import nibabel as nib
import numpy as np
import pytest

import umsynth
from umsynth.cli import build_parser, main
from umsynth.data import io
from umsynth.data.montage import build_montage
from umsynth.data.phantom import phantom_volume
from umsynth.data.prepare import PrepareConfig, find_cases, prepare, prepare_case
from umsynth.masks import UMConfig

SHAPE = (24, 64, 64)
SPACING = (2.0, 0.7, 0.7)
KINDS = ("images", "labels", "ums", "superpixels")


@functools.lru_cache(maxsize=None)
def _volume(seed: int):
    hu, lab = phantom_volume(seed, shape=SHAPE)
    hu.setflags(write=False)
    lab.setflags(write=False)
    return hu, lab


def _good_cases(root, write_series):
    """a: NIfTI + a_mask.nii.gz beside; b: DICOM folder + masks/b.nii.gz; c: .nii + masks/c.nii."""
    root.mkdir(parents=True, exist_ok=True)
    for seed, name in enumerate("abc"):
        hu, lab = _volume(seed)
        if name == "a":
            io.write_nifti(root / "a.nii.gz", hu, SPACING)
            io.write_nifti(root / "a_mask.nii.gz", lab, SPACING)
        elif name == "b":
            write_series(root / "b", hu, "flipped", spacing=SPACING)
            (root / "masks").mkdir(exist_ok=True)
            io.write_nifti(root / "masks" / "b.nii.gz", lab, SPACING)
        else:
            io.write_nifti(root / "c.nii", hu, SPACING)
            (root / "masks").mkdir(exist_ok=True)
            io.write_nifti(root / "masks" / "c.nii", lab, SPACING)
    (root / "README.txt").write_text("not a volume")


def _files(out):
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())


def test_pairing_rule(tmp_path, write_series):
    _good_cases(tmp_path / "v", write_series)
    io.write_nifti(tmp_path / "v" / "lonely.nii.gz", np.zeros((2, 2, 2), np.float32))
    io.write_nifti(tmp_path / "v" / "twice.nii.gz", np.zeros((2, 2, 2), np.float32))
    io.write_nifti(tmp_path / "v" / "twice_mask.nii", np.zeros((2, 2, 2), np.uint8))
    io.write_nifti(tmp_path / "v" / "masks" / "twice.nii", np.zeros((2, 2, 2), np.uint8))
    cases, ignored = find_cases(tmp_path / "v")
    got = {c.name: (c.ct.name, None if c.mask is None else str(c.mask.relative_to(tmp_path / "v")),
                    c.problem) for c in cases}
    assert got["a"] == ("a.nii.gz", "a_mask.nii.gz", None)
    assert got["b"] == ("b", "masks/b.nii.gz", None)
    assert got["c"] == ("c.nii", "masks/c.nii", None)
    assert got["lonely"][2].startswith("no mask; looked for lonely_mask.nii.gz")
    assert got["twice"][2].startswith("several masks")
    assert [p.name for p in ignored] == ["README.txt"]
    # "ct" inside names and folders is not rewritten (the original's path.replace bug)
    d = tmp_path / "ct_scans"
    d.mkdir()
    io.write_nifti(d / "ct_001.nii", np.zeros((2, 2, 2), np.float32))
    io.write_nifti(d / "ct_001_mask.nii", np.zeros((2, 2, 2), np.uint8))
    (case,), _ = find_cases(d)
    assert case.mask == d / "ct_001_mask.nii" and case.problem is None


def test_prepare_end_to_end_and_resume(tmp_path, capsys, write_series):
    vols, out = tmp_path / "v", tmp_path / "out"
    _good_cases(vols, write_series)
    args = ["prepare", str(vols), "--out", str(out), "--n-segments", "128"]
    assert main(args) == 0
    outerr = capsys.readouterr()
    assert "3 cases: 3 written, 0 skipped (already done), 0 failed; 1 other file(s) ignored" in outerr.out
    assert _files(out) == sorted([f"{k}/{n}.png" for k in KINDS for n in "abc"] +
                                 [f"cases/{n}.json" for n in "abc"])
    cfg = UMConfig(n_segments=128)
    for seed, name in enumerate("abc"):
        hu, lab = _volume(seed)
        image, labels, idx = build_montage(hu, lab)
        got = io.read_montage(out / "images" / f"{name}.png", out / "labels" / f"{name}.png")
        if name == "b":  # DICOM int16 quantization moves HU by < 1, a grey level is 6.3 HU
            assert np.abs(got[0].astype(int) - image).max() <= 1
        else:
            np.testing.assert_array_equal(got[0], image)
        np.testing.assert_array_equal(got[1], labels)
        um, sp = umsynth.unsupervised_mask(got[0], n_segments=128, compactness=10, step=10,
                                           intensity="lab", return_labels=True)
        np.testing.assert_array_equal(io.read_png_array(out / "ums" / f"{name}.png"), um)
        np.testing.assert_array_equal(io.read_png_array(out / "superpixels" / f"{name}.png"), sp)
        record = json.loads((out / "cases" / f"{name}.json").read_text())
        assert record["slices"] == idx.tolist() and record["config"]["um"] == vars(cfg)

    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    assert main(args) == 0
    assert "3 cases: 0 written, 3 skipped (already done), 0 failed" in capsys.readouterr().out
    assert stamps == {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    # other settings: the cases are redone, not skipped
    assert main(args + ["--step", "20"]) == 0
    assert "3 written, 0 skipped" in capsys.readouterr().out
    um = io.read_png_array(out / "ums" / "a.png")
    assert (um % 20 == 0).all() and (um % 10 == 0).all()


def _bad_cases(root, write_series, write_ct_dicom):
    """One case per bad input of the issue; returns {case: (file named, reason regex)}."""
    root.mkdir(parents=True)
    (root / "masks").mkdir()
    hu, lab = _volume(0)

    def mask_for(name, m=lab):
        io.write_nifti(root / "masks" / f"{name}.nii.gz", m, SPACING)

    io.write_nifti(root / "good.nii.gz", hu, SPACING)
    mask_for("good")
    # corrupt and truncated NIfTI
    full = (root / "good.nii.gz").read_bytes()
    (root / "trunc.nii.gz").write_bytes(full[: len(full) // 3])
    mask_for("trunc")
    (root / "garbage.nii").write_bytes(b"\x00\x01 not nifti " * 50)
    mask_for("garbage")
    # truncated DICOM file in a series
    write_series(root / "dcmtrunc", hu, "axial", spacing=SPACING)
    victim = sorted((root / "dcmtrunc").iterdir())[3]
    victim.write_bytes(victim.read_bytes()[:-1000])
    mask_for("dcmtrunc")
    # mask of another shape
    io.write_nifti(root / "shape.nii.gz", hu, SPACING)
    mask_for("shape", lab[:, :32])
    # no lung voxels
    io.write_nifti(root / "nolung.nii.gz", hu, SPACING)
    mask_for("nolung", np.zeros_like(lab))
    # non-CT modality
    (root / "mr").mkdir()
    for k in range(3):
        write_ct_dicom(root / "mr" / f"{k}.dcm", np.zeros((8, 8), np.int16), ipp=(0, 0, k),
                       iop=(1, 0, 0, 0, 1, 0), pixel_spacing=(1, 1), modality="MR")
    mask_for("mr", np.zeros((3, 8, 8), np.uint8))
    # 4D volume
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 6, 2), np.int16), np.eye(4)), str(root / "four.nii.gz"))
    mask_for("four", np.zeros((6, 8, 8), np.uint8))
    # empty DICOM folder
    (root / "emptyseries").mkdir()
    mask_for("emptyseries")
    # no mask at all
    io.write_nifti(root / "orphan.nii.gz", hu, SPACING)
    return {
        "trunc": ("trunc.nii.gz", "cannot read NIfTI"),
        "garbage": ("garbage.nii", "cannot read NIfTI"),
        "dcmtrunc": (victim.name, "pixel data|DICOM"),
        "shape": ("masks/shape.nii.gz", r"mask shape \(24, 32, 64\) differs from the CT's \(24, 64, 64\)"),
        "nolung": ("masks/nolung.nii.gz", "no lung voxels"),
        "mr": ("mr/0.dcm", "modality is MR, not CT"),
        "four": ("four.nii.gz", r"4D volume"),
        "emptyseries": ("emptyseries", "empty folder"),
        "orphan": ("orphan.nii.gz", "no mask; looked for orphan_mask.nii.gz"),
    }


def test_bad_cases_one_line_each_and_nothing_left(tmp_path, capsys, write_series, write_ct_dicom):
    vols, out = tmp_path / "v", tmp_path / "out"
    expected = _bad_cases(vols, write_series, write_ct_dicom)
    assert main(["prepare", str(vols), "--out", str(out), "--n-segments", "64"]) == 2
    captured = capsys.readouterr()
    lines = [ln for ln in captured.err.splitlines() if ln.startswith("umsynth prepare: error:")]
    assert len(lines) == len(expected)
    for name, (filename, reason) in expected.items():
        (line,) = [ln for ln in lines if f"/{filename}" in ln or f"/{filename}:" in ln]
        assert re.search(reason, line), line
    assert f"{len(expected) + 1} cases: 1 written, 0 skipped (already done), {len(expected)} failed" \
        in captured.out
    # only the good case's files, no temporary names
    assert _files(out) == sorted([f"{k}/good.png" for k in KINDS] + ["cases/good.json"])


def test_failed_write_removes_the_case(tmp_path, monkeypatch, write_series):
    vols, out = tmp_path / "v", tmp_path / "out"
    _good_cases(vols, write_series)
    (case, *_), _ = find_cases(vols)
    calls = []

    def flaky(path, array):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(f"{path}: disk full")
        real(path, array)

    import umsynth.data.prepare as prep

    real = prep.write_png
    monkeypatch.setattr(prep, "write_png", flaky)
    with pytest.raises(OSError, match="disk full"):
        prepare_case(case, out, PrepareConfig(um=UMConfig(n_segments=64)))
    assert _files(out) == []
    monkeypatch.undo()
    summary = prepare(vols, out, PrepareConfig(um=UMConfig(n_segments=64)), progress=False)
    assert summary.written == ["a", "b", "c"] and not summary.failed


def test_empty_folder_and_help(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["prepare", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "empty: no CT volumes found" in err
    # the older form, OUT_DIR as the second positional, still works and says it is deprecated
    assert main(["prepare", str(tmp_path / "empty"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "deprecated" in err and "empty: no CT volumes found" in err
    assert main(["prepare", str(tmp_path / "empty")]) == 2
    assert "--out OUT_DIR is required" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert main(["prepare", str(tmp_path / "empty"), str(tmp_path / "out"), "--trim", "0.5"]) == 2
    assert "--trim must be in [0, 0.5)" in capsys.readouterr().err
    text = build_parser()._subparsers._group_actions[0].choices["prepare"].format_help()
    assert "<case>_mask.nii.gz" in text and "masks/<case>.nii.gz" in text


def test_prepare_config_checks_its_fields():
    with pytest.raises(ValueError, match=r"trim must be in \[0, 0\.5\), got 0\.5"):
        PrepareConfig(trim=0.5)
    with pytest.raises(ValueError, match="window must have LOW < HIGH"):
        PrepareConfig(window=(100.0, -1500.0))
    with pytest.raises(ValueError, match="window must be two numbers"):
        PrepareConfig(window=(1.0,))
    assert PrepareConfig(window=(-1000, 400), trim=0.0).record()["window"] == [-1000.0, 400.0]
