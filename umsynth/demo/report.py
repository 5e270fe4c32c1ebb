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

__all__ = ["colour_seg", "sample_grid", "loss_curves", "interval_chart", "write_report", "referenced_files", "write_json"]

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


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> None:
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100), suffix=".png")
    _plt().close(fig)


# loss term -> panel: adversarial terms, reconstruction/segmentation terms, discriminator terms
_PANELS = (("generator: total and adversarial", ("G", "G_gan", "G_feat", "G_u", "G_gan_u", "G_feat_u")),
           ("generator: L1 and segmentation", ("G_l1", "G_seg", "G_l1_u", "G_pseudo_u", "G_perc", "G_perc_u")),
           ("discriminator", ("D", "D_u")))


def loss_curves(path: str | os.PathLike, histories: dict[str, dict[str, list]]) -> None:
    """Plot each run's losses against their training step.

    ``histories``: run name -> ``{"step": [...], term: [value or None, ...]}``. One row of
    panels per run (generator adversarial terms, reconstruction and segmentation terms,
    discriminator), each line its own colour; fractions (``*fraction*``) on a right-hand axis.
    """
    plt = _plt()
    runs = list(histories)
    fig, axes = plt.subplots(len(runs), len(_PANELS), figsize=(4.6 * len(_PANELS), 3.0 * len(runs)), squeeze=False)
    colours = plt.get_cmap("tab10").colors
    for row, run in zip(axes, runs):
        h = histories[run]
        step = np.asarray(h.get("step", []), dtype=float)
        for ax, (title, terms) in zip(row, _PANELS):
            k = 0
            for term in terms:
                v = np.array([np.nan if x is None else x for x in h.get(term, [])], dtype=float)
                if v.size == step.size and np.isfinite(v).any():
                    ok = np.isfinite(v)
                    ax.plot(step[ok], v[ok], label=term, linewidth=1, color=colours[k % len(colours)])
                    k += 1
            fractions = [t for t in h if "fraction" in t]
            if title == "discriminator" and fractions:
                ax2 = ax.twinx()
                for t in fractions:
                    v = np.array([np.nan if x is None else x for x in h[t]], dtype=float)
                    ok = np.isfinite(v)
                    ax2.plot(step[ok], v[ok], label=t, linewidth=1, linestyle="--", color="0.4")
                ax2.set_ylim(0, 1.02)
                ax2.set_ylabel("fraction of pixels", fontsize=8)
                ax2.legend(fontsize=7, loc="upper right")
            ax.set_title(f"{run}: {title}", fontsize=9)
            ax.set_xlabel("training step")
            ax.set_ylabel("loss")
            ax.grid(alpha=0.3)
            if k:
                ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    _save(fig, path)


