"""A chest-CT phantom and a cohort of SemiCS2 montages made from it: labelled data with no download.

Each seed draws one "patient": a body with subcutaneous fat and a muscle wall, a table under
it, ribs, sternum and a vertebra, a heart in mediastinal fat, the aorta, the liver dome under
the right lung, two lungs with branching airways and vessels, and ground-glass and
consolidation lesions of random number and size. The scan settings are drawn too:

* reconstruction kernel: ``"smooth"`` (soft-tissue kernel: blurred edges, fine-grained
  correlated noise of ~12 HU) or ``"sharp"`` (lung kernel: crisp edges with overshoot and
  high-frequency noise of ~40 HU);
* field of view: ``"full"`` (the whole body with air around it), ``"limited"`` (a zoomed
  reconstruction that cuts the sides of the body off) or ``"circular"`` (the full view with
  the corners outside the reconstruction circle padded with -2048 HU, black in any window).

The geometry is built in millimetres and sampled on the requested grid, so a volume of any
matrix size shows the same patient. Everything follows umsynth's orientation (see
:mod:`umsynth.data`): z toward the head, anterior at the top, the patient's right on the
image's left. The volume spans 320 mm; the lungs fill roughly its middle three quarters.

Tissues and their nominal HU (before blur and noise) are in :data:`TISSUES`. It is a
phantom, not anatomy: shapes are ellipses, ellipsoids and straight tubes.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage

from umsynth.data.montage import montage_from_slices, select_slices

__all__ = ["TISSUES", "KERNELS", "FOVS", "Z_EXTENT_MM", "PhantomCohort", "phantom_volume",
           "phantom_slice", "phantom_montage", "phantom_cohort"]

#: tissue name -> (code in the tissue map, nominal HU)
TISSUES = {
    "padding": (0, -2048.0),  # outside the reconstruction circle
    "air": (1, -1000.0),
    "lung": (2, -850.0),  # plus a gravity gradient of +-25 HU, denser posteriorly
    "fat": (3, -100.0),
    "muscle": (4, 50.0),
    "soft_tissue": (5, 40.0),  # mediastinum, heart and blood, airway walls, spinal canal
    "liver": (6, 60.0),
    "cancellous_bone": (7, 400.0),
    "cortical_bone": (8, 1000.0),
    "table": (9, 150.0),
    "table_foam": (10, -800.0),
    "ground_glass": (11, -550.0),  # per lesion -650..-450, textured
    "consolidation": (12, 25.0),  # per lesion 0..45, textured
}
KERNELS = ("smooth", "sharp")
FOVS = ("full", "limited", "circular")
#: Length of the phantom volume along z, feet to head, in mm.
Z_EXTENT_MM = 320.0
#: Default number of slices (5 mm each).
DEPTH = 64
_MIN_SIZE = 32  # the thinnest lung section (apex, dome) still holds pixels at this size
_CENTRE_Y = 10.0  # full and circular views are centred 10 mm behind the body centre, for the table

# kernel -> (PSF sigma mm, edge gain, noise: "lowpass"/"highpass", noise sigma mm, noise std HU)
_KERNEL_PARAMS = {
    "smooth": (0.9, 0.0, "lowpass", 1.1, 12.0),
    "sharp": (0.4, 0.6, "highpass", 0.8, 40.0),
}
# Lower bounds in pixels of the kernel filters. A scanner's kernel is defined against its own
# reconstruction grid: a coarse matrix still shows a smooth kernel's blur and correlated noise
# and a sharp kernel's grainy noise. Filters narrower than a pixel would vanish at small sizes
# (at 64 px slices a pixel is ~5.6 mm), so each width is at least this many pixels. The
# sharp kernel's edge overshoot keeps its width in mm: widened, it would swamp small objects.
_MIN_PSF_PX = {"smooth": 0.7, "sharp": 0.0}
_MIN_NOISE_PX = 1.0  # correlation length of the noise filter
_C = {name: code for name, (code, _) in TISSUES.items()}
_HU = {name: hu for name, (_, hu) in TISSUES.items()}


# ----------------------------------------------------------------------- the patient


@dataclass(frozen=True)
class _Tube:
    """A straight tube (capsule) from ``a`` to ``b`` (x, y, z mm), radius ``r`` mm."""

    a: tuple
    b: tuple
    r: float
    tissue: str
    hu: float


@dataclass(frozen=True)
class _Lesion:
    centre: tuple  # x, y, z mm
    axes: tuple  # semi-axes x, y, z mm
    kind: str  # "ground_glass" or "consolidation"
    hu: float
    wave: tuple  # texture: wave vector (3,) rad/mm and phase


@dataclass(frozen=True)
class _Patient:
    body: tuple  # semi-axes (bx, by) mm, centred at (0, 0)
    fat: float
    muscle: float
    lung_z: tuple  # (base, apex) mm
    vy: float  # vertebral body centre, y mm
    rib_phase: float
    kernel: str
    fov: str
    fov_full: float  # display FOV (mm) of the full and circular views
    fov_limited: float  # display FOV (mm) of the limited view
    circle: float  # reconstruction circle radius (mm) of the circular view
    noise_seed: int
    tubes: tuple = field(default=())  # airways (each wall before its lumen), then vessels
    tube_span: np.ndarray = field(default=None)  # (len(tubes), 2): z range of each tube, mm
    lesions: tuple = field(default=())

    @property
    def thorax(self) -> tuple[float, float]:
        """Semi-axes of the pleural cavity (inside muscle and ribs)."""
        bx, by = self.body
        d = self.fat + self.muscle + 8.0
        return bx - d, by - d

    @property
    def carina(self) -> float:
        zb, za = self.lung_z
        return zb + 0.7 * (za - zb)


def _check_seed(seed) -> int:
    try:
        s = operator.index(seed)
    except TypeError:
        raise TypeError(f"seed must be an integer, got {type(seed).__name__}") from None
    if s < 0:
        raise ValueError(f"seed must be >= 0, got {s}")
    return s


def _branches(rng, start, direction, length, radius, depth, spread):
    """A binary tree of straight segments: list of (a, b, radius)."""
    out = []
    stack = [(np.asarray(start, float), np.asarray(direction, float), length, radius, depth)]
    while stack:
        a, d, ln, r, k = stack.pop()
        d = d / np.linalg.norm(d)
        b = a + d * ln
        out.append((a, b, r))
        if k > 1:
            for _ in range(2):
                nd = d + rng.normal(0.0, spread, 3)
                stack.append((b, nd, ln * rng.uniform(0.7, 0.85), r * 0.72, k - 1))
    return out


def _draw_patient(seed: int) -> _Patient:
    """Every random choice of one patient, in a fixed order (overrides never shift it)."""
    rng = np.random.default_rng(seed)
    bx, by = rng.uniform(150, 180), rng.uniform(100, 122)
    fat, muscle = rng.uniform(8, 25), rng.uniform(10, 16)
    zb = rng.uniform(35, 60)
    za = zb + rng.uniform(215, 245)
    kernel = KERNELS[int(rng.integers(2))]
    fov = FOVS[int(rng.choice(3, p=[0.5, 0.25, 0.25]))]
    full = 2 * bx * rng.uniform(1.18, 1.3)
    pat = _Patient(body=(bx, by), fat=fat, muscle=muscle, lung_z=(zb, za), vy=by - fat - 62.0,
                   rib_phase=rng.uniform(0, 2 * np.pi), kernel=kernel, fov=fov, fov_full=full,
                   fov_limited=2 * bx * rng.uniform(0.76, 0.88),
                   circle=0.5 * full * rng.uniform(0.93, 0.99), noise_seed=int(rng.integers(2**63)))
    tx, ty = pat.thorax
    zc = pat.carina
    airways, vessels = [], []
    for side in (-1.0, 1.0):  # image left (patient right), image right (patient left)
        hilum = np.array([side * 0.42 * tx, -0.05 * ty, zc - 25.0])
        lobes = [(side * 0.5, -0.4, 0.8), (side * 0.9, -0.5, -0.1), (side * 0.45, 0.45, -0.8)]
        for lobe in lobes:
            tree = _branches(rng, hilum, lobe, rng.uniform(30, 45), rng.uniform(3.5, 4.5), 5, 0.45)
            for a, b, r in tree:
                if r > 1.2:  # airways: a wall tube, then the air lumen inside it
                    wall = max(0.25 * r, 0.8)
                    airways.append(_Tube(tuple(a), tuple(b), r + wall, "soft_tissue", _HU["soft_tissue"]))
                    airways.append(_Tube(tuple(a), tuple(b), r, "air", _HU["air"]))
                # the artery runs beside its airway
                off = np.cross(b - a, (0.0, 0.0, 1.0))
                norm = np.linalg.norm(off)
                off = (off / norm if norm > 1e-6 else np.array([1.0, 0.0, 0.0])) * (2.2 * r + 1.0)
                vessels.append(_Tube(tuple(a + off), tuple(b + off), 1.1 * r, "soft_tissue", _HU["soft_tissue"]))
        veins = np.array([side * 0.3 * tx, 0.05 * ty, zc - 50.0])
        for lobe in [(side * 0.6, 0.2, 0.7), (side * 0.9, 0.0, 0.0), (side * 0.5, 0.5, -0.7)]:
            for a, b, r in _branches(rng, veins, lobe, rng.uniform(30, 45), rng.uniform(3.0, 4.0), 5, 0.5):
                vessels.append(_Tube(tuple(a), tuple(b), r, "soft_tissue", _HU["soft_tissue"]))
        for _ in range(80):  # peripheral vessels, outside the drawn trees
            c = np.array([side * rng.uniform(0.1, 0.95) * tx, rng.uniform(-0.85, 0.85) * ty, rng.uniform(zb, za)])
            d = rng.normal(0, 1, 3) * (1.0, 1.0, 2.0)
            d *= rng.uniform(10, 25) / np.linalg.norm(d)
            vessels.append(_Tube(tuple(c - d), tuple(c + d), rng.uniform(0.7, 2.0), "soft_tissue", _HU["soft_tissue"]))
    tubes = airways + vessels
    span = np.array([(min(t.a[2], t.b[2]) - t.r, max(t.a[2], t.b[2]) + t.r) for t in tubes])
    pat = replace(pat, tubes=tuple(tubes), tube_span=span)
    return replace(pat, lesions=_draw_lesions(rng, pat))


def _draw_lesions(rng, pat: _Patient) -> tuple:
    """Random lesions, each wholly inside the lung and apart from the others.

    A candidate is kept when points on an ellipsoid 3 mm larger than it all lie in the
    lung, and its bounding sphere keeps 12 mm from the others' (two slices at 5 mm), so
    every lesion is one connected piece of label 2 in the volume.
    """
    n_ggo, n_cons = int(rng.integers(1, 5)), int(rng.integers(0, 4))
    kinds = ["ground_glass"] * n_ggo + ["consolidation"] * n_cons
    zb, za = pat.lung_z
    tx, ty = pat.thorax
    # unit sphere points (Fibonacci) for the containment test
    k = np.arange(96) + 0.5
    phi, cos_t = np.pi * (1 + 5**0.5) * k, 1 - 2 * k / 96
    sin_t = np.sqrt(1 - cos_t**2)
    sphere = np.stack([sin_t * np.cos(phi), sin_t * np.sin(phi), cos_t], axis=1)
    kept = []
    for kind in kinds:
        # large enough to cover pixels of a 64 px slice (5.6 mm each), so a segmenter can learn them
        lo, hi = (16.0, 40.0) if kind == "ground_glass" else (12.0, 30.0)
        for attempt in range(100):
            r = rng.uniform(lo, hi) * (1.0 - 0.5 * attempt / 100)  # shrink when the lung is crowded
            axes = r * rng.uniform(0.75, 1.25, 3)
            side = rng.choice((-1.0, 1.0))
            c = np.array([side * rng.uniform(0.2, 0.85) * tx, rng.uniform(-0.7, 0.7) * ty,
                          rng.uniform(zb + 0.15 * (za - zb), zb + 0.8 * (za - zb))])
            if any(np.linalg.norm(c - np.asarray(o.centre)) < max(axes) + max(o.axes) + 12.0 for o in kept):
                continue
            pts = c + sphere * (axes + 3.0)
            if not _lung(pat, pts[:, 2], pts[:, 0], pts[:, 1]).all():
                continue
            if kind == "ground_glass":
                hu = rng.uniform(-650, -450)
            else:
                hu = rng.uniform(0, 45)
            wave = tuple(rng.normal(0, 0.12, 3)) + (rng.uniform(0, 2 * np.pi),)
            kept.append(_Lesion(tuple(c), tuple(axes), kind, hu, wave))
            break
    return tuple(kept)


# ----------------------------------------------------------------------- geometry


def _lung_scale(pat: _Patient, z):
    """Lung size factor along z: 0 outside the lung range, 0.3 at the apex, 1 in the lower half."""
    zb, za = pat.lung_z
    u = (np.asarray(z, float) - zb) / (za - zb)  # 0 base .. 1 apex
    g = 0.3 + 0.7 * np.sin(0.5 * np.pi * np.clip((1 - u) / 0.6, 0, 1)) ** 0.7
    return np.where((u > 0) & (u < 1), g, 0.0)


def _dome(pat: _Patient, z):
    """Diaphragm dome size factor (0 above it), growing toward the lung base."""
    zb, za = pat.lung_z
    u = (np.asarray(z, float) - zb) / (za - zb)
    return np.where(u < 0.25, 0.9 * np.sqrt(np.clip(1 - u / 0.25, 0, 1)), 0.0)


def _heart(pat: _Patient, z):
    """Heart centre x, y and semi-axes (0 where there is no heart) at z."""
    zb, za = pat.lung_z
    tx, ty = pat.thorax
    h0, h1 = zb - 15.0, zb + 0.5 * (za - zb)
    v = np.clip((np.asarray(z, float) - h0) / (h1 - h0), 0, 1)
    s = np.sin(np.pi * v) ** 0.5
    return 0.2 * tx, -0.12 * ty, 0.42 * tx * s, 0.5 * ty * s


def _inside(x, y, cx, cy, ax, ay):
    """Points in the ellipse; an ellipse with a zero axis is empty."""
    ax = np.asarray(ax, float)
    ay = np.asarray(ay, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2
    return (q <= 1.0) & (ax > 0) & (ay > 0)


def _lung(pat: _Patient, z, x, y):
    """Lung membership of points (mm); z, x, y broadcast together."""
    tx, ty = pat.thorax
    g = _lung_scale(pat, z)
    f = _dome(pat, z)
    hx, hy, hax, hay = _heart(pat, z)
    lx, ly, lcy = 0.44 * tx * g, 0.9 * ty * g, -0.02 * ty
    out = np.zeros(np.broadcast(z, x, y).shape, bool)
    for side in (-1.0, 1.0):
        cx = side * 0.5 * tx
        out |= _inside(x, y, cx, lcy, lx, ly) & ~_inside(x, y, cx, lcy - 0.25 * ly, f * lx, f * ly)
    out &= _inside(x, y, 0.0, 0.0, tx, ty)  # pleural cavity
    out &= np.abs(x) > 14.0  # mediastinum: trachea, oesophagus
    out &= ~_inside(x, y, hx, hy, np.where(hax > 0, hax + 6.0, 0.0), hay + 6.0)  # heart in its fat
    out &= ~_inside(x, y, 6.0, pat.vy - 4.0, 42.0, 34.0)  # vertebral body and aorta
    out &= ~_inside(x, y, 0.0, pat.vy + 38.0, 26.0, 30.0)  # vertebral arch
    return out


def _lung_present(pat: _Patient, z) -> np.ndarray:
    """Which of the slice positions z hold lung (their lung section is never empty)."""
    return _lung_scale(pat, z) > 0


# ----------------------------------------------------------------------- rendering


class _Canvas:
    """One slice being painted: HU, tissue codes and labels on a pixel grid in mm."""

    def __init__(self, shape, spacing, centre_y):
        ny, nx = shape
        self.x = (np.arange(nx) + 0.5 - nx / 2) * spacing
        self.y = (np.arange(ny) + 0.5 - ny / 2) * spacing + centre_y
        self.sp = spacing
        self.hu = np.full(shape, _HU["air"])
        self.tissue = np.full(shape, _C["air"], np.uint8)
        self.labels = np.zeros(shape, np.uint8)

    def window(self, x0, x1, y0, y1):
        """Index slices of the pixels whose centres may lie in [x0, x1] x [y0, y1]."""
        c = np.searchsorted(self.x, [x0, x1])
        r = np.searchsorted(self.y, [y0, y1])
        if c[0] >= c[1] or r[0] >= r[1]:
            return None
        return slice(r[0], r[1]), slice(c[0], c[1])

    def grid(self, win):
        rs, cs = win
        return self.x[None, cs], self.y[rs, None]

    def paint(self, win, mask, tissue, hu=None):
        if win is None:
            return
        rs, cs = win
        val = _HU[tissue] if hu is None else hu
        self.hu[rs, cs] = np.where(mask, val, self.hu[rs, cs])
        self.tissue[rs, cs][mask] = _C[tissue]

    def ellipse(self, cx, cy, ax, ay, tissue, hu=None):
        if ax <= 0 or ay <= 0:
            return
        win = self.window(cx - ax, cx + ax, cy - ay, cy + ay)
        if win is not None:
            x, y = self.grid(win)
            self.paint(win, _inside(x, y, cx, cy, ax, ay), tissue, hu)

    def tube(self, t: _Tube, z, within=None):
        """Paint the part of tube ``t`` in the plane z (pixels whose centre is within r of its axis)."""
        a, b = np.asarray(t.a), np.asarray(t.b)
        lo, hi = min(a[2], b[2]) - t.r, max(a[2], b[2]) + t.r
        if not lo <= z <= hi:
            return
        d = b - a
        ln2 = float(d @ d)
        # the axis points within r of the plane bound the painted pixels
        if abs(d[2]) > 1e-9:
            s = np.clip((np.array([z - t.r, z + t.r]) - a[2]) / d[2], 0, 1)
        else:
            s = np.array([0.0, 1.0])
        px, py = a[0] + s * d[0], a[1] + s * d[1]
        win = self.window(px.min() - t.r, px.max() + t.r, py.min() - t.r, py.max() + t.r)
        if win is None:
            return
        x, y = self.grid(win)
        ox, oy, oz = x - a[0], y - a[1], z - a[2]
        s = np.clip((ox * d[0] + oy * d[1] + oz * d[2]) / ln2, 0, 1)
        mask = (ox - s * d[0]) ** 2 + (oy - s * d[1]) ** 2 + (oz - s * d[2]) ** 2 <= t.r**2
        if within is not None:
            mask &= within[win]
        self.paint(win, mask, t.tissue, t.hu)


def _paint_body(cv: _Canvas, pat: _Patient, z: float) -> None:
    """Table, body wall, bones, mediastinum and upper abdomen: everything but the lungs."""
    bx, by = pat.body
    tx, ty = pat.thorax
    # table: a curved shell with a foam core, under the supine patient
    ty0 = by + 8.0
    win = cv.window(-230, 230, ty0 - 10, ty0 + 45)
    if win is not None:
        x, y = cv.grid(win)
        depth = y - ty0 - 2e-4 * x**2
        board = (depth >= 0) & (depth <= 28) & (np.abs(x) < 230)
        cv.paint(win, board, "table")
        cv.paint(win, board & (depth >= 3) & (depth <= 25) & (np.abs(x) < 225), "table_foam")
    # body: flattened at the back where it lies on the table
    win = cv.window(-bx, bx, -by, by)
    x, y = cv.grid(win)
    for name, shrink in (("fat", 0.0), ("muscle", pat.fat), ("soft_tissue", pat.fat + pat.muscle)):
        cv.paint(win, _inside(x, y, 0, 0, bx - shrink, by - shrink) & (y < 0.93 * by - shrink), name)
    # ribs on the inner edge of the muscle wall, sternum in front
    zb, za = pat.lung_z
    if zb - 30 < z < za + 10:
        rx, ry = bx - pat.fat - pat.muscle - 2.0, by - pat.fat - pat.muscle - 2.0
        for j in range(7):
            ang = np.deg2rad(28 + 20 * j) + 0.12 * np.sin(2 * np.pi * z / 45.0 + pat.rib_phase + j)
            for side in (-1.0, 1.0):
                cx, cy = side * rx * np.sin(ang), ry * np.cos(ang)
                cv.ellipse(cx, cy, 6.0, 5.0, "cortical_bone")
                cv.ellipse(cx, cy, 3.5, 2.8, "cancellous_bone")
        if pat.carina - 120 < z < za:
            cv.ellipse(0.0, -ry, 12.0, 6.0, "cortical_bone")
            cv.ellipse(0.0, -ry, 9.0, 3.5, "cancellous_bone")
    # vertebra: body, arch around the spinal canal, spinous process
    vy = pat.vy
    cv.ellipse(0.0, vy + 25.0, 15.0, 14.0, "cortical_bone")
    cv.ellipse(0.0, vy + 50.0, 4.5, 12.0, "cortical_bone")
    cv.ellipse(0.0, vy + 25.0, 8.0, 8.0, "soft_tissue")
    cv.ellipse(0.0, vy, 19.0, 16.0, "cortical_bone")
    cv.ellipse(0.0, vy, 16.0, 13.0, "cancellous_bone")
    # descending aorta left-anterior of the spine; the heart in its fat; the liver dome
    cv.ellipse(22.0, vy - 18.0, 12.0, 12.0, "soft_tissue")
    hx, hy, hax, hay = (float(v) for v in _heart(pat, z))
    if hax > 0:
        cv.ellipse(hx, hy, hax + 5.0, hay + 5.0, "fat")
        cv.ellipse(hx, hy, hax, hay, "soft_tissue")
    if z < zb:
        cv.ellipse(-0.3 * tx, -0.05 * ty, 0.7 * tx, 0.8 * ty, "liver")
    else:
        f, g = float(_dome(pat, z)), 1.0
        lx, ly = 0.44 * tx * g * f, 0.9 * ty * g * f
        cv.ellipse(-0.5 * tx, -0.02 * ty - 0.225 * ty, lx, ly, "liver")
    # trachea above the carina, main bronchi below it
    zc, tyc = pat.carina, vy - 38.0
    if z >= zc:
        cv.ellipse(0.0, tyc, 11.0, 11.0, "soft_tissue")
        cv.ellipse(0.0, tyc, 9.0, 9.0, "air")


def _paint_lungs(cv: _Canvas, pat: _Patient, z: float) -> None:
    """Parenchyma, airways, vessels and lesions; sets the labels."""
    if not _lung_present(pat, z):
        return
    tx, ty = pat.thorax
    x, y = cv.x[None, :], cv.y[:, None]
    lung = _lung(pat, z, x, y)
    full = (slice(None), slice(None))
    gravity = np.clip(25.0 * (y - (-0.02 * ty)) / (0.9 * ty), -25, 25)
    cv.paint(full, lung, "lung", _HU["lung"] + gravity)
    cv.labels[lung] = 1
    zc = pat.carina
    if zc - 30 <= z < zc:  # main bronchi run from the carina to the hila
        k = (zc - z) / 30.0
        for side in (-1.0, 1.0):
            cx, cy = side * (8.0 + k * (0.42 * tx - 8.0)), pat.vy - 38.0 + k * 5.0
            cv.ellipse(cx, cy, 8.0, 8.0, "soft_tissue")
            cv.ellipse(cx, cy, 6.0, 6.0, "air")
    lesions = [les for les in pat.lesions if abs(z - les.centre[2]) < les.axes[2]]
    for les in lesions:
        if les.kind == "ground_glass":  # vessels stay visible through ground glass
            _paint_lesion(cv, les, z)
    for i in np.flatnonzero((pat.tube_span[:, 0] <= z) & (z <= pat.tube_span[:, 1])):
        cv.tube(pat.tubes[i], z, within=lung)
    for les in lesions:
        if les.kind == "consolidation":  # consolidation hides them
            _paint_lesion(cv, les, z)


def _paint_lesion(cv: _Canvas, les: _Lesion, z: float) -> None:
    (cx, cy, cz), (ax, ay, az) = les.centre, les.axes
    s = np.sqrt(max(0.0, 1.0 - ((z - cz) / az) ** 2))
    win = cv.window(cx - ax * s, cx + ax * s, cy - ay * s, cy + ay * s)
    if win is None or s == 0:
        return
    x, y = cv.grid(win)
    mask = _inside(x, y, cx, cy, ax * s, ay * s)
    kx, ky, kz, ph = les.wave
    amp = 40.0 if les.kind == "ground_glass" else 10.0
    hu = les.hu + amp * np.cos(kx * (x - cx) + ky * (y - cy) + kz * (z - cz) + ph)
    cv.paint(win, mask, les.kind, hu)
    cv.labels[win][mask] = 2


def _reconstruct(cv: _Canvas, kernel: str, noise_key) -> np.ndarray:
    """Apply the kernel's blur and edge gain, then its noise texture (widths in mm, some floored in pixels)."""
    psf, gain, kind, nsig, nstd = _KERNEL_PARAMS[kernel]
    hu = ndimage.gaussian_filter(cv.hu, max(psf / cv.sp, _MIN_PSF_PX[kernel]), mode="nearest")
    if gain:
        hu += gain * (hu - ndimage.gaussian_filter(hu, 1.5 / cv.sp, mode="nearest"))
    white = np.random.default_rng(noise_key).standard_normal(hu.shape)
    smooth = ndimage.gaussian_filter(white, max(nsig / cv.sp, _MIN_NOISE_PX), mode="wrap")
    noise = smooth if kind == "lowpass" else white - smooth
    return hu + noise * (nstd / max(float(noise.std()), 1e-12))


