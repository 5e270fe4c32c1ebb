"""Shared test data: the chest phantom and the real CT slices that ship with pydicom.

Every fixture is session-scoped and returns read-only arrays, so one test cannot change
what another sees.
"""
from __future__ import annotations

import functools
import sys

import numpy as np
import pytest

from umsynth import samples

# SemiCS2's HU window (method.md §1)
HU_WINDOW = samples.HU_WINDOW

# pydicom test files read offline: name -> what it is. Never glob with get_testdata_files:
# it tries to download and hangs without a network.
CT_FILES = {
    "CT_small": "CT_small.dcm",  # 128 x 128 chest crop
    "693_UNCR": "693_UNCR.dcm",  # 512 x 512 head CT
    "explicit_VR-UN": "explicit_VR-UN.dcm",  # 512 x 512 abdomen, JPEG 2000, stored upside-down
}


def _frozen(d: dict) -> dict:
    for v in d.values():
        if isinstance(v, np.ndarray):
            v.setflags(write=False)
    return d


@functools.lru_cache(maxsize=None)
def read_ct(name: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(HU float32, windowed uint8) of one pydicom test slice; None if it cannot be decoded here."""
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    path = get_testdata_file(CT_FILES[name])
    if path is None:
        return None
    ds = pydicom.dcmread(path)
    try:
        raw = ds.pixel_array
    except Exception:  # no installed decoder for this transfer syntax (e.g. JPEG 2000)
        return None
    hu = raw.astype(np.float32) * float(getattr(ds, "RescaleSlope", 1)) + float(getattr(ds, "RescaleIntercept", 0))
    # rows running towards -y (posterior to anterior) display upside-down: put anterior on top
    iop = [float(v) for v in ds.get("ImageOrientationPatient", [1, 0, 0, 0, 1, 0])]
    if iop[4] < 0:
        hu = hu[::-1].copy()
    return hu, samples.hu_to_uint8(hu, HU_WINDOW)


@pytest.fixture(scope="session")
def phantom_slice() -> dict:
    """``{"image": uint8 (512, 512), "labels": uint8 (512, 512)}``: one chest phantom slice, seed 0.

    Labels: 0 background/body, 1 lung, 2 lesion.
    """
    img, lab = samples.chest_slice(seed=0, size=512)
    return _frozen({"image": img, "labels": lab})


@pytest.fixture(scope="session")
def phantom_montage() -> dict:
    """``{"image": uint8 (1024, 1024), "labels": uint8 (1024, 1024)}``: a SemiCS2-style 2x2 montage."""
    img, lab = samples.chest_montage(seed=0)
    return _frozen({"image": img, "labels": lab})


@pytest.fixture(scope="session")
def phantom_volume() -> dict:
    """``{"image": uint8, "hu": float32, "labels": uint8}``, each (24, 96, 96): a small chest volume."""
    hu, lab = samples.chest_volume(seed=0, shape=(24, 96, 96), hu=True)
    return _frozen({"image": samples.hu_to_uint8(hu), "hu": hu, "labels": lab})


@pytest.fixture(scope="session")
def ct_slices() -> dict:
    """Real CT slices, windowed to uint8: ``{name: uint8 (H, W)}`` for the names in CT_FILES.

    A slice whose compression no installed decoder handles is left out; the fixture skips
    only if none can be read.
    """
    out = {}
    for name in CT_FILES:
        got = read_ct(name)
        if got is not None:
            out[name] = got[1]
    if not out:
        pytest.skip("no pydicom test CT slice could be read")
    return _frozen(out)


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test: for tiny tensors, OpenMP barriers on a shared 2-core
    machine cost more than they save. Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    torch = sys.modules.get("torch") or pytest.importorskip("torch")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
