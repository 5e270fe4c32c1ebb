"""``umsynth train``: semi-supervised training of the UM-guided multi-task GAN.

Runs unchanged on the CPU, one GPU, or under ``torchrun --nproc_per_node=N`` (DDP).
"""
from __future__ import annotations

import argparse
import os

from umsynth.cli import hold_output
from umsynth.cli._actions import add_from_checkpoint, add_no_progress
from umsynth.train.config import Config, config_fields, load_config

DESCRIPTION = """\
Train the multi-task generator (CT image + segmentation) from a config file (YAML or TOML;
every field has a default) with any field overridden on the command line, either as
--set section.field=value (repeatable) or as a dotted flag --section.field value.
Sections: model (conditioning um|mask, generator.*, discriminator.*), loss, optim, data
(source phantom|folder, labelled_dir, unlabelled_dir, phantom_*, tr, batch_size), train
(device, amp, channels_last, compile, max_steps, ...).

Data: data.source=folder reads `umsynth prepare` output (or a folder of <stem>.png montages
with <stem>_labels.png): labelled cases from data.labelled_dir and unlabelled ones from
data.unlabelled_dir (default: the same folder's unlabelled cases). data.source=phantom
(the default) builds umsynth's phantom cohort.

The run folder receives config.yaml (resolved), versions.yaml, checkpoints/last.pt,
checkpoints/step_NNNNNNN.pt every checkpoint.keep_every steps (the newest
checkpoint.keep_last of them), history.csv (step, epoch, lr, every loss), samples/*.png
(a grid of fixed validation images every train.sample_every steps; data.validation_*),
index.html (links to all of it) and, with TensorBoard installed, tensorboard/.
train.ema=0.999 also keeps a moving average of the generator, which synthesis uses.

--resume continues exactly from checkpoints/last.pt (--resume NAME: from a kept one, e.g.
--resume 5000); it refuses a checkpoint of another configuration or other data (each
checkpoint carries both digests). --from-checkpoint NAME fine-tunes: a new run that starts
from that checkpoint's weights (a name in this run folder, another run folder, or a file).
A run that neither resumes nor fine-tunes in a folder clears the earlier run's checkpoints.
"""


def register(subparsers) -> None:
    """Add the ``train`` sub-command to ``subparsers``."""
    p = subparsers.add_parser("train", help="train the UM-guided multi-task GAN", description=DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="FILE", help="YAML or TOML config (default: built-in defaults)")
    p.add_argument("--out", required=True, metavar="DIR", help="run folder (created if missing)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override a config field, e.g. --set model.generator.ngf=32 (repeatable)")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="NAME",
                   help="continue exactly from DIR/checkpoints/last.pt (or the kept checkpoint NAME)")
    add_from_checkpoint(p, "fine-tune: start a new run from this checkpoint's weights")
    add_no_progress(p)
    group = p.add_argument_group("config fields (each is also --set KEY=VALUE)")
    for key, default in config_fields(Config()):
        group.add_argument(f"--{key}", dest=f"cfg:{key}", metavar="VALUE", default=argparse.SUPPRESS,
                           help=f"(default {default!r})")
    p.set_defaults(func=run)


def dotted_overrides(args) -> list[str]:
    """The ``--section.field VALUE`` flags given, as ``section.field=VALUE`` strings."""
    return [f"{k[4:]}={v}" for k, v in vars(args).items() if k.startswith("cfg:")]


def build_validation(data_cfg):
    """The MontageDataset of the sample grids (None: the first labelled training images)."""
    from umsynth.data.datasets import MontageDataset
    from umsynth.data.phantom import phantom_cohort

    if data_cfg.validation_dir:
        try:
            return MontageDataset.from_folder(data_cfg.validation_dir, labelled=True, tr=data_cfg.tr)
        except ValueError:  # a folder without labels: its images still make a grid
            return MontageDataset.from_folder(data_cfg.validation_dir, labelled=False, tr=data_cfg.tr)
    if data_cfg.source == "phantom":  # further cases of another cohort seed: never trained on
        cohort = phantom_cohort(data_cfg.validation_n, data_cfg.phantom_size, data_cfg.phantom_seed + 1, 1.0)
        return MontageDataset.from_cohort(cohort, "all", tr=data_cfg.tr)
    return None


def build_datasets(data_cfg):
    """(labelled, unlabelled) MontageDatasets described by a DataConfig."""
    from umsynth.data.datasets import MontageDataset  # imports torch: only when a run starts
    from umsynth.data.phantom import phantom_cohort

    if data_cfg.source == "phantom":
        cohort = phantom_cohort(data_cfg.phantom_n, data_cfg.phantom_size, data_cfg.phantom_seed,
                                data_cfg.labelled_fraction)
        lab = MontageDataset.from_cohort(cohort, "labelled", tr=data_cfg.tr)
        unl = (MontageDataset.from_cohort(cohort, "unlabelled", tr=data_cfg.tr)
               if (~cohort.labelled).any() else None)
        return lab, unl
    lab = MontageDataset.from_folder(data_cfg.labelled_dir, labelled=True, tr=data_cfg.tr)
    udir = data_cfg.unlabelled_dir or data_cfg.labelled_dir
    try:
        unl = MontageDataset.from_folder(udir, labelled=False, tr=data_cfg.tr)
    except ValueError:
        if data_cfg.unlabelled_dir:
            raise
        unl = None  # the labelled folder has no unlabelled case
    return lab, unl


def run(args) -> int:
    """Run ``umsynth train``."""
    from umsynth.train.loop import train  # imports torch

    overrides = dotted_overrides(args) + list(args.overrides)
    cfg = load_config(args.config, overrides)
    lab, unl = build_datasets(cfg.data)
    if args.resume and args.from_checkpoint:
        raise ValueError("give --resume (continue a run) or --from-checkpoint (fine-tune), not both")
    hold_output(args.out, "train")  # another umsynth process writing the run folder stops us here
    out = train(cfg, lab, unl, args.out, resume=args.resume, progress=False if args.no_progress else None,
                validation=build_validation(cfg.data), init_from=args.from_checkpoint)
    if out.world_size == 1 or os.environ.get("RANK", "0") == "0":
        last = out.history[-1] if out.history else {}
        shown = ", ".join(f"{k} {v:.4g}" for k, v in last.items() if k not in ("step", "epoch", "lr"))
        print(f"umsynth train: {out.steps} steps ({out.steps_run} this run, {out.seconds:.1f} s) on "
              f"{out.device} x{out.world_size}; last losses: {shown or 'n/a'}; checkpoint {out.checkpoint}")
    return 0
