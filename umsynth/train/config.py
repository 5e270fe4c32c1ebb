"""Typed training configuration: dataclasses, YAML/TOML files, command-line overrides.

A run is described by one :class:`Config` with six sections (``model``, ``loss``,
``optim``, ``data``, ``train``, ``checkpoint``). Files hold any subset of the fields; the rest keep
their defaults. Any field can be overridden as ``section.field=value`` (nested:
``model.generator.ngf=8``); values are parsed as YAML scalars and checked against the
field's type.
"""
from __future__ import annotations

import dataclasses
import math
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["GeneratorConfig", "DiscriminatorConfig", "ModelConfig", "LossConfig", "OptimConfig",
           "DataConfig", "TrainConfig", "CheckpointConfig", "Config", "load_config", "apply_overrides", "config_to_dict",
           "config_from_dict", "config_fields", "validate", "config_digest", "config_differences",
           "RUN_CONTROL_FIELDS"]

#: fields that change how a run is watched, where or how fast it runs, or where its data
#: lie (the data digest covers their content), not what it learns: a checkpoint resumes
#: across changes of these, and of nothing else
RUN_CONTROL_FIELDS = frozenset({
    "train.device", "train.compile", "train.channels_last", "train.max_steps", "train.log_every",
    "train.sample_every", "train.checkpoint_every", "train.tensorboard", "train.progress",
    "data.labelled_dir", "data.unlabelled_dir", "data.num_workers", "data.validation_dir",
    "data.validation_n", "checkpoint.keep_every", "checkpoint.keep_last"})


@dataclass
class GeneratorConfig:
    """pix2pixHD global generator (original: ngf 64, 4 downsamplings, 9 blocks, instance norm)."""

    ngf: int = 64
    n_downsample: int = 4
    n_blocks: int = 9
    norm: str = "instance"
    n_local_enhancers: int = 0
    n_blocks_local: int = 3

    def __post_init__(self) -> None:
        _check_section(self, ("model", "generator"))


@dataclass
class DiscriminatorConfig:
    """Multiscale PatchGAN (original: 2 scales, 3 layers, ndf 64)."""

    ndf: int = 64
    n_layers: int = 3
    num_D: int = 2
    norm: str = "instance"

    def __post_init__(self) -> None:
        _check_section(self, ("model", "discriminator"))


@dataclass
class ModelConfig:
    """What the generator is conditioned on and the two networks.

    conditioning : "um" (V2UM2I: UM + superpixel edge map) or "mask" (the paper's V2M2I
        baseline: one-hot manual segmentation + its class-boundary edge map). In "mask"
        mode only labelled images can be conditioned, so unlabelled images are excluded
        from training (see :func:`umsynth.train.train`).
    use_edges : append the edge map to the conditioning.
    """

    conditioning: str = "um"
    use_edges: bool = True
    n_classes: int = 3
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)

    def __post_init__(self) -> None:
        _check_section(self, ("model",))


@dataclass
class LossConfig:
    """Loss terms and weights (method.md §4). A weight of 0 switches a term off.

    gan : "lsgan", "hinge" or "none" (no adversarial training at all).
    lambda_pseudo : weight of the masked pseudo-label Dice + CE on unlabelled images.
    confidence_threshold : a pixel's pseudo-label counts where the upsampled full-resolution
        discriminator score of the synthetic image is above it (0.5 suits LSGAN; use 0 for hinge).
    perceptual_weights : safetensors file of a :class:`umsynth.models.FeatureNet`; None: off.
    """

    gan: str = "lsgan"
    lambda_gan: float = 1.0
    lambda_feat: float = 10.0
    lambda_l1: float = 10.0
    lambda_seg: float = 10.0
    lambda_pseudo: float = 0.5
    dice: bool = True
    ce: bool = True
    dice_smooth: float = 1.0
    confidence_threshold: float = 0.5
    perceptual_weights: typing.Optional[str] = None
    lambda_perceptual: float = 10.0

    def __post_init__(self) -> None:
        _check_section(self, ("loss",))


