"""Kill and resume: ``train``, ``prepare`` and ``demo --quick``, killed with SIGKILL at random moments.

Each is run once without interruption (the reference), then again in a fresh folder that is
killed a few times while it works (after it has taken its output lock; the moments are drawn
from a seeded generator over the reference's working time) and resumed each time. After
every kill nothing readable may be corrupt (a checkpoint loads, a finished case has all its
files, a finished stage its outputs); at the end the result must equal the reference, bit
for bit on the CPU, and neither temporary files nor the lock may be left. (Bit for bit: every
run here has torch's default thread count, on which the CPU sums of a convolution depend;
``tests/train/test_crash_resume.py`` stops a run after each of its writes in turn.)
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from umsynth.files import LOCK_NAME, TEMP_PREFIX  # noqa: E402

TIMEOUT = 600  # seconds for one run on a loaded 2-core machine; a hang fails long before a CI limit
KILLS = 3
RETRIES = 4  # fresh starts when the first run finishes before its kill (see kill_and_resume)


def run_killed(cmd, folder: Path, delay: float | None, env=None) -> float | None:
    """Run `cmd`; once it holds ``folder``'s lock, SIGKILL it after `delay` seconds (None: let it finish).

    Returns the seconds it worked (from taking the lock to its end) when it ended by itself,
    None when it was killed. A non-zero exit status or a hang fails the test.
    """
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + TIMEOUT
    try:
        while not (folder / LOCK_NAME).exists() and proc.poll() is None:
            assert time.monotonic() < deadline, "no lock taken: hung?"
            time.sleep(0.01)
        start = time.monotonic()
        if delay is not None:
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)  # nothing of the process runs after this
                proc.communicate()
                return None
        out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    return time.monotonic() - start


def kill_and_resume(make_cmd, folder: Path, span: float, check, seed: int) -> int:
    """Run ``make_cmd()`` KILLS times, each killed at a random moment within `span` seconds of work,
    calling ``check()`` after each kill; then run it to the end. Returns how many runs were killed.

    `span` is the reference's working time, measured under the machine's load then. When the
    first run finishes before its kill (the load fell since: it happened at load 3-4), its
    own time becomes the span and it starts again in an empty folder, so a kill still lands.
    """
    rng = np.random.default_rng(seed)
    killed = 0
    for _ in range(KILLS):
        worked = run_killed(make_cmd(), folder, float(rng.uniform(0.05, 0.95)) * span)
        for _retry in range(RETRIES):
            if worked is None or killed:
                break
            shutil.rmtree(folder)
            span = worked
            worked = run_killed(make_cmd(), folder, float(rng.uniform(0.05, 0.95)) * span)
        if worked is None:
            killed += 1
            check()
        else:
            break  # it finished before the kill: the rest is done
    run_killed(make_cmd(), folder, None)
    return killed


def leftovers(folder: Path) -> list[str]:
    """Temporary files and lock files anywhere under `folder`."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.name.startswith(TEMP_PREFIX) or p.name.endswith(LOCK_NAME))


def assert_same(a, b, where="state"):
    """Recursive equality; tensors and arrays bit for bit."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert a.detach().cpu().numpy().tobytes() == b.detach().cpu().numpy().tobytes(), where
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.tobytes() == b.tobytes(), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and sorted(map(str, a)) == sorted(map(str, b)), (where, sorted(a), sorted(b))
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


def trained_state(path) -> dict:
    """A checkpoint without the states of Python's and NumPy's global generators: training draws
    only from torch's, so those hold whatever each process began with."""
    st = torch.load(path, map_location="cpu", weights_only=True)
    del st["rng"]["python"], st["rng"]["numpy"]
    return st


# ----------------------------------------------------------------------------- train


TRAIN = ["--model.generator.ngf", "8", "--model.generator.n_downsample", "2", "--model.generator.n_blocks", "1",
         "--model.discriminator.ndf", "8", "--model.discriminator.n_layers", "2", "--data.batch_size", "1",
         "--data.phantom_n", "6", "--data.phantom_size", "64", "--data.labelled_fraction", "0.5",
         "--train.sample_every", "0", "--train.tensorboard", "false", "--train.max_steps", "12",
         "--train.checkpoint_every", "1", "--train.device", "cpu", "--train.unlabelled_start_epoch", "1",
         "--no-progress"]