def _render(pat: _Patient, z: float, shape, kernel: str, fov: str, noise_key):
    """One axial slice at height z mm: (HU float32, labels uint8, tissue uint8)."""
    ny, nx = shape
    fov_mm = pat.fov_limited if fov == "limited" else pat.fov_full
    cv = _Canvas((ny, nx), fov_mm / nx, 0.0 if fov == "limited" else _CENTRE_Y)
    _paint_body(cv, pat, z)
    _paint_lungs(cv, pat, z)
    hu = _reconstruct(cv, kernel, noise_key)
    labels, tissue = cv.labels, cv.tissue
    if fov == "circular":
        out = np.hypot(cv.x[None, :], (cv.y - _CENTRE_Y)[:, None]) > pat.circle
        hu[out] = _HU["padding"]
        tissue[out] = _C["padding"]
        labels[out] = 0
    return hu.astype(np.float32), labels, tissue


# ----------------------------------------------------------------------- public API


def _check_choice(value, options, name):
    if value is None:
        return None
    if value not in options:
        raise ValueError(f"{name} must be one of {options} or None, got {value!r}")
    return value


def _check_shape(shape, name="shape") -> tuple[int, int, int]:
    try:
        d, h, w = (operator.index(v) for v in shape)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be three integers (depth, rows, columns), got {shape!r}") from None
    if d < 1 or h < _MIN_SIZE or w < _MIN_SIZE:
        raise ValueError(f"{name} must have depth >= 1 and rows, columns >= {_MIN_SIZE}, got {tuple(shape)}")
    return d, h, w


