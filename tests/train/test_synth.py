"""Synthesis from a checkpoint: files, shapes, dtypes, ranges, variety options, NIfTI, ONNX, CLI."""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.usefixtures("one_torch_thread")

torch = pytest.importorskip("torch")
from PIL import Image  # noqa: E402

from umsynth.cli import main  # noqa: E402
from umsynth.synth import Variety, export_onnx, load_generator, synthesize  # noqa: E402
from umsynth.train import conditioning_input, load_config, train  # noqa: E402


@pytest.fixture(scope="module")
def data(tiny_montages):
    return tiny_montages(range(4)), tiny_montages(range(4, 6), labelled=False)


def _checkpoint(tmp_path_factory, data, mode, tiny):
    out = tmp_path_factory.mktemp(f"run_{mode}")
    cfg = load_config(None, tiny + ["optim.niter=1", "optim.niter_decay=0", f"model.conditioning={mode}",
                                    "data.tr=20"])
    train(cfg, *data, out)
    return out / "checkpoints" / "last.pt"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, data, tiny):
    return _checkpoint(tmp_path_factory, data, "um", tiny)


def _png(path):
    return np.asarray(Image.open(path))


def test_synthesize_from_arrays(ckpt, data, tmp_path):
    from umsynth import samples

    greys = np.stack([samples.chest_slice(seed=s, size=32)[0] for s in (10, 11, 12)])
    done = synthesize(ckpt, greys, tmp_path, batch_size=2, progress=False)
    assert [d["name"] for d in done] == ["00000", "00001", "00002"]
    for d in done:
        ct, seg, um = _png(d["ct"]), _png(d["seg"]), _png(d["um"])
        assert ct.shape == seg.shape == um.shape == (32, 32)
        assert ct.dtype == seg.dtype == um.dtype == np.uint8
        assert set(np.unique(seg)) <= {0, 1, 2}
        assert (um % 20 == 0).all()  # the checkpoint's training step data.tr
        assert ct.std() > 0
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temp files left


