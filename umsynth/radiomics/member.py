"""The radiomics extractor of an MM-FID suite: deterministic features, no weights, no training.

A suite member (:class:`umsynth.extractors.Member`) needs a ``net`` with ``features(x)``
mapping a (B, 1, s, s) batch in [-1, 1] to (B, dims) and an attribute ``dims``.
:class:`RadiomicsNet` is that module around :func:`umsynth.radiomics.feature_matrix`: it
holds no parameters, only its settings, so a suite file stores the settings and the
member is rebuilt from them on load.

Input mapping. MM-FID gives every member the images as umsynth reads them: 8-bit grey
values g in 0..255 (16-bit: 0..65535 rescaled) become ``x = g / 127.5 - 1`` (the suite's
``preprocessing``). The member maps back with ``g = (x + 1) * 127.5``, so it sees grey
values 0..255 on a fixed scale, as FRD sees PNG images. It does not normalise each image
(FRD's ``normalize``): per-image normalisation would hide a synthetic set that is too
bright or too dark, which a fidelity metric should see, and would leave a constant image
undefined. HU values cannot be recovered from a PNG; the grey window is what there is.
Grey values are rounded to 1/1000: float32 holds an 8-bit value only to ~1e-5, which would
put it on either side of a bin edge at random.

Settings (:data:`MEMBER_SETTINGS`): FRD's feature classes (first order, GLCM without MCC
and SumAverage, GLRLM, GLSZM, NGTDM: 77 features) of the original image only, bin width 5
grey values (52 gray levels over 0..255, about FRD's count after its normalisation), no
resampling: MM-FID already shows each image at every scale of the suite. The LoG and
wavelet image types (693 features) cost about 6x as much per image (see
/work/notes/results-radiomics2.md and benchmarks/test_bench_radiomics.py), which a 4 x 4
table on 2 cores cannot afford at 1024 pixels.

Output mapping. The features span many orders of magnitude (Energy grows with the pixel
count to ~1e10 at 1024 pixels, ratios lie in [0, 1]), and a Fréchet distance on raw values
would see Energy only. Each feature goes through ``asinh``: about linear below 1, about
``log(2 |v|)`` above, monotone and defined for every sign, so no feature dominates.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import torch

from umsynth.radiomics.features import FEATURES, _extract, feature_names

KIND = "radiomics"
MEMBER_NAME = "radiomics"
MEMBER_SETTINGS: dict[str, Any] = {
    "filters": ["original"],
    "classes": {"firstorder": list(FEATURES["firstorder"]),
                "glcm": [n for n in FEATURES["glcm"] if n not in ("MCC", "SumAverage")],
                "glrlm": list(FEATURES["glrlm"]), "glszm": list(FEATURES["glszm"]),
                "ngtdm": list(FEATURES["ngtdm"])},
    "bin_width": 5.0,
    "voxel_array_shift": 0.0,
}
"""The settings of the default MM-FID radiomics member (JSON-able :func:`features` arguments)."""

_ALLOWED = {"filters", "classes", "bin_width", "voxel_array_shift", "log_sigma", "wavelet", "gldm_alpha"}


class RadiomicsNet(torch.nn.Module):
    """Radiomics features as a suite member's network (see the module docstring).

    Parameters
    ----------
    settings : dict, optional
        :func:`umsynth.radiomics.features` arguments (``filters``, ``classes``,
        ``bin_width``, ``voxel_array_shift``, ``log_sigma``, ``wavelet``, ``gldm_alpha``);
        default :data:`MEMBER_SETTINGS`.
    threads : int, optional
        Threads of the C++ kernels (default: umsynth's setting).

    Raises
    ------
    ValueError
        For an unknown setting or one :func:`~umsynth.radiomics.features` refuses.
    """

    def __init__(self, settings: dict | None = None, threads: int | None = None) -> None:
        super().__init__()
        s = json.loads(json.dumps(MEMBER_SETTINGS if settings is None else settings))  # a JSON-able copy
        unknown = set(s) - _ALLOWED
        if unknown:
            raise ValueError(f"settings: unknown radiomics setting(s) {sorted(unknown)}; allowed {sorted(_ALLOWED)}")
        self.settings = s
        self.threads = threads
        self.names = feature_names(s.get("filters", ("original",)), s.get("classes", tuple(FEATURES)),
                                   s.get("log_sigma", ()))
        self.dims = len(self.names)

    def key(self) -> str:
        """The settings as canonical JSON: what a suite's digest includes for this member."""
        return json.dumps({"kind": KIND, "settings": self.settings}, sort_keys=True)

    def digest(self) -> str:
        return hashlib.sha256(self.key().encode()).hexdigest()[:12]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, s, s) in [-1, 1] -> (B, dims) float64 ``asinh`` of the radiomics features (CPU)."""
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"x must be (B, 1, H, W), got {tuple(x.shape)}")
        grey = (x[:, 0].detach().to("cpu", torch.float64).numpy() + 1.0) * 127.5
        # float32 puts an 8-bit value a hair off its integer, on either side of a bin edge
        # (edges are multiples of bin_width): 1/1000 grey level removes that noise
        grey = np.round(grey, 3)
        f = _extract(grey, None, check_constant=False, threads=self.threads, **self.settings)
        m = np.arcsinh(np.stack([f[k] for k in self.names], axis=1))
        return torch.from_numpy(m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)
