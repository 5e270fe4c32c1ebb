"""``umsynth masks``: unsupervised masks (UMs) and superpixel boundaries for a batch of images.

For each image it writes ``<stem>_um.png`` (the UM) and ``<stem>_edges.png`` (superpixel
boundaries in red over the image) into ``--out``, and an ``index.html`` that shows
image | UM | boundaries side by side with the time each UM took.
"""
from __future__ import annotations

import argparse
import html
import os
import sys
import time
from pathlib import Path
from urllib.parse import quote

import numpy as np

import umsynth
from umsynth.cli import hold_output
from umsynth.cli._actions import add_no_progress
from umsynth.files import IMAGE_SUFFIXES, atomic_write_text, read_grey, write_png

EDGE_COLOUR = (255, 40, 40)

DESCRIPTION = """\
Compute the unsupervised mask (superpixel means, quantized to multiples of --step) of each
image and draw its superpixel boundaries. IMAGES are files or folders (PNG, TIFF, JPEG,
BMP; folders are read one level deep); with none, the sample images bundled with umsynth are used.

Colour images are converted to grey with ITU-R 601 luma (equal channels stay as they are).
16-bit images are scaled linearly from 0..65535 to 0..255 (v / 257, rounded): window CT
to 8 bits yourself first if the full 16-bit range is not what you want.
"""


