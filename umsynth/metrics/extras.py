"""The extras of an MM-FID run: bootstrap intervals, Wilcoxon tests, t-SNE.

Each works on what :func:`umsynth.metrics.streaming.stream_stats` kept (a uniform sample
of each set's features, the same images in every cell) or on the normalized tables.
scipy, scikit-learn and matplotlib are imported only when the function that needs them runs.
"""
from __future__ import annotations

import itertools

import numpy as np

from umsynth.files import atomic_write
from umsynth.metrics.gram import Design
from umsynth.metrics.streaming import SetStats

__all__ = ["bootstrap_cells", "wilcoxon_pairs", "tsne_plot"]


def bootstrap_cells(real: SetStats, syn: SetStats, extractors, scales, resamples: int, confidence: float,
                    seed: int, reference=None) -> dict:
    """Percentile bootstrap intervals of FD per cell, resampling kept real and synthetic features.

    The same resampled images are used in every cell of one replicate. With ``reference``
    the intervals are also given divided by it (the reference held fixed).

    Returns
    -------
    dict
        ``low``, ``high`` (K x S lists), ``confidence``, ``resamples``, ``images``
        (real, synthetic features resampled); ``low_normalized``, ``high_normalized``.
    """
    rng = np.random.default_rng(seed)
    nr, ns = len(real.kept_index), len(syn.kept_index)
    if min(nr, ns) < 2:
        raise ValueError("the bootstrap needs at least 2 kept images in each set")
    # one design for every cell: the distances of all replicates in stacked computations
    design = Design(nr)
    for _ in range(resamples):
        ir, js = rng.integers(0, nr, nr), rng.integers(0, ns, ns)
        design.frechet(design.sample(ir), design.sample(nr + js))
    reps = np.empty((resamples, len(extractors), len(scales)))
    for (i, e), (j, s) in itertools.product(enumerate(extractors), enumerate(scales)):
        reps[:, i, j] = design.evaluate([real.kept[(e, s)], syn.kept[(e, s)]]).fd
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(reps, alpha, axis=0), np.quantile(reps, 1.0 - alpha, axis=0)
    out = {"low": low.tolist(), "high": high.tolist(), "confidence": confidence, "resamples": resamples,
           "images": [nr, ns]}
    if reference is not None:
        out["low_normalized"] = (low / reference).tolist()
        out["high_normalized"] = (high / reference).tolist()
    return out


def wilcoxon_pairs(fd_norm: dict, std_norm: dict) -> dict:
    """Wilcoxon signed-rank tests (scipy, two-sided) over the cells, for every pair of sets.

    This is the paper's procedure, kept so that its numbers can be reproduced. It is not a
    test over independent replicates: the K x S cells are the same two image sets seen
    through correlated networks at neighbouring scales, so its p-value overstates the
    evidence (two perfect generators, one fed rotated copies, got p = 0.018 from it). Use
    :meth:`umsynth.metrics.mmfid.MMFIDResult.compare`, which resamples images, for a verdict.

    Returns
    -------
    dict
        ``"A vs B"`` -> {"fd": {"statistic", "pvalue"}, "std": {...}}. When every cell is
        equal the p-value is 1.
    """
    from scipy.stats import wilcoxon

    out = {}
    for a, b in itertools.combinations(list(fd_norm), 2):
        entry = {}
        for what, tab in (("fd", fd_norm), ("std", std_norm)):
            x, y = np.ravel(tab[a]), np.ravel(tab[b])
            if np.all(x == y):
                entry[what] = {"statistic": 0.0, "pvalue": 1.0}
            else:
                r = wilcoxon(x, y)
                entry[what] = {"statistic": float(r.statistic), "pvalue": float(r.pvalue)}
        out[f"{a} vs {b}"] = entry
    return out


def tsne_plot(features: dict, path, title: str = "", seed: int = 0) -> None:
    """t-SNE (scikit-learn) of several feature sets in one scatter plot, saved as PNG atomically.

    Parameters
    ----------
    features : dict of str -> array (n_i, d)
        Label -> features; the first is drawn as the real set.
    path : path
        PNG to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    names = list(features)
    x = np.concatenate([np.asarray(features[n], dtype=np.float64) for n in names])
    if x.shape[0] < 5:
        raise ValueError(f"t-SNE needs at least 5 images in all, got {x.shape[0]}")
    emb = TSNE(n_components=2, perplexity=min(30.0, (x.shape[0] - 1) / 3.0), init="pca",
               random_state=seed).fit_transform(x)
    fig, ax = plt.subplots(figsize=(6, 6), dpi=120)
    start = 0
    for i, n in enumerate(names):
        m = len(features[n])
        ax.scatter(emb[start:start + m, 0], emb[start:start + m, 1], s=10, alpha=0.7, label=f"{n} ({m})",
                   marker="o" if i == 0 else "^")
        start += m
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(loc="best")
    fig.tight_layout()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"), suffix=".png")
    finally:
        plt.close(fig)
