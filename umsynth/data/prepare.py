"""Batch preparation: CT volumes and their masks -> montages, label montages and UMs.

Pairing rule (explicit; nothing is guessed from substrings of paths)
---------------------------------------------------------------------
In ``VOLUMES_DIR`` (one level deep):

* every ``<case>.nii.gz`` or ``<case>.nii`` whose name does not end in ``_mask`` is a CT
  volume; every sub-folder except ``masks/`` is a DICOM series named after the folder;
* the mask of ``<case>`` is ``<case>_mask.nii.gz`` (or ``.nii``) beside it, or
  ``masks/<case>.nii.gz`` (or ``.nii``). Exactly one must exist. Masks are NIfTI for both
  kinds of CT, with classes 0 background/body, 1 lung, 2 lesion (values above 2 count as
  lesion);
* other files are ignored (the summary counts them).

The original SemiCS2 script found the mask with ``path.replace('ct', 'lung')``, which also
rewrote any "ct" elsewhere in the path; umsynth does not.

Output layout (``OUT_DIR``)
---------------------------
``images/<case>.png`` (windowed CT montage, uint8), ``labels/<case>.png`` (classes 0..2),
``ums/<case>.png`` (the unsupervised mask, uint8), ``superpixels/<case>.png`` (the SLIC
labels, uint16, for the edge maps) and ``cases/<case>.json`` (sources, chosen slices,
settings). Every file is written to a temporary name and renamed; the JSON record is
written last and marks the case as finished, so a rerun skips it unless the settings
changed. A failing case leaves none of its files behind.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from umsynth.data.io import read_nifti, read_volume
from umsynth.data.montage import build_montage
from umsynth.data.window import HU_WINDOW
from umsynth.files import NIFTI_SUFFIXES, atomic_write_text, nifti_stem, write_png
from umsynth.masks import UMConfig

__all__ = ["PrepareConfig", "Case", "Summary", "find_cases", "prepare_case",
           "prepare", "is_done", "OUTPUT_DIRS", "MASKS_DIR"]

MASKS_DIR = "masks"
MASK_SUFFIX = "_mask"
#: output kind -> sub-folder of OUT_DIR
OUTPUT_DIRS = {"image": "images", "labels": "labels", "um": "ums", "superpixels": "superpixels"}
RECORD_DIR = "cases"


@dataclass(frozen=True)
class PrepareConfig:
    """Settings of a preparation run (all of them are recorded per case)."""

    window: tuple[float, float] = HU_WINDOW
    trim: float = 0.1
    um: UMConfig = field(default_factory=UMConfig)

    def __post_init__(self) -> None:
        try:
            low, high = (float(v) for v in self.window)
        except (TypeError, ValueError):
            raise ValueError(f"window must be two numbers (LOW, HIGH), got {self.window!r}") from None
        if not low < high:
            raise ValueError(f"window must have LOW < HIGH, got {self.window!r}")
        if not 0 <= self.trim < 0.5:
            raise ValueError(f"trim must be in [0, 0.5), got {self.trim!r}")
        if not isinstance(self.um, UMConfig):
            raise TypeError(f"um must be a UMConfig, got {type(self.um).__name__}")

    def record(self) -> dict:
        """JSON-ready form, compared on resume."""
        d = asdict(self)
        d["window"] = [float(v) for v in self.window]
        return d


@dataclass(frozen=True)
class Case:
    """One CT volume (NIfTI file or DICOM folder) and its mask; `problem` says why it cannot run."""

    name: str
    ct: Path
    mask: Path | None
    problem: str | None = None


@dataclass
class Summary:
    """What a run did: case names written, skipped (already finished) and failed (with the reason)."""

    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)

    def line(self) -> str:
        n = len(self.written) + len(self.skipped) + len(self.failed)
        out = (f"{n} case{'s' if n != 1 else ''}: {len(self.written)} written, "
               f"{len(self.skipped)} skipped (already done), {len(self.failed)} failed")
        if self.ignored:
            out += f"; {len(self.ignored)} other file(s) ignored"
        return out


def _mask_candidates(root: Path, name: str) -> list[Path]:
    return [root / f"{name}{MASK_SUFFIX}{s}" for s in NIFTI_SUFFIXES] + \
           [root / MASKS_DIR / f"{name}{s}" for s in NIFTI_SUFFIXES]


def find_cases(volumes_dir) -> tuple[list[Case], list[Path]]:
    """Pair each CT in `volumes_dir` with its mask by the module's pairing rule.

    Returns
    -------
    cases : list of Case, sorted by name
        A case whose mask is missing or ambiguous, or whose name is taken twice, carries
        the reason in ``problem``.
    ignored : list of Path
        Files that are neither CT nor mask.

    Raises
    ------
    FileNotFoundError
        `volumes_dir` is not a folder.
    ValueError
        It holds no CT volume at all (an empty folder, or masks only).
    """
    root = Path(volumes_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    found: dict[str, list[Path]] = {}
    ignored: list[Path] = []
    for p in sorted(root.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_dir():
            if p.name != MASKS_DIR:
                found.setdefault(p.name, []).append(p)
            continue
        stem = nifti_stem(p)
        if stem is None:
            ignored.append(p)
        elif not stem.endswith(MASK_SUFFIX):
            found.setdefault(stem, []).append(p)
    if not found:
        raise ValueError(f"{root}: no CT volumes found (expected <case>.nii.gz files or DICOM "
                         "series folders; see `umsynth prepare --help`)")
    cases = []
    for name, paths in sorted(found.items()):
        masks = [m for m in _mask_candidates(root, name) if m.is_file()]
        problem = None
        if len(paths) > 1:
            problem = f"case name {name!r} is used by {len(paths)} inputs: " + \
                ", ".join(p.name for p in paths)
        elif not masks:
            problem = "no mask; looked for " + ", ".join(
                str(m.relative_to(root)) for m in _mask_candidates(root, name))
        elif len(masks) > 1:
            problem = "several masks: " + ", ".join(str(m) for m in masks)
        cases.append(Case(name, paths[0], masks[0] if len(masks) == 1 else None, problem))
    return cases, ignored


def _outputs(out: Path, name: str) -> dict[str, Path]:
    paths = {k: out / d / f"{name}.png" for k, d in OUTPUT_DIRS.items()}
    paths["record"] = out / RECORD_DIR / f"{name}.json"
    return paths


def is_done(out_dir, name: str, config: PrepareConfig) -> bool:
    """True when case `name` was finished in `out_dir` with the same settings."""
    paths = _outputs(Path(out_dir), name)
    if not all(p.is_file() for p in paths.values()):
        return False
    try:
        record = json.loads(paths["record"].read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return record.get("config") == config.record()


def _make(case: Case, config: PrepareConfig, threads) -> tuple[dict, dict]:
    """Read, check and compute everything of one case in memory (writes nothing)."""
    if case.problem:
        raise ValueError(f"{case.ct}: {case.problem}")
    ct = read_volume(case.ct)
    mask = read_nifti(case.mask, dtype=None)
    if mask.array.shape != ct.array.shape:
        raise ValueError(f"{case.mask}: mask shape {mask.array.shape} differs from the CT's "
                         f"{ct.array.shape} ({case.ct})")
    if not np.allclose(mask.spacing, ct.spacing, rtol=0.01, atol=1e-3):
        raise ValueError(f"{case.mask}: voxel size {mask.spacing} mm differs from the CT's "
                         f"{ct.spacing} mm ({case.ct}); is the mask's geometry right?")
    try:
        image, labels, idx = build_montage(ct.array, mask.array, window=config.window,
                                           trim=config.trim)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{case.mask}: {exc}") from None
    um, sp = config.um.compute(image, threads=threads)
    if sp.max() > np.iinfo(np.uint16).max:
        raise ValueError(f"{case.ct}: {sp.max()} superpixels do not fit a 16-bit label PNG")
    arrays = {"image": image, "labels": labels, "um": um, "superpixels": sp.astype(np.uint16)}
    record = {"case": case.name, "ct": str(case.ct), "mask": str(case.mask),
              "shape_zyx": list(ct.array.shape), "spacing_zyx_mm": list(ct.spacing),
              "slices": [int(i) for i in idx], "config": config.record()}
    return arrays, record


def prepare_case(case: Case, out_dir, config: PrepareConfig = PrepareConfig(), *,
                 threads=None) -> None:
    """Make and write one case's montage, label montage, UM, superpixels and record.

    Raises the reader's or builder's error (naming the file and the reason) before
    anything is written. If writing fails part-way, the files of this case already
    written are removed, so `out_dir` holds either all of a case or none of it.
    """
    arrays, record = _make(case, config, threads)
    out = Path(out_dir)
    paths = _outputs(out, case.name)
    for p in paths.values():
        p.parent.mkdir(parents=True, exist_ok=True)
    paths["record"].unlink(missing_ok=True)  # unfinished from here until the record is back
    try:
        for key, arr in arrays.items():
            write_png(paths[key], arr)
        text = json.dumps(record, indent=1)
        atomic_write_text(paths["record"], text)
    except BaseException:
        for p in paths.values():
            p.unlink(missing_ok=True)
        raise


def prepare(volumes_dir, out_dir, config: PrepareConfig = PrepareConfig(), *, overwrite=False,
            threads=None, progress=True, on_error: Callable[[str, str], None] | None = None
            ) -> Summary:
    """Prepare every case of `volumes_dir` into `out_dir` (see the module docstring).

    Parameters
    ----------
    volumes_dir, out_dir : path-like
    config : PrepareConfig
    overwrite : bool
        Redo finished cases too (default: skip cases finished with the same settings).
    threads : int, optional
        Thread cap for SLIC.
    progress : bool
        Show a tqdm progress bar on stderr.
    on_error : callable(case_name, message), optional
        Called for each failed case as it fails (the batch goes on).

    Returns
    -------
    Summary

    Raises
    ------
    FileNotFoundError, ValueError
        `volumes_dir` is missing or holds no CT volume.
    """
    from umsynth.progress import progress as progress_bar

    cases, ignored = find_cases(volumes_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = Summary(ignored=ignored)
    bar = progress_bar(cases, desc="prepare", unit="case", disable=not progress)
    for case in bar:
        if not overwrite and not case.problem and is_done(out, case.name, config):
            summary.skipped.append(case.name)
            continue
        try:
            prepare_case(case, out, config, threads=threads)
        except (OSError, ValueError, TypeError) as exc:
            summary.failed.append((case.name, str(exc)))
            if on_error is not None:
                on_error(case.name, str(exc))
            continue
        summary.written.append(case.name)
    return summary
