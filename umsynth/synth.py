"""Synthesis: annotated CT montages from a trained checkpoint and unsupervised masks.

:func:`synthesize` runs the generator on UMs made from grey montages (PNG/TIFF/NIfTI files
or arrays), on UMs given directly, or on a dataset's items (for example the phantom
cohort's), and writes for each ``<name>_ct.png`` (uint8 CT), ``<name>_seg.png`` (uint8
classes 0 background, 1 lung, 2 lesion) and ``<name>_um.png`` (the UM it was conditioned
on); when the input was NIfTI, also ``<name>_ct.nii.gz`` (HU, the window mapped back) and
``<name>_seg.nii.gz``.

Variety options (:class:`Variety`); each variant of an input draws its own random numbers
from ``numpy.random.default_rng([seed, input, variant])``, so runs are reproducible:

- ``requantize``: re-quantize the UM with another step (``floor(um / step) * step``, on the
  0..255 scale) instead of the training step ``data.tr``. Coarser steps merge neighbouring
  superpixels' grey levels: coarser guidance, freer texture.
- ``jitter``: add to every superpixel one uniform random offset in ``[-jitter, jitter]``
  grey levels (before the quantization), changing contrasts between regions while keeping
  their shapes. Offsets below about ``step / 2`` are mostly removed by the quantization.
- ``reseed``: new SLIC seeds. The seed grid is shifted by a random nonzero offset below the
  grid spacing ``sqrt(H * W / n_segments)`` (the image is reflect-padded at the top and left,
  SLIC runs, the padding is cut off), so superpixel boundaries, and hence the UM, change
  while anatomy stays. Needs the grey image (montage files, arrays, or a dataset's ``"ct"``).
- ``variants``: how many synthetic images to draw per input.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from umsynth.data.io import find_montages, read_montage, read_nifti, write_nifti
from umsynth.data.window import HU_WINDOW, window_hu
from umsynth.files import atomic_write, is_nifti, nifti_stem, write_png
from umsynth.masks import UMConfig
from umsynth.runtime import resolve_device
from umsynth.train.config import config_from_dict

__all__ = ["Variety", "load_generator", "synthesize", "export_onnx"]


@dataclass(frozen=True)
class Variety:
    """Options that make several different synthetic images from one input (see the module doc)."""

    requantize: int | None = None
    jitter: float = 0.0
    reseed: bool = False
    variants: int = 1
    seed: int = 0

    def __post_init__(self):
        if self.requantize is not None and (isinstance(self.requantize, bool) or
                                            not isinstance(self.requantize, (int, np.integer))
                                            or not 1 <= self.requantize <= 255):
            raise ValueError(f"requantize must be None or an integer in 1..255, got {self.requantize!r}")
        if not (np.isfinite(self.jitter) and 0 <= self.jitter <= 255):
            raise ValueError(f"jitter must be in [0, 255] grey levels, got {self.jitter!r}")
        if isinstance(self.variants, bool) or not isinstance(self.variants, (int, np.integer)) or self.variants < 1:
            raise ValueError(f"variants must be an integer >= 1, got {self.variants!r}")

    @property
    def changes_input(self) -> bool:
        return self.requantize is not None or self.jitter > 0 or self.reseed


def load_generator(checkpoint, device="cpu"):
    """(generator in eval mode, Config) from a training checkpoint (weights-only load)."""
    # torch-based modules: imported when a model is loaded, so importing this module stays light
    from umsynth.train.checkpoint import load_checkpoint
    from umsynth.train.loop import build_generator

    dev = resolve_device(device)
    st = load_checkpoint(checkpoint, map_location="cpu")
    cfg = config_from_dict(st["config"])
    gen = build_generator(cfg)
    gen.load_state_dict(st.get("ema") or st["generator"])  # the EMA generator (train.ema) when there is one
    return gen.to(dev).eval(), cfg


# ----------------------------------------------------------------------------- inputs


@dataclass
class _Input:
    name: str
    grey: np.ndarray | None = None      # uint8 montage
    um: np.ndarray | None = None        # uint8 UM (0..255 scale)
    superpixels: np.ndarray | None = None
    edges: np.ndarray | None = None     # float32 0/1, from a dataset item
    seg: np.ndarray | None = None       # int64 manual labels (mask conditioning)
    spacing: tuple | None = None        # set when the input was NIfTI


def _stem(p: Path) -> str:
    return nifti_stem(p) or p.stem


def _read_path(p: Path, as_um: bool) -> _Input:
    if is_nifti(p):
        vol = read_nifti(p)
        if vol.array.shape[0] != 1:
            raise ValueError(f"{p}: a NIfTI input must be one 2D montage, got a volume of shape "
                             f"{vol.array.shape}; build montages with `umsynth prepare`")
        img = vol.array[0]
        grey = img.astype(np.uint8) if as_um else window_hu(img)
        if as_um and (img.min() < 0 or img.max() > 255):
            raise ValueError(f"{p}: a UM must hold values 0..255")
        return _Input(_stem(p), um=grey, spacing=vol.spacing) if as_um else _Input(_stem(p), grey=grey,
                                                                                    spacing=vol.spacing)
    grey, _ = read_montage(p)
    return _Input(_stem(p), um=grey) if as_um else _Input(_stem(p), grey=grey)


def _gather(inputs, as_um: bool, names, on_error=None) -> list[_Input]:
    """Turn paths, arrays or a dataset into a list of _Input (unreadable files to `on_error`, if given)."""
    import torch

    items_list = isinstance(inputs, (list, tuple)) and len(inputs) > 0 and all(isinstance(x, dict) for x in inputs)
    if items_list or (hasattr(inputs, "__getitem__") and hasattr(inputs, "__len__") and not isinstance(
            inputs, (np.ndarray, list, tuple, str, os.PathLike))):
        out = []
        ds_names = getattr(inputs, "names", None)
        for i in range(len(inputs)):
            item = inputs[i]
            if not isinstance(item, dict) or "um" not in item:
                raise TypeError("inputs: a dataset must yield dicts with 'um', 'edges' and 'ct' tensors")
            to8 = lambda t: np.rint((t.float().clamp(-1, 1).numpy()[0] + 1) * 127.5).astype(np.uint8)  # noqa: E731
            name = ds_names[i] if ds_names is not None else f"{i:05d}"
            out.append(_Input(name, grey=to8(item["ct"]), um=to8(item["um"]),
                              edges=item["edges"].numpy()[0].astype(np.float32),
                              seg=item["seg"].numpy() if bool(item.get("has_label", torch.tensor(False))) else None))
        return _named(out, names)
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    if isinstance(inputs, np.ndarray):
        inputs = [inputs] if inputs.ndim == 2 else list(inputs)
    failed = []

    def read(q: Path) -> list[_Input]:
        try:
            return [_read_path(q, as_um)]
        except (OSError, ValueError, TypeError, MemoryError) as exc:
            if on_error is None:
                raise
            failed.append(q)
            on_error(str(q), str(exc))  # this file only: the others go on
            return []

    out = []
    for k, x in enumerate(inputs):
        if isinstance(x, (str, os.PathLike)):
            p = Path(x)
            if p.is_dir():
                for q in [q for _, q, _ in find_montages(p)] + [q for q in sorted(p.iterdir()) if is_nifti(q)]:
                    out.extend(read(q))
            else:
                out.extend(read(p))
        else:
            a = np.asarray(x)
            if a.ndim != 2 or a.dtype != np.uint8:
                raise ValueError(f"inputs[{k}]: arrays must be 2D uint8 montages, got {a.dtype} {a.shape}")
            out.append(_Input(f"{k:05d}", um=a) if as_um else _Input(f"{k:05d}", grey=a))
    if not out:
        raise ValueError(f"inputs: none of the {len(failed)} images could be read" if failed else
                         "inputs: no images given")
    return _named(out, names)


def _named(items: list[_Input], names) -> list[_Input]:
    if names is not None:
        names = list(names)
        if len(names) != len(items):
            raise ValueError(f"names has {len(names)} entries for {len(items)} inputs")
        for it, n in zip(items, names):
            it.name = str(n)
    seen: dict[str, int] = {}
    for it in items:  # two inputs called "a" must not overwrite each other
        k = seen.get(it.name, 0)
        seen[it.name] = k + 1
        if k:
            it.name = f"{it.name}_{k + 1}"
    return items


# ----------------------------------------------------------------------------- conditioning


def _regions(um: np.ndarray) -> np.ndarray:
    """Superpixel stand-ins for a bare UM: 4-connected regions of equal value."""
    from skimage.measure import label

    return label(um.astype(np.int32) + 1, background=0, connectivity=1)


def _reseeded(grey: np.ndarray, um_config, rng) -> tuple[np.ndarray, np.ndarray]:
    h, w = grey.shape
    spacing = max(1, int(np.sqrt(h * w / um_config.n_segments)))
    dy, dx = (int(v) for v in rng.integers(0, spacing, 2))
    if dy == dx == 0:  # an unshifted grid would give the original UM back
        dy = dx = spacing // 2
    padded = np.pad(grey, ((dy, 0), (dx, 0)), mode="reflect")
    um, sp = um_config.compute(padded)
    return np.ascontiguousarray(um[dy:, dx:]), np.ascontiguousarray(sp[dy:, dx:])


def _condition(it: _Input, variety: Variety, variant: int, index: int, tr: int, um_config):
    """(um uint8, edges float32) of one variant of one input."""
    from umsynth.data.datasets import superpixel_edges  # torch-based, like the modules below

    rng = np.random.default_rng([variety.seed, index, variant])
    um, sp, edges = it.um, it.superpixels, it.edges
    if variety.reseed:
        if it.grey is None:
            raise ValueError(f"{it.name}: reseed needs the grey image, but only a UM was given")
        um, sp = _reseeded(it.grey, um_config, rng)
        edges = None
    elif um is None:
        um, sp = um_config.compute(it.grey)
    if variety.jitter > 0:
        if sp is None:
            sp = _regions(um)
        offsets = rng.uniform(-variety.jitter, variety.jitter, int(sp.max()) + 1)
        um = np.clip(np.rint(um + offsets[sp]), 0, 255).astype(np.uint8)
    step = variety.requantize or tr
    um = (um // step) * step
    if edges is None:
        edges = superpixel_edges(sp if sp is not None else um).astype(np.float32)
    return um.astype(np.uint8), edges


# ----------------------------------------------------------------------------- synthesis


def _write(out: Path, stem: str, um, ct01, seg, spacing, window) -> dict:
    paths = {"um": out / f"{stem}_um.png", "ct": out / f"{stem}_ct.png", "seg": out / f"{stem}_seg.png"}
    write_png(paths["um"], um)
    write_png(paths["ct"], np.rint(ct01 * 255).astype(np.uint8))
    write_png(paths["seg"], seg.astype(np.uint8))
    if spacing is not None:
        lo, hi = window
        paths["ct_nifti"] = out / f"{stem}_ct.nii.gz"
        paths["seg_nifti"] = out / f"{stem}_seg.nii.gz"
        write_nifti(paths["ct_nifti"], (lo + ct01 * (hi - lo)).astype(np.float32)[None], spacing)
        write_nifti(paths["seg_nifti"], seg.astype(np.uint8)[None], spacing)
    return {k: str(v) for k, v in paths.items()}


def synthesize(checkpoint, inputs, out_dir, *, variety: Variety = Variety(), batch_size: int = 4,
               device: str = "auto", amp: str = "none", um_config=None, inputs_are: str = "images",
               names=None, progress: bool = True, on_error=None) -> list[dict]:
    """Write synthetic CT montages and their segmentations.

    Parameters
    ----------
    checkpoint : path-like
        A training checkpoint (``checkpoints/last.pt`` of :func:`umsynth.train.train`).
    inputs : paths, folder, uint8 arrays, or a dataset (or list) of items
        Grey montages (PNG/TIFF, 2D NIfTI in HU) whose UMs are computed with `um_config`;
        UMs when ``inputs_are="ums"``; or a dataset yielding :class:`MontageDataset` items,
        whose UMs and edge maps are used as they are (the phantom cohort, for example).
    out_dir : path-like
        Created if missing. Files are written to temporary names and renamed.
    variety : Variety
        Re-quantization, superpixel jitter, new SLIC seeds, variants per input.
    batch_size : int
        Images per generator call.
    device : str
        "auto", "cpu", "cuda" or "cuda:N".
    amp : {"none", "bf16", "fp16"}
        Autocast on CUDA (ignored on the CPU).
    um_config : umsynth.masks.UMConfig, optional
        How UMs are made from grey montages (default: SemiCS2's).
    inputs_are : {"images", "ums"}
    names : list of str, optional
        Output stems (default: file stems, dataset names or 00000, 00001, ...).
    progress : bool
        tqdm bar on stderr.
    on_error : callable(path, message), optional
        Called for each input file that cannot be read, which is then left out (the others
        go on). Without it, the first such file raises.

    Returns
    -------
    list of dict
        Per written image: its name and the paths written (``"ct"``, ``"seg"``, ``"um"``,
        and ``"ct_nifti"``/``"seg_nifti"`` for NIfTI inputs).

    Notes
    -----
    A checkpoint trained with ``model.conditioning = "mask"`` is conditioned on manual
    segmentations: its inputs must be a dataset of labelled items, and the variety
    options, which act on UMs, do not apply.
    """
    import sys

    import torch
    from umsynth.progress import progress as progress_bar

    from umsynth.train.conditioning import conditioning_input

    if inputs_are not in ("images", "ums"):
        raise ValueError(f"inputs_are must be 'images' or 'ums', got {inputs_are!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if amp not in ("none", "bf16", "fp16"):
        raise ValueError(f"amp must be 'none', 'bf16' or 'fp16', got {amp!r}")
    um_config = um_config or UMConfig()
    dev = resolve_device(device)
    gen, cfg = load_generator(checkpoint, dev)
    m = cfg.model
    items = _gather(inputs, inputs_are == "ums", names, on_error)
    if m.conditioning == "mask":
        if variety.changes_input:
            raise ValueError("variety options act on UMs; this checkpoint is conditioned on masks")
        missing = [it.name for it in items if it.seg is None]
        if missing:
            raise ValueError(f"a mask-conditioned checkpoint needs labelled inputs; no labels for {missing[:3]}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    jobs = [(i, v) for i in range(len(items)) for v in range(variety.variants)]
    results: list[dict] = []
    bar = progress_bar(total=len(jobs), desc="synthesize", unit="image", disable=not progress, file=sys.stderr)
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start:start + batch_size]
        conds = []
        for i, v in chunk:
            it = items[i]
            if m.conditioning == "um":
                um, edges = _condition(it, variety, v, i, cfg.data.tr, um_config)
            else:
                um, edges = it.um, it.edges
            conds.append((um, edges))
        shapes = {c[0].shape for c in conds}
        if len(shapes) > 1:  # group by shape: one generator call per shape
            groups = [[k for k, c in enumerate(conds) if c[0].shape == s] for s in shapes]
        else:
            groups = [list(range(len(conds)))]
        for group in groups:
            ums = np.stack([conds[k][0] for k in group]).astype(np.float32)
            batch = {"um": torch.from_numpy(ums / 127.5 - 1)[:, None],
                     "edges": torch.from_numpy(np.stack([conds[k][1] for k in group]))[:, None]}
            if m.conditioning == "mask":
                batch["seg"] = torch.from_numpy(np.stack([items[chunk[k][0]].seg for k in group]).astype(np.int64))
            x = conditioning_input(batch, m.conditioning, m.n_classes, m.use_edges).to(dev)
            with torch.no_grad(), torch.autocast(dev.type, dtype=cast or torch.float32,
                                                 enabled=cast is not None and dev.type == "cuda"):
                ct, logits = gen(x)
            ct01 = ((ct.float()[:, 0].clamp(-1, 1) + 1) / 2).cpu().numpy()
            seg = logits.argmax(1).to(torch.uint8).cpu().numpy()
            for j, k in enumerate(group):
                i, v = chunk[k]
                it = items[i]
                stem = it.name if variety.variants == 1 else f"{it.name}_v{v}"
                paths = _write(out, stem, conds[k][0], ct01[j], seg[j], it.spacing, HU_WINDOW)
                results.append({"name": stem, **paths})
            bar.update(len(group))
    bar.close()
    return results


# ----------------------------------------------------------------------------- ONNX


def export_onnx(checkpoint, path, *, height: int = 256, width: int = 256, opset: int = 17,
                check: bool = True, atol: float = 1e-4) -> dict:
    """Export the generator of a checkpoint to ONNX (inputs ``cond``; outputs ``ct``, ``seg_logits``).

    The batch, height and width axes are dynamic (H and W must stay divisible by
    ``2 ** (n_downsample + n_local_enhancers)``). With ``check=True`` the file is run with
    onnxruntime on the CPU on a random input of (2, C, `height`, `width`) and compared with
    PyTorch; a difference above `atol` raises ValueError.

    Returns
    -------
    dict
        ``path``, ``input_shape`` and, when checked, ``max_abs_diff`` (over both outputs).
    """
    import torch

    gen, cfg = load_generator(checkpoint, "cpu")
    if height % gen.factor or width % gen.factor:
        raise ValueError(f"height and width must be divisible by {gen.factor}, got {height}x{width}")
    m = cfg.model
    from umsynth.train.conditioning import conditioning_channels  # imports torch

    c = conditioning_channels(m.conditioning, m.n_classes, m.use_edges)
    x = torch.rand(2, c, height, width, generator=torch.Generator().manual_seed(0)) * 2 - 1
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp):
        import warnings

        with warnings.catch_warnings():  # the TorchScript exporter's notes on slices and instance norm
            warnings.simplefilter("ignore")
            torch.onnx.export(gen, (x,), tmp, input_names=["cond"], output_names=["ct", "seg_logits"],
                              opset_version=opset, dynamo=False, external_data=False,
                              dynamic_axes={k: {0: "batch", 2: "height", 3: "width"}
                                            for k in ("cond", "ct", "seg_logits")})

    atomic_write(dest, write, suffix=".onnx")
    info = {"path": str(dest), "input_shape": [2, c, height, width]}
    if check:
        import onnxruntime as ort

        sess = ort.InferenceSession(str(dest), providers=["CPUExecutionProvider"])
        got = sess.run(None, {"cond": x.numpy()})
        with torch.no_grad():
            ref = [t.numpy() for t in gen(x)]
        diff = max(float(np.abs(a - b).max()) for a, b in zip(got, ref))
        info["max_abs_diff"] = diff
        if not diff <= atol:
            raise ValueError(f"ONNX output differs from PyTorch by {diff:.3g} (> {atol:g})")
    return info
