"""Small calls of every CUDA SLIC kernel, for compute-sanitizer (memcheck, racecheck).

Covers grey and multi-channel images, 2D and 3D, masks, Lab, start_label 0, no
connectivity, max_num_iter 0 and a batched unsupervised mask; each result is compared
with the CPU path. Exit 0 when every GPU result equals the CPU one.
"""
import sys

import numpy as np
import torch

import umsynth


def main() -> int:
    rng = np.random.default_rng(0)
    img = (rng.random((40, 56)) * 255).astype(np.uint8)
    vol = rng.normal(size=(6, 20, 24)).astype(np.float32)
    rgb = rng.random((24, 32, 3))
    mask = np.zeros((40, 56), bool)
    mask[5:30, 3:50] = True
    mask[34:36, 52:55] = True  # a small island
    cases = [
        (img, dict(n_segments=20)),
        (img, dict(n_segments=20, intensity="lab", start_label=0)),
        (img, dict(n_segments=12, mask=mask)),
        (img, dict(n_segments=20, enforce_connectivity=False)),
        (img, dict(n_segments=20, max_num_iter=0)),
        (vol, dict(n_segments=30, spacing=(3.0, 1.0, 1.0))),
        (vol, dict(n_segments=15, mask=vol > 0)),
        (rgb, dict(n_segments=16, channel_axis=-1, intensity="lab")),
    ]
    bad = 0
    for a, kw in cases:
        got = umsynth.slic(torch.from_numpy(a).cuda(), **kw).cpu().numpy()
        if not np.array_equal(got, umsynth.slic(a, **kw)):
            print("MISMATCH slic", a.shape, kw)
            bad += 1
    batch = np.stack([img, img[::-1], 255 - img])
    um = umsynth.unsupervised_mask(torch.from_numpy(batch).cuda(), n_segments=20)
    if not np.array_equal(um.cpu().numpy(), umsynth.unsupervised_mask(batch, n_segments=20)):
        print("MISMATCH unsupervised_mask")
        bad += 1
    torch.cuda.synchronize()
    print(f"driver: {len(cases) + 1 - bad} of {len(cases) + 1} GPU results equal the CPU's")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
