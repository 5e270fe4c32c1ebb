"""What image-level uncertainty costs on top of an MM-FID pass: a 4 x 4 table (4 CT networks x
scales 128, 256, 512, 1024) of 2 x 16 phantom montages, with and without ``bootstrap=200``
(intervals of MM-FID, MM-STD and KID for each set, and the pair's difference with a permutation
p-value). The features are kept once by the pass; the resampling only recomputes distances: one
pass of ``uncertainty.resample`` serves every metric, set and pair, its distances batched per
cell (umsynth.metrics.gram). The last row times that resampling alone on the kept features.

Run:  python -m pytest benchmarks/test_bench_mmfid_uncertainty.py --benchmark-only -s
"""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from umsynth.data.phantom import phantom_cohort  # noqa: E402
from umsynth.extractors import CTNet, Member, Suite  # noqa: E402
from umsynth.metrics import uncertainty  # noqa: E402
from umsynth.metrics.mmfid import mmfid  # noqa: E402

SCALES = (128, 256, 512, 1024)


@pytest.fixture(scope="module")
def data():
    torch.manual_seed(0)
    suite = Suite([Member(f"net{i}", "rotation", CTNet((16, 32, 64, 128), 4).eval()) for i in range(4)], SCALES)
    images = phantom_cohort(48, size=256, seed=1).images
    return suite, images[:16], {"a": images[16:32], "b": images[32:]}


@pytest.mark.parametrize("bootstrap", [0, 200])
def test_mmfid_pass_with_and_without_uncertainty(benchmark, data, bootstrap):
    suite, real, sets = data
    result = benchmark.pedantic(lambda: mmfid(real, sets, suite, bootstrap=bootstrap, progress=False),
                                rounds=2, iterations=1)
    if bootstrap:
        assert "a vs b" in result.extras["comparisons"]
    benchmark.extra_info["bootstrap"] = bootstrap


def test_resampling_alone(benchmark, data):
    suite, real, sets = data
    features = mmfid(real, sets, suite, progress=False)._features
    got = benchmark.pedantic(lambda: uncertainty.resample(features, ["a", "b"], [("a", "b")], resamples=200,
                                                          permutations=200), rounds=3, iterations=1)
    assert got[("compare", "a", "b")]["mm_fid"]["permuted"].size == 200
