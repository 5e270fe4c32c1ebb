"""The fast SLIC as the GPU runs it, checked on the CPU (issue 11).

Every step's result is defined independently of thread or atomic order. These tests
check that definition where CI can: any thread count and batch against single images
give the same labels; every label is one connected piece and no piece is below
min_size unless nothing is adjacent; the steps of slic_steps.h in the CUDA launcher's
configuration (16-pixel row segments, one copy of the centre sums added to with
atomics), run on the CPU, give the CPU configuration's labels and masks bit for bit
(tests/kernels/test_slic_kernel_reference.py checks those against the numpy statement); the
CUDA module is built, reports that no device is usable, and GPU input is refused with
that reason rather than copied to the host.
"""
from __future__ import annotations

import functools
import math
import shutil

import numpy as np
import pytest
from scipy import ndimage

import umsynth
from umsynth.kernels import slic as kslic
from umsynth.kernels.arrays import CudaUnavailableError
from umsynth.kernels.config import cuda_status

STRUCT = {2: ndimage.generate_binary_structure(2, 1), 3: ndimage.generate_binary_structure(3, 1)}


def _min_size(shape, n_segments, mask=None, factor=0.5):
    """The min_size rule of the fast algorithm: factor * region / seeds."""
    m = None if mask is None else np.asarray(mask, bool).reshape((1,) * (3 - len(shape)) + shape)
    full = (1,) * (3 - len(shape)) + tuple(shape)
    _, n_cells, _ = kslic.fast_grid(full, n_segments, m)
    region = full[0] * full[1] * full[2] if m is None else int(m.sum())
    seeds = n_cells if m is None else min(n_segments, region)
    return int(factor * region / seeds)


def _check_pieces(labels, min_size, mask=None):
    """Every label one connected piece; a piece below min_size has no labelled neighbour."""
    labels = np.asarray(labels)
    valid = np.ones(labels.shape, bool) if mask is None else np.asarray(mask, bool)
    ids = np.unique(labels[valid])
    assert np.array_equal(ids, np.arange(1, len(ids) + 1)), "labels not consecutive from 1"
    assert (labels[~valid] == 0).all()
    st = STRUCT[labels.ndim]
    for i in ids:
        piece = labels == i
        assert ndimage.label(piece, structure=st)[1] == 1, f"label {i} is not one piece"
        size = int(piece.sum())
        if size < min_size:
            ring = ndimage.binary_dilation(piece, structure=st) & valid & ~piece
            assert not ring.any(), f"label {i} has {size} < {min_size} pixels and a neighbour"


def _issue_8295_case():
    """skimage #8295's setting: a smoothed 3-channel 24^3 volume, a mask with 2^3 pockets."""
    shape = (24, 24, 24)
    rng = np.random.default_rng(27)
    vol = ndimage.uniform_filter(rng.integers(0, 255, size=shape + (3,)).astype(np.float64),
                                 size=(3, 3, 3, 1))
    mrng = np.random.default_rng(1027)
    mask = np.ones(shape, bool)
    for _ in range(6):
        z, y, x = (int(mrng.integers(0, s - 2)) for s in shape)
        mask[z:z + 2, y:y + 2, x:x + 2] = False
    return vol, mask


# ------------------------------------------------------------------ determinism


@pytest.mark.parametrize("case", ["2d", "3d_spacing", "3d_mask", "multichannel"])
def test_labels_identical_for_1_2_4_threads(phantom_slice, phantom_volume, case):
    if case == "2d":
        img, kw = phantom_slice["image"], dict(n_segments=300)
    elif case == "3d_spacing":
        img, kw = phantom_volume["hu"], dict(n_segments=150, spacing=(2.5, 1.0, 1.0))
    elif case == "3d_mask":
        img, kw = phantom_volume["image"], dict(n_segments=60, mask=phantom_volume["labels"] > 0)
    else:
        img, mask = _issue_8295_case()
        kw = dict(n_segments=80, compactness=5, channel_axis=-1, mask=mask)
    runs = [umsynth.slic(img, threads=t, **kw) for t in (1, 2, 4)]
    assert np.array_equal(runs[0], runs[1]) and np.array_equal(runs[0], runs[2])
    assert np.array_equal(runs[0], umsynth.slic(img, threads=2, **kw))  # run to run


