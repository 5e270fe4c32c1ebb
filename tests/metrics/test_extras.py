"""umsynth.metrics.extras and knn: k-NN sets by hand; bootstrap, k-NN sets and t-SNE of a run."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from umsynth.metrics.knn import knn_sets  # noqa: E402
from umsynth.metrics.mmfid import mmfid  # noqa: E402


def test_knn_sets_hand_case():
    # real points on a line at 0, 1, 2, ..., 9; k=3: the radius is the 2nd nearest other point
    real = np.arange(10.0)[:, None]
    syn = np.array([[4.2], [4.5], [-1.9], [30.0], [9.0]])
    got = knn_sets(real, syn, k=3)
    # 4.2: nearest 4 at 0.2 < 1 (4's nearest other) -> copy; 4.5: 0.5 < 1 -> copy;
    # -1.9: nearest 0 at 1.9 > 1, within 0's radius 2 -> real; 30 -> non-real; 9.0: distance 0 -> copy
    np.testing.assert_array_equal(got["labels"], [0, 0, 1, 2, 0])
    assert got["counts"] == {"copy": 3, "real": 1, "non-real": 1}
    got = knn_sets(real, np.array([[-2.5], [11.0]]), k=3)
    np.testing.assert_array_equal(got["labels"], [2, 1])  # 0's radius is 2; 9's radius is 2
    with pytest.raises(ValueError, match="more than k"):
        knn_sets(real[:3], syn, k=3)


def test_extras_bootstrap_knn_tsne(cohort, suite, tmp_path, noisy):
    from PIL import Image

    real, syn = cohort.images[:20], cohort.images[20:]
    png, out = tmp_path / "tsne.png", tmp_path / "metrics.json"
    r = mmfid(real, {"clean": syn, "noisy": noisy(syn, 30)}, suite, bootstrap=8, knn=True, tsne=png,
              cell=("ct-degradation", 64), normalization="reference", progress=False)
    r.save(out)
    data = json.loads(out.read_text())
    for name in ("clean", "noisy"):
        b = data["sets"][name]["bootstrap"]
        assert np.all(np.array(b["low"]) <= np.array(b["high"])) and b["resamples"] == 8
        assert sum(data["sets"][name]["knn"]["counts"].values()) == 20
    # noisy images are no longer near-copies of real ones
    assert data["sets"]["noisy"]["knn"]["counts"]["copy"] < data["sets"]["clean"]["knn"]["counts"]["copy"]
    assert "clean vs noisy" in data["wilcoxon"]
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 100
    again = mmfid(real, {"clean": syn, "noisy": noisy(syn, 30)}, suite, bootstrap=8, normalization="reference",
                  progress=False)
    assert again.extras["bootstrap"] == r.extras["bootstrap"]  # seeded
