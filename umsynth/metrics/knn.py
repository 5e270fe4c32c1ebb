"""k-NN fidelity and privacy sets of synthetic images (MedSynAnalyzer's definitions).

For real features R and synthetic features S (Euclidean distances):

- the k-NN radius of a real image counts the image itself among its neighbours, so with
  k = 5 it is the distance to its 4th nearest other real image;
- a synthetic image is a **copy** if it is closer to its nearest real image r than r's
  nearest other real image is to r (suspiciously close: memorisation);
- otherwise **real** if it lies within the k-NN radius of at least one real image;
- otherwise **non-real**.

Unlike MedSynAnalyzer, no 0.05 is added to the radii when the synthetic features vary
little: the sets depend only on the geometry of the features.
"""
from __future__ import annotations

import numpy as np

__all__ = ["knn_sets", "KNN_LABELS"]

KNN_LABELS = ("copy", "real", "non-real")


def knn_sets(real, synthetic, k: int = 5, chunk: int = 1024) -> dict:
    """Label each synthetic feature vector copy (0), real (1) or non-real (2).

    Parameters
    ----------
    real : array_like, shape (n_real, d)
        Needs n_real > k.
    synthetic : array_like, shape (n_syn, d)
    k : int, optional
        Neighbours for the radius, the image itself included (default 5).
    chunk : int, optional
        Rows of distances computed at once (memory is chunk x n_real).

    Returns
    -------
    dict
        ``labels`` (n_syn,) int array; ``counts`` and ``fractions``: dicts keyed by
        "copy", "real", "non-real"; ``k``.
    """
    from scipy.spatial.distance import cdist

    r = np.asarray(real, dtype=np.float64)
    s = np.asarray(synthetic, dtype=np.float64)
    if r.ndim != 2 or s.ndim != 2 or r.shape[1] != s.shape[1]:
        raise ValueError(f"real and synthetic must be (n, d) with the same d, got {r.shape} and {s.shape}")
    if not (np.isfinite(r).all() and np.isfinite(s).all()):
        raise ValueError("real or synthetic features contain NaN or Inf")
    k = int(k)
    if k < 2:
        raise ValueError(f"k must be >= 2 (the image itself counts), got {k}")
    if r.shape[0] <= k or s.shape[0] < 1:
        raise ValueError(f"k-NN sets need more than k={k} real images and at least 1 synthetic one, "
                         f"got {r.shape[0]} and {s.shape[0]}")
    nn_other = np.empty(r.shape[0])
    radius = np.empty(r.shape[0])
    for i in range(0, r.shape[0], chunk):
        d = cdist(r[i:i + chunk], r)
        part = np.partition(d, (1, k - 1), axis=1)  # column 0 is the image itself (0)
        nn_other[i:i + chunk], radius[i:i + chunk] = part[:, 1], part[:, k - 1]
    labels = np.empty(s.shape[0], dtype=np.int64)
    for i in range(0, s.shape[0], chunk):
        d = cdist(s[i:i + chunk], r)
        j = d.argmin(axis=1)
        dmin = d[np.arange(d.shape[0]), j]
        copy = dmin < nn_other[j]
        inside = (d <= radius[None, :]).any(axis=1)
        labels[i:i + chunk] = np.where(copy, 0, np.where(inside, 1, 2))
    counts = {name: int(np.count_nonzero(labels == c)) for c, name in enumerate(KNN_LABELS)}
    return {"labels": labels, "counts": counts, "k": k,
            "fractions": {name: c / labels.size for name, c in counts.items()}}
