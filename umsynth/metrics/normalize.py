"""Turning K x S tables of Fréchet distances and STDs into MM-FID and MM-STD.

Two normalizations:

``reference`` (one synthetic set, or any number)
    Each cell is divided by a reference from the real data alone:
    FD cell / FD(real even-indexed images, real odd-indexed images), and
    STD cell / STD of the real features. A value near 1 means "as far from the real set as
    one half of the real data is from the other half" (FD) or "as varied as the real data"
    (STD); the numbers compare across runs, suites and sets. Note that the two real halves
    hold n/2 images each, so the reference carries the finite-sample bias of n/2 samples.

``cross-set`` (MedSynAnalyzer's procedure, for several synthetic sets)
    For each extractor (a table row), the FD values of all sets and scales are put side by
    side in one row and that row is divided by its L2 norm (``sklearn.preprocessing.normalize``);
    likewise for STD. With one set this is exactly the authors' per-row normalization; it
    is scale-blind (rows [40, 60, 80, 100] and ten times that give the same numbers), so it
    only ranks sets against each other.

MM-FID (MM-STD) of a set is the mean of its normalized cells, reported with their
standard deviation (``numpy.std``, ddof 0, as the authors report it).
"""
from __future__ import annotations

import numpy as np

__all__ = ["cross_set_normalize", "reference_normalize", "mm_summary"]


def _tables(tables: dict, name: str) -> dict:
    if not isinstance(tables, dict) or not tables:
        raise ValueError(f"{name}: expected a non-empty dict of set name -> (K, S) table")
    out = {k: np.asarray(v, dtype=np.float64) for k, v in tables.items()}
    shapes = {v.shape for v in out.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"{name}: every table must be 2-D of the same shape, got {sorted(shapes)}")
    for k, v in out.items():
        if not np.isfinite(v).all():
            raise ValueError(f"{name}[{k!r}] contains NaN or Inf")
    return out


def cross_set_normalize(tables: dict) -> dict:
    """MedSynAnalyzer's L2 normalization, each extractor's row taken across all sets.

    Parameters
    ----------
    tables : dict of str -> array_like (K, S)
        One K x S table per synthetic set (FD or STD).

    Returns
    -------
    dict of str -> numpy.ndarray (K, S)
        Row k of every set divided by the L2 norm of row k over all sets and scales
        (a zero row stays zero, as in sklearn).
    """
    t = _tables(tables, "tables")
    stacked = np.concatenate(list(t.values()), axis=1)  # (K, sets * S)
    norm = np.sqrt(np.einsum("ij,ij->i", stacked, stacked))
    norm[norm == 0] = 1.0
    s = next(iter(t.values())).shape[1]
    return {name: stacked[:, i * s:(i + 1) * s] / norm[:, None] for i, name in enumerate(t)}


def reference_normalize(tables: dict, reference) -> dict:
    """Divide each set's table cell by cell by a table from the real data.

    Raises
    ------
    ValueError
        If a reference cell is zero or negative (e.g. identical real halves).
    """
    t = _tables(tables, "tables")
    ref = np.asarray(reference, dtype=np.float64)
    if ref.shape != next(iter(t.values())).shape:
        raise ValueError(f"reference has shape {ref.shape}, tables have {next(iter(t.values())).shape}")
    if not (ref > 0).all():
        raise ValueError("reference table has zero or negative cells: the real data cannot serve as a "
                         "reference (too few images, or duplicates?)")
    return {k: v / ref for k, v in t.items()}


def mm_summary(table) -> tuple[float, float]:
    """(mean, std with ddof 0) of a normalized table's cells."""
    a = np.asarray(table, dtype=np.float64)
    return float(a.mean()), float(a.std())
