"""Shared helpers of the training and synthesis tests: tiny configs and phantom datasets.

``TINY`` and ``tiny_sets`` are also imported by the DDP worker script that
``test_train.py`` starts in a subprocess (with this folder on ``sys.path``).
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import umsynth  # noqa: E402
from umsynth import samples  # noqa: E402
from umsynth.train import boundary_edges  # noqa: E402

TINY = ["model.generator.ngf=8", "model.generator.n_downsample=2", "model.generator.n_blocks=1",
        "model.discriminator.ndf=8", "model.discriminator.n_layers=2", "data.batch_size=2",
        "train.sample_every=0", "train.tensorboard=false", "train.progress=false", "train.channels_last=false"]


class TinyMontages(torch.utils.data.Dataset):
    """Phantom slices in the MontageDataset item format (um, edges, ct, seg, has_label, index)."""

    def __init__(self, seeds, size=32, labelled=True):
        self.items = []
        for s in seeds:
            img, lab = samples.chest_slice(seed=int(s), size=size, t=0.5)
            um, sp = umsynth.unsupervised_mask(img, n_segments=24, step=10, return_labels=True)
            seg = torch.from_numpy(lab.astype(np.int64)) if labelled else torch.zeros(size, size, dtype=torch.int64)
            self.items.append({"um": torch.from_numpy(um.astype(np.float32) / 127.5 - 1)[None],
                               "edges": boundary_edges(torch.from_numpy(sp)[None])[0],
                               "ct": torch.from_numpy(img.astype(np.float32) / 127.5 - 1)[None],
                               "seg": seg, "has_label": torch.tensor(labelled), "index": torch.tensor(int(s))})

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def tiny_sets(n_lab=4, n_unl=4, size=32):
    return TinyMontages(range(n_lab), size), TinyMontages(range(n_lab, n_lab + n_unl), size, labelled=False)


@pytest.fixture(scope="session")
def tiny() -> list:
    """Overrides that make a model and run small enough for a CPU test (a new list each time)."""
    return list(TINY)


@pytest.fixture(scope="session")
def tiny_montages():
    """The TinyMontages class: ``tiny_montages(seeds, size=32, labelled=True)``."""
    return TinyMontages


@pytest.fixture(scope="module")
def sets():
    """(labelled, unlabelled): 4 + 4 tiny phantom montages."""
    return tiny_sets()
