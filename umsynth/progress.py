"""The one progress display of umsynth: tqdm in a terminal, a few log lines elsewhere.

In a terminal (``sys.stderr.isatty()``) :func:`progress` is tqdm's own bar. Outside one (a
CI log, ``nohup``, a cluster job) a bar redrawn at every step would write a line per step,
so there it writes one line each time another ``LOG_PERCENT`` % of the total is done or
``LOG_SECONDS`` seconds have passed since the last line (whichever comes first), but never
within ``LOG_MIN_SECONDS`` of the last line, and a last line when the loop ends. Without a
known total: one line per ``LOG_SECONDS`` and the last. A loop of a few seconds writes one
line; a long one at most 20 plus one a minute.
"""
from __future__ import annotations

import sys
import time

__all__ = ["progress", "LOG_PERCENT", "LOG_SECONDS", "LOG_MIN_SECONDS"]

#: outside a terminal: a line per this many percent of the total ...
LOG_PERCENT = 5.0
#: ... or per this many seconds, whichever comes first
LOG_SECONDS = 60.0
#: ... but lines (except the last) at least this many seconds apart
LOG_MIN_SECONDS = 10.0


def progress(iterable=None, total: int | None = None, desc: str | None = None, *, unit: str = "it",
             disable: bool = False, initial: int = 0, leave: bool = True, file=None, interactive=None):
    """A progress bar over ``iterable`` (or a manual one, advanced with ``update(n)``).

    Parameters
    ----------
    iterable : iterable, optional
        What to loop over; None for a bar advanced by ``update``.
    total : int, optional
        Number of steps (default ``len(iterable)`` when it has one).
    desc : str, optional
        Label at the start of the line.
    unit : str
        Name of one step ("it", "img", "case", ...).
    disable : bool
        Show nothing (the object still iterates and accepts every call).
    initial : int
        Steps already done (a resumed run).
    leave : bool
        Keep tqdm's finished bar on screen (terminal only).
    file : text stream, optional
        Where to write (default ``sys.stderr``).
    interactive : bool, optional
        Force the terminal (True) or the log (False) behaviour; None: ``file.isatty()``.

    Returns
    -------
    object
        Iterable, with tqdm's ``update``, ``set_postfix``, ``write``, ``close`` and context
        manager methods.
    """
    stream = sys.stderr if file is None else file
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    if interactive is None:
        isatty = getattr(stream, "isatty", None)
        interactive = bool(isatty()) if isatty is not None else False
    if interactive and not disable:
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, leave=leave, file=stream,
                    dynamic_ncols=True)
    return _LogBar(iterable, total, desc, unit, disable, initial, stream)


class _LogBar:
    """tqdm's interface, writing whole lines now and then (see the module docstring)."""

    def __init__(self, iterable, total, desc, unit, disable, initial, stream):
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.disable, self.n, self.file = disable, int(initial), stream
        self.postfix = ""
        self._start = self._last_t = time.monotonic()
        self._last_n, self._first = self.n, self.n
        self._closed = False

    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __len__(self):
        return self.total if self.total is not None else len(self.iterable)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def update(self, n: int = 1) -> None:
        """Advance by ``n`` steps; write a line when the next 5 % (or a minute) is reached."""
        self.n += n
        if self.disable:
            return
        now = time.monotonic()
        if now - self._last_t < LOG_MIN_SECONDS:
            return
        step = self.total * LOG_PERCENT / 100 if self.total else None
        if (step is not None and self.n - self._last_n >= step) or (
                self.n > self._last_n and now - self._last_t >= LOG_SECONDS):
            self._line(now)

    def set_postfix(self, values=None, refresh: bool = True, **kwargs) -> None:
        """Values shown after the counts, as ``key=value``."""
        items = dict(values or {}, **kwargs)
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc

    def write(self, text: str, file=None) -> None:
        """Print a message line (tqdm.write's counterpart)."""
        print(text, file=file or self.file, flush=True)

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        """Write the last line (once), unless nothing was done or the bar is disabled."""
        if self._closed:
            return
        self._closed = True
        if not self.disable and self.n != self._last_n:
            self._line(time.monotonic())

    def _line(self, now: float) -> None:
        from tqdm import tqdm

        text = tqdm.format_meter(self.n, self.total, now - self._start, ncols=0, prefix=self.desc or "",
                                 unit=self.unit, initial=self._first, postfix=self.postfix or None)
        print(text, file=self.file, flush=True)
        self._last_n, self._last_t = self.n, now
