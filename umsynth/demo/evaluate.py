"""The demo's evaluation: controls, MM-FID of every set, the utility experiment and the verdict.

These stages take synthetic sets as arrays, whatever made them, so a test can hand them the
perfect generator (real images) and check that nothing comes out significant.

Claims tested (the seed README's): V2UM2I beats V2M2I on

* **fidelity**: lower MM-FID (reference-normalized, 1 = like real data);
* **variety**: higher MM-STD (the paper's direction; 1 = as varied as real data);
* **utility**: higher mean foreground Dice (lung, lesion) on real test images of a segmenter
  trained on the labelled real cases plus the set.

Each claim gets the difference V2UM2I - V2M2I, a 95 % interval and a p-value from an
independent unit (the verdict needs both: the interval wholly on one side of 0 and p < 0.05): with several training seeds, the seeds (a t interval over the per-seed
differences); with one, the source cases resampled in pairs (MM-FID, MM-STD) or the test
images and segmenter seeds (utility). Never from the K x S cells of one MM-FID table.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage, stats

from umsynth.demo.utility import (SegmenterConfig, foreground_table, label_fidelity, paired_bootstrap,
                                  utility_experiment)

__all__ = ["MODELS", "CONTROLS", "CLAIMS", "VERDICTS", "degrade", "verdict_of", "seed_summary",
           "mmfid_sets", "utility_sets", "judge"]

#: model name -> conditioning of its training run
MODELS = {"v2um2i": "um", "v2m2i": "mask"}
#: the controls every table shows: the perfect generator and a damaged copy of it
CONTROLS = ("real", "degraded")
#: claim -> (metric, +1 when higher is better for V2UM2I, -1 when lower is)
CLAIMS = {"fidelity": ("mm_fid", -1), "variety": ("mm_std", +1), "utility": ("mean_foreground_dice", +1)}
VERDICTS = ("supported", "not supported", "inconclusive at this budget")
_ALIASES = {"real": "real pool (control)", "degraded": "degraded (control)"}


def degrade(images: np.ndarray, seed: int = 0, blur: float = 1.0, noise: float = 10.0) -> np.ndarray:
    """The "degraded" control: uint8 images blurred (Gaussian, ``blur`` px) with added noise
    (Gaussian, ``noise`` grey levels), clipped to 0..255."""
    x = np.asarray(images, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"images must be (N, H, W), got shape {x.shape}")
    rng = np.random.default_rng([seed, 19])
    out = ndimage.gaussian_filter(x, (0, blur, blur)) + rng.normal(0.0, noise, x.shape)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def verdict_of(interval, better: int, p_value: float | None = None, alpha: float = 0.05) -> str:
    """"supported" when the whole interval lies on the better side of 0, "not supported" when
    it lies wholly on the other side, else "inconclusive at this budget".

    When a p-value is given it must agree (``p_value < alpha``): a bootstrap interval that
    just misses 0 beside a permutation p-value of 0.3 is not evidence either way.
    """
    lo, hi = interval
    if lo is None or hi is None or not (np.isfinite(lo) and np.isfinite(hi)):
        return VERDICTS[2]
    if p_value is not None and not p_value < alpha:
        return VERDICTS[2]
    if better * lo > 0 and better * hi > 0:
        return VERDICTS[0]
    if better * lo < 0 and better * hi < 0:
        return VERDICTS[1]
    return VERDICTS[2]


def seed_summary(diffs, confidence: float = 0.95) -> dict:
    """Mean of per-training-seed differences with a t interval and a one-sample t-test p-value."""
    d = np.asarray([v for v in diffs if v is not None and np.isfinite(v)], dtype=np.float64)
    if len(d) < 2:
        raise ValueError(f"diffs: need at least 2 finite per-seed differences, got {len(d)}")
    m, se = float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d)))
    if se == 0:
        iv, p = (m, m), (1.0 if m == 0 else 0.0)
    else:
        h = float(stats.t.ppf(0.5 + confidence / 2, len(d) - 1)) * se
        iv, p = (m - h, m + h), float(stats.ttest_1samp(d, 0.0).pvalue)
    return {"difference": m, "interval": iv, "p_value": p, "unit": f"training seeds (n = {len(d)})",
            "per_seed": d.tolist()}


# ----------------------------------------------------------------------------- MM-FID


def _interval(res, name: str, metric: str):
    got = res.interval(name, confidence=0.95, metric=metric)
    got = got["interval"] if isinstance(got, dict) else got
    return tuple(float(v) for v in got)


def _summary(table: dict, name: str):
    """The summary of one set from a result table (name -> (summary, spread of the cells))."""
    v = table.get(name)
    if v is None:
        return None
    return float(v[0] if isinstance(v, (tuple, list)) else v)


def mmfid_sets(test_images: np.ndarray, sets: dict, sources: dict, suite, *, scales, device: str = "cpu",
               seed: int = 0, knn_reference=None, tsne=None, progress: bool = False) -> dict:
    """MM-FID, MM-STD and KID of every set against the real test images, with intervals.

    Parameters
    ----------
    test_images : ndarray (N, H, W) uint8
        The held-out real images.
    sets : dict name -> ndarray (M, H, W) uint8
        The models' sets and the controls.
    sources : dict name -> ndarray (M,) int
        The source case of every image; sets with the same source cases are compared in pairs.
    suite : path or suite
        The extractor suite.

    Returns
    -------
    dict
        ``sets``: per name ``mm_fid``, ``mm_std``, ``kid`` and their 95 % intervals;
        ``comparison``: V2UM2I - V2M2I for each of those metrics (``difference``,
        ``interval``, ``p_value``, ``unit``); ``sensitivity``: the same for degraded - real
        control, which a metric able to decide the comparison must find significant;
        ``reference``: the result's reference status;
        ``result``: the full :meth:`MMFIDResult.to_dict`.
    """
    from umsynth.metrics.mmfid import mmfid

    # the "real" control is a synthetic set to MM-FID: named apart from its real (test) set in figures
    alias = {name: _ALIASES.get(name, name) for name in sets}
    res = mmfid(test_images, {alias[k]: v for k, v in sets.items()}, suite, scales=scales, device=device,
                normalization="reference", sources={alias[k]: np.asarray(v) for k, v in sources.items()}, knn=True,
                knn_reference=knn_reference, tsne=tsne, seed=seed, progress=progress)
    out = {"sets": {}, "comparison": {}}
    for name in sets:
        a = alias[name]
        out["sets"][name] = {"mm_fid": _summary(res.mm_fid, a), "mm_std": _summary(res.mm_std, a),
                             "kid": _summary(res.mm_kid, a), "mm_fid_interval": _interval(res, a, "mm_fid"),
                             "mm_std_interval": _interval(res, a, "mm_std"), "kid_interval": _interval(res, a, "kid")}
    a, b = MODELS
    if a in sets and b in sets:
        out["comparison"] = _compare_all(res, a, b)
    real, degraded = (alias[c] for c in CONTROLS) if all(c in sets for c in CONTROLS) else (None, None)
    if real is not None:
        # the positive control: a metric that cannot tell the degraded copy from the real images
        # at this size cannot decide the models' comparison either
        out["sensitivity"] = _compare_all(res, degraded, real)
    out["reference"] = {k: res.reference.get(k) for k in ("status", "message")}
    out["result"] = res.to_dict()
    return out


def _compare_all(res, a: str, b: str) -> dict:
    """``a - b`` for MM-FID, MM-STD and KID (difference, interval, p-value, unit)."""
    out = {}
    for metric in ("mm_fid", "mm_std", "kid"):
        c = dict(res.compare(a, b, metric=metric))
        out[metric] = {k: c.get(k) for k in ("difference", "interval", "p_value", "unit")}
    return out


# ----------------------------------------------------------------------------- utility


def utility_sets(real_images, real_labels, sets: dict, test_images, test_labels, truth: dict,
                 cfg: SegmenterConfig, seeds: int = 3, device: str = "cpu", progress: bool = False,
                 baseline: bool = True) -> dict:
    """The utility experiment for ``sets`` (name -> (images, labels)), plus each set's label
    fidelity against ``truth`` (name -> ground-truth labels of its source cases)."""
    res = utility_experiment(real_images, real_labels, sets, test_images, test_labels, cfg, seeds=seeds,
                             device=device, progress=progress, baseline=baseline)
    fid = {name: label_fidelity(labels, truth[name], cfg.n_classes) for name, (_, labels) in sets.items()
           if name in truth}
    return {"arms": res, "label_fidelity": fid}


# ----------------------------------------------------------------------------- verdict


def judge(mm_by_seed: list[dict], utility_by_seed: list[dict]) -> dict:
    """The verdict on each claim from one :func:`mmfid_sets` and one model-arm
    :func:`utility_sets` result per training seed.

    Returns
    -------
    dict
        claim -> ``difference`` (V2UM2I - V2M2I), ``interval``, ``p_value``, ``unit``,
        ``metric``, ``better`` ("lower" or "higher") and ``verdict`` (one of :data:`VERDICTS`).
    """
    if not mm_by_seed or len(mm_by_seed) != len(utility_by_seed):
        raise ValueError("judge: need one MM-FID and one utility result per training seed")
    a, b = MODELS
    out = {}
    for claim, (metric, better) in CLAIMS.items():
        if claim == "utility":
            pairs = [paired_bootstrap(foreground_table(u["arms"], f"real+{a}"), foreground_table(u["arms"], f"real+{b}"))
                     for u in utility_by_seed]
        else:
            pairs = [m["comparison"][metric] for m in mm_by_seed]
        if len(pairs) == 1:
            r = {k: pairs[0].get(k) for k in ("difference", "interval", "p_value", "unit")}
            r["interval"] = tuple(r["interval"]) if r["interval"] is not None else (None, None)
        else:
            r = seed_summary([p["difference"] for p in pairs])
        r.update(metric=metric, better="higher" if better > 0 else "lower",
                 verdict=verdict_of(r["interval"], better, r["p_value"]))
        out[claim] = r
    return out
