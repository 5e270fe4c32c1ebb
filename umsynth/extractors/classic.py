"""Classic image feature extractors for ``umsynth fid``, with no download.

Two extractors:

``umsynth-random-cnn-v1`` (the default)
    A fixed random convolutional network: five 3x3 convolutions with stride 2 and padding 1
    (channels 3 -> 32 -> 64 -> 128 -> 256 -> 512), each followed by ReLU, then a global
    average pool: 512 features per image. Weights are He-normal (std sqrt(2 / fan_in)), drawn
    in layer order from ``torch.Generator().manual_seed(0)`` in float32; biases are zero.
    Images are resized to 256 x 256 (bilinear, antialiased), scaled to [-1, 1], and grey
    images are repeated to 3 channels. It is **not InceptionV3**: its distances are not
    comparable with pytorch-fid's or published FIDs, only with each other. It stands in
    until trained CT extractors arrive with MM-FID.

``torchvision-inception-v3-<sha>``
    torchvision's InceptionV3 with a weights file the user already has (torchvision's
    ``inception_v3`` ImageNet state dict, e.g. ``inception_v3_google-0cc3c7bd.pth``): the
    2048 pooled features before the classifier, at 299 x 299, inputs scaled to [-1, 1]
    (what torchvision's ``transform_input`` produces for these weights). ``<sha>`` is the
    start of the file's SHA-256, so statistics from different weights are never mixed.
    pytorch-fid's ``pt_inception-2015-12-05`` file is refused: its FID blocks compute
    differently from torchvision's, and umsynth does not reimplement them.

torch is imported only when an extractor is built or images are read (importing the
:mod:`umsynth.extractors` package imports it anyway). Images are read with
:func:`umsynth.files.read_image` from :func:`umsynth.files.list_images`.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from umsynth.files import list_images, read_image
from umsynth.stats import FeatureStats

__all__ = [
    "RANDOM_CNN_NAME",
    "FeatureExtractor",
    "random_cnn",
    "inception_v3",
    "folder_stats",
]

RANDOM_CNN_NAME = "umsynth-random-cnn-v1"
RANDOM_CNN_SEED = 0
RANDOM_CNN_SIZE = 256
RANDOM_CNN_CHANNELS = (3, 32, 64, 128, 256, 512)
INCEPTION_SIZE = 299


class FeatureExtractor:
    """A named feature extractor: images in, one feature row per image out.

    Parameters
    ----------
    name : str
        Documented name, saved with the statistics.
    dims : int
        Number of features per image.
    image_size : int
        Images are resized to ``image_size`` x ``image_size`` before the network.
    forward : callable
        Maps a float32 tensor (batch, 3, size, size) scaled to [-1, 1] to (batch, dims).
    device : str
        torch device the network runs on.
    """

    def __init__(self, name: str, dims: int, image_size: int, forward, device: str = "cpu") -> None:
        self.name = name
        self.dims = dims
        self.image_size = image_size
        self.device = device
        self._forward = forward

    def __call__(self, images):
        """Features of a batch.

        Parameters
        ----------
        images : torch.Tensor, shape (batch, 3, image_size, image_size)
            float32 in [0, 1].

        Returns
        -------
        numpy.ndarray, shape (batch, dims), float32
        """
        import torch

        with torch.inference_mode():
            x = images.to(self.device, torch.float32) * 2.0 - 1.0
            return self._forward(x).float().cpu().numpy()


def random_cnn(device: str = "cpu") -> FeatureExtractor:
    """The default extractor, ``umsynth-random-cnn-v1`` (see the module docstring).

    Parameters
    ----------
    device : str, optional
        torch device, e.g. ``"cpu"`` or ``"cuda"``.

    Returns
    -------
    FeatureExtractor
        512 features per image; the same weights on every call and machine.
    """
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(RANDOM_CNN_SEED)
    weights = []
    for cin, cout in zip(RANDOM_CNN_CHANNELS[:-1], RANDOM_CNN_CHANNELS[1:]):
        std = (2.0 / (cin * 9)) ** 0.5
        weights.append((torch.randn(cout, cin, 3, 3, generator=gen) * std).to(device))

    def forward(x):
        for w in weights:
            x = F.relu(F.conv2d(x, w, stride=2, padding=1))
        return x.mean(dim=(2, 3))

    return FeatureExtractor(RANDOM_CNN_NAME, RANDOM_CNN_CHANNELS[-1], RANDOM_CNN_SIZE, forward, device)


def inception_v3(weights_file: str | os.PathLike, device: str = "cpu") -> FeatureExtractor:
    """torchvision's InceptionV3 with a local weights file; nothing is downloaded.

    Parameters
    ----------
    weights_file : str or os.PathLike
        torchvision's ``inception_v3`` state dict (a ``.pth`` file read with
        ``torch.load(weights_only=True)``).
    device : str, optional

    Returns
    -------
    FeatureExtractor
        2048 pooled features per image, named ``torchvision-inception-v3-<sha12>``.

    Raises
    ------
    ValueError
        If torchvision cannot be imported, or the file is not a torchvision InceptionV3
        state dict (pytorch-fid's FID weights included).
    """
    import torch

    try:
        import torchvision
    except Exception as exc:  # missing, or built against another torch
        raise ValueError(f"--inception-weights needs torchvision, which cannot be imported here "
                         f"({type(exc).__name__}: {exc}); install the torchvision that matches torch "
                         f"{torch.__version__}") from None
    path = Path(weights_file)
    if not path.is_file():
        raise ValueError(f"inception weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"cannot read inception weights {path}: {exc}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or "fc.weight" not in state or "Mixed_7c.branch_pool.conv.weight" not in state:
        raise ValueError(f"{path} is not a torchvision InceptionV3 state dict")
    classes = int(state["fc.weight"].shape[0])
    if classes == 1008:
        raise ValueError(f"{path} looks like pytorch-fid's FID Inception weights (1008 classes); their "
                         "blocks differ from torchvision's, so pass torchvision's inception_v3 weights")
    model = torchvision.models.inception_v3(weights=None, num_classes=classes, init_weights=False,
                                            aux_logits=any(k.startswith("AuxLogits.") for k in state),
                                            transform_input=False)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"{path} does not fit torchvision's InceptionV3: {str(exc).splitlines()[0]}") from None
    model.fc = torch.nn.Identity()
    model.eval().to(device)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return FeatureExtractor(f"torchvision-inception-v3-{digest}", 2048, INCEPTION_SIZE, model, device)


class _ImageFolder:
    """Map-style dataset for torch's DataLoader: (image tensor, error message or "")."""

    def __init__(self, files: list[Path], size: int) -> None:
        self.files = files
        self.size = size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        import torch
        import torch.nn.functional as F

        try:
            arr = read_image(self.files[i])
        except ValueError as exc:
            # an exception raised in a worker comes back wrapped in a traceback; a message does not
            return torch.zeros(3, self.size, self.size), str(exc)
        t = torch.from_numpy(arr)
        t = t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]
        t = F.interpolate(t, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        return t[0].expand(3, -1, -1).clamp(0.0, 1.0).contiguous(), ""


def folder_stats(folder: str | os.PathLike, extractor: FeatureExtractor, batch_size: int = 50,
                 num_workers: int = 0, keep_features: bool | None = None,
                 progress: bool = True) -> FeatureStats:
    """Feature statistics of every image in a folder.

    Parameters
    ----------
    folder : str or os.PathLike
        Folder of PNG/JPG/TIFF/BMP images, grey or RGB (see :func:`umsynth.files.list_images`).
    extractor : FeatureExtractor
    batch_size : int, optional
    num_workers : int, optional
        Worker processes of torch's DataLoader that read images (0: in this process).
    keep_features : bool, optional
        Keep the raw features; default: when there are at most ``extractor.dims`` images,
        so that the distance takes the exact small-Gram route.
    progress : bool, optional
        Show progress over images on stderr (:func:`umsynth.progress.progress`).

    Returns
    -------
    FeatureStats

    Raises
    ------
    ValueError
        For an empty folder, an unreadable image (named), or NaN/Inf in the features.
    """
    import torch
    from umsynth.progress import progress as progress_bar

    files = list_images(folder)
    if keep_features is None:
        keep_features = len(files) <= extractor.dims
    stats = FeatureStats(extractor.dims, keep_features=keep_features, extractor=extractor.name)
    loader = torch.utils.data.DataLoader(_ImageFolder(files, extractor.image_size), batch_size=batch_size,
                                         shuffle=False, drop_last=False, num_workers=num_workers)
    with progress_bar(total=len(files), unit="img", desc=str(folder), disable=not progress) as bar:
        for images, errors in loader:
            bad = next((e for e in errors if e), None)
            if bad:
                raise ValueError(bad)
            feats = extractor(images)
            try:
                stats.update(feats)
            except ValueError as exc:
                raise ValueError(f"{extractor.name} features of {folder}: {exc}") from None
            bar.update(len(images))
    return stats
