"""torch Datasets of montages: the training tuples of SemiCS2 (UM, edges, CT, segmentation).

Each item is a dict of tensors that torch's default collate batches:

=============  ========================  ==================================================
key            shape, dtype              meaning
=============  ========================  ==================================================
``um``         (1, H, W) float32         UM requantized by ``tr`` (method.md §2), in [-1, 1]
``edges``      (1, H, W) float32         1 where a pixel's superpixel differs from a
                                         4-neighbour's (pix2pixHD instance edges), else 0
``ct``         (1, H, W) float32         the montage, ``grey / 127.5 - 1``, in [-1, 1]
``seg``        (H, W) int64              classes 0 background, 1 lung, 2 lesion; all 0
                                         when the item has no label
``has_label``  () bool                   whether ``seg`` is a real label map
``index``      () int64                  the item's index in this dataset
=============  ========================  ==================================================

Geometric augmentation (:class:`Augment`) is applied after the UM is computed, with one
drawn transform for all maps: nearest neighbour for the label-like maps (UM, superpixels,
segmentation) and linear interpolation for the CT. The edge map is computed from the
transformed superpixel labels, so UM, edges and segmentation always agree.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from umsynth.data.io import find_montages, read_label_png, read_montage, read_png_array
from umsynth.data.prepare import OUTPUT_DIRS, RECORD_DIR
from umsynth.masks import UMConfig

__all__ = ["MontageDataset", "UMConfig", "Augment", "AugmentParams", "apply_geometry",
           "superpixel_edges", "LABELLED_LIST"]

#: in a prepared folder, the optional list of cases whose labels may be used
LABELLED_LIST = "labelled.txt"
_UM_SOURCES = ("on_the_fly", "disk")


# ----------------------------------------------------------------------------- edges


def superpixel_edges(labels: np.ndarray) -> np.ndarray:
    """Boundary map of a label image: True where a pixel's label differs from a 4-neighbour's.

    Both pixels on either side of a boundary are marked, as pix2pixHD's instance edges.
    """
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise ValueError(f"labels must be 2D, got shape {lab.shape}")
    edge = np.zeros(lab.shape, bool)
    dx = lab[:, 1:] != lab[:, :-1]
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    dy = lab[1:, :] != lab[:-1, :]
    edge[1:, :] |= dy
    edge[:-1, :] |= dy
    return edge


# ----------------------------------------------------------------------------- augmentation


@dataclass(frozen=True)
class AugmentParams:
    """One drawn geometric transform: crop box, flips, quarter turns (applied in that order)."""

    box: tuple[int, int, int, int]  # y0, x0, height, width of the crop, resized back to (H, W)
    hflip: bool  # left-right
    vflip: bool  # up-down
    k: int  # counter-clockwise quarter turns (np.rot90)


@dataclass(frozen=True)
class Augment:
    """Random geometric augmentation, applied alike to CT, UM, superpixels and labels.

    Parameters
    ----------
    hflip, vflip : float
        Probabilities of a left-right and an up-down flip. A left-right flip mirrors the
        anatomy (the heart moves to the other side); set 0 to keep anatomical sides.
    rot90 : bool
        Rotate by a random multiple of 90 degrees (odd turns only for square images).
    zoom : (float, float)
        Range of the zoom factor, both >= 1: a crop of side ``1/zoom`` of the image, at a
        random place, is resized back to the full size. ``(1, 1)`` means no crop.

    The defaults only flip left-right half of the time.
    """

    hflip: float = 0.5
    vflip: float = 0.0
    rot90: bool = False
    zoom: tuple[float, float] = (1.0, 1.0)

    def __post_init__(self):
        for name in ("hflip", "vflip"):
            p = getattr(self, name)
            if not 0.0 <= float(p) <= 1.0:
                raise ValueError(f"Augment.{name} must be a probability in [0, 1], got {p!r}")
        lo, hi = (float(v) for v in self.zoom)
        if not (np.isfinite(hi) and 1.0 <= lo <= hi):
            raise ValueError(f"Augment.zoom must be (low, high) with 1 <= low <= high, got {self.zoom!r}")

    def draw(self, rng: np.random.Generator, shape: tuple[int, int]) -> AugmentParams:
        """Draw one transform for an image of `shape` (H, W); always draws the same numbers."""
        H, W = shape
        z = rng.uniform(*self.zoom)
        h, w = max(1, min(H, round(H / z))), max(1, min(W, round(W / z)))
        y0, x0 = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
        hf, vf = rng.random() < self.hflip, rng.random() < self.vflip
        k = int(rng.integers(4))
        if not self.rot90:
            k = 0
        elif H != W:
            k = 2 * (k % 2)  # odd turns would change the shape
        return AugmentParams((y0, x0, h, w), bool(hf), bool(vf), k)


def _resize_box(arr: np.ndarray, box, linear: bool) -> np.ndarray:
    """Resample the crop `box` of `arr` to arr's shape; pixel centres map to pixel centres."""
    H, W = arr.shape
    y0, x0, h, w = box
    if (y0, x0, h, w) == (0, 0, H, W):
        return arr
    if not linear:
        ys = y0 + np.minimum(((np.arange(H) + 0.5) * h / H).astype(np.int64), h - 1)
        xs = x0 + np.minimum(((np.arange(W) + 0.5) * w / W).astype(np.int64), w - 1)
        return arr[np.ix_(ys, xs)]
    from scipy.ndimage import map_coordinates

    ys = y0 + (np.arange(H) + 0.5) * h / H - 0.5
    xs = x0 + (np.arange(W) + 0.5) * w / W - 0.5
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return map_coordinates(arr.astype(np.float32), [yy, xx], order=1, mode="nearest")


