"""Weights read from files, checked against the networks they claim before those are built.

A checkpoint or suite file says which architecture its weights belong to (a config, a
member spec). Building that architecture first and loading afterwards would let a small
file claim a network of any size (``ngf=4096, n_blocks=64`` is 24 GB). Here the claim is
checked in two steps, before anything large is allocated:

1. its structural numbers are within :data:`LIMITS` (so that even describing the network
   stays small), then
2. the network is built on torch's ``meta`` device (shapes only, no memory) and every
   tensor in the file must have exactly the shape the network expects.

The tensors themselves are already in memory, bounded by the file's size, so building the
checked network costs no more than the file. torch is imported when a check runs.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

__all__ = ["LIMITS", "check_limits", "check_state", "check_checkpoint"]

#: largest value of each structural number a file may claim (far above any real network)
LIMITS = {
    "ngf": 4096, "ndf": 4096, "n_downsample": 12, "n_blocks": 256, "n_local_enhancers": 4,
    "n_blocks_local": 64, "n_layers": 12, "num_D": 8, "n_classes": 1024,
    "stages": 16, "channels": 16384, "classes": 1 << 20, "stem": 64,
}


def check_limits(values: Mapping, what: str) -> None:
    """ValueError naming `what` and the field when a number in `values` is not an int within :data:`LIMITS`."""
    for key, v in values.items():
        if key not in LIMITS:
            continue
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= LIMITS[key]:
            raise ValueError(f"{what}: {key} = {v!r} is outside 0..{LIMITS[key]}, the most umsynth accepts "
                             "from a file")


def check_state(build: Callable, state, what: str) -> None:
    """Check that `state` (name -> tensor) fits the module ``build()`` returns, without allocating it.

    Parameters
    ----------
    build : callable
        Returns the module the weights are for; it is called under ``torch.device("meta")``.
    state : mapping of str to torch.Tensor
    what : str
        Names the weights in messages (``"checkpoint runs/x/last.pt: generator"``).

    Raises
    ------
    ValueError
        When a name is missing or extra, a value is not a tensor, or a shape differs.
    """
    import torch

    if not isinstance(state, Mapping):
        raise ValueError(f"{what}: expected a mapping of tensors, got {type(state).__name__}")
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in build().state_dict().items()}
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    if missing or extra:
        parts = ([f"missing {', '.join(missing[:3])}" + (" ..." if len(missing) > 3 else "")] if missing else []) + \
                ([f"unexpected {', '.join(map(str, extra[:3]))}" + (" ..." if len(extra) > 3 else "")] if extra else [])
        raise ValueError(f"{what}: the weights do not fit the network described with them ({'; '.join(parts)})")
    for k, shape in expected.items():
        v = state[k]
        if not isinstance(v, torch.Tensor):
            raise ValueError(f"{what}: {k} is a {type(v).__name__}, not a tensor")
        if tuple(v.shape) != shape:
            raise ValueError(f"{what}: {k} has shape {tuple(v.shape)}, the network described with it needs "
                             f"{shape}")


def check_checkpoint(state: Mapping, path) -> None:
    """Check a training checkpoint's config and networks before a network is built from it.

    The config must be valid and within :data:`LIMITS`; the generator's weights (and those
    of the pseudo-label snapshot, the EMA generator and the discriminator, when present)
    must have exactly the shapes that config gives them.

    Raises
    ------
    ValueError
        Naming the file and what does not fit.
    """
    # torch-based: only when a checkpoint is checked
    from umsynth.train.config import config_from_dict
    from umsynth.train.loop import build_discriminator, build_generator

    what = f"checkpoint {path}"
    raw = state.get("config")
    if not isinstance(raw, Mapping):
        raise ValueError(f"{what}: no config in it")
    model = raw.get("model", {})
    if isinstance(model, Mapping):
        check_limits({k: v for k, v in model.items() if k == "n_classes"}, f"{what}: model")
        for part in ("generator", "discriminator"):
            if isinstance(model.get(part), Mapping):
                check_limits(model[part], f"{what}: model.{part}")
    try:
        cfg = config_from_dict(dict(raw))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{what}: bad config: {exc}") from None
    for key, value in state.items():
        if key == "generator" or (key in ("snapshot", "ema") and value):
            check_state(lambda: build_generator(cfg), value, f"{what}: {key}")
        elif key == "discriminator" and value:
            check_state(lambda: build_discriminator(cfg), value, f"{what}: {key}")