def test_synthesize_from_dataset_matches_the_generator(ckpt, data, tmp_path):
    lab = data[0]
    done = synthesize(ckpt, lab, tmp_path, batch_size=3, progress=False)  # 4 items: batches of 3 and 1
    gen, _ = load_generator(ckpt)
    batch = torch.utils.data.default_collate([lab[i] for i in range(len(lab))])
    with torch.no_grad():
        ct, logits = gen(conditioning_input(batch, "um", 3, True))
    expect_ct = np.rint((ct[:, 0].clamp(-1, 1).numpy() + 1) / 2 * 255).astype(np.uint8)
    expect_um = np.rint((batch["um"][:, 0].numpy() + 1) * 127.5).astype(np.uint8)
    for i, d in enumerate(done):
        # the dataset's UM (quantized by 10) is requantized by the checkpoint's tr=20
        np.testing.assert_array_equal(_png(d["um"]), expect_um[i] // 20 * 20)
    # dataset UMs on a step-10 grid move when requantized by 20: compare with no change instead
    done = synthesize(ckpt, lab, tmp_path / "b", batch_size=3, progress=False, variety=Variety(requantize=10))
    for i, d in enumerate(done):
        np.testing.assert_array_equal(_png(d["um"]), expect_um[i])
        assert np.abs(_png(d["ct"]).astype(int) - expect_ct[i]).max() <= 1
        np.testing.assert_array_equal(_png(d["seg"]), logits[i].argmax(0).numpy())


def test_variety_options(ckpt, tmp_path):
    from umsynth import samples

    grey = samples.chest_slice(seed=3, size=32)[0]
    base = synthesize(ckpt, [grey], tmp_path / "base", progress=False)[0]
    coarse = synthesize(ckpt, [grey], tmp_path / "q", progress=False, variety=Variety(requantize=60))[0]
    assert (_png(coarse["um"]) % 60 == 0).all() and len(np.unique(_png(coarse["um"]))) < len(
        np.unique(_png(base["um"])))
    jit = synthesize(ckpt, [grey], tmp_path / "j", progress=False, variety=Variety(jitter=40, variants=2))
    again = synthesize(ckpt, [grey], tmp_path / "j2", progress=False, variety=Variety(jitter=40, variants=2))
    u0, u1 = _png(jit[0]["um"]), _png(jit[1]["um"])
    assert [d["name"] for d in jit] == ["00000_v0", "00000_v1"]
    assert not np.array_equal(u0, _png(base["um"])) and not np.array_equal(u0, u1)
    np.testing.assert_array_equal(u0, _png(again[0]["um"]))  # reproducible from the seed
    from umsynth.masks import UMConfig

    few = UMConfig(n_segments=24)  # superpixels of about 6 x 6 pixels: a grid shift moves them
    plain = synthesize(ckpt, [grey], tmp_path / "p", progress=False, um_config=few)[0]
    re = synthesize(ckpt, [grey], tmp_path / "r", progress=False, um_config=few,
                    variety=Variety(reseed=True, seed=5))[0]
    assert _png(re["um"]).shape == (32, 32) and not np.array_equal(_png(re["um"]), _png(plain["um"]))
    with pytest.raises(ValueError, match="reseed needs the grey image"):
        synthesize(ckpt, [grey], tmp_path / "x", progress=False, inputs_are="ums", variety=Variety(reseed=True))
    with pytest.raises(ValueError, match="jitter"):
        Variety(jitter=-1)
    with pytest.raises(ValueError, match="requantize"):
        Variety(requantize=0)


def test_nifti_in_nifti_out(ckpt, tmp_path):
    from umsynth import samples
    from umsynth.data.io import read_nifti, write_nifti

    hu = samples.chest_volume(seed=1, shape=(1, 32, 32), hu=True)[0]
    write_nifti(tmp_path / "case.nii.gz", hu, spacing=(2.0, 0.7, 0.7))
    (d,) = synthesize(ckpt, [tmp_path / "case.nii.gz"], tmp_path / "out", progress=False)
    assert d["name"] == "case"
    ct, seg = read_nifti(d["ct_nifti"]), read_nifti(d["seg_nifti"], dtype=None)
    assert ct.array.shape == seg.array.shape == (1, 32, 32)
    assert ct.spacing == pytest.approx((2.0, 0.7, 0.7))
    assert -1500 <= ct.array.min() and ct.array.max() <= 100
    np.testing.assert_array_equal(seg.array[0], _png(d["seg"]))
    np.testing.assert_allclose(ct.array[0], -1500 + _png(d["ct"]) / 255 * 1600, atol=1600 / 255)
    write_nifti(tmp_path / "vol.nii.gz", np.zeros((3, 32, 32), np.float32))
    with pytest.raises(ValueError, match="one 2D montage"):
        synthesize(ckpt, [tmp_path / "vol.nii.gz"], tmp_path / "out", progress=False)


def test_mask_checkpoint_needs_labels(tmp_path_factory, data, tmp_path, tiny):
    ck = _checkpoint(tmp_path_factory, data, "mask", tiny)
    done = synthesize(ck, data[0], tmp_path, progress=False)
    assert len(done) == 4
    with pytest.raises(ValueError, match="labelled inputs"):
        synthesize(ck, data[1], tmp_path, progress=False)
    with pytest.raises(ValueError, match="variety options"):
        synthesize(ck, data[0], tmp_path, progress=False, variety=Variety(jitter=5))


def test_onnx_export_matches_pytorch(ckpt, tmp_path):
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    info = export_onnx(ckpt, tmp_path / "g.onnx", height=32, width=32)
    assert info["max_abs_diff"] <= 1e-4
    # an independent input of another size and batch through the dynamic axes
    gen, _ = load_generator(ckpt)
    x = torch.rand(3, 2, 64, 48, generator=torch.Generator().manual_seed(1)) * 2 - 1
    got = ort.InferenceSession(info["path"], providers=["CPUExecutionProvider"]).run(None, {"cond": x.numpy()})
    with torch.no_grad():
        ref = gen(x)
    for a, b in zip(got, ref):
        assert a.shape == tuple(b.shape)
        np.testing.assert_allclose(a, b.numpy(), atol=1e-4, rtol=0)


def test_cli(ckpt, tmp_path, capsys):
    from umsynth import samples

    Image.fromarray(samples.chest_slice(seed=4, size=32)[0]).save(tmp_path / "m.png")
    assert main(["synthesize", str(ckpt), str(tmp_path / "m.png"), "--out", str(tmp_path / "o"),
                 "--no-progress", "--variants", "2", "--jitter", "15"]) == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [
        f"m_v{v}_{k}.png" for v in (0, 1) for k in ("ct", "seg", "um")]
    # a run folder (its last.pt) and --from-checkpoint NAME name the same checkpoint
    run = ckpt.parent.parent
    for extra in ([], ["--from-checkpoint", "last"]):
        assert main(["synthesize", str(run), str(tmp_path / "m.png"), "--out", str(tmp_path / "o2"),
                     "--no-progress", "--variants", "2", "--jitter", "15", *extra]) == 0
        for p in (tmp_path / "o").iterdir():
            assert (tmp_path / "o2" / p.name).read_bytes() == p.read_bytes()
    assert main(["synthesize", str(run), str(tmp_path / "m.png"), "--out", str(tmp_path / "o3"),
                 "--from-checkpoint", "7"]) == 2
    assert "step_0000007.pt' does not exist; it has: last" in capsys.readouterr().err
    assert main(["synthesize", str(ckpt), "--out", str(tmp_path / "o")]) == 2
    assert "no inputs" in capsys.readouterr().err
    assert main(["synthesize", str(tmp_path / "none.pt"), str(tmp_path / "m.png"), "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
    pytest.importorskip("onnxruntime")
    assert main(["export-onnx", str(ckpt), "--out", str(tmp_path / "g.onnx"), "--height", "32", "--width", "32"]) == 0
    assert "max |ONNX - PyTorch|" in capsys.readouterr().out
    # as the README shows it: the file as a second positional, and a run folder as the checkpoint
    assert main(["export-onnx", str(run), str(tmp_path / "h.onnx"), "--height", "32", "--width", "32"]) == 0
    assert (tmp_path / "h.onnx").read_bytes() == (tmp_path / "g.onnx").read_bytes()
    assert main(["export-onnx", str(ckpt), "a.onnx", "--out", "b.onnx", "--no-check"]) == 2
    assert "two output files" in capsys.readouterr().err