def apply_geometry(arr: np.ndarray, params: AugmentParams, *, linear: bool) -> np.ndarray:
    """Apply one drawn transform to a 2D map (`linear`: CT; nearest otherwise)."""
    out = _resize_box(np.asarray(arr), params.box, linear)
    if params.hflip:
        out = out[:, ::-1]
    if params.vflip:
        out = out[::-1, :]
    if params.k:
        out = np.rot90(out, params.k)
    return np.ascontiguousarray(out)


# ----------------------------------------------------------------------------- sources


class _Source:
    """N 2D maps held as one array or as a list of arrays and/or image paths (read on access)."""

    def __init__(self, items, name: str, read):
        if isinstance(items, torch.Tensor):
            items = items.detach().cpu().numpy()
        if isinstance(items, np.ndarray):
            if items.ndim == 4 and items.shape[1] == 1:
                items = items[:, 0]
            if items.ndim != 3:
                raise ValueError(f"{name} must be (N, H, W) or (N, 1, H, W), got shape {items.shape}")
        elif isinstance(items, (str, os.PathLike)) or not hasattr(items, "__len__"):
            raise TypeError(f"{name} must be an (N, H, W) array or a sequence of arrays or paths, "
                            f"got {type(items).__name__}")
        self.items, self.name, self.read = items, name, read

    def __len__(self) -> int:
        return len(self.items)

    def get(self, i: int) -> np.ndarray:
        item = self.items[i]
        if isinstance(item, (str, os.PathLike)):
            return self.read(item)
        if isinstance(item, torch.Tensor):
            item = item.detach().cpu().numpy()
        arr = np.asarray(item)
        if arr.ndim == 3 and arr.shape[0] == 1:
            arr = arr[0]
        if arr.ndim != 2:
            raise ValueError(f"{self.name}[{i}] must be 2D (H, W), got shape {arr.shape}")
        return arr


