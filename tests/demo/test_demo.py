"""`umsynth demo --quick` end to end: the paired design, equal budgets, controls, the verdict, the report."""
from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from umsynth.cli import main  # noqa: E402
from umsynth.demo import DemoConfig  # noqa: E402
from umsynth.demo.report import referenced_files  # noqa: E402
from umsynth.demo.utility import CLASS_WEIGHTS, dice_per_class  # noqa: E402


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 0
    return out


# metrics.json's top-level keys, written out here (not taken from the code) so a key the
# report or users rely on cannot disappear unnoticed
EXPECTED_METRIC_KEYS = {"created", "started", "config", "quick", "environment", "cohort", "design", "training",
                        "synthesis", "mmfid", "controls", "utility", "verdict", "warnings", "stage_times",
                        "stage_cpu_seconds", "figures"}
CLAIM_KEYS = {"difference", "interval", "p_value", "unit", "verdict"}


def test_every_stage_finished_and_left_its_artefacts(demo_dir):
    for stage in DemoConfig.quick().stages():
        assert (demo_dir / "stages" / f"{stage}.json").is_file(), stage
    cohort = demo_dir / "cohort"
    assert (cohort / "cohort.npz").is_file()
    for part in ("labelled", "unlabelled", "pool", "test"):
        assert list((cohort / part).glob("case*_um.png")), part
    for model in ("v2um2i", "v2m2i"):
        run = demo_dir / "runs" / f"{model}_seed0"
        assert (run / "checkpoints" / "last.pt").is_file()
        assert (run / "config.yaml").is_file()
        syn = demo_dir / "synthetic" / f"{model}_seed0"
        assert len(sorted(syn.glob("*_ct.png"))) == 6 and len(sorted(syn.glob("*_seg.png"))) == 6
    assert (demo_dir / "suite.safetensors").is_file()
    for fig in ("report.html", "metrics.json", "loss_curves.png", "tsne.png", "samples_v2um2i.png",
                "samples_v2m2i.png", "samples_controls.png", "mmfid_chart.png", "utility_chart.png"):
        assert (demo_dir / fig).is_file(), fig
    # no temp file left behind anywhere
    assert not [p for p in demo_dir.rglob("*") if ".tmp" in p.name]


def test_metrics_json_carries_the_design(demo_dir):
    m = json.loads((demo_dir / "metrics.json").read_text())
    assert set(m) == EXPECTED_METRIC_KEYS
    assert m["quick"] is True
    # three disjoint groups; both models synthesize from the same pool cases, one image each
    g = m["design"]["groups"]
    parts = [set(g[k]) for k in ("train_labelled", "train_unlabelled", "pool", "test")]
    assert sum(map(len, parts)) == len(set().union(*parts)) == m["config"]["n_cases"]
    src = m["design"]["source_cases"]
    assert src["v2um2i"] == src["v2m2i"] == sorted(g["pool"])
    # equal budgets, counting both phases of V2UM2I
    t = m["training"]
    assert t["v2um2i"]["generator_updates"] == t["v2m2i"]["generator_updates"] > t["v2um2i"]["iterations"]
    assert t["v2um2i"]["discriminator_updates"] == t["v2m2i"]["discriminator_updates"]
    assert t["v2m2i"]["iterations"] == t["v2m2i"]["generator_updates"]
    # controls carry what a model's MM-FID entry carries
    for name in ("real", "degraded"):
        assert set(m["controls"][name]) == set(m["mmfid"]["sets"]["v2um2i"])
    # the positive control: degraded - real, paired over the pool cases, for every metric
    sens = m["controls"]["sensitivity"]
    assert set(sens) == {"mm_fid", "mm_std", "kid"}
    for v in sens.values():
        assert {"difference", "interval", "p_value", "unit"} <= set(v) and v["unit"] == "source cases (paired)"
    for claim in ("fidelity", "variety", "utility"):
        v = m["verdict"][claim]
        assert CLAIM_KEYS <= set(v)
        assert v["verdict"] in ("supported", "not supported", "inconclusive at this budget")
        lo, hi = v["interval"]
        assert lo <= v["difference"] <= hi
    # every utility arm trains one recipe, recorded with the design
    u = m["design"]["utility"]
    assert u["class_weights"] == list(CLASS_WEIGHTS) and u["width"] == 8
    assert u["synthetic_per_batch"] == m["config"]["utility_batch"] // 2
    for arm in ("real_only", "real+real", "real+degraded", "real+v2um2i", "real+v2m2i"):
        a = m["utility"]["arms"][arm]
        assert np.array(a["per_image"], dtype=float).shape == (3, 6, 3)  # seeds x test images x classes
        assert all(v is None or 0 <= v <= 1 for v in a["dice"])
    assert m["environment"]["torch"] == torch.__version__ and m["environment"]["matplotlib"]
    assert "+" in m["created"] or "-" in m["created"].split()[-2]  # a UTC offset


def test_report_is_titled_as_a_smoke_test_and_warns(demo_dir):
    page = (demo_dir / "report.html").read_text()
    assert "smoke test" in page.lower().split("</h1>")[0]
    assert "href='metrics.json'" in page and "runs/" in page
    assert "Configuration" in page.split("Verdict")[0]
    assert "class='warn'" in page