def interval_chart(path: str | os.PathLike, panels: dict[str, dict[str, tuple]], refline: float | None = None) -> None:
    """Points with 95 % interval bars: one panel per entry, ``{label: (value, (low, high))}``."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.8 * len(panels), 3.2), squeeze=False)
    colours = {"real": "#2ca02c", "degraded": "#d62728", "v2um2i": "#1f77b4", "v2m2i": "#ff7f0e"}
    for ax, (title, points) in zip(axes[0], panels.items()):
        for i, (label, (v, iv)) in enumerate(points.items()):
            key = label.lstrip("+")
            c = colours.get(key, "0.3")
            if v is None:
                ax.text(i, 0, "n/a", ha="center", fontsize=8)
                continue
            lo, hi = iv if iv is not None else (None, None)
            if lo is not None and hi is not None:
                ax.errorbar([i], [v], yerr=[[max(v - lo, 0)], [max(hi - v, 0)]], fmt="o", color=c, capsize=4)
            else:
                ax.plot([i], [v], "o", color=c)
        if refline is not None:
            ax.axhline(refline, color="0.6", linestyle=":", linewidth=1)
        ax.set_xticks(range(len(points)))
        ax.set_xticklabels(list(points), fontsize=8, rotation=20)
        ax.set_xlim(-0.5, len(points) - 0.5)
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    _save(fig, path)


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return "n/a" if not np.isfinite(v) else f"{v:.{digits}g}"
    return str(v)


def _iv(iv) -> str:
    if not iv or iv[0] is None:
        return "—"
    return f"[{_fmt(iv[0])}, {_fmt(iv[1])}]"


def _table(header: list[str], rows: list[list], fmt: str = "{:.4g}") -> str:
    def cell(v):
        if isinstance(v, _Raw):
            return str(v)
        if isinstance(v, float):
            return fmt.format(v) if np.isfinite(v) else "n/a"
        return html.escape("—" if v is None else str(v))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class _Raw(str):
    """Table cell HTML that is already escaped."""


def _warn(msgs) -> _Raw:
    return _Raw("".join(f"<span class='warn'>⚠ {html.escape(m)}</span>" for m in msgs or ()))


def _img(rel: str | None, alt: str) -> str:
    if not rel:
        return f"<p class='missing'>{html.escape(alt)}: not produced</p>"
    return (f"<figure><img src='{html.escape(rel)}' alt='{html.escape(alt)}'>"
            f"<figcaption>{html.escape(alt)}</figcaption></figure>")


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0} td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3} td:first-child,th:first-child{text-align:left}
figure{margin:.8em 0} img{max-width:100%;border:1px solid #ddd} figcaption{font-size:.85em;color:#555}
.note{color:#555;font-size:.9em} .missing{color:#a00}
.warn{display:block;color:#8a4b00;background:#fff4e0;font-size:.85em;text-align:left;padding:0 .3em}
.smoke{background:#fff0f0;border:2px solid #c00;padding:.6em 1em;color:#900}
.verdict-supported{color:#186a18;font-weight:bold} .verdict-not{color:#a00;font-weight:bold}
.verdict-inconclusive{color:#7a5a00;font-weight:bold}
"""

_ORDER = ("real", "v2um2i", "v2m2i", "degraded")
_NAMES = {"real": "real (control: perfect generator)", "v2um2i": "V2UM2I (UM-guided)",
          "v2m2i": "V2M2I (mask-guided)", "degraded": "degraded (control)"}


def _verdict_section(verdict: dict, warnings: dict) -> str:
    rows = []
    for claim, r in verdict.items():
        cls = {"supported": "verdict-supported", "not supported": "verdict-not"}.get(r["verdict"], "verdict-inconclusive")
        rows.append([claim, f"{r['metric']} ({r['better']} is better)", r["difference"], _Raw(html.escape(_iv(r["interval"]))),
                     r["p_value"], r["unit"], _Raw(f"<span class='{cls}'>{html.escape(r['verdict'])}</span>"),
                     _warn(warnings.get(f"verdict.{claim}"))])
    return ("<h2>Verdict</h2><p class='note'>The seed README's claim: V2UM2I beats V2M2I on fidelity, variety "
            "and utility. Difference = V2UM2I − V2M2I with its 95 % interval; “supported” only when the "
            "whole interval lies on the better side of 0 and p &lt; 0.05, “not supported” when both say the "
            "opposite, otherwise “inconclusive at this budget”.</p>"
            + _table(["claim", "metric", "difference", "95 % interval", "p-value", "independent unit", "verdict",
                      "warning"], rows))


def _seeds_text(seeds) -> str:
    """"1 (seed 0)", "3 (seeds 0, 1, 2)": how many, then which."""
    seeds = list(seeds)
    return f"{len(seeds)} (seed{'s' if len(seeds) != 1 else ''} {', '.join(str(s) for s in seeds)})"


