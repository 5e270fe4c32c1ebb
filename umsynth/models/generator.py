"""Multi-task pix2pixHD generator: (UM, edges) -> (CT image, segmentation logits).

The trunk is pix2pixHD's "global" generator (a 7x7 stem, ``n_downsample`` stride-2
convolutions, ``n_blocks`` residual blocks, transposed-convolution upsampling). SemiCS2
adds a second head to the shared trunk, so one network draws the CT image (tanh, one
channel) and its segmentation (``n_classes`` logits; the softmax lives in the loss, never
in the network, so cross-entropy sees logits). Optional local enhancers (pix2pixHD's
coarse-to-fine scheme) run the global trunk at half resolution and refine at full.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["MultiTaskGenerator", "norm_layer", "NORMS"]

NORMS = ("instance", "batch", "none")


def norm_layer(kind: str, channels: int) -> nn.Module:
    """The normalisation layer called ``kind`` for ``channels`` feature maps.

    ``"instance"`` is pix2pixHD's choice (no affine parameters, no running statistics),
    so each image is normalised on its own and results do not depend on the batch.
    """
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {kind!r}")


class ResnetBlock(nn.Module):
    """3x3 conv - norm - ReLU - 3x3 conv - norm, added to the input (reflection padding)."""

    def __init__(self, channels: int, norm: str):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), norm_layer(norm, channels), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), norm_layer(norm, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _head(channels: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(channels, out, 7))


def _global_trunk(in_channels: int, ngf: int, n_downsample: int, n_blocks: int, norm: str) -> nn.Sequential:
    """pix2pixHD global generator without its output layer; ends with ``ngf`` channels."""
    layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7),
                               norm_layer(norm, ngf), nn.ReLU(True)]
    for i in range(n_downsample):
        c = ngf * 2**i
        layers += [nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), norm_layer(norm, 2 * c), nn.ReLU(True)]
    c = ngf * 2**n_downsample
    layers += [ResnetBlock(c, norm) for _ in range(n_blocks)]
    for i in range(n_downsample, 0, -1):
        c = ngf * 2**i
        layers += [nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1),
                   norm_layer(norm, c // 2), nn.ReLU(True)]
    return nn.Sequential(*layers)


class MultiTaskGenerator(nn.Module):
    """pix2pixHD generator with a CT head and a segmentation head.

    Parameters
    ----------
    in_channels : int
        Conditioning channels (UM + edge map: 2; one-hot mask + edges: n_classes + 1).
    n_classes : int
        Segmentation classes (SemiCS2: 3, background / lung / lesion).
    ngf : int
        Filters of the first layer of the finest network.
    n_downsample : int
        Stride-2 steps of the global trunk (original 4).
    n_blocks : int
        Residual blocks of the global trunk (original 9).
    norm : {"instance", "batch", "none"}
    n_local_enhancers : int
        pix2pixHD local enhancers (0: the global generator alone). With k enhancers the
        global trunk has ``ngf * 2**k`` filters and runs at ``1 / 2**k`` of the input
        resolution; each enhancer doubles the resolution and halves the filters.
    n_blocks_local : int
        Residual blocks of each local enhancer (pix2pixHD: 3).

    Notes
    -----
    Inputs must have H and W divisible by ``2 ** (n_downsample + n_local_enhancers)``.
    ``forward`` returns ``(ct, seg_logits)``: ct (N, 1, H, W) in (-1, 1) from tanh,
    seg_logits (N, n_classes, H, W).
    """

    def __init__(self, in_channels: int, n_classes: int = 3, ngf: int = 64, n_downsample: int = 4,
                 n_blocks: int = 9, norm: str = "instance", n_local_enhancers: int = 0,
                 n_blocks_local: int = 3):
        super().__init__()
        for name, v, lo in (("in_channels", in_channels, 1), ("n_classes", n_classes, 2), ("ngf", ngf, 1),
                            ("n_downsample", n_downsample, 0), ("n_blocks", n_blocks, 0),
                            ("n_local_enhancers", n_local_enhancers, 0), ("n_blocks_local", n_blocks_local, 0)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
        norm_layer(norm, 1)  # validates the name
        self.n_local_enhancers = n_local_enhancers
        self.factor = 2 ** (n_downsample + n_local_enhancers)
        k = n_local_enhancers
        self.trunk = _global_trunk(in_channels, ngf * 2**k, n_downsample, n_blocks, norm)
        self.enhancers = nn.ModuleList()
        for n in range(k, 0, -1):  # coarse to fine
            c = ngf * 2 ** (n - 1)
            down = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(in_channels, c, 7), norm_layer(norm, c),
                                 nn.ReLU(True),
                                 nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), norm_layer(norm, 2 * c), nn.ReLU(True))
            up = nn.Sequential(*[ResnetBlock(2 * c, norm) for _ in range(n_blocks_local)],
                               nn.ConvTranspose2d(2 * c, c, 3, stride=2, padding=1, output_padding=1),
                               norm_layer(norm, c), nn.ReLU(True))
            self.enhancers.append(nn.ModuleDict({"down": down, "up": up}))
        self.ct_head = _head(ngf, 1)
        self.seg_head = _head(ngf, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Shared trunk features (N, ngf, H, W) that both heads read."""
        if not torch.jit.is_tracing() and (x.ndim != 4 or x.shape[-1] % self.factor or x.shape[-2] % self.factor):
            raise ValueError(f"input must be (N, C, H, W) with H and W divisible by {self.factor}, "
                             f"got shape {tuple(x.shape)}")
        pyramid = [x]
        for _ in range(self.n_local_enhancers):
            pyramid.append(F.avg_pool2d(pyramid[-1], 3, stride=2, padding=1, count_include_pad=False))
        h = self.trunk(pyramid[-1])
        for i, enh in enumerate(self.enhancers):
            h = enh["up"](enh["down"](pyramid[-2 - i]) + h)
        return h

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x)
        return torch.tanh(self.ct_head(h)), self.seg_head(h)
