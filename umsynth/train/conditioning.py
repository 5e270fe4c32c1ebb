"""What the generator is conditioned on: the UM (V2UM2I) or the manual mask (V2M2I).

``model.conditioning = "um"``: the UM in [-1, 1] plus the superpixel edge map (1 where a
pixel's label differs from a 4-neighbour's, as pix2pixHD's instance edges).
``model.conditioning = "mask"``: the one-hot manual segmentation (0/1 per class) plus the
edge map of its class boundaries. Both go through the same networks and loop.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

__all__ = ["boundary_edges", "conditioning_channels", "conditioning_input", "CONDITIONINGS"]

CONDITIONINGS = ("um", "mask")


def boundary_edges(labels: torch.Tensor) -> torch.Tensor:
    """Edge map (N, 1, H, W) float 0/1 of a label map (N, H, W) or (N, 1, H, W).

    A pixel is an edge when its left, right, upper or lower neighbour has another label,
    so both sides of a boundary are marked (pix2pixHD's ``get_edges``).
    """
    if labels.ndim == 4:
        labels = labels[:, 0]
    if labels.ndim != 3:
        raise ValueError(f"labels must be (N, H, W) or (N, 1, H, W), got shape {tuple(labels.shape)}")
    e = torch.zeros(labels.shape, dtype=torch.bool, device=labels.device)
    dx = labels[:, :, 1:] != labels[:, :, :-1]
    dy = labels[:, 1:, :] != labels[:, :-1, :]
    e[:, :, 1:] |= dx
    e[:, :, :-1] |= dx
    e[:, 1:, :] |= dy
    e[:, :-1, :] |= dy
    return e[:, None].float()


def conditioning_channels(conditioning: str, n_classes: int, use_edges: bool) -> int:
    """Number of generator input channels."""
    if conditioning not in CONDITIONINGS:
        raise ValueError(f"conditioning must be one of {', '.join(CONDITIONINGS)}, got {conditioning!r}")
    return (1 if conditioning == "um" else n_classes) + int(use_edges)


def conditioning_input(batch: dict, conditioning: str, n_classes: int, use_edges: bool) -> torch.Tensor:
    """The generator input (N, C, H, W) float32 for a collated batch of dataset items.

    Parameters
    ----------
    batch : dict
        ``"um"`` (N, 1, H, W) and ``"edges"`` (N, 1, H, W) for "um"; ``"seg"`` (N, H, W)
        int64 for "mask".
    """
    if conditioning == "um":
        parts = [batch["um"].float()]
        edges = batch["edges"].float() if use_edges else None
    elif conditioning == "mask":
        seg = batch["seg"].long()
        if seg.numel() and (int(seg.min()) < 0 or int(seg.max()) >= n_classes):
            raise ValueError(f"seg holds classes outside 0..{n_classes - 1}")
        parts = [F.one_hot(seg, n_classes).permute(0, 3, 1, 2).float()]
        edges = boundary_edges(seg) if use_edges else None
    else:
        raise ValueError(f"conditioning must be one of {', '.join(CONDITIONINGS)}, got {conditioning!r}")
    if edges is not None:
        parts.append(edges)
    return torch.cat(parts, 1)
