"""GPU input of the radiomics features: the error without a usable device, the host-side
conversions of the device's matrices (on the CPU), and, where a CUDA device is usable,
GPU features against CPU features (marker ``gpu``)."""
from __future__ import annotations

import numpy as np
import pytest

from umsynth.kernels import radiomics as K
from umsynth.kernels import radiomics_reference as R
from umsynth.kernels.arrays import CudaUnavailableError
from umsynth.kernels.config import cuda_status
from umsynth.radiomics import features
from umsynth.radiomics.device import _angles_with_runs, _coo_from_dense

from test_radiomics_matrices import random_batch

_USABLE, _REASON = cuda_status()
gpu = pytest.mark.skipif(not _USABLE, reason=_REASON)


class _FakeCudaArray:
    """An object exporting CUDA memory (what CuPy arrays look like to umsynth)."""

    __cuda_array_interface__ = {"shape": (1, 8, 8), "typestr": "<f8", "data": (0, False), "version": 3}


@pytest.mark.skipif(_USABLE, reason="a CUDA device is usable here")
def test_gpu_input_without_a_device_is_the_kernels_clear_error():
    with pytest.raises(CudaUnavailableError, match="GPU input, but umsynth cannot run on the GPU"):
        features(_FakeCudaArray())
    with pytest.raises(CudaUnavailableError, match="never copies"):
        features(np.ones((8, 8)), masks=_FakeCudaArray())


def test_cuda_module_exposes_the_radiomics_launchers():
    try:
        from umsynth import _cuda
    except ImportError:
        pytest.skip("umsynth was built without CUDA (nvcc was not found at build time)")
    for name in ("radiomics_discretize", "radiomics_glcm", "radiomics_glrlm", "radiomics_glszm", "radiomics_gldm",
                 "radiomics_ngtdm"):
        assert callable(getattr(_cuda, name)), name


def test_dense_device_matrices_become_the_cpu_coo():
    # the device writes dense counts by gray level - 1; their Coo is the CPU launcher's
    rng = np.random.default_rng(11)
    q = random_batch(rng, n=3, levels=5, fill=0.7)
    G = int(q.max())
    want = K.gldm(q)
    dense = np.zeros((len(q), G, 9), np.uint64)
    dense[want.seg, want.a - 1, want.b - 1] = want.v
    for x, y in zip(_coo_from_dense(dense), want):
        np.testing.assert_array_equal(x, y)


def test_angles_with_runs_follow_the_cpu_rule():
    # the CPU launcher emits nothing for an angle in which no line holds two ROI pixels
    rng = np.random.default_rng(12)
    q = np.zeros((5, 6, 7), np.int32)
    q[0] = random_batch(rng, n=1, h=6, w=7)[0]
    q[1, 2, 1:5] = [1, 2, 2, 1]  # one row: only the row angle
    q[2, 1:5, 3] = 2  # one column: only the column angle
    q[3, [0, 2, 4], [0, 2, 4]] = 1  # a diagonal with gaps: the diagonal angle only
    q[4, 3, 3] = 1  # one pixel: none
    coo = R.glrlm(q)
    want = np.zeros((5, 4), bool)
    want.reshape(-1)[np.unique(coo.seg)] = True
    np.testing.assert_array_equal(_angles_with_runs(q), want)


# ---------------------------------------------------------------------------- on a GPU

def _frameworks():
    out = []
    torch = pytest.importorskip("torch")
    out.append(("torch", lambda a: torch.from_numpy(a).cuda()))
    try:
        import cupy

        out.append(("cupy", cupy.asarray))
    except ImportError:
        pass
    return out


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("with_mask", [False, True])
def test_gpu_features_match_cpu_features(phantom_volume, with_mask):
    hu = np.ascontiguousarray(phantom_volume["hu"][6:14], dtype=np.float64)
    mask = phantom_volume["labels"][6:14] == 1 if with_mask else None
    want = features(hu, mask, gldm_alpha=1)
    for name, to_gpu in _frameworks():
        got = features(to_gpu(hu), None if mask is None else to_gpu(mask.astype(np.uint8)), gldm_alpha=1)
        assert list(got) == list(want)
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-9, atol=1e-12, err_msg=f"{name} {key}")


@pytest.mark.gpu
@gpu
def test_gpu_refuses_host_only_settings(phantom_volume):
    torch = pytest.importorskip("torch")
    x = torch.from_numpy(np.ascontiguousarray(phantom_volume["hu"][:2], dtype=np.float64)).cuda()
    with pytest.raises(ValueError, match="filters"):
        features(x, filters=("original", "log"), log_sigma=(2.0,))
    with pytest.raises(ValueError, match="resampled_spacing"):
        features(x, resampled_spacing=(2.0, 2.0))
    with pytest.raises(ValueError, match="one device"):
        features(np.ones((8, 8)), masks=torch.ones(8, 8, device="cuda"))