def test_batch_equals_one_by_one_2d(phantom_slice, ct_slices):
    imgs = [phantom_slice["image"]] + [ndimage.zoom(c, 512 / c.shape[0], order=1)
                                       for c in ct_slices.values()]
    imgs = [i[:512, :512] for i in imgs]
    batch = np.stack(imgs)
    for t in (1, 2):
        um, lab = umsynth.unsupervised_mask(batch, n_segments=256, return_labels=True, threads=t)
        for k, img in enumerate(imgs):
            um1, lab1 = umsynth.unsupervised_mask(img, n_segments=256, return_labels=True,
                                                  threads=1)
            assert np.array_equal(lab[k], lab1) and np.array_equal(um[k], um1)
            # the UM's labels are slic's with the UM's settings
            assert np.array_equal(lab1, umsynth.slic(img, n_segments=256, intensity="lab"))


def test_batch_equals_one_by_one_3d(phantom_volume):
    vols = [phantom_volume["image"], np.ascontiguousarray(phantom_volume["image"][:, ::-1]),
            np.ascontiguousarray(phantom_volume["image"][::-1])]
    mask = phantom_volume["labels"] > 0
    for m in (None, mask):
        kw = dict(n_segments=80, compactness=10, spacing=(2.0, 1.0, 1.0), mask=m)
        mm = None if m is None else np.ascontiguousarray(m, dtype=np.uint8)
        sp = kslic.SlicInput(vols[0][..., None], mm, is_2d=False, multichannel=False,
                             spacing=np.array([2.0, 1.0, 1.0]), sigma=np.zeros(3),
                             mask_count=0 if m is None else int(m.sum()),
                             mask_box=None if m is None else kslic.HOST.bbox(mm))
        batch = np.stack(vols)[..., None]  # (N, D, H, W, C)
        for t in (1, 2):
            labels, um = kslic.slic_fast(sp, 80, 10.0, 10, True, 0.5, 3.0, 1, "linear", t,
                                          batch=batch, um_step=10)
            for k, v in enumerate(vols):
                assert np.array_equal(labels[k], umsynth.slic(v, threads=1, **kw))
            assert um.shape == labels.shape and um.dtype == np.uint8


# ------------------------------------------------------------------ connectivity rule


def test_pieces_connected_and_large_2d(phantom_slice, ct_slices):
    for img in [phantom_slice["image"], *ct_slices.values()]:
        for n_seg, factor in ((300, 0.5), (100, 0.9)):
            lab = umsynth.slic(img, n_segments=n_seg, compactness=10, min_size_factor=factor)
            _check_pieces(lab, _min_size(img.shape, n_seg, factor=factor))


def test_pieces_connected_and_large_2d_masked(phantom_slice):
    img = phantom_slice["image"]
    mask = phantom_slice["labels"] == 1  # the two lungs: separate regions
    lab = umsynth.slic(img, n_segments=120, compactness=10, mask=mask)
    _check_pieces(lab, _min_size(img.shape, 120, mask), mask)


def test_pieces_connected_and_large_3d(phantom_volume):
    vol = phantom_volume["hu"]
    lab = umsynth.slic(vol, n_segments=150, compactness=10, spacing=(2.0, 1.0, 1.0))
    _check_pieces(lab, _min_size(vol.shape, 150))
    mask = phantom_volume["labels"] == 1
    lab = umsynth.slic(phantom_volume["image"], n_segments=40, compactness=10, mask=mask)
    _check_pieces(lab, _min_size(vol.shape, 40, mask), mask)


