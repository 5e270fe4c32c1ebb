"""The compiled fast SLIC equals its plain-numpy statement (umsynth.kernels.reference), exactly.

This pins down the per-element algorithm that the CPU launcher (and later the CUDA
launcher) runs: seeds, candidate cells, float32 distances, integer centre sums, the tie
rule, connectivity and merging, consecutive labels and the unsupervised-mask fill.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

import umsynth
from umsynth.kernels import reference as ref
from umsynth.kernels import slic as kslic


def _random_image(rng, shape, channels=None, dtype=np.uint8):
    full = shape + ((channels,) if channels else ())
    sig = [2.0] * len(shape) + ([0] if channels else [])
    img = ndimage.gaussian_filter(rng.random(full), sig)
    img += 0.15 * rng.random(full)  # texture, so that ties and fragments occur
    img = (img - img.min()) / (img.max() - img.min())
    if dtype == np.uint8:
        return (img * 255).astype(np.uint8)
    return (img * 1000 - 300).astype(dtype)


def _run_both(img, n_segments, compactness=10.0, mask=None, spacing=None, intensity="linear",
              channel_axis=None, max_iter=10, enforce=True, min_size_factor=0.5,
              slic_zero=False):
    ours = umsynth.slic(img, n_segments=n_segments, compactness=compactness, mask=mask,
                        spacing=spacing, intensity=intensity, channel_axis=channel_axis,
                        max_num_iter=max_iter, enforce_connectivity=enforce,
                        min_size_factor=min_size_factor, slic_zero=slic_zero)
    vol = img if channel_axis is not None else img[..., None]
    if vol.ndim == 3:
        vol = vol[None]
    m = None if mask is None else np.asarray(mask, bool).reshape(vol.shape[:3])
    D, H, W, _ = vol.shape
    grid, n_cells, step = kslic.fast_grid((D, H, W), n_segments, m)
    sp = np.ones(3) if spacing is None else np.insert(np.asarray(spacing, float), 0, 1.0)[-3:]
    scale = 100.0 if intensity == "lab" else 1.0
    region = D * H * W if m is None else int(m.sum())
    n_seeds = n_cells if m is None else min(n_segments, int(m.sum()))
    theirs, _, _ = ref.fast_slic_reference(
        vol, grid, (sp / step) ** 2, (scale / compactness) ** 2, max_iter=max_iter,
        min_size=int(min_size_factor * region / n_seeds), enforce=enforce, mask=m,
        intensity=intensity, slic_zero=slic_zero)
    return np.asarray(ours), theirs.reshape(np.shape(ours))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kernel_equals_reference_2d(seed):
    rng = np.random.default_rng(seed)
    img = _random_image(rng, (48 + 7 * seed, 61))
    ours, theirs = _run_both(img, n_segments=30 + 10 * seed)
    assert np.array_equal(ours, theirs)


def test_kernel_equals_reference_without_connectivity():
    img = _random_image(np.random.default_rng(5), (40, 52))
    ours, theirs = _run_both(img, n_segments=25, enforce=False)
    assert np.array_equal(ours, theirs)


def test_kernel_equals_reference_float_and_lab():
    rng = np.random.default_rng(7)
    img = _random_image(rng, (40, 44), dtype=np.float32)
    ours, theirs = _run_both(img, n_segments=20, compactness=0.3)
    assert np.array_equal(ours, theirs)
    img8 = _random_image(rng, (40, 44))
    ours, theirs = _run_both(img8, n_segments=20, intensity="lab")
    assert np.array_equal(ours, theirs)


def test_kernel_equals_reference_3d_spacing_and_mask():
    rng = np.random.default_rng(11)
    vol = _random_image(rng, (10, 24, 26))
    ours, theirs = _run_both(vol, n_segments=40, spacing=(2.0, 1.0, 1.0))
    assert np.array_equal(ours, theirs)
    mask = np.zeros(vol.shape, bool)
    mask[2:9, 3:20, 4:22] = True
    mask[5, :, :] = False  # cut the mask in two: pieces that cannot merge across
    ours, theirs = _run_both(vol, n_segments=30, mask=mask)
    assert np.array_equal(ours, theirs)


def test_kernel_equals_reference_multichannel():
    rng = np.random.default_rng(13)
    img = _random_image(rng, (36, 40), channels=3)
    ours, theirs = _run_both(img, n_segments=16, channel_axis=-1)
    assert np.array_equal(ours, theirs)


def test_kernel_equals_reference_heavy_merging():
    """A large min_size forces several merge rounds."""
    img = _random_image(np.random.default_rng(17), (50, 50))
    ours, theirs = _run_both(img, n_segments=40, min_size_factor=2.5)
    assert np.array_equal(ours, theirs)


def test_lstar_matches_skimage():
    from skimage.color import rgb2lab

    v = np.linspace(0, 1, 1001)
    expected = rgb2lab(np.stack([v] * 3, -1)[None])[0, :, 0] / 100.0
    assert np.abs(ref.lstar_unit(v) - expected).max() < 1e-12


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.int16])
def test_unsupervised_mask_fill_equals_reference(dtype):
    rng = np.random.default_rng(3)
    img = _random_image(rng, (64, 72), dtype=dtype)
    um, labels = umsynth.unsupervised_mask(img, n_segments=30, step=10, return_labels=True)
    assert np.array_equal(um, ref.unsupervised_mask_reference(img, labels, 10))


def test_kernel_equals_reference_on_random_small_cases():
    """Edge shapes (1-pixel axes, a segment per pixel, tiny masks, 0 iterations)."""
    rng = np.random.default_rng(2026)
    for _ in range(40):
        nd = int(rng.integers(2, 4))
        shape = tuple(int(v) for v in rng.integers(1, 14, size=nd))
        if nd == 3 and shape[-1] in (3, 4) and min(shape[:2]) > 4:
            continue  # would read as a colour image
        img = (rng.random(shape) * 255).astype(np.uint8)
        mask = None
        n_max = img.size
        if rng.random() < 0.3:
            mask = rng.random(shape) < 0.6
            mask.flat[0] = True
            n_max = int(mask.sum())
        ours, theirs = _run_both(img, n_segments=int(rng.integers(1, n_max + 1)), mask=mask,
                                 compactness=float(rng.choice([0.1, 10.0, 100.0])),
                                 max_iter=int(rng.integers(0, 5)),
                                 min_size_factor=float(rng.choice([0.0, 0.5, 2.0])))
        assert np.array_equal(ours, theirs), shape


@pytest.mark.parametrize("gpu_layout", [False, True])
def test_kernel_equals_reference_wide_odd_rows(gpu_layout, monkeypatch):
    """Rows longer than the CPU's 256-pixel segments and not a multiple of any segment or
    lane count, with a mask: spans, lane groups and runs cross segment ends. Also in the
    GPU's configuration (16-pixel segments, atomic sums), run on the CPU."""
    import functools

    if gpu_layout:
        monkeypatch.setattr(kslic, "launch_cpu",
                            functools.partial(kslic.launch_cpu, gpu_layout=True))
    rng = np.random.default_rng(517)
    img = _random_image(rng, (37, 517))
    mask = np.ones(img.shape, bool)
    mask[5:20, 100:160] = False
    mask[:, 300] = False
    for kw in (dict(n_segments=60), dict(n_segments=25, mask=mask, min_size_factor=0.9),
               dict(n_segments=40, intensity="lab", compactness=3.0)):
        ours, theirs = _run_both(img, **kw)
        assert np.array_equal(ours, theirs), kw