@dataclass
class OptimConfig:
    """Adam and pix2pixHD's schedule: lr constant for ``niter`` epochs, then linear to 0 over ``niter_decay``."""

    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    niter: int = 100
    niter_decay: int = 100

    def __post_init__(self) -> None:
        _check_section(self, ("optim",))


@dataclass
class DataConfig:
    """Where the montages come from.

    source : "phantom" (umsynth's chest phantom cohort) or "folder" (``umsynth prepare`` output).
    labelled_dir, unlabelled_dir : folders for source "folder" (unlabelled_dir may be None).
    phantom_n, phantom_size, phantom_seed, labelled_fraction : the phantom cohort.
    validation_dir : folder of montages (``umsynth prepare`` output or ``<stem>.png``) whose
        first ``validation_n`` images make the sample grids; None: for the phantom,
        ``validation_n`` further phantom cases (seed ``phantom_seed + 1``), for folders the
        first labelled training images. The grids are never trained on.
    """

    source: str = "phantom"
    labelled_dir: typing.Optional[str] = None
    unlabelled_dir: typing.Optional[str] = None
    phantom_n: int = 16
    phantom_size: int = 64
    phantom_seed: int = 0
    labelled_fraction: float = 0.25
    tr: int = 10
    batch_size: int = 1
    num_workers: int = 0
    validation_dir: typing.Optional[str] = None
    validation_n: int = 4

    def __post_init__(self) -> None:
        _check_section(self, ("data",))


@dataclass
class TrainConfig:
    """The run itself.

    device : "auto" (CUDA if usable, else CPU), "cpu", "cuda" or "cuda:N".
    amp : "none", "bf16" or "fp16" autocast (GPU only; the CPU always runs fp32).
    channels_last : None (auto): channels-last memory format on CUDA, contiguous on the CPU,
        where channels-last was measured slower; True or False force it.
    unlabelled_start_epoch : epochs of the labelled phase alone before unlabelled images join.
    pseudo_refresh_epochs : the frozen snapshot that draws pseudo-labels is refreshed
        every this many epochs.
    steps_per_epoch : None: one pass over the larger of the sets in use.
    max_steps : stop after this many iterations (None: run all epochs).
    checkpoint_every : write ``checkpoints/last.pt`` every this many steps (0: only at the end).
    sample_every : write a grid of the validation images every this many steps (0: only at the end).
    ema : decay of an exponential moving average of the generator's weights, e.g. 0.999
        (0: none), updated once per iteration. It is saved in the checkpoint, draws the
        sample grids, and synthesis uses it.
    """

    seed: int = 0
    device: str = "auto"
    amp: str = "none"
    channels_last: typing.Optional[bool] = None
    compile: bool = False
    unlabelled_start_epoch: int = 5
    pseudo_refresh_epochs: int = 1
    steps_per_epoch: typing.Optional[int] = None
    max_steps: typing.Optional[int] = None
    log_every: int = 10
    sample_every: int = 500
    checkpoint_every: int = 1000
    tensorboard: bool = True
    progress: bool = True
    ema: float = 0.0

    def __post_init__(self) -> None:
        _check_section(self, ("train",))


@dataclass
class CheckpointConfig:
    """Which checkpoints a run keeps besides ``checkpoints/last.pt``.

    keep_every : also keep ``checkpoints/step_NNNNNNN.pt`` every this many steps (0: none).
    keep_last : of those, keep only the newest this many (None: all).
    """

    keep_every: int = 5000
    keep_last: typing.Optional[int] = None

    def __post_init__(self) -> None:
        _check_section(self, ("checkpoint",))


@dataclass
class Config:
    """The whole run: model, loss, optim, data, train and checkpoint sections."""

    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)


