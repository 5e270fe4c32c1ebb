"""umsynth.runtime: the torch-device resolver and the environment record."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import umsynth
from umsynth import runtime

torch = pytest.importorskip("torch")


def test_resolve_device_names():
    assert runtime.resolve_device("cpu") == torch.device("cpu")
    assert runtime.resolve_device(torch.device("cpu")) == torch.device("cpu")
    expected = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    assert runtime.resolve_device("auto") == expected
    assert runtime.resolve_device() == expected
    for bad in ("tpu", "cuda:x", "CPU", "", "cuda:-1"):
        with pytest.raises(ValueError, match=r"--device must be one of auto, cpu, cuda, cuda:N"):
            runtime.resolve_device(bad, "--device")
    with pytest.raises(TypeError, match="train.device must be a device name"):
        runtime.resolve_device(0, "train.device")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is usable here")
def test_resolve_device_refuses_cuda_without_a_device():
    for name in ("cuda", "cuda:1"):
        with pytest.raises(ValueError, match=rf"device {name}: no CUDA device is usable here"):
            runtime.resolve_device(name)


def test_environment_record():
    env = runtime.environment("cpu")
    assert env["umsynth"] == umsynth.__version__ and env["numpy"] == np.__version__
    assert env["torch"] == str(torch.__version__) and env["device"] == "cpu"
    assert env["python"] == ".".join(map(str, sys.version_info[:3]))
    assert isinstance(env["cuda_available_to_torch"], bool) and "gpu" not in env
    import scipy

    assert env["scipy"] == scipy.__version__
    assert runtime.environment()["device"] is None


def test_import_stays_free_of_torch():
    code = "import sys, umsynth.runtime, umsynth.files; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