def _mm_section(mm: dict, warnings: dict) -> str:
    sets = mm.get("sets", {})
    rows = [[_NAMES.get(n, n), sets[n]["mm_fid"], _Raw(_iv(sets[n]["mm_fid_interval"])), sets[n]["mm_std"],
             _Raw(_iv(sets[n]["mm_std_interval"])), sets[n]["kid"], _Raw(_iv(sets[n]["kid_interval"]))]
            for n in _ORDER if n in sets]
    parts = ["<p class='note'>Reference-normalized: every (network, scale) cell divided by what real data "
             "scores at the same sample sizes, summarised by a geometric mean; 1 means like real data. "
             "Intervals: bootstrap over images. The models should stand between the two controls.</p>",
             _table(["set", "MM-FID", "95 % interval", "MM-STD", "95 % interval", "KID", "95 % interval"], rows)]
    if warnings.get("mmfid"):
        parts.append(str(_warn(warnings["mmfid"])))
    comp = mm.get("comparison", {})
    if comp:
        rows = [[m, c.get("difference"), _Raw(_iv(c.get("interval"))), c.get("p_value"), c.get("unit")]
                for m, c in comp.items()]
        parts.append("<h3>V2UM2I − V2M2I, paired over source cases</h3>"
                     + _table(["metric", "difference", "95 % interval", "p-value", "unit"], rows))
    sens = mm.get("sensitivity", {})
    if sens:
        rows = [[m, c.get("difference"), _Raw(_iv(c.get("interval"))), c.get("p_value"), c.get("unit")]
                for m, c in sens.items()]
        parts.append("<h3>Sensitivity check: degraded − real control, paired over source cases</h3>"
                     "<p class='note'>The same pool cases, once as they are and once blurred with noise added. "
                     "A metric that cannot find the degraded copy worse (MM-FID difference above 0 with its "
                     "interval) cannot decide the models' comparison at this size either.</p>"
                     + _table(["metric", "difference", "95 % interval", "p-value", "unit"], rows))
    per_seed = mm.get("per_seed")
    if per_seed:
        rows = [[s, v["comparison"]["mm_fid"]["difference"], v["comparison"]["mm_std"]["difference"]]
                for s, v in per_seed.items()]
        parts.append("<h3>Per training seed</h3>" + _table(["seed", "ΔMM-FID", "ΔMM-STD"], rows))
    return "\n".join(parts)


def _utility_section(ut: dict, warnings: dict) -> str:
    arms = ut.get("arms", {})
    order = ["real_only"] + [f"real+{n}" for n in _ORDER]
    rows = []
    for arm in [a for a in order if a in arms] + [a for a in arms if a not in order]:
        v = arms[arm]
        pc = v["per_class"]
        rows.append([arm, v["n_train"], v["mean_foreground"]["mean"], _Raw(_iv(v["mean_foreground"]["interval"])),
                     pc[1]["mean"], _Raw(_iv(pc[1]["interval"])), pc[2]["mean"], _Raw(_iv(pc[2]["interval"])),
                     _warn(warnings.get(f"utility.{arm}"))])
    parts = [_table(["training set", "images", "mean Dice (lung, lesion)", "95 % interval", "lung Dice",
                     "95 % interval", "lesion Dice", "95 % interval", "warning"], rows)]
    fid = ut.get("label_fidelity", {})
    if fid:
        rows = [[n, v["per_class"][1]["mean"], v["per_class"][2]["mean"], v["mean_foreground"]["mean"],
                 _Raw(_iv(v["mean_foreground"]["interval"]))] for n, v in fid.items()]
        parts.append("<h3>Label fidelity of each synthetic set</h3><p class='note'>Dice of the labels a set "
                     "provides against the phantom ground truth of its source cases (V2M2I's label is the mask "
                     "it was conditioned on, so it matches by construction; its segmentation head is shown too)."
                     "</p>" + _table(["set", "lung Dice", "lesion Dice", "mean", "95 % interval"], rows))
    return "\n".join(parts)