def register(subparsers) -> None:
    """Add the ``masks`` sub-command to ``subparsers``."""
    p = subparsers.add_parser("masks", help="unsupervised masks and superpixel boundaries for images",
                              description=DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="*", metavar="IMAGES", help="image files or folders (default: bundled samples)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    p.add_argument("--n-segments", type=int, default=512, help="approximate number of superpixels (default 512)")
    p.add_argument("--compactness", type=float, default=10.0, help="SLIC compactness (default 10)")
    p.add_argument("--step", type=int, default=10, help="quantization step of the UM on 0..255 (default 10)")
    p.add_argument("--algorithm", choices=("fast", "reference"), default="fast",
                   help="SLIC implementation (default fast)")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads (default: all)")
    add_no_progress(p)
    p.set_defaults(func=run)


def boundary_overlay(grey: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """RGB uint8 copy of ``grey`` with superpixel boundaries painted in EDGE_COLOUR.

    A pixel is marked when its right or lower neighbour has another label, so lines are
    one pixel wide.
    """
    edge = np.zeros(labels.shape, bool)
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    rgb[edge] = EDGE_COLOUR
    return rgb


def _collect(items: list[str], errors: list[tuple[str, str]]) -> list[Path]:
    """Expand folders into their image files; record names that are neither as errors."""
    paths: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            try:
                found = sorted(q for q in p.iterdir() if q.is_file() and not q.name.startswith(".")
                               and q.suffix.lower() in IMAGE_SUFFIXES)
            except OSError as exc:  # an unreadable folder is one bad item of the batch
                errors.append((item, f"cannot list this folder ({exc.strerror or exc})"))
                continue
            if not found:
                errors.append((item, "no PNG, TIFF, JPEG or BMP files in this folder"))
            paths.extend(found)
        elif p.exists():
            paths.append(p)
        else:
            errors.append((item, "no such file or folder"))
    return paths


def _stem(path: Path, used: set[str]) -> str:
    stem, k = path.stem, 2
    while stem in used:  # a.png and a.tif must not overwrite each other
        stem, k = f"{path.stem}_{k}", k + 1
    used.add(stem)
    return stem


def _href(target: Path, out: Path) -> str:
    try:
        rel = os.path.relpath(target, out)
    except ValueError:  # another drive on Windows
        return target.resolve().as_uri()
    return quote(Path(rel).as_posix())


def _html(rows: list[dict], errors: list[tuple[str, str]], args) -> str:
    e = html.escape
    head = (f"n_segments={args.n_segments}, compactness={args.compactness:g}, step={args.step}, "
            f"algorithm={args.algorithm}")
    parts = ["<!DOCTYPE html>", '<html><head><meta charset="utf-8"><title>umsynth masks</title>',
             "<style>body{font-family:sans-serif}td{vertical-align:top;padding:4px}"
             "img{width:320px;image-rendering:pixelated}</style></head><body>",
             f"<h1>umsynth masks</h1><p>{e(head)}</p>",
             "<table><tr><th>image</th><th>unsupervised mask</th><th>superpixel boundaries</th></tr>"]
    for r in rows:
        caption = (f"{e(r['name'])}: {r['shape'][1]}x{r['shape'][0]}, {r['n_labels']} superpixels, "
                   f"{r['ms']:.1f} ms")
        parts.append("<tr>" + "".join(f'<td><img src="{e(h)}" alt="{e(a)}"></td>' for h, a in (
            (r["image"], "image"), (r["um"], "UM"), (r["edges"], "boundaries"))) + "</tr>")
        parts.append(f'<tr><td colspan="3">{caption}</td></tr>')
    parts.append("</table>")
    if errors:
        parts.append("<h2>failed</h2><ul>")
        parts.extend(f"<li>{e(name)}: {e(msg)}</li>" for name, msg in errors)
        parts.append("</ul>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def check_args(args) -> None:
    """Check the SLIC/UM options shared with ``umsynth prepare``; ValueError names the option."""
    if args.n_segments < 1:
        raise ValueError(f"--n-segments must be >= 1, got {args.n_segments}")
    if not 1 <= args.step <= 255:
        raise ValueError(f"--step must be in 1..255, got {args.step}")
    if not args.compactness > 0:
        raise ValueError(f"--compactness must be > 0, got {args.compactness}")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")


def run(args) -> int:
    """Run ``umsynth masks``; returns 0, or 2 if any image failed (after doing all the others)."""
    from tqdm import tqdm

    from umsynth.progress import progress

    from umsynth import samples  # the phantom behind it needs scipy: only when samples are used

    check_args(args)
    errors: list[tuple[str, str]] = []
    paths = _collect(args.images, errors) if args.images else samples.bundled()
    out = Path(args.out)
    hold_output(out, "masks")  # creates it; another umsynth process writing it stops us here

    def fail(name: str, msg: str) -> None:
        errors.append((name, msg))
        tqdm.write(f"umsynth masks: error: {name}: {msg}", file=sys.stderr)

    for name, msg in errors:  # bad arguments found while collecting
        tqdm.write(f"umsynth masks: error: {name}: {msg}", file=sys.stderr)

    rows: list[dict] = []
    used: set[str] = set()
    for path in progress(paths, desc="masks", unit="image", disable=args.no_progress):
        try:
            grey = read_grey(path)
        except (OSError, ValueError) as exc:  # the message starts with the path
            msg = str(exc)
            fail(str(path), msg[len(f"{path}: "):] if msg.startswith(f"{path}: ") else msg)
            continue
        try:
            t0 = time.perf_counter()
            um, labels = umsynth.unsupervised_mask(
                grey, n_segments=args.n_segments, compactness=args.compactness, step=args.step,
                algorithm=args.algorithm, return_labels=True, threads=args.threads)
            ms = (time.perf_counter() - t0) * 1e3
            stem = _stem(path, used)
            um_path, edges_path = out / f"{stem}_um.png", out / f"{stem}_edges.png"
            write_png(um_path, np.asarray(um, dtype=np.uint8))
            write_png(edges_path, boundary_overlay(grey, np.asarray(labels)))
        except (OSError, ValueError, TypeError, MemoryError) as exc:  # this image only: the batch goes on
            fail(str(path), str(exc) or type(exc).__name__)
            continue
        rows.append({"name": path.name, "shape": grey.shape, "n_labels": int(np.unique(labels).size),
                     "ms": ms, "image": _href(path, out), "um": quote(um_path.name),
                     "edges": quote(edges_path.name)})

    page = _html(rows, errors, args)
    atomic_write_text(out / "index.html", page)
    mean = f"{np.mean([r['ms'] for r in rows]):.1f} ms" if rows else "n/a"
    print(f"umsynth masks: {len(rows)} done, {len(errors)} failed, mean {mean} per UM; "
          f"outputs in {out}")
    return 2 if errors else 0
