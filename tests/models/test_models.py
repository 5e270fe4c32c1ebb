"""The multi-task generator, the multiscale discriminator and the losses, against hand computations."""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.usefixtures("one_torch_thread")

torch = pytest.importorskip("torch")
from scipy import ndimage  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from umsynth.models import (FeatureNet, MultiscaleDiscriminator, MultiTaskGenerator, PerceptualLoss,  # noqa: E402
                            confidence_mask, feature_matching_loss, gan_loss, l1_loss, segmentation_loss)


# ----------------------------------------------------------------------------- networks


@pytest.mark.parametrize("local", [0, 1])
def test_generator_shapes_and_ranges(local):
    torch.manual_seed(0)
    g = MultiTaskGenerator(2, n_classes=3, ngf=8, n_downsample=2, n_blocks=1, n_local_enhancers=local)
    x = torch.randn(3, 2, 32, 48)
    ct, seg = g(x)
    assert ct.shape == (3, 1, 32, 48) and seg.shape == (3, 3, 32, 48)
    assert ct.abs().max() < 1  # tanh head
    assert seg.abs().max() > 0  # raw logits, not probabilities
    assert not torch.allclose(seg.softmax(1).sum(1), seg.sum(1))


def test_generator_rejects_bad_input_and_arguments():
    g = MultiTaskGenerator(2, ngf=4, n_downsample=2, n_blocks=1)
    with pytest.raises(ValueError, match="divisible by 4"):
        g(torch.zeros(1, 2, 30, 32))
    with pytest.raises(ValueError, match="norm"):
        MultiTaskGenerator(2, norm="layer")
    with pytest.raises(ValueError, match="n_blocks"):
        MultiTaskGenerator(2, n_blocks=-1)


def test_generator_instance_norm_makes_samples_independent():
    torch.manual_seed(0)
    g = MultiTaskGenerator(2, ngf=4, n_downsample=2, n_blocks=1).eval()
    x = torch.randn(2, 2, 16, 16)
    both = g(x)[0]
    one = g(x[:1])[0]
    torch.testing.assert_close(both[:1], one, atol=1e-6, rtol=0)


def test_discriminator_features():
    torch.manual_seed(0)
    d = MultiscaleDiscriminator(3, ndf=4, n_layers=3, num_D=2)
    out = d(torch.randn(2, 3, 64, 64))
    assert len(out) == 2
    for scale in out:
        assert len(scale) == 3 + 2  # stem, n_layers hidden, score map
        assert scale[-1].shape[1] == 1
    # full resolution first; the second scale sees the input pooled by 2
    assert out[0][0].shape[-1] == 33 and out[1][0].shape[-1] == 17
    assert [f.shape[1] for f in out[0]] == [4, 8, 16, 32, 1]


# ----------------------------------------------------------------------------- adversarial


def _scores(values):
    """Fake discriminator output: one score map per scale (plus a dummy hidden layer)."""
    return [[torch.zeros(1), torch.tensor(v, dtype=torch.float32)] for v in values]


def test_gan_losses_against_formulas():
    a = np.array([[[[0.2, 1.5], [-0.3, 0.9]]], [[[2.0, 0.0], [1.0, -1.0]]]])  # (2, 1, 2, 2)
    b = np.array([[[[0.5]]], [[[-2.0]]]])  # (2, 1, 1, 1): a second, coarser scale
    s = _scores([a, b])
    per = lambda x: x.reshape(len(x), -1).mean(1)  # noqa: E731
    np.testing.assert_allclose(gan_loss(s, True).numpy(), per((a - 1) ** 2) + per((b - 1) ** 2), rtol=1e-6)
    np.testing.assert_allclose(gan_loss(s, False).numpy(), per(a**2) + per(b**2), rtol=1e-6)
    np.testing.assert_allclose(gan_loss(s, True, "hinge").numpy(),
                               per(np.maximum(0, 1 - a)) + per(np.maximum(0, 1 - b)), rtol=1e-6)
    np.testing.assert_allclose(gan_loss(s, False, "hinge").numpy(),
                               per(np.maximum(0, 1 + a)) + per(np.maximum(0, 1 + b)), rtol=1e-6)
    np.testing.assert_allclose(gan_loss(s, True, "hinge", for_discriminator=False).numpy(), -per(a) - per(b),
                               rtol=1e-6)
    with pytest.raises(ValueError, match="gan mode"):
        gan_loss(s, True, "wgan")


