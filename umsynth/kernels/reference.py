"""Plain numpy references of umsynth's kernels, for tests (like gsplat's _torch_impl).

``fast_slic_reference`` re-states the fast SLIC of ``csrc/slic/slic_steps.h`` with
numpy: the same seeds, candidate cells, float32 distance operations, integer centre
sums, tie rule and connectivity rules. Tests require the compiled kernel to give
exactly its labels and masks. It is slow (pure numpy) and meant for small images.

Every rule here is independent of the order in which threads or atomics run, which is
what lets the CPU (OpenMP) and CUDA launchers give the same labels bit for bit:
components are 4/6-connected pieces of one label, numbered by their first pixel in
raster order; pieces below min_size merge in rounds (each round, every group below
min_size joins its adjacent group of largest size, ties to the smaller id, all at
once; at most 64 rounds, stopping when a round merges nothing); surviving groups get
consecutive labels in raster order of their first pixel.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

FIXED = 2.0 ** 20


# ------------------------------------------------------------------ scalar helpers


def quantize_feature(f: np.ndarray) -> np.ndarray:
    """Onto the 2^-20 grid, halves away from zero, as float32."""
    s = np.asarray(f, dtype=np.float64) * FIXED
    r = np.where(s >= 0, np.trunc(s + 0.5), -np.trunc(-s + 0.5))
    return (r / FIXED).astype(np.float32)


def _cbrt(x):
    s = np.ones_like(x)
    m = x.copy()
    for _ in range(64):  # scale into [1, 8) by powers of 8
        big = m >= 8.0
        m = np.where(big, m * 0.125, m)
        s = np.where(big, s * 2.0, s)
        small = m < 1.0
        m = np.where(small, m * 8.0, m)
        s = np.where(small, s * 0.5, s)
    r = 1.0 + (m - 1.0) * (1.0 / 7.0)
    for _ in range(6):
        r = r - (r * r * r - m) / (3.0 * r * r)
    return r * s


def _log(x):
    ln2 = 0.69314718055994530942
    e = np.zeros_like(x)
    for _ in range(1100):
        hi = x > 1.4142135623730951
        lo = x < 0.7071067811865476
        if not (hi.any() or lo.any()):
            break
        x = np.where(hi, x * 0.5, np.where(lo, x * 2.0, x))
        e = e + hi - lo
    t = (x - 1.0) / (x + 1.0)
    t2, term, total = t * t, t, np.zeros_like(x)
    for k in range(1, 29, 2):
        total = total + term / float(k)
        term = term * t2
    return 2.0 * total + e * ln2


def _exp(y):
    ln2 = 0.69314718055994530942
    k = np.trunc(y / ln2 + np.where(y >= 0, 0.5, -0.5))
    r = y - k * ln2
    term, total = np.ones_like(y), np.ones_like(y)
    for i in range(1, 20):
        term = term * (r / float(i))
        total = total + term
    return total * np.power(2.0, k)  # exact: powers of two


def _srgb_linear(v):
    return np.where(v > 0.04045, _exp(2.4 * _log(np.maximum((v + 0.055) / 1.055, 1e-300))),
                    v / 12.92)


def _lab_f(t):
    return np.where(t > 0.008856, _cbrt(np.maximum(t, 1e-300)), 7.787 * t + 16.0 / 116.0)


def lstar_unit(v: np.ndarray) -> np.ndarray:
    """CIE L*/100 of grey levels in [0, 1] with the kernel's own elementary functions."""
    y = _srgb_linear(np.asarray(v, np.float64)) * (0.212671 + 0.715160 + 0.072169)
    return (116.0 * _lab_f(y) - 16.0) / 100.0


# ------------------------------------------------------------------ fast SLIC


def _unit_checked(v):
    """The kernel's unit_checked: into [-1, 2], NaN to 0 (a no-op on valid input)."""
    return np.clip(np.nan_to_num(v, nan=0.0, posinf=2.0, neginf=-1.0), -1.0, 2.0)


def _features(img, mask, intensity):
    vals = img if mask is None else img[mask.astype(bool)]
    lo, hi = float(vals.min()), float(vals.max())
    with np.errstate(over="ignore", divide="ignore"):
        inv = 1.0 / (hi - lo) if hi > lo else 0.0
        if not (np.isfinite(hi - lo) and np.isfinite(inv)):
            inv = 0.0  # the kernel's rescale_inv: a subnormal or overflowing range
        unit = _unit_checked((img.astype(np.float64) - lo) * inv)
    if intensity == "lab":
        if img.shape[-1] != 1:
            raise NotImplementedError("the reference covers grey Lab only")
        unit = lstar_unit(unit)
    return quantize_feature(unit), lo, hi


