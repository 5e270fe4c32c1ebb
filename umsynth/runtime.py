"""Where a run happens: the one torch-device resolver and the one record of the environment.

Importing this module needs only the standard library and numpy; torch is imported when a
device is resolved or the environment is recorded.
"""
from __future__ import annotations

import os
import platform
import re

import numpy as np

import umsynth
from umsynth.kernels.config import cuda_status

__all__ = ["DEVICE_NAMES", "resolve_device", "environment"]

#: the device names umsynth accepts (N: a CUDA device index)
DEVICE_NAMES = ("auto", "cpu", "cuda", "cuda:N")
_DEVICE = re.compile(r"(auto|cpu|cuda(:\d+)?)")
# optional libraries whose versions go into the record
_LIBRARIES = ("scipy", "skimage", "yaml", "tensorboard", "safetensors")


def resolve_device(name="auto", what: str = "device"):
    """The torch device that a device name means here.

    Parameters
    ----------
    name : str or torch.device
        ``"auto"`` (CUDA if torch can use it, else the CPU), ``"cpu"``, ``"cuda"`` or
        ``"cuda:N"``.
    what : str, optional
        How the caller calls the argument (``"--device"``, ``"train.device"``), for messages.

    Returns
    -------
    torch.device

    Raises
    ------
    TypeError
        If `name` is neither a string nor a torch.device.
    ValueError
        For another name, or a CUDA device when torch sees none it can use.
    """
    import torch

    if isinstance(name, torch.device):
        text = str(name)
    elif isinstance(name, str):
        text = name.strip()
    else:
        raise TypeError(f"{what} must be a device name (str) or torch.device, got {type(name).__name__}")
    if not _DEVICE.fullmatch(text):
        raise ValueError(f"{what} must be one of {', '.join(DEVICE_NAMES)}, got {name!r}")
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(text)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{what} {text}: no CUDA device is usable here (torch.cuda.is_available() is False)")
    return device


def environment(device=None) -> dict:
    """A record of the software and machine a result was made on (for logs and reports).

    Parameters
    ----------
    device : str or torch.device, optional
        The device the run used; recorded, with the GPU's name when it is a CUDA device.

    Returns
    -------
    dict
        ``python``, ``platform``, ``umsynth``, ``numpy``, ``torch`` (None without torch),
        ``cuda`` (the CUDA version torch was built with), ``cuda_available_to_torch``,
        ``umsynth_cuda`` ("usable" or why umsynth's own CUDA kernels cannot run),
        ``cpu_threads``, the versions of scipy, scikit-image, PyYAML, TensorBoard and
        safetensors (None where missing), ``device`` and, on a CUDA device, ``gpu``.
    """
    env = {"python": platform.python_version(), "platform": platform.platform(),
           "umsynth": umsynth.__version__, "numpy": np.__version__, "torch": None, "cuda": None,
           "cuda_available_to_torch": False}
    try:
        import torch
    except ImportError:  # torch is optional for the parts of umsynth that need no network
        torch = None
    if torch is not None:
        env.update(torch=str(torch.__version__), cuda=torch.version.cuda,
                   cuda_available_to_torch=bool(torch.cuda.is_available()))
    ok, reason = cuda_status()
    env["umsynth_cuda"] = "usable" if ok else reason
    env["cpu_threads"] = os.cpu_count()
    for mod in _LIBRARIES:
        try:
            env[mod] = str(__import__(mod).__version__)
        except Exception:  # optional packages: record what is there
            env[mod] = None
    env["device"] = None if device is None else str(device)
    if torch is not None and device is not None and str(device).startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return env
