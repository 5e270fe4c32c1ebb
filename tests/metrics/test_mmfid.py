"""umsynth.metrics.mmfid: sanity on phantom images, MedSynAnalyzer's procedure as an independent
reference, the options, inputs, and the CLI."""
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

from umsynth.extractors import TINY_CONFIG  # noqa: E402
from umsynth.metrics.mmfid import DEFAULT_KEEP, MMFIDOptions, mmfid  # noqa: E402
from umsynth.metrics.normalize import cross_set_normalize  # noqa: E402


def blurred(images, sigma):
    if sigma == 0:
        return images.copy()
    out = ndimage.gaussian_filter(images.astype(np.float64), sigma=(0, sigma, sigma))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- sanity checks users rely on


def test_disjoint_real_split_scores_lower_than_degraded(cohort, suite, noisy):
    real, other = cohort.images[:20], cohort.images[20:]
    sets = {"clean": other, "noise": noisy(other, 24), "blur": blurred(other, 2.0),
            "shift": np.clip(other.astype(int) + 40, 0, 255).astype(np.uint8)}
    r = mmfid(real, sets, suite, normalization="reference", progress=False)
    assert r.normalization == "reference"
    for name in ("noise", "blur", "shift"):
        assert r.mm_fid["clean"][0] < r.mm_fid[name][0], name


@pytest.mark.parametrize("kind, strengths", [("noise", (0, 90, 180)), ("blur", (0, 1.0, 2.0, 4.0))])
def test_mmfid_rises_monotonically_with_degradation(cohort, suite, noisy, kind, strengths):
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


def test_cross_set_reproduces_medsynanalyzer_procedure(cohort, random_suite, noisy):
    suite = random_suite(channels=(4, 8, 16), k=2)  # 16 features < 24 images: full-rank covariances
    real, other = cohort.images[:24], cohort.images[24:]
    sets = {"a": noisy(other, 12), "b": blurred(other, 1.5), "c": other}
    fid, std, nfid, nstd = medsyn_reference(real, sets, suite)
    r = mmfid(real, sets, suite, batch_size=7, normalization="cross-set", progress=False)  # odd batches
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


def test_reference_normalization_is_the_calibrated_ratio(cohort, random_suite, scales):
    from umsynth.frechet import frechet_distance_features
    from umsynth.metrics.reference import calibrated_cell, split_plan
    import torch.nn.functional as F

    suite = random_suite(k=1)
    real, syn = cohort.images[:24], cohort.images[24:]
    r = mmfid(real, syn, suite, splits=5, seed=3, progress=False)
    assert r.normalization == "reference" and r.reference["status"] == "ok"

    def feats(images, s):
        x = torch.from_numpy(images.astype(np.float32) / 255)[:, None]
        xs = F.interpolate(x, size=(s, s), mode="bilinear", antialias=True, align_corners=False)
        with torch.no_grad():
            return suite.members[0].net.features(xs * 2 - 1).double().numpy()

    # the same splits serve every cell: drawn once from the seed, over 24 real and 16 synthetic images
    plan = split_plan(24, 16, splits=5, seed=3)
    for j, s in enumerate(scales):
        f, g = feats(real, s), feats(syn, s)
        num, den = calibrated_cell(f, g, plan, frechet_distance_features)
        assert r.fd_comparison["synthetic"][0, j] == pytest.approx(num, rel=1e-9)
        assert r.fd_reference["synthetic"][0, j] == pytest.approx(den, rel=1e-9)
        assert r.fd_norm["synthetic"][0, j] == pytest.approx(num / den, rel=1e-9)
        # the old even/odd-halves reference is still reported beside it
        assert r.fd_ref[0, j] == pytest.approx(frechet_distance_features(f[0::2], f[1::2]), rel=1e-9)
        assert r.std_real[0, j] == pytest.approx(f.std(axis=0).mean(), rel=1e-9)
    cells = r.fd_norm["synthetic"]
    assert r.mm_fid["synthetic"][0] == pytest.approx(np.exp(np.log(cells).mean()), rel=1e-12)
    assert r.mm_fid_mean["synthetic"][0] == pytest.approx(cells.mean(), rel=1e-12)


# --------------------------------------------------------------------------- options


def test_options_object_and_keywords_give_the_same_result(cohort, random_suite):
    import umsynth

    suite = random_suite(k=1)
    real, syn = cohort.images[:16], {"a": cohort.images[16:28], "b": cohort.images[28:]}
    kw = dict(batch_size=5, keep=9, bootstrap=3, knn=True, k=3, seed=4, normalization="reference", progress=False)
    by_keywords = mmfid(real, syn, suite, **kw).to_dict()
    by_options = mmfid(real, syn, suite, options=MMFIDOptions(**kw)).to_dict()
    assert by_options == by_keywords
    assert umsynth.mmfid(real, syn, suite, options=MMFIDOptions(**kw)).to_dict() == by_keywords
    # the options change the result: a different seed resamples other images
    other = mmfid(real, syn, suite, options=MMFIDOptions(**{**kw, "seed": 5})).to_dict()
    assert other["sets"]["a"]["bootstrap"] != by_keywords["sets"]["a"]["bootstrap"]


