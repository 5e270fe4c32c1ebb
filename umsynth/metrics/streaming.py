"""Streaming set statistics: one pass over an image set gives every (network, scale) cell.

Steps, one function each: read the images in batches (:func:`_batches`), resize each
batch to every scale and run every network (:func:`_cell_features`), buffer the features
and update the cell's :class:`~umsynth.FeatureStats` (:class:`_CellAccumulator`), keep a
seeded uniform sample of images' features (:class:`_Reservoir`), and combine processes
under ``torch.distributed`` (:meth:`~umsynth.FeatureStats.all_reduce`, :func:`_gather_kept`).
:class:`SetStats` holds the result and reads and writes it (``setstats.json`` plus one
FeatureStats ``.npz`` per cell).

torch is imported only when :func:`stream_stats` runs.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np

from umsynth.files import atomic_write, atomic_write_text
from umsynth.stats import FeatureStats

__all__ = ["SetStats", "stream_stats", "KEPT_FILE", "SETSTATS_FORMAT", "SETSTATS_MANIFEST",
           "FEATURE_BUFFER_ELEMENTS"]

SETSTATS_FORMAT = "umsynth-mmfid-set-stats"
SETSTATS_MANIFEST = "setstats.json"
# Numbers (float64) a cell's feature buffer holds before its statistics are updated.
FEATURE_BUFFER_ELEMENTS = 2**20


# --------------------------------------------------------------------------- the result


@dataclass
class SetStats:
    """Everything one pass over one image set produces.

    Attributes
    ----------
    n : int
        Images seen (over all processes).
    cells : dict of (str, int) -> FeatureStats
        Statistics per (extractor name, scale).
    halves : tuple of two such dicts, or None
        Statistics of the even- and odd-indexed images (real sets only).
    kept : dict of (str, int) -> numpy.ndarray (m, d)
        Features of a uniform sample of at most ``keep`` images (same images in every cell).
    kept_index : numpy.ndarray (m,)
        Indices of the kept images in the set.
    """

    n: int
    cells: dict
    halves: tuple | None = None
    kept: dict = field(default_factory=dict)
    kept_index: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def save(self, folder: str | os.PathLike) -> None:
        """Write the statistics to a folder: one FeatureStats .npz per cell (and half), the kept
        features in ``kept.npz`` (indices and one array per cell, in the manifest's cell order),
        and ``setstats.json`` listing them, written last so that a folder with it is complete."""
        folder = os.fspath(folder)
        os.makedirs(folder, exist_ok=True)
        entries = []
        for (e, s), st in self.cells.items():
            files = [f"{e}@{s}.npz"] + ([f"{e}@{s}.even.npz", f"{e}@{s}.odd.npz"] if self.halves else [])
            parts = [st] + ([self.halves[0][(e, s)], self.halves[1][(e, s)]] if self.halves else [])
            for fname, part in zip(files, parts):
                part.save(os.path.join(folder, fname))
            entries.append({"extractor": e, "scale": s, "files": files})
        manifest = {"format": SETSTATS_FORMAT, "version": 1, "n": self.n, "split": self.halves is not None,
                    "cells": entries}
        if self.kept:
            order = [(e["extractor"], e["scale"]) for e in entries]
            arrays = {"index": np.asarray(self.kept_index, dtype=np.int64),
                      **{f"cell{i}": np.asarray(self.kept[c], dtype=np.float64) for i, c in enumerate(order)}}
            atomic_write(os.path.join(folder, KEPT_FILE), lambda tmp: np.savez(tmp, **arrays), suffix=".npz")
            manifest["kept"] = {"file": KEPT_FILE, "images": int(len(self.kept_index))}
        atomic_write_text(os.path.join(folder, SETSTATS_MANIFEST), json.dumps(manifest, indent=1) + "\n")

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "SetStats":
        """Read a folder written by :meth:`save`.

        Raises
        ------
        ValueError
            If the folder has no ``setstats.json`` or a listed file is missing or unreadable.
        """
        folder = os.fspath(folder)
        path = os.path.join(folder, SETSTATS_MANIFEST)
        try:
            with open(path, encoding="utf-8") as fh:
                manifest = json.load(fh)
        except FileNotFoundError:
            raise ValueError(f"{folder} holds no {SETSTATS_MANIFEST}: not a statistics folder") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot read {path}: {exc}") from None
        if manifest.get("format") != SETSTATS_FORMAT:
            raise ValueError(f"{path}: unknown format {manifest.get('format')!r}")
        cells, even, odd = {}, {}, {}
        for entry in manifest["cells"]:
            key = (entry["extractor"], int(entry["scale"]))
            parts = [FeatureStats.load(os.path.join(folder, f)) for f in entry["files"]]
            cells[key] = parts[0]
            if manifest["split"]:
                even[key], odd[key] = parts[1], parts[2]
        kept, index = {}, np.zeros(0, dtype=np.int64)
        if manifest.get("kept"):
            kept_path = os.path.join(folder, KEPT_FILE)
            try:
                with np.load(kept_path, allow_pickle=False) as f:
                    index = np.asarray(f["index"], dtype=np.int64)
                    kept = {(e["extractor"], int(e["scale"])): np.asarray(f[f"cell{i}"], dtype=np.float64)
                            for i, e in enumerate(manifest["cells"])}
            except (OSError, KeyError, ValueError) as exc:
                raise ValueError(f"cannot read {kept_path}: {exc}") from None
            if any(v.shape[0] != index.shape[0] for v in kept.values()):
                raise ValueError(f"{kept_path}: the kept features and their indices differ in length")
        return cls(int(manifest["n"]), cells, (even, odd) if manifest["split"] else None, kept, index)

    @staticmethod
    def is_folder(path) -> bool:
        """Whether ``path`` is a folder written by :meth:`save` (it holds ``setstats.json``)."""
        return isinstance(path, (str, os.PathLike)) and os.path.isfile(os.path.join(path, SETSTATS_MANIFEST))

    def merge(self, other: "SetStats", keep: int | None = None, seed: int = 0) -> "SetStats":
        """Add another shard's statistics, cell by cell, exactly (in place).

        The other shard's images follow this one's (its indices are offset by ``self.n``).
        Kept features are pooled when both shards hold them (else dropped); beyond ``keep``
        (default: the larger of the two kept samples, at least 2000) a seeded sample is
        taken from each shard in proportion to the images it stands for.
        """
        if set(other.cells) != set(self.cells):
            raise ValueError("cannot merge statistics of different cells (another suite or other scales)")
        if (self.halves is None) != (other.halves is None):
            raise ValueError("cannot merge statistics with and without the real halves")
        for key, st in self.cells.items():
            st.merge(other.cells[key])
            if self.halves:
                self.halves[0][key].merge(other.halves[0][key])
                self.halves[1][key].merge(other.halves[1][key])
        self.kept, self.kept_index = _pool_kept(self, other, keep, seed)
        self.n += other.n
        return self


KEPT_FILE = "kept.npz"


def _pool_kept(a: SetStats, b: SetStats, keep: int | None, seed: int) -> tuple[dict, np.ndarray]:
    """Kept features of two shards pooled (b's indices after a's images), capped at ``keep``."""
    if not a.kept or not b.kept or set(a.kept) != set(b.kept):
        return {}, np.zeros(0, dtype=np.int64)
    cap = max(len(a.kept_index), len(b.kept_index), 2000) if keep is None else int(keep)
    na, nb = len(a.kept_index), len(b.kept_index)
    take_a, take_b = np.arange(na), np.arange(nb)
    if na + nb > cap:
        rng = np.random.default_rng(seed)
        share = int(round(cap * a.n / max(a.n + b.n, 1)))
        share = min(max(share, cap - nb), na)
        take_a = np.sort(rng.choice(na, share, replace=False))
        take_b = np.sort(rng.choice(nb, min(cap - share, nb), replace=False))
    kept = {c: np.concatenate([a.kept[c][take_a], b.kept[c][take_b]]) for c in a.kept}
    return kept, np.concatenate([a.kept_index[take_a], b.kept_index[take_b] + a.n])


# --------------------------------------------------------------------------- the pass


def stream_stats(images, suite, *, name: str = "images", batch_size: int = 32, device: str = "cpu",
                 split: bool = False, keep: int = 0, seed: int = 0, progress: bool = True) -> SetStats:
    """One pass over an image set: feature statistics for every (extractor, scale) cell.

    Parameters
    ----------
    images : folder, array (N, H, W), tensor, or iterable of images
        See :func:`umsynth.metrics.mmfid.mmfid`.
    suite : umsynth.extractors.Suite
        Networks already on ``device``.
    name : str, optional
        For messages and progress bars.
    batch_size : int, optional
    device : str, optional
    split : bool, optional
        Also keep statistics of the even- and odd-indexed images (the real reference).
    keep : int, optional
        Keep the features of a uniform sample of at most this many images (0: none).
    seed : int, optional
        Seeds the sample.
    progress : bool, optional

    Returns
    -------
    SetStats

    Notes
    -----
    Memory: one batch of images at every scale, one d x d scatter matrix per cell (and per
    half), a feature buffer of about 8 MB per cell (:data:`FEATURE_BUFFER_ELEMENTS`), and
    ``keep`` feature rows per cell; nothing grows with the number of images.
    Under ``torch.distributed``, process r reads the images with ``index % world == r``
    and the statistics are all-reduced exactly (:meth:`umsynth.FeatureStats.all_reduce`)
    at the end.
    """
    # the extractors package imports torch: imported here, when a pass runs
    from umsynth.extractors.sources import as_source

    src = as_source(images, name)
    rank, world = _dist_info()
    acc = _CellAccumulator(suite, name, split, batch_size,
                           small=src.length is not None and src.length <= max(m.dims for m in suite.members))
    res = _Reservoir(keep, seed) if keep > 0 else None
    kept = {c: np.zeros((keep, acc.dims[c]), np.float32) for c in acc.cells} if res else {}
    for idx, imgs in _batches(src, rank, world, batch_size, name, progress):
        slots = res.slots(idx) if res else None
        for c, f in _cell_features(imgs, suite, device):
            acc.add(c, f, idx % 2 == 0)
            if res is not None:
                ok = slots >= 0
                kept[c][slots[ok]] = f[ok]
    full, halves = acc.finish(world > 1)
    m = len(res.index) if res else 0
    kept = {c: v[:m] for c, v in kept.items()}
    kept_index = np.asarray(res.index if res else [], dtype=np.int64)
    if world > 1:
        kept, kept_index = _gather_kept(kept, kept_index, keep, seed)
    return SetStats(int(full[acc.cells[0]].n), full, halves, kept, kept_index)


def _dist_info() -> tuple[int, int]:
    """(rank, world size) under ``torch.distributed``, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _batches(src, rank: int, world: int, batch_size: int, name: str, progress: bool):
    """Yield (indices array, list of (1, H, W) tensors) of this process's images, a batch at a time."""
    from tqdm.auto import tqdm

    total = None if src.length is None else len(range(rank, src.length, world))
    with tqdm(total=total, desc=name, unit="img", disable=not progress) as bar:
        buf_idx, buf_img = [], []
        for i, img in src.iterate(rank, world):
            buf_idx.append(i)
            buf_img.append(img)
            if len(buf_idx) == batch_size:
                yield np.asarray(buf_idx), buf_img
                bar.update(len(buf_idx))
                buf_idx, buf_img = [], []
        if buf_idx:
            yield np.asarray(buf_idx), buf_img
            bar.update(len(buf_idx))


def _cell_features(imgs: list, suite, device) -> list:
    """[((network name, scale), float64 features (B, d))] of one batch, every cell of the suite."""
    import torch

    shapes = {tuple(t.shape) for t in imgs}
    stacked = torch.stack(imgs).to(device) if len(shapes) == 1 else None
    out = []
    with torch.inference_mode():
        for s in suite.scales:
            x = _resize(imgs, stacked, s, device) * 2.0 - 1.0
            out.extend(((m.name, s), m.net.features(x).double().cpu().numpy()) for m in suite.members)
    return out


def _resize(imgs: list, stacked, size: int, device):
    """(B, 1, size, size) on ``device``: bilinear, antialiased, from a stack or image by image."""
    import torch
    import torch.nn.functional as F

    def one(x):
        if x.shape[-2:] == (size, size):
            return x
        return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)

    if stacked is not None:
        return one(stacked)
    return torch.cat([one(t[None].to(device)) for t in imgs])


