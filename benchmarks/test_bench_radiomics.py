"""Radiomics features on the CPU: umsynth against fastrad 1.0.0, and a whole FRD.

Run:  python -m pytest benchmarks/test_bench_radiomics.py --benchmark-only

Both tools get the same phantom slices (grey values), the same ROI (the lungs), the same
features (first order, GLCM, GLRLM, GLSZM, GLDM, NGTDM of the original image, bin width 25)
and 2 threads. umsynth runs a batch of 8 slices per call, fastrad one slice per call; the
throughput (slices per second) is in ``extra_info``. The FRD case times
``umsynth.radiomics.frd.frd_stats`` on N 512 x 512 slices (FRD's 693 features, including
resampling and the LoG and wavelet filters) and the distance of two such sets; N is 32
(UMSYNTH_BENCH_FRD_N to change it, 1000 with UMSYNTH_BENCH_FULL=1), with the time scaled to
1,000 images in ``extra_info``. ``benchmarks/frd_time.py`` times one set of any size (1,000
images: ``--n 1000``) outside pytest, with CPU and wall time.
"""
from __future__ import annotations

import functools
import os
import time
import warnings

import numpy as np
import pytest

from umsynth import samples
from umsynth.radiomics import features

CLASSES = ("firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")
BATCH = 8
THREADS = 2
FULL = os.environ.get("UMSYNTH_BENCH_FULL") == "1"
FRD_N = 1000 if FULL else int(os.environ.get("UMSYNTH_BENCH_FRD_N", "32"))


@functools.lru_cache(maxsize=4)
def slices(size: int, n: int = BATCH) -> tuple[np.ndarray, np.ndarray]:
    """n phantom slices (float64 grey values) and their lung masks."""
    pairs = [samples.chest_slice(seed=s, size=size) for s in range(n)]
    return (np.stack([p[0] for p in pairs]).astype(np.float64),
            np.stack([p[1] == 1 for p in pairs]))


@pytest.mark.parametrize("size", [256, 512])
def test_umsynth_features(benchmark, size):
    img, mask = slices(size)
    benchmark.group = f"radiomics {size}x{size}, lung ROI, 93-95 features"
    out = benchmark(features, img, mask, classes=CLASSES, threads=THREADS)
    assert len(out) == 93
    benchmark.extra_info["slices_per_s"] = BATCH / benchmark.stats.stats.median


@pytest.mark.parametrize("size", [256, 512])
def test_fastrad_features(benchmark, size):
    fastrad = pytest.importorskip("fastrad")
    torch = pytest.importorskip("torch")
    torch.set_num_threads(THREADS)
    img, mask = slices(size)
    settings = fastrad.FeatureSettings(feature_classes=list(CLASSES), bin_width=25.0, device="cpu")
    extractor = fastrad.FeatureExtractor(settings)
    image = fastrad.MedicalImage(torch.tensor(img[:1]), (1.0, 1.0, 1.0))
    roi = fastrad.Mask(torch.tensor(mask[:1].astype(np.float32)), (1.0, 1.0, 1.0))

    def one():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return extractor.extract(image, roi)

    benchmark.group = f"radiomics {size}x{size}, lung ROI, 93-95 features"
    out = benchmark.pedantic(one, rounds=3, iterations=1, warmup_rounds=0)
    assert len(out) == 95
    benchmark.extra_info["slices_per_s"] = 1 / benchmark.stats.stats.median


def test_frd_512(benchmark):
    from umsynth.radiomics.frd import frd, frd_stats

    base, _ = slices(512, 16)
    rng = np.random.default_rng(0)

    def images(seed):
        # FRD_N slices in batches of 16: the phantom slices with fresh noise
        r = np.random.default_rng(seed)
        for lo in range(0, FRD_N, 16):
            n = min(16, FRD_N - lo)
            yield base[:n] + r.normal(0, 3, (n, 512, 512))

    cpu = []

    def run():
        c0 = time.process_time()
        a = frd_stats(images(1), threads=THREADS)
        b = frd_stats(images(2), threads=THREADS)
        cpu.append(time.process_time() - c0)
        return frd(a, b)

    benchmark.group = "FRD of two sets of 512x512 slices"
    result = benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
    assert np.isfinite(result.frd) and rng is not None
    benchmark.extra_info["images"] = 2 * FRD_N
    benchmark.extra_info["seconds_per_1000_images"] = benchmark.stats.stats.median / (2 * FRD_N) * 1000
    benchmark.extra_info["cpu_ms_per_image"] = cpu[-1] / (2 * FRD_N) * 1000
    benchmark.extra_info["load_average"] = os.getloadavg()[0]