def write_report(out_dir: str | os.PathLike, metrics: dict) -> Path:
    """Write ``out_dir/report.html`` from the demo's metrics (figures referenced by relative path)."""
    out = Path(out_dir)
    fig = metrics.get("figures", {})
    env = metrics.get("environment", {})
    cfg = metrics.get("config", {})
    warnings = metrics.get("warnings", {})
    quick = metrics.get("quick")
    title = "umsynth demo — smoke test (--quick)" if quick else "umsynth demo"
    sec = [f"<h1>{html.escape(title)}</h1>"]
    if quick:
        sec.append("<p class='smoke'>This is a <b>smoke test</b> (<code>--quick</code>): tiny models, few steps "
                   "and images. It checks that every stage runs; its numbers are not results.</p>")
    sec.append(f"<p class='note'>Does UM-guided synthesis (V2UM2I) beat mask-guided synthesis (V2M2I)? A paired "
               f"experiment on the embedded phantom cohort. Started {html.escape(str(metrics.get('started', '')))}, "
               f"finished {html.escape(str(metrics.get('created', '')))}. All numbers: "
               f"<a href='metrics.json'>metrics.json</a>; training runs: <a href='runs/'>runs/</a>; "
               f"synthetic images: <a href='synthetic/'>synthetic/</a>.</p>")
    design = metrics.get("design", {})
    groups = design.get("groups", {})
    conf_rows = [["montage size", f"{cfg.get('size')} px (slices {cfg.get('size', 0) // 2} px)"],
                 ["cases", f"{cfg.get('n_cases')}: {len(groups.get('train_labelled', []))} labelled + "
                           f"{len(groups.get('train_unlabelled', []))} unlabelled training, {cfg.get('n_pool')} "
                           f"synthesis pool, {cfg.get('n_test')} test"],
                 ["training", f"{cfg.get('steps')} V2UM2I iterations; V2M2I gets the same number of updates"],
                 ["training seeds", _seeds_text(design.get("training_seeds", []))],
                 ["utility", f"{cfg.get('utility_steps')} steps, batch {cfg.get('utility_batch')} "
                             f"(half synthetic in mixed arms), {cfg.get('segmenter_seeds')} segmenter seeds"],
                 ["MM-FID scales", ", ".join(str(s) for s in design.get("scales", []))],
                 ["device", cfg.get("device")]]
    sec.append("<h2>Configuration</h2>" + _table(["item", "value"], conf_rows))
    sec.append(_verdict_section(metrics.get("verdict", {}), warnings))
    tr = metrics.get("training", {})
    rows = [[k, v.get("iterations"), v.get("generator_updates"), v.get("discriminator_updates"), v.get("seconds"),
             _Raw(f"<a href='{html.escape(v.get('run', ''))}/'>{html.escape(v.get('run', ''))}</a>")]
            for k, v in tr.items() if k != "per_seed"]
    sec.append("<h2>Training: equal budgets</h2>" + _table(
        ["model", "iterations", "generator updates", "discriminator updates", "seconds", "run"], rows))
    sec.append(_img(fig.get("loss_curves"), "losses against the training step (first training seed)"))
    sec.append("<h2>Samples</h2><p class='note'>Both models start from the same pool cases. Segmentation "
               "colours: lung blue, lesion orange.</p>")
    captions = {"samples_v2um2i": "V2UM2I: UM | synthetic CT | synthetic seg | source case | nearest training image",
                "samples_v2m2i": "V2M2I: manual mask | synthetic CT | synthetic seg | source case | nearest training image",
                "samples_controls": "controls: the pool's real images and their degraded copies",
                "samples_real_ct": "unseen real CT (pydicom's sample slices): its UM through the V2UM2I model"}
    for key, caption in captions.items():
        sec.append(_img(fig.get(key), caption))
    mm = metrics.get("mmfid", {})
    sec.append("<h2>Fidelity and variety: MM-FID, MM-STD, KID</h2>")
    sec.append(_mm_section(mm, warnings))
    sec.append(_img(fig.get("mmfid_chart"), "MM-FID and MM-STD with 95 % intervals: real, the models, degraded"))
    sec.append(_img(fig.get("tsne"), "t-SNE of real and synthetic features"))
    sec.append("<h2>Utility: Dice on held-out real images</h2>")
    sec.append(_utility_section(metrics.get("utility", {}), warnings))
    sec.append(_img(fig.get("utility_chart"), "Dice with 95 % intervals over test images and segmenter seeds"))
    cohort = metrics.get("cohort", {})
    sec.append("<h2>Data</h2>" + _table(["item", "value"], [[k, v] for k, v in cohort.items() if k != "groups"]))
    times = metrics.get("stage_times", {})
    cpu = metrics.get("stage_cpu_seconds", {})
    rows = [[k, float(v), cpu.get(k)] for k, v in times.items()]
    rows.append(["total", float(sum(times.values())), float(sum(v for v in cpu.values() if v is not None))])
    sec.append("<h2>Time per stage</h2><p class='note'>Wall seconds, and CPU seconds of all threads (on a "
               "shared machine the wall time also counts other jobs).</p>"
               + _table(["stage", "wall seconds", "CPU seconds"], rows))
    sec.append("<h2>Environment</h2>" + _table(["item", "value"], [[k, v] for k, v in env.items()]))
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(title) + "</title>"
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