@pytest.mark.parametrize("factor", [0.5, 0.9])
def test_skimage_issue_8295_masked_3d(factor):
    vol, mask = _issue_8295_case()
    lab = umsynth.slic(vol, n_segments=80, compactness=5, mask=mask, channel_axis=-1,
                       min_size_factor=factor)
    _check_pieces(lab, _min_size(mask.shape, 80, mask, factor), mask)


def test_isolated_small_piece_keeps_its_own_label():
    # a 2-pixel island of mask far from the rest: nothing to merge into, so it stays
    img = np.zeros((40, 40), np.uint8)
    img[:, 20:] = 200
    mask = np.zeros((40, 40), bool)
    mask[:, :30] = True
    mask[5, 37:39] = True
    lab = umsynth.slic(img, n_segments=8, compactness=10, mask=mask)
    island = lab[5, 37]
    assert island >= 1 and lab[5, 38] == island and (lab == island).sum() == 2
    _check_pieces(lab, _min_size(img.shape, 8, mask), mask)


# ------------------------------------------------------------------ CUDA build, no device


def test_cuda_module_built_where_nvcc_exists():
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not on PATH: the CUDA module is not built here")
    from umsynth import _cuda

    assert "80" in _cuda.architectures() and "90" in _cuda.architectures()
    assert callable(_cuda.slic_fast) and callable(_cuda.slic_scratch_bytes)


def test_show_config_reports_device_state(capsys):
    info = umsynth.show_config()
    usable, reason = cuda_status()
    assert info["cuda_device_usable"] is usable and info["cuda_reason"] == reason
    assert info["openmp_threads"] >= 1 and "cuda_architectures" in info
    if not usable:
        assert reason and "cuda_reason" in capsys.readouterr().out


class _FakeGpuArray:
    """Exports CUDA memory the way CuPy does (the interface only; no allocation)."""

    def __init__(self, shape=(64, 64)):
        self.__cuda_array_interface__ = {"shape": shape, "typestr": "|u1", "data": (0, False),
                                         "version": 3, "strides": None}


@pytest.mark.skipif(cuda_status()[0], reason="a CUDA device is usable here")
def test_gpu_input_without_device_is_refused_not_copied():
    reason = cuda_status()[1]
    for call in (lambda: umsynth.slic(_FakeGpuArray()),
                 lambda: umsynth.unsupervised_mask(_FakeGpuArray()),
                 lambda: umsynth.slic(np.zeros((32, 32), np.uint8), device="cuda"),
                 lambda: umsynth.unsupervised_mask(np.zeros((32, 32), np.uint8), device="cuda:0")):
        with pytest.raises(CudaUnavailableError, match="cannot run on the GPU") as e:
            call()
        assert reason in str(e.value)
        # a ValueError like every input the machine cannot serve; a RuntimeError as before
        assert isinstance(e.value, ValueError) and isinstance(e.value, RuntimeError)


def test_device_argument_errors():
    img = np.zeros((32, 32), np.uint8)
    with pytest.raises(ValueError, match="device must be"):
        umsynth.slic(img, device="tpu")
    with pytest.raises(ValueError, match="GPU array but device='cpu'"):
        umsynth.slic(_FakeGpuArray(), device="cpu")
    with pytest.raises(ValueError, match="reference.*CPU only"):
        umsynth.slic(_FakeGpuArray(), algorithm="reference")
    with pytest.raises(ValueError, match="reference.*CPU only"):
        umsynth.slic(img, device="cuda", algorithm="reference")
    # device="cpu" on host input is the CPU path itself
    assert np.array_equal(umsynth.slic(img, n_segments=4, device="cpu"),
                          umsynth.slic(img, n_segments=4))


