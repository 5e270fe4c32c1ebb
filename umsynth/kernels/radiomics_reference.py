"""Short numpy references of the radiomics matrices, written from pyradiomics' definitions
independently of the C++ kernels (whole-array shifts, line walks, scipy labelling), for the
tests. Same output as umsynth.kernels.radiomics: a Coo per matrix kind. Slow; small inputs.
"""
from __future__ import annotations

import numpy as np

from umsynth.kernels.radiomics import ANGLES, Coo

NEIGHBOURS = ANGLES + tuple((-dy, -dx) for dy, dx in ANGLES)


def discretize(image: np.ndarray, mask: np.ndarray | None, bin_width: float) -> np.ndarray:
    """pyradiomics' fixed bin width: digitize against arange(min - min % w, max + 2w, w) of the ROI."""
    out = np.zeros(image.shape, dtype=np.int32)
    for n, img in enumerate(image):
        roi = np.ones(img.shape, bool) if mask is None else mask[n].astype(bool)
        vals = img[roi].astype(np.float64)
        lo = vals.min() - vals.min() % bin_width
        edges = np.arange(lo, vals.max() + 2 * bin_width, bin_width)
        out[n][roi] = np.digitize(vals, edges)
    return out


def _shift(q: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """s[y, x] = q[y + dy, x + dx], 0 outside the image."""
    H, W = q.shape
    s = np.zeros_like(q)
    ys, yd = slice(max(dy, 0), H + min(dy, 0)), slice(max(-dy, 0), H + min(-dy, 0))
    xs, xd = slice(max(dx, 0), W + min(dx, 0)), slice(max(-dx, 0), W + min(-dx, 0))
    s[yd, xd] = q[ys, xs]
    return s


def _coo(rows: list[tuple[int, int, int, float]]) -> Coo:
    rows.sort()
    r = np.array(rows, dtype=np.float64).reshape(-1, 4)
    return Coo(r[:, 0].astype(np.int64), r[:, 1].astype(np.int32), r[:, 2].astype(np.int32), r[:, 3])


def _count(seg: int, a: np.ndarray, b: np.ndarray, rows: list) -> None:
    pairs, counts = np.unique(np.stack([a, b], 1), axis=0, return_counts=True) if a.size else ([], [])
    rows.extend((seg, int(p[0]), int(p[1]), float(c)) for p, c in zip(pairs, counts))


def glcm(q: np.ndarray) -> Coo:
    rows: list = []
    for n, img in enumerate(q):
        for k, (dy, dx) in enumerate(ANGLES):
            nb = _shift(img, dy, dx)
            ok = (img > 0) & (nb > 0)
            _count(n * 4 + k, np.concatenate([img[ok], nb[ok]]), np.concatenate([nb[ok], img[ok]]), rows)
    return _coo(rows)


def _lines(img: np.ndarray, k: int) -> list[np.ndarray]:
    H, W = img.shape
    if k == 0:
        return list(img)
    if k == 2:
        return list(img.T)
    if k == 1:
        return [np.diagonal(img, off) for off in range(-(H - 1), W)]
    flipped = img[:, ::-1]  # (dy, dx) = (1, -1): diagonals of the mirrored image
    return [np.diagonal(flipped, off) for off in range(-(H - 1), W)]


def glrlm(q: np.ndarray) -> Coo:
    rows: list = []
    for n, img in enumerate(q):
        for k in range(4):
            lines = _lines(img, k)
            if not any((ln > 0).sum() > 1 for ln in lines):
                continue  # pyradiomics drops an angle with at most one ROI pixel per line
            gl, rl = [], []
            for ln in lines:
                start = 0
                for i in range(1, len(ln) + 1):
                    if i == len(ln) or ln[i] != ln[start]:
                        if ln[start] > 0:
                            gl.append(ln[start])
                            rl.append(i - start)
                        start = i
            _count(n * 4 + k, np.array(gl), np.array(rl), rows)
    return _coo(rows)


def glszm(q: np.ndarray) -> Coo:
    from scipy import ndimage

    rows: list = []
    for n, img in enumerate(q):
        gl, size = [], []
        for g in np.unique(img[img > 0]):
            lab, nz = ndimage.label(img == g, structure=np.ones((3, 3)))
            sizes = np.bincount(lab.ravel())[1:]
            gl += [g] * nz
            size += list(sizes)
        _count(n, np.array(gl), np.array(size), rows)
    return _coo(rows)


def gldm(q: np.ndarray, alpha: int = 0) -> Coo:
    rows: list = []
    for n, img in enumerate(q):
        dep = np.zeros(img.shape, np.int64)
        for dy, dx in NEIGHBOURS:
            nb = _shift(img, dy, dx)
            dep += (nb > 0) & (np.abs(nb.astype(np.int64) - img) <= alpha)
        roi = img > 0
        _count(n, img[roi], dep[roi] + 1, rows)
    return _coo(rows)


def ngtdm(q: np.ndarray) -> Coo:
    rows: list = []
    for n, img in enumerate(q):
        total = np.zeros(img.shape, np.float64)
        count = np.zeros(img.shape, np.int64)
        for dy, dx in NEIGHBOURS:
            nb = _shift(img, dy, dx)
            total += nb
            count += nb > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            diff = np.where(count > 0, np.abs(img - total / np.maximum(count, 1)), 0.0)
        roi = img > 0
        for g in np.unique(img[roi]):
            sel = roi & (img == g)
            rows.append((n, int(g), int(sel.sum()), float(diff[sel].sum())))
    return _coo(rows)