@pytest.mark.slow
def test_train_killed_and_resumed_equals_the_uninterrupted_run(tmp_path):
    from umsynth.train.checkpoint import load_checkpoint  # checks what it loads

    umsynth = [sys.executable, "-m", "umsynth", "train"]
    ref, run = tmp_path / "ref", tmp_path / "run"
    span = run_killed(umsynth + ["--out", str(ref)] + TRAIN, ref, None)
    last = run / "checkpoints" / "last.pt"

    def cmd():
        return umsynth + ["--out", str(run)] + TRAIN + (["--resume"] if last.exists() else [])

    def check():  # what a kill leaves is either the previous checkpoint or the new one, whole
        if last.exists():
            assert load_checkpoint(last)["step"] <= 12

    assert kill_and_resume(cmd, run, span, check, seed=1) >= 1
    expected = trained_state(ref / "checkpoints" / "last.pt")
    assert_same(expected, trained_state(last))
    assert leftovers(run) == []
    # a kill after the final checkpoint (while the last grid is drawn) leaves what a finished
    # run leaves: resuming it must not change the checkpoint (it once refreshed the snapshot)
    run_killed(cmd(), run, None)
    assert_same(expected, trained_state(last), "state after resuming the finished run")


# ----------------------------------------------------------------------------- prepare


@pytest.mark.slow
def test_prepare_killed_and_resumed_equals_the_uninterrupted_run(tmp_path):
    from umsynth.data.io import write_nifti
    from umsynth.data.phantom import phantom_volume

    vols = tmp_path / "vols"
    vols.mkdir()
    for i in range(6):
        hu, lab = phantom_volume(i, shape=(24, 64, 64))
        write_nifti(vols / f"case{i}.nii.gz", hu, (2.0, 0.7, 0.7))
        write_nifti(vols / f"case{i}_mask.nii.gz", lab, (2.0, 0.7, 0.7))
    ref, run = tmp_path / "ref", tmp_path / "run"

    def cmd(out):
        return [sys.executable, "-m", "umsynth", "prepare", str(vols), "--out", str(out), "--n-segments", "64"]

    span = run_killed(cmd(ref), ref, None)

    def check():  # a case with its record has all its files, each readable
        from PIL import Image

        for record in (run / "cases").glob("*.json"):
            json.loads(record.read_text())
            for kind in ("images", "labels", "ums", "superpixels"):
                with Image.open(run / kind / f"{record.stem}.png") as im:
                    im.load()

    assert kill_and_resume(lambda: cmd(run), run, span, check, seed=2) >= 1

    def files(root):
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    got, expected = files(run), files(ref)
    assert sorted(got) == sorted(expected)
    for name in expected:  # the records name the same input files: equal bytes throughout
        assert got[name] == expected[name], name


# ----------------------------------------------------------------------------- demo


# the command a user types, shortened only by its own option: 4 training steps instead of
# 16 (about 85 s of CPU time on 2 cores, most of it MM-FID's stage)
DEMO = ["demo", "--quick", "--steps", "4", "--device", "cpu", "--no-progress"]


@pytest.mark.slow
def test_demo_killed_and_resumed_equals_the_uninterrupted_run(tmp_path):
    """``umsynth demo --quick`` with fewer steps: every stage is reached by a kill or resumed from one."""
    ref, run = tmp_path / "ref", tmp_path / "run"

    def cmd(out):
        return [sys.executable, "-m", "umsynth"] + DEMO + ["--out", str(out)]

    span = run_killed(cmd(ref), ref, None)

    def check():  # a finished stage's record is whole JSON; a written array file opens
        for marker in (run / "stages").glob("*.json"):
            json.loads(marker.read_text())
        for f in run.rglob("*.npz"):
            with np.load(f, allow_pickle=False) as z:
                [z[k] for k in z.files]

    assert kill_and_resume(lambda: cmd(run), run, span, check, seed=3) >= 1
    for npz in sorted(ref.rglob("*.npz")):
        rel = npz.relative_to(ref)
        with np.load(npz) as a, np.load(run / rel) as b:
            assert_same(dict(a), dict(b), str(rel))
    for ck in sorted(ref.glob("runs/*/checkpoints/last.pt")):
        rel = ck.relative_to(ref)
        assert_same(trained_state(ck), trained_state(run / rel), str(rel))
    # the two folders' own paths aside
    a, b = (json.loads((d / "metrics.json").read_text().replace(str(d), "OUT")) for d in (ref, run))
    for section in ("cohort", "synthesis", "mmfid", "utility"):
        assert_same(a[section], b[section], section)
    assert leftovers(run) == []
    assert os.path.isfile(run / "report.html")
