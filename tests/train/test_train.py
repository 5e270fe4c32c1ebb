"""Training: config files and overrides, the lr schedule, a short run, exact resume, DDP."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.usefixtures("one_torch_thread")

torch = pytest.importorskip("torch")
from umsynth.train import (apply_overrides, boundary_edges, build_generator, load_checkpoint, load_config,  # noqa: E402
                           pix2pixhd_lr, train)

HERE = Path(__file__).resolve().parent


# ----------------------------------------------------------------------------- config


def test_config_files_and_overrides(tmp_path):
    (tmp_path / "a.yaml").write_text("model:\n  conditioning: mask\n  generator: {ngf: 16}\noptim: {lr: 0.001}\n")
    (tmp_path / "a.toml").write_text('[model]\nconditioning = "mask"\n[model.generator]\nngf = 16\n'
                                     '[optim]\nlr = 0.001\n')
    a, b = load_config(tmp_path / "a.yaml"), load_config(tmp_path / "a.toml")
    assert a == b
    assert a.model.conditioning == "mask" and a.model.generator.ngf == 16 and a.optim.lr == 1e-3
    assert a.model.generator.n_blocks == 9  # untouched fields keep their defaults
    c = apply_overrides(a, ["model.generator.n_blocks=2", "loss.gan=hinge", "train.max_steps=none",
                            "loss.perceptual_weights=w.safetensors", "train.compile=false"])
    assert (c.model.generator.n_blocks, c.loss.gan, c.train.max_steps) == (2, "hinge", None)
    assert c.loss.perceptual_weights == "w.safetensors" and a.model.generator.n_blocks == 9


@pytest.mark.parametrize("override, message", [
    ("model.generator.ngf=abc", "must be an integer"),
    ("model.generator.ngf=0", "must be > 0"),
    ("model.conditioning=image", "must be one of"),
    ("model.nothing=1", "unknown config field"),
    ("train.amp=int8", "must be one of"),
    ("optim.lr=-1", ">= 0"),
    ("data.labelled_fraction=2", r"\[0, 1\]"),
    ("seed=3", "must name a section"),
    ("train.tensorboard=maybe", "true or false"),
])
def test_config_errors(override, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, [override])


def test_config_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "none.yaml")
    (tmp_path / "bad.toml").write_text("model = [")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_config(tmp_path / "bad.toml")
    (tmp_path / "c.json").write_text("{}")
    with pytest.raises(ValueError, match="yaml"):
        load_config(tmp_path / "c.json")


def test_pix2pixhd_schedule():
    # pix2pixHD: constant for niter epochs, then lr/niter_decay less after each further epoch
    lrs = [pix2pixhd_lr(e, 2e-4, 3, 4) for e in range(8)]
    np.testing.assert_allclose(lrs, [2e-4] * 4 + [1.5e-4, 1e-4, 0.5e-4, 0.0], atol=1e-18)


# ----------------------------------------------------------------------------- a short run


def _fixed_l1(gen, ds):
    batch = torch.utils.data.default_collate([ds[i] for i in range(len(ds))])
    from umsynth.train import conditioning_input

    with torch.no_grad():
        ct, logits = gen.eval()(conditioning_input(batch, "um", 3, True))
    seg = torch.nn.functional.cross_entropy(logits, batch["seg"]).item()
    return (ct - batch["ct"]).abs().mean().item(), seg


def test_short_run_losses_finite_and_decreasing(sets, tmp_path, tiny):
    lab, unl = sets
    cfg = load_config(None, tiny + ["optim.lr=0.002", "optim.niter=6", "optim.niter_decay=0",
                                    "train.unlabelled_start_epoch=3", "train.sample_every=6",
                                    "train.tensorboard=true"])
    torch.manual_seed(cfg.train.seed)
    before = _fixed_l1(build_generator(cfg), lab)  # the same initial weights as the run
    out = train(cfg, lab, unl, tmp_path)
    assert out.steps == 12  # 6 epochs x 2 iterations
    for h in out.history:
        assert all(np.isfinite(v) for v in h.values())
    assert "G_pseudo_u" in out.history[-1] and "G_pseudo_u" not in out.history[0]
    assert 0 <= out.history[-1]["valid_fraction"] <= 1
    after = _fixed_l1(out.generator, lab)
    assert after[0] < 0.75 * before[0], (before, after)  # L1 of the CT on the labelled images
    assert after[1] < 0.75 * before[1], (before, after)  # CE of the segmentation
    # artefacts: the resolved config, versions, checkpoint, samples, TensorBoard
    assert load_config(tmp_path / "config.yaml") == cfg
    assert "torch" in (tmp_path / "versions.yaml").read_text()
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["step_0000006.png", "step_0000012.png"]
    assert any((tmp_path / "tensorboard").iterdir())
    from PIL import Image

    grid = np.asarray(Image.open(tmp_path / "samples" / "step_0000012.png"))
    assert grid.shape == (4 * 32, 5 * 32) and grid.dtype == np.uint8


def test_mask_mode_excludes_unlabelled(sets, tmp_path, tiny):
    lab, unl = sets
    cfg = load_config(None, tiny + ["model.conditioning=mask", "optim.niter=1", "optim.niter_decay=0",
                                    "train.channels_last=true",
                                    "train.unlabelled_start_epoch=0", "loss.gan=hinge",
                                    "loss.confidence_threshold=0"])
    out = train(cfg, lab, unl, tmp_path)
    assert out.unlabelled_excluded == len(unl)
    assert out.steps == 2 and not any(k.endswith("_u") for k in out.history[-1])
    assert out.generator.trunk[1].in_channels == 3 + 1  # one-hot classes + edges


def test_bad_datasets_are_refused(sets, tmp_path, tiny, tiny_montages):
    lab, unl = sets
    cfg = load_config(None, tiny + ["optim.niter=1", "optim.niter_decay=0"])
    with pytest.raises(ValueError, match="disjoint"):
        train(cfg, lab, tiny_montages([1, 7], labelled=False), tmp_path)
    with pytest.raises(ValueError, match="empty"):
        train(cfg, tiny_montages([]), unl, tmp_path)
    bad = tiny_montages([20, 21])
    bad.items[0] = dict(bad.items[0], seg=bad.items[0]["seg"].float())
    with pytest.raises(ValueError, match="'seg' must be torch.int64"):
        train(cfg, bad, None, tmp_path)
    with pytest.raises(ValueError, match="fewer than batch_size"):
        train(load_config(None, tiny + ["data.batch_size=8"]), lab, None, tmp_path)


def test_overlap_found_by_source_index(tmp_path, tiny):
    from umsynth.data.datasets import MontageDataset
    from umsynth.data.phantom import phantom_cohort

    cohort = phantom_cohort(4, 64, 0, 0.5)
    unl = MontageDataset.from_cohort(cohort, "unlabelled")
    # both sets number their items 0, 1: only the cohort positions tell them apart
    assert [int(unl[i]["index"]) for i in range(2)] == [0, 1]
    cfg = load_config(None, tiny + ["optim.niter=1", "optim.niter_decay=0"])
    with pytest.raises(ValueError, match="source_index"):
        train(cfg, MontageDataset.from_cohort(cohort, "all"), unl, tmp_path)


# ----------------------------------------------------------------------------- resume


def _resume_cfg(tiny, max_steps):
    # 2 iterations per epoch; the unlabelled phase (with its snapshot) starts in epoch 1
    return load_config(None, tiny + ["optim.niter=1", "optim.niter_decay=2", "train.unlabelled_start_epoch=1",
                                     f"train.max_steps={max_steps}", "train.checkpoint_every=0"])


def test_resume_is_bitwise_exact(sets, tmp_path, tiny):
    lab, unl = sets
    full = train(_resume_cfg(tiny, 4), lab, unl, tmp_path / "full")
    part = train(_resume_cfg(tiny, 3), lab, unl, tmp_path / "part")
    assert part.steps == 3
    # a fresh process would rebuild everything: so does train(); RNG states come from the file
    torch.manual_seed(12345)
    np.random.seed(7)
    resumed = train(_resume_cfg(tiny, 4), lab, unl, tmp_path / "part", resume=True)
    assert resumed.steps == 4 and resumed.steps_run == 1
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "part" / "checkpoints" / "last.pt")
    for key in ("generator", "discriminator", "snapshot"):
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)
    for key in ("opt_G", "opt_D"):
        for i, st in a[key]["state"].items():
            for k, v in st.items():
                assert torch.equal(v, b[key]["state"][i][k]), (key, i, k)
    assert a["history"] == b["history"] and a["streams"] == b["streams"]
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])


def test_resume_refuses_another_model(sets, tmp_path, tiny):
    lab, unl = sets
    train(_resume_cfg(tiny, 1), lab, unl, tmp_path)
    other = apply_overrides(_resume_cfg(tiny, 2), ["model.generator.ngf=4"])
    with pytest.raises(ValueError, match=r"another configuration: model\.generator\.ngf 8 -> 4"):
        train(other, lab, unl, tmp_path, resume=True)
    with pytest.raises(FileNotFoundError):
        train(_resume_cfg(tiny, 2), lab, unl, tmp_path / "nothing", resume=True)


# ----------------------------------------------------------------------------- DDP

_WORKER = textwrap.dedent("""
    import json, sys, torch
    sys.path.insert(0, {tests!r})
    torch.set_num_threads(1)
    # float64: one process and DDP then agree to rounding (1e-14 measured); in float32 Adam
    # turns reduction-order noise into differences of up to 6e-3, which would hide a real bug
    torch.set_default_dtype(torch.float64)
    from conftest import TINY, tiny_sets
    from umsynth.train import apply_overrides, load_config, train
    import torch.distributed as dist
    lab, unl = tiny_sets()
    cfg = load_config(None, TINY + {extra!r})
    out = train(cfg, lab, unl, {out!r})
    x = torch.utils.data.default_collate([lab[i] for i in range(len(lab))])
    from umsynth.train import conditioning_input
    from umsynth.train import build_generator
    torch.manual_seed(cfg.train.seed)
    init = build_generator(cfg).eval()
    with torch.no_grad():
        cond = conditioning_input(x, "um", 3, True).double()
        ct, seg = out.generator.eval()(cond)
        ct0 = init(cond)[0]
    rank = out.world_size > 1 and __import__("os").environ["RANK"] or "0"
    json.dump({{"history": out.history, "ct": ct.flatten().tolist(), "seg": seg.flatten().tolist(),
               "ct0": ct0.flatten().tolist()}},
              open({out!r} + "/result_" + str(rank) + ".json", "w"))
