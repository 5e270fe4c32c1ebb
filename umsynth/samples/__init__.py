"""A small deterministic chest-CT phantom, and the sample images bundled with umsynth.

The phantom is built in Hounsfield units and windowed like the SemiCS2 data
([-1500, 100] HU -> [0, 255]). It is meant for tests, demos and benchmarks: it has
air, a table, a body with fat and muscle, two lungs with vessels, a heart, an aorta,
a spine and ribs, and a few lesions, so SLIC has real structure to find. It is not
anatomy. Label maps use the project's classes: 0 background/body, 1 lung, 2 lesion.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy import ndimage

__all__ = ["chest_slice", "chest_montage", "chest_volume", "hu_to_uint8", "bundled", "write_bundled"]

HU_WINDOW = (-1500.0, 100.0)
_HERE = Path(__file__).resolve().parent
_BUNDLED = {"chest_montage_0.png": ("montage", 0), "chest_slice_1.png": ("slice", 1)}


def hu_to_uint8(hu: np.ndarray, window: tuple[float, float] = HU_WINDOW) -> np.ndarray:
    """Clip HU to ``window`` and map it linearly to uint8 [0, 255] (rounded)."""
    lo, hi = window
    x = (np.clip(np.asarray(hu, dtype=np.float64), lo, hi) - lo) * (255.0 / (hi - lo))
    return np.rint(x).astype(np.uint8)


def _anatomy(seed: int) -> dict:
    """Draw the patient: every random choice, shared by all slices of one volume."""
    rng = np.random.default_rng(seed)
    lung_c = [(-0.40 + rng.normal(0, 0.02), -0.05), (0.40 + rng.normal(0, 0.02), -0.05)]
    lesions = []  # spheres: (z centre, y, x, radius, HU); the first sits mid-volume
    for k in range(int(rng.integers(2, 5))):
        cx, cy = lung_c[k % 2]
        tz = 0.5 if k == 0 else rng.uniform(0.2, 0.8)
        lesions.append((tz, cy + rng.uniform(-0.2, 0.2), cx + rng.uniform(-0.08, 0.08),
                        rng.uniform(0.03, 0.065), rng.uniform(0, 40)))
    vessels = []  # tubes roughly along z: (y0, x0, dy/dt, dx/dt, radius, HU)
    for cx, cy in lung_c:
        hx = cx - 0.15 * np.sign(cx)  # hilum: vessels are thicker near it
        for _ in range(36):
            y0, x0 = cy + rng.uniform(-0.34, 0.34), cx + rng.uniform(-0.2, 0.2)
            d = min(1.0, np.hypot(y0 - cy, x0 - hx) / 0.4)
            vessels.append((y0, x0, rng.normal(0, 0.08), rng.normal(0, 0.08),
                            0.004 + 0.012 * (1 - d) * rng.uniform(0.5, 1.0), rng.uniform(-80, 40)))
    return {"body": (0.86 + rng.normal(0, 0.02), 0.62 + rng.normal(0, 0.02)),
            "lungs": lung_c, "lung_ax": (0.26 + rng.normal(0, 0.01), 0.40 + rng.normal(0, 0.01)),
            "lesions": lesions, "vessels": vessels, "noise_seed": int(rng.integers(2**31))}


def _ellipse(x, y, cx, cy, ax, ay):
    return ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 <= 1.0


def _slice_hu(anat: dict, t: float, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One axial slice at height ``t`` (0 apex .. 1 base) as (HU float32, labels uint8)."""
    c = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    y, x = np.meshgrid(c, c, indexing="ij")
    hu = np.full((size, size), -1000.0)
    lab = np.zeros((size, size), np.uint8)
    # table: a curved plastic board with a hollow core under the patient
    tb = np.abs(y - 0.73 - 0.04 * x**2)
    hu[(tb < 0.035) & (np.abs(x) < 0.95)] = 150.0
    hu[(tb < 0.015) & (np.abs(x) < 0.90)] = -600.0
    bx, by = anat["body"]
    hu[_ellipse(x, y, 0.0, 0.05, bx, by)] = -100.0  # subcutaneous fat
    hu[_ellipse(x, y, 0.0, 0.05, bx - 0.07, by - 0.06)] = 40.0  # muscle / soft tissue
    # ribs: small bony ovals on a ring just inside the muscle
    for a in np.linspace(0.15, np.pi - 0.15, 7):
        for s in (-1, 1):
            rx, ry = s * (bx - 0.12) * np.cos(a), 0.05 - (by - 0.1) * np.sin(a)
            hu[_ellipse(x, y, rx, ry, 0.035, 0.022)] = 700.0
    # lungs grow from apex to base
    g = 0.65 + 0.35 * np.sin(np.pi * (0.15 + 0.7 * t))
    lax, lay = anat["lung_ax"][0] * g, anat["lung_ax"][1] * g
    lung = np.zeros((size, size), bool)
    for cx, cy in anat["lungs"]:
        lung |= _ellipse(x, y, cx, cy, lax, lay)
    lung &= ~_ellipse(x, y, 0.08, 0.12, 0.18 * g + 0.04, 0.16 * g + 0.03)  # heart notch
    hu[lung] = -850.0
    lab[lung] = 1
    hu[_ellipse(x, y, 0.08, 0.12, 0.18 * g, 0.16 * g)] = 45.0  # heart
    hu[_ellipse(x, y, -0.08, 0.33, 0.055, 0.055)] = 55.0  # descending aorta
    hu[_ellipse(x, y, 0.0, 0.45, 0.10, 0.085)] = 700.0  # vertebral body, cortical rim
    hu[_ellipse(x, y, 0.0, 0.45, 0.075, 0.062)] = 300.0  # cancellous bone
    hu[_ellipse(x, y, 0.0, 0.585, 0.04, 0.035)] = 20.0  # spinal canal
    for y0, x0, dy, dx, r, v in anat["vessels"]:
        tube = _ellipse(x, y, x0 + dx * (t - 0.5), y0 + dy * (t - 0.5), r, r) & lung
        hu[tube] = v
    for tz, cy, cx, r, v in anat["lesions"]:
        rr = r * r - ((t - tz) * 0.2) ** 2  # spheres: the radius shrinks away from tz
        if rr > 0:
            blob = _ellipse(x, y, cx, cy, np.sqrt(rr), np.sqrt(rr)) & lung
            hu[blob] = v
            lab[blob] = 2
    # partial-volume blur and mild quantum noise, both scaled to the matrix size
    hu = ndimage.gaussian_filter(hu, sigma=0.9 * size / 512)
    hu += rng.normal(0.0, 15.0, hu.shape)
    return hu.astype(np.float32), lab


