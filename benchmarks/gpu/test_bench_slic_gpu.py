"""GPU benchmarks of the unsupervised mask (UM) and SLIC: umsynth's CUDA path against its
CPU path and scikit-image, on batches already on the GPU. Run by benchmarks/gpu/check.sh.

Run: python -m pytest benchmarks/gpu/test_bench_slic_gpu.py --benchmark-only

Times are CUDA events around each call on the current stream (pytest-benchmark's own
wall-clock figures include the event synchronisation). extra_info holds, per row: the
event median (ms), images per call, ms per image, UMs per second, and the memory-traffic
floor per image: the bytes the kernels must move (model below) over the bandwidth of a
device-to-device copy measured in the same run.
"""
from __future__ import annotations

import statistics

import numpy as np
import pytest

import umsynth
from umsynth.kernels.config import cuda_status
from umsynth.samples import chest_montage

_USABLE, _REASON = cuda_status()
pytestmark = pytest.mark.skipif(not _USABLE, reason=_REASON)
torch = pytest.importorskip("torch")

SIZES = [512, 1024]
BATCH = 64
MAX_ITER = 10


def bytes_per_pixel(max_iter: int = MAX_ITER) -> int:
    """Bytes a UM moves per pixel at least, for this algorithm: read the uint8 image and
    write its float32 feature (5); per k-means pass read the feature, read and write the
    int32 label (12); connectivity: labels read, parents written and read back, sizes
    (16); relabel and fill: read roots, read the image, write the UM (10)."""
    return 5 + 12 * max_iter + 16 + 10


@pytest.fixture(scope="module")
def bandwidth():
    """Device-to-device copy bandwidth in bytes/s (read + write counted)."""
    a = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    b.copy_(a)
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    ms = []
    for _ in range(5):
        s.record()
        b.copy_(a)
        e.record()
        e.synchronize()
        ms.append(s.elapsed_time(e))
    del a, b
    return 2 * (1 << 30) / (statistics.median(ms) / 1e3)


@pytest.fixture(scope="module", params=SIZES, ids=lambda s: f"{s}px")
def batch(request):
    montage, _ = chest_montage(0)
    img = montage[: request.param, : request.param]
    return np.stack([np.roll(img, 7 * i, axis=1) for i in range(BATCH)])


def _timed(benchmark, fn, n_images, pixels, bandwidth, rounds=5):
    """pytest-benchmark around fn with CUDA-event times recorded in extra_info."""
    times = []
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def run():
        s.record()
        fn()
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e))

    benchmark.pedantic(run, rounds=rounds, iterations=1, warmup_rounds=1)
    med = statistics.median(times[1:])
    floor = bytes_per_pixel() * pixels / bandwidth * 1e3
    benchmark.extra_info.update(cuda_event_median_ms=med, images=n_images,
                                ms_per_image=med / n_images, ums_per_s=n_images / med * 1e3,
                                floor_ms_per_image=floor, bandwidth_GBps=bandwidth / 1e9,
                                bytes_per_pixel=bytes_per_pixel())


def test_um_gpu_torch_batch(benchmark, batch, bandwidth):
    benchmark.group = f"unsupervised mask {batch.shape[1]}^2"
    x = torch.from_numpy(batch).cuda()
    _timed(benchmark, lambda: umsynth.unsupervised_mask(x), len(batch), batch[0].size, bandwidth)


def test_um_gpu_cupy_batch(benchmark, batch, bandwidth):
    cupy = pytest.importorskip("cupy")
    benchmark.group = f"unsupervised mask {batch.shape[1]}^2"
    x = cupy.asarray(batch)
    _timed(benchmark, lambda: umsynth.unsupervised_mask(x), len(batch), batch[0].size, bandwidth)


def test_um_gpu_torch_one_image(benchmark, batch, bandwidth):
    benchmark.group = f"unsupervised mask {batch.shape[1]}^2"
    x = torch.from_numpy(batch[:1]).cuda()
    _timed(benchmark, lambda: umsynth.unsupervised_mask(x), 1, batch[0].size, bandwidth)


def test_um_cpu_batch(benchmark, batch, bandwidth):
    """The CPU path on this machine's cores, 8 images of the batch."""
    benchmark.group = f"unsupervised mask {batch.shape[1]}^2"
    sub = np.ascontiguousarray(batch[:8])
    _timed(benchmark, lambda: umsynth.unsupervised_mask(sub), len(sub), batch[0].size,
           bandwidth, rounds=3)


def test_slic_lab_skimage_one_image(benchmark, batch, bandwidth):
    """The original pipeline's call (3-channel copy, Lab) on one image."""
    from skimage.segmentation import slic as sk_slic

    benchmark.group = f"unsupervised mask {batch.shape[1]}^2"
    rgb = np.stack([batch[0]] * 3, -1)
    _timed(benchmark, lambda: sk_slic(rgb, n_segments=512, compactness=10), 1, batch[0].size,
           bandwidth, rounds=2)