def _z_centres(depth: int) -> np.ndarray:
    """Slice centres (mm) of a volume of ``depth`` slices spanning Z_EXTENT_MM, feet to head."""
    return (np.arange(depth) + 0.5) * (Z_EXTENT_MM / depth)


def _settings(pat, kernel, fov):
    return (_check_choice(kernel, KERNELS, "kernel") or pat.kernel,
            _check_choice(fov, FOVS, "fov") or pat.fov)


def phantom_volume(seed, shape=(DEPTH, 512, 512), *, kernel=None, fov=None, return_tissues=False):
    """A chest-CT phantom volume in HU with its labels.

    Parameters
    ----------
    seed : int
        Selects the patient (anatomy, lesions), the scan settings and the noise; >= 0.
    shape : (int, int, int)
        ``(depth, rows, columns)``. The volume always spans 320 mm in z (slice thickness
        ``320 / depth`` mm); rows and columns (>= 32) sample the field of view at a pixel
        spacing of ``fov / columns`` mm.
    kernel : {"smooth", "sharp"} or None
        Reconstruction kernel; None uses the one drawn for this seed. Overriding it
        changes nothing else.
    fov : {"full", "limited", "circular"} or None
        Field of view; None uses the one drawn for this seed.
    return_tissues : bool
        Also return the tissue map (codes in :data:`TISSUES`).

    Returns
    -------
    hu : ndarray, float32 (depth, rows, columns)
        Hounsfield units, in umsynth's orientation (z toward the head, anterior at the top,
        patient right on the image left).
    labels : ndarray, uint8 (depth, rows, columns)
        0 background/body, 1 lung, 2 lesion.
    tissues : ndarray, uint8 (depth, rows, columns)
        Only with ``return_tissues``: the tissue painted at each pixel centre before
        blur and noise.

    Notes
    -----
    Slice ``k`` is sampled at z = (k + 0.5) * 320 / depth mm and its noise comes from
    ``(seed, k)``, so a slice never depends on which other slices are rendered:
    :func:`phantom_cohort` renders only the four montage slices and gets exactly these.
    Every lesion lies wholly inside the lung and apart from the others, so at depth 64
    each one is a connected piece of label 2.
    """
    pat = _draw_patient(_check_seed(seed))
    d, h, w = _check_shape(shape)
    kernel, fov = _settings(pat, kernel, fov)
    out = [_render(pat, float(z), (h, w), kernel, fov, (pat.noise_seed, k))
           for k, z in enumerate(_z_centres(d))]
    arrays = tuple(np.stack([o[i] for o in out]) for i in range(3))
    return arrays if return_tissues else arrays[:2]


