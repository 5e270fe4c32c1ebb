"""`umsynth demo --quick` end to end: every stage's artefacts, metrics.json, the report."""
from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from umsynth.cli import main  # noqa: E402
from umsynth.demo import STAGES  # noqa: E402
from umsynth.demo.report import referenced_files  # noqa: E402
from umsynth.demo.utility import dice_per_class  # noqa: E402


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 0
    return out


# metrics.json's top-level keys, written out here (not taken from the code) so a key the
# report or users rely on cannot disappear unnoticed
EXPECTED_METRIC_KEYS = {"created", "config", "environment", "cohort", "training", "synthesis", "mmfid",
                        "utility", "stage_times", "figures"}


def test_every_stage_finished_and_left_its_artefacts(demo_dir):
    for stage in STAGES:
        assert (demo_dir / "stages" / f"{stage}.json").is_file(), stage
    cohort = demo_dir / "cohort"
    assert (cohort / "cohort.npz").is_file()
    for part in ("labelled", "unlabelled", "test"):
        assert list((cohort / part).glob("case*_um.png")), part
    for model in ("v2um2i", "v2m2i"):
        run = demo_dir / "runs" / model
        assert (run / "checkpoints" / "last.pt").is_file()
        assert (run / "config.yaml").is_file()
        syn = demo_dir / "synthetic" / model
        cts = sorted(syn.glob("*_ct.png"))
        assert len(cts) == 6 and len(sorted(syn.glob("*_seg.png"))) == 6
    assert (demo_dir / "suite.safetensors").is_file()
    for fig in ("report.html", "metrics.json", "loss_curves.png", "tsne.png", "samples_v2um2i.png",
                "samples_v2m2i.png"):
        assert (demo_dir / fig).is_file(), fig
    # no temp file left behind anywhere
    assert not [p for p in demo_dir.rglob("*") if ".tmp" in p.name]


def test_metrics_json_carries_every_field(demo_dir):
    m = json.loads((demo_dir / "metrics.json").read_text())
    assert set(m) == EXPECTED_METRIC_KEYS
    # the configuration embeds the generator and discriminator sections of the training config
    assert m["config"]["generator"] == {"ngf": 8, "n_downsample": 2, "n_blocks": 1, "norm": "instance",
                                        "n_local_enhancers": 0, "n_blocks_local": 3}
    assert m["config"]["discriminator"]["ndf"] == 8
    assert set(m["stage_times"]) == set(STAGES)
    assert all(v >= 0 for v in m["stage_times"].values())
    for model in ("v2um2i", "v2m2i"):
        t = m["training"][model]
        assert t["steps"] == 16 and np.isfinite(list(t["final_losses"].values())).all()
        s = m["mmfid"]["sets"][model]
        k, n_s = len(m["mmfid"]["extractors"]), len(m["mmfid"]["scales"])
        assert np.asarray(s["fd"]).shape == (k, n_s) and np.asarray(s["std"]).shape == (k, n_s)
        assert np.isfinite([s["mm_fid"], s["mm_std"]]).all()
        ref = m["mmfid"]["reference_normalized"][model]
        # the reference-normalized MM-FID is the mean of FD cells over real-half FD cells
        fd_ref = np.asarray(m["mmfid"]["reference"]["fd_real_halves"])
        np.testing.assert_allclose(ref["mm_fid"], np.mean(np.asarray(s["fd"]) / fd_ref), rtol=1e-9)
    w = m["mmfid"]["wilcoxon"]["v2um2i vs v2m2i"]
    assert 0 <= w["fd"]["pvalue"] <= 1
    for arm in ("real_only", "real+v2um2i", "real+v2m2i"):
        d = m["utility"][arm]["dice"]
        assert len(d) == 3 and all(v is None or 0 <= v <= 1 for v in d)
    assert m["environment"]["torch"] == torch.__version__


def test_report_references_no_missing_file(demo_dir):
    refs = referenced_files(demo_dir / "report.html")
    assert "loss_curves.png" in refs and "tsne.png" in refs
    for ref in refs:
        assert (demo_dir / ref).is_file(), ref


def test_rerun_resumes_without_redoing_stages(demo_dir):
    before = {s: (demo_dir / "stages" / f"{s}.json").stat().st_mtime_ns for s in STAGES if s != "report"}
    assert main(["demo", "--quick", "--out", str(demo_dir), "--no-progress"]) == 0
    after = {s: (demo_dir / "stages" / f"{s}.json").stat().st_mtime_ns for s in before}
    assert before == after


def test_report_renders_in_headless_chromium(demo_dir, tmp_path):
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed (Debian package 'chromium'); .ci/setup installs it where apt works")
    png = tmp_path / "report.png"
    subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1200,3000", f"--screenshot={png}", (demo_dir / "report.html").as_uri()],
                   check=True, capture_output=True, timeout=120)
    from PIL import Image

    img = np.asarray(Image.open(png).convert("L"))
    assert img.shape == (3000, 1200)
    # the page drew its figures: a white page with only text would be almost all > 240
    assert (img < 128).mean() > 0.02


def test_quick_config_is_rejected_when_it_cannot_split(tmp_path):
    assert main(["demo", "--quick", "--cases", "8", "--out", str(tmp_path)]) == 2


def test_dice_per_class_by_hand():
    pred = np.array([[0, 1, 1], [2, 2, 0]])
    target = np.array([[0, 1, 0], [2, 0, 0]])
    # class 0: pred {0,5}, target {0,2,4,5}: 2*2/(2+4); class 1: 2*1/(2+1); class 2: 2*1/(2+1)
    np.testing.assert_allclose(dice_per_class(pred, target), [4 / 6, 2 / 3, 2 / 3])
    d = dice_per_class(np.zeros((2, 2), int), np.zeros((2, 2), int))
    assert d[0] == 1 and np.isnan(d[1:]).all()
    with pytest.raises(ValueError, match="shapes differ"):
        dice_per_class(np.zeros((2, 2)), np.zeros((2, 3)))


def test_demo_and_segmenter_configs_check_their_fields():
    from umsynth.demo import DemoConfig
    from umsynth.demo.utility import SegmenterConfig
    from umsynth.train import GeneratorConfig

    with pytest.raises(ValueError, match="size must be a multiple of 16"):
        DemoConfig(size=40)
    with pytest.raises(ValueError, match=r"n_test must be >= 4"):
        DemoConfig.quick(n_test=3)
    with pytest.raises(ValueError, match=r"model\.generator\.ngf must be > 0"):
        DemoConfig(generator=GeneratorConfig(ngf=0))
    with pytest.raises(TypeError, match="generator must be a GeneratorConfig"):
        DemoConfig(generator={"ngf": 8})
    with pytest.raises(ValueError, match="width must be a multiple of 4"):
        SegmenterConfig(width=6)
    with pytest.raises(ValueError, match="lr must be > 0"):
        SegmenterConfig(lr=0.0)