_CHOICES = {
    ("model", "conditioning"): ("um", "mask"),
    ("model", "generator", "norm"): ("instance", "batch", "none"),
    ("model", "discriminator", "norm"): ("instance", "batch", "none"),
    ("loss", "gan"): ("lsgan", "hinge", "none"),
    ("data", "source"): ("phantom", "folder"),
    ("train", "amp"): ("none", "bf16", "fp16"),
}
_NONNEG = {("optim", "niter"), ("optim", "niter_decay"), ("model", "generator", "n_downsample"),
           ("model", "generator", "n_blocks"), ("model", "generator", "n_local_enhancers"),
           ("model", "generator", "n_blocks_local"), ("train", "unlabelled_start_epoch"),
           ("data", "num_workers"), ("train", "seed"), ("data", "phantom_seed"),
           ("train", "sample_every"), ("train", "checkpoint_every"), ("train", "ema"),
           ("checkpoint", "keep_every")}  # 0: off (checkpoint: only at the end)


def _walk(obj, prefix=()):
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v):
            yield from _walk(v, prefix + (f.name,))
        else:
            yield prefix + (f.name,), v


def config_fields(cfg: Config) -> list[tuple[str, object]]:
    """Every leaf field as ``("section.field", value)``, in declaration order."""
    return [(".".join(k), v) for k, v in _walk(cfg)]


def _learning_fields(cfg: Config) -> dict:
    return {k: v for k, v in config_fields(cfg) if k not in RUN_CONTROL_FIELDS}


