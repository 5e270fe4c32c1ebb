"""GPU input of the radiomics features: the error without a usable device, and the CUDA module."""
from __future__ import annotations

import numpy as np
import pytest

from umsynth.kernels.arrays import CudaUnavailableError
from umsynth.kernels.config import cuda_status
from umsynth.radiomics import features

_USABLE, _REASON = cuda_status()


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
    for name in ("radiomics_discretize", "radiomics_glcm", "radiomics_glrlm", "radiomics_gldm", "radiomics_ngtdm"):
        assert callable(getattr(_cuda, name)), name
