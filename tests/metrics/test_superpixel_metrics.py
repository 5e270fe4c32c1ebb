"""umsynth.metrics.superpixel: hand-computed cases, loop references, phantom sanity checks."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from skimage.segmentation import slic

from umsynth.metrics import superpixel as sp

# 4x4 quadrants: superpixels 1 2 / 3 4, each 2x2
QUAD = np.array([[1, 1, 2, 2],
                 [1, 1, 2, 2],
                 [3, 3, 4, 4],
                 [3, 3, 4, 4]])
# ground truth: one segment, except the bottom-right pixel
CORNER = np.zeros((4, 4), int)
CORNER[3, 3] = 1


# ---------------------------------------------------------------- loop references
# Direct transcriptions of the definitions, pixel by pixel, to check the vectorized code.

def _neighbours(shape, idx):
    for ax in range(len(shape)):
        for step in (-1, 1):
            j = list(idx)
            j[ax] += step
            if 0 <= j[ax] < shape[ax]:
                yield tuple(j)


def _is_boundary(a, idx):
    return any(a[j] != a[idx] for j in _neighbours(a.shape, idx))


def ref_boundary_recall(labels, gt, r):
    tp = fn = 0
    for idx in np.ndindex(gt.shape):
        if not _is_boundary(gt, idx):
            continue
        ranges = [range(max(0, i - r), min(n - 1, i + r) + 1) for i, n in zip(idx, gt.shape)]
        hit = any(_is_boundary(labels, k) for k in itertools.product(*ranges))
        tp += hit
        fn += not hit
    return tp / (tp + fn) if tp + fn else 0.0


def ref_ue_asa(labels, gt):
    ue = asa = 0
    n = labels.size
    for s in np.unique(labels):
        in_s = labels == s
        best = 0
        for g in np.unique(gt):
            inter = int(np.sum(in_s & (gt == g)))
            if inter:
                ue += min(inter, int(in_s.sum()) - inter)
                best = max(best, inter)
        asa += best
    return ue / n, asa / n


def ref_explained_variation(labels, image):
    img = image.reshape(labels.shape + (-1,)).astype(float)
    top = bottom = 0.0
    for c in range(img.shape[-1]):
        x = img[..., c]
        mu = x.mean()
        for s in np.unique(labels):
            m = labels == s
            top += m.sum() * (x[m].mean() - mu) ** 2
        bottom += ((x - mu) ** 2).sum()
    return top / bottom


def ref_compactness(labels):
    area, per = {}, {}
    for idx in np.ndindex(labels.shape):
        lab = labels[idx]
        area[lab] = area.get(lab, 0) + 1
        edges = 0
        for ax in range(labels.ndim):
            for step in (-1, 1):
                j = list(idx)
                j[ax] += step
                # a face on the array border counts, as does a face to another label
                if not 0 <= j[ax] < labels.shape[ax] or labels[tuple(j)] != lab:
                    edges += 1
        per[lab] = per.get(lab, 0) + edges
    total = 0.0
    for lab, a in area.items():
        q = 4 * math.pi * a / per[lab] ** 2 if labels.ndim == 2 else 36 * math.pi * a**2 / per[lab] ** 3
        total += a * q
    return total / labels.size


# ---------------------------------------------------------------- hand-computed cases

def test_boundary_map_marks_both_sides_not_the_border():
    b = sp.boundary_map(QUAD)
    # the label changes lie between columns 1|2 and rows 1|2: columns 1, 2 and rows 1, 2 are boundary
    expected = np.array([[0, 1, 1, 0],
                         [1, 1, 1, 1],
                         [1, 1, 1, 1],
                         [0, 1, 1, 0]], bool)
    np.testing.assert_array_equal(b, expected)


def test_boundary_recall_by_hand():
    # gt boundary pixels: (3,3) and its neighbours (2,3), (3,2).
    # r = round(0.0025 * sqrt(32)) = 0 by default: (2,3) and (3,2) are on the superpixel
    # boundary, (3,3) is not (its neighbours (2,3), (3,2) carry its own label 4) -> 2/3.
    assert sp.boundary_recall(QUAD, CORNER) == pytest.approx(2 / 3)
    assert sp.boundary_recall(QUAD, CORNER, tolerance=0) == pytest.approx(2 / 3)
    # r = 1: the 3x3 window around (3,3) holds the boundary pixel (2,2) -> 3/3
    assert sp.boundary_recall(QUAD, CORNER, tolerance=1) == 1.0


def test_undersegmentation_error_and_asa_by_hand():
    # G0 (15 px): S1, S2, S3 inside (min(4, 0) = 0 each), S4: min(|S4∩G0|=3, |S4-G0|=1) = 1
    # G1 (1 px):  S4: min(1, 3) = 1                          -> UE = 2/16
    assert sp.undersegmentation_error(QUAD, CORNER) == pytest.approx(2 / 16)
    # ASA: S1..S3 give 4 each, S4 its majority 3              -> 15/16
    assert sp.achievable_segmentation_accuracy(QUAD, CORNER) == pytest.approx(15 / 16)


def test_undersegmentation_error_half_split():
    # superpixels = two columns halves, gt splits at column 3 instead of 2:
    # G0 (cols 0-2): S_left min(8, 0) = 0, S_right min(4, 4) = 4; G1 (col 3): S_right min(4, 4) = 4
    labels = np.repeat([[0, 0, 1, 1]], 4, axis=0)
    gt = np.repeat([[0, 0, 0, 1]], 4, axis=0)
    assert sp.undersegmentation_error(labels, gt) == pytest.approx(8 / 16)
    # ASA: S_left 8, S_right max(4, 4) = 4 -> 12/16
    assert sp.achievable_segmentation_accuracy(labels, gt) == pytest.approx(12 / 16)


def test_undersegmentation_error_can_reach_one():
    # one superpixel over three one-pixel segments: each pair min(1, 2) = 1 -> 3/3
    assert sp.undersegmentation_error(np.zeros((1, 3), int), np.array([[0, 1, 2]])) == 1.0


def test_explained_variation_by_hand():
    image = np.zeros((4, 4))
    image[3, 3] = 4.0
    # mu = 0.25; sum (I - mu)^2 = 15 * 0.0625 + 3.75^2 = 15
    # superpixel means: 0, 0, 0 and 1 (S4) -> sum |S|(mu_S - mu)^2 = 3 * 4 * 0.0625 + 4 * 0.75^2 = 3
    assert sp.explained_variation(QUAD, image) == pytest.approx(3 / 15)


def test_compactness_by_hand():
    # each 2x2 quadrant: area 4, perimeter 8 -> 4 pi 4 / 64 = pi/4; weighted mean pi/4
    assert sp.compactness(QUAD) == pytest.approx(math.pi / 4)
    # four 4x1 columns: area 4, perimeter 4 + 4 + 1 + 1 = 10 -> 16 pi / 100
    cols = np.repeat(np.arange(4)[None, :], 4, axis=0)
    assert sp.compactness(cols) == pytest.approx(0.16 * math.pi)
    # a single 1x9 line: perimeter 2*9 + 2 = 20 -> 4 pi 9 / 400
    assert sp.compactness(np.zeros((1, 9), int)) == pytest.approx(36 * math.pi / 400)


def test_compactness_square_beats_line():
    squares = np.kron(np.arange(16).reshape(4, 4), np.ones((8, 8), int))  # 32x32, 8x8 squares
    lines = np.repeat(np.arange(32)[:, None], 32, axis=1) // 2  # 32x32, 2x32 strips
    assert sp.compactness(squares) > 2 * sp.compactness(lines)


def test_compactness_3d_cube_by_hand():
    # one 2x2x2 cube: volume 8, 24 exposed faces -> 36 pi 64 / 24^3 = pi/6
    assert sp.compactness(np.zeros((2, 2, 2), int)) == pytest.approx(math.pi / 6)


# ---------------------------------------------------------------- limiting cases

@pytest.mark.parametrize("shape", [(40, 50), (6, 20, 24)])
def test_perfect_and_refined_segmentations(shape):
    rng = np.random.default_rng(1)
    gt = (rng.random(shape) > 0.5).astype(np.int32)
    gt = np.cumsum(gt, axis=-1) // 7  # stripes of varying width
    relabelled = gt * 13 + 5  # same partition, other numbers
    assert sp.boundary_recall(relabelled, gt, tolerance=0) == 1.0
    assert sp.undersegmentation_error(relabelled, gt) == 0.0
    assert sp.achievable_segmentation_accuracy(relabelled, gt) == 1.0
    # a refinement of gt (each segment cut further) keeps UE = 0 and ASA = 1
    finer = relabelled * 2 + (np.indices(shape)[0] % 2)
    assert sp.undersegmentation_error(finer, gt) == 0.0
    assert sp.achievable_segmentation_accuracy(finer, gt) == 1.0
    assert sp.boundary_recall(finer, gt, tolerance=0) == 1.0


def test_explained_variation_limits():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 6, (30, 30))
    means = rng.normal(size=6) * 10
    assert sp.explained_variation(labels, means[labels]) == pytest.approx(1.0)
    image = rng.normal(size=(30, 30))
    assert sp.explained_variation(np.zeros((30, 30), int), image) == pytest.approx(0.0, abs=1e-15)
    assert math.isnan(sp.explained_variation(labels, np.full((30, 30), 7.0)))


def test_explained_variation_multichannel_sums_channels():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 5, (20, 20))
    rgb = rng.normal(size=(20, 20, 3)) * [1.0, 5.0, 0.1]
    assert sp.explained_variation(labels, rgb) == pytest.approx(ref_explained_variation(labels, rgb))
    # three equal channels give the grey value
    grey = rgb[..., 1]
    assert sp.explained_variation(labels, np.dstack([grey] * 3)) == pytest.approx(
        sp.explained_variation(labels, grey))


def test_boundary_recall_no_gt_boundary_is_zero():
    assert sp.boundary_recall(QUAD, np.zeros((4, 4), int)) == 0.0


def test_default_tolerance_follows_diagonal():
    # 1024x1024: r = round(0.0025 * 1448.2) = 4. A superpixel boundary 4 px from the gt
    # boundary is found by default, one 5 px away is not.
    gt = np.zeros((1024, 1024), int)
    gt[:, 512:] = 1
    near = np.zeros_like(gt)
    near[:, 516:] = 1  # gt boundary pixels at columns 511, 512; superpixel ones at 515, 516
    far = np.zeros_like(gt)
    far[:, 518:] = 1  # nearest superpixel boundary column 517: 5 away from 512
    assert sp.boundary_recall(near, gt) == 1.0
    assert sp.boundary_recall(far, gt) == 0.0
    assert sp.boundary_recall(far, gt, tolerance=5) == 0.5  # reaches column 512, not 511
    assert sp.boundary_recall(far, gt, tolerance=6) == 1.0


# ---------------------------------------------------------------- against loop references

@pytest.mark.parametrize("shape,n_labels,n_gt,seed", [
    ((9, 11), 5, 3, 0), ((12, 10), 20, 2, 1), ((5, 6, 7), 6, 3, 2), ((4, 9, 8), 15, 4, 3),
])
def test_matches_loop_reference(shape, n_labels, n_gt, seed):
    rng = np.random.default_rng(seed)
    # smooth-ish random labels so that there are real regions, with non-contiguous values
    labels = rng.integers(0, n_labels, shape) * 3 - 7
    labels = np.where(rng.random(shape) < 0.6, np.roll(labels, 1, axis=0), labels)
    gt = rng.integers(0, n_gt, shape)
    image = rng.normal(size=shape) + labels * 0.1
    for r in (0, 1, 2):
        assert sp.boundary_recall(labels, gt, tolerance=r) == pytest.approx(ref_boundary_recall(labels, gt, r))
    ue, asa = ref_ue_asa(labels, gt)
    assert sp.undersegmentation_error(labels, gt) == pytest.approx(ue)
    assert sp.achievable_segmentation_accuracy(labels, gt) == pytest.approx(asa)
    assert sp.explained_variation(labels, image) == pytest.approx(ref_explained_variation(labels, image))
    assert sp.compactness(labels) == pytest.approx(ref_compactness(labels))


def test_sparse_huge_label_values_take_the_sorting_path():
    rng = np.random.default_rng(4)
    small = rng.integers(0, 6, (15, 15))
    big = small.astype(np.int64) * 10**12 - 3  # far too wide to offset-index
    gt = rng.integers(0, 3, (15, 15))
    gt_big = gt.astype(np.int64) * 10**15
    assert sp.undersegmentation_error(big, gt_big) == pytest.approx(sp.undersegmentation_error(small, gt))
    assert sp.achievable_segmentation_accuracy(big, gt_big) == pytest.approx(
        sp.achievable_segmentation_accuracy(small, gt))
    assert sp.compactness(big) == pytest.approx(sp.compactness(small))


def test_accepts_torch_and_bool():
    torch = pytest.importorskip("torch")
    assert sp.undersegmentation_error(torch.from_numpy(QUAD), torch.from_numpy(CORNER)) == pytest.approx(2 / 16)
    assert sp.achievable_segmentation_accuracy(QUAD, CORNER.astype(bool)) == pytest.approx(15 / 16)


# ---------------------------------------------------------------- validation

def test_shape_mismatch_names_arguments():
    with pytest.raises(ValueError, match="labels and gt"):
        sp.boundary_recall(QUAD, np.zeros((4, 5), int))
    with pytest.raises(ValueError, match="labels and gt"):
        sp.undersegmentation_error(QUAD, np.zeros((5, 4), int))
    with pytest.raises(ValueError, match="labels and gt"):
        sp.achievable_segmentation_accuracy(QUAD, np.zeros((4, 4, 1), int))
    with pytest.raises(ValueError, match="image"):
        sp.explained_variation(QUAD, np.zeros((4, 5)))


@pytest.mark.parametrize("bad,msg", [
    (np.zeros(16, int), "2D"), (np.zeros((2, 2, 2, 2), int), "2D"), (np.zeros((0, 4), int), "empty"),
    (QUAD.astype(float), "integer"),
])
def test_bad_labels(bad, msg):
    with pytest.raises(ValueError, match=msg):
        sp.compactness(bad)


def test_bad_tolerance_and_image():
    with pytest.raises(ValueError, match="tolerance"):
        sp.boundary_recall(QUAD, CORNER, tolerance=-1)
    with pytest.raises(ValueError, match="tolerance"):
        sp.boundary_recall(QUAD, CORNER, tolerance=1.5)
    with pytest.raises(ValueError, match="NaN"):
        sp.explained_variation(QUAD, np.full((4, 4), np.nan))


# ---------------------------------------------------------------- on the phantom

def test_slic_on_phantom_beats_a_grid(phantom_slice):
    img, gt = phantom_slice["image"], phantom_slice["labels"]
    # as SemiCS2 ran it: a 3-channel copy, so SLIC measures intensity in CIE L*
    labels = slic(np.dstack([img] * 3), n_segments=512, compactness=10.0, start_label=1)
    grid = (np.arange(512)[:, None] // 23) * 100 + np.arange(512)[None, :] // 23  # ~500 blocks
    # SLIC follows the lung and lesion edges; a grid of similar size does not
    assert sp.boundary_recall(labels, gt) > 0.9 > sp.boundary_recall(grid, gt) + 0.1
    assert sp.undersegmentation_error(labels, gt) < sp.undersegmentation_error(grid, gt) / 2
    assert sp.achievable_segmentation_accuracy(labels, gt) > 0.99
    assert sp.explained_variation(labels, img) > sp.explained_variation(grid, img)
    # the grid's square cells are the more compact
    assert sp.compactness(grid) > sp.compactness(labels) > 0.3


def test_supervoxels_on_phantom_volume(phantom_volume):
    vol, gt = phantom_volume["image"], phantom_volume["labels"]
    labels = slic(np.stack([vol] * 3, axis=-1), n_segments=300, compactness=10.0, start_label=1)
    assert sp.achievable_segmentation_accuracy(labels, gt) > 0.97
    assert 0 <= sp.undersegmentation_error(labels, gt) < 0.05
    assert 0.5 < sp.boundary_recall(labels, gt) <= 1.0
    assert 0.5 < sp.explained_variation(labels, vol) <= 1.0
    assert 0.0 < sp.compactness(labels) < math.pi / 6 + 1e-9  # no region beats a cube much here
