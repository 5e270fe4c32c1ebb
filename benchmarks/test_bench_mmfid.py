"""MM-FID throughput through a 4 x 4 table (4 networks x scales 128, 256, 512, 1024): umsynth's
single streaming pass against MedSynAnalyzer's procedure re-expressed on the same images and
networks (one pass over the image files per cell, features written to CSV and read back,
pytorch-fid's scipy ``sqrtm`` FID, sklearn row normalization).

Run:  python -m pytest benchmarks/test_bench_mmfid.py --benchmark-only -s

Images: 2 x 16 phantom montages (``phantom_cohort``, 256 px, resized to 1024 x 1024 PNGs).
Networks: umsynth's CT trunk (channels 16, 32, 64, 128; 128 features), seeded, untrained (the
speed of a trained network is the same). With ``UMSYNTH_BENCH_FULL=1`` the same table is also
run with 2048 features per network (the trunk plus a 1 x 1 convolution to 2048 channels), the
width of InceptionV3 that MedSynAnalyzer uses; its sqrtm calls then take minutes.

``extra_info`` records images per second (real + synthetic images through the whole table, from
the fastest round: the machine is shared), the speedup, and the largest relative difference
between the two FD tables (sqrtm against umsynth's exact Fréchet distance).
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import scipy.linalg

torch = pytest.importorskip("torch")

from umsynth.extractors import CTNet, Member, Suite  # noqa: E402
from umsynth.metrics.mmfid import mmfid  # noqa: E402

FULL = os.environ.get("UMSYNTH_BENCH_FULL") == "1"
N_PER_SET = 16
SCALES = (128, 256, 512, 1024)
CHANNELS = (16, 32, 64, 128)
DIMS = (128, 2048) if FULL else (128,)


class _Wide(torch.nn.Module):
    """The CT trunk with a 1 x 1 convolution to ``dims`` channels before the pool."""

    def __init__(self, dims: int) -> None:
        super().__init__()
        self.trunk = CTNet(CHANNELS, 4).trunk
        self.proj = torch.nn.Conv2d(CHANNELS[-1], dims, 1)
        self.dims = dims

    def features(self, x):
        return torch.relu(self.proj(self.trunk(x))).mean(dim=(2, 3))


def make_suite(dims: int) -> Suite:
    torch.manual_seed(0)
    nets = [CTNet(CHANNELS, 4).eval() if dims == CHANNELS[-1] else _Wide(dims).eval() for _ in range(4)]
    return Suite([Member(f"net{i}", "rotation", n) for i, n in enumerate(nets)], SCALES)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from PIL import Image

    from umsynth.data.phantom import phantom_cohort

    root = tmp_path_factory.mktemp("mmfid_bench")
    c = phantom_cohort(2 * N_PER_SET, size=256, seed=0)
    for name, part in (("real", c.images[:N_PER_SET]), ("syn", c.images[N_PER_SET:])):
        (root / name).mkdir()
        for i, img in enumerate(part):
            Image.fromarray(img).resize((1024, 1024), Image.BICUBIC).save(root / name / f"{i:03d}.png")
    return root / "real", root / "syn"


def medsyn_procedure(real_dir, syn_dir, suite, workdir) -> dict:
    """MedSynAnalyzer's way, re-expressed: every cell reads and resizes every image again."""
    import torch.nn.functional as F
    from PIL import Image
    from sklearn.preprocessing import normalize

    def cell_features(folder, member, scale, csv):
        rows = []
        for path in sorted(folder.iterdir()):
            with Image.open(path) as im:
                x = torch.from_numpy(np.asarray(im.convert("L"), dtype=np.float32) / 255.0)[None, None]
            x = F.interpolate(x, size=(scale, scale), mode="bilinear", align_corners=False, antialias=True)
            with torch.no_grad():
                rows.append(member.net.features((x - 0.5) / 0.5).numpy()[0])
        np.savetxt(csv, np.asarray(rows), delimiter=",")
        return np.loadtxt(csv, delimiter=",")

    fid = np.zeros((len(suite.members), len(suite.scales)))
    std = np.zeros_like(fid)
    for i, m in enumerate(suite.members):
        for j, s in enumerate(suite.scales):
            fr = cell_features(real_dir, m, s, workdir / f"real_{i}_{s}.csv")
            fs = cell_features(syn_dir, m, s, workdir / f"syn_{i}_{s}.csv")
            mu1, s1, mu2, s2 = fr.mean(0), np.cov(fr, rowvar=False), fs.mean(0), np.cov(fs, rowvar=False)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                covmean = scipy.linalg.sqrtm(s1 @ s2).real
            fid[i, j] = (mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
            std[i, j] = fs.std(axis=0).mean()
    nf, ns = normalize(fid), normalize(std)
    return {"fd": fid, "mm_fid": float(nf.mean()), "mm_std": float(ns.mean())}


_TIMES: dict = {}


def _record(benchmark, key, fd):
    """Throughput from the fastest round (the machine is shared), and the comparison once both ran."""
    seconds = benchmark.stats.stats.min
    _TIMES[key] = (seconds, fd)
    benchmark.extra_info["images_per_s"] = 2 * N_PER_SET / seconds
    other = _TIMES.get((key[0], "medsyn" if key[1] == "umsynth" else "umsynth"))
    if other:
        benchmark.extra_info["max_rel_fd_difference"] = float(np.max(np.abs(fd - other[1]) / np.abs(other[1])))
        fast, slow = (seconds, other[0]) if key[1] == "umsynth" else (other[0], seconds)
        benchmark.extra_info["speedup"] = slow / fast
    print(f"\n{key}: {seconds:.2f} s, {2 * N_PER_SET / seconds:.2f} images/s", benchmark.extra_info)


@pytest.mark.parametrize("dims", DIMS)
def test_umsynth_mmfid(benchmark, folders, dims):
    suite = make_suite(dims)
    real, syn = folders
    result = benchmark.pedantic(lambda: mmfid(real, syn, suite, batch_size=8, normalization="cross-set",
                                              progress=False), rounds=3, iterations=1)
    _record(benchmark, (dims, "umsynth"), result.fd["synthetic"])


@pytest.mark.parametrize("dims", DIMS)
def test_medsynanalyzer_procedure(benchmark, folders, tmp_path, dims):
    suite = make_suite(dims)
    real, syn = folders
    result = benchmark.pedantic(lambda: medsyn_procedure(real, syn, suite, tmp_path),
                                rounds=2 if dims <= 512 else 1, iterations=1)
    _record(benchmark, (dims, "medsyn"), result["fd"])
