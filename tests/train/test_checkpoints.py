"""What a training run keeps: checkpoints (kept, named, digested), history.csv, EMA, grids, index.html."""
from __future__ import annotations

import csv
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from umsynth.files import read_image  # noqa: E402
from umsynth.synth import load_generator  # noqa: E402
from umsynth.train import build_generator, load_config, train  # noqa: E402
from umsynth.train.checkpoint import data_digest, find_checkpoint, load_checkpoint  # noqa: E402


def _cfg(tiny, *more):
    # 2 iterations per epoch (4 labelled images, batch 2); unlabelled phase from epoch 1
    return load_config(None, tiny + ["optim.niter=5", "optim.niter_decay=5", "train.unlabelled_start_epoch=1",
                                     "train.checkpoint_every=0", "checkpoint.keep_every=0", *more])


def _weights(state_dict):
    return {k: v.clone() for k, v in state_dict.items()}


def _equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------- no stale models


def test_changed_configuration_or_data_never_resumes(sets, tmp_path, tiny, tiny_montages, capsys):
    lab, unl = sets
    run = tmp_path / "run"
    train(_cfg(tiny, "train.max_steps=1"), lab, unl, run)
    # the seed is part of the configuration: `umsynth demo --seed 1` after `--seed 0`
    with pytest.raises(ValueError, match=r"another configuration: train\.seed 0 -> 1"):
        train(_cfg(tiny, "train.max_steps=2", "train.seed=1"), lab, unl, run, resume=True)
    with pytest.raises(ValueError, match=r"another configuration: loss\.lambda_l1 10\.0 -> 5\.0"):
        train(_cfg(tiny, "train.max_steps=2", "loss.lambda_l1=5"), lab, unl, run, resume=True)
    other_lab = tiny_montages(range(20, 24))  # same sizes, other images
    with pytest.raises(ValueError, match="other data"):
        train(_cfg(tiny, "train.max_steps=2"), other_lab, unl, run, resume=True)
    with pytest.raises(ValueError, match="other data"):
        train(_cfg(tiny, "train.max_steps=2"), lab, tiny_montages(range(24, 28), labelled=False), run, resume=True)

    # "auto" starts anew: the result is the seed-1 model, exactly as trained in a fresh folder
    auto = train(_cfg(tiny, "train.max_steps=2", "train.seed=1"), lab, unl, run, resume="auto")
    assert "not resuming" in capsys.readouterr().err and not auto.resumed and auto.steps_run == 2
    fresh = train(_cfg(tiny, "train.max_steps=2", "train.seed=1"), lab, unl, tmp_path / "fresh")
    assert _equal(auto.generator.state_dict(), fresh.generator.state_dict())
    # fields that only watch the run (max_steps, logging, devices) do not stop a resume
    more = train(_cfg(tiny, "train.max_steps=3", "train.seed=1", "train.log_every=1"), lab, unl, run,
                 resume="auto")
    assert more.resumed and more.steps == 3 and more.steps_run == 1


def test_checkpoint_without_digests_is_refused(sets, tmp_path, tiny):
    lab, unl = sets
    train(_cfg(tiny, "train.max_steps=1"), lab, unl, tmp_path)
    path = tmp_path / "checkpoints" / "last.pt"
    st = load_checkpoint(path)
    del st["digests"]
    torch.save(st, path)
    with pytest.raises(ValueError, match="no configuration and data digests"):
        train(_cfg(tiny, "train.max_steps=2"), lab, unl, tmp_path, resume=True)


