"""Crafted files through the API and the command line: every one gets one clear error, never a hang.

Each read runs in a subprocess with a timeout, so a hang or a crash (segfault, the kernel's
out-of-memory killer) fails the test instead of stopping the run. The cases: truncated,
0-byte and damaged files, wrong or missing keys, hostile names and paths, decompression and
zip bombs, pickles, checkpoints that claim huge networks, bad devices, a missing torch.

Through the CLI every case must end with exit status 2 and exactly one line on stderr that
names the file (or argument) and the problem; a batch goes on past its bad files.
"""
from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from umsynth.extractors.nets import CTNet  # noqa: E402
from umsynth.extractors.suite import Member, Suite, save_suite  # noqa: E402
from umsynth.metrics.streaming import SetStats  # noqa: E402
from umsynth.stats import FeatureStats  # noqa: E402

TIMEOUT = 180  # seconds per subprocess: generous for a loaded 2-core machine, far below a hang
TINY_TRAIN = ["--model.generator.ngf", "8", "--model.generator.n_downsample", "2", "--model.generator.n_blocks", "1",
              "--model.discriminator.ndf", "8", "--model.discriminator.n_layers", "2", "--data.batch_size", "1",
              "--data.phantom_n", "4", "--data.phantom_size", "64", "--data.labelled_fraction", "0.5",
              "--train.sample_every", "0", "--train.tensorboard", "false", "--train.max_steps", "2",
              "--train.device", "cpu"]


