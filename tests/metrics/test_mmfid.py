"""MM-FID / MM-STD: sanity on phantom images, MedSynAnalyzer's procedure as an independent
reference, streaming and merging, torch.distributed, inputs, extras and the CLI."""
from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
import scipy.linalg
from scipy import ndimage

torch = pytest.importorskip("torch")

from umsynth.data.phantom import phantom_cohort  # noqa: E402
from umsynth.extractors import TINY_CONFIG, CTNet, Member, Suite, train_suite  # noqa: E402
from umsynth.metrics.knn import knn_sets  # noqa: E402
from umsynth.metrics.mmfid import SetStats, mmfid, stream_stats  # noqa: E402
from umsynth.metrics.normalize import cross_set_normalize  # noqa: E402
from umsynth.stats import FeatureStats  # noqa: E402

SCALES = (32, 64)


@pytest.fixture(scope="module")
def cohort():
    """40 phantom montages, 64 x 64, read-only."""
    c = phantom_cohort(40, size=64, seed=3)
    c.images.setflags(write=False)
    return c


@pytest.fixture(scope="module")
def suite(cohort):
    """A tiny suite trained on the first 16 montages (seconds)."""
    return train_suite(cohort.images[:16], TINY_CONFIG, progress=False)


def random_suite(channels=(4, 8, 16), k=2, seed=0) -> Suite:
    """Untrained (seeded) networks: deterministic, cheap, any feature dimension."""
    torch.manual_seed(seed)
    members = [Member(f"net{i}", "rotation", CTNet(channels, 4).eval(), channels, 4) for i in range(k)]
    return Suite(members, SCALES)