def _cell_of(coord, start, step, n):
    num = 2 * (coord - start) + step
    c = np.where(num >= 0, num // (2 * step), 0)
    return np.minimum(c, n - 1)


def fast_slic_reference(image, grid, weights, cw, max_iter=10, min_size=0, enforce=True,
                        start_label=1, mask=None, intensity="linear", slic_zero=False):
    """Labels of the fast SLIC for one (D, H, W, C) image.

    grid: 9 ints (start, step, n per axis z, y, x); weights: (wz, wy, wx); cw: colour
    weight; slic_zero: SLICO, each centre's weight is cw / max(1, cw * the largest
    colour distance of its pixels after any update so far). Returns (labels (D, H, W)
    int64, lo, hi).
    """
    D, H, W, C = image.shape
    feat, lo, hi = _features(image, mask, intensity)
    f32 = np.float32
    axes = [tuple(int(v) for v in grid[3 * a: 3 * a + 3]) for a in range(3)]
    zz, yy, xx = np.meshgrid(np.arange(D), np.arange(H), np.arange(W), indexing="ij")
    cells = [_cell_of(c, *a) for c, a in zip((zz, yy, xx), axes)]
    nz, ny, nx = (a[2] for a in axes)
    K = nz * ny * nx
    F = 3 + C
    centres = np.zeros((K, F), np.float32)
    alive = np.zeros(K, bool)
    # seeds
    if mask is None:
        for k in range(K):
            gz, gy, gx = k // (ny * nx), (k // nx) % ny, k % nx
            z, y, x = (a[0] + g * a[1] for a, g in zip(axes, (gz, gy, gx)))
            centres[k] = [z, y, x, *feat[z, y, x]]
            alive[k] = True
    else:
        m = mask.astype(bool)
        seedpos = [a[0] + c * a[1] for a, c in zip(axes, cells)]
        d2 = sum((c - s) ** 2 for c, s in zip((zz, yy, xx), seedpos)).astype(np.int64)
        idx = np.arange(D * H * W).reshape(D, H, W)
        key = (d2 << 32) | idx
        kcell = (cells[0] * ny + cells[1]) * nx + cells[2]
        for k in np.unique(kcell[m]):
            sel = m & (kcell == k)
            i = int(key[sel].min() & 0xFFFFFFFF)
            z, y, x = np.unravel_index(i, (D, H, W))
            centres[k] = [z, y, x, *feat[z, y, x]]
            alive[k] = True
    w = [f32(v) for v in weights]
    cw = f32(cw)
    cwk = np.full(K, cw, np.float32)      # per-centre colour weights
    cmax = np.ones(K, np.float32)         # SLICO: largest cw * colour distance so far
    fz, fy, fx = (a.astype(np.float32) for a in (zz, yy, xx))
    labels = np.full((D, H, W), -2, np.int64)

    def assign():
        best = np.full((D, H, W), np.inf, np.float32)
        lab = np.full((D, H, W), -1, np.int64)
        for oz in (-1, 0, 1):
            for oy in (-1, 0, 1):
                for ox in (-1, 0, 1):
                    gz, gy, gx = cells[0] + oz, cells[1] + oy, cells[2] + ox
                    ok = (gz >= 0) & (gz < nz) & (gy >= 0) & (gy < ny) & (gx >= 0) & (gx < nx)
                    k = np.where(ok, (gz * ny + gy) * nx + gx, 0)
                    ok &= alive[k]
                    c = centres[k]
                    dz, dy, dx = c[..., 0] - fz, c[..., 1] - fy, c[..., 2] - fx
                    a = w[0] * (dz * dz) + w[1] * (dy * dy)
                    colour = np.zeros((D, H, W), np.float32)
                    for ch in range(C):
                        t = feat[..., ch] - c[..., 3 + ch]
                        colour = colour + t * t
                    d = (a + w[2] * (dx * dx)) + cwk[k] * colour
                    win = ok & ((d < best) | ((d == best) & (k < lab)))
                    best = np.where(win, d, best)
                    lab = np.where(win, k, lab)
        if mask is not None:
            lab[~mask.astype(bool)] = -1
        return lab

    def update(lab):
        valid = lab >= 0
        kk = lab[valid]
        n = np.bincount(kk, minlength=K)
        sums = [np.bincount(kk, weights=v[valid], minlength=K) for v in (zz, yy, xx)]
        fixed = (feat * np.float32(FIXED)).astype(np.int32).astype(np.int64)
        sums += [np.bincount(kk, weights=fixed[..., ch][valid], minlength=K) for ch in range(C)]
        # bincount sums in float64: exact here (integers well below 2^53)
        for k in np.nonzero(alive & (n > 0))[0]:
            dn = float(n[k])
            centres[k, :3] = [s[k] / dn for s in sums[:3]]
            centres[k, 3:] = [s[k] / dn / FIXED for s in sums[3:]]

    def reweigh(lab):  # SLICO, after an update: the kernel's ColourMax and CentreWeight
        valid = lab >= 0
        c = centres[lab[valid]]
        colour = np.zeros(c.shape[0], np.float32)
        for ch in range(C):
            t = feat[..., ch][valid] - c[:, 3 + ch]
            colour = colour + t * t
        biggest = np.zeros(K, np.float32)
        np.maximum.at(biggest, lab[valid], colour)
        upd = alive.copy()
        cmax[upd] = np.maximum(cmax[upd], cw * biggest[upd])
        cwk[upd] = cw / cmax[upd]

    for it in range(max_iter):
        new = assign()
        changed = not np.array_equal(new, labels)
        labels = new
        if not changed and it > 0:
            break
        update(labels)
        if slic_zero:
            reweigh(labels)
    if max_iter == 0:
        labels = assign()
    if enforce:
        labels = _connectivity_reference(labels, min_size, start_label)
    else:
        labels = np.where(labels < 0, start_label - 1, labels + start_label)
    return labels, lo, hi


def _connectivity_reference(labels, min_size, start_label):
    D, H, W = labels.shape
    struct = ndimage.generate_binary_structure(3, 1)
    comp = np.full(labels.shape, -1, np.int64)
    n_comp = 0
    for v in np.unique(labels[labels >= 0]):
        lab, n = ndimage.label(labels == v, structure=struct)
        comp[lab > 0] = lab[lab > 0] - 1 + n_comp
        n_comp += n
    # compact ids in raster order of each component's first pixel
    flat = comp.ravel()
    valid = flat >= 0
    first = np.full(n_comp, flat.size, np.int64)
    np.minimum.at(first, flat[valid], np.nonzero(valid)[0])
    order = np.argsort(first)
    rank = np.empty(n_comp, np.int64)
    rank[order] = np.arange(n_comp)
    ids = np.where(comp >= 0, rank[np.maximum(comp, 0)], -1)
    R = n_comp
    size = np.bincount(ids[ids >= 0], minlength=R).astype(np.int64)
    grp = np.arange(R)
    # neighbour pairs (both directions) along each axis
    pairs = []
    for ax in range(3):
        a = np.moveaxis(ids, ax, 0)
        u, v = a[:-1].ravel(), a[1:].ravel()
        ok = (u >= 0) & (v >= 0) & (u != v)
        pairs.append(np.stack([u[ok], v[ok]], 1))
        pairs.append(np.stack([v[ok], u[ok]], 1))
    pairs = np.unique(np.concatenate(pairs), axis=0) if pairs else np.zeros((0, 2), np.int64)

    def find(parent, i):
        while parent[i] != i:
            i = parent[i]
        return i

    if min_size > 1:
        for _ in range(64):
            if not any(grp[j] == j and size[j] < min_size for j in range(R)):
                break
            best = {}
            for u, v in pairs:
                g, h = grp[u], grp[v]
                if g == h or size[g] >= min_size:
                    continue
                key = (size[h], -h)
                if g not in best or key > best[g]:
                    best[g] = key
            if not best:
                break
            up = np.arange(R)
            for g in sorted(best):
                a, b = find(up, g), find(up, -best[g][1])
                if a != b:
                    up[max(a, b)] = min(a, b)
            for g in range(R):
                if grp[g] == g:
                    t = find(up, g)
                    if t != g:
                        size[t] += size[g]
            grp = np.array([find(up, grp[j]) for j in range(R)])
    survivors = np.nonzero(grp == np.arange(R))[0]
    final = np.full(R, -1, np.int64)
    final[survivors] = np.arange(len(survivors))
    out = np.where(ids >= 0, final[grp[np.maximum(ids, 0)]] + start_label, start_label - 1)
    return out


def unsupervised_mask_reference(image, labels, step, start_label=1):
    """Mean grey level per label on the 0..255 scale, floored to `step` (kernel's rule)."""
    img = np.asarray(image)
    lo, hi = float(img.min()), float(img.max())
    if img.dtype == np.uint8:
        fixed = img.astype(np.int64) << 16
    else:
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        fixed = np.trunc((img.astype(np.float64) - lo) * scale * 65536.0 + 0.5).astype(np.int64)
    lab = np.asarray(labels) - start_label
    valid = lab >= 0
    L = int(lab.max()) + 1
    s = np.zeros(L, np.int64)
    np.add.at(s, lab[valid], fixed[valid])
    n = np.bincount(lab[valid], minlength=L)
    mean = s / (n * 65536.0)
    q = np.clip(np.trunc(mean / step) * step, 0, 255).astype(np.uint8)
    return np.where(valid, q[np.maximum(lab, 0)], 0).astype(np.uint8)