def test_feature_matching_weights():
    rng = np.random.default_rng(0)
    n_layers, num_d = 3, 2
    fake = [[rng.normal(size=(2, 3, 4, 4)) for _ in range(n_layers + 2)] for _ in range(num_d)]
    real = [[rng.normal(size=(2, 3, 4, 4)) for _ in range(n_layers + 2)] for _ in range(num_d)]
    expect = np.zeros(2)
    for fs, rs in zip(fake, real):
        for f, r in zip(fs[:-1], rs[:-1]):  # the score maps are not matched
            expect += 4.0 / (n_layers + 1) / num_d * np.abs(f - r).reshape(2, -1).mean(1)
    t = lambda xs: [[torch.tensor(x) for x in s] for s in xs]  # noqa: E731
    got = feature_matching_loss(t(fake), t(real), n_layers)
    np.testing.assert_allclose(got.numpy(), expect, rtol=1e-12)


def test_l1_per_sample():
    a, b = torch.tensor([[[[1.0, -1.0]]], [[[0.5, 0.5]]]]), torch.zeros(2, 1, 1, 2)
    np.testing.assert_allclose(l1_loss(a, b).numpy(), [1.0, 0.5])


# ----------------------------------------------------------------------------- segmentation


def _reference_seg_loss(logits: np.ndarray, target: np.ndarray, valid: np.ndarray, smooth: float) -> np.ndarray:
    """CE + soft Dice in float64 from the unmasked pixels alone (the masked ones are dropped)."""
    out = []
    for lg, tg, vd in zip(logits, target, valid):
        z = lg[:, vd].T  # (n_valid, K): only the pixels that count
        t = tg[vd]
        if len(t) == 0:
            out.append(0.0)
            continue
        z = z - z.max(1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))
        ce = -logp[np.arange(len(t)), t].mean()
        p = np.exp(logp)
        onehot = np.eye(lg.shape[0])[t]
        dice = 1 - (2 * (p * onehot).sum(0) + smooth) / (p.sum(0) + onehot.sum(0) + smooth)
        out.append(ce + dice.mean())
    return np.array(out)


def _hand_case():
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 2, size=(3, 3, 5, 6))
    target = rng.integers(0, 3, size=(3, 5, 6))
    valid = rng.random((3, 5, 6)) > 0.45
    valid[2] = False  # a sample where no pixel passes
    return logits, target, valid


@pytest.mark.parametrize("smooth", [1.0, 1e-3])
def test_masked_segmentation_loss_matches_hand_computation(smooth):
    logits, target, valid = _hand_case()
    got = segmentation_loss(torch.tensor(logits, dtype=torch.float64), torch.tensor(target), torch.tensor(valid),
                            smooth=smooth)
    np.testing.assert_allclose(got.numpy(), _reference_seg_loss(logits, target, valid, smooth), rtol=1e-10)
    assert got[2] == 0  # no valid pixel: the term is 0


def test_masked_pixels_contribute_nothing():
    logits, target, valid = _hand_case()

    def loss_and_grad(lg, tg):
        x = torch.tensor(lg, dtype=torch.float64, requires_grad=True)
        loss = segmentation_loss(x, torch.tensor(tg), torch.tensor(valid)).sum()
        loss.backward()
        return loss.item(), x.grad.numpy()

    l0, g0 = loss_and_grad(logits, target)
    rng = np.random.default_rng(9)
    changed, other = logits.copy(), target.copy()
    mask4 = np.broadcast_to(~valid[:, None], logits.shape)
    changed[mask4] = rng.normal(0, 50, size=int(mask4.sum()))  # wild predictions where masked
    other[~valid] = (target[~valid] + 1) % 3  # and other targets there
    l1, g1 = loss_and_grad(changed, other)
    assert l1 == l0
    np.testing.assert_array_equal(g1, g0)
    assert (g0[mask4] == 0).all()
    # the original's bug: masked pixels turned into background targets would change the loss
    bugged = np.where(valid, target, 0)
    l_bug = segmentation_loss(torch.tensor(logits), torch.tensor(bugged)).sum().item()
    assert abs(l_bug - l0) > 1e-3


