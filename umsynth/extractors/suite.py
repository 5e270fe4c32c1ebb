"""Extractor suites: K feature networks x S scales in one safetensors file.

File format (``umsynth-extractor-suite``, version 1): a safetensors file whose tensors are
the networks' weights, named ``<member>.<parameter>``, and whose header metadata holds one
key, ``umsynth_suite``, a JSON object::

    {"format": "umsynth-extractor-suite", "version": 1,
     "scales": [128, 256, 512, 1024],
     "preprocessing": {...},              # how images reach the networks (see PREPROCESSING)
     "members": [{"name": "ct-rotation", "task": "rotation", "channels": [...], "stem": 4,
                  "classes": 4, "head": "classify", "values": [...], "dims": 128}, ...],
     "training": {...}}                   # data summary, config, per-task loss and accuracy

A radiomics member (:mod:`umsynth.radiomics.member`) has no weights: its entry is
``{"name": "radiomics", "task": "radiomics", "kind": "radiomics", "settings": {...}, "dims": 77}``
and it is rebuilt from the settings on load. A file holding one is version 2 (older
umsynth refuses it cleanly); a file without one stays version 1.

safetensors holds only tensors and strings, so loading runs no code from the file.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from umsynth.extractors.classic import inception_v3
from umsynth.extractors.nets import CTNet
from umsynth.files import atomic_write, check_name
from umsynth.radiomics.member import KIND as RADIOMICS, MEMBER_NAME as RADIOMICS_NAME, RadiomicsNet
from umsynth.weights import check_limits, check_state

__all__ = ["Member", "Suite", "save_suite", "load_suite", "inception_member", "radiomics_member", "check_scales",
           "array_digest", "DEFAULT_SCALES", "PREPROCESSING"]

FORMAT_NAME = "umsynth-extractor-suite"
FORMAT_VERSION = 2  # 2: radiomics members (files without one are still written as 1)
DEFAULT_SCALES = (128, 256, 512, 1024)
PREPROCESSING = {
    "grey": "colour images become grey with ITU-R BT.601 luma weights (0.299, 0.587, 0.114)",
    "range": "uint8 / 255 (uint16 / 65535) to [0, 1], then (x - 0.5) / 0.5 to [-1, 1]",
    "resize": "square, bilinear with antialiasing (torch interpolate antialias=True), once per scale",
}


@dataclass
class Member:
    """One feature network of a suite.

    Attributes
    ----------
    name : str
    task : str
        The training task (see :mod:`umsynth.extractors.tasks`), or ``external``.
    net : torch.nn.Module
        Has ``features(x)`` mapping (B, 1, s, s) in [-1, 1] to (B, dims) and attribute ``dims``.
    channels, classes, head, values
        The architecture, for saving (own CT networks only).
    """

    name: str
    task: str
    net: torch.nn.Module
    channels: tuple = ()
    classes: int = 0
    head: str = "classify"
    values: tuple = ()
    stem: int = 4

    @property
    def dims(self) -> int:
        return int(self.net.dims)

    def spec(self) -> dict:
        if isinstance(self.net, RadiomicsNet):
            return {"name": self.name, "task": self.task, "kind": RADIOMICS, "settings": self.net.settings,
                    "dims": self.dims}
        return {"name": self.name, "task": self.task, "channels": list(self.channels), "classes": self.classes,
                "head": self.head, "values": list(self.values), "dims": self.dims, "stem": self.stem}


@dataclass
class Suite:
    """K feature networks and the S scales at which each one sees the images.

    Attributes
    ----------
    members : list of Member
    scales : tuple of int
    training : dict
        Summary of the training run (data, config, per-task results).
    preprocessing : dict
    """

    members: list
    scales: tuple = DEFAULT_SCALES
    training: dict = field(default_factory=dict)
    preprocessing: dict = field(default_factory=lambda: dict(PREPROCESSING))

    def __post_init__(self) -> None:
        self.scales = check_scales(self.scales)
        names = [m.name for m in self.members]
        if not names:
            raise ValueError("a suite needs at least one member network")
        if len(set(names)) != len(names):
            raise ValueError(f"suite member names must be unique, got {names}")
        for n in names:  # they become parts of statistics file names
            check_name(n, "suite member name")

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.members]

    def digest(self) -> str:
        """SHA-256 (first 12 hex digits) of the members' names and weights: statistics are tagged with it."""
        h = hashlib.sha256()
        for m in self.members:
            h.update(m.name.encode())
            if isinstance(m.net, RadiomicsNet):  # no weights: its settings decide its features
                h.update(m.net.key().encode())
            for k, v in sorted(m.net.state_dict().items()):
                h.update(k.encode())
                h.update(v.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:12]

    def to(self, device) -> "Suite":
        for m in self.members:
            m.net.to(device).eval()
        return self

    def with_member(self, member: Member) -> "Suite":
        """A new suite with one more member (e.g. :func:`inception_member`); same scales."""
        return Suite(list(self.members) + [member], self.scales, self.training, self.preprocessing)