def config_digest(cfg: Config) -> str:
    """SHA-256 (16 hex digits) of every field that shapes what a run learns.

    That is the whole configuration except :data:`RUN_CONTROL_FIELDS`; a checkpoint
    carries it, and a run whose digest differs never resumes from it.
    """
    import hashlib
    import json

    text = json.dumps(_learning_fields(cfg), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def config_differences(old: Config, new: Config) -> list[str]:
    """``"section.field old -> new"`` for each learning field that differs."""
    a, b = _learning_fields(old), _learning_fields(new)
    return [f"{k} {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _check_value(key: tuple, v) -> None:
    """One leaf field against the rules above; ValueError naming ``section.field``."""
    name = ".".join(key)
    if key in _CHOICES and v not in _CHOICES[key]:
        raise ValueError(f"{name} must be one of {', '.join(_CHOICES[key])}, got {v!r}")
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        if key == ("loss", "confidence_threshold"):  # any finite or infinite value; not NaN
            if v != v:
                raise ValueError(f"{name} must not be NaN")
        elif not math.isfinite(v):
            raise ValueError(f"{name} must be finite, got {v!r}")
        elif v < 0:
            raise ValueError(f"{name} must be >= 0, got {v!r}")
        elif v == 0 and key not in _NONNEG and not key[-1].startswith("lambda") and key not in (
                ("loss", "dice_smooth"), ("optim", "beta1"), ("optim", "beta2")):
            raise ValueError(f"{name} must be > 0, got {v!r}")


def _check_section(section, path: tuple) -> None:
    """The checks of one config section (its ``__post_init__``): every leaf, then the section's own rules."""
    for f in dataclasses.fields(section):
        v = getattr(section, f.name)
        if not dataclasses.is_dataclass(v):
            _check_value(path + (f.name,), v)
    if path == ("data",):
        if not 0 <= section.labelled_fraction <= 1:
            raise ValueError(f"data.labelled_fraction must be in [0, 1], got {section.labelled_fraction!r}")
        if not 1 <= section.tr <= 255:
            raise ValueError(f"data.tr must be in 1..255, got {section.tr!r}")
        if section.source == "folder" and not section.labelled_dir:
            raise ValueError("data.labelled_dir must be set when data.source is 'folder'")
    elif path == ("optim",):
        if not (section.beta1 < 1 and section.beta2 < 1):
            raise ValueError("optim.beta1 and optim.beta2 must be < 1")
        if section.niter + section.niter_decay < 1:
            raise ValueError("optim.niter + optim.niter_decay must be >= 1 (the number of epochs)")
    elif path == ("train",):
        if not section.ema < 1:
            raise ValueError(f"train.ema must be in [0, 1), got {section.ema!r}")


def validate(cfg: Config) -> Config:
    """Check every section again (each checks itself on construction, in ``__post_init__``).

    For a config whose fields were changed in place after it was built; raises ValueError
    naming the field.
    """
    for path, section in _sections(cfg):
        _check_section(section, path)
    return cfg


def _sections(obj, prefix=()):
    """(path, section) of every dataclass in a Config, outermost first."""
    if prefix:
        yield prefix, obj
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v):
            yield from _sections(v, prefix + (f.name,))


def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _coerce(value, tp, name: str):
    """Convert a parsed value to the annotated type ``tp`` or raise ValueError."""
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        return _coerce(value, args[0], name)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off", "1", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ValueError(f"{name} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            try:
                return float(value)
            except (TypeError, ValueError):
                raise ValueError(f"{name} must be a number, got {value!r}") from None
        return float(value)
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ValueError(f"{name} must be a string, got {value!r}")
        return str(value)
    raise TypeError(f"{name}: unsupported field type {tp}")  # pragma: no cover


def config_from_dict(data: dict, base: Config | None = None) -> Config:
    """A :class:`Config` from a nested dict (unknown keys are errors), on top of ``base``."""
    cfg = dataclasses.replace(base) if base is not None else Config()
    cfg = config_from_dict_into(cfg, data, ())
    return validate(cfg)


def config_from_dict_into(obj, data: dict, prefix: tuple):
    if not isinstance(data, dict):
        raise ValueError(f"{'.'.join(prefix) or 'config'} must be a mapping, got {type(data).__name__}")
    hints = _hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    kwargs = {}
    for k, v in data.items():
        name = ".".join(prefix + (str(k),))
        if k not in names:
            raise ValueError(f"unknown config field {name!r} (known: {', '.join(sorted(names))})")
        cur = getattr(obj, k)
        if dataclasses.is_dataclass(cur):
            kwargs[k] = config_from_dict_into(cur, v, prefix + (k,))
        else:
            kwargs[k] = _coerce(v, hints[k], name)
    return dataclasses.replace(obj, **kwargs)


def config_to_dict(cfg) -> dict:
    """The config as a plain nested dict (YAML/TOML/JSON friendly)."""
    return dataclasses.asdict(cfg)


def _set_dotted(d: dict, key: str, value) -> None:
    parts = key.split(".")
    for p in parts[:-1]:
        d = d.setdefault(p, {})
        if not isinstance(d, dict):
            raise ValueError(f"override {key!r}: {p!r} is not a section")
    d[parts[-1]] = value


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply ``section.field=value`` strings (values parsed as YAML scalars)."""
    import yaml

    data: dict = {}
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like section.field=value")
        key, raw = item.split("=", 1)
        key = key.strip().lstrip("-")
        if "." not in key:
            raise ValueError(f"override {item!r}: the key must name a section, e.g. train.seed=1")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        _set_dotted(data, key, value)
    return config_from_dict(data, cfg)


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML (.yaml/.yml) or TOML (.toml) file, then apply ``overrides``.

    Parameters
    ----------
    path : path-like or None
        None: the defaults.
    overrides : list of str
        ``section.field=value`` items, applied after the file.
    """
    cfg = Config()
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"config file {str(p)!r} does not exist")
        text = p.read_text(encoding="utf-8")
        if p.suffix.lower() == ".toml":
            import tomllib

            try:
                data = tomllib.loads(text)
            except tomllib.TOMLDecodeError as exc:
                raise ValueError(f"config file {str(p)!r} is not valid TOML: {exc}") from None
        elif p.suffix.lower() in (".yaml", ".yml"):
            import yaml

            try:
                data = yaml.safe_load(text) or {}
            except yaml.YAMLError as exc:
                raise ValueError(f"config file {str(p)!r} is not valid YAML: {exc}") from None
        else:
            raise ValueError(f"config file {str(p)!r}: expected a .yaml, .yml or .toml file")
        cfg = config_from_dict(data, cfg)
    if overrides:
        cfg = apply_overrides(cfg, overrides)
    return validate(cfg)