def _recorded_um(root: Path, name: str) -> dict | None:
    """The UM settings ``umsynth prepare`` recorded for case `name` (None if unknown)."""
    try:
        record = json.loads((root / RECORD_DIR / f"{name}.json").read_text(encoding="utf-8"))
        return record["config"]["um"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _read_image(path) -> np.ndarray:
    return read_montage(path)[0]


def _check_uint8(arr: np.ndarray, what: str) -> np.ndarray:
    if arr.dtype != np.uint8:
        raise TypeError(f"{what} must be uint8 grey levels 0..255, got {arr.dtype}")
    return arr


# ----------------------------------------------------------------------------- dataset


class MontageDataset(torch.utils.data.Dataset):
    """Montages with their UMs, edges and (optional) label maps, as SemiCS2 trains on them.

    Parameters
    ----------
    images : (N, H, W) uint8 array, or a sequence of (H, W) uint8 arrays or image paths
        The windowed CT montages (paths are read on access).
    labels : like `images`, optional
        Class maps 0..2 (values above 2 count as 2). None: no item is labelled.
    um_source : {"on_the_fly", "disk"}
        ``"on_the_fly"`` computes each UM with :meth:`UMConfig.compute` (CPU) when the
        item is read; ``"disk"`` takes the UMs from `ums`.
    ums : like `images`, optional
        Precomputed UMs (uint8, already quantized by their own step), for ``"disk"``.
    um_config : UMConfig
        How on-the-fly UMs are made.
    tr : int
        Training-time requantization of the UM, 1..255: ``floor(um / tr) * tr``, then mapped
        to [-1, 1] by ``/ 127.5 - 1`` (method.md §2). A coarser `tr` gives coarser guidance.
    augment : Augment, optional
        Geometric augmentation; None for none. The transform of item ``i`` is drawn from
        ``numpy.random.default_rng([seed, i, epoch])``, so it is the same in every worker
        and run, and changes with :meth:`set_epoch`.
    seed : int
        Seed of the augmentation.
    superpixels : like `images`, optional
        Superpixel labels of the `ums` (for the edge map). Without them, ``"disk"`` items
        take their edges from changes of the UM value, which misses boundaries between
        neighbouring superpixels of equal quantized mean.
    has_label : (N,) bool array, optional
        Which items' labels are used (default: all of them when `labels` is given).
    cache_size : int
        On-the-fly UMs and superpixels kept for this many items (least recently used
        dropped first; 0 turns caching off). UMs do not depend on the augmentation, so
        the cache is exact. Each DataLoader worker holds its own cache.
    threads : int, optional
        Thread cap of the SLIC kernel for on-the-fly UMs.

    Attributes
    ----------
    source_index : (N,) int64 array
        Position of each item in the collection it was taken from (cohort or folder).
    names : list of str or None
        Case names, for datasets read with :meth:`from_folder`.
    """

    def __init__(self, images, labels=None, *, um_source="on_the_fly", ums=None,
                 um_config=UMConfig(), tr=10, augment=None, seed=0, superpixels=None,
                 has_label=None, cache_size=32, threads=None):
        self._images = _Source(images, "images", _read_image)
        n = len(self._images)
        if n == 0:
            raise ValueError("images is empty: a dataset needs at least one montage")
        self._labels = None if labels is None else _Source(labels, "labels", read_label_png)
        if self._labels is not None and len(self._labels) != n:
            raise ValueError(f"labels has {len(self._labels)} maps for {n} images")
        if um_source not in _UM_SOURCES:
            raise ValueError(f"um_source must be one of {_UM_SOURCES}, got {um_source!r}")
        if um_source == "disk" and ums is None:
            raise ValueError("um_source='disk' needs the UMs in `ums`")
        self._ums = None if ums is None else _Source(ums, "ums", read_png_array)
        self._superpixels = None if superpixels is None else _Source(superpixels, "superpixels",
                                                                    read_png_array)
        for src in (self._ums, self._superpixels):
            if src is not None and len(src) != n:
                raise ValueError(f"{src.name} has {len(src)} maps for {n} images")
        if not isinstance(um_config, UMConfig):
            raise TypeError(f"um_config must be a UMConfig, got {type(um_config).__name__}")
        if isinstance(tr, bool) or not isinstance(tr, (int, np.integer)) or not 1 <= tr <= 255:
            raise ValueError(f"tr must be an integer in 1..255, got {tr!r}")
        if augment is not None and not isinstance(augment, Augment):
            raise TypeError(f"augment must be an Augment or None, got {type(augment).__name__}")
        if has_label is None:
            has_label = np.full(n, self._labels is not None)
        has_label = np.asarray(has_label)
        if has_label.shape != (n,) or has_label.dtype != bool:
            raise ValueError(f"has_label must be a bool array of shape ({n},), got "
                             f"{has_label.dtype} {has_label.shape}")
        if has_label.any() and self._labels is None:
            raise ValueError("has_label marks labelled items but no labels were given")
        if isinstance(cache_size, bool) or not isinstance(cache_size, (int, np.integer)) or cache_size < 0:
            raise ValueError(f"cache_size must be an integer >= 0, got {cache_size!r}")
        self.um_source, self.um_config, self.tr = um_source, um_config, int(tr)
        self.augment, self.seed, self.epoch = augment, int(seed), 0
        self.has_label = has_label
        self.cache_size, self.threads = int(cache_size), threads
        self._cache: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self.source_index = np.arange(n, dtype=np.int64)
        self.names: list[str] | None = None

    def __len__(self) -> int:
        return len(self._images)

    def fingerprint(self) -> str:
        """SHA-256 (16 hex digits) of what the items are made from.

        The images, labels, UMs and superpixels (array bytes, or the files' bytes), which
        items are labelled, their source positions and names, and the settings (UM source
        and config, ``tr``, augmentation, seed). Equal fingerprints: equal items in every
        epoch. Training checkpoints record it (:func:`umsynth.train.data_digest`).
        """
        h = hashlib.sha256()
        for src in (self._images, self._labels, self._ums, self._superpixels):
            if src is None:
                h.update(b"none;")
                continue
            h.update(f"{src.name}:{len(src)};".encode())
            arrays = [src.items] if isinstance(src.items, np.ndarray) else src.items
            for item in arrays:
                if isinstance(item, (str, os.PathLike)):
                    h.update(Path(item).read_bytes())
                    continue
                if isinstance(item, torch.Tensor):
                    item = item.detach().cpu().numpy()
                a = np.ascontiguousarray(item)
                h.update(f"{a.dtype.str}{a.shape};".encode())
                h.update(a.tobytes())
        settings = (self.um_source, asdict(self.um_config), self.tr,
                    None if self.augment is None else asdict(self.augment), self.seed, self.names)
        h.update(json.dumps(settings, sort_keys=True, default=str).encode())
        h.update(self.has_label.tobytes())
        h.update(np.asarray(self.source_index, np.int64).tobytes())
        return h.hexdigest()[:16]

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose augmentations items get (call before each epoch)."""
        self.epoch = int(epoch)

    def augment_params(self, index: int, shape: tuple[int, int]) -> AugmentParams | None:
        """The transform item `index` gets in the current epoch (None without augmentation)."""
        if self.augment is None:
            return None
        rng = np.random.default_rng([self.seed, int(index), self.epoch])
        return self.augment.draw(rng, shape)

    def _um(self, i: int, image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """UM (uint8) and superpixel labels (or None) of item `i`."""
        if self.um_source == "disk":
            um = _check_uint8(self._ums.get(i), f"ums[{i}]")
            sp = None if self._superpixels is None else self._superpixels.get(i)
            for name, a in (("ums", um), ("superpixels", sp)):
                if a is not None and a.shape != image.shape:
                    raise ValueError(f"{name}[{i}] has shape {a.shape}, its image {image.shape}")
            return um, sp
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        um, sp = self.um_config.compute(image, threads=self.threads)
        sp = sp.astype(np.uint16 if sp.max() <= np.iinfo(np.uint16).max else np.int32)
        if self.cache_size:
            self._cache[i] = (um, sp)
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return um, sp

    def __getitem__(self, index: int) -> dict:
        i = int(index)
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        i %= len(self)
        image = _check_uint8(self._images.get(i), f"images[{i}]")
        labelled = bool(self.has_label[i])
        if labelled:
            seg = self._labels.get(i)
            if seg.shape != image.shape:
                raise ValueError(f"labels[{i}] has shape {seg.shape}, its image {image.shape}")
            if seg.dtype.kind not in "iu" or (seg.size and (seg.min() < 0 or seg.max() > 255)):
                raise ValueError(f"labels[{i}] must hold class numbers 0..2, got {seg.dtype}")
            seg = np.minimum(seg, 2)
        else:
            seg = np.zeros(image.shape, np.uint8)
        um, sp = self._um(i, image)
        um = (um // self.tr) * self.tr
        ct = image
        params = self.augment_params(i, image.shape)
        if params is not None:
            ct = apply_geometry(image, params, linear=True)
            seg = apply_geometry(seg, params, linear=False)
            um = apply_geometry(um, params, linear=False)
            sp = None if sp is None else apply_geometry(sp, params, linear=False)
        edges = superpixel_edges(um if sp is None else sp)
        return {
            "um": torch.from_numpy(um.astype(np.float32) / 127.5 - 1.0)[None],
            "edges": torch.from_numpy(edges.astype(np.float32))[None],
            "ct": torch.from_numpy(np.asarray(ct, np.float32) / 127.5 - 1.0)[None],
            "seg": torch.from_numpy(seg.astype(np.int64)),
            "has_label": torch.tensor(labelled),
            "index": torch.tensor(i, dtype=torch.int64),
        }

    # ------------------------------------------------------------------------- constructors

    @classmethod
    def from_cohort(cls, cohort, subset: str = "labelled", **kwargs) -> "MontageDataset":
        """Items of a cohort (``.images``, ``.labels``, ``.labelled``), e.g. the phantom's.

        Parameters
        ----------
        cohort : object with ``images`` (N, H, W) uint8, ``labels`` (N, H, W) and
            ``labelled`` (N,) bool
        subset : {"labelled", "unlabelled", "all"}
            ``"labelled"``: the cases marked labelled, with labels; ``"unlabelled"``: the
            other cases, without labels (disjoint from "labelled"); ``"all"``: every case,
            labels used where ``labelled`` is true.
        **kwargs
            Passed to the constructor (um_source, um_config, tr, augment, seed, ...).
        """
        mask = np.asarray(cohort.labelled)
        images = np.asarray(cohort.images)
        if mask.dtype != bool or mask.shape != images.shape[:1]:
            raise ValueError(f"cohort.labelled must be a bool array of shape {images.shape[:1]}, "
                             f"got {mask.dtype} {mask.shape}")
        if subset == "labelled":
            idx, labelled = np.flatnonzero(mask), True
        elif subset == "unlabelled":
            idx, labelled = np.flatnonzero(~mask), False
        elif subset == "all":
            idx, labelled = np.arange(len(mask)), None
        else:
            raise ValueError(f"subset must be 'labelled', 'unlabelled' or 'all', got {subset!r}")
        if idx.size == 0:
            raise ValueError(f"the cohort has no {subset} case")
        labels = None if labelled is False else np.asarray(cohort.labels)[idx]
        if labelled is None:
            kwargs.setdefault("has_label", mask.copy())
        for key in ("ums", "superpixels"):
            if kwargs.get(key) is not None and not isinstance(kwargs[key], (list, tuple)):
                kwargs[key] = np.asarray(kwargs[key])[idx]
        ds = cls(images[idx], labels, **kwargs)
        ds.source_index = idx.astype(np.int64)
        return ds

    @classmethod
    def from_folder(cls, folder, labelled: bool = True, *, um_source: str = "auto",
                    **kwargs) -> "MontageDataset":
        """Montages from a folder written by ``umsynth prepare``, or a folder of PNG/TIFF montages.

        Parameters
        ----------
        folder : path-like
            Either ``umsynth prepare``'s OUT_DIR (finished cases: those with a
            ``cases/<case>.json`` record), or a folder of montages ``<stem>.png`` with
            optional label maps ``<stem>_labels.png``.
        labelled : bool
            True: the labelled cases, with their labels. False: the other cases, without
            labels; the two sets are disjoint. A case is labelled when it has a label map
            and, if ``folder/labelled.txt`` exists (one case name per line), is listed there.
        um_source : {"auto", "disk", "on_the_fly"}
            ``"auto"``: the UMs on disk (``ums/``, with ``superpixels/``) when every chosen
            case has them and, if `um_config` is given, the case records say they were
            made with it; else computed on the fly.
        **kwargs
            Passed to the constructor.
        """
        root = Path(folder)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: no such folder")
        if (root / RECORD_DIR).is_dir():
            names = sorted(p.stem for p in (root / RECORD_DIR).glob("*.json"))
            files = {n: {k: root / d / f"{n}.png" for k, d in OUTPUT_DIRS.items()} for n in names}
        else:
            files = {stem: {"image": img, "labels": lab} for stem, img, lab in find_montages(root)}
            names = sorted(files)
        if not names:
            raise ValueError(f"{root}: no montages found (expected umsynth prepare's output or "
                             "<stem>.png files)")
        with_labels = [n for n in names if files[n].get("labels") is not None
                       and Path(files[n]["labels"]).is_file()]
        listed = root / LABELLED_LIST
        if listed.is_file():
            wanted = [s.strip() for s in listed.read_text(encoding="utf-8").splitlines() if s.strip()]
            missing = sorted(set(wanted) - set(with_labels))
            if missing:
                raise ValueError(f"{listed}: cases without a label map: {', '.join(missing[:5])}")
            with_labels = [n for n in with_labels if n in set(wanted)]
        chosen = with_labels if labelled else [n for n in names if n not in set(with_labels)]
        if not chosen:
            hint = "" if labelled or listed.is_file() else \
                f"; every case has a label map: list the labelled ones in {listed}"
            raise ValueError(f"{root}: no {'labelled' if labelled else 'unlabelled'} cases{hint}")
        on_disk = all(Path(files[n].get(k, "")).is_file() for n in chosen for k in ("um", "superpixels"))
        if um_source == "auto":
            # the UMs on disk only when they were made with the settings asked for
            wanted = kwargs.get("um_config")
            same = wanted is None or all(_recorded_um(root, n) == asdict(wanted) for n in chosen)
            um_source = "disk" if on_disk and same else "on_the_fly"
        if um_source == "disk":
            if not on_disk:
                raise ValueError(f"{root}: um_source='disk' but some cases have no ums/ or "
                                 "superpixels/ file")
            kwargs.setdefault("ums", [files[n]["um"] for n in chosen])
            kwargs.setdefault("superpixels", [files[n]["superpixels"] for n in chosen])
        ds = cls([files[n]["image"] for n in chosen],
                 [files[n]["labels"] for n in chosen] if labelled else None,
                 um_source=um_source, **kwargs)
        ds.names = chosen
        ds.source_index = np.array([names.index(n) for n in chosen], dtype=np.int64)
        return ds