@pytest.mark.skipif(cuda_status()[0], reason="a CUDA device is usable here")
def test_gpu_tests_skip_with_the_reason():
    import pathlib
    import subprocess
    import sys

    reason = cuda_status()[1]
    here = pathlib.Path(__file__).parent
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                          str(here / "test_slic_gpu.py")], capture_output=True, text=True,
                         cwd=here.parents[1], timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "skipped" in out.stdout and reason in out.stdout and "passed" not in out.stdout


# ------------------------------------------------------------------ the GPU configuration on the CPU


@pytest.fixture
def gpu_config(monkeypatch):
    """Run the fast SLIC's steps in the CUDA launcher's configuration, on the CPU."""

    def run(kind, fn, *a, **kw):
        with monkeypatch.context() as m:
            if kind == "gpu":
                m.setattr(kslic, "launch_cpu", functools.partial(kslic.launch_cpu,
                                                                  gpu_layout=True))
            return fn(*a, **kw)

    return run


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32, np.float64])
def test_gpu_configuration_equals_cpu_2d(phantom_slice, gpu_config, dtype):
    img = phantom_slice["image"].astype(dtype)
    if dtype in (np.int16, np.float32, np.float64):
        img = img * 3 - 500
    for kw in (dict(n_segments=300), dict(n_segments=300, intensity="lab"),
               dict(n_segments=80, compactness=3, start_label=0),
               dict(n_segments=200, enforce_connectivity=False),
               dict(n_segments=150, mask=phantom_slice["labels"] == 1, min_size_factor=0.9),
               dict(n_segments=50, max_num_iter=0),
               dict(n_segments=120, compactness=0.5, slic_zero=True),
               dict(n_segments=90, slic_zero=True, mask=phantom_slice["labels"] == 1)):
        for t in ((1, 2) if dtype == np.uint8 else (2,)):
            want = umsynth.slic(img, threads=t, **kw)
            assert np.array_equal(gpu_config("gpu", umsynth.slic, img, threads=t, **kw), want), kw


def test_gpu_configuration_equals_cpu_3d_and_multichannel(phantom_volume, gpu_config):
    vol = phantom_volume["hu"]
    for kw in (dict(n_segments=150, spacing=(2.5, 1.0, 1.0)),
               dict(n_segments=40, mask=phantom_volume["labels"] == 1)):
        assert np.array_equal(gpu_config("gpu", umsynth.slic, vol, threads=2, **kw),
                              umsynth.slic(vol, threads=2, **kw))
    v8295, mask = _issue_8295_case()
    for factor in (0.5, 0.9):
        kw = dict(n_segments=80, compactness=5, channel_axis=-1, mask=mask, min_size_factor=factor)
        assert np.array_equal(gpu_config("gpu", umsynth.slic, v8295, threads=2, **kw),
                              umsynth.slic(v8295, **kw))
    rgb = np.ascontiguousarray(v8295[0] / 255.0)
    kw = dict(n_segments=40, channel_axis=-1, intensity="lab")
    assert np.array_equal(gpu_config("gpu", umsynth.slic, rgb, **kw), umsynth.slic(rgb, **kw))


def test_gpu_configuration_equals_cpu_um_batch(phantom_slice, ct_slices, gpu_config):
    imgs = [phantom_slice["image"]] + [ndimage.zoom(c, 512 / c.shape[0], order=1)[:512, :512]
                                       for c in ct_slices.values()]
    batch = np.stack(imgs)
    um, lab = umsynth.unsupervised_mask(batch, return_labels=True)
    tum, tlab = gpu_config("gpu", umsynth.unsupervised_mask, batch, return_labels=True, threads=2)
    assert np.array_equal(tlab, lab) and np.array_equal(tum, um)
    f = batch.astype(np.float32) * 2.5 - 1000.0
    assert np.array_equal(gpu_config("gpu", umsynth.unsupervised_mask, f, n_segments=200, step=5),
                          umsynth.unsupervised_mask(f, n_segments=200, step=5))
