"""The three workflows as users run them (`python -m monai.bundle run training|evaluation|inference`), on the phantom.

The `trained` fixture (conftest.py) trains for 3 short epochs; these tests check what that run wrote, then evaluate
and infer with its weights. Runs that other test files check too are conftest's session fixtures (`one_epoch`,
`resumed`, `evaluated`, `inferred`): each runs once. A variant whose command-line path another test here covers runs in
this process (conftest.run_in_process: MONAI's `run`, as the runner calls it).
"""

from __future__ import annotations

import csv
import json
import logging
import re

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import BUNDLE_ROOT, FAST, ROUND_TRIP_CASES, run_bundle, run_in_process
from scipy import ndimage

from scripts.lib import phantom


def epoch_losses(log: str) -> dict[int, float]:
    """Mean train_loss per epoch from the StatsHandler lines `Epoch: e/N, Iter: i/M -- train_loss: x`."""
    losses: dict[int, list[float]] = {}
    for epoch, loss in re.findall(r"Epoch: (\d+)/\d+, Iter: \d+/\d+ -- train_loss: ([0-9.]+)", log):
        losses.setdefault(int(epoch), []).append(float(loss))
    return {e: float(np.mean(v)) for e, v in losses.items()}


def test_training_lowers_the_loss_and_writes_the_checkpoints(trained):
    losses = epoch_losses(trained["log"])
    assert sorted(losses) == [1, 2, 3], trained["log"][-3000:]
    assert losses[3] < losses[1], f"training did not lower the loss: {losses}"

    # models/model.pt: the best weights by validation Dice, as a plain state dict that the inference network loads
    weights = torch.load(trained["models"] / "model.pt", weights_only=True)
    from monai.networks.nets import UNet

    net = UNet(3, 1, 2, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), num_res_units=2, norm="instance")
    net.load_state_dict(weights, strict=True)

    # the resumable checkpoint holds everything a resume needs
    latest = trained["models"] / "checkpoint_epoch=3.pt"
    state = torch.load(latest, weights_only=True)
    assert set(state) == {"network", "optimizer", "lr_scheduler", "trainer", "best_saver"}
    assert state["best_saver"]["_saved"] and state["best_saver"]["best_metric_epoch"] in (1, 2, 3)
    assert state["trainer"]["max_epochs"] == 3 and state["trainer"]["iteration"] > 0

    # the split is recorded, disjoint and complete
    split = json.loads((trained["runs"] / "split.json").read_text())
    train_images = {c["image"] for c in split["training"]}
    val_images = {c["image"] for c in split["validation"]}
    assert train_images and val_images and not train_images & val_images
    assert len(train_images | val_images) == 6

    # provenance says the weights come from the synthetic phantom
    provenance = json.loads((trained["models"] / "model_provenance.json").read_text())
    assert "PHANTOM" in provenance["trained_on"]

    # TensorBoard logs
    assert list(trained["runs"].glob("events.out.tfevents.*"))


def test_training_is_reproducible_with_the_same_seed(trained, one_epoch):
    """conftest's `one_epoch` run (another run of the same seed, for 1 epoch, from another folder) trains its epoch on
    the losses of the `trained` run's first epoch."""
    first = re.findall(r"Epoch: 1/\d+, Iter: \d+/\d+ -- train_loss: ([0-9.]+)", trained["log"])
    second = re.findall(r"Epoch: 1/\d+, Iter: \d+/\d+ -- train_loss: ([0-9.]+)", one_epoch["log"])
    assert first and first == second


