"""Image-level uncertainty of MM-FID, MM-STD and KID: bootstrap intervals and set comparisons.

The replication unit is the image (or the source case an image was made from), never a
cell of the K x S table: the cells are the same two image sets seen through correlated
networks at neighbouring scales. Every replicate resamples images once and recomputes all
cells with those images, so the correlation between cells stays inside each replicate.

* :func:`interval` -- percentile bootstrap over real and synthetic images (or over source
  cases when the synthetic images record them).
* :func:`compare` -- the difference of two sets' summaries with a bootstrap interval and a
  two-sided permutation p-value: under "no difference" the images of the two sets are
  exchangeable, so their labels are shuffled (paired sets: the two sets' images of each
  source case are swapped with probability 1/2).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from umsynth.frechet import frechet_distance_features
from umsynth.metrics.kid import normalized_kid
from umsynth.metrics.reference import DEFAULT_SPLITS, calibrated_cell, split_plan

__all__ = ["CellFeatures", "METRICS", "summaries", "interval", "compare", "geometric_mean",
           "DEFAULT_RESAMPLES", "DEFAULT_PERMUTATIONS", "RESAMPLE_SPLITS"]

METRICS = ("mm_fid", "mm_std", "kid")
DEFAULT_RESAMPLES = 200
DEFAULT_PERMUTATIONS = 200
# Splits per replicate: the split noise is then part of each replicate's spread.
RESAMPLE_SPLITS = 4
_FLOOR = 1e-12


@dataclass
class CellFeatures:
    """Per-image features of the real set and of each synthetic set, cell by cell.

    Attributes
    ----------
    cells : list of (str, int)
        (extractor, scale) in table order (row-major).
    real : dict of cell -> numpy.ndarray (n_real, d)
    sets : dict of set name -> dict of cell -> numpy.ndarray (n_set, d)
    sources : dict of set name -> numpy.ndarray (n_set,)
        Source case of each synthetic image, where known.
    """

    cells: list
    real: dict
    sets: dict
    sources: dict = field(default_factory=dict)

    def n(self, name: str) -> int:
        return int(next(iter(self.sets[name].values())).shape[0])

    @property
    def n_real(self) -> int:
        return int(next(iter(self.real.values())).shape[0])


def geometric_mean(values) -> float:
    """exp(mean(log x)) of positive ratios (floored at 1e-12 so an exact 0 stays finite)."""
    a = np.asarray(values, dtype=np.float64)
    return float(np.exp(np.log(np.maximum(a, _FLOOR)).mean()))


def _feature_std(x: np.ndarray) -> float:
    return float(x.std(axis=0).mean())


def summaries(real: dict, syn: dict, cells, *, splits: int = DEFAULT_SPLITS, seed: int = 0,
              metrics=METRICS, real_ids=None, syn_ids=None) -> dict:
    """Normalized cell tables and summaries of one synthetic set against the real set.

    Parameters
    ----------
    real, syn : dict of cell -> numpy.ndarray
        Features per cell (rows aligned across cells: row i is the same image in every cell).
    cells : list of cell
    splits, seed
        The calibrated reference's random splits (:func:`umsynth.metrics.reference.split_plan`).
    metrics : iterable of str
        Which of "mm_fid", "mm_std", "kid" to compute.
    real_ids, syn_ids : array_like, optional
        Original image of each row, for resampled sets (see :func:`umsynth.metrics.kid.normalized_kid`).

    Returns
    -------
    dict
        For each metric: ``<metric>`` (the summary), ``<metric>_cells`` (flat array, table
        order); for mm_fid also ``fd_num`` and ``fd_den`` (the two averages per cell).
    """
    first = cells[0]
    out: dict = {}
    if "mm_fid" in metrics:
        plan = split_plan(real[first].shape[0], syn[first].shape[0], splits, seed, real_ids)
        pairs = np.array([calibrated_cell(real[c], syn[c], plan, frechet_distance_features) for c in cells])
        ratio = pairs[:, 0] / np.maximum(pairs[:, 1], _FLOOR * np.maximum(pairs[:, 0], 1.0))
        out.update(mm_fid=geometric_mean(ratio), mm_fid_cells=ratio, fd_num=pairs[:, 0], fd_den=pairs[:, 1])
    if "mm_std" in metrics:
        ratio = np.array([_feature_std(syn[c]) / max(_feature_std(real[c]), _FLOOR) for c in cells])
        out.update(mm_std=geometric_mean(ratio), mm_std_cells=ratio)
    if "kid" in metrics:
        vals = np.array([normalized_kid(real[c], syn[c], real_ids, syn_ids) for c in cells])
        out.update(kid=float(vals.mean()), kid_cells=vals)
    return out


def _check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    return metric


def _check_confidence(confidence: float) -> float:
    if not 0 < float(confidence) < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return float(confidence)


def _groups(ids) -> list[np.ndarray]:
    """Row indices of each source case, in sorted order of the ids."""
    ids = np.asarray(ids)
    return [np.flatnonzero(ids == u) for u in np.unique(ids)]


def _take(features: dict, idx: np.ndarray) -> dict:
    return {c: v[idx] for c, v in features.items()}


def _resample_set(rng, n: int, groups) -> np.ndarray:
    if groups is None:
        return rng.integers(0, n, n)
    pick = rng.integers(0, len(groups), len(groups))
    return np.concatenate([groups[g] for g in pick])


def interval(features: CellFeatures, name: str, metric: str = "mm_fid", confidence: float = 0.95, *,
             resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> dict:
    """Percentile bootstrap interval of one set's summary, resampling images.

    Real images are drawn with replacement; synthetic images too, or whole source cases
    when the set records them. The same draw serves every cell of a replicate.

    Returns
    -------
    dict
        ``interval`` (low, high), ``confidence``, ``resamples``, ``unit``.
    """
    _check_metric(metric)
    confidence = _check_confidence(confidence)
    if int(resamples) < 2:
        raise ValueError(f"resamples must be >= 2, got {resamples}")
    if name not in features.sets:
        raise ValueError(f"no set named {name!r}; sets: {sorted(features.sets)}")
    rng = np.random.default_rng(seed)
    src = features.sources.get(name)
    groups = _groups(src) if src is not None else None
    nr, ns = features.n_real, features.n(name)
    vals = np.empty(int(resamples))
    for b in range(int(resamples)):
        ir = rng.integers(0, nr, nr)
        js = _resample_set(rng, ns, groups)
        vals[b] = _replicate(lambda: summaries(_take(features.real, ir), _take(features.sets[name], js),
                                               features.cells, splits=RESAMPLE_SPLITS, seed=int(rng.integers(2**31)),
                                               metrics=(metric,), real_ids=ir, syn_ids=js)[metric])
    return {"interval": _percentiles(vals, confidence),
            "confidence": confidence, "resamples": int(resamples),
            "unit": "source cases and real images" if groups is not None else "images"}


def _replicate(compute) -> float:
    """One bootstrap replicate; nan when the draw is degenerate (too few distinct images)."""
    try:
        return float(compute())
    except ValueError:
        return float("nan")


def _percentiles(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """Percentile interval over the replicates that are not degenerate."""
    ok = values[np.isfinite(values)]
    if ok.size < 2:
        raise ValueError("too few usable bootstrap replicates (the sets hold too few distinct images)")
    alpha = (1.0 - confidence) / 2.0
    return float(np.quantile(ok, alpha)), float(np.quantile(ok, 1.0 - alpha))


def _paired_groups(features: CellFeatures, a: str, b: str):
    sa, sb = features.sources.get(a), features.sources.get(b)
    if sa is None or sb is None:
        return None
    ua, ub = set(np.unique(sa).tolist()), set(np.unique(sb).tolist())
    if ua != ub:
        raise ValueError(f"sets {a!r} and {b!r} record different source cases; a paired comparison "
                         f"needs the same cases in both ({len(ua ^ ub)} differ)")
    keys = sorted(ua)
    sa, sb = np.asarray(sa), np.asarray(sb)
    return [(np.flatnonzero(sa == k), np.flatnonzero(sb == k)) for k in keys]


def _difference(features, a_feats, b_feats, metric, seed, splits, real=None, ids=(None, None, None)):
    real = features.real if real is None else real
    va = summaries(real, a_feats, features.cells, splits=splits, seed=seed, metrics=(metric,),
                   real_ids=ids[0], syn_ids=ids[1])[metric]
    vb = summaries(real, b_feats, features.cells, splits=splits, seed=seed, metrics=(metric,),
                   real_ids=ids[0], syn_ids=ids[2])[metric]
    return va - vb


def compare(features: CellFeatures, a: str, b: str, metric: str = "mm_fid", confidence: float = 0.95, *,
            resamples: int = DEFAULT_RESAMPLES, permutations: int = DEFAULT_PERMUTATIONS, seed: int = 0,
            splits: int = DEFAULT_SPLITS) -> dict:
    """Difference of two sets' summaries (a - b), its bootstrap interval and a permutation p-value.

    When both sets record their source cases (the same cases), the comparison is paired:
    the bootstrap draws source cases (the same ones for both sets) and the permutation
    swaps the two sets' images of each case with probability 1/2. Otherwise images are
    drawn independently and the permutation shuffles the pooled images of both sets.

    Returns
    -------
    dict
        ``difference``, ``interval`` (low, high), ``p_value`` (two-sided, (1 + hits) /
        (1 + permutations)), ``unit``, ``metric``, ``confidence``, ``resamples``,
        ``permutations``.
    """
    _check_metric(metric)
    confidence = _check_confidence(confidence)
    for s in (a, b):
        if s not in features.sets:
            raise ValueError(f"no set named {s!r}; sets: {sorted(features.sets)}")
    if a == b:
        raise ValueError("compare needs two different sets")
    if int(resamples) < 2 or int(permutations) < 2:
        raise ValueError(f"resamples and permutations must be >= 2, got {resamples} and {permutations}")
    fa, fb = features.sets[a], features.sets[b]
    observed = _difference(features, fa, fb, metric, seed, splits)
    # the test statistic: the same procedure for the data and every permutation
    tested = _difference(features, fa, fb, metric, seed, RESAMPLE_SPLITS)
    paired = _paired_groups(features, a, b)
    rng = np.random.default_rng(seed)
    nr, na, nb = features.n_real, features.n(a), features.n(b)

    boots = np.empty(int(resamples))
    for r in range(int(resamples)):
        ir = rng.integers(0, nr, nr)
        if paired is None:
            ia, ib = rng.integers(0, na, na), rng.integers(0, nb, nb)
        else:
            pick = rng.integers(0, len(paired), len(paired))
            ia = np.concatenate([paired[g][0] for g in pick])
            ib = np.concatenate([paired[g][1] for g in pick])
        sub = int(rng.integers(2**31))
        boots[r] = _replicate(lambda: _difference(features, _take(fa, ia), _take(fb, ib), metric, sub,
                                                  RESAMPLE_SPLITS, real=_take(features.real, ir), ids=(ir, ia, ib)))

    pooled = {c: np.concatenate([fa[c], fb[c]]) for c in features.cells}
    hits = 0
    for _ in range(int(permutations)):
        if paired is None:
            p = rng.permutation(na + nb)
            ia, ib = p[:na], p[na:]
        else:
            swap = rng.random(len(paired)) < 0.5
            ia = np.concatenate([(g[1] + na) if s else g[0] for g, s in zip(paired, swap)])
            ib = np.concatenate([g[0] if s else (g[1] + na) for g, s in zip(paired, swap)])
        d = _difference(features, _take(pooled, ia), _take(pooled, ib), metric, seed, RESAMPLE_SPLITS)
        hits += abs(d) >= abs(tested) - 1e-12 * max(abs(tested), 1.0)
    return {"metric": metric, "difference": float(observed), "interval": _percentiles(boots, confidence),
            "p_value": (1.0 + hits) / (1.0 + int(permutations)),
            "unit": "source cases (paired)" if paired is not None else "images",
            "confidence": confidence, "resamples": int(resamples), "permutations": int(permutations)}