def cli(*args, cwd=None, env=None, timeout=TIMEOUT) -> subprocess.CompletedProcess:
    """``python -m umsynth ARGS`` in a subprocess; a hang past `timeout` fails the test."""
    return subprocess.run([sys.executable, "-m", "umsynth", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=env)


def error_lines(proc) -> list[str]:
    """stderr's lines, without the progress lines written outside a terminal ("masks: 50%|... [00:01<...")."""
    return [ln for ln in proc.stderr.splitlines() if ln.strip() and not re.search(r"\[\d+:\d\d", ln)]


def assert_one_line(proc, *needles) -> str:
    """Exit status 2, no traceback, exactly one stderr line holding every needle."""
    lines = error_lines(proc)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr
    for needle in needles:
        assert str(needle) in lines[0], (needle, lines[0])
    return lines[0]


_API = """
import json, sys, importlib
mod, fn = sys.argv[1], sys.argv[2]
f = importlib.import_module(mod)
for part in fn.split("."):
    f = getattr(f, part)
for path in sys.argv[3:]:
    try:
        f(path)
        out = {"ok": True}
    except (ValueError, TypeError, OSError) as exc:
        out = {"type": type(exc).__name__, "msg": str(exc)}
    print(json.dumps(out), flush=True)
"""


def api(module: str, function: str, paths) -> list[dict]:
    """Call ``module.function(path)`` for each path, in one subprocess; each outcome as {"type", "msg"}
    (or {"ok": True}). A crash or hang on any path fails the test."""
    paths = [str(p) for p in paths]
    proc = subprocess.run([sys.executable, "-c", _API, module, function, *paths], capture_output=True,
                          text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, f"crashed (status {proc.returncode}): {proc.stderr[-2000:]}"
    out = [json.loads(line) for line in proc.stdout.strip().splitlines()]
    assert len(out) == len(paths)
    return out


# ----------------------------------------------------------------------------- images


def _png(width: int, height: int, idat: bytes = b"") -> bytes:
    """A PNG whose header claims width x height grey pixels, with the given compressed data."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    head = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head) + chunk(b"IDAT", zlib.compress(idat)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A folder with two good images and bad ones; returns (folder, {bad name: what it is})."""
    d = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for name in ("good1.png", "good2.png"):
        Image.fromarray((rng.random((48, 48)) * 255).astype(np.uint8)).save(d / name)
    good = (d / "good1.png").read_bytes()
    bad = {"bomb.png": _png(100000, 100000),                     # 74 bytes claiming 10^10 pixels
           "empty.png": b"",
           "truncated.png": good[: len(good) // 2],
           "header_only.png": good[:33],
           "garbage.tif": b"II*\x00" + os.urandom(60),
           "wide.png": _png(2**31 - 1, 1)}                       # the largest width PNG allows
    for name, data in bad.items():
        (d / name).write_bytes(data)
    return d, bad


def test_bad_images_through_the_api(images):
    folder, bad = images
    for name, out in zip(bad, api("umsynth.files", "read_grey", [folder / name for name in bad])):
        assert out.get("type") == "ImageReadError" and out["msg"].startswith(f"{folder / name}: "), (name, out)


def test_masks_reports_each_bad_image_and_finishes_the_batch(images, tmp_path):
    folder, bad = images
    proc = cli("masks", folder, "--out", tmp_path / "out", "--n-segments", "16")
    lines = error_lines(proc)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert sorted(lines) == sorted(ln for ln in lines if ln.startswith("umsynth masks: error: "))
    assert len(lines) == len(bad) and all(any(name in ln for ln in lines) for name in bad), proc.stderr
    assert "2 done, 6 failed" in proc.stdout
    for stem in ("good1", "good2"):
        assert (tmp_path / "out" / f"{stem}_um.png").is_file()
    assert "bomb.png" in (tmp_path / "out" / "index.html").read_text()


# ----------------------------------------------------------------------------- statistics files


@pytest.fixture(scope="module")
def stats_files(tmp_path_factory):
    """A good FeatureStats file and crafted bad ones; returns (folder, {name: words the error must hold})."""
    d = tmp_path_factory.mktemp("npz")
    FeatureStats(4).update(np.random.default_rng(0).normal(size=(10, 4))).save(d / "good.npz")
    good = (d / "good.npz").read_bytes()
    with np.load(d / "good.npz") as f:
        arrays = dict(f)
    cases = {"empty.npz": "not a complete .npz", "truncated.npz": "not a complete .npz",
             "cut_end.npz": "not a complete .npz", "pickled.npz": "pickled", "keys.npz": "missing mu, sigma",
             "noversion.npz": "'version'", "bomb.npz": "header claims"}
    (d / "empty.npz").write_bytes(b"")
    (d / "truncated.npz").write_bytes(good[:200])
    (d / "cut_end.npz").write_bytes(good[:-10])
    np.savez(d / "pickled.npz", mu=np.array([{"x": 1}], dtype=object), sigma=np.eye(1))
    np.savez(d / "keys.npz", foo=np.zeros(3))
    np.savez(d / "noversion.npz", **{k: v for k, v in arrays.items() if k != "version"})
    import io
    import zipfile
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)})
    with zipfile.ZipFile(d / "bomb.npz", "w") as zf:
        zf.writestr("mu.npy", head.getvalue() + b"\0" * 64)
        zf.writestr("sigma.npy", head.getvalue() + b"\0" * 64)
    return d, cases


def test_bad_statistics_files_through_the_api(stats_files):
    folder, cases = stats_files
    outs = api("umsynth.stats", "FeatureStats.load", [folder / name for name in cases])
    for (name, words), out in zip(cases.items(), outs):
        assert out.get("type") == "ValueError" and name in out["msg"] and words in out["msg"], (name, out)


def test_bad_statistics_files_through_fid_and_merge(stats_files, tmp_path):
    folder, cases = stats_files
    for k, (name, words) in enumerate(cases.items()):
        assert_one_line(cli("fid", folder / name, folder / "good.npz"), name, words)
        if k % 2 == 0:  # merge reads them the same way: half the cases suffice
            proc = cli("stats", "merge", folder / "good.npz", folder / name, "--out", tmp_path / "merged.npz")
            assert_one_line(proc, name, words)
            assert not (tmp_path / "merged.npz").exists()


