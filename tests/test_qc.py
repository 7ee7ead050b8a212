"""The verdict per case (scripts/components/qc.py): each reason on masks and probability maps built for it, then end to end with
the shipped model on a phantom and on crops of it (tools/qc_cases.py): the whole scan, the pelvis alone, a scan that
cuts the liver."""

from __future__ import annotations

import csv
import logging

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import BUNDLE_ROOT, run_bundle
from monai.data import MetaTensor

from scripts.components import qc
from scripts.lib import phantom
from scripts.lib.visualize import dice
from tools import qc_cases

VOLUME_ML = (500, 3500)
AXIAL = np.diag([2.0, 2.0, 2.0, 1.0])  # array axis 2 runs head-foot
CORONAL = np.array([[2.0, 0, 0, 0], [0, 0, 2.0, 0], [0, 2.0, 0, 0], [0, 0, 0, 1]])  # array axis 1 runs head-foot


def _ball(shape=(64, 64, 64), centre=(32, 32, 32), radius=28.0):
    grid = np.indices(shape).astype(float)
    return np.sum((grid - np.reshape(centre, (3, 1, 1, 1))) ** 2, axis=0) <= radius**2


def test_an_empty_mask_is_no_liver():
    assert qc.verdict(np.zeros((8, 8, 8), bool), AXIAL, {}, VOLUME_ML, 0.5) == "no_liver"


def test_a_whole_liver_of_adult_size_is_ok_and_a_small_or_huge_one_is_implausible():
    ball = _ball()  # 28 voxels of 2 mm: about 735 mL
    assert qc.verdict(ball, AXIAL, {}, VOLUME_ML, 0.5) == "ok"
    assert qc.verdict(_ball(radius=10.0), AXIAL, {}, VOLUME_ML, 0.5) == "implausible_volume"  # ~34 mL
    assert qc.verdict(ball, np.diag([4.0, 4.0, 4.0, 1.0]), {}, VOLUME_ML, 0.5) == "implausible_volume"  # ~5.9 L


def test_cut_by_scan_is_judged_along_the_body_axis_only():
    """A liver touching the last slice along the head-foot axis is cut (its volume a lower bound, so no volume
    verdict); touching the edge of an axial slice is not."""
    ball = _ball(centre=(32, 32, 50), radius=20.0)  # reaches index 63 along axis 2 only after a shift
    touching = np.roll(ball, 14, axis=2)
    assert touching[:, :, -1].any() and not touching[:, -1, :].any()
    assert qc.verdict(touching, AXIAL, {}, (0, 1e9), 0.5) == "cut_by_scan"
    assert qc.verdict(touching, CORONAL, {}, (0, 1e9), 0.5) == "ok"  # axis 2 is left-right there
    assert qc.body_axis(CORONAL) == 1 and qc.body_axis(AXIAL) == 2
    small_cut = np.roll(_ball(radius=6.0, centre=(32, 32, 57)), 1, axis=2)  # a tip: far under the adult range
    assert qc.verdict(small_cut, AXIAL, {}, VOLUME_ML, 0.5) == "cut_by_scan"


def test_uncertain_reads_the_share_the_probabilities_left_and_reasons_join_in_order():
    sharp = torch.as_tensor(_ball().astype(np.float32))[None]
    blurred = torch.nn.functional.avg_pool3d(sharp[None], 9, stride=1, padding=4)[0]  # a thick band of doubt
    assert qc.uncertain_share(sharp) == 0.0
    assert qc.uncertain_share(blurred) > 0.3
    two_class = torch.cat([1 - blurred, blurred])  # background, liver: the same liver probability
    assert qc.uncertain_share(two_class) == pytest.approx(qc.uncertain_share(blurred))
    pred = MetaTensor(blurred, affine=torch.as_tensor(AXIAL))
    assert qc.RecordConfidence()(pred) is pred and pred.meta[qc.UNCERTAIN_KEY] == qc.uncertain_share(blurred)
    cut = np.roll(_ball(radius=20.0), 30, axis=2)
    meta = {qc.UNCERTAIN_KEY: 0.6}
    assert qc.verdict(cut, AXIAL, meta, VOLUME_ML, 0.5) == "cut_by_scan;uncertain"
    assert qc.verdict(cut, AXIAL, meta, VOLUME_ML, 0.7) == "cut_by_scan"


