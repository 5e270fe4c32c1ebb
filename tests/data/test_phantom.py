"""The chest-CT phantom: tissue HU, lesions, kernels, fields of view, orientation, the cohort."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from umsynth import samples
from umsynth.data import build_montage, phantom_cohort, phantom_volume
from umsynth.data.phantom import TISSUES, phantom_montage, phantom_slice

SEED = 3
SHAPE = (64, 128, 128)
CODE = {name: code for name, (code, _) in TISSUES.items()}


@pytest.fixture(scope="module")
def vol():
    hu, labels, tissues = phantom_volume(SEED, SHAPE, return_tissues=True)
    return hu, labels, tissues


def _core(tissues, name, erode=1):
    """Pixels of a tissue away from its edges (in-plane), where blur does not reach."""
    m = tissues == CODE[name]
    return ndimage.binary_erosion(m, structure=np.ones((1, 3, 3)), iterations=erode) if erode else m


def test_shapes_and_types(vol):
    hu, labels, tissues = vol
    assert hu.shape == labels.shape == tissues.shape == SHAPE
    assert hu.dtype == np.float32 and labels.dtype == np.uint8 and tissues.dtype == np.uint8
    assert set(np.unique(labels)) == {0, 1, 2}
    assert np.isfinite(hu).all()


@pytest.mark.parametrize("name,lo,hi", [
    ("air", -1030, -970), ("lung", -880, -820), ("fat", -130, -70), ("soft_tissue", 10, 70),
    ("muscle", 20, 80), ("liver", 30, 90), ("cancellous_bone", 300, 600), ("table_foam", -850, -750),
])
def test_tissue_hu(vol, name, lo, hi):
    hu, _, tissues = vol
    core = _core(tissues, name)
    assert core.sum() > 50
    assert lo < np.median(hu[core]) < hi


def test_bone_is_dense(vol):
    hu, _, tissues = vol
    bone = (tissues == CODE["cortical_bone"]) | (tissues == CODE["cancellous_bone"])
    assert np.median(hu[bone]) > 300
    assert np.percentile(hu[tissues == CODE["cortical_bone"]], 90) > 700


def test_labels_follow_tissues(vol):
    hu, labels, tissues = vol
    # lung label: parenchyma with its vessels and airways, never body wall, bone or table
    in_lung = set(np.unique(tissues[labels == 1]))
    assert in_lung <= {CODE["lung"], CODE["soft_tissue"], CODE["air"]}
    assert (labels[tissues == CODE["lung"]] == 1).all()
    lesion = set(np.unique(tissues[labels == 2]))
    assert lesion <= {CODE["ground_glass"], CODE["consolidation"], CODE["soft_tissue"], CODE["air"]}
    assert (labels[(tissues == CODE["ground_glass"]) | (tissues == CODE["consolidation"])] == 2).all()
    # lung voxels are air-like, lesions denser than lung
    assert np.median(hu[labels == 1]) < -700
    assert np.median(hu[labels == 2]) > np.median(hu[labels == 1]) + 200


def test_lesion_counts_match_meta(vol):
    hu, labels, tissues = vol
    _, _, meta = phantom_montage(SEED, 128)
    pieces, n = ndimage.label(labels == 2)
    assert n == meta.n_lesions >= 1
    kinds = []
    for k in range(1, n + 1):
        t = tissues[pieces == k]
        kinds.append("ground_glass" if (t == CODE["ground_glass"]).sum() > (t == CODE["consolidation"]).sum()
                     else "consolidation")
        # ground glass stays well below soft tissue, consolidation reaches it
        med = np.median(hu[(pieces == k) & ((tissues == CODE["ground_glass"]) | (tissues == CODE["consolidation"]))])
        assert (-700 < med < -350) if kinds[-1] == "ground_glass" else (-60 < med < 100)
    assert kinds.count("ground_glass") == meta.n_ground_glass
    assert kinds.count("consolidation") == meta.n_consolidation


def test_orientation(vol):
    """z toward the head, anterior at the top, the patient's right on the image's left."""
    _, labels, tissues = vol
    z_of = lambda name: np.nonzero((tissues == CODE[name]).any(axis=(1, 2)))[0]  # noqa: E731
    lung_z = np.nonzero((labels == 1).any(axis=(1, 2)))[0]
    # liver below the lungs' middle, the trachea (air inside the body, midline) above it
    assert z_of("liver").max() < lung_z.mean()
    mid = SHAPE[2] // 2
    wall = (tissues == CODE["fat"]) | (tissues == CODE["muscle"])
    body = np.stack([ndimage.binary_fill_holes(w) for w in wall])
    trachea_z = np.nonzero(((tissues[:, :, mid - 3:mid + 3] == CODE["air"]) & body[:, :, mid - 3:mid + 3])
                           .any(axis=(1, 2)))[0]
    assert trachea_z.min() > lung_z.mean()
    # liver on the image left (patient right); spine and table at the bottom (posterior)
    _, _, lx = np.nonzero(tissues == CODE["liver"])
    assert lx.mean() < mid - 5
    _, by, bx = np.nonzero(tissues == CODE["cancellous_bone"])
    assert np.median(by) > SHAPE[1] // 2 and abs(np.median(bx) - mid) < 10
    _, ty, _ = np.nonzero(tissues == CODE["table"])
    assert ty.min() > np.nonzero(body.any(axis=(0, 2)))[0].max() - 2


def test_deterministic_and_seeds_differ():
    a = phantom_volume(7, (3, 64, 64))
    b = phantom_volume(7, (3, 64, 64))
    c = phantom_volume(8, (3, 64, 64))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    assert not np.array_equal(a[1], c[1])


def _air_patch(kernel):
    hu, _, tissues = phantom_volume(SEED, (1, 256, 256), kernel=kernel, fov="full", return_tissues=True)
    patch = hu[0, 4:36, 4:36].astype(np.float64)  # a corner: outside the body in the full view
    assert (tissues[0, :40, :40] == CODE["air"]).all()
    return patch - patch.mean()


def test_kernel_texture():
    """Sharp kernel: more noise, and most of it at high spatial frequency; smooth: the reverse."""
    spectra = {}
    for kernel in ("smooth", "sharp"):
        power = np.abs(np.fft.fft2(_air_patch(kernel))) ** 2
        f = np.hypot(*np.meshgrid(np.fft.fftfreq(32), np.fft.fftfreq(32), indexing="ij"))
        spectra[kernel] = (power[f > 0.25].sum(), power[f > 0].sum())
    (hi_s, all_s), (hi_h, all_h) = spectra["smooth"], spectra["sharp"]
    assert hi_h > 20 * hi_s
    assert hi_h / all_h > 0.5 > hi_s / all_s


def _air_noise(kernel, size):
    """Noise in air (the full view's corner, outside body and table) of one slice of `size` px."""
    hu, _, tissues = phantom_volume(SEED, (1, size, size), kernel=kernel, fov="full", return_tissues=True)
    k = size // 8
    assert (tissues[0, :k + 2, :k + 2] == CODE["air"]).all()
    patch = hu[0, 1:k + 1, 1:k + 1].astype(np.float64)
    return patch - patch.mean()


@pytest.mark.parametrize("size", [64, 128, 256])
def test_kernel_noise_exists_at_every_size(size):
    """The issue's check: in air, sharp-kernel noise >= 2x the smooth kernel's and >= 25 HU."""
    smooth, sharp = _air_noise("smooth", size).std(), _air_noise("sharp", size).std()
    assert sharp >= 25.0 and sharp >= 2 * smooth


@pytest.mark.parametrize("size", [64, 128, 256, 512])
def test_kernel_texture_at_every_size(size):
    """Smooth noise is correlated between neighbours and sharp noise anticorrelated, at any size.

    White noise has lag-1 autocorrelation 0; a low-pass filter wider than a pixel makes it
    clearly positive, a high-pass one negative. A filter narrower than a pixel would leave both
    kernels white (the fault this guards against).
    """
    def lag1(p):
        return 0.5 * ((p[:, 1:] * p[:, :-1]).mean() + (p[1:] * p[:-1]).mean()) / (p * p).mean()

    assert lag1(_air_noise("smooth", size)) > 0.3
    assert lag1(_air_noise("sharp", size)) < -0.1


def test_smooth_kernel_blurs_edges_at_small_size():
    """At 64 px slices (~6 mm pixels) the smooth kernel still softens edges more than the sharp one."""
    grads = {}
    for kernel in ("smooth", "sharp"):
        hu, _, tissues = phantom_volume(SEED, (1, 64, 64), kernel=kernel, fov="full", return_tissues=True)
        edge = ndimage.binary_dilation(tissues[0] == CODE["air"]) & (tissues[0] == CODE["fat"])
        # the step from fat to air across the body outline, in HU per pixel (largest neighbour step)
        g = np.maximum(np.abs(np.diff(hu[0], axis=0, prepend=hu[0, :1])),
                       np.abs(np.diff(hu[0], axis=1, prepend=hu[0, :, :1])))
        grads[kernel] = np.median(g[edge])
    assert grads["sharp"] > 1.3 * grads["smooth"]


def test_lesions_cover_pixels_at_the_demo_size():
    """At 128 px montages (64 px slices), lesions are several pixels across in most cases."""
    cohort = phantom_cohort(12, size=128, seed=0)
    px = cohort.column("lesion_pixels")
    assert (px > 0).mean() >= 0.75
    # a 64 px slice pixel is ~6 mm: 20 pixels are about one lesion 2.5 cm across
    assert np.median(px) >= 20
    assert np.array_equal(px, (cohort.labels == 2).sum(axis=(1, 2)))


def test_fields_of_view():
    out = {fov: phantom_volume(SEED, (1, 96, 96), fov=fov, return_tissues=True)
           for fov in ("full", "limited", "circular")}
    hu, _, t = out["full"]
    edges = np.concatenate([t[0, 0], t[0, -1], t[0, :, 0], t[0, :, -1]])
    assert set(np.unique(edges)) <= {CODE["air"], CODE["table"], CODE["table_foam"]}  # the body fits
    hu, _, t = out["limited"]
    body = [CODE["fat"], CODE["muscle"]]
    assert np.isin(t[0, 48, 0], body) and np.isin(t[0, 48, -1], body)  # the sides are cut off
    hu, _, t = out["circular"]
    assert hu[0, 0, 0] == hu[0, -1, -1] == -2048 and t[0, 0, 0] == CODE["padding"]
    yy, xx = np.mgrid[:96, :96]
    assert (t[0][np.hypot(yy - 47.5, xx - 47.5) < 40] != CODE["padding"]).all()
    # only the drawn view differs: anatomy (labels inside the view) is the same
    assert np.array_equal(out["full"][1], out["circular"][1])


def test_cohort_cases_are_volume_montages():
    cohort = phantom_cohort(3, size=64, seed=5)
    assert cohort.images.shape == cohort.labels.shape == (3, 64, 64)
    assert cohort.images.dtype == cohort.labels.dtype == np.uint8 and len(cohort) == 3
    assert cohort.labelled.dtype == bool and cohort.labelled.sum() == 1  # max(1, round(0.3))
    for i, m in enumerate(cohort.meta):
        hu, labels = phantom_volume(m.seed, (64, 32, 32))
        image, lab, idx = build_montage(hu, labels)
        assert np.array_equal(image, cohort.images[i]) and np.array_equal(lab, cohort.labels[i])
        assert tuple(idx) == m.slices
        assert m.lesion_pixels == int((cohort.labels[i] == 2).sum())
    again = phantom_cohort(3, size=64, seed=5)
    assert np.array_equal(again.images, cohort.images) and again.meta == cohort.meta
    assert np.array_equal(again.labelled, cohort.labelled)
    other = phantom_cohort(3, size=64, seed=6)
    assert not np.array_equal(other.images, cohort.images)
    # a case does not depend on the cohort size
    assert np.array_equal(phantom_cohort(1, size=64, seed=5).images[0], cohort.images[0])


def test_cohort_varies_kernel_and_fov():
    cohort = phantom_cohort(24, size=64, seed=0, labelled_fraction=0.25)
    assert set(cohort.column("fov")) == {"full", "limited", "circular"}
    assert set(cohort.column("kernel")) == {"smooth", "sharp"}
    assert cohort.labelled.sum() == 6
    n = cohort.column("n_lesions")
    assert (n >= 1).all() and len(set(n)) > 1
    assert np.array_equal(n, cohort.column("n_ground_glass") + cohort.column("n_consolidation"))
    # circular cases have black corners (-2048 HU), the others do not
    corners = cohort.images[:, 0, 0]
    assert np.array_equal(corners == 0, cohort.column("fov") == "circular")


def test_samples_use_the_phantom():
    img, lab = samples.chest_slice(seed=2, size=64, t=0.3)
    hu, ref_lab = phantom_slice(2, 64, 0.3, kernel="smooth", fov="full")
    assert np.array_equal(img, samples.hu_to_uint8(hu)) and np.array_equal(lab, ref_lab)
    m_img, m_lab = samples.chest_montage(seed=1, size=32)
    assert np.array_equal(m_img, phantom_montage(1, 64, kernel="smooth", fov="full")[0])


@pytest.mark.parametrize("call,exc,match", [
    (lambda: phantom_volume(-1, (2, 64, 64)), ValueError, "seed must be >= 0"),
    (lambda: phantom_volume(1.5, (2, 64, 64)), TypeError, "seed must be an integer"),
    (lambda: phantom_volume(0, (2, 16, 64)), ValueError, "shape"),
    (lambda: phantom_volume(0, (2, 64)), ValueError, "shape"),
    (lambda: phantom_volume(0, (2, 64, 64), kernel="B70f"), ValueError, "kernel"),
    (lambda: phantom_volume(0, (2, 64, 64), fov="wide"), ValueError, "fov"),
    (lambda: phantom_cohort(0), ValueError, "n must be >= 1"),
    (lambda: phantom_cohort(2, size=65), ValueError, "size must be even"),
    (lambda: phantom_cohort(2, size=64, labelled_fraction=1.5), ValueError, "labelled_fraction"),
])
def test_bad_arguments(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_bundled_pngs_are_the_current_phantom():
    """The committed sample PNGs and label maps are what write_bundled() makes now."""
    from PIL import Image

    from umsynth import samples

    made = {"chest_montage_0": samples.chest_montage(0), "chest_slice_1": samples.chest_slice(1)}
    for path in samples.bundled():
        img, lab = made[path.stem]
        assert np.array_equal(np.asarray(Image.open(path)), img), path.name
        labels = path.with_name(path.stem + "_labels.png")
        assert np.array_equal(np.asarray(Image.open(labels)), lab), labels.name
