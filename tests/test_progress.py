"""umsynth.progress: tqdm in a terminal, a line per 5 % or per minute elsewhere."""
from __future__ import annotations

import io

import pytest

from umsynth import progress as progress_module
from umsynth.progress import progress


class _Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


@pytest.fixture
def clock(monkeypatch):
    c = _Clock()
    monkeypatch.setattr(progress_module.time, "monotonic", c)
    return c


def test_log_lines_per_five_percent_not_per_step(clock):
    out = io.StringIO()
    n = 0
    for _ in progress(range(1000), desc="train", unit="step", file=out):
        clock.t += 0.5  # 500 s in all: 5 % takes 25 s
        n += 1
    assert n == 1000
    lines = out.getvalue().splitlines()
    assert len(lines) == 20  # 5 %, 10 %, ..., 100 %: the last one falls on a 5 % boundary
    assert lines[0].startswith("train:") and "50/1000" in lines[0]
    assert "1000/1000" in lines[-1] and "100%" in lines[-1]
    assert "\r" not in out.getvalue()


def test_a_short_loop_writes_one_line(clock):
    out = io.StringIO()
    for _ in progress(range(12), desc="task", unit="step", file=out):
        clock.t += 0.4  # 5 s in all: each step is 8 % of the total, but lines are >= 10 s apart
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and "12/12" in lines[0]


def test_last_line_written_when_the_total_is_not_reached():
    out = io.StringIO()
    with progress(total=1000, desc="x", file=out) as bar:
        bar.update(7)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and "7/1000" in lines[0]


def test_a_line_per_minute_without_total_and_for_slow_loops(clock):
    out = io.StringIO()
    bar = progress(total=None, desc="stream", unit="img", file=out)
    for _ in range(5):
        clock.t += 30.0
        bar.update(3)
    assert len(out.getvalue().splitlines()) == 2  # after 60 s and 120 s
    bar.set_postfix({"loss": "0.5"})
    bar.close()
    bar.close()  # once only
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and "15img" in lines[-1] and "loss=0.5" in lines[-1]
    # a slow loop with a total: the minute rule fires between 5 % steps
    out = io.StringIO()
    bar = progress(total=10_000, file=out)
    clock.t += 61.0
    bar.update(1)
    assert "1/10000" in out.getvalue()


def test_disable_writes_nothing_and_still_iterates():
    out = io.StringIO()
    assert list(progress(iter("abc"), desc="x", disable=True, file=out)) == ["a", "b", "c"]
    assert out.getvalue() == ""


def test_terminal_gets_tqdm():
    from tqdm import tqdm

    class Tty(io.StringIO):
        def isatty(self):
            return True

    out = Tty()
    bar = progress(range(3), desc="x", file=out)
    assert isinstance(bar, tqdm)
    assert list(bar) == [0, 1, 2]
    assert "3/3" in out.getvalue()
    # a stream that is not a terminal (nohup, CI) gets the log lines
    assert not isinstance(progress(range(3), file=io.StringIO()), tqdm)