@pytest.mark.parametrize("case", ["grey", "lab", "masked_3d", "multichannel", "float"])
def test_slico_kernel_equals_reference(case):
    """SLICO (slic_zero): the per-centre colour weights of the kernel are the numpy
    statement's, in float32 and in the same order, so the labels are equal."""
    rng = np.random.default_rng(7)
    if case == "grey":
        ours, theirs = _run_both(_random_image(rng, (50, 57)), 40, compactness=0.5,
                                 slic_zero=True)
    elif case == "lab":
        ours, theirs = _run_both(_random_image(rng, (41, 66)), 30, intensity="lab",
                                 slic_zero=True)
    elif case == "float":
        ours, theirs = _run_both(_random_image(rng, (45, 45), dtype=np.float64), 25,
                                 compactness=0.2, slic_zero=True, enforce=False)
    elif case == "masked_3d":
        img = _random_image(rng, (9, 24, 26))
        mask = np.zeros(img.shape, bool)
        mask[1:8, 3:21, 2:25] = True
        ours, theirs = _run_both(img, 20, compactness=1.0, mask=mask, spacing=(2, 1, 1),
                                 slic_zero=True)
    else:
        ours, theirs = _run_both(_random_image(rng, (36, 40), channels=4), 16,
                                 compactness=0.3, channel_axis=-1, slic_zero=True)
    assert np.array_equal(ours, theirs)
    # and SLICO is not plain SLIC under another name on these inputs
    assert len(np.unique(ours)) > 1