def phantom_slice(seed, size=512, t=0.5, *, kernel=None, fov=None):
    """One axial phantom slice at relative height ``t`` of the lung (0 apex .. 1 base).

    Parameters
    ----------
    seed : int
        The patient, as in :func:`phantom_volume`.
    size : int
        Rows and columns (>= 32).
    t : float
        Position in the lung's z-range, 0 at the apex and 1 at the base (clipped to the
        open range, so the slice always holds lung).
    kernel, fov : str or None
        As in :func:`phantom_volume`.

    Returns
    -------
    hu : ndarray, float32 (size, size)
    labels : ndarray, uint8 (size, size)
    """
    pat = _draw_patient(_check_seed(seed))
    _, h, w = _check_shape((1, size, size), "size")
    kernel, fov = _settings(pat, kernel, fov)
    zb, za = pat.lung_z
    t = float(np.clip(float(t), 0.005, 0.995))
    hu, labels, _ = _render(pat, za - t * (za - zb), (h, w), kernel, fov, (pat.noise_seed, 2**32, int(t * 1e6)))
    return hu, labels


def _check_montage_size(size) -> int:
    try:
        size = operator.index(size)
    except TypeError:
        raise TypeError(f"size must be an integer, got {type(size).__name__}") from None
    if size % 2 or size < 2 * _MIN_SIZE:
        raise ValueError(f"size must be even and >= {2 * _MIN_SIZE}, got {size}")
    return size