def test_report_references_no_missing_file(demo_dir):
    refs = referenced_files(demo_dir / "report.html")
    assert {"loss_curves.png", "tsne.png", "mmfid_chart.png", "utility_chart.png", "metrics.json"} <= set(refs)
    for ref in refs:
        assert (demo_dir / ref).exists(), ref


def test_rerun_resumes_without_redoing_stages(demo_dir):
    stages = DemoConfig.quick().stages()
    before = {s: (demo_dir / "stages" / f"{s}.json").stat().st_mtime_ns for s in stages if s != "report"}
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
    assert main(["demo", "--quick", "--cases", "14", "--out", str(tmp_path)]) == 2


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
    with pytest.raises(ValueError, match=r"n_test must be >= 6"):
        DemoConfig.quick(n_test=5)
    # what used to fail mid-run: too few training cases for the k-NN sets, a montage the
    # phantom cannot draw
    with pytest.raises(ValueError, match=r"at least 6 training cases"):
        DemoConfig.quick(n_cases=16)
    with pytest.raises(ValueError, match=r"size must be a multiple of 16 and >= 64"):
        DemoConfig.quick(size=48)
    with pytest.raises(ValueError, match=r"model\.generator\.ngf must be > 0"):
        DemoConfig(generator=GeneratorConfig(ngf=0))
    with pytest.raises(TypeError, match="generator must be a GeneratorConfig"):
        DemoConfig(generator={"ngf": 8})
    with pytest.raises(ValueError, match="width must be a multiple of 4"):
        SegmenterConfig(width=6)
    with pytest.raises(ValueError, match="lr must be > 0"):
        SegmenterConfig(lr=0.0)
    with pytest.raises(ValueError, match="class_weights must be 3 finite values > 0"):
        SegmenterConfig(class_weights=(1.0, 2.0))
    with pytest.raises(ValueError, match="class_weights must be 3 finite values > 0"):
        SegmenterConfig(class_weights=(1.0, 0.0, 2.0))
    assert SegmenterConfig(class_weights=[1, 2, 3]).class_weights == (1.0, 2.0, 3.0)


def test_perfect_generators_make_no_claim_significant(demo_dir):
    """Issue 19 item 3: the evaluation stages with both models replaced by the perfect generator
    (each pool case's own real image and ground truth) find no significant difference."""
    from umsynth.demo import evaluate, pipeline

    cfg = DemoConfig.quick()
    out = demo_dir / "perfect"
    shutil.copytree(demo_dir / "synthetic", out / "synthetic", ignore=shutil.ignore_patterns("*_seed0"))
    (out / "suite.safetensors").symlink_to(demo_dir / "suite.safetensors")
    data = pipeline._load_arrays(demo_dir / "cohort" / "cohort.npz")
    for model in ("v2um2i", "v2m2i"):
        made = pipeline._load_arrays(demo_dir / "synthetic" / f"{model}_seed0.npz")
        src = made["sources"]  # what the demo recorded: the perfect generator re-draws these cases
        pipeline._save_arrays(out / "synthetic" / f"{model}_seed0.npz", ct=data["images"][src],
                              seg=data["labels"][src], label=data["labels"][src], sources=src)
    mm = pipeline._stage_mmfid(cfg, out, 0, data, False)
    ut = pipeline._stage_utility(cfg, out, ("v2um2i", "v2m2i"), 0, data, False)
    verdict = evaluate.judge([mm], [ut])
    for claim, v in verdict.items():
        assert v["verdict"] == "inconclusive at this budget", (claim, v)
        assert v["p_value"] >= 0.05, (claim, v)
    # the recorded sources are the pool cases in the controls' order: the perfect sets are the
    # "real" control image for image, so they score what it scores
    for model in ("v2um2i", "v2m2i"):
        assert mm["sets"][model]["mm_fid"] == pytest.approx(mm["sets"]["real"]["mm_fid"], rel=1e-9)


def test_warnings_count_collapsed_segmenters_per_run():
    """A segmenter that collapsed to one class in one seed hides in the union over seeds: the
    warning counts runs."""
    from umsynth.demo.pipeline import _warnings

    iv = {"difference": 0.1, "interval": (0.05, 0.15)}
    arms = {"real_only": {"predicted_classes": [0, 1, 2], "predicted_classes_per_seed": [[0], [0, 1, 2], [0, 1]]},
            "real+v2um2i": {"predicted_classes": [0, 1, 2], "predicted_classes_per_seed": [[0, 1, 2]] * 3},
            "real+v2m2i": {"predicted_classes": [0, 1, 2], "predicted_classes_per_seed": [[0, 1, 2]] * 3}}
    w = _warnings({}, arms, {"utility": iv}, quick=False)
    assert w["utility.real_only"] == ["one-class segmenter in 1 of 3 segmenter runs (one class everywhere)",
                                      "no lesion predicted in 2 of 3 segmenter runs"]
    assert "utility.real+v2um2i" not in w and "verdict.utility" not in w
