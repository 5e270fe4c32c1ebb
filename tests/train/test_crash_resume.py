"""A run that dies between any two of its file writes, then resumes, ends as the uninterrupted run.

SIGKILL stops a process between two statements; what the next run reads is the files written
so far. Here the run stops right after each of its atomic writes in turn (every rename it
makes: config, checkpoints, history, grids, index), is resumed with ``resume="auto"`` (as a
user would), and its last and kept checkpoints must equal the uninterrupted run's bit for bit.
The run ends exactly at an epoch's end, in the unlabelled phase, with EMA and kept checkpoints,
so every part of the state a position change touches is in play.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
import umsynth.files  # noqa: E402
from umsynth.train import load_config, train  # noqa: E402
from umsynth.train.checkpoint import kept_checkpoints  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fuzz"))
# a checkpoint less the global Python/NumPy generator states, and bitwise recursive equality
from test_kill_resume import assert_same, trained_state  # noqa: E402


class Killed(BaseException):
    """Stands for SIGKILL: nothing in the loop catches it."""


def _cfg(tiny):
    # 2 iterations per epoch (4 labelled images, batch 2), unlabelled phase and a new pseudo-label
    # snapshot every epoch from epoch 1; 4 steps: the run ends at the end of epoch 1
    return load_config(None, tiny + ["optim.niter=2", "optim.niter_decay=2", "train.unlabelled_start_epoch=1",
                                     "train.pseudo_refresh_epochs=1", "train.max_steps=4", "train.ema=0.5",
                                     "train.checkpoint_every=1", "checkpoint.keep_every=2"])


def _run_dying_after(monkeypatch, n_writes: int | None, *args, **kwargs) -> bool:
    """train(*args, **kwargs), stopped right after its `n_writes`-th completed file write; True if it was."""
    real, done = umsynth.files.atomic_write, []

    def write_then_maybe_die(*a, **k):
        real(*a, **k)
        done.append(a[0])
        if len(done) == n_writes:
            raise Killed

    with monkeypatch.context() as m:
        m.setattr(umsynth.files, "atomic_write", write_then_maybe_die)
        try:
            train(*args, **kwargs)
        except Killed:
            return True
    return False


def test_run_killed_after_any_write_resumes_to_the_uninterrupted_result(sets, tmp_path, tiny, monkeypatch):
    lab, unl = sets
    ref = train(_cfg(tiny), lab, unl, tmp_path / "ref")
    assert ref.steps == 4 and ref.epochs_done == 2  # it ends on an epoch boundary
    expected = {p.name: trained_state(p) for p in kept_checkpoints(tmp_path / "ref")}
    assert sorted(expected) == ["step_0000002.pt", "step_0000004.pt"]
    expected["last.pt"] = trained_state(ref.checkpoint)

    k = 0
    while True:
        k += 1
        run = tmp_path / f"killed_after_write_{k}"
        if not _run_dying_after(monkeypatch, k, _cfg(tiny), lab, unl, run):
            break  # the run makes fewer than k writes: every moment was tried
        resumed = train(_cfg(tiny), lab, unl, run, resume="auto")
        assert resumed.steps == 4 and resumed.epochs_done == 2, k
        got = {p.name: trained_state(p) for p in kept_checkpoints(run)}
        got["last.pt"] = trained_state(resumed.checkpoint)
        assert sorted(got) == sorted(expected), k
        for name in expected:
            assert_same(expected[name], got[name], f"killed after write {k}: {name}")
    assert k > 12  # config, versions, 4 x (last.pt, history.csv), 2 kept, grid, index.html


def test_checkpoint_of_an_older_umsynth_at_an_epoch_end_resumes_exactly(sets, tmp_path, tiny):
    """Older versions stored the end of epoch e as (e, steps_per_epoch), not (e + 1, 0)."""
    lab, unl = sets
    ref = train(_cfg(tiny), lab, unl, tmp_path / "ref")
    st = torch.load(tmp_path / "ref" / "checkpoints" / "step_0000002.pt", map_location="cpu", weights_only=True)
    assert (st["epoch"], st["step_in_epoch"]) == (1, 0)
    st["epoch"], st["step_in_epoch"] = 0, 2
    old = tmp_path / "old" / "checkpoints"
    old.mkdir(parents=True)
    torch.save(st, old / "last.pt")
    resumed = train(_cfg(tiny), lab, unl, tmp_path / "old", resume=True)
    assert resumed.steps_run == 2 and resumed.epochs_done == 2
    assert_same(trained_state(ref.checkpoint), trained_state(resumed.checkpoint))