def check_scales(scales) -> tuple:
    """`scales` as a tuple of distinct ints >= 16 (pixel sizes); ValueError otherwise."""
    try:
        out = tuple(int(s) for s in scales)
    except (TypeError, ValueError):
        raise ValueError(f"scales must be a sequence of ints, got {scales!r}") from None
    if not out or min(out) < 16:
        raise ValueError(f"scales must be a non-empty list of sizes >= 16 pixels, got {list(out)}")
    if len(set(out)) != len(out):
        raise ValueError(f"scales must be distinct, got {list(out)}")
    return out


def save_suite(suite: Suite, path: str | os.PathLike) -> None:
    """Write a suite to one safetensors file, atomically (temp file beside it, then rename).

    Parameters
    ----------
    suite : Suite
        Only own CT networks are saved; an external member (InceptionV3) is refused, since
        its weights belong to the user's own file.
    path : str or os.PathLike
    """
    from safetensors.torch import save_file

    tensors = {}
    for m in suite.members:
        if isinstance(m.net, RadiomicsNet):
            continue
        if not isinstance(m.net, CTNet):
            raise ValueError(f"suite member {m.name!r} is external ({m.task}); only umsynth CT networks are saved")
        for k, v in m.net.state_dict().items():
            tensors[f"{m.name}.{k}"] = v.detach().cpu().contiguous()
    radiomics = any(isinstance(m.net, RadiomicsNet) for m in suite.members)
    meta = {"format": FORMAT_NAME, "version": FORMAT_VERSION if radiomics else 1, "scales": list(suite.scales),
            "preprocessing": suite.preprocessing, "members": [m.spec() for m in suite.members],
            "training": suite.training}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"umsynth_suite": json.dumps(meta)}),
                 suffix=".safetensors")


