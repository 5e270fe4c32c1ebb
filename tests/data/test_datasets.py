"""umsynth.data.datasets: the training-item contract, UMs from disk and on the fly, augmentation."""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

import umsynth
from umsynth.data import io
from umsynth.data.datasets import (Augment, AugmentParams, MontageDataset, apply_geometry,
                                   superpixel_edges)
from umsynth.data.phantom import phantom_cohort, phantom_volume
from umsynth.data.prepare import PrepareConfig, prepare
from umsynth.masks import UMConfig

SIZE = 128
CROSS = ndimage.generate_binary_structure(2, 1)


@functools.lru_cache(maxsize=None)
def _cohort():
    return phantom_cohort(6, size=SIZE, seed=3, labelled_fraction=0.5)


def _edges_reference(labels):
    """4-neighbour label changes through scipy's rank filters (edge pixels repeat themselves)."""
    lab = labels.astype(np.int64)
    hi = ndimage.maximum_filter(lab, footprint=CROSS, mode="nearest")
    lo = ndimage.minimum_filter(lab, footprint=CROSS, mode="nearest")
    return (hi != lab) | (lo != lab)


def test_items_obey_the_contract():
    cohort = _cohort()
    tr = 30
    ds = MontageDataset.from_cohort(cohort, "all", tr=tr)
    assert len(ds) == 6
    for i in range(len(ds)):
        item = ds[i]
        assert set(item) == {"um", "edges", "ct", "seg", "has_label", "index"}
        for key in ("um", "edges", "ct"):
            assert item[key].dtype == torch.float32 and item[key].shape == (1, SIZE, SIZE)
        assert item["seg"].dtype == torch.int64 and item["seg"].shape == (SIZE, SIZE)
        assert item["has_label"].dtype == torch.bool and item["has_label"].shape == ()
        assert item["index"].dtype == torch.int64 and int(item["index"]) == i
        # independent recomputation of every map
        um, sp = umsynth.unsupervised_mask(cohort.images[i], n_segments=512, compactness=10,
                                           step=10, intensity="lab", return_labels=True)
        um_tr = (um.astype(np.float64) // tr) * tr / 127.5 - 1
        np.testing.assert_allclose(item["um"][0].numpy(), um_tr, atol=1e-6)
        assert -1 <= item["um"].min() and item["um"].max() <= 1
        np.testing.assert_array_equal(item["edges"][0].numpy(), _edges_reference(sp))
        np.testing.assert_allclose(item["ct"][0].numpy(), cohort.images[i] / 127.5 - 1, atol=1e-6)
        assert bool(item["has_label"]) == bool(cohort.labelled[i])
        want = cohort.labels[i] if cohort.labelled[i] else np.zeros((SIZE, SIZE))
        np.testing.assert_array_equal(item["seg"].numpy(), want)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["um"].shape == (4, 1, SIZE, SIZE) and batch["seg"].shape == (4, SIZE, SIZE)
    assert batch["has_label"].dtype == torch.bool and batch["has_label"].shape == (4,)


def test_cohort_subsets_are_disjoint():
    cohort = _cohort()
    lab = MontageDataset.from_cohort(cohort, "labelled")
    unl = MontageDataset.from_cohort(cohort, "unlabelled")
    assert set(lab.source_index) | set(unl.source_index) == set(range(6))
    assert not set(lab.source_index) & set(unl.source_index)
    assert cohort.labelled[lab.source_index].all() and not cohort.labelled[unl.source_index].any()
    item = unl[0]
    assert not item["has_label"] and (item["seg"] == 0).all()
    np.testing.assert_allclose(item["ct"][0].numpy(), cohort.images[unl.source_index[0]] / 127.5 - 1,
                               atol=1e-6)  # float32 item against a float64 reference
    with pytest.raises(ValueError, match="subset must be"):
        MontageDataset.from_cohort(cohort, "some")


def test_edges_function_matches_scipy():
    rng = np.random.default_rng(0)
    lab = ndimage.zoom(rng.integers(0, 5, (6, 7)), 5, order=0)
    np.testing.assert_array_equal(superpixel_edges(lab), _edges_reference(lab))
    # hand case: a vertical boundary marks both columns beside it
    hand = np.array([[1, 1, 2], [1, 1, 2]])
    np.testing.assert_array_equal(superpixel_edges(hand), [[0, 1, 1], [0, 1, 1]])


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """umsynth prepare's output for three phantom volumes."""
    root = tmp_path_factory.mktemp("prep")
    (root / "v").mkdir()
    for seed in range(3):
        hu, lab = phantom_volume(seed, shape=(24, 64, 64))
        io.write_nifti(root / "v" / f"p{seed}.nii.gz", hu)
        io.write_nifti(root / "v" / f"p{seed}_mask.nii.gz", lab)
    summary = prepare(root / "v", root / "out", PrepareConfig(um=UMConfig(n_segments=128)),
                      progress=False)
    assert summary.written == ["p0", "p1", "p2"]
    return root / "out"


def test_from_folder_disk_equals_on_the_fly(prepared):
    cfg = UMConfig(n_segments=128)
    disk = MontageDataset.from_folder(prepared, labelled=True, um_config=cfg)
    live = MontageDataset.from_folder(prepared, labelled=True, um_source="on_the_fly", um_config=cfg)
    assert disk.um_source == "disk" and live.um_source == "on_the_fly"
    other = MontageDataset.from_folder(prepared, labelled=True, um_config=UMConfig(n_segments=64))
    assert other.um_source == "on_the_fly"  # the UMs on disk were made with other settings
    assert disk.names == ["p0", "p1", "p2"]
    for i in range(3):
        a, b = disk[i], live[i]
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
        assert a["has_label"]
        np.testing.assert_array_equal(a["seg"].numpy(), io.read_label_png(prepared / "labels" / f"p{i}.png"))
    with pytest.raises(ValueError, match="every case has a label map: list the labelled ones"):
        MontageDataset.from_folder(prepared, labelled=False)


def test_from_folder_labelled_list_splits(prepared, tmp_path):
    import shutil

    root = tmp_path / "out"
    shutil.copytree(prepared, root)
    (root / "labelled.txt").write_text("p1\n")
    lab = MontageDataset.from_folder(root, labelled=True)
    unl = MontageDataset.from_folder(root, labelled=False)
    assert lab.names == ["p1"] and unl.names == ["p0", "p2"]
    assert not unl[0]["has_label"] and (unl[0]["seg"] == 0).all()
    (root / "labelled.txt").write_text("p1\nnobody\n")
    with pytest.raises(ValueError, match="cases without a label map: nobody"):
        MontageDataset.from_folder(root, labelled=True)


def test_from_flat_folder_of_montages(tmp_path):
    cohort = _cohort()
    io.write_png(tmp_path / "m0.png", cohort.images[0])
    io.write_png(tmp_path / "m0_labels.png", cohort.labels[0])
    io.write_png(tmp_path / "m1.png", cohort.images[1])
    lab = MontageDataset.from_folder(tmp_path, labelled=True, um_config=UMConfig(n_segments=64))
    unl = MontageDataset.from_folder(tmp_path, labelled=False)
    assert lab.names == ["m0"] and unl.names == ["m1"] and lab.um_source == "on_the_fly"
    np.testing.assert_array_equal(lab[0]["seg"].numpy(), cohort.labels[0])
    um = umsynth.unsupervised_mask(cohort.images[0], n_segments=64)
    np.testing.assert_allclose(lab[0]["um"][0].numpy(), um / 127.5 - 1, atol=1e-6)


def test_augment_flips_and_turns_are_closed_forms():
    cohort = _cohort()
    ds = MontageDataset.from_cohort(cohort, "labelled", augment=Augment(hflip=0.5, vflip=0.5, rot90=True))
    plain = MontageDataset.from_cohort(cohort, "labelled")
    seen = set()
    for epoch in range(4):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            p = ds.augment_params(i, (SIZE, SIZE))
            assert p.box == (0, 0, SIZE, SIZE)
            seen.add((p.hflip, p.vflip, p.k))

            def ref(a):
                a = a[..., ::-1] if p.hflip else a
                a = a[..., ::-1, :] if p.vflip else a
                return np.rot90(a, p.k, axes=(-2, -1))

            got, base = ds[i], plain[i]
            for key in ("um", "edges", "ct", "seg"):
                np.testing.assert_array_equal(got[key].numpy(), ref(base[key].numpy()))
    assert len(seen) >= 8  # the draws really vary


def test_augment_zoom_keeps_maps_consistent():
    cohort = _cohort()
    aug = Augment(hflip=0.5, vflip=0.5, rot90=True, zoom=(1.2, 1.8))
    ds = MontageDataset.from_cohort(cohort, "all", augment=aug, seed=7)
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            item = ds[i]
            um, edges = item["um"][0].numpy(), item["edges"][0].numpy().astype(bool)
            # the UM is constant on every connected piece of non-edge pixels (one superpixel each)
            comp, n = ndimage.label(~edges, structure=CROSS)
            for k in range(1, n + 1):
                assert np.unique(um[comp == k]).size == 1
            # and wherever the UM changes between 4-neighbours, both pixels are edges
            change = um[:, 1:] != um[:, :-1]
            assert edges[:, 1:][change].all() and edges[:, :-1][change].all()
            # labels: the transform of the label map, against torch's nearest-exact resize
            p = ds.augment_params(i, (SIZE, SIZE))
            y0, x0, h, w = p.box
            assert (h, w) != (SIZE, SIZE)
            seg0 = cohort.labels[i] if cohort.labelled[i] else np.zeros((SIZE, SIZE), np.uint8)
            crop = torch.from_numpy(seg0[y0:y0 + h, x0:x0 + w].astype(np.float32))[None, None]
            ref = F.interpolate(crop, size=(SIZE, SIZE), mode="nearest-exact")[0, 0].numpy()
            ref = ref[:, ::-1] if p.hflip else ref
            ref = ref[::-1] if p.vflip else ref
            np.testing.assert_array_equal(item["seg"].numpy(), np.rot90(ref, p.k))
            # CT: bilinear of the same crop (away from the crop border, where torch clamps)
            crop = torch.from_numpy(cohort.images[i][y0:y0 + h, x0:x0 + w].astype(np.float32))[None, None]
            ref = F.interpolate(crop, size=(SIZE, SIZE), mode="bilinear", align_corners=False)[0, 0].numpy()
            ref = ref[:, ::-1] if p.hflip else ref
            ref = ref[::-1] if p.vflip else ref
            ref = np.rot90(ref, p.k) / 127.5 - 1
            np.testing.assert_allclose(item["ct"][0].numpy()[1:-1, 1:-1], ref[1:-1, 1:-1], atol=1e-4)
    # deterministic per (seed, index, epoch)
    again = MontageDataset.from_cohort(cohort, "all", augment=aug, seed=7)
    again.set_epoch(1)
    for key in ("um", "ct", "seg", "edges"):
        torch.testing.assert_close(again[2][key], ds[2][key], rtol=0, atol=0)
    again.set_epoch(0)
    assert again.augment_params(2, (SIZE, SIZE)) != ds.augment_params(2, (SIZE, SIZE))


def test_apply_geometry_nearest_closed_form():
    a = np.arange(16).reshape(4, 4)
    # crop the lower-right 2x2 and double it: every source pixel becomes a 2x2 block
    got = apply_geometry(a, AugmentParams((2, 2, 2, 2), False, False, 0), linear=False)
    np.testing.assert_array_equal(got, np.kron([[10, 11], [14, 15]], np.ones((2, 2), int)))


def test_cache_is_bounded_and_exact():
    cohort = _cohort()
    cached = MontageDataset.from_cohort(cohort, "all", cache_size=2)
    fresh = MontageDataset.from_cohort(cohort, "all", cache_size=0)
    for i in (0, 1, 2, 0, 3):
        for key in ("um", "edges"):
            torch.testing.assert_close(cached[i][key], fresh[i][key], rtol=0, atol=0)
    assert len(cached._cache) == 2 and len(fresh._cache) == 0


def test_bad_arguments():
    img = np.zeros((2, 16, 16), np.uint8)
    with pytest.raises(TypeError, match=r"images\[0\] must be uint8"):
        MontageDataset(img.astype(np.float32))[0]
    with pytest.raises(ValueError, match="tr must be an integer in 1..255"):
        MontageDataset(img, tr=0)
    with pytest.raises(ValueError, match="um_source='disk' needs the UMs"):
        MontageDataset(img, um_source="disk")
    with pytest.raises(ValueError, match="labels has 1 maps for 2 images"):
        MontageDataset(img, img[:1])
    with pytest.raises(ValueError, match="images is empty"):
        MontageDataset(img[:0])
    with pytest.raises(ValueError, match="Augment.zoom"):
        Augment(zoom=(0.5, 1.0))
    with pytest.raises(ValueError, match="Augment.hflip"):
        Augment(hflip=2)