""")


def _launch(tmp_path, name, nproc, batch):
    extra = ["optim.niter=1", "optim.niter_decay=1", "train.unlabelled_start_epoch=1", f"data.batch_size={batch}",
             "train.steps_per_epoch=2"]
    out = tmp_path / name
    out.mkdir()
    script = out / "worker.py"
    script.write_text(_WORKER.format(tests=str(HERE), extra=extra, out=str(out)))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if nproc == 1:
        cmd = [sys.executable, str(script)]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               str(script)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    return [json.loads((out / f"result_{r}.json").read_text()) for r in range(nproc)]


def test_ddp_two_processes_match_one(tmp_path):
    (one,) = _launch(tmp_path, "single", 1, 2)
    two = _launch(tmp_path, "ddp", 2, 1)
    # each rank logs its own half of the global batch: their mean is the global loss
    for step, h in enumerate(one["history"]):
        for key in ("G", "G_l1", "G_seg", "D", "G_u", "G_pseudo_u"):
            if key in h:
                mean = 0.5 * (two[0]["history"][step][key] + two[1]["history"][step][key])
                assert mean == pytest.approx(h[key], rel=1e-10, abs=1e-12), (step, key)
    assert "G_pseudo_u" in one["history"][-1]
    # the trained generators agree (rank 0 and 1 hold identical weights) to float64 rounding:
    # a wrong gradient scale, a missing all-reduce or overlapping shards moves them by far more
    assert two[0]["ct"] == two[1]["ct"]
    np.testing.assert_allclose(two[0]["ct"], one["ct"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(two[0]["seg"], one["seg"], rtol=0, atol=1e-8)
    assert np.abs(np.subtract(one["ct"], one["ct0"])).max() > 20 * 1e-3


# ----------------------------------------------------------------------------- command line


def test_cli_train_phantom_overrides_and_resume(tmp_path, capsys):
    from umsynth.cli import main

    (tmp_path / "c.toml").write_text('[model.generator]\nngf = 8\nn_downsample = 2\nn_blocks = 1\n'
                                     '[model.discriminator]\nndf = 8\nn_layers = 2\n')
    args = ["train", "--config", str(tmp_path / "c.toml"), "--out", str(tmp_path / "run"), "--no-progress",
            "--data.phantom_n", "4", "--data.phantom_size=64", "--set", "data.labelled_fraction=0.5",
            "--set", "optim.niter=1", "--set", "optim.niter_decay=0", "--set", "train.unlabelled_start_epoch=0",
            "--set", "train.sample_every=0", "--set", "train.tensorboard=false"]
    assert main(args + ["--train.max_steps", "1"]) == 0
    assert "1 steps (1 this run" in capsys.readouterr().out
    cfg = load_config(tmp_path / "run" / "config.yaml")
    assert (cfg.model.generator.ngf, cfg.data.phantom_n, cfg.data.phantom_size, cfg.train.max_steps) == (8, 4, 64, 1)
    assert main(args + ["--resume"]) == 0  # max_steps back to None: finish the epoch (2 iterations)
    assert "2 steps (1 this run" in capsys.readouterr().out
    # the grid shows 4 phantom cases of another cohort seed (never trained on), linked from index.html
    from umsynth.data.phantom import phantom_cohort
    from umsynth.files import read_image

    grid = read_image(tmp_path / "run" / "samples" / "step_0000002.png", "values")
    val = phantom_cohort(4, 64, 1, 1.0)
    assert grid.shape == (4 * 64, 5 * 64)
    np.testing.assert_array_equal(grid[64:128, 64:128], val.images[1])
    assert "samples/step_0000002.png" in (tmp_path / "run" / "index.html").read_text()
    # fine-tuning: a new run from the first run's weights
    tuned = args[:4] + [str(tmp_path / "tuned")] + args[5:]
    assert main(tuned + ["--from-checkpoint", str(tmp_path / "run"), "--train.max_steps", "1"]) == 0
    assert "1 steps (1 this run" in capsys.readouterr().out
    assert main(tuned + ["--from-checkpoint", "x", "--resume"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(args + ["--set", "model.generator.ngf=x"]) == 2
    assert "must be an integer" in capsys.readouterr().err


def test_config_sections_check_themselves_on_construction():
    from umsynth.train.config import Config, DataConfig, GeneratorConfig, OptimConfig, validate

    with pytest.raises(ValueError, match=r"model\.generator\.ngf must be > 0, got 0"):
        GeneratorConfig(ngf=0)
    with pytest.raises(ValueError, match=r"optim\.beta1 and optim\.beta2 must be < 1"):
        OptimConfig(beta1=1.0)
    with pytest.raises(ValueError, match=r"data\.tr must be in 1\.\.255, got 300"):
        DataConfig(tr=300)
    cfg = Config()
    cfg.optim.lr = float("inf")  # changed in place after construction: validate() finds it
    with pytest.raises(ValueError, match=r"optim\.lr must be finite"):
        validate(cfg)
