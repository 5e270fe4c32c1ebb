"""Fréchet distance on one GPU: umsynth's polar-iteration kernel against what users run.

Routes, all float64, on the same inputs (covariances already on the device):

- ``umsynth``: ``umsynth.frechet_distance_batch`` (torch CUDA tensors in, tensor out);
- ``torch-chol-eigvalsh``: Cholesky L1 of S1, then ``eigvalsh(L1^T S2 L1)`` (cuSOLVER), the
  best exact torch route we know;
- ``torchmetrics-eigvals``: torchmetrics' formula, ``eigvals(S1 @ S2).sqrt().real.sum()``,
  re-expressed here (cuSOLVER geev);
- ``cupy-chol-eigvalsh``: the Cholesky + eigvalsh route in CuPy (if CuPy is installed);
- ``scipy-sqrtm``: pytorch-fid's ``scipy.linalg.sqrtm(S1 @ S2)`` on the host CPU (d <= 2048).

Times are CUDA-event medians (host wall clock for sqrtm), over 5 rounds after one warm-up.
Each route's relative error is against the float64 singular values of the Cholesky factor
product (torch ``svdvals`` on the GPU). Results go to ``$UMSYNTH_GPU_OUT/frechet_gpu.md``.

Run:  UMSYNTH_GPU_OUT=out python -m pytest benchmarks/gpu/test_bench_frechet_gpu.py -q
"""
from __future__ import annotations

import os
import time
import warnings

import numpy as np
import pytest

from umsynth.kernels.config import cuda_status

torch = pytest.importorskip("torch")
_OK, _WHY = cuda_status()
pytestmark = pytest.mark.skipif(not (_OK and torch.cuda.is_available()), reason=f"no CUDA device: {_WHY}")

ROUNDS = 5
# d -> samples per set (n > d: full-rank covariances)
SAMPLES = {512: 1024, 2048: 4000, 4096: 6000}
_ROWS: list[str] = []


def _out_path() -> str:
    out = os.environ.get("UMSYNTH_GPU_OUT", "benchmarks/gpu/out")
    os.makedirs(out, exist_ok=True)
    return os.path.join(out, "frechet_gpu.md")