def load_suite(path: str | os.PathLike, device: str = "cpu") -> Suite:
    """Read a suite written by :func:`save_suite`; no code from the file is run.

    Parameters
    ----------
    path : str or os.PathLike
    device : str, optional
        torch device for the networks.

    Returns
    -------
    Suite
        Networks in eval mode.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If it is not a suite file, is of a newer version, or its weights do not fit.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"suite file not found: {path}")
    try:
        with safe_open(os.fspath(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types for bad headers
        raise ValueError(f"cannot read suite {path}: {type(exc).__name__}: {exc}") from None
    try:
        meta = json.loads(header["umsynth_suite"])
    except (KeyError, json.JSONDecodeError):
        raise ValueError(f"{path} is a safetensors file but not an umsynth extractor suite") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise ValueError(f"{path}: unknown format {meta.get('format') if isinstance(meta, dict) else meta!r}")
    if int(meta.get("version", 0)) > FORMAT_VERSION:
        raise ValueError(f"{path}: suite format version {meta['version']} is newer than this umsynth reads "
                         f"({FORMAT_VERSION}); upgrade umsynth")
    members = []
    specs = meta.get("members")
    if not isinstance(specs, list) or not specs:
        raise ValueError(f"{path}: the suite lists no member networks")
    for spec in specs:
        if isinstance(spec, dict) and spec.get("kind") == RADIOMICS:
            name = check_name(spec.get("name"), f"{path}: member name")
            try:
                net = RadiomicsNet(spec["settings"])
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{path}: radiomics member {name!r}: bad settings: {exc}") from None
            members.append(Member(name, spec.get("task", RADIOMICS), net))
            continue
        spec = _member_spec(spec, path)
        prefix = spec["name"] + "."
        state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        build = lambda s=spec: CTNet(s["channels"], s["classes"], s["head"], stem=s["stem"])  # noqa: E731
        check_state(build, state, f"{path}: weights of {spec['name']!r}")  # before the network is allocated
        net = build()
        net.load_state_dict(state, strict=True)
        members.append(Member(spec["name"], spec["task"], net, tuple(spec["channels"]), spec["classes"],
                              spec["head"], tuple(spec["values"]), spec["stem"]))
    try:
        suite = Suite(members, meta.get("scales"), meta.get("training", {}), meta.get("preprocessing", {}))
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return suite.to(device)


def _member_spec(spec, path) -> dict:
    """A member's spec from a suite file, checked: a safe name (it names statistics files), numbers
    within :data:`umsynth.weights.LIMITS`."""
    if not isinstance(spec, dict):
        raise ValueError(f"{path}: a member spec must be an object, got {type(spec).__name__}")
    missing = [k for k in ("name", "task", "channels", "classes", "head", "stem") if k not in spec]
    if missing:
        raise ValueError(f"{path}: member spec {spec.get('name', '?')!r} lacks {', '.join(missing)}")
    name = check_name(spec["name"], f"{path}: member name")
    channels = spec["channels"]
    if not isinstance(channels, list) or not channels:
        raise ValueError(f"{path}: member {name!r}: channels must be a non-empty list, got {channels!r}")
    check_limits({"stages": len(channels), "classes": spec["classes"], "stem": spec["stem"]},
                 f"{path}: member {name!r}")
    for c in channels:
        check_limits({"channels": c}, f"{path}: member {name!r}")
    values = spec.get("values", [])
    if not isinstance(spec["task"], str) or not isinstance(spec["head"], str) or not isinstance(values, list):
        raise ValueError(f"{path}: member {name!r}: task and head must be strings and values a list")
    return {**spec, "values": values}


class _InceptionTrunk(torch.nn.Module):
    """torchvision InceptionV3 seen as a suite member: grey [-1, 1] in, 2048 pooled features out."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.dims = 2048

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.expand(-1, 3, -1, -1))


def inception_member(weights_file: str | os.PathLike, device: str = "cpu") -> Member:
    """InceptionV3 (torchvision's architecture) from a local weights file, as a suite member.

    It sees each scale directly (no resize to 299), like MedSynAnalyzer; grey is repeated
    to 3 channels. Nothing is downloaded.

    Raises
    ------
    ValueError
        If torchvision cannot be imported or the file is not torchvision InceptionV3 weights
        (see :func:`umsynth.extractors.classic.inception_v3`).
    """
    ext = inception_v3(weights_file, device)
    return Member(ext.name, "external", _InceptionTrunk(ext._forward))


def radiomics_member(settings: dict | None = None) -> Member:
    """The deterministic radiomics member (see :mod:`umsynth.radiomics.member`): no weights, no training.

    Parameters
    ----------
    settings : dict, optional
        Default :data:`umsynth.radiomics.member.MEMBER_SETTINGS` (FRD's classes, original image).
    """
    return Member(RADIOMICS_NAME, RADIOMICS, RadiomicsNet(settings))


def array_digest(a: np.ndarray) -> str:
    """SHA-256 (first 12 hex digits) of an array's bytes in C order: tags training data."""
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:12]