@dataclass(frozen=True)
class CaseMeta:
    """What was drawn for one cohort case."""

    seed: int  # pass to phantom_volume to get the whole volume
    kernel: str
    fov: str
    n_ground_glass: int  # lesions in the whole volume
    n_consolidation: int
    slices: tuple  # the four montage slices of the depth-64 volume
    lesion_pixels: int  # label-2 pixels in the montage

    @property
    def n_lesions(self) -> int:
        return self.n_ground_glass + self.n_consolidation


def phantom_montage(seed, size=1024, *, kernel=None, fov=None):
    """The SemiCS2 montage of one phantom volume, rendering only its four slices.

    Equal to ``build_montage(*phantom_volume(seed, (64, size // 2, size // 2)))`` (image and
    labels), at a fraction of the cost.

    Parameters
    ----------
    seed : int
    size : int
        Montage rows and columns: even, >= 64.
    kernel, fov : str or None
        As in :func:`phantom_volume`.

    Returns
    -------
    image : ndarray, uint8 (size, size)
    labels : ndarray, uint8 (size, size)
    meta : CaseMeta
    """
    seed = _check_seed(seed)
    size = _check_montage_size(size)
    pat = _draw_patient(seed)
    kernel, fov = _settings(pat, kernel, fov)
    z = _z_centres(DEPTH)
    idx = select_slices(_lung_present(pat, z), n=4, trim=0.1)
    half = size // 2
    parts = [_render(pat, float(z[k]), (half, half), kernel, fov, (pat.noise_seed, int(k))) for k in idx]
    image, labels = montage_from_slices(np.stack([p[0] for p in parts]), np.stack([p[1] for p in parts]))
    kinds = [les.kind for les in pat.lesions]
    meta = CaseMeta(seed=seed, kernel=kernel, fov=fov, n_ground_glass=kinds.count("ground_glass"),
                    n_consolidation=kinds.count("consolidation"), slices=tuple(int(k) for k in idx),
                    lesion_pixels=int((labels == 2).sum()))
    return image, labels, meta