def test_resume_continues_from_the_latest_checkpoint(resumed):
    """conftest's `resumed` run: a copy of the `trained` checkpoints resumed with --resume true --epochs 4 (its best
    score raised beforehand, for tests/test_interruption.py: nothing checked here depends on it)."""
    models, log = resumed["models"], resumed["log"]
    epochs = sorted(epoch_losses(log))
    assert epochs == [4], f"a resumed run must train only the remaining epoch, trained {epochs}"
    # one resumable checkpoint: the one the resume started from is replaced, not left beside the new one
    assert sorted(p.name for p in models.glob("checkpoint_epoch=*.pt")) == ["checkpoint_epoch=4.pt"]
    # the cosine schedule follows the new total: T_max 3 -> 4, not the first run's (whose rate ended at 0)
    assert "LR schedule stretched from 3 to 4 epochs" in log, log[-3000:]
    assert torch.load(models / "checkpoint_epoch=4.pt", weights_only=True)["lr_scheduler"]["T_max"] == 4


def test_inference_round_trip_keeps_shape_and_affine(inferred):
    """conftest's `inferred` run: a folder of phantom CTs in RAS, LPS and anisotropic LAS (ROUND_TRIP_CASES) segmented
    with the `trained` weights."""
    inputs, out, written, cases = inferred["in"], inferred["out"], inferred["written"], ROUND_TRIP_CASES
    for name, (image, _, affine) in written.items():
        src = nib.load(str(inputs / f"{name}.nii.gz"))
        seg = nib.load(str(out / f"{name}_seg.nii.gz"))
        assert seg.shape == image.shape
        assert seg.get_data_dtype() == np.uint8
        np.testing.assert_allclose(seg.affine, src.affine, atol=1e-5)
        assert nib.aff2axcodes(seg.affine) == nib.aff2axcodes(affine)
        mask = np.asarray(seg.dataobj)
        assert set(np.unique(mask)) <= {0, 1}
        assert ndimage.label(mask > 0, structure=np.ones((3, 3, 3)))[1] <= 1, "only the largest component may remain"
    with open(out / "report.csv") as f:
        rows = {r["case"]: r for r in csv.DictReader(f)}
    assert set(rows) == set(cases)
    for name in cases:
        seg = nib.load(str(out / f"{name}_seg.nii.gz"))
        expected_ml = float((np.asarray(seg.dataobj) > 0).sum()) * float(np.prod(seg.header.get_zooms()[:3])) / 1000
        assert float(rows[name]["liver_volume_ml"]) == pytest.approx(expected_ml, rel=1e-3, abs=1e-3)


def test_evaluation_matches_a_hand_computed_dice(evaluated):
    """conftest's `evaluated` run: the `trained` weights evaluated on 5 labelled phantom cases."""
    out = evaluated["out"]
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    split = json.loads(evaluated["datalist"].read_text())
    assert len(rows) == len(split["validation"])
    for case, row in zip(split["validation"], rows, strict=True):
        label_img = nib.load(case["label"])
        label = np.asarray(label_img.dataobj) > 0  # liver = every non-zero label
        pred = np.asarray(nib.load(str(out / f"{row['case']}_seg.nii.gz")).dataobj) > 0
        denom = label.sum() + pred.sum()
        dice = 2.0 * (label & pred).sum() / denom if denom else 1.0
        assert float(row["dice"]) == pytest.approx(dice, abs=1e-4)
        voxel_ml = float(np.prod(label_img.header.get_zooms()[:3])) / 1000
        assert float(row["reference_volume_ml"]) == pytest.approx(label.sum() * voxel_ml, rel=1e-4)
        assert float(row["volume_difference_ml"]) == pytest.approx((pred.sum() - label.sum()) * voxel_ml, abs=1e-2)
    with open(out / "metrics_summary.csv") as f:
        summary = {r["statistic"]: r for r in csv.DictReader(f)}
    assert float(summary["mean"]["dice"]) == pytest.approx(np.mean([float(r["dice"]) for r in rows]), abs=1e-4)
    assert {"mean", "median"} <= set(summary)


