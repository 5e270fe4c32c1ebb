"""umsynth.slic against scikit-image: label parity (reference) and quality (fast)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.segmentation import slic as sk_slic

import umsynth
from umsynth.metrics import superpixel as sm


def agreement(a, b) -> float:
    return float(np.mean(np.asarray(a) == np.asarray(b)))


# ----------------------------------------------------------------- reference parity


@pytest.mark.parametrize("n_segments,compactness", [(100, 10.0), (400, 5.0)])
def test_reference_matches_skimage_2d(phantom_slice, n_segments, compactness):
    img = phantom_slice["image"]
    ours = umsynth.slic(img, n_segments=n_segments, compactness=compactness,
                        algorithm="reference")
    theirs = sk_slic(img, n_segments=n_segments, compactness=compactness, channel_axis=None)
    assert ours.dtype == np.int64
    assert agreement(ours, theirs) >= 0.999


def test_reference_matches_skimage_real_ct(ct_slices):
    for name, img in ct_slices.items():
        ours = umsynth.slic(img, n_segments=256, compactness=10, algorithm="reference")
        theirs = sk_slic(img, n_segments=256, compactness=10, channel_axis=None)
        assert agreement(ours, theirs) >= 0.999, name


def test_reference_matches_skimage_lab_call(phantom_slice):
    """intensity='lab' on grey == skimage on a 3-channel copy (the original pipeline)."""
    img = phantom_slice["image"]
    ours = umsynth.slic(img, n_segments=512, compactness=10, intensity="lab",
                        algorithm="reference")
    theirs = sk_slic(np.stack([img] * 3, -1), n_segments=512, compactness=10)
    assert agreement(ours, theirs) >= 0.999


def test_reference_matches_skimage_float_and_sigma(phantom_slice):
    img = phantom_slice["image"].astype(np.float32) / 7.0 - 3.0
    ours = umsynth.slic(img, n_segments=150, compactness=0.5, sigma=1.0, algorithm="reference")
    theirs = sk_slic(img, n_segments=150, compactness=0.5, sigma=1.0, channel_axis=None)
    assert agreement(ours, theirs) >= 0.999


def test_reference_matches_skimage_3d_spacing(phantom_volume):
    vol = phantom_volume["image"]
    kw = dict(n_segments=200, compactness=10, spacing=(2.5, 1.0, 1.0))
    ours = umsynth.slic(vol, algorithm="reference", **kw)
    theirs = sk_slic(vol, channel_axis=None, **kw)
    assert ours.shape == vol.shape
    assert agreement(ours, theirs) >= 0.999


def test_reference_matches_skimage_with_mask_2d(phantom_slice):
    img = phantom_slice["image"]
    mask = phantom_slice["labels"] > 0
    ours = umsynth.slic(img, n_segments=60, compactness=10, mask=mask, algorithm="reference")
    theirs = sk_slic(img, n_segments=60, compactness=10, mask=mask, channel_axis=None)
    assert agreement(ours, theirs) >= 0.999
    assert (ours[~mask] == 0).all()


def test_reference_matches_skimage_with_mask_3d(phantom_volume):
    vol = phantom_volume["image"]
    mask = phantom_volume["labels"] > 0
    ours = umsynth.slic(vol, n_segments=40, compactness=10, mask=mask, algorithm="reference")
    theirs = sk_slic(vol, n_segments=40, compactness=10, mask=mask, channel_axis=None)
    assert agreement(ours, theirs) >= 0.999


def test_reference_matches_skimage_multichannel():
    rng = np.random.default_rng(3)
    img = ndimage.gaussian_filter(rng.random((96, 128, 3)), (3, 3, 0))
    ours = umsynth.slic(img, n_segments=50, compactness=5, channel_axis=-1,
                        algorithm="reference")
    theirs = sk_slic(img, n_segments=50, compactness=5, channel_axis=-1, convert2lab=False)
    assert agreement(ours, theirs) >= 0.999
    ours = umsynth.slic(img, n_segments=50, compactness=5, channel_axis=-1, intensity="lab",
                        algorithm="reference")
    theirs = sk_slic(img, n_segments=50, compactness=5, channel_axis=-1)
    assert agreement(ours, theirs) >= 0.999


def test_reference_start_label_zero(phantom_slice):
    img = phantom_slice["image"][:200, :200]
    ours = umsynth.slic(img, n_segments=30, start_label=0, algorithm="reference")
    theirs = sk_slic(img, n_segments=30, start_label=0, channel_axis=None)
    assert ours.min() == 0
    assert agreement(ours, theirs) >= 0.999


# ----------------------------------------------------------------- fast quality


def _quality(labels, gt, image):
    return np.array([
        sm.explained_variation(labels, image),
        sm.boundary_recall(labels, gt),
        sm.undersegmentation_error(labels, gt),
        sm.achievable_segmentation_accuracy(labels, gt),
    ])


def _ct_ground_truth(img):
    """Regions of a real slice without manual labels: HU-like classes split into pieces."""
    classes = np.digitize(img, [40, 120, 200, 245])
    gt = np.zeros(img.shape, dtype=np.int64)
    nxt = 0
    for c in np.unique(classes):
        lab, n = ndimage.label(classes == c)
        gt[lab > 0] = lab[lab > 0] + nxt
        nxt += n
    return gt


def _assert_quality_close(img, gt, **kw):
    fast = umsynth.slic(img, algorithm="fast", **kw)
    if kw.pop("intensity", "linear") == "lab" and img.ndim == 2:
        ref = sk_slic(np.stack([img] * 3, -1), **kw)
    else:
        ref = sk_slic(img, channel_axis=None, **kw)
    q_fast, q_ref = _quality(fast, gt, img), _quality(ref, gt, img)
    # EV, BR, ASA: higher is better; UE: lower is better. Within 0.01 of skimage, or better.
    better = np.array([1, 1, -1, 1])
    shortfall = (q_ref - q_fast) * better
    assert (shortfall <= 0.01).all(), f"fast {q_fast} vs skimage {q_ref}"


@pytest.mark.parametrize("intensity", ["linear", "lab"])
def test_fast_quality_phantom_slice(phantom_slice, intensity):
    _assert_quality_close(phantom_slice["image"], phantom_slice["labels"], n_segments=512,
                          compactness=10, intensity=intensity)


def test_fast_quality_phantom_montage(phantom_montage):
    _assert_quality_close(phantom_montage["image"], phantom_montage["labels"], n_segments=512,
                          compactness=10, intensity="lab")


def test_fast_quality_real_ct(ct_slices):
    for name, img in ct_slices.items():
        _assert_quality_close(img, _ct_ground_truth(img), n_segments=300, compactness=10)


def test_fast_quality_3d(phantom_volume):
    vol = phantom_volume["image"]
    _assert_quality_close(vol, phantom_volume["labels"], n_segments=300, compactness=10,
                          spacing=(2.0, 1.0, 1.0))


# ----------------------------------------------------------------- fast invariants


def _assert_connected_and_sized(labels, min_size, mask=None):
    labels = np.asarray(labels)
    valid = np.ones(labels.shape, bool) if mask is None else mask
    ids = np.unique(labels[valid])
    assert ids[0] == labels[valid].min()
    assert np.array_equal(ids, np.arange(ids[0], ids[0] + len(ids))), "labels not consecutive"
    for lab_id in ids:
        pieces, n = ndimage.label(labels == lab_id)
        assert n == 1, f"label {lab_id} has {n} pieces"
        size = int((labels == lab_id).sum())
        if size < min_size:
            # only allowed where nothing else is adjacent to merge into
            grown = ndimage.binary_dilation(labels == lab_id) & valid
            assert set(np.unique(labels[grown])) == {lab_id}, f"label {lab_id} small ({size})"


def test_fast_connectivity_2d(phantom_slice, ct_slices):
    for img in [phantom_slice["image"], *ct_slices.values()]:
        lab = umsynth.slic(img, n_segments=300, compactness=10)
        _assert_connected_and_sized(lab, int(0.5 * img.size / 300) // 2)


def test_fast_connectivity_3d_masked(phantom_volume):
    vol = phantom_volume["image"]
    mask = phantom_volume["labels"] == 1  # lungs: two separate masked regions
    lab = umsynth.slic(vol, n_segments=50, compactness=10, mask=mask)
    assert (lab[~mask] == 0).all() and (lab[mask] >= 1).all()
    _assert_connected_and_sized(lab, 1, mask)
    # skimage issue #8295's case: masked 3D, every label connected (6-connectivity)
    struct = ndimage.generate_binary_structure(3, 1)
    for i in np.unique(lab[mask]):
        assert ndimage.label(lab == i, structure=struct)[1] == 1


def test_fast_same_for_any_thread_count(phantom_slice, phantom_volume):
    for img in [phantom_slice["image"], phantom_volume["image"]]:
        runs = [umsynth.slic(img, n_segments=200, threads=t) for t in (1, 2, 4)]
        assert np.array_equal(runs[0], runs[1]) and np.array_equal(runs[0], runs[2])
        assert np.array_equal(runs[0], umsynth.slic(img, n_segments=200, threads=2))


def test_fast_without_connectivity_gives_cluster_ids(phantom_slice):
    lab = umsynth.slic(phantom_slice["image"], n_segments=100, enforce_connectivity=False)
    assert lab.min() >= 1 and lab.max() <= 121  # at most one id per seed (11 x 11 grid)


def test_fast_mask_seeds_inside(phantom_slice):
    img = phantom_slice["image"]
    mask = phantom_slice["labels"] == 1
    lab = umsynth.slic(img, n_segments=40, mask=mask)
    n = len(np.unique(lab[mask]))
    assert 20 <= n <= 80, n  # seeds spread over the mask, about n_segments of them
    assert (lab[~mask] == 0).all()


def test_fast_dtypes_and_layouts_agree(phantom_slice):
    img8 = phantom_slice["image"][:256, :256]
    base = umsynth.slic(img8, n_segments=64)
    # the same grey levels in other dtypes rescale to the same [0, 1] image
    for arr in (img8.astype(np.uint16) * 257, img8.astype(np.int16) - 100,
                img8.astype(np.float32), img8.astype(np.float64)):
        assert agreement(umsynth.slic(arr, n_segments=64), base) >= 0.999
    # non-contiguous input
    big = np.zeros((256, 512), np.uint8)
    big[:, ::2] = img8
    assert np.array_equal(umsynth.slic(big[:, ::2], n_segments=64), base)


def test_torch_in_torch_out(phantom_slice):
    torch = pytest.importorskip("torch")
    img = phantom_slice["image"][:128, :128].copy()
    t = torch.from_numpy(img)
    lab = umsynth.slic(t, n_segments=30)
    assert isinstance(lab, torch.Tensor) and lab.dtype == torch.int64
    assert np.array_equal(lab.numpy(), umsynth.slic(img, n_segments=30))


def test_lab_equals_grey_lstar_with_compactness_over_100(phantom_slice):
    """The documented identity: Lab SLIC == grey SLIC on L*/100 with compactness / 100."""
    from skimage.color import rgb2lab

    img = phantom_slice["image"]
    resc = (img - float(img.min())) / float(img.max() - img.min())  # both calls rescale first
    lstar = rgb2lab(np.stack([resc] * 3, -1))[..., 0] / 100.0
    assert abs(lstar.min()) < 1e-9 and abs(lstar.max() - 1) < 1e-6  # so no second rescale
    lab_call = sk_slic(np.stack([img] * 3, -1), n_segments=300, compactness=10)
    grey_call = sk_slic(lstar, n_segments=300, compactness=0.1, channel_axis=None)
    assert agreement(lab_call, grey_call) >= 0.99  # a*, b* of grey are ~1e-5, not 0
    ours_lab = umsynth.slic(img, n_segments=300, compactness=10, intensity="lab")
    ours_grey = umsynth.slic(lstar, n_segments=300, compactness=0.1)
    assert agreement(ours_lab, ours_grey) >= 0.99


# ----------------------------------------------------------------- bad input


@pytest.mark.parametrize("algorithm", ["fast", "reference"])
@pytest.mark.parametrize("bad,kwargs,exc,match", [
    (np.zeros(10), {}, ValueError, "2D"),
    (np.zeros((2, 3, 4, 5)), {}, ValueError, "dimensions"),
    (np.zeros((0, 10)), {}, ValueError, "empty"),
    (np.array([[0, np.nan], [1, 2]]), {"n_segments": 1}, ValueError, "NaN"),
    (np.array([[0, np.inf], [1, 2]]), {"n_segments": 1}, ValueError, "Inf"),
    (np.ones((8, 8)), {"n_segments": 0}, ValueError, "n_segments"),
    (np.ones((8, 8)), {"compactness": 0}, ValueError, "compactness"),
    (np.ones((8, 8)), {"compactness": -1}, ValueError, "compactness"),
    (np.ones((8, 8)), {"compactness": 1e-20}, ValueError, "compactness"),
    (np.ones((8, 8)), {"compactness": 1e-200}, ValueError, "compactness"),
    (np.ones((8, 8)), {"max_num_iter": 2 ** 40}, ValueError, "max_num_iter"),
    (np.ones((8, 8)), {"max_num_iter": 2.0}, TypeError, "max_num_iter"),
    (np.ones((8, 8)), {"threads": 50000}, ValueError, "threads"),
    (np.ones((8, 8)), {"threads": 2 ** 70}, ValueError, "threads"),
    (np.ones((8, 8)), {"slic_zero": "yes"}, TypeError, "slic_zero"),
    (np.ones((8, 8, 4)), {"channel_axis": -1, "convert2lab": True}, ValueError, "RGB"),
    (np.ones((8, 8)), {"convert2lab": True, "intensity": "lab"}, ValueError, "convert2lab"),
    (np.ones((8, 8)), {"mask": np.ones((8, 9), bool)}, ValueError, "mask shape"),
    (np.ones((8, 8)), {"mask": np.zeros((8, 8), bool)}, ValueError, "no true pixel"),
    (np.ones((8, 8), complex), {}, TypeError, "dtype"),
    (np.ones((8, 8), object), {}, TypeError, "dtype"),
    (np.ones((8, 8), bool), {}, TypeError, "boolean"),
    (np.ones((32, 32, 3), np.uint8), {}, ValueError, "channel_axis"),
    (np.ones((8, 8)), {"spacing": (1, 1, 1)}, ValueError, "spacing"),
    (np.ones((8, 8)), {"start_label": 2}, ValueError, "start_label"),
    (np.ones((8, 8)), {"n_segments": 2.5}, TypeError, "n_segments"),
    (np.ones((8, 8)), {"intensity": "hsv"}, ValueError, "intensity"),
])
def test_bad_input(bad, kwargs, exc, match, algorithm):
    kwargs = {"n_segments": 4, **kwargs}
    with pytest.raises(exc, match=match):
        umsynth.slic(bad, algorithm=algorithm, **kwargs)


def test_bad_algorithm_and_threads():
    with pytest.raises(ValueError, match="algorithm"):
        umsynth.slic(np.ones((8, 8)), n_segments=4, algorithm="gpu")
    with pytest.raises(ValueError, match="threads"):
        umsynth.slic(np.ones((8, 8)), n_segments=4, threads=0)


def test_masked_nan_is_allowed():
    img = np.random.default_rng(0).random((32, 32))
    mask = np.ones_like(img, bool)
    mask[:4] = False
    img[0, 0] = np.nan
    lab = umsynth.slic(img, n_segments=8, mask=mask)
    assert (lab[:4] == 0).all()
