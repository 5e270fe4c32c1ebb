"""Thread counts and the OpenMP wait policy: limits, and a fair share under contention."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import umsynth
from umsynth.kernels import config


@pytest.mark.parametrize("bad,exc", [(0, ValueError), (-3, ValueError), (50000, ValueError),
                                     (100000, ValueError), (2.5, TypeError), (True, TypeError)])
def test_thread_counts_outside_the_limit_are_refused(bad, exc):
    with pytest.raises(exc, match="threads"):
        umsynth.slic(np.ones((8, 8)), n_segments=2, threads=bad)
    with pytest.raises(exc, match="set_num_threads"):
        umsynth.set_num_threads(bad)


def test_environment_thread_count_is_checked(monkeypatch):
    monkeypatch.setenv("UMSYNTH_NUM_THREADS", "100000")
    with pytest.raises(ValueError, match="UMSYNTH_NUM_THREADS"):
        umsynth.get_num_threads()
    monkeypatch.setenv("UMSYNTH_NUM_THREADS", "3")
    assert umsynth.get_num_threads() == 3


@pytest.mark.parametrize("cores,busy,workers,want", [
    (8, 0, 0, 8),     # alone: every core
    (8, 3, 0, 5),     # three other runnable threads: the five free cores
    (8, 6, 0, 4),     # six: two are free, but they may be one process: half (8 // (1 + 1))
    (8, 20, 0, 2),    # twenty: counted as three machine-filling processes, 8 // 4
    (8, 40, 0, 1),    # 8 // 6 = 1, never zero
    (16, 15, 0, 8),   # beside one process holding every core: half, not the one free core
    (16, 8, 0, 8),    # and that process, next call: the eight left free
    (16, 100, 0, 2),  # beside a hundred single-threaded jobs: 16 // (1 + 7)
    (2, 1, 0, 1),     # two cores, one other: one thread each
    (2, 3, 0, 1),     # two cores, three others
    (2, 0.5, 0, 1),   # a fractional count (the load-average fallback)
    (8, 0, 4, 2),     # four DataLoader workers: a quarter of the cores each
    (8, 7, 4, 2),     # four workers beside each other (3 x 2) and one more thread: still 2
    (2, 0, 8, 1),
])
def test_fair_share_threads(cores, busy, workers, want):
    assert config.fair_share_threads(cores, cores, busy, workers) == want


def test_fair_share_threads_keep_within_the_limit():
    assert config.fair_share_threads(3, 16, 0) == 3    # a user cap (OMP_NUM_THREADS) stays
    assert config.fair_share_threads(3, 16, 15) == 3   # share 8 > 3
    assert config.fair_share_threads(1, 2, 0, 4) == 1


def test_default_threads_read_the_machine(monkeypatch):
    monkeypatch.setattr(config._cpu, "max_threads", lambda: 16)
    monkeypatch.setattr(config, "usable_cores", lambda: 16)
    monkeypatch.setattr(config, "_runnable_elsewhere", lambda: 15.0)
    monkeypatch.setattr(config, "_dataloader_workers", lambda: 0)
    assert config.default_threads() == 8
    monkeypatch.setattr(config, "_dataloader_workers", lambda: 4)
    assert config.default_threads() == 4


def test_dataloader_worker_is_detected():
    torch = pytest.importorskip("torch")

    class Sizes(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return config._dataloader_workers()

    got = [int(v) for v in torch.utils.data.DataLoader(Sizes(), num_workers=2, batch_size=None)]
    assert got == [2, 2]
    assert config._dataloader_workers() == 0


def _child(code, **env):
    full = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    full.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full,
                          timeout=60).stdout.split()


def test_passive_wait_policy_unless_the_user_chose():
    code = "import os, umsynth; print(os.environ['OMP_WAIT_POLICY'], os.environ.get('GOMP_SPINCOUNT'))"
    assert _child(code) == ["passive", "0"]
    assert _child(code, OMP_WAIT_POLICY="active") == ["active", "None"]
    assert _child(code, GOMP_SPINCOUNT="1000") == ["passive", "1000"]