def test_data_digest_follows_the_items(tiny_montages, tmp_path):
    from umsynth.data.datasets import MontageDataset
    from umsynth.files import write_png

    a, b = tiny_montages(range(3)), tiny_montages(range(3))
    assert data_digest(a, None) == data_digest(b, None)
    b.items[1]["ct"][0, 5, 5] += 0.01
    assert data_digest(a, None) != data_digest(b, None)
    assert data_digest(a, None) != data_digest(None, a)

    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (3, 32, 32), dtype=np.uint8)
    labs = rng.integers(0, 3, (3, 32, 32), dtype=np.uint8)
    fp = MontageDataset(imgs, labs).fingerprint()
    assert fp == MontageDataset(imgs.copy(), labs.copy()).fingerprint()
    changed = imgs.copy()
    changed[2, 0, 0] ^= 1
    assert MontageDataset(changed, labs).fingerprint() != fp
    assert MontageDataset(imgs, labs, tr=5).fingerprint() != fp
    # images given as files: their bytes count, not their names
    paths = []
    for i, img in enumerate(imgs):
        write_png(tmp_path / f"m{i}.png", img)
        paths.append(tmp_path / f"m{i}.png")
    by_file = MontageDataset(paths, labs).fingerprint()
    assert by_file == MontageDataset(list(paths), labs).fingerprint()
    write_png(paths[0], changed[2])
    assert MontageDataset(paths, labs).fingerprint() != by_file


# ----------------------------------------------------------------------------- kept checkpoints


def test_kept_checkpoints_names_and_fine_tuning(sets, tmp_path, tiny):
    lab, unl = sets
    run = tmp_path / "run"
    res = train(_cfg(tiny, "train.max_steps=7", "checkpoint.keep_every=2", "checkpoint.keep_last=2"), lab, unl, run)
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["last.pt", "step_0000004.pt", "step_0000006.pt"]
    assert load_checkpoint(run / "checkpoints" / "step_0000004.pt")["step"] == 4
    assert load_checkpoint(run)["step"] == 7  # a run folder means its last.pt
    for spec in ("4", "step_0000004", "step_0000004.pt"):
        assert find_checkpoint(spec, run).name == "step_0000004.pt"
    assert find_checkpoint("last", run).name == "last.pt" and find_checkpoint(run).name == "last.pt"
    with pytest.raises(FileNotFoundError, match="it has: step_0000004, step_0000006, last"):
        find_checkpoint("2", run)
    # resuming from a kept step continues that trajectory exactly
    again = train(_cfg(tiny, "train.max_steps=7", "checkpoint.keep_every=2", "checkpoint.keep_last=2"), lab, unl,
                  run, resume="step_0000006")
    assert again.steps_run == 1 and _equal(again.generator.state_dict(), res.generator.state_dict())

    # fine-tuning: the weights of step 4, new optimisers, step 0; one Adam step moves a weight by <= lr
    src = load_checkpoint(run / "checkpoints" / "step_0000004.pt")["generator"]
    tuned = train(_cfg(tiny, "train.max_steps=1"), lab, unl, tmp_path / "tuned", init_from=run / "checkpoints" /
                  "step_0000004.pt")
    assert tuned.steps == 1 and not tuned.resumed
    moved = max((tuned.generator.state_dict()[k].float() - v.float()).abs().max().item()
                for k, v in src.items() if v.is_floating_point())
    torch.manual_seed(0)
    fresh = build_generator(_cfg(tiny)).state_dict()
    away = max((fresh[k] - v).abs().max().item() for k, v in src.items() if v.is_floating_point())
    assert moved <= 2e-4 * 1.01 < away
    with pytest.raises(ValueError, match="not both"):
        train(_cfg(tiny, "train.max_steps=1"), lab, unl, tmp_path / "x", resume=True, init_from=run)


def test_a_new_run_clears_the_old_runs_files(sets, tmp_path, tiny):
    lab, unl = sets
    train(_cfg(tiny, "train.max_steps=4", "checkpoint.keep_every=2"), lab, unl, tmp_path)
    assert (tmp_path / "checkpoints" / "step_0000004.pt").exists()
    train(_cfg(tiny, "train.max_steps=1", "train.seed=3"), lab, unl, tmp_path)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last.pt"]
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["step_0000001.png"]