def test_options_defaults_and_kept_features():
    o = MMFIDOptions()
    assert (o.batch_size, o.normalization, o.bootstrap, o.confidence, o.k) == (32, "auto", 0, 0.95, 5)
    assert o.kept_features == DEFAULT_KEEP and not o.extras_wanted and o.splits == 16
    assert MMFIDOptions(knn=True).kept_features == DEFAULT_KEEP
    assert MMFIDOptions(keep=0, normalization="cross-set").kept_features == 0
    assert MMFIDOptions(tsne="t.png", keep=7).kept_features == 7
    assert MMFIDOptions(batch_size=np.int64(4)).batch_size == 4


@pytest.mark.parametrize("kwargs, error, match", [
    ({"normalization": "l2"}, ValueError, "normalization"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"batch_size": "many"}, TypeError, "batch_size"),
    ({"confidence": 1.0}, ValueError, "confidence"),
    ({"bootstrap": -1}, ValueError, "bootstrap"),
    ({"bootstrap": 5, "keep": 1}, ValueError, "keep"),
    ({"knn": True, "k": 1}, ValueError, "k must be"),
    ({"keep": 0}, ValueError, "keep"),
    ({"splits": 0}, ValueError, "splits"),
])
def test_bad_options_are_clear_errors(cohort, random_suite, kwargs, error, match):
    with pytest.raises(error, match=match):
        MMFIDOptions(**kwargs)
    with pytest.raises(error, match=match):
        mmfid(cohort.images[:8], cohort.images[:8], random_suite(k=1), progress=False, **kwargs)


def test_options_and_keywords_are_not_mixed(cohort, random_suite):
    suite = random_suite(k=1)
    with pytest.raises(TypeError, match="not both"):
        mmfid(cohort.images[:8], cohort.images[:8], suite, options=MMFIDOptions(), progress=False)
    with pytest.raises(TypeError, match="batchsize"):
        mmfid(cohort.images[:8], cohort.images[:8], suite, batchsize=4)
    with pytest.raises(TypeError, match="MMFIDOptions"):
        mmfid(cohort.images[:8], cohort.images[:8], suite, options={"batch_size": 4})


# --------------------------------------------------------------------------- inputs


def test_inputs_folder_tensor_iterable_agree(cohort, tmp_path, random_suite):
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


def test_mixed_sizes_are_resized_per_image(cohort, random_suite):
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
def test_bad_input_is_a_clear_error(cohort, bad, match, random_suite):
    with pytest.raises(ValueError, match=match):
        mmfid(cohort.images[:8], bad, random_suite(k=1), progress=False)


def test_too_few_real_images_and_bad_arguments(cohort, tmp_path, random_suite):
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


# --------------------------------------------------------------------------- CLI and package


def test_cli_mmfid_writes_json(cohort, suite, tmp_path, capsys, noisy):
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
    assert data["normalization"] == "reference" and data["scales"] == list(TINY_CONFIG.scales)
    np.testing.assert_allclose(data["sets"]["bad"]["fd"], api.fd["bad"], rtol=1e-6)
    assert data["sets"]["bad"]["mm_fid"] == pytest.approx(api.mm_fid["bad"][0], rel=1e-9)
    assert data["reference"]["status"] == "small"  # 12 real images
    printed = capsys.readouterr().out
    assert "MM-FID" in printed and "KID" in printed and "small" in printed
    # with --bootstrap: intervals per set and the pair's difference, in the output and the JSON
    code = main(["mmfid", str(tmp_path / "real"), str(tmp_path / "syn"), str(tmp_path / "bad"),
                 "--suite", str(tmp_path / "suite.safetensors"), "--out", str(out), "--no-progress",
                 "--bootstrap", "20"])
    assert code == 0
    data = json.loads(out.read_text())
    lo, hi = data["sets"]["syn"]["intervals"]["mm_fid"]["interval"]
    assert 0 < lo < hi
    pair = data["comparisons"]["syn vs bad"]["mm_fid"]
    assert set(pair) >= {"difference", "interval", "p_value", "unit"}
    printed = capsys.readouterr().out
    assert "syn vs bad" in printed and "p =" in printed
    assert main(["mmfid", str(tmp_path / "real"), str(tmp_path / "nope"), "--suite",
                 str(tmp_path / "suite.safetensors")]) == 2
    assert "nope" in capsys.readouterr().err


def test_cli_help_spells_out_definitions(capsys):
    from umsynth.cli import main

    with pytest.raises(SystemExit):
        main(["mmfid", "--help"])
    text = capsys.readouterr().out
    for phrase in ("MM-FID = geometric mean", "about 1 at any sample size", "bootstrap over real and synthetic",
                   "not independent", "KID_n", "cross-set"):
        assert phrase in text, phrase


def test_import_umsynth_stays_light():
    code = "import sys, umsynth; umsynth.mmfid; import umsynth.cli; umsynth.cli.build_parser(); " \
           "print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