def chest_volume(seed: int = 0, shape: tuple[int, int, int] = (24, 96, 96), hu: bool = False):
    """A chest phantom volume from apex (z=0) to lung base.

    Parameters
    ----------
    seed : int
        Selects the patient (organ sizes, vessels, lesions) and the noise.
    shape : tuple of int
        (depth, size, size); slices must be square.
    hu : bool
        Return float32 HU instead of the windowed uint8 image.

    Returns
    -------
    image : ndarray, uint8 (or float32 HU), shape ``shape``
    labels : ndarray, uint8, shape ``shape``; 0 background/body, 1 lung, 2 lesion.
    """
    depth, h, w = (int(v) for v in shape)
    if h != w or depth < 1 or h < 8:
        raise ValueError(f"shape must be (depth>=1, size>=8, size) with square slices, got {shape}")
    anat = _anatomy(seed)
    rng = np.random.default_rng(anat["noise_seed"])
    out = [_slice_hu(anat, (k + 0.5) / depth, h, rng) for k in range(depth)]
    vol = np.stack([o[0] for o in out])
    labels = np.stack([o[1] for o in out])
    return (vol if hu else hu_to_uint8(vol)), labels


def chest_slice(seed: int = 0, size: int = 512, t: float = 0.5):
    """One windowed axial phantom slice at height ``t`` (0 apex .. 1 base).

    Returns
    -------
    image : ndarray, uint8 (size, size)
    labels : ndarray, uint8 (size, size); 0 background/body, 1 lung, 2 lesion.
    """
    anat = _anatomy(seed)
    hu, lab = _slice_hu(anat, float(t), int(size), np.random.default_rng(anat["noise_seed"]))
    return hu_to_uint8(hu), lab


def chest_montage(seed: int = 0, size: int = 512):
    """A 2x2 montage of four slices of one patient, laid out as in SemiCS2 (method.md §1).

    Slices are taken at heights 0.1, 0.3, 0.5, 0.7 (the lung range with 10 % trimmed,
    step a quarter of the rest); the left column holds slices 0 and 1, the right 2 and 3.

    Returns
    -------
    image : ndarray, uint8 (2*size, 2*size)
    labels : ndarray, uint8 (2*size, 2*size)
    """
    anat = _anatomy(seed)
    rng = np.random.default_rng(anat["noise_seed"])
    img = np.empty((2 * size, 2 * size), np.uint8)
    lab = np.empty((2 * size, 2 * size), np.uint8)
    for i in range(4):
        hu, lb = _slice_hu(anat, 0.1 + 0.2 * i, size, rng)
        r, c = (i % 2) * size, (i // 2) * size
        img[r:r + size, c:c + size] = hu_to_uint8(hu)
        lab[r:r + size, c:c + size] = lb
    return img, lab


def bundled() -> list[Path]:
    """Paths of the sample images shipped with umsynth (labels sit beside them as ``*_labels.png``)."""
    return [_HERE / name for name in _BUNDLED]


def write_bundled(directory: str | os.PathLike | None = None) -> list[Path]:
    """(Re)generate the bundled sample PNGs and their label maps; returns the image paths.

    Run once by the developers; the PNGs are committed so users need no generator run.
    """
    from PIL import Image

    d = Path(directory) if directory is not None else _HERE
    d.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, (kind, seed) in _BUNDLED.items():
        img, lab = chest_montage(seed) if kind == "montage" else chest_slice(seed)
        stem = name[:-4]
        for arr, fname in ((img, name), (lab, stem + "_labels.png")):
            tmp = d / (fname + ".tmp")
            Image.fromarray(arr).save(tmp, format="PNG")
            os.replace(tmp, d / fname)
        paths.append(d / name)
    return paths
