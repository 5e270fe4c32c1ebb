"""The demo's pictures and its report.html.

Every figure is a PNG next to report.html and referenced by a relative path, so the
folder can be copied or zipped as it is. Writes go through a temp name and a rename.
"""
from __future__ import annotations

import html
import json
import os
from pathlib import Path

import numpy as np

from umsynth.files import atomic_write, atomic_write_text

__all__ = ["colour_seg", "sample_grid", "loss_curves", "write_report", "referenced_files"]

# class map colours: background black, lung steel blue, lesion orange
_PALETTE = np.array([[0, 0, 0], [70, 130, 180], [255, 140, 0]], dtype=np.uint8)


def colour_seg(seg: np.ndarray) -> np.ndarray:
    """Class map (H,W) -> RGB uint8 (H,W,3); classes beyond the palette are clipped."""
    return _PALETTE[np.clip(np.asarray(seg), 0, len(_PALETTE) - 1)]


def _grey(img: np.ndarray) -> np.ndarray:
    return np.repeat(np.asarray(img, np.uint8)[..., None], 3, axis=-1)


def sample_grid(path: str | os.PathLike, columns: dict[str, list[np.ndarray]], pad: int = 4) -> None:
    """Write a PNG grid: one column per entry of `columns` (grey uint8 or RGB), one row per sample.

    Column titles are drawn above the grid with matplotlib so the picture explains itself.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(columns)
    rows = len(columns[names[0]])
    if any(len(columns[n]) != rows for n in names):
        raise ValueError("sample_grid: every column needs the same number of images")
    fig, axes = plt.subplots(rows, len(names), figsize=(2.2 * len(names), 2.2 * rows + 0.3),
                             squeeze=False)
    for j, name in enumerate(names):
        for i in range(rows):
            img = columns[name][i]
            ax = axes[i, j]
            ax.imshow(_grey(img) if img.ndim == 2 else img, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=9)
    fig.tight_layout(pad=0.3)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100), suffix=".png")
    plt.close(fig)


def loss_curves(path: str | os.PathLike, histories: dict[str, dict[str, list[float]]]) -> None:
    """Plot each run's loss histories (one panel per run, one line per loss term)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = list(histories)
    fig, axes = plt.subplots(1, len(runs), figsize=(5.0 * len(runs), 3.4), squeeze=False)
    for ax, run in zip(axes[0], runs):
        for term, values in histories[run].items():
            v = np.asarray(values, dtype=float)
            if v.size and np.isfinite(v).any():
                ax.plot(np.arange(1, v.size + 1), v, label=term, linewidth=1)
        ax.set_title(run)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_yscale("symlog", linthresh=1e-2)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100), suffix=".png")
    plt.close(fig)


def _table(header: list[str], rows: list[list], fmt: str = "{:.4g}") -> str:
    def cell(v):
        if isinstance(v, float):
            return fmt.format(v)
        return html.escape("—" if v is None else str(v))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(rel: str | None, alt: str) -> str:
    if not rel:
        return f"<p class='missing'>{html.escape(alt)}: not produced</p>"
    return f"<figure><img src='{html.escape(rel)}' alt='{html.escape(alt)}'><figcaption>{html.escape(alt)}</figcaption></figure>"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0} td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3} td:first-child,th:first-child{text-align:left}
