"""The calibrated reference of MM-FID: real-vs-real distances at the comparison's own sizes.

A Fréchet distance between two finite samples carries a bias that shrinks like 1/n, so a
ratio FD(real, synthetic) / FD(real half, real half) means different things at different
sizes (a perfect generator scores about 0.5 at any n when the halves hold half as many
images). Here both sides of the ratio are distances between two samples of the same sizes:

* the real set is split at random into A (h = n_real // 2 images) and B;
* reference: FD(A, B'), with B' the first m images of B, m = min(n_real - h, n_syn);
* comparison: FD(A, S_c) averaged over the disjoint chunks S_c of m synthetic images;
* each side is averaged over ``splits`` random splits; a cell's normalized value is the
  ratio of the two averages.

When the synthetic images come from the real distribution, both averages estimate the
same expected distance, so the ratio is about 1 whatever n_real and n_syn are; worse sets
score above 1. The same splits and chunks serve every (extractor, scale) cell.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SplitPlan", "split_plan", "calibrated_cell", "reference_status", "DEFAULT_SPLITS",
           "MIN_REAL", "SMALL_REAL"]

DEFAULT_SPLITS = 16
# Fewest real images for any reference (halves of 2: a covariance needs 2 samples).
MIN_REAL = 4
# Synthetic chunks drawn per split at least (fresh permutations when one holds fewer): the
# comparison side then averages over as many subsets as the reference side's splits allow.
MIN_CHUNKS = 4
# Below this many real images the reference halves are small and the ratios noisy: said so.
SMALL_REAL = 20


@dataclass(frozen=True)
class SplitPlan:
    """Random real splits and synthetic chunks at matched sizes, shared by every cell.

    Attributes
    ----------
    real_a, real_b : tuple of numpy.ndarray
        Per split, the indices of the real images in A (h of them) and B' (m of them).
    chunks : tuple of tuple of numpy.ndarray
        Per split, the disjoint chunks of m synthetic indices.
    sizes : (int, int)
        (h, m) of the first split: without repeated images every distance of the plan is
        between h = n_real // 2 and m = min(n_real - h, n_syn) images.
    """

    real_a: tuple
    real_b: tuple
    chunks: tuple
    sizes: tuple


def split_plan(n_real: int, n_syn: int, splits: int = DEFAULT_SPLITS, seed: int = 0, real_ids=None) -> SplitPlan:
    """Draw the splits of a calibrated reference (seeded, so a result is reproducible).

    Parameters
    ----------
    n_real : int
        Real images (at least :data:`MIN_REAL`).
    n_syn : int
        Synthetic images (at least 2).
    splits : int, optional
        Random splits averaged on each side of the ratio.
    seed : int, optional
    real_ids : array_like of int, optional
        The original image of each real row, for a bootstrap resample that repeats
        images: the split is then drawn over the distinct images, so that copies of one
        image never stand on both sides of a reference distance.

    Raises
    ------
    ValueError
        Too few images, or ``splits`` < 1.
    """
    n_real, n_syn, splits = int(n_real), int(n_syn), int(splits)
    if n_real < MIN_REAL:
        raise ValueError(f"the calibrated reference needs at least {MIN_REAL} real images, got {n_real}")
    if n_syn < 2:
        raise ValueError(f"a synthetic set needs at least 2 images, got {n_syn}")
    if splits < 1:
        raise ValueError(f"splits must be >= 1, got {splits}")
    ids = np.arange(n_real) if real_ids is None else np.asarray(real_ids)
    distinct, rows_of = np.unique(ids, return_inverse=True)
    if distinct.size < MIN_REAL:
        raise ValueError(f"the calibrated reference needs at least {MIN_REAL} distinct real images, "
                         f"got {distinct.size}")
    rng = np.random.default_rng(seed)
    real_a, real_b, chunks = [], [], []
    for _ in range(splits):
        side = np.zeros(distinct.size, dtype=bool)
        side[rng.permutation(distinct.size)[:distinct.size // 2]] = True
        in_a = side[rows_of]
        a, rest = np.flatnonzero(in_a), rng.permutation(np.flatnonzero(~in_a))
        m = min(rest.size, n_syn)
        real_a.append(a)
        real_b.append(np.sort(rest[:m]))
        per = n_syn // m
        q = np.concatenate([rng.permutation(n_syn)[:per * m] for _ in range(-(-MIN_CHUNKS // per))])
        chunks.append(tuple(np.sort(q[i * m:(i + 1) * m]) for i in range(q.size // m)))
    return SplitPlan(tuple(real_a), tuple(real_b), tuple(chunks), (real_a[0].size, real_b[0].size))


def calibrated_cell(real: np.ndarray, syn: np.ndarray, plan: SplitPlan, distance) -> tuple[float, float]:
    """(comparison, reference) averages of one cell under ``plan``.

    Parameters
    ----------
    real, syn : numpy.ndarray, shape (n_real, d) and (n_syn, d)
        Features of the cell, rows in the order the plan's indices refer to.
    plan : SplitPlan
    distance : callable (x1, x2) -> float
        A distance between two feature sets (e.g. umsynth.frechet_distance_features).

    Returns
    -------
    (float, float)
        Mean over splits of the mean over chunks of distance(A, S_c), and mean over splits
        of distance(A, B'). Their ratio is the cell's normalized value.

    Notes
    -----
    :mod:`umsynth.metrics.uncertainty` takes the same averages for many plans and cells at
    once, its distances batched by :mod:`umsynth.metrics.gram`; this is the definition,
    one distance at a time (the tests compare the two).
    """
    num = den = 0.0
    for a, b, chunks in zip(plan.real_a, plan.real_b, plan.chunks):
        ra = real[a]
        den += distance(ra, real[b])
        num += sum(distance(ra, syn[c]) for c in chunks) / len(chunks)
    k = len(plan.real_a)
    return num / k, den / k


def reference_status(n_real: int) -> dict:
    """Whether the real set is large enough for a trustworthy reference, in words.

    Returns
    -------
    dict
        ``status`` ("ok" or "small") and ``message``.
    """
    h = int(n_real) // 2
    if n_real < SMALL_REAL:
        return {"status": "small",
                "message": (f"the real set is small ({n_real} images): each reference compares {h} with "
                            f"{n_real - h} images, so the normalized cells are noisy; read MM-FID with its "
                            f"interval, and use at least {SMALL_REAL} real images for a stable reference")}
    return {"status": "ok", "message": f"reference from {n_real} real images (halves of {h})"}