def test_a_find_too_small_to_be_a_liver_is_emptied_with_one_line(caplog):
    small = MetaTensor(torch.as_tensor(_ball(radius=5.0))[None].to(torch.uint8), affine=torch.as_tensor(AXIAL))
    small.meta["case_name"] = "pelvis_only"
    kept = MetaTensor(torch.as_tensor(_ball())[None].to(torch.uint8), affine=torch.as_tensor(AXIAL))
    with caplog.at_level(logging.WARNING, logger="scripts.components.qc"):
        assert int(qc.SmallLiverFilter(20)(small).sum()) == 0  # ~4 mL: gone
        assert int(qc.SmallLiverFilter(20)(kept).sum()) == int(_ball().sum())
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("pelvis_only: no liver found") and "20 mL" in line


@pytest.fixture(scope="module")
def phantom_crops(tmp_path_factory):
    """A wide3 phantom (lung apex to thighs) and its crops: the pelvis below the liver, a scan ending halfway down
    the liver, the liver's lowest 3 cm."""
    root = tmp_path_factory.mktemp("qc_case")
    image, label, affine = phantom.make_case(931002, spacing=(2.0, 2.0, 3.0), profile="wide3")
    img, lab = nib.Nifti1Image(np.asarray(image), affine), nib.Nifti1Image(np.asarray(label).astype(np.uint8), affine)
    (root / "in").mkdir()
    nib.save(img, root / "in" / "whole.nii.gz")
    found = qc_cases.crops(img, lab)
    for kind in ("pelvis", "cut_top", "tip3cm"):
        nib.save(img.slicer[found[kind]], root / "in" / f"{kind}.nii.gz")
    labels = {"whole": np.asarray(label) > 0, **{k: np.asarray(lab.slicer[found[k]].dataobj) > 0 for k in found}}
    proc = run_bundle("inference", ["inference.yaml"], input=root / "in", output_dir=root / "out", cwd=BUNDLE_ROOT)
    with open(root / "out" / "report.csv") as f:
        rows = {r["case"]: r for r in csv.DictReader(f)}
    return {"out": root / "out", "rows": rows, "labels": labels, "log": proc.stdout}


@pytest.mark.slow
def test_the_shipped_model_gives_verdicts_that_fit_the_field_of_view(phantom_crops):
    rows, out, labels = phantom_crops["rows"], phantom_crops["out"], phantom_crops["labels"]
    whole = np.asarray(nib.load(out / "whole_seg.nii.gz").dataobj) > 0
    assert dice(whole, labels["whole"]) > 0.9
    assert rows["whole"]["qc"] == "ok"
    assert rows["cut_top"]["qc"].startswith("cut_by_scan")
    assert rows["pelvis"]["qc"] == "no_liver"  # no liver in view: an empty mask, not a tiny false one
    assert float(rows["pelvis"]["liver_volume_ml"]) == 0.0
    assert not np.asarray(nib.load(out / "pelvis_seg.nii.gz").dataobj).any()
    tip = np.asarray(nib.load(out / "tip3cm_seg.nii.gz").dataobj) > 0
    assert rows["tip3cm"]["qc"] != "no_liver" and tip.any()  # the liver's last 3 cm are found, not dropped
    assert dice(tip, labels["tip3cm"]) > 0.7
    said = [line for line in phantom_crops["log"].splitlines() if "no liver found" in line]
    assert len(said) <= 1 and all("pelvis" in line for line in said)