@dataclass(frozen=True)
class PhantomCohort:
    """A cohort of phantom montages (see :func:`phantom_cohort`).

    Attributes
    ----------
    images : ndarray, uint8 (N, size, size)
        Windowed 2x2 montages ([-1500, 100] HU -> [0, 255]).
    labels : ndarray, uint8 (N, size, size)
        Their label montages (0 background/body, 1 lung, 2 lesion), for every case.
    labelled : ndarray, bool (N,)
        The cases whose labels the few-labels setting may use; the rest count as unlabelled.
    meta : tuple of CaseMeta
        Per case: the volume seed, kernel, FOV, lesion counts, slices.
    """

    images: np.ndarray
    labels: np.ndarray
    labelled: np.ndarray
    meta: tuple

    def __len__(self) -> int:
        return len(self.images)

    def column(self, name: str) -> np.ndarray:
        """One meta field for all cases as an array, e.g. ``column("kernel")``."""
        return np.array([getattr(m, name) for m in self.meta])


def case_seed(seed: int, index: int) -> int:
    """The volume seed of case ``index`` of the cohort drawn with ``seed``."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0] >> 1)


def phantom_cohort(n, size=512, seed=0, labelled_fraction=0.1, *, progress=False) -> PhantomCohort:
    """A cohort of ``n`` windowed phantom montages with labels: demo and test data.

    Parameters
    ----------
    n : int
        Number of cases (>= 1).
    size : int
        Montage rows and columns (even, >= 64); each slice is ``size // 2`` square.
    seed : int
        Cohort seed. Case ``i`` is the volume ``phantom_volume(case_seed(seed, i))``, so
        a case does not depend on ``n``.
    labelled_fraction : float
        In [0, 1]. ``round(labelled_fraction * n)`` cases, at least one when the fraction is
        above 0, are marked labelled, chosen at random from ``seed``.
    progress : bool
        Show a progress bar on stderr.

    Returns
    -------
    PhantomCohort
        Deterministic for a given (n, size, seed, labelled_fraction). Each case is
        ``build_montage`` of the volume ``phantom_volume(meta.seed, (64, size // 2, size // 2))``.
    """
    n = operator.index(n)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    seed = _check_seed(seed)
    frac = float(labelled_fraction)
    if not 0.0 <= frac <= 1.0:
        raise ValueError(f"labelled_fraction must be in [0, 1], got {labelled_fraction}")
    from umsynth.progress import progress as progress_bar

    size = _check_montage_size(size)
    images = np.empty((n, size, size), np.uint8)
    labels = np.empty((n, size, size), np.uint8)
    meta = []
    for i in progress_bar(range(n), desc="phantom cohort", unit="case", disable=not progress):
        img, lab, m = phantom_montage(case_seed(seed, i), size)
        images[i], labels[i] = img, lab
        meta.append(m)
    k = 0 if frac == 0 else max(1, int(round(frac * n)))
    labelled = np.zeros(n, bool)
    labelled[np.random.default_rng([seed, 2**31]).permutation(n)[:k]] = True
    return PhantomCohort(images, labels, labelled, tuple(meta))
