"""SLIC and unsupervised-mask benchmarks: umsynth against what people use instead.

Run: python -m pytest benchmarks/test_bench_slic.py --benchmark-only \
         --benchmark-group-by=group --benchmark-columns=median,iqr,rounds

Every case segments the same chest-CT phantom montage (or its 512^2 quarter) with
512 segments and compactness 10, as the SemiCS2 pipeline does.
fast-slic is benchmarked where it installs (pip install cython numpy setuptools;
pip install --no-build-isolation fast-slic==0.4.0); it takes RGB uint8 only.
"""
from __future__ import annotations

import numpy as np
import pytest
from skimage.segmentation import slic as sk_slic

import umsynth
from umsynth.kernels.original import original_run
from umsynth.samples import chest_montage

SIZES = [512, 1024]


@pytest.fixture(scope="module", params=SIZES, ids=lambda s: f"{s}px")
def image(request):
    montage, _ = chest_montage(0)
    return montage[: request.param, : request.param].copy()


def _group(benchmark, image, what):
    benchmark.group = f"{what} {image.shape[0]}^2"


def test_umsynth_fast_lab(benchmark, image):
    _group(benchmark, image, "slic")
    benchmark(umsynth.slic, image, n_segments=512, compactness=10, intensity="lab")


def test_umsynth_fast_lab_1thread(benchmark, image):
    _group(benchmark, image, "slic")
    benchmark(umsynth.slic, image, n_segments=512, compactness=10, intensity="lab", threads=1)


def test_umsynth_fast_grey(benchmark, image):
    _group(benchmark, image, "slic")
    benchmark(umsynth.slic, image, n_segments=512, compactness=10)


def test_umsynth_reference_lab(benchmark, image):
    _group(benchmark, image, "slic")
    benchmark.pedantic(umsynth.slic, args=(image,),
                       kwargs=dict(n_segments=512, compactness=10, intensity="lab",
                                   algorithm="reference"), rounds=3, iterations=1)


def test_skimage_grey(benchmark, image):
    _group(benchmark, image, "slic")
    benchmark.pedantic(sk_slic, args=(image,),
                       kwargs=dict(n_segments=512, compactness=10, channel_axis=None),
                       rounds=3, iterations=1)


def test_skimage_rgb_lab(benchmark, image):
    """The original pipeline's call: a 3-channel uint8 copy, converted to Lab."""
    _group(benchmark, image, "slic")
    rgb = np.stack([image] * 3, -1)
    benchmark.pedantic(sk_slic, args=(rgb,), kwargs=dict(n_segments=512, compactness=10),
                       rounds=3, iterations=1)


def test_fast_slic_rgb(benchmark, image):
    fast_slic = pytest.importorskip("fast_slic")
    _group(benchmark, image, "slic")
    rgb = np.ascontiguousarray(np.stack([image] * 3, -1))
    try:
        from fast_slic.avx2 import SlicAvx2 as Slic
    except ImportError:  # pragma: no cover - no AVX2 build
        Slic = fast_slic.Slic
    benchmark(lambda: Slic(num_components=512, compactness=10).iterate(rgb))


def test_um_umsynth_fast(benchmark, image):
    _group(benchmark, image, "unsupervised mask")
    benchmark(umsynth.unsupervised_mask, image)


def test_um_umsynth_batch8_per_image(benchmark, image):
    """Eight images in one call; the figure is per batch (divide by 8 per image)."""
    _group(benchmark, image, "unsupervised mask")
    batch = np.stack([np.roll(image, 7 * i, axis=1) for i in range(8)])
    benchmark(umsynth.unsupervised_mask, batch)


def test_um_umsynth_reference(benchmark, image):
    _group(benchmark, image, "unsupervised mask")
    benchmark.pedantic(umsynth.unsupervised_mask, args=(image,),
                       kwargs=dict(algorithm="reference"), rounds=3, iterations=1)


def test_um_original_run(benchmark, image):
    _group(benchmark, image, "unsupervised mask")
    benchmark.pedantic(original_run, args=(image,), rounds=2, iterations=1)
