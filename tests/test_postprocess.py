"""The liver-box resampling (scripts/components/postprocess.py) against the plain path it replaces: Invertd over the whole input
grid, then AsDiscreted and KeepLargestConnectedComponentd. Both run from configs/inference.yaml on a phantom CT
stored LPS at anisotropic spacing, with a soft liver probability made from the phantom's own label."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

from scripts.components import postprocess
from scripts.lib import phantom
from tests.conftest import BUNDLE_ROOT, CONFIGS

SHAPE, SPACING = (150, 140, 40), (2.4, 2.4, 5.0)


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    folder = tmp_path_factory.mktemp("post")
    image, label, affine = phantom.make_case(21, shape=SHAPE, spacing=SPACING, orientation="LPS")
    paths = {}
    for name, data in (("image", image), ("label", label)):
        paths[name] = str(folder / f"{name}.nii.gz")
        nib.save(nib.Nifti1Image(data, affine), paths[name])
    return paths, label, affine


def _config(**overrides):
    from monai.bundle import ConfigParser

    cfg = ConfigParser()
    cfg.read_config(str(CONFIGS / "inference.yaml"))
    cfg["bundle_root"] = str(BUNDLE_ROOT)
    cfg["input"] = str(BUNDLE_ROOT)
    for key, value in overrides.items():
        cfg[key] = value
    return cfg


def _network_output(paths, image, classes: int, island: bool = True):
    """Class probabilities on the network grid: the phantom label resampled there and blurred (a soft boundary),
    plus a small confident island away from the liver, carrying the image's metadata and trace as the inferer's
    output does."""
    from monai.data import MetaTensor
    from monai.transforms import EnsureChannelFirst, GaussianSmooth, LoadImage, SpatialResample

    label = EnsureChannelFirst()(LoadImage()(paths["label"]))
    onehot = (
        torch.cat([(label == c).float() for c in range(3)])
        if classes == 3
        else torch.cat([(label == 0).float(), (label > 0).float()])
    )
    prob = SpatialResample(mode="bilinear")(onehot, dst_affine=image.affine, spatial_size=image.shape[1:])
    prob = GaussianSmooth(sigma=1.0)(torch.as_tensor(prob))
    if island:
        prob[:, 2:6, 2:6, 2:6] = 0.0
        prob[1, 2:6, 2:6, 2:6] = 1.0  # a liver-like blob in a corner: the largest component must drop it
    prob = prob / prob.sum(0, keepdim=True).clamp_min(1e-6)
    return MetaTensor(prob, meta=dict(image.meta), applied_operations=list(image.applied_operations))


def _masks(paths, classes: int, island: bool = True):
    """The same network output through the box path and through the plain (whole-grid) path: MONAI's Invertd, as
    the benchmark reverts the liver-box resampling (tools/reverts/liver_box_resampling.yaml)."""
    out = {}
    whole_grid = ConfigParser.load_config_file(str(BUNDLE_ROOT / "tools" / "reverts" / "liver_box_resampling.yaml"))
    for box in (True, False):
        cfg = _config(num_classes=classes, **({} if box else whole_grid))
        data = cfg.get_parsed_content("preprocessing")({"image": paths["image"]})
        prob = _network_output(paths, data["image"], classes, island)
        data["pred"] = prob.log_()  # logits: the postprocessing starts with a softmax (log 0 = -inf: p = 0)
        post = cfg.get_parsed_content("postprocessing").flatten().transforms[:-1]  # all but SaveImaged
        for t in post:
            data = t(data)
        out["box" if box else "plain"] = data["pred"]
    return out


def _dice(a, b):
    return 2.0 * np.count_nonzero(a & b) / max(np.count_nonzero(a) + np.count_nonzero(b), 1)


def test_box_resampling_gives_the_plain_paths_mask_on_the_input_grid(case):
    paths, label, affine = case
    masks = _masks(paths, classes=2)
    box, plain = masks["box"], masks["plain"]
    assert tuple(box.shape) == (1, *SHAPE) == tuple(plain.shape)
    assert box.dtype == torch.uint8
    np.testing.assert_allclose(np.asarray(box.affine), affine, atol=1e-4)
    np.testing.assert_allclose(np.asarray(box.affine), np.asarray(plain.affine), atol=1e-6)
    b, p = np.asarray(box[0]) > 0, np.asarray(plain[0]) > 0
    differ = np.count_nonzero(b != p)
    assert differ <= 1e-3 * np.count_nonzero(p), f"{differ} voxels differ"
    from scipy import ndimage

    assert ndimage.label(b)[1] == 1 == ndimage.label(p)[1]  # the corner island is dropped by both
    assert _dice(b, label > 0) > 0.9  # the right place on the input grid: flips and offsets undone


def test_box_resampling_with_tumour_class_matches_argmax_path(case):
    paths, label, _ = case
    masks = _masks(paths, classes=3)
    box, plain = np.asarray(masks["box"][0]), np.asarray(masks["plain"][0])
    assert set(np.unique(box)) <= {0, 1, 2} and (box == 2).any()
    assert np.count_nonzero(box != plain) <= 1e-3 * np.count_nonzero(plain)
    assert _dice(box == 2, label == 2) > 0.8


def test_empty_prediction_gives_an_empty_mask_of_the_input_grid(case):
    paths, _, affine = case
    cfg = _config()
    image = cfg.get_parsed_content("preprocessing")({"image": paths["image"]})["image"]
    pred = _network_output(paths, image, 2)
    pred[1] = 0.1  # nowhere above the threshold
    out = postprocess.to_input_grid(pred[1:])
    assert tuple(out.shape) == (1, *SHAPE) and not out.any()
    np.testing.assert_allclose(np.asarray(out.affine), affine, atol=1e-4)


def test_a_prediction_without_trace_is_refused():
    from monai.data import MetaTensor

    with pytest.raises(ValueError, match="applied_operations"):
        postprocess.to_input_grid(MetaTensor(torch.rand(1, 8, 8, 8)))


def test_liver_box_maps_network_voxels_to_input_voxels():
    # network grid: 2 mm voxels; input grid: 1 mm voxels flipped along the first axis (as an LPS file read as RAS)
    net_affine = np.diag([2.0, 2.0, 2.0, 1.0])
    in_affine = np.diag([-1.0, 1.0, 1.0, 1.0])
    in_affine[0, 3] = 99.0  # input voxel i sits at x = 99 - i
    fg = torch.zeros(20, 20, 20, dtype=torch.bool)
    fg[5:8, 2:4, 10:11] = True  # x in [10, 14] mm, y in [4, 6] mm, z = 20 mm
    start, stop = postprocess.liver_box(fg, net_affine, in_affine, (100, 100, 100), margin=0)
    assert list(start) == [85, 4, 20] and list(stop) == [90, 7, 21]
    start, stop = postprocess.liver_box(fg, net_affine, in_affine, (100, 100, 100), margin=1)
    assert list(start) == [83, 2, 18] and list(stop) == [92, 9, 23]
    assert postprocess.liver_box(torch.zeros(4, 4, 4, dtype=torch.bool), net_affine, in_affine, (9, 9, 9)) is None


def test_the_mask_writer_writes_what_monais_writer_does_and_no_partial_file(case, tmp_path):
    """MaskWriter is MONAI's NibabelWriter writing through a temporary file: the same voxels, affine, dtype and header
    codes, and no temporary file left behind (fileio.atomic_path: a failed write leaves none either)."""
    from monai.transforms import SaveImage

    paths, _, affine = case
    box = _masks(paths, classes=2)["box"]
    assert box.any()
    written = {}
    for name, writer in (("monai", "NibabelWriter"), ("ours", postprocess.mask_writer("nifti"))):
        save = SaveImage(
            output_dir=str(tmp_path / name),
            output_postfix="seg",
            output_dtype=np.uint8,
            resample=False,
            separate_folder=False,
            print_log=False,
            writer=writer,
        )
        box.meta["filename_or_obj"] = "case.nii.gz"
        save(box)
        written[name] = nib.load(tmp_path / name / "case_seg.nii.gz")
    ref, img = written["monai"], written["ours"]
    assert img.get_data_dtype() == np.uint8 == ref.get_data_dtype()
    np.testing.assert_allclose(img.affine, ref.affine, atol=1e-6)
    np.testing.assert_allclose(img.affine, affine, atol=1e-4)
    for code in ("sform_code", "qform_code"):
        assert int(img.header[code]) == int(ref.header[code])
    assert np.array_equal(np.asarray(img.dataobj), np.asarray(ref.dataobj))
    assert sorted(p.name for p in (tmp_path / "ours").iterdir()) == ["case_seg.nii.gz"]  # no temporary file left