# ----------------------------------------------------------------------------- history, EMA, grids


def test_history_csv_without_tensorboard(sets, tmp_path, tiny, monkeypatch, capsys):
    lab, unl = sets
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed
    res = train(_cfg(tiny, "train.max_steps=4", "train.tensorboard=true"), lab, unl, tmp_path)
    assert "tensorboard is not installed" in capsys.readouterr().err
    assert not (tmp_path / "tensorboard").exists()
    with open(tmp_path / "history.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0])[:3] == ["step", "epoch", "lr"]
    assert {"G", "D", "G_l1", "G_seg", "G_u", "G_pseudo_u"} <= set(rows[0])
    assert len(rows) == 4 == len(res.history)
    for row, h in zip(rows, res.history):
        assert int(row["step"]) == h["step"] and int(row["epoch"]) == h["epoch"]
        for k in h:
            if k not in ("step", "epoch"):
                assert float(row[k]) == h[k], k  # exact: written with repr
        # the unlabelled phase starts in epoch 1: its columns are empty before
        assert (row["G_u"] == "") == (h["epoch"] == 0)


def test_ema_generator_follows_its_recurrence_and_synthesis_uses_it(sets, tmp_path, tiny):
    lab, unl = sets
    cfg = _cfg(tiny, "train.max_steps=3", "train.ema=0.75", "checkpoint.keep_every=1")
    res = train(cfg, lab, unl, tmp_path)
    torch.manual_seed(cfg.train.seed)
    ema = _weights(build_generator(cfg).state_dict())  # the average starts at the initial weights
    for step in (1, 2, 3):
        g = load_checkpoint(tmp_path / "checkpoints" / f"step_{step:07d}.pt")["generator"]
        ema = {k: (0.75 * v + 0.25 * g[k]) if v.is_floating_point() else g[k] for k, v in ema.items()}
    saved = load_checkpoint(tmp_path)["ema"]
    for k, v in ema.items():
        torch.testing.assert_close(saved[k], v, rtol=1e-6, atol=1e-7)
    assert not _equal(saved, load_checkpoint(tmp_path)["generator"])
    assert _equal(res.ema.state_dict(), saved)
    gen, _ = load_generator(tmp_path / "checkpoints" / "last.pt")
    assert _equal(gen.state_dict(), saved)
    with pytest.raises(ValueError, match=r"train\.ema must be in \[0, 1\)"):
        load_config(None, ["train.ema=1"])


def test_sample_grids_of_validation_images_and_index(sets, tmp_path, tiny, tiny_montages):
    lab, unl = sets
    val = tiny_montages(range(40, 43))
    train(_cfg(tiny, "train.max_steps=4", "train.sample_every=2", "data.validation_n=2"), lab, unl, tmp_path,
          validation=val)
    grids = sorted(p.name for p in (tmp_path / "samples").iterdir())
    assert grids == ["step_0000002.png", "step_0000004.png"]
    grid = read_image(tmp_path / "samples" / "step_0000004.png", "values")
    assert grid.shape == (2 * 32, 5 * 32)
    for i in range(2):  # column 0: the validation UMs, column 1: the validation CTs
        um = np.round((val[i]["um"][0].numpy() + 1) / 2 * 255)
        ct = np.round((val[i]["ct"][0].numpy() + 1) / 2 * 255)
        np.testing.assert_array_equal(grid[32 * i:32 * (i + 1), :32], um)
        np.testing.assert_array_equal(grid[32 * i:32 * (i + 1), 32:64], ct)
    page = (tmp_path / "index.html").read_text()
    for link in ('href="history.csv"', 'src="samples/step_0000002.png"', 'src="samples/step_0000004.png"',
                 'href="checkpoints/last.pt"', "validation images"):
        assert link in page, link
    assert page.index("step_0000004.png") < page.index("step_0000002.png")  # newest first