# ----------------------------------------------------------------------------- statistics folders


def _set_stats(folder: Path, name="ct-x", n=6) -> Path:
    st = FeatureStats(3).update(np.random.default_rng(n).normal(size=(n, 3)))
    SetStats(n, {(name, 32): st}).save(folder)
    return folder


@pytest.mark.parametrize("change,words", [
    (lambda m, v: m["cells"][0].update(extractor="../../victim"), "not a safe name"),
    (lambda m, v: m["cells"][0].update(extractor=str(v / "real")), "not a safe name"),
    (lambda m, v: m["cells"][0].update(files=[str(v / "real@32.npz")]), "not a relative path"),
    (lambda m, v: m["cells"][0].update(files=["../victim/real@32.npz"]), "not a relative path"),
    (lambda m, v: m["cells"][0].pop("files"), "expected extractor, scale and files"),
    (lambda m, v: m.pop("cells"), "expected n"),
    (lambda m, v: m["cells"][0].update(scale="32"), "integer scale"),
])
def test_hostile_setstats_manifests_are_refused(tmp_path, change, words):
    """The issue's attack: names and files in setstats.json leading to other sets' statistics."""
    victim = tmp_path / "victim"
    _set_stats(victim, "real")
    before = {p.name: p.read_bytes() for p in victim.iterdir()}
    a, b = _set_stats(tmp_path / "a"), _set_stats(tmp_path / "b", n=7)
    manifest = json.loads((b / "setstats.json").read_text())
    change(manifest, victim)
    (b / "setstats.json").write_text(json.dumps(manifest))
    (out,) = api("umsynth.metrics.streaming", "SetStats.load", [b])
    assert out.get("type") == "ValueError" and "setstats.json" in out["msg"] and words in out["msg"], out
    assert_one_line(cli("stats", "merge", a, b, "--out", tmp_path / "merged"), "setstats.json", words)
    assert {p.name: p.read_bytes() for p in victim.iterdir()} == before
    assert not (tmp_path / "merged" / "setstats.json").exists()


def test_hostile_names_are_never_written(tmp_path):
    st = FeatureStats(2).update(np.eye(2))
    with pytest.raises(ValueError, match="not a safe name"):
        SetStats(2, {("ok", 16): st, ("../evil", 32): st}).save(tmp_path / "stats")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="suite member name"):
        Suite([Member("/tmp/evil", "rotation", CTNet([4], 4, stem=2), (4,), 4, stem=2)], (32,))


# ----------------------------------------------------------------------------- extractor suites