class _CellAccumulator:
    """Per-cell FeatureStats of one set (and of its even and odd halves), fed through buffers.

    Features wait in per-cell buffers of about :data:`FEATURE_BUFFER_ELEMENTS` numbers (8 MB),
    so the O(d^2) work of a statistics update is paid once per buffer, not once per batch.
    With ``split`` the even and odd halves are accumulated and merged into the full set at
    the end. ``small``: the set is known to have no more images than features, so the cells
    keep their rows for the exact small-sample Fréchet route.
    """

    def __init__(self, suite, name: str, split: bool, batch_size: int, small: bool) -> None:
        self.name, self.split, self.small = name, split, small
        self.digest = suite.digest()
        self.cells = [(m.name, s) for m in suite.members for s in suite.scales]
        self.dims = {(m.name, s): m.dims for m in suite.members for s in suite.scales}
        self.parts = (self._fresh(), self._fresh()) if split else (self._fresh(),)
        self.buffers = {c: [] for c in self.cells}
        self.rows = {c: max(int(batch_size), min(4096, FEATURE_BUFFER_ELEMENTS // d)) for c, d in self.dims.items()}

    def _fresh(self) -> dict:
        return {c: FeatureStats(self.dims[c], keep_features=self.small, extractor=f"{c[0]}@{self.digest}/{c[1]}")
                for c in self.cells}

    def add(self, cell, f: np.ndarray, even: np.ndarray) -> None:
        """Buffer one batch's features of ``cell`` (``even``: which rows have an even image index)."""
        self.buffers[cell].append((f, even))
        if sum(len(b[0]) for b in self.buffers[cell]) >= self.rows[cell]:
            self._drain(cell)

    def _drain(self, cell) -> None:
        f = np.concatenate([b[0] for b in self.buffers[cell]])
        even = np.concatenate([b[1] for b in self.buffers[cell]])
        self.buffers[cell] = []
        if self.split:
            self._update(self.parts[0][cell], f[even], cell)
            self._update(self.parts[1][cell], f[~even], cell)
        else:
            self._update(self.parts[0][cell], f, cell)

    def _update(self, stats: FeatureStats, f: np.ndarray, cell) -> None:
        try:
            stats.update(f)
        except ValueError as exc:
            raise ValueError(f"{self.name}: features of {cell[0]} at scale {cell[1]}: {exc}") from None

    def finish(self, all_reduce: bool) -> tuple[dict, tuple | None]:
        """(statistics per cell, (even, odd) halves or None), after the last batch.

        ``all_reduce``: combine every process's statistics first (all processes must call it).
        """
        for c in self.cells:
            if self.buffers[c]:
                self._drain(c)
        if all_reduce:
            for group in self.parts:
                for st in group.values():
                    st.all_reduce()
        if not self.split:
            return self.parts[0], None
        even, odd = self.parts
        full = {c: FeatureStats(self.dims[c], keep_features=self.small, extractor=even[c].extractor)
                .merge(even[c]).merge(odd[c]) for c in self.cells}
        return full, self.parts


class _Reservoir:
    """Uniform sample of at most ``cap`` images from a stream (Vitter's algorithm R, seeded)."""

    def __init__(self, cap: int, seed: int) -> None:
        self.cap = int(cap)
        self.seen = 0
        self.index: list[int] = []
        self.rng = np.random.default_rng(seed)

    def slots(self, indices) -> np.ndarray:
        """Slot of each new image in the sample (-1: not kept); a kept slot may evict an older image."""
        out = np.full(len(indices), -1, dtype=np.int64)
        for j, i in enumerate(indices):
            if len(self.index) < self.cap:
                out[j] = len(self.index)
                self.index.append(int(i))
            else:
                r = int(self.rng.integers(0, self.seen + 1))
                if r < self.cap:
                    out[j] = r
                    self.index[r] = int(i)
            self.seen += 1
        return out


def _gather_kept(kept: dict, index: np.ndarray, keep: int, seed: int):
    """All processes' kept features; a seeded uniform subsample if more than ``keep``."""
    import torch.distributed as dist

    got = [None] * dist.get_world_size()
    dist.all_gather_object(got, (index, kept))
    index = np.concatenate([g[0] for g in got])
    order = np.argsort(index, kind="stable")
    if len(order) > keep:
        order = np.sort(np.random.default_rng(seed).choice(order, keep, replace=False))
    merged = {c: np.concatenate([g[1][c] for g in got])[order] for c in kept}
    return merged, index[order]
