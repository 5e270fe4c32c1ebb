"""What a training run leaves to read without TensorBoard: ``history.csv`` and ``index.html``.

Both are rewritten whole (atomically) from the run's history, so a resumed run's files hold
every step since the start.
"""
from __future__ import annotations

import csv
import html
import io
from pathlib import Path

from umsynth.files import atomic_write_text

__all__ = ["write_history_csv", "write_index_html", "HISTORY_NAME", "INDEX_NAME"]

HISTORY_NAME = "history.csv"
INDEX_NAME = "index.html"
_FIRST = ("step", "epoch", "lr")


def history_columns(history: list[dict]) -> list[str]:
    """step, epoch, lr, then every loss in the order it first appears."""
    cols = list(_FIRST)
    for row in history:
        cols.extend(k for k in row if k not in cols)
    return cols


def write_history_csv(path, history: list[dict]) -> None:
    """One row per step: step, epoch, lr and every loss (empty where a step has none).

    Losses that start later (the unlabelled phase's ``*_u``) get their column from the start.
    """
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=history_columns(history), restval="", lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(path, buf.getvalue())


def write_index_html(run_dir, samples: list[tuple[int, str]], checkpoints: list[str], *, title: str,
                     caption: str, last: dict | None = None) -> None:
    """The run's page: links to its files and the sample grids, newest first.

    Parameters
    ----------
    run_dir : path-like
        Where ``index.html`` goes; links are relative to it.
    samples : list of (step, relative path)
        The grids written so far.
    checkpoints : list of str
        Relative paths of the checkpoints the run keeps.
    title, caption : str
        Page title; what the grid's columns are.
    last : dict, optional
        The latest history row (shown as a table).
    """
    e = html.escape
    out = Path(run_dir)
    parts = ["<!DOCTYPE html>", f'<html><head><meta charset="utf-8"><title>{e(title)}</title>',
             "<style>body{font-family:sans-serif;margin:1.5em}img{image-rendering:pixelated;max-width:100%}"
             "td,th{padding:2px 8px;text-align:left}</style></head><body>", f"<h1>{e(title)}</h1>"]
    files = [(name, name) for name in (HISTORY_NAME, "config.yaml", "versions.yaml") if (out / name).exists()]
    parts.append("<p>" + " · ".join(f'<a href="{e(h)}">{e(n)}</a>' for n, h in files) + "</p>")
    if checkpoints:
        parts.append("<p>checkpoints: " + ", ".join(f'<a href="{e(c)}">{e(Path(c).name)}</a>'
                                                    for c in checkpoints) + "</p>")
    if last:
        parts.append("<table><tr>" + "".join(f"<th>{e(str(k))}</th>" for k in last) + "</tr><tr>"
                     + "".join(f"<td>{v:.4g}</td>" if isinstance(v, float) else f"<td>{e(str(v))}</td>"
                               for v in last.values()) + "</tr></table>")
    parts.append(f"<h2>samples</h2><p>{e(caption)}</p>")
    for step, rel in sorted(samples, reverse=True):
        parts.append(f'<h3>step {step}</h3><a href="{e(rel)}"><img src="{e(rel)}" alt="step {step}"></a>')
    parts.append("</body></html>\n")
    atomic_write_text(out / INDEX_NAME, "\n".join(parts))