def noisy(images, sd, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(np.rint(images + rng.normal(0.0, sd, images.shape)), 0, 255).astype(np.uint8)


def blurred(images, sigma):
    if sigma == 0:
        return images.copy()
    out = ndimage.gaussian_filter(images.astype(np.float64), sigma=(0, sigma, sigma))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- sanity checks users rely on


def test_disjoint_real_split_scores_lower_than_degraded(cohort, suite):
    real, other = cohort.images[:20], cohort.images[20:]
    sets = {"clean": other, "noise": noisy(other, 24), "blur": blurred(other, 2.0),
            "shift": np.clip(other.astype(int) + 40, 0, 255).astype(np.uint8)}
    r = mmfid(real, sets, suite, normalization="reference", progress=False)
    assert r.normalization == "reference"
    for name in ("noise", "blur", "shift"):
        assert r.mm_fid["clean"][0] < r.mm_fid[name][0], name


@pytest.mark.parametrize("kind, strengths", [("noise", (0, 8, 20, 40)), ("blur", (0, 1.0, 2.0, 4.0))])
def test_mmfid_rises_monotonically_with_degradation(cohort, suite, kind, strengths):
    real, other = cohort.images[:20], cohort.images[20:]
    make = noisy if kind == "noise" else blurred
    sets = {f"{kind}{s}": make(other, s) for s in strengths}
    r = mmfid(real, sets, suite, normalization="reference", progress=False)
    values = [r.mm_fid[f"{kind}{s}"][0] for s in strengths]
    assert all(a < b for a, b in zip(values, values[1:])), values


def test_mmstd_falls_for_a_few_images_repeated(cohort, suite):
    real, other = cohort.images[:20], cohort.images[20:]
    repeated = np.concatenate([other[:3]] * 7)[:20]
    r = mmfid(real, {"varied": other, "repeated": repeated}, suite, normalization="reference", progress=False)
    assert r.mm_std["repeated"][0] < r.mm_std["varied"][0]
    assert r.mm_fid["repeated"][0] > r.mm_fid["varied"][0]


# --------------------------------------------------------------------------- normalization


def test_cross_set_normalization_hand_case_and_sklearn():
    from sklearn.preprocessing import normalize

    row = np.array([[40.0, 60.0, 80.0, 100.0]])
    got = cross_set_normalize({"a": row})["a"]
    # hand value: each entry over sqrt(40^2 + 60^2 + 80^2 + 100^2) = sqrt(21600)
    np.testing.assert_allclose(got, row / np.sqrt(21600.0), rtol=1e-15)
    assert round(got.mean(), 4) == 0.4763 and round(got.std(), 4) == 0.1521
    np.testing.assert_allclose(cross_set_normalize({"a": 10 * row})["a"], got, rtol=1e-15)  # scale-blind
    rng = np.random.default_rng(0)
    tabs = {n: rng.uniform(1, 50, (3, 4)) for n in "xyz"}
    ref = normalize(np.hstack(list(tabs.values())))
    got = cross_set_normalize(tabs)
    np.testing.assert_allclose(np.hstack([got[n] for n in "xyz"]), ref, rtol=1e-14)


def medsyn_reference(real, sets, suite):
    """MedSynAnalyzer's procedure written independently: one pass per cell over all images,
    pytorch-fid's sqrtm FID, np.std STD, sklearn row normalization over all sets."""
    from sklearn.preprocessing import normalize
    import torch.nn.functional as F

    def feats(images, member, scale):
        x = torch.from_numpy(np.asarray(images, dtype=np.float32) / 255.0)[:, None]
        x = F.interpolate(x, size=(scale, scale), mode="bilinear", align_corners=False, antialias=True)
        with torch.no_grad():
            return member.net.features((x - 0.5) / 0.5).double().numpy()

    fid = {n: np.zeros((len(suite.members), len(suite.scales))) for n in sets}
    std = {n: np.zeros_like(fid[n]) for n in sets}
    for i, m in enumerate(suite.members):
        for j, s in enumerate(suite.scales):
            fr = feats(real, m, s)
            mu1, s1 = fr.mean(0), np.cov(fr, rowvar=False)
            for n, images in sets.items():
                fs = feats(images, m, s)
                mu2, s2 = fs.mean(0), np.cov(fs, rowvar=False)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    covmean = scipy.linalg.sqrtm(s1 @ s2).real
                fid[n][i, j] = (mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
                std[n][i, j] = fs.std(axis=0).mean()
    names = list(sets)
    nf, ns = normalize(np.hstack([fid[n] for n in names])), normalize(np.hstack([std[n] for n in names]))
    w = len(suite.scales)
    return fid, std, {n: nf[:, i * w:(i + 1) * w] for i, n in enumerate(names)}, \
        {n: ns[:, i * w:(i + 1) * w] for i, n in enumerate(names)}


def test_cross_set_reproduces_medsynanalyzer_procedure(cohort):
    suite = random_suite(channels=(4, 8, 16), k=2)  # 16 features < 24 images: full-rank covariances
    real, other = cohort.images[:24], cohort.images[24:]
    sets = {"a": noisy(other, 12), "b": blurred(other, 1.5), "c": other}
    fid, std, nfid, nstd = medsyn_reference(real, sets, suite)
    r = mmfid(real, sets, suite, batch_size=7, progress=False)  # batches that do not divide n
    assert r.normalization == "cross-set"
    for n in sets:
        np.testing.assert_allclose(r.fd[n], fid[n], rtol=1e-6)
        np.testing.assert_allclose(r.std[n], std[n], rtol=1e-9)
        np.testing.assert_allclose(r.fd_norm[n], nfid[n], atol=1e-6)
        np.testing.assert_allclose(r.std_norm[n], nstd[n], atol=1e-9)
        assert abs(r.mm_fid[n][0] - nfid[n].mean()) < 1e-6 and abs(r.mm_fid[n][1] - nfid[n].std()) < 1e-6
        assert abs(r.mm_std[n][0] - nstd[n].mean()) < 1e-9
    # the Wilcoxon test across cells is scipy's on the normalized tables
    from scipy.stats import wilcoxon

    w = wilcoxon(r.fd_norm["a"].ravel(), r.fd_norm["c"].ravel())
    assert r.extras["wilcoxon"]["a vs c"]["fd"]["pvalue"] == pytest.approx(w.pvalue)


def test_reference_normalization_uses_even_odd_real_halves(cohort):
    from umsynth.frechet import frechet_distance_features

    suite = random_suite(k=1)
    real, syn = cohort.images[:24], cohort.images[24:]
    r = mmfid(real, syn, suite, progress=False)
    x = torch.from_numpy(real.astype(np.float32) / 255)[:, None]
    import torch.nn.functional as F

    for j, s in enumerate(SCALES):
        xs = F.interpolate(x, size=(s, s), mode="bilinear", antialias=True, align_corners=False)
        with torch.no_grad():
            f = suite.members[0].net.features(xs * 2 - 1).double().numpy()
        ref = frechet_distance_features(f[0::2], f[1::2])
        assert r.fd_ref[0, j] == pytest.approx(ref, rel=1e-9)
        assert r.fd_norm["synthetic"][0, j] == pytest.approx(r.fd["synthetic"][0, j] / ref, rel=1e-9)
        assert r.std_real[0, j] == pytest.approx(f.std(axis=0).mean(), rel=1e-9)


# --------------------------------------------------------------------------- streaming, merging, DDP


def _assert_same_stats(a: FeatureStats, b: FeatureStats, rtol=1e-12):
    assert a.n == b.n
    np.testing.assert_allclose(a.mean, b.mean, rtol=0, atol=rtol * np.abs(b.mean).max())
    np.testing.assert_allclose(a.cov, b.cov, rtol=0, atol=rtol * np.abs(b.cov).max())


def test_stats_merge_equals_one_pass(cohort, tmp_path):
    from umsynth.cli import main

    suite = random_suite()
    one = stream_stats(cohort.images, suite, split=True, batch_size=16, progress=False)
    a = stream_stats(cohort.images[:15], suite, split=True, batch_size=4, progress=False)
    b = stream_stats(cohort.images[15:], suite, split=True, batch_size=16, progress=False)
    a.save(tmp_path / "a")
    b.save(tmp_path / "b")
    assert main(["stats", "merge", str(tmp_path / "m"), str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    merged = SetStats.load(tmp_path / "m")
    assert merged.n == one.n == 40
    for key, st in one.cells.items():
        _assert_same_stats(merged.cells[key], st)
    # single FeatureStats files too
    key = next(iter(one.cells))
    a.cells[key].save(tmp_path / "a.npz")
    b.cells[key].save(tmp_path / "b.npz")
    assert main(["stats", "merge", str(tmp_path / "ab.npz"), str(tmp_path / "a.npz"), str(tmp_path / "b.npz")]) == 0
    _assert_same_stats(FeatureStats.load(tmp_path / "ab.npz"), one.cells[key])
    # saved statistics stand in for images
    r1 = mmfid(cohort.images[:20], cohort.images[20:], suite, progress=False)
    r1b = mmfid(cohort.images[:20], cohort.images[20:], suite, progress=False, save_stats=tmp_path / "s")
    r2 = mmfid(tmp_path / "s" / "real", tmp_path / "s" / "synthetic" / "synthetic", suite, progress=False)
    np.testing.assert_allclose(r2.fd["synthetic"], r1.fd["synthetic"], rtol=1e-9)
    np.testing.assert_array_equal(r1b.fd["synthetic"], r1.fd["synthetic"])


def test_stats_merge_cli_errors(tmp_path, capsys):
    from umsynth.cli import main

    assert main(["stats", "merge", str(tmp_path / "o.npz"), str(tmp_path / "missing.npz")]) == 2
    assert "missing.npz" in capsys.readouterr().err


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


def test_distributed_two_gloo_processes_equal_one_pass(cohort, tmp_path):
    import pathlib

    root = str(pathlib.Path(__file__).resolve().parents[1])
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
    suite = Suite([Member("net0", "rotation", CTNet((4, 8, 16), 4).eval(), (4, 8, 16), 4)], SCALES)
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


def test_kept_sample_is_uniform_and_bounded(cohort):
    suite = random_suite(k=1)
    st = stream_stats(cohort.images, suite, keep=10, batch_size=3, progress=False, seed=4)
    assert len(st.kept_index) == 10 and len(set(st.kept_index.tolist())) == 10
    full = stream_stats(cohort.images, suite, keep=40, progress=False)
    for key, f in st.kept.items():
        np.testing.assert_allclose(f, full.kept[key][st.kept_index], rtol=1e-6)


# --------------------------------------------------------------------------- inputs


def test_inputs_folder_tensor_iterable_agree(cohort, tmp_path):
    from PIL import Image

    suite = random_suite(k=1)
    real, syn = cohort.images[:12], cohort.images[12:24]
    for i, img in enumerate(syn):
        Image.fromarray(img).save(tmp_path / f"s{i:02d}.png")
    ref = mmfid(real, syn, suite, progress=False).fd["synthetic"]
    for other in (tmp_path, torch.from_numpy(syn.copy()), (im for im in syn), list(syn.astype(np.float32) / 255),
                  np.repeat(syn[..., None], 3, axis=-1)):
        got = mmfid(real, other, suite, progress=False).fd["synthetic"]
        np.testing.assert_allclose(got, ref, rtol=1e-5)


def test_mixed_sizes_are_resized_per_image(cohort):
    suite = random_suite(k=1)
    big = [np.kron(im, np.ones((2, 2), np.uint8)) for im in cohort.images[12:16]]
    mixed = list(cohort.images[16:20]) + big
    r = mmfid(cohort.images[:12], mixed, suite, progress=False)
    assert np.isfinite(r.fd["synthetic"]).all()


@pytest.mark.parametrize("bad, match", [
    (np.zeros((0, 8, 8), np.uint8), "no images"),
    (np.full((4, 8, 8), np.nan, np.float32), "NaN"),
    (np.full((4, 8, 8), 2.0, np.float32), r"\[0, 1\]"),
    (np.zeros((4, 8), np.uint8), "shape"),
])
def test_bad_input_is_a_clear_error(cohort, bad, match):
    with pytest.raises(ValueError, match=match):
        mmfid(cohort.images[:8], bad, random_suite(k=1), progress=False)


def test_too_few_real_images_and_bad_arguments(cohort, tmp_path):
    suite = random_suite(k=1)
    with pytest.raises(ValueError, match="at least 4"):
        mmfid(cohort.images[:3], cohort.images[:8], suite, progress=False)
    with pytest.raises(ValueError, match="normalization"):
        mmfid(cohort.images[:8], cohort.images[:8], suite, normalization="l2", progress=False)
    with pytest.raises(ValueError, match="cell"):
        mmfid(cohort.images[:8], cohort.images[:8], suite, knn=True, cell=("nope", 32), progress=False)
    with pytest.raises(ValueError, match="folder"):
        mmfid(cohort.images[:8], tmp_path / "missing", suite, progress=False)
    with pytest.raises(FileNotFoundError):
        mmfid(cohort.images[:8], cohort.images[:8], tmp_path / "none.safetensors", progress=False)


# --------------------------------------------------------------------------- extras


def test_knn_sets_hand_case():
    # real points on a line at 0, 1, 2, ..., 9; k=3: the radius is the 2nd nearest other point
    real = np.arange(10.0)[:, None]
    syn = np.array([[4.2], [4.5], [-1.9], [30.0], [9.0]])
    got = knn_sets(real, syn, k=3)
    # 4.2: nearest 4 at 0.2 < 1 (4's nearest other) -> copy; 4.5: 0.5 < 1 -> copy;
    # -1.9: nearest 0 at 1.9 > 1, within 0's radius 2 -> real; 30 -> non-real; 9.0: distance 0 -> copy
    np.testing.assert_array_equal(got["labels"], [0, 0, 1, 2, 0])
    assert got["counts"] == {"copy": 3, "real": 1, "non-real": 1}
    got = knn_sets(real, np.array([[-2.5], [11.0]]), k=3)
    np.testing.assert_array_equal(got["labels"], [2, 1])  # 0's radius is 2; 9's radius is 2
    with pytest.raises(ValueError, match="more than k"):
        knn_sets(real[:3], syn, k=3)


def test_extras_bootstrap_knn_tsne(cohort, suite, tmp_path):
    from PIL import Image

    real, syn = cohort.images[:20], cohort.images[20:]
    png, out = tmp_path / "tsne.png", tmp_path / "metrics.json"
    r = mmfid(real, {"clean": syn, "noisy": noisy(syn, 30)}, suite, bootstrap=8, knn=True, tsne=png,
              cell=("ct-degradation", 64), normalization="reference", progress=False)
    r.save(out)
    data = json.loads(out.read_text())
    for name in ("clean", "noisy"):
        b = data["sets"][name]["bootstrap"]
        assert np.all(np.array(b["low"]) <= np.array(b["high"])) and b["resamples"] == 8
        assert sum(data["sets"][name]["knn"]["counts"].values()) == 20
    # noisy images are no longer near-copies of real ones
    assert data["sets"]["noisy"]["knn"]["counts"]["copy"] < data["sets"]["clean"]["knn"]["counts"]["copy"]
    assert "clean vs noisy" in data["wilcoxon"]
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 100
    again = mmfid(real, {"clean": syn, "noisy": noisy(syn, 30)}, suite, bootstrap=8, normalization="reference",
                  progress=False)
    assert again.extras["bootstrap"] == r.extras["bootstrap"]  # seeded


# --------------------------------------------------------------------------- CLI and package


def test_cli_mmfid_writes_json(cohort, suite, tmp_path, capsys):
    from PIL import Image

    from umsynth.cli import main
    from umsynth.extractors import save_suite

    for name, images in (("real", cohort.images[:12]), ("syn", cohort.images[12:24]), ("bad", noisy(cohort.images[12:24], 30))):
        (tmp_path / name).mkdir()
        for i, img in enumerate(images):
            Image.fromarray(img).save(tmp_path / name / f"{i:02d}.png")
    save_suite(suite, tmp_path / "suite.safetensors")
    out = tmp_path / "metrics.json"
    code = main(["mmfid", str(tmp_path / "real"), str(tmp_path / "syn"), str(tmp_path / "bad"),
                 "--suite", str(tmp_path / "suite.safetensors"), "--out", str(out), "--no-progress"])
    assert code == 0
    data = json.loads(out.read_text())
    api = mmfid(cohort.images[:12], {"syn": cohort.images[12:24], "bad": noisy(cohort.images[12:24], 30)}, suite,
                progress=False)
    assert data["normalization"] == "cross-set" and data["scales"] == list(TINY_CONFIG.scales)
    np.testing.assert_allclose(data["sets"]["bad"]["fd"], api.fd["bad"], rtol=1e-6)
    assert "MM-FID" in capsys.readouterr().out
    assert main(["mmfid", str(tmp_path / "real"), str(tmp_path / "nope"), "--suite",
                 str(tmp_path / "suite.safetensors")]) == 2
    assert "nope" in capsys.readouterr().err


def test_cli_help_spells_out_definitions(capsys):
    from umsynth.cli import main

    with pytest.raises(SystemExit):
        main(["mmfid", "--help"])
    text = capsys.readouterr().out
    assert "MM-FID = mean" in text and "MM-STD = mean" in text and "even index" in text


def test_import_umsynth_stays_light():
    code = "import sys, umsynth; umsynth.mmfid; import umsynth.cli; umsynth.cli.build_parser(); " \
           "print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
