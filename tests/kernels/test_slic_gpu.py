"""The CUDA launcher against the CPU path, bit for bit (runs only where a GPU is usable).

benchmarks/gpu/check.sh runs this file on a GPU machine. Without a usable device every
test here is skipped with the reason umsynth.show_config() gives.
"""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from scipy import ndimage

import umsynth
from umsynth.kernels.arrays import ImageOps
from umsynth.kernels.config import cuda_status
from umsynth.kernels.slic import DTYPE_CODE, MODE

_USABLE, _REASON = cuda_status()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not _USABLE, reason=_REASON)]


@pytest.fixture(params=["torch", "cupy"])
def fw(request):
    """The framework of the GPU arrays: 'torch' or 'cupy'."""
    if importlib.util.find_spec(request.param) is None:
        pytest.skip(f"{request.param} is not installed")
    mod = pytest.importorskip(request.param)
    if request.param == "torch" and not mod.cuda.is_available():
        pytest.skip("torch has no CUDA here")
    return request.param


def gpu(a, fw):
    a = np.ascontiguousarray(a)
    if fw == "torch":
        import torch

        return torch.from_numpy(a).to("cuda")
    import cupy

    return cupy.asarray(a)


def host(a):
    return a.cpu().numpy() if hasattr(a, "cpu") else a.get()


def _same(cpu_out, gpu_out, fw):
    if fw == "torch":
        import torch

        assert isinstance(gpu_out, torch.Tensor) and gpu_out.is_cuda
    else:
        import cupy

        assert isinstance(gpu_out, cupy.ndarray)
    g = host(gpu_out)
    assert g.dtype == cpu_out.dtype and g.shape == cpu_out.shape
    assert np.array_equal(g, cpu_out), f"{(g != cpu_out).sum()} of {g.size} values differ"


def _volume_8295():
    rng = np.random.default_rng(27)
    vol = ndimage.uniform_filter(rng.integers(0, 255, size=(24, 24, 24, 3)).astype(np.float64),
                                 size=(3, 3, 3, 1))
    mask = np.ones((24, 24, 24), bool)
    mrng = np.random.default_rng(1027)
    for _ in range(6):
        z, y, x = (int(mrng.integers(0, 22)) for _ in range(3))
        mask[z:z + 2, y:y + 2, x:x + 2] = False
    return vol, mask


# ------------------------------------------------------------------ equality with the CPU


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32, np.float64])
@pytest.mark.parametrize("intensity", ["linear", "lab"])
def test_slic_2d_equals_cpu(phantom_slice, fw, dtype, intensity):
    img = phantom_slice["image"].astype(dtype)
    for kw in (dict(n_segments=300), dict(n_segments=100, compactness=3, start_label=0),
               dict(n_segments=200, enforce_connectivity=False),
               dict(n_segments=150, mask=phantom_slice["labels"] == 1),
               dict(n_segments=50, max_num_iter=0),
               dict(n_segments=120, compactness=0.5, slic_zero=True)):
        _same(umsynth.slic(img, intensity=intensity, **kw),
              umsynth.slic(gpu(img, fw), intensity=intensity, **kw), fw)


def test_slic_real_ct_equals_cpu(ct_slices, fw):
    for img in ct_slices.values():
        _same(umsynth.slic(img, n_segments=400, intensity="lab"),
              umsynth.slic(gpu(img, fw), n_segments=400, intensity="lab"), fw)


def test_slic_3d_spacing_and_mask_equals_cpu(phantom_volume, fw):
    vol = phantom_volume["hu"]
    for kw in (dict(n_segments=150, spacing=(2.5, 1.0, 1.0)),
               dict(n_segments=60, mask=phantom_volume["labels"] > 0, spacing=(2.0, 1.0, 1.0))):
        _same(umsynth.slic(vol, **kw), umsynth.slic(gpu(vol, fw), **kw), fw)
    # a host mask with a GPU image is copied to the device once
    m = phantom_volume["labels"] == 1
    _same(umsynth.slic(vol, n_segments=40, mask=m), umsynth.slic(gpu(vol, fw), n_segments=40,
                                                                 mask=m), fw)


def test_slic_multichannel_masked_3d_equals_cpu(fw):
    vol, mask = _volume_8295()
    kw = dict(n_segments=80, compactness=5, channel_axis=-1)
    _same(umsynth.slic(vol, mask=mask, **kw), umsynth.slic(gpu(vol, fw), mask=gpu(mask, fw), **kw), fw)
    rgb = (vol[0] * 1.0).astype(np.float32)
    _same(umsynth.slic(rgb, n_segments=40, channel_axis=-1, intensity="lab"),
          umsynth.slic(gpu(rgb, fw), n_segments=40, channel_axis=-1, intensity="lab"), fw)


def test_non_contiguous_gpu_input_equals_cpu(phantom_slice, fw):
    img = phantom_slice["image"]
    g = gpu(img, fw).T
    _same(umsynth.slic(np.ascontiguousarray(img.T), n_segments=200), umsynth.slic(g, n_segments=200), fw)


