"""umsynth.unsupervised_mask against the original SemiCS2 run() and a numpy mean fill."""
from __future__ import annotations

import numpy as np
import pytest

import umsynth
from umsynth.kernels.original import original_run


def numpy_mean_fill(image, labels, step):
    """Independent reference: per-label means with bincount, floored to `step`."""
    lab = np.asarray(labels).ravel()
    img = np.asarray(image, dtype=np.float64).ravel()
    sums = np.bincount(lab, weights=img)
    counts = np.bincount(lab)
    means = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
    return (np.floor(means / step) * step)[lab].reshape(np.shape(labels)).astype(np.uint8)


def test_reference_reproduces_original_run(phantom_montage):
    img = phantom_montage["image"]
    ours = umsynth.unsupervised_mask(img, algorithm="reference")
    theirs = original_run(img)
    assert ours.shape == img.shape and ours.dtype == np.uint8
    assert np.mean(ours == theirs) >= 0.999


def test_reference_reproduces_original_run_real_ct(ct_slices):
    img = ct_slices["693_UNCR"]
    assert np.mean(umsynth.unsupervised_mask(img, algorithm="reference") == original_run(img)) >= 0.999


@pytest.mark.parametrize("step", [1, 10, 25])
def test_fast_um_is_the_quantized_mean_of_its_superpixels(phantom_slice, step):
    img = phantom_slice["image"]
    um, labels = umsynth.unsupervised_mask(img, step=step, return_labels=True)
    assert labels.dtype == np.int64 and labels.min() == 1
    assert np.array_equal(um, numpy_mean_fill(img, labels, step))
    assert (um % step == 0).all()


def test_fast_um_represents_the_image_as_well_as_the_original(phantom_montage):
    """Fast SLIC draws other boundaries; its UM must fit the image as well as skimage's.

    Compared before quantization (step 1): with step 10, flat noisy regions whose mean
    sits near a multiple of 10 flip by a whole step on either side, which says nothing
    about the superpixels.
    """
    from skimage.segmentation import slic as sk_slic

    img = phantom_montage["image"]
    ours = umsynth.unsupervised_mask(img, step=1).astype(float)
    sk_labels = sk_slic(np.stack([img] * 3, -1), n_segments=512, compactness=10)
    theirs = numpy_mean_fill(img, sk_labels, 1).astype(float)
    err_ours, err_theirs = np.abs(ours - img).mean(), np.abs(theirs - img).mean()
    assert err_ours <= err_theirs + 0.25, (err_ours, err_theirs)


def test_batch_equals_one_by_one(phantom_slice, ct_slices):
    imgs = [phantom_slice["image"][:256, :256], ct_slices["693_UNCR"][:256, :256],
            phantom_slice["image"][256:, 256:]]
    batch = np.stack(imgs)
    um_b, lab_b = umsynth.unsupervised_mask(batch, return_labels=True, threads=2)
    for i, img in enumerate(imgs):
        um_1, lab_1 = umsynth.unsupervised_mask(img, return_labels=True, threads=1)
        assert np.array_equal(um_b[i], um_1) and np.array_equal(lab_b[i], lab_1)
    um_4d = umsynth.unsupervised_mask(batch[:, None])
    assert um_4d.shape == (3, 1, 256, 256)
    assert np.array_equal(um_4d[:, 0], um_b)


def test_thread_count_does_not_change_the_mask(phantom_montage):
    img = phantom_montage["image"]
    runs = [umsynth.unsupervised_mask(img, threads=t) for t in (1, 2, 3)]
    assert all(np.array_equal(runs[0], r) for r in runs[1:])


def test_torch_batch_in_torch_out(phantom_slice):
    torch = pytest.importorskip("torch")
    batch = torch.from_numpy(np.stack([phantom_slice["image"][:128, :128]] * 2)).unsqueeze(1)
    um, lab = umsynth.unsupervised_mask(batch, n_segments=64, return_labels=True)
    assert isinstance(um, torch.Tensor) and um.shape == batch.shape and um.dtype == torch.uint8
    assert isinstance(lab, torch.Tensor) and lab.dtype == torch.int64


def test_other_dtypes_use_their_own_range(phantom_slice):
    img = phantom_slice["image"][:200, :200]
    hu = img.astype(np.float32) * (1600 / 255) - 1500  # the same picture in HU
    um8 = umsynth.unsupervised_mask(img, n_segments=64, step=1)
    umf = umsynth.unsupervised_mask(hu, n_segments=64, step=1)
    # HU maps back to 0..255 through the image's own min..max: same up to rounding
    scale = 255.0 / (img.max() - img.min())
    expected = (um8.astype(float) - img.min()) * scale
    assert np.abs(umf.astype(float) - expected).max() <= 2 * scale + 1


@pytest.mark.parametrize("bad,kwargs,exc,match", [
    (np.zeros((2, 3, 8, 8)), {}, ValueError, r"\(N, 1, H, W\)"),
    (np.zeros(10), {}, ValueError, "expected"),
    (np.zeros((0, 8, 8)), {}, ValueError, "empty"),
    (np.full((2, 8, 8), np.nan), {}, ValueError, "NaN"),
    (np.zeros((8, 8), complex), {}, TypeError, "dtype"),
    (np.zeros((8, 8)), {"step": 0}, ValueError, "step"),
    (np.zeros((8, 8)), {"n_segments": 0}, ValueError, "n_segments"),
    (np.zeros((8, 8)), {"compactness": 1e-30}, ValueError, "compactness"),
    (np.zeros((8, 8)), {"threads": 100000}, ValueError, "threads"),
    (np.zeros((8, 8)), {"compactness": 0}, ValueError, "compactness"),
])
def test_bad_input(bad, kwargs, exc, match):
    kwargs = {"n_segments": 4, **kwargs}
    with pytest.raises(exc, match=match):
        umsynth.unsupervised_mask(bad, **kwargs)