def _rewrite_suite(src: Path, dest: Path, edit) -> Path:
    """Copy a suite file with its metadata changed by ``edit(meta, tensors)``."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), framework="pt") as f:
        meta = json.loads(f.metadata()["umsynth_suite"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    tensors = edit(meta, tensors) or tensors
    save_file(tensors, str(dest), metadata={"umsynth_suite": json.dumps(meta)})
    return dest


@pytest.fixture(scope="module")
def suite_case(tmp_path_factory):
    """(folder with a good tiny suite, a real and a synthetic image folder)."""
    d = tmp_path_factory.mktemp("suite")
    save_suite(Suite([Member("ct-x", "rotation", CTNet([4, 8], 4, stem=2), (4, 8), 4, stem=2)], (32,)),
               d / "good.safetensors")
    rng = np.random.default_rng(1)
    for sub in ("real", "syn"):
        (d / sub).mkdir()
        for i in range(3):
            Image.fromarray((rng.random((32, 32)) * 255).astype(np.uint8)).save(d / sub / f"{i}.png")
    return d


def _renamed(name):
    def edit(meta, tensors):
        old = meta["members"][0]["name"]
        meta["members"][0]["name"] = name
        return {k.replace(old, name, 1): v for k, v in tensors.items()}
    return edit


def _suite_cases(d: Path) -> dict:
    """name -> (edit, words the error must hold)."""
    def drop(key):
        return lambda meta, t: meta["members"][0].pop(key) and None

    def huge(meta, t):
        meta["members"][0]["channels"] = [10**6, 10**6]  # 8 TB of weights if built

    def big_but_allowed(meta, t):
        meta["members"][0]["channels"] = [4096, 4096]  # within the limits: the shapes refuse it

    return {"absolute_name": (_renamed(str(d / "evil")), "not a safe name"),
            "parent_name": (_renamed("../../evil"), "not a safe name"),
            "no_channels": (drop("channels"), "lacks channels"),
            "huge": (huge, "is outside"),
            "mismatch": (big_but_allowed, "has shape"),
            "no_members": (lambda meta, t: meta.pop("members") and None, "lists no member"),
            "bad_scales": (lambda meta, t: meta.update(scales=[0]), "scales")}


def test_crafted_suites_through_the_api_and_mmfid(suite_case, tmp_path):
    d = suite_case
    cases = _suite_cases(d)
    paths = [_rewrite_suite(d / "good.safetensors", tmp_path / f"{name}.safetensors", edit)
             for name, (edit, _) in cases.items()]
    for name, data in {"empty": b"", "cut": (d / "good.safetensors").read_bytes()[:300]}.items():
        (tmp_path / f"{name}.safetensors").write_bytes(data)
        paths.append(tmp_path / f"{name}.safetensors")
        cases[name] = (None, "cannot read suite")
    for path, (name, (_, words)), out in zip(paths, cases.items(), api("umsynth.extractors.suite", "load_suite",
                                                                        paths)):
        assert out.get("type") == "ValueError" and str(path) in out["msg"] and words in out["msg"], (name, out)
    for name in ("absolute_name", "parent_name"):  # the path traversal, through the CLI
        path = tmp_path / f"{name}.safetensors"
        proc = cli("mmfid", d / "real", d / "syn", "--suite", path, "--save-stats", tmp_path / "stats",
                   "--no-progress")
        assert_one_line(proc, f"{name}.safetensors", "not a safe name")
        assert not list(d.parent.glob("**/evil@*")) and not list(tmp_path.glob("**/*@32.npz"))


# ----------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A real checkpoint of a 2-step tiny run, made through the CLI."""
    d = tmp_path_factory.mktemp("run")
    proc = cli("train", "--out", d, "--no-progress", *TINY_TRAIN)
    assert proc.returncode == 0, proc.stderr
    return d / "checkpoints" / "last.pt"


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def _crafted_checkpoints(ckpt: Path, d: Path) -> dict:
    """name -> words the error must hold."""
    st = torch.load(ckpt, weights_only=True)
    cases = {}

    def save(name, state, words):
        torch.save(state, d / f"{name}.pt")
        cases[name] = words

    def with_generator(**changes):
        cfg = json.loads(json.dumps(st["config"]))
        cfg["model"]["generator"].update(changes)
        return {**st, "config": cfg}

    save("mismatch", with_generator(ngf=16), "has shape")
    save("huge", with_generator(ngf=4096, n_blocks=64), "do not fit")           # the 24 GB claim
    save("beyond", with_generator(ngf=10**6, n_blocks=10**6), "is outside")
    save("strings", with_generator(ngf="64"), "ngf")
    save("no_config", {k: v for k, v in st.items() if k != "config"}, "not a umsynth training checkpoint")
    save("bad_config", {**st, "config": {"model": 5}}, "model")
    save("renamed", {**st, "generator": {k + "x": v for k, v in st["generator"].items()}}, "do not fit")
    save("pickle", {**st, "evil": _Evil()}, "cannot read checkpoint")
    raw = ckpt.read_bytes()
    (d / "truncated.pt").write_bytes(raw[: len(raw) // 2])
    (d / "empty.pt").write_bytes(b"")
    cases.update({"truncated": "cannot read checkpoint", "empty": "cannot read checkpoint"})
    return cases


@pytest.mark.slow
def test_crafted_checkpoints_through_the_api_and_synthesize(checkpoint, tmp_path, images):
    folder, _ = images
    cases = _crafted_checkpoints(checkpoint, tmp_path)
    outs = api("umsynth.synth", "load_generator", [tmp_path / f"{name}.pt" for name in cases])
    for (name, words), out in zip(cases.items(), outs):
        assert out.get("type") in ("ValueError", "OSError") and f"{name}.pt" in out["msg"] and words in out["msg"], \
            (name, out)
    for name in ("mismatch", "huge", "pickle", "truncated"):
        proc = cli("synthesize", tmp_path / f"{name}.pt", folder / "good1.png", "--out", tmp_path / "out",
                   "--device", "cpu", "--no-progress", cwd=tmp_path)
        assert_one_line(proc, f"{name}.pt", cases[name])
    assert not (tmp_path / "pwned").exists()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").glob("*.png"))


def test_a_huge_claim_is_refused_in_little_memory(checkpoint, tmp_path):
    """ngf=4096, n_blocks=64 took 24 GB before; now the check needs a few hundred MB at most."""
    cases = _crafted_checkpoints(checkpoint, tmp_path)
    assert "huge" in cases
    code = ("import resource, sys\nfrom umsynth.synth import load_generator\n"
            "try:\n    load_generator(sys.argv[1])\nexcept ValueError as exc:\n    print('refused:', exc)\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "huge.pt")], capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    refused, peak_kb = proc.stdout.strip().splitlines()
    assert refused.startswith("refused: checkpoint ") and int(peak_kb) < 1.5e6, proc.stdout


# ----------------------------------------------------------------------------- devices and dependencies


@pytest.mark.slow
def test_a_bad_device_is_one_line_everywhere(checkpoint, images, suite_case, tmp_path):
    folder, _ = images
    d = suite_case
    runs = {"synthesize": ["synthesize", checkpoint, folder / "good1.png", "--out", tmp_path / "s", "--device", "tpu"],
            "fid": ["fid", folder, folder, "--device", "tpu"],
            "mmfid": ["mmfid", d / "real", d / "syn", "--suite", d / "good.safetensors", "--device", "tpu"],
            "demo": ["demo", "--quick", "--out", tmp_path / "demo", "--device", "tpu"],
            "train": ["train", "--out", tmp_path / "t", *TINY_TRAIN[:-2], "--train.device", "tpu"]}
    for name, args in runs.items():
        assert_one_line(cli(*args, cwd=tmp_path), "tpu")


_NO_TORCH = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, _Block())
sys.argv[0] = "umsynth"
if sys.argv[1] == "api":
    import umsynth.train
    try:
        umsynth.train.train
    except ModuleNotFoundError as exc:
        print(type(exc).__name__, exc)
    sys.exit(0)
from umsynth.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_without_torch_one_line_names_the_extra(images, tmp_path):
    folder, _ = images
    for args in (["demo", "--quick", "--out", tmp_path / "demo"], ["train", "--out", tmp_path / "t"],
                 ["fid", folder, folder], ["synthesize", tmp_path / "x.pt", folder, "--out", tmp_path / "s"]):
        proc = subprocess.run([sys.executable, "-c", _NO_TORCH, *map(str, args)], capture_output=True, text=True,
                              timeout=TIMEOUT, cwd=tmp_path)
        assert_one_line(proc, "needs torch", 'pip install "umsynth[torch]"')
    proc = subprocess.run([sys.executable, "-c", _NO_TORCH, "api"], capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.stdout.startswith("MissingDependencyError umsynth.train.train: this needs torch"), proc.stdout
    # and masks, which needs no torch, still works
    proc = subprocess.run([sys.executable, "-c", _NO_TORCH, "masks", str(folder / "good1.png"), "--out",
                           str(tmp_path / "m"), "--n-segments", "16"], capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
