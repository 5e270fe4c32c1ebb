"""umsynth.metrics.streaming: one pass equals merged shards, torch.distributed equals one
process, the kept sample."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from umsynth.extractors import CTNet, Member, Suite  # noqa: E402
from umsynth.metrics.mmfid import mmfid  # noqa: E402
from umsynth.metrics.streaming import SetStats, stream_stats  # noqa: E402
from umsynth.stats import FeatureStats  # noqa: E402


def _assert_same_stats(a: FeatureStats, b: FeatureStats, rtol=1e-12):
    assert a.n == b.n
    np.testing.assert_allclose(a.mean, b.mean, rtol=0, atol=rtol * np.abs(b.mean).max())
    np.testing.assert_allclose(a.cov, b.cov, rtol=0, atol=rtol * np.abs(b.cov).max())


def test_stats_merge_equals_one_pass(cohort, tmp_path, random_suite):
    from umsynth.cli import main

    suite = random_suite()
    one = stream_stats(cohort.images, suite, split=True, batch_size=16, progress=False)
    a = stream_stats(cohort.images[:15], suite, split=True, batch_size=4, progress=False)
    b = stream_stats(cohort.images[15:], suite, split=True, batch_size=16, progress=False)
    a.save(tmp_path / "a")
    b.save(tmp_path / "b")
    assert main(["stats", "merge", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "m")]) == 0
    merged = SetStats.load(tmp_path / "m")
    assert merged.n == one.n == 40
    for key, st in one.cells.items():
        _assert_same_stats(merged.cells[key], st)
    # single FeatureStats files too
    key = next(iter(one.cells))
    a.cells[key].save(tmp_path / "a.npz")
    b.cells[key].save(tmp_path / "b.npz")
    assert main(["stats", "merge", str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), "--out", str(tmp_path / "ab.npz")]) == 0
    _assert_same_stats(FeatureStats.load(tmp_path / "ab.npz"), one.cells[key])
    # the older form (OUT first) still works, with a deprecation line
    assert main(["stats", "merge", str(tmp_path / "ab2.npz"), str(tmp_path / "a.npz"), str(tmp_path / "b.npz")]) == 0
    assert (tmp_path / "ab2.npz").read_bytes() == (tmp_path / "ab.npz").read_bytes()
    # saved statistics stand in for images
    r1 = mmfid(cohort.images[:20], cohort.images[20:], suite, progress=False)
    r1b = mmfid(cohort.images[:20], cohort.images[20:], suite, progress=False, save_stats=tmp_path / "s")
    r2 = mmfid(tmp_path / "s" / "real", tmp_path / "s" / "synthetic" / "synthetic", suite, progress=False)
    np.testing.assert_allclose(r2.fd["synthetic"], r1.fd["synthetic"], rtol=1e-9)
    np.testing.assert_array_equal(r1b.fd["synthetic"], r1.fd["synthetic"])


def test_stats_merge_cli_errors(tmp_path, capsys):
    from umsynth.cli import main

    assert main(["stats", "merge", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "o.npz")]) == 2
    assert "missing.npz" in capsys.readouterr().err
    assert main(["stats", "merge", str(tmp_path / "missing.npz")]) == 2
    assert "--out OUT is required" in capsys.readouterr().err


_DDP_WORKER = """
import os, sys, numpy as np, torch, torch.distributed as dist
sys.path.insert(0, {root!r})
from umsynth.extractors import CTNet, Member, Suite
from umsynth.metrics.streaming import stream_stats
from umsynth.stats import FeatureStats
rank = int(sys.argv[1])
dist.init_process_group("gloo", init_method="file://" + {store!r}, rank=rank, world_size=2)
torch.manual_seed(0)
suite = Suite([Member("net0", "rotation", CTNet((4, 8, 16), 4).eval(), (4, 8, 16), 4)], (32, 64))
images = np.load({images!r})
st = stream_stats(images, suite, split=True, batch_size=5, keep=6, progress=False)
x = np.random.default_rng(0).standard_normal((23, 5)) + 1e3
fs = FeatureStats(5, keep_features=True).update(x[rank::2]).all_reduce()
# one process with no samples, over an explicit group
lone = FeatureStats(5).update(x[:7] if rank == 0 else x[:0]).all_reduce(group=dist.new_group([0, 1]))
if rank == 0:
    st.save({out!r})
    np.save({out!r} + "/kept.npy", st.kept[("net0", 64)])
    fs.save({out!r} + "/direct.npz")
    lone.save({out!r} + "/lone.npz")
dist.barrier()
dist.destroy_process_group()
"""


def test_distributed_two_gloo_processes_equal_one_pass(cohort, tmp_path, scales):
    import pathlib

    root = str(pathlib.Path(__file__).resolve().parents[2])
    images = np.ascontiguousarray(cohort.images[:23])
    np.save(tmp_path / "images.npy", images)
    script = tmp_path / "worker.py"
    script.write_text(_DDP_WORKER.format(root=root, store=str(tmp_path / "store"),
                                         images=str(tmp_path / "images.npy"), out=str(tmp_path / "ddp")))
    procs = [subprocess.Popen([sys.executable, str(script), str(r)], stderr=subprocess.PIPE) for r in (0, 1)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()[-2000:]
    torch.manual_seed(0)
    suite = Suite([Member("net0", "rotation", CTNet((4, 8, 16), 4).eval(), (4, 8, 16), 4)], scales)
    one = stream_stats(images, suite, split=True, batch_size=8, progress=False)
    got = SetStats.load(tmp_path / "ddp")
    assert got.n == 23
    # float32 network outputs depend on batch composition at the 1e-7 level
    for key, st in one.cells.items():
        _assert_same_stats(got.cells[key], st, rtol=1e-5)
        for h in (0, 1):
            _assert_same_stats(got.halves[h][key], one.halves[h][key], rtol=1e-5)
    # the all-reduce itself is exact: float64 rows split over the two processes
    x = np.random.default_rng(0).standard_normal((23, 5)) + 1e3
    direct = FeatureStats.load(tmp_path / "ddp" / "direct.npz")
    _assert_same_stats(direct, FeatureStats(5).update(x), rtol=1e-11)
    assert not direct.keep_features  # rows of one process cannot stand for all
    _assert_same_stats(FeatureStats.load(tmp_path / "ddp" / "lone.npz"), FeatureStats(5).update(x[:7]), rtol=1e-12)
    assert np.load(tmp_path / "ddp" / "kept.npy").shape == (6, 16)


def test_kept_sample_is_uniform_and_bounded(cohort, random_suite):
    suite = random_suite(k=1)
    st = stream_stats(cohort.images, suite, keep=10, batch_size=3, progress=False, seed=4)
    assert len(st.kept_index) == 10 and len(set(st.kept_index.tolist())) == 10
    full = stream_stats(cohort.images, suite, keep=40, progress=False)
    for key, f in st.kept.items():
        np.testing.assert_allclose(f, full.kept[key][st.kept_index], rtol=1e-6)