def test_segmentation_loss_terms_and_errors():
    logits, target, _ = _hand_case()
    lg, tg = torch.tensor(logits), torch.tensor(target)
    ce = segmentation_loss(lg, tg, dice=False)
    np.testing.assert_allclose(ce.numpy(), [F.cross_entropy(lg[i:i + 1], tg[i:i + 1]).item() for i in range(3)],
                               rtol=1e-12)
    both = segmentation_loss(lg, tg)
    assert (both > ce).all()
    assert (segmentation_loss(lg, tg, dice=False, ce=False) == 0).all()
    with pytest.raises(ValueError, match="do not match"):
        segmentation_loss(lg, tg[:, :4])


def test_confidence_mask():
    s = [[torch.tensor([[[[0.7]]], [[[0.3]]]])]]
    m = confidence_mask(s, (4, 5), 0.5)
    assert m.shape == (2, 4, 5) and m.dtype == torch.bool
    assert m[0].all() and not m[1].any()
    # a 2x2 score map: bilinear upsampling of a left/right split keeps the split at the middle
    s = [[torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])]]
    m = confidence_mask(s, (4, 4), 0.5)[0]
    assert m[:, :2].all() and not m[:, 2:].any()
    assert not confidence_mask(s, (4, 4), 2.0).any()


# ----------------------------------------------------------------------------- perceptual


def _write_featurenet(path, rng, channels=(1, 2, 3)):
    from safetensors.torch import save_file

    tensors = {}
    for i in range(len(channels) - 1):
        tensors[f"conv{i}.weight"] = torch.tensor(rng.normal(size=(channels[i + 1], channels[i], 3, 3)),
                                                  dtype=torch.float32)
        tensors[f"conv{i}.bias"] = torch.tensor(rng.normal(size=channels[i + 1]), dtype=torch.float32)
    save_file(tensors, str(path))
    return tensors


def test_perceptual_loss_from_file(tmp_path):
    rng = np.random.default_rng(0)
    tensors = _write_featurenet(tmp_path / "f.safetensors", rng, channels=(1, 2))
    loss = PerceptualLoss(tmp_path / "f.safetensors")
    a = torch.tensor(rng.normal(size=(2, 1, 8, 8)), dtype=torch.float32)
    b = torch.tensor(rng.normal(size=(2, 1, 8, 8)), dtype=torch.float32)
    assert (loss(a, a) == 0).all()
    # reference: 3x3 cross-correlation with zero padding in float64, ReLU, L1
    w, bias = tensors["conv0.weight"].double().numpy(), tensors["conv0.bias"].double().numpy()

    def feats(x):
        return np.stack([[np.maximum(0, ndimage.correlate(x[n, 0], w[c, 0], mode="constant") + bias[c])
                          for c in range(2)] for n in range(len(x))])

    expect = np.abs(feats(a.double().numpy()) - feats(b.double().numpy())).reshape(2, -1).mean(1)
    np.testing.assert_allclose(loss(a, b).numpy(), expect, rtol=1e-5)
    assert len(FeatureNet(_write_featurenet(tmp_path / "g.safetensors", rng))(a)) == 2


def test_perceptual_loss_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        PerceptualLoss(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(OSError, match="cannot read"):
        PerceptualLoss(tmp_path / "junk.safetensors")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "empty.safetensors"))
    with pytest.raises(ValueError, match="conv0.weight"):
        PerceptualLoss(tmp_path / "empty.safetensors")