def test_missing_weights_stop_inference_unless_untrained_run_is_asked(phantom_dir, tmp_path):
    """Both runs in this process (run_in_process). On the command line, a weights check that fails is a one-line exit
    (tests/test_robustness.py::test_bad_weights_stop_inference_with_one_line, a run_bundle run), and --load_pretrain
    false runs and writes masks (the run_bundle runs of tests/test_robustness.py with --load_pretrain false)."""
    out = tmp_path / "out"
    missing = tmp_path / "nowhere" / "model.pt"
    with pytest.raises(SystemExit) as stop:
        run_in_process(
            "inference",
            ["inference.yaml"],
            bundle_root=BUNDLE_ROOT,
            dataset_dir=phantom_dir,
            output_dir=out,
            ckpt_path=missing,
            **FAST,
        )
    assert isinstance(stop.value.code, str)  # printed as the last line, exit status 1
    assert str(missing) in stop.value.code and "not found" in stop.value.code
    assert not out.exists() or not any(out.iterdir())

    warned: list[str] = []  # the bundle's warnings, which the runner's console handler prints
    catch = logging.Handler(logging.WARNING)
    catch.emit = lambda record: warned.append(record.getMessage())
    logging.getLogger("scripts.components.inputs").addHandler(catch)
    try:
        run_in_process(
            "inference",
            ["inference.yaml"],
            bundle_root=BUNDLE_ROOT,
            dataset_dir=phantom_dir,
            output_dir=out,
            ckpt_path=missing,
            load_pretrain="false",
            **FAST,
        )
    finally:
        logging.getLogger("scripts.components.inputs").removeHandler(catch)
    assert any("UNTRAINED" in message for message in warned), warned
    assert sorted(p.name for p in out.glob("*_seg.nii.gz")) == ["liver_006_seg.nii.gz", "liver_007_seg.nii.gz"]


@pytest.mark.parametrize("transfer_syntax", ["explicit", "jpeg2000"])
def test_inference_on_a_dicom_series_folder(trained, tmp_path, transfer_syntax):
    """A DICOM series folder is one case: the mask is named after the folder and lies on the series' own grid.

    The explicit-VR series runs on the command line (run_bundle); the JPEG 2000 one, whose difference is only how the
    slices are decoded, in this process (run_in_process)."""
    from scripts.lib import dicom
    from scripts.lib.dicom import write as dicom_write

    image, _, affine = phantom.make_case(7, shape=(48, 40, 24), spacing=(8.0, 8.0, 9.0), orientation="LPS")
    series = tmp_path / "CT_series"
    dicom_write.write_series(image, affine, str(series), transfer_syntax=transfer_syntax)
    volume, dicom_affine, _ = dicom.read_series(str(series))
    out = tmp_path / "out"
    (run_bundle if transfer_syntax == "explicit" else run_in_process)(
        "inference",
        ["inference.yaml"],
        bundle_root=BUNDLE_ROOT,
        input=series,
        output_dir=out,
        ckpt_path=trained["models"] / "model.pt",
        **FAST,
    )
    seg = nib.load(str(out / "CT_series_seg.nii.gz"))
    assert seg.shape == volume.shape
    np.testing.assert_allclose(seg.affine, dicom_affine, atol=1e-4)
    assert seg.get_data_dtype() == np.uint8


def test_training_curves_from_a_real_training_log(trained, tmp_path):
    from PIL import Image

    from scripts.lib import visualize

    png = visualize.curves(str(trained["runs"]), str(tmp_path / "curves.png"))
    info = json.loads(Image.open(png).text["Description"])
    val = visualize.read_scalars(str(trained["runs"]))["val_mean_dice"]
    assert len(val) == 3  # one validation per epoch (val_interval 1)
    assert info["best_val_mean_dice"] == pytest.approx(max(v for _, v, _ in val), abs=1e-6)
    losses = epoch_losses(trained["log"])
    # the log prints losses to 4 decimals, so the per-epoch means agree to about 1e-4
    assert [e for e, _ in info["loss_epoch_means"]] == sorted(losses)
    np.testing.assert_allclose([m for _, m in info["loss_epoch_means"]], [losses[e] for e in sorted(losses)], atol=1e-3)
