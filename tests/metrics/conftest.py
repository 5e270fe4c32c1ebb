"""Shared data of the metric tests: a phantom cohort, extractor suites, degraded copies.

Fixtures that need torch skip the test when it is missing.
"""
from __future__ import annotations

import numpy as np
import pytest

# Small scales keep the suites' passes fast.
SCALES = (32, 64)


@pytest.fixture(scope="session")
def scales() -> tuple:
    """The two scales of :func:`random_suite`'s suites."""
    return SCALES


@pytest.fixture(scope="session")
def cohort():
    """40 phantom montages, 64 x 64, read-only."""
    from umsynth.data.phantom import phantom_cohort

    c = phantom_cohort(40, size=64, seed=3)
    c.images.setflags(write=False)
    return c


@pytest.fixture(scope="session")
def suite(cohort):
    """A tiny suite trained on the first 16 montages (seconds)."""
    pytest.importorskip("torch")
    from umsynth.extractors import TINY_CONFIG, train_suite

    return train_suite(cohort.images[:16], TINY_CONFIG, progress=False)


@pytest.fixture(scope="session")
def random_suite():
    """``random_suite(channels=(4, 8, 16), k=2, seed=0)``: a Suite of k untrained, seeded networks
    at :data:`SCALES` (deterministic, cheap, feature dimension ``channels[-1]``)."""
    torch = pytest.importorskip("torch")
    from umsynth.extractors import CTNet, Member, Suite

    def make(channels=(4, 8, 16), k=2, seed=0):
        torch.manual_seed(seed)
        members = [Member(f"net{i}", "rotation", CTNet(channels, 4).eval(), channels, 4) for i in range(k)]
        return Suite(members, SCALES)

    return make


@pytest.fixture(scope="session")
def noisy():
    """``noisy(images, sd, seed=0)``: uint8 images plus seeded Gaussian noise of ``sd`` grey levels."""

    def add(images, sd, seed=0):
        rng = np.random.default_rng(seed)
        return np.clip(np.rint(images + rng.normal(0.0, sd, images.shape)), 0, 255).astype(np.uint8)

    return add
