"""CT extractor suites: the file format, the self-supervised tasks, training and the CLI."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from scipy import ndimage

torch = pytest.importorskip("torch")

from umsynth.data.phantom import phantom_cohort  # noqa: E402
from umsynth.extractors import (  # noqa: E402
    TINY_CONFIG, CTNet, Member, Suite, SuiteTrainConfig, TrainConfig, inception_member, load_suite, save_suite, train_suite,
)
from umsynth.extractors import tasks  # noqa: E402


@pytest.fixture(scope="module")
def cohort():
    c = phantom_cohort(12, size=64, seed=5, labelled_fraction=0.5)
    c.images.setflags(write=False)
    return c


@pytest.fixture(scope="module")
def trained(cohort):
    meta = {"kernel": list(cohort.column("kernel"))}
    return train_suite(cohort.images, TINY_CONFIG, labels=cohort.labels, labelled=cohort.labelled, meta=meta,
                       progress=False)


def _features(suite, x):
    with torch.no_grad():
        return [m.net.features(x) for m in suite.members]


def test_trained_suite_has_one_network_per_task_and_a_summary(trained, cohort):
    assert trained.names == ["ct-quadrant", "ct-rotation", "ct-degradation", "ct-segmentation", "ct-meta-kernel"]
    assert trained.scales == TINY_CONFIG.scales
    summary = trained.training
    assert summary["data"]["images"] == 12 and summary["data"]["labelled"] == int(cohort.labelled.sum())
    assert summary["data"]["meta_keys"] == ["kernel"]
    # rotation is easy: far above chance (0.25) after 20 tiny steps
    assert summary["results"]["rotation"]["accuracy"] > 0.5
    assert {m.dims for m in trained.members} == {TINY_CONFIG.channels[-1]}


def test_training_is_deterministic(cohort):
    cfg = dataclasses.replace(TINY_CONFIG, tasks=("rotation",), steps=3)
    a = train_suite(cohort.images[:6], cfg, progress=False)
    b = train_suite(cohort.images[:6], cfg, progress=False)
    assert a.digest() == b.digest()
    c = train_suite(cohort.images[:6], dataclasses.replace(cfg, seed=1), progress=False)
    assert c.digest() != a.digest()


def test_save_load_gives_identical_features(trained, tmp_path):
    path = tmp_path / "suite.safetensors"
    save_suite(trained, path)
    loaded = load_suite(path)
    assert loaded.names == trained.names and loaded.scales == trained.scales
    assert loaded.training == json.loads(json.dumps(trained.training))
    assert loaded.digest() == trained.digest()
    x = torch.rand(3, 1, 48, 48) * 2 - 1
    for a, b in zip(_features(trained, x), _features(loaded, x)):
        assert torch.equal(a, b)
    # the header is plain JSON metadata: readable without umsynth
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["umsynth_suite"])
    assert meta["format"] == "umsynth-extractor-suite" and [m["task"] for m in meta["members"]][0] == "quadrant"
    assert "range" in meta["preprocessing"]


def test_load_refuses_bad_files(tmp_path, trained):
    from safetensors.torch import save_file

    with pytest.raises(FileNotFoundError):
        load_suite(tmp_path / "none.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="cannot read suite"):
        load_suite(tmp_path / "junk.safetensors")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not an umsynth extractor suite"):
        load_suite(tmp_path / "other.safetensors")
    meta = {"format": "umsynth-extractor-suite", "version": 99, "members": [], "scales": [32]}
    save_file({"w": torch.zeros(2)}, str(tmp_path / "new.safetensors"), metadata={"umsynth_suite": json.dumps(meta)})
    with pytest.raises(ValueError, match="newer"):
        load_suite(tmp_path / "new.safetensors")
    # weights that do not fit the recorded architecture
    path = tmp_path / "s.safetensors"
    save_suite(trained, path)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        header = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    tensors.pop(next(iter(tensors)))
    save_file(tensors, str(tmp_path / "cut.safetensors"), metadata=header)
    with pytest.raises(ValueError, match="do not fit"):
        load_suite(tmp_path / "cut.safetensors")


def test_suite_checks_its_arguments():
    net = CTNet((4, 8), 4)
    with pytest.raises(ValueError, match="scales"):
        Suite([Member("a", "rotation", net, (4, 8), 4)], (8,))
    with pytest.raises(ValueError, match="unique"):
        Suite([Member("a", "rotation", net, (4, 8), 4)] * 2, (32,))
    with pytest.raises(ValueError, match="unknown task"):
        tasks.make_task("colour", 4)
    with pytest.raises(ValueError, match="needs label maps"):
        tasks.make_task("segmentation", 4)
    with pytest.raises(ValueError, match="distinct"):
        tasks.make_task("meta:kernel", 3, meta_values=["a", "a", None])
    with pytest.raises(ValueError, match="steps"):
        SuiteTrainConfig(steps=0)
    with pytest.raises(ValueError, match="scales"):
        SuiteTrainConfig(scales=(8,))
    changed = SuiteTrainConfig()
    changed.lr = 0.0
    with pytest.raises(ValueError, match="lr"):
        changed.check()
    # the old public name still builds the same class
    assert TrainConfig is SuiteTrainConfig and TrainConfig(steps=3).steps == 3


def test_inception_member_without_torchvision_is_a_clear_error(tmp_path):
    try:
        import torchvision  # noqa: F401
    except Exception:
        pass
    else:
        pytest.skip("torchvision is importable here")
    weights = tmp_path / "inception.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, weights)
    with pytest.raises(ValueError, match="torchvision"):
        inception_member(weights)


# --------------------------------------------------------------------------- tasks against references


def test_quadrant_and_rotation_batches_match_numpy():
    gen = torch.Generator().manual_seed(0)
    m = torch.rand(5, 1, 32, 32)
    task = tasks.make_task("quadrant", 5)
    g = torch.Generator().manual_seed(1)
    x, q = tasks.batch(task, m, 16, 8, g)
    pick = task.pool[torch.randint(len(task.pool), (8,), generator=torch.Generator().manual_seed(1))]
    for i in range(8):
        r, c = (int(q[i]) % 2) * 16, (int(q[i]) // 2) * 16  # 0 TL, 1 BL, 2 TR, 3 BR
        np.testing.assert_array_equal(x[i, 0].numpy(), m[pick[i], 0, r:r + 16, c:c + 16].numpy() * 2 - 1)
    task = tasks.make_task("rotation", 5)
    x, k = tasks.batch(task, m, 16, 6, gen)
    assert set(k.tolist()) <= {0, 1, 2, 3}
    for i in range(6):
        back = np.rot90(x[i, 0].numpy(), -int(k[i]))
        # every rotated input is a 2x2-mean-pooled montage, rotated by k quarter turns
        pooled = m[:, 0].reshape(5, 16, 2, 16, 2).mean(axis=(2, 4)).numpy() * 2 - 1
        assert min(np.abs(back - p).max() for p in pooled) < 1e-6


def test_gaussian_blur_matches_scipy():
    rng = np.random.default_rng(0)
    img = rng.random((2, 1, 20, 24))
    got = tasks.gaussian_blur(torch.from_numpy(img), torch.tensor([1.0, 2.0], dtype=torch.float64)).numpy()
    for i, sigma in enumerate((1.0, 2.0)):
        # torch's "reflect" padding is scipy's "mirror"; one kernel radius per batch,
        # ceil(3 * largest sigma) = 6 pixels
        ref = ndimage.gaussian_filter(img[i, 0], sigma, mode="mirror", truncate=6.0 / sigma)
        np.testing.assert_allclose(got[i, 0], ref, atol=1e-12)


def test_degrade_kinds():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 32, 32) * 0.5 + 0.25
    out = tasks.degrade(x, torch.tensor([0, 1, 2, 3]), gen)
    assert torch.equal(out[0], x[0])  # clean stays clean
    assert out[1].std() < x[1].std()  # blur smooths
    assert (out[2] - x[2]).std() > 0.015  # noise of std >= 0.02
    d = out[3] - x[3]
    assert abs(float(d.mean())) > 0.0  # a gain and an offset
    np.testing.assert_allclose(np.corrcoef(out[3].ravel(), x[3].ravel())[0, 1], 1.0, atol=1e-6)


def test_segmentation_task_uses_only_labelled_images(cohort):
    labels = torch.from_numpy(cohort.labels.astype(np.int64))[:, None]
    task = tasks.make_task("segmentation", 12, labels=labels, labelled=cohort.labelled)
    assert sorted(task.pool.tolist()) == np.flatnonzero(cohort.labelled).tolist()
    assert task.classes == 3


# --------------------------------------------------------------------------- resume and CLI


def test_checkpoint_resumes_finished_tasks(cohort, tmp_path, monkeypatch):
    from umsynth.extractors import train as train_mod

    ckpt = tmp_path / "ckpt.safetensors"
    cfg = dataclasses.replace(TINY_CONFIG, tasks=("rotation", "degradation"), steps=3)
    real_train_one = train_mod._train_one
    calls = []

    def interrupted(task, *args):
        calls.append(task.name)
        if task.name == "degradation":
            raise KeyboardInterrupt
        return real_train_one(task, *args)

    monkeypatch.setattr(train_mod, "_train_one", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_suite(cohort.images[:6], cfg, checkpoint=ckpt, progress=False)
    assert load_suite(ckpt).names == ["ct-rotation"]
    monkeypatch.setattr(train_mod, "_train_one", lambda task, *a: (calls.append(task.name), real_train_one(task, *a))[1])
    calls.clear()
    resumed = train_suite(cohort.images[:6], cfg, checkpoint=ckpt, progress=False)
    assert calls == ["degradation"]  # rotation was loaded, not trained again
    assert resumed.digest() == train_suite(cohort.images[:6], cfg, progress=False).digest()
    with pytest.raises(ValueError, match="another config"):
        train_suite(cohort.images[:6], dataclasses.replace(cfg, steps=4), checkpoint=ckpt, progress=False)


def test_cli_extractors_train(cohort, tmp_path, capsys):
    from PIL import Image

    from umsynth.cli import main

    (tmp_path / "real").mkdir()
    (tmp_path / "labels").mkdir()
    for i in range(6):
        Image.fromarray(cohort.images[i]).save(tmp_path / "real" / f"{i}.png")
        Image.fromarray(cohort.labels[i]).save(tmp_path / "labels" / f"{i}.png")
    out = tmp_path / "suite.safetensors"
    meta = tmp_path / "meta.csv"
    meta.write_text("file,kernel\n" + "".join(f"{i}.png,{'sharp' if i % 2 else 'smooth' if i else ''}\n"
                                             for i in range(6)))
    code = main(["extractors", "train", str(tmp_path / "real"), "--out", str(out), "--quick", "--steps", "2",
                 "--labels", str(tmp_path / "labels"), "--meta", str(meta), "--no-progress"])
    assert code == 0
    suite = load_suite(out)
    assert suite.names == ["ct-quadrant", "ct-rotation", "ct-degradation", "ct-segmentation", "ct-meta-kernel"]
    assert suite.members[-1].values == ("sharp", "smooth")
    assert suite.training["config"]["steps"] == 2 and suite.scales == (32, 64)
    assert "wrote" in capsys.readouterr().out
    assert main(["extractors", "train", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "nope" in capsys.readouterr().err


def test_held_out_scores_at_every_scale_and_a_warning_at_chance(cohort):
    # a metadata task whose values are random: nothing in the images predicts them
    rng = np.random.default_rng(0)
    meta = {"coin": [str(v) for v in rng.integers(0, 2, len(cohort.images))]}
    cfg = dataclasses.replace(TINY_CONFIG, tasks=("rotation", "meta:coin"), steps=40)
    with pytest.warns(UserWarning, match="'meta:coin' stays at chance"):
        suite = train_suite(cohort.images, cfg, meta=meta, progress=False)
    res = suite.training["results"]
    assert suite.training["data"]["held_out_images"] == round(0.2 * len(cohort.images))
    for task in ("rotation", "meta:coin"):
        held = res[task]["held_out"]
        assert set(held["per_scale"]) == set(cfg.scales) and held["images"] >= 1
    assert res["meta:coin"]["held_out"]["at_chance"]
    assert res["rotation"]["held_out"]["accuracy"] > res["rotation"]["held_out"]["chance"]


def test_held_out_split_is_disjoint_and_seeded():
    from umsynth.extractors.train import held_out_split

    tr, ho = held_out_split(20, 0.2, 0)
    assert len(ho) == 4 and len(tr) == 16 and not set(tr.tolist()) & set(ho.tolist())
    assert held_out_split(20, 0.2, 0)[1].tolist() == ho.tolist()
    assert len(held_out_split(4, 0.2, 0)[1]) == 0  # too few images to hold any out
