"""Training and synthesis throughput of the multi-task GAN at 256 x 256 on the CPU.

Run:  python -m pytest benchmarks/test_bench_train.py --benchmark-only

Both rows use the original SemiCS2 architecture (pix2pixHD global generator, ngf 64, 4
downsamplings, 9 residual blocks, instance norm; 2-scale PatchGAN, ndf 64), batch 1, fp32:

- ``umsynth``: one iteration of :mod:`umsynth.train.loop` (labelled phase + unlabelled phase
  with the snapshot's pseudo-labels), LSGAN + feature matching as configured by default;
- ``original``: a faithful re-run of the original loop's work per iteration: the same
  networks, pix2pixHD's three discriminator passes (synthetic detached, real, synthetic),
  the vanilla GAN loss and no feature matching (the original's stuck flags), softmax before
  cross-entropy, the generator and discriminator steps.

Synthesis: umsynth's :func:`umsynth.synth.synthesize` (batches of 4, PNGs written) against the
original's test loop (one image per generator call, no files). GPU rows (512², 1024², bf16):
not measured on a GPU. The throughputs are in ``extra_info``.
"""
from __future__ import annotations

import functools
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch.nn import functional as F  # noqa: E402

SIZE = int(os.environ.get("UMSYNTH_BENCH_SIZE", "256"))  # smaller for a quick check of this file
# one full-size iteration takes about a minute on 2 shared cores: few rounds, medians of those
ROUNDS = int(os.environ.get("UMSYNTH_BENCH_ROUNDS", "1"))


@functools.lru_cache(maxsize=1)
def datasets():
    from umsynth.data.datasets import MontageDataset
    from umsynth.data.phantom import phantom_cohort

    cohort = phantom_cohort(4, SIZE, 0, 0.5)
    return MontageDataset.from_cohort(cohort, "labelled"), MontageDataset.from_cohort(cohort, "unlabelled")


def _config(tmp):
    from umsynth.train import load_config

    return load_config(None, ["data.batch_size=1", "train.tensorboard=false", "train.progress=false",
                              "train.sample_every=0", "train.device=cpu"])


def test_train_iteration_umsynth(benchmark, tmp_path):
    from umsynth.train.loop import _Run

    lab, unl = datasets()
    run = _Run(_config(tmp_path), lab, unl, tmp_path, progress=False)
    run._refresh_snapshot()

    def iteration():
        run._phase(run.lab.next(), labelled=True)
        run._phase(run.unl.next(), labelled=False)

    benchmark.pedantic(iteration, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    benchmark.extra_info["iterations_per_s"] = 1.0 / benchmark.stats.stats.median
    benchmark.extra_info["size"] = SIZE


def _original_phase(G, D, opt_G, opt_D, cond, real, target):
    """The per-phase work of the original SemiCS2/pix2pixHD loop (settings as its flags left them)."""
    fake, seg = G(cond)
    pred_pool = D(torch.cat([cond, fake.detach()], 1))
    pred_real = D(torch.cat([cond, real], 1))
    pred_fake = D(torch.cat([cond, fake], 1))
    bce = F.binary_cross_entropy_with_logits
    loss_D = 0.5 * sum(bce(p[-1], torch.zeros_like(p[-1])) + bce(r[-1], torch.ones_like(r[-1]))
                       for p, r in zip(pred_pool, pred_real))
    loss_G = sum(bce(p[-1], torch.ones_like(p[-1])) for p in pred_fake)
    loss_G = loss_G + 10 * (fake - real).abs().mean()
    prob = seg.softmax(1)
    onehot = F.one_hot(target, 3).permute(0, 3, 1, 2).float()
    dice = 1 - (2 * (prob * onehot).sum() + 1) / (prob.sum() + onehot.sum() + 1)
    loss_G = loss_G + 10 * (F.cross_entropy(prob, target) + dice)  # CE after the softmax, as the original
    opt_G.zero_grad()
    loss_G.backward(retain_graph=True)
    opt_G.step()
    opt_D.zero_grad()
    loss_D.backward()
    opt_D.step()


def test_train_iteration_original_fp32(benchmark):
    from umsynth.models import MultiscaleDiscriminator, MultiTaskGenerator

    lab, unl = datasets()
    torch.manual_seed(0)
    G, D = MultiTaskGenerator(2), MultiscaleDiscriminator(3)
    snapshot = MultiTaskGenerator(2).requires_grad_(False)
    opt_G = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_D = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    items = [lab[0], unl[0]]
    conds = [torch.cat([it["um"], it["edges"]])[None] for it in items]

    def iteration():
        _original_phase(G, D, opt_G, opt_D, conds[0], items[0]["ct"][None], items[0]["seg"][None])
        with torch.no_grad():
            pseudo = snapshot(conds[1])[1].argmax(1)
        _original_phase(G, D, opt_G, opt_D, conds[1], items[1]["ct"][None], pseudo)

    benchmark.pedantic(iteration, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    benchmark.extra_info["iterations_per_s"] = 1.0 / benchmark.stats.stats.median
    benchmark.extra_info["size"] = SIZE


@functools.lru_cache(maxsize=1)
def _checkpoint(tmp):
    """A checkpoint of the original architecture (untrained: speed does not depend on weights)."""
    from umsynth.train import build_generator, config_to_dict, save_checkpoint

    cfg = _config(tmp)
    torch.manual_seed(0)
    return save_checkpoint({"config": config_to_dict(cfg), "generator": build_generator(cfg).state_dict()},
                           tmp / "g.pt")


def test_synthesis_umsynth(benchmark, tmp_path_factory):
    from umsynth.synth import synthesize

    tmp = tmp_path_factory.mktemp("synth")
    ckpt = _checkpoint(tmp)
    lab, unl = datasets()
    data = [lab[0], lab[1], unl[0], unl[1]]

    benchmark.pedantic(lambda: synthesize(ckpt, data, tmp / "out", batch_size=4, device="cpu", progress=False),
                       rounds=ROUNDS, iterations=1, warmup_rounds=0)
    benchmark.extra_info["images_per_s"] = len(data) / benchmark.stats.stats.median


def test_synthesis_original_fp32(benchmark):
    from umsynth.models import MultiTaskGenerator

    lab, unl = datasets()
    torch.manual_seed(0)
    G = MultiTaskGenerator(2).eval()
    conds = [torch.cat([it["um"], it["edges"]])[None] for it in (lab[0], lab[1], unl[0], unl[1])]

    def run():
        with torch.no_grad():
            for c in conds:  # one image per call, as the original test script
                G(c)

    benchmark.pedantic(run, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    benchmark.extra_info["images_per_s"] = len(conds) / benchmark.stats.stats.median