def test_unsupervised_mask_batch_equals_cpu(phantom_slice, ct_slices, fw):
    imgs = [phantom_slice["image"]] + [ndimage.zoom(c, 512 / c.shape[0], order=1)[:512, :512]
                                       for c in ct_slices.values()]
    batch = np.stack(imgs * 3)  # (N, 512, 512) uint8
    um, lab = umsynth.unsupervised_mask(batch, return_labels=True)
    gum, glab = umsynth.unsupervised_mask(gpu(batch, fw), return_labels=True)
    _same(um, gum, fw)
    _same(lab, glab, fw)
    f = batch.astype(np.float32)[:, None] * 3.0 - 1000.0  # (N, 1, H, W) float, own range
    _same(umsynth.unsupervised_mask(f, n_segments=256, step=5),
          umsynth.unsupervised_mask(gpu(f, fw), n_segments=256, step=5), fw)


def test_explicit_device_for_host_input(phantom_slice):
    pytest.importorskip("torch")
    img = phantom_slice["image"]
    out = umsynth.slic(img, n_segments=200, device="cuda")
    assert isinstance(out, np.ndarray) and np.array_equal(out, umsynth.slic(img, n_segments=200))


# ------------------------------------------------------------------ streams


def test_non_default_stream(phantom_slice, fw):
    batch = np.stack([phantom_slice["image"], phantom_slice["image"][::-1]])
    want = umsynth.unsupervised_mask(batch)
    if fw == "torch":
        import torch

        s = torch.cuda.Stream()
        with torch.cuda.stream(s):
            x = gpu(batch, fw)  # made and used on the side stream
            got = umsynth.unsupervised_mask(x)
        s.synchronize()
    else:
        import cupy

        s = cupy.cuda.Stream(non_blocking=True)
        with s:
            x = gpu(batch, fw)
            got = umsynth.unsupervised_mask(x)
        s.synchronize()
    _same(want, got, fw)


# ------------------------------------------------------------------ bad input, memory


@pytest.mark.parametrize("bad, kwargs", [
    (np.full((32, 32), np.nan, np.float32), {}),
    (np.zeros((32, 32), bool), {}),
    (np.zeros((2, 2, 2, 2), np.uint8), {}),
    (np.zeros((32, 32), np.uint8), dict(n_segments=5000)),
    (np.zeros((32, 32), np.uint8), dict(mask=np.ones((31, 32), bool))),
    (np.zeros((32, 32), np.uint8), dict(mask=np.zeros((32, 32), bool))),
    (np.zeros((32, 32), np.uint8), dict(compactness=0)),
    (np.zeros((32, 32, 3), np.uint8), dict(channel_axis=5)),
])
def test_bad_input_same_error_as_cpu(fw, bad, kwargs):
    with pytest.raises((ValueError, TypeError)) as cpu_err:
        umsynth.slic(bad, **kwargs)
    with pytest.raises(type(cpu_err.value)) as gpu_err:
        umsynth.slic(gpu(bad, fw), **kwargs)
    assert str(gpu_err.value) == str(cpu_err.value)


def test_gpu_specific_refusals(phantom_slice, fw):
    g = gpu(phantom_slice["image"], fw)
    with pytest.raises(ValueError, match="sigma"):
        umsynth.slic(g, sigma=1.0)
    with pytest.raises(ValueError, match="device='cpu'"):
        umsynth.slic(g, device="cpu")
    with pytest.raises(ValueError, match="CPU only"):
        umsynth.unsupervised_mask(g, algorithm="reference")
    with pytest.raises(ValueError, match="but device="):
        umsynth.slic(g, device="cuda:7")


def test_out_of_memory_is_chunked_then_reported(phantom_slice, monkeypatch):
    torch = pytest.importorskip("torch")
    batch = np.stack([phantom_slice["image"]] * 4)
    want = umsynth.unsupervised_mask(batch)
    real = ImageOps.empty

    def tight(self, shape, dtype, device, limit):
        if len(shape) == 1 and shape[0] > limit:  # the scratch buffer
            raise torch.cuda.OutOfMemoryError("simulated")
        return real(self, shape, dtype, device)

    from umsynth import _cuda

    code = DTYPE_CODE[batch.dtype]  # the largest (Lab) layout, with a look-up table
    one = _cuda.slic_scratch_bytes(device=0, dtype=code, mode=MODE["lab"], N=1, D=1, H=512, W=512,
                                   C=1, n_cells=506)
    monkeypatch.setattr(ImageOps, "empty", lambda s, sh, dt, dev: tight(s, sh, dt, dev, 2 * one))
    _same(want, umsynth.unsupervised_mask(gpu(batch, "torch")), "torch")  # in chunks of <= 2
    monkeypatch.setattr(ImageOps, "empty", lambda s, sh, dt, dev: tight(s, sh, dt, dev, 0))
    with pytest.raises(MemoryError, match="not enough free GPU memory"):
        umsynth.unsupervised_mask(gpu(batch, "torch"))