def covariances(d: int, count: int, seed: int = 0):
    """``count`` (mean, covariance) pairs of ReLU features of one distribution, on the GPU."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    w = torch.randn(d, d, device="cuda", dtype=torch.float64, generator=g)
    w = w / torch.arange(1, d + 1, device="cuda", dtype=torch.float64)
    mus, sigs = [], []
    for _ in range(count):
        x = torch.relu(torch.randn(SAMPLES[d], d, device="cuda", dtype=torch.float64, generator=g) @ w.T)
        mus.append(x.mean(0))
        xc = x - x.mean(0)
        sigs.append(xc.T @ xc / (x.shape[0] - 1))
    return torch.stack(mus), torch.stack(sigs)


def reference(mu1, s1, mu2, s2):
    l1, l2 = torch.linalg.cholesky(s1), torch.linalg.cholesky(s2)
    tr = torch.linalg.svdvals(l1.transpose(-1, -2) @ l2).sum(-1)
    return ((mu1 - mu2) ** 2).sum(-1) + s1.diagonal(dim1=-2, dim2=-1).sum(-1) \
        + s2.diagonal(dim1=-2, dim2=-1).sum(-1) - 2 * tr


def route_umsynth(mu1, s1, mu2, s2):
    import umsynth

    return umsynth.frechet_distance_batch(mu1, s1, mu2, s2)


def route_chol_eigvalsh(mu1, s1, mu2, s2):
    l1 = torch.linalg.cholesky(s1)
    lam = torch.linalg.eigvalsh(l1.transpose(-1, -2) @ s2 @ l1).clamp_min(0)
    return ((mu1 - mu2) ** 2).sum(-1) + s1.diagonal(dim1=-2, dim2=-1).sum(-1) \
        + s2.diagonal(dim1=-2, dim2=-1).sum(-1) - 2 * lam.sqrt().sum(-1)


def route_eigvals(mu1, s1, mu2, s2):
    c = torch.linalg.eigvals(s1 @ s2).sqrt().real.sum(-1)
    return ((mu1 - mu2) ** 2).sum(-1) + s1.diagonal(dim1=-2, dim2=-1).sum(-1) \
        + s2.diagonal(dim1=-2, dim2=-1).sum(-1) - 2 * c


def route_cupy(mu1, s1, mu2, s2):
    import cupy as cp

    m1, a, m2, b = (cp.asarray(t) for t in (mu1, s1, mu2, s2))
    l1 = cp.linalg.cholesky(a)
    lam = cp.clip(cp.linalg.eigvalsh(cp.swapaxes(l1, -1, -2) @ b @ l1), 0, None)
    out = ((m1 - m2) ** 2).sum(-1) + cp.trace(a, axis1=-2, axis2=-1) + cp.trace(b, axis1=-2, axis2=-1) \
        - 2 * cp.sqrt(lam).sum(-1)
    return torch.as_tensor(out, device=mu1.device)


def route_sqrtm(mu1, s1, mu2, s2):
    import scipy.linalg

    out = []
    for m1, a, m2, b in zip(*(t.cpu().numpy() for t in (mu1, s1, mu2, s2))):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            covmean = scipy.linalg.sqrtm(a @ b)
        out.append((m1 - m2) @ (m1 - m2) + np.trace(a) + np.trace(b) - 2 * np.trace(covmean).real)
    return torch.tensor(out, device=mu1.device)


ROUTES = {"umsynth": route_umsynth, "torch-chol-eigvalsh": route_chol_eigvalsh,
          "torchmetrics-eigvals": route_eigvals, "cupy-chol-eigvalsh": route_cupy, "scipy-sqrtm": route_sqrtm}


def timed(fn, args, rounds: int, host: bool) -> tuple[float, object]:
    """Median seconds of ``rounds`` calls after one warm-up (CUDA events unless host)."""
    out = fn(*args)
    times = []
    for _ in range(rounds):
        if host:
            t0 = time.perf_counter()
            out = fn(*args)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        else:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = fn(*args)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
    return float(np.median(times)), out


CASES = [(512, 1), (2048, 1), (4096, 1), (2048, 16)]


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("d,batch", CASES)
def test_frechet_gpu(d, batch, route):
    if route == "cupy-chol-eigvalsh":
        pytest.importorskip("cupy")
    if route == "scipy-sqrtm" and (d > 2048 or batch > 1):
        pytest.skip("minutes per call on the CPU")
    mus, sigs = covariances(d, 8 if batch > 1 else 2)
    if batch > 1:  # a 4 x 4 table: sets 0..3 against sets 4..7, every pair
        i, j = torch.meshgrid(torch.arange(4), torch.arange(4, 8), indexing="ij")
        args = (mus[i.flatten()], sigs[i.flatten()], mus[j.flatten()], sigs[j.flatten()])
    else:
        args = (mus[:1], sigs[:1], mus[1:2], sigs[1:2])
    want = reference(*args)
    host = route == "scipy-sqrtm"
    med, got = timed(ROUTES[route], args, 1 if host else ROUNDS, host)
    err = float(((got.real if got.is_complex() else got) - want).abs().div(want).max())
    _ROWS.append(f"| {d} | {batch} | {route} | {med * 1e3:.2f} | {err:.1e} |")
    with open(_out_path(), "w") as fh:
        fh.write(f"# Fréchet distance on {torch.cuda.get_device_name()}\n\n"
                 "| d | FDs per call | route | median (ms) | max rel. error |\n|---|---|---|---|---|\n")
        fh.write("\n".join(_ROWS) + "\n")
    if route == "umsynth":
        assert err <= 1e-6
