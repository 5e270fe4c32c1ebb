"""Package-level behaviour: a quiet import, the configuration report, thread caps."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import umsynth


def _run(code: str, **env) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **env}
    return subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True,
                          text=True, env=full_env, timeout=120)


def test_import_is_silent_and_torch_free():
    r = _run("import sys, umsynth; assert 'torch' not in sys.modules, 'torch imported'")
    assert r.returncode == 0, r.stderr
    assert r.stderr == "" and r.stdout == ""


def test_show_config_reports_cuda_state_without_failing():
    info = umsynth.show_config(file=open(os.devnull, "w"))
    assert info["openmp_threads"] >= 1
    assert isinstance(info["cuda_device_usable"], bool)
    if not info["cuda_device_usable"]:
        assert info["cuda_reason"]  # says why in words


def test_thread_cap_from_environment_and_setter():
    r = _run("import umsynth; print(umsynth.get_num_threads())", UMSYNTH_NUM_THREADS="1")
    assert r.returncode == 0 and r.stdout.strip() == "1", r.stderr
    r = _run("import numpy as np, umsynth; umsynth.slic(np.ones((8, 8)), n_segments=2)",
             UMSYNTH_NUM_THREADS="many")
    assert r.returncode != 0 and "UMSYNTH_NUM_THREADS" in r.stderr
    umsynth.set_num_threads(1)
    try:
        assert umsynth.get_num_threads() == 1
    finally:
        umsynth.set_num_threads(None)
    with pytest.raises(ValueError, match="threads"):
        umsynth.set_num_threads(0)


def test_kernels_release_the_gil():
    """A pure-Python thread keeps running while slic works (it could not if the GIL
    were held through the call)."""
    import threading
    import time

    img = (np.random.default_rng(0).random((1024, 1024)) * 255).astype(np.uint8)
    ticks = {"n": 0}
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            ticks["n"] += 1

    def rate_during(work) -> float:
        ticks["n"] = 0
        stop.clear()
        th = threading.Thread(target=spin)
        th.start()
        t0 = time.perf_counter()
        work()
        dt = time.perf_counter() - t0
        stop.set()
        th.join()
        return ticks["n"] / dt

    old = sys.getswitchinterval()
    sys.setswitchinterval(0.001)
    try:
        free = rate_during(lambda: time.sleep(0.2))  # the GIL is free while sleeping
        busy = rate_during(lambda: [umsynth.slic(img, n_segments=512, threads=1)
                                    for _ in range(3)])
        data = np.random.default_rng(1).random(1_500_000).tolist()
        held = rate_during(lambda: sorted(data))  # one C call that keeps the GIL
    finally:
        sys.setswitchinterval(old)
    assert busy > 0.3 * free, (busy, free, held)
    assert held < 0.3 * free  # the measurement tells a held GIL apart