figure{margin:.8em 0} img{max-width:100%;border:1px solid #ddd} figcaption{font-size:.85em;color:#555}
.note{color:#555;font-size:.9em} .missing{color:#a00}
"""


def _mm_section(mm: dict) -> str:
    parts = []
    ext, scales = mm.get("extractors", []), mm.get("scales", [])
    sets = mm.get("sets", {})
    ref = mm.get("reference_normalized", {})
    if ref:
        rows = [[n, v["mm_fid"], v["mm_fid_std"], v["mm_std"], v["mm_std_std"]] for n, v in ref.items()]
        parts.append("<h3>Each set against the real data (reference normalization)</h3>"
                     "<p class='note'>Each cell divided by the same cell for two disjoint halves of the "
                     "real set (FD) or by the real features' STD; 1 means as far as real is from real. "
                     "Lower MM-FID is better; MM-STD near 1 means real-like variety.</p>"
                     + _table(["set", "MM-FID", "± std", "MM-STD", "± std"], rows))
    if sets:
        rows = [[n, v["mm_fid"], v["mm_fid_std"], v["mm_std"], v["mm_std_std"]] for n, v in sets.items()]
        parts.append(f"<h3>Sets side by side ({html.escape(str(mm.get('normalization', '')))} normalization, "
                     "the authors' procedure)</h3>" + _table(["set", "MM-FID", "± std", "MM-STD", "± std"], rows))
    for name, s in sets.items():
        for key, title in (("fd", "FD"), ("std", "STD (mean per-dimension std of the synthetic features)")):
            if key in s:
                rows = [[e] + [float(x) for x in r] for e, r in zip(ext, s[key])]
                parts.append(f"<p>{html.escape(name)}: {title}</p>"
                             + _table(["extractor \\ scale"] + [str(x) for x in scales], rows))
    w = mm.get("wilcoxon")
    if w:
        rows = [[pair, t, v["statistic"], v["pvalue"]] for pair, tests in w.items() for t, v in tests.items()]
        parts.append("<h3>Wilcoxon signed-rank test over the normalized cells</h3>"
                     + _table(["sets", "table", "statistic", "p-value"], rows))
    knn = [[n, s["knn"]["counts"].get("copy"), s["knn"]["counts"].get("real"), s["knn"]["counts"].get("non-real")]
           for n, s in sets.items() if "knn" in s]
    if knn:
        parts.append("<h3>k-NN fidelity / privacy sets</h3>"
                     + _table(["set", "copy", "real", "non-real"], knn))
    return "\n".join(parts)


def write_report(out_dir: str | os.PathLike, metrics: dict) -> Path:
    """Write ``out_dir/report.html`` from the demo's metrics (figures referenced by relative path)."""
    out = Path(out_dir)
    fig = metrics.get("figures", {})
    env = metrics.get("environment", {})
    sec = [f"<h1>umsynth demo</h1><p class='note'>UM-guided (V2UM2I) vs mask-guided (V2M2I) "
           f"synthesis on the embedded phantom cohort; {html.escape(str(metrics.get('created', '')))}.</p>"]
    cohort = metrics.get("cohort", {})
    sec.append("<h2>Data</h2>" + _table(["item", "value"], [[k, v] for k, v in cohort.items()]))
    sec.append("<h2>Samples</h2><p class='note'>Segmentation colours: lung blue, lesion orange. "
               "Nearest real: the training image closest in pixel L2.</p>")
    captions = {"samples_v2um2i": "V2UM2I (UM-guided): UM | synthetic CT | synthetic seg | nearest real",
                "samples_v2m2i": "V2M2I (mask-guided baseline): manual mask | synthetic CT | synthetic seg | nearest real",
                "samples_real_ct": "unseen real CT (pydicom's sample slices): its UM through the V2UM2I model"}
    for key, caption in captions.items():
        sec.append(_img(fig.get(key), caption))
    sec.append("<h2>Training</h2>" + _img(fig.get("loss_curves"), "generator and discriminator losses"))
    tr = metrics.get("training", {})
    if tr:
        sec.append(_table(["model", "steps", "seconds"],
                          [[k, v.get("steps"), float(v.get("seconds", float("nan")))] for k, v in tr.items()]))
    mm = metrics.get("mmfid", {})
    sec.append("<h2>Fidelity and variety: MM-FID and MM-STD</h2>")
    if mm.get("definitions"):
        sec.append(f"<details><summary>Definitions</summary><pre>{html.escape(mm['definitions'])}</pre></details>")
    sec.append(_mm_section(mm))
    sec.append(_img(fig.get("tsne"), "t-SNE of real vs synthetic features"))
    ut = metrics.get("utility", {})
    sec.append("<h2>Utility: Dice on held-out real images</h2>")
    if ut:
        rows = [[arm, v["n_train"], v["mean_foreground"]] + [d for d in v["dice"]] for arm, v in ut.items()]
        sec.append(_table(["training set", "images", "mean Dice (lung, lesion)", "Dice bg", "Dice lung",
                           "Dice lesion"], rows))
    times = metrics.get("stage_times", {})
    sec.append("<h2>Time per stage</h2>" + _table(["stage", "seconds"],
                                                  [[k, float(v)] for k, v in times.items()]))
    sec.append("<h2>Environment</h2>" + _table(["item", "value"], [[k, v] for k, v in env.items()]))
    sec.append("<p class='note'>Every number above is in metrics.json next to this file.</p>")
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>umsynth demo report</title>"
            f"<style>{_CSS}</style></head><body>" + "\n".join(sec) + "</body></html>")
    path = out / "report.html"
    atomic_write_text(path, page)
    return path


def referenced_files(report: str | os.PathLike) -> list[str]:
    """The relative file names a report's <img> and <a> tags point to."""
    import re

    text = Path(report).read_text(encoding="utf-8")
    return re.findall(r"(?:src|href)='([^'#:]+)'", text)


def write_json(path: str | os.PathLike, obj: dict) -> None:
    """Atomic, pretty JSON (NaN written as null)."""
    def clean(o):
        if isinstance(o, dict):
            return {str(k): clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        if isinstance(o, (np.floating, float)):
            return None if not np.isfinite(o) else float(o)
        if isinstance(o, np.integer):
            return int(o)
        if isinstance(o, np.ndarray):
            return clean(o.tolist())
        return o

    atomic_write_text(path, json.dumps(clean(obj), indent=2))
