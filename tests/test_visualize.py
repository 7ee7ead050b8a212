"""Tests of scripts/lib/visualize.py: overlay, grid and curves pictures, with real NIfTI, PNG and TensorBoard files."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from scripts.commands import visualize as viz_cli
from scripts.lib import phantom
from scripts.lib import visualize as viz
from scripts.lib.metrics import dice

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A small volume in RAS+ voxel order: i grows towards the patient's right, j anterior, k superior.
SHAPE = (40, 32, 20)
SPACING = (1.0, 1.5, 3.0)
LIVER_HU, BODY_HU = 50, 0


def _grey(hu, window=(50, 400)):
    """The documented windowing: grey = round(clip((HU - (level - width / 2)) / width, 0, 1) * 255)."""
    level, width = window
    return int(round(min(max((hu - (level - width / 2)) / width, 0.0), 1.0) * 255))


LIVER_GREY, BODY_GREY = _grey(LIVER_HU), _grey(BODY_HU)  # 128 and 96


def _synthetic_case(shift=0):
    """(image HU int16, label uint8, pred uint8, RAS affine): a box 'liver' on the patient's right, in a body.

    The liver occupies i 24..34 (high i = patient's right), j 12..24, k 6..14 (centre (29, 18, 10)); a tumour
    i 27..29, j 16..18, k 9..10; the prediction is the label moved by ``shift`` voxels along i.
    """
    img = np.full(SHAPE, -1000, np.int16)
    img[2:-2, 2:-2, :] = BODY_HU
    label = np.zeros(SHAPE, np.uint8)
    label[24:35, 12:25, 6:15] = 1
    label[27:30, 16:19, 9:11] = 2
    img[label > 0] = LIVER_HU
    pred = np.roll(label, shift, axis=0)
    affine = np.diag([*SPACING, 1.0])
    affine[:3, 3] = (-20.0, -24.0, -30.0)
    return img, label, pred, affine


def _save(path, data, affine):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return str(path)


def _to_lps(data, affine):
    """The same physical volume stored with voxel axes pointing Left, Posterior, Superior."""
    flipped = data[::-1, ::-1, :].copy()
    new = affine.copy()
    n = data.shape
    # voxel i' = n-1-i: world = A @ [n-1-i', ...] -> column negated, origin moved to the old last voxel.
    for ax in (0, 1):
        new[:3, 3] += affine[:3, ax] * (n[ax] - 1)
        new[:3, ax] = -affine[:3, ax]
    return flipped, new


def _to_permuted(data, affine):
    """The same physical volume stored with voxel axes (S, R, A): a permuted, non-canonical layout."""
    permuted = np.transpose(data, (2, 0, 1)).copy()
    new = affine.copy()
    new[:3, :3] = affine[:3, [2, 0, 1]]
    return permuted, new


def _write_case(folder, name="case_7", shift=2, orient=None):
    img, label, pred, affine = _synthetic_case(shift)
    paths = {}
    for key, arr in (("image", img), ("label", label), ("pred", pred)):
        data, aff = arr, affine
        if orient is not None:
            data, aff = orient(arr, affine)
        paths[key] = _save(os.path.join(folder, key, f"{name}.nii.gz"), data, aff)
    return paths


PHANTOM_SHAPE = (48, 48, 24)  # stored (i, j, k) of an R/L, A/P, S/I-ordered phantom; small, so tests stay fast


def _phantom_case(folder, name, seed=0, orientation="RAS", erode=1, shape=PHANTOM_SHAPE):
    """Phantom image/label and a 'prediction' = the label's liver eroded ``erode`` times (tumour kept inside it).

    Erosion has no preferred direction, so the same seed in any ``orientation`` (with ``shape`` given in stored
    order) is the same physical case. Returns ``{"image", "label", "pred"}`` paths under ``folder/<kind>/``.
    """
    from scipy import ndimage

    img, label, affine = phantom.make_case(seed, shape=shape, orientation=orientation)
    liver = ndimage.binary_erosion(label > 0, iterations=erode) if erode else label > 0
    pred = np.where(liver, np.where(label == 2, 2, 1), 0).astype(np.uint8)
    paths = {}
    for kind, arr in (("image", img), ("label", label), ("pred", pred)):
        os.makedirs(os.path.join(folder, kind), exist_ok=True)
        paths[kind] = phantom.save_nifti(arr, affine, os.path.join(folder, kind, f"{name}.nii.gz"))
    return paths


def _png(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")), dict(im.text), im.size


def _blend(grey, colour):
    return tuple(int(round((1 - viz.FILL_ALPHA) * grey + viz.FILL_ALPHA * c)) for c in colour)


# --------------------------------------------------------------------------------------------------------- helpers


def test_dice_by_hand():
    a = np.zeros((4, 4, 4), bool)
    b = np.zeros((4, 4, 4), bool)
    a[0, 0, :4] = True  # 4 voxels
    b[0, 0, 2:4] = True
    b[1, 1, :2] = True  # 4 voxels, 2 shared
    assert dice(a, b) == pytest.approx(2 * 2 / 8)
    assert dice(a, a) == 1.0
    assert dice(a, np.zeros_like(a)) == 0.0
    assert dice(np.zeros_like(a), np.zeros_like(a)) == 1.0
    with pytest.raises(ValueError):
        dice(a, b[:2])


def test_display_slice_is_radiological():
    nx, ny, nz = SHAPE
    i, j, k = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")
    code = i * 10000 + j * 100 + k
    ax = viz.display_slice(code, "axial", 5)
    assert ax.shape == (ny, nx)
    # row r, column c of the axial view is voxel (nx-1-c, ny-1-r, 5): patient's right on the left, anterior up.
    for r, c in [(0, 0), (3, 7), (ny - 1, nx - 1)]:
        assert ax[r, c] == (nx - 1 - c) * 10000 + (ny - 1 - r) * 100 + 5
    co = viz.display_slice(code, "coronal", 4)
    assert co.shape == (nz, nx)
    assert co[2, 9] == (nx - 1 - 9) * 10000 + 4 * 100 + (nz - 1 - 2)  # superior up, right on the left
    sa = viz.display_slice(code, "sagittal", 11)
    assert sa.shape == (nz, ny)
    assert sa[1, 3] == 11 * 10000 + (ny - 1 - 3) * 100 + (nz - 1 - 1)  # superior up, anterior on the left
    assert viz.plane_spacing(SPACING, "axial") == (1.5, 1.0)
    assert viz.plane_spacing(SPACING, "coronal") == (3.0, 1.0)
    assert viz.plane_spacing(SPACING, "sagittal") == (3.0, 1.5)


def test_liver_centre():
    img, label, pred, _ = _synthetic_case()
    assert viz.liver_centre(label, pred) == (29, 18, 10)  # centre of the box i 24..34, j 12..24, k 6..14
    assert viz.liver_centre(None, pred) == (29, 18, 10)
    empty = np.zeros(SHAPE, np.uint8)
    assert viz.liver_centre(empty, np.roll(label, 3, axis=0)) == (32, 18, 10)  # empty label: the prediction's
    assert viz.liver_centre(empty, empty) == (20, 16, 10)  # nothing: the volume centre


def test_render_slice_colours_at_known_voxels():
    img, label, pred, _ = _synthetic_case(shift=3)
    nx, ny, _ = SHAPE
    k = 10
    rgb = viz.render_slice(img, label, pred, plane="axial", index=k, window=(50, 400))
    assert rgb.dtype == np.uint8 and rgb.shape == (ny, nx, 3)

    def px(i, j):
        return tuple(int(v) for v in rgb[ny - 1 - j, nx - 1 - i])

    assert px(25, 14) == _blend(LIVER_GREY, viz.LABEL_RGB)  # liver voxel, not on the prediction's outline
    assert px(28, 17) == _blend(LIVER_GREY, viz.LABEL_TUMOUR_RGB)  # tumour voxel (label 2)
    assert px(10, 14) == (BODY_GREY,) * 3  # body outside the liver: plain grey
    assert px(36, 14) == (BODY_GREY,) * 3  # inside the prediction only, off its outline: no colour
    assert px(0, 0) == (0, 0, 0)  # air at -1000 HU
    # The prediction's outline: exactly the pred > 0 pixels with a 4-neighbour outside the mask.
    p = viz.display_slice(pred, "axial", k) > 0
    pad = np.pad(p, 1)
    inner = pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:]
    boundary = p & ~inner
    magenta = np.all(rgb == viz.PRED_RGB, axis=2)
    assert boundary.any()
    assert np.array_equal(magenta, boundary)
    # pred == 2 outline in the tumour colour, inside the predicted tumour.
    cyan = np.all(rgb == viz.PRED_TUMOUR_RGB, axis=2)
    assert cyan.any()
    assert np.all(viz.display_slice(pred, "axial", k)[cyan] == 2)
    # A wider outline stays within `width` pixels of the edge.
    wide = viz.render_slice(img, label, pred, plane="axial", index=k, contour_width=2)
    wide_magenta = np.all(wide == viz.PRED_RGB, axis=2)
    assert wide_magenta.sum() > magenta.sum() and np.all(p[wide_magenta])
    from scipy import ndimage

    depth = ndimage.distance_transform_cdt(p, metric="taxicab")
    assert depth[wide_magenta].max() <= 2


# --------------------------------------------------------------------------------------------------------- overlay


def test_overlay_png_size_colours_and_title(tmp_path):
    paths = _write_case(tmp_path, "liver_7", shift=2)
    out = viz.overlay(paths["image"], tmp_path / "o.png", label=paths["label"], pred=paths["pred"], dpi=50)
    assert out == str(tmp_path / "o.png")
    rgb, text, size = _png(out)
    assert size == (int(viz.OVERLAY_FIGSIZE[0] * 50), int(viz.OVERLAY_FIGSIZE[1] * 50))
    _, label, pred, _ = _synthetic_case(shift=2)
    both = np.count_nonzero((label > 0) & (pred > 0))
    expected = 2 * both / (np.count_nonzero(label) + np.count_nonzero(pred))
    assert text["Title"] == f"liver_7   liver Dice {expected:.3f}"
    info = json.loads(text["Description"])
    assert info["liver_dice"] == pytest.approx(expected)
    nx, ny, nz = SHAPE
    assert info["centre_canonical_ijk"] == [29, 18, 10]  # the label's centroid
    left, top, right, bottom = info["panels_px"]["axial"]
    # The axial panel keeps the physical aspect: width / height = (nx * 1.0 mm) / (ny * 1.5 mm).
    assert (right - left) / (bottom - top) == pytest.approx((nx * SPACING[0]) / (ny * SPACING[1]), rel=0.03)

    def axial_px(i, j):
        col = left + (nx - 1 - i + 0.5) / nx * (right - left)
        row = top + (ny - 1 - j + 0.5) / ny * (bottom - top)
        return rgb[int(row), int(col)].astype(int)

    # The prediction is the label moved 2 voxels to the patient's right: i 24..25 are label only (fill, no outline).
    liver = axial_px(25, 18)  # a liver voxel: the label fill, in the left half (patient's right)
    assert np.abs(liver - _blend(LIVER_GREY, viz.LABEL_RGB)).max() <= 4
    assert (nx - 1 - 25 + 0.5) / nx < 0.5
    body = axial_px(8, 18)  # body on the patient's left: plain grey, in the right half
    assert np.abs(body - BODY_GREY).max() <= 4
    assert np.abs(axial_px(25, 28) - BODY_GREY).max() <= 4  # anterior to the liver (up in the picture): no fill
    # The prediction outline is in the picture, in the axial panel.
    panel = rgb[int(top) : int(bottom), int(left) : int(right)]
    assert np.all(panel == viz.PRED_RGB, axis=2).sum() > 20


def test_overlay_same_picture_for_ras_lps_and_permuted(tmp_path):
    # One phantom case stored three ways: RAS, LPS (DICOM-like) and axes permuted (S, R, A).
    stored = {"RAS": PHANTOM_SHAPE, "LPS": PHANTOM_SHAPE, "SRA": (PHANTOM_SHAPE[2], PHANTOM_SHAPE[0], PHANTOM_SHAPE[1])}
    pictures = {}
    for code, shape in stored.items():
        paths = _phantom_case(tmp_path / code, "liver_1", seed=4, orientation=code, shape=shape)
        assert "".join(nib.aff2axcodes(nib.load(paths["image"]).affine)) == code
        out = viz.overlay(paths["image"], tmp_path / f"{code}.png", label=paths["label"], pred=paths["pred"], dpi=40)
        rgb, text, _ = _png(out)
        pictures[code] = (rgb, text["Title"], json.loads(text["Description"]))
    ras, lps, sra = pictures["RAS"], pictures["LPS"], pictures["SRA"]
    # The title and the three panels are pixel for pixel the same; only the slice numbers above the panels and the
    # footnote, which give voxel indices of each file's own storage order, differ.
    assert ras[2]["panels_px"] == lps[2]["panels_px"] == sra[2]["panels_px"]
    for left, top, right, bottom in ras[2]["panels_px"].values():
        box = (slice(int(top), int(np.ceil(bottom)) + 1), slice(int(left), int(np.ceil(right)) + 1))
        assert np.array_equal(ras[0][box], lps[0][box])
        assert np.array_equal(ras[0][box], sra[0][box])
    assert ras[1] == lps[1] == sra[1]
    title_rows = slice(0, int(min(box[1] for box in ras[2]["panels_px"].values())) - 20)
    assert np.array_equal(ras[0][title_rows], lps[0][title_rows])
    i, j, k = ras[2]["centre_canonical_ijk"]
    assert ras[2]["centre_file_ijk"] == [i, j, k]
    assert lps[2]["centre_file_ijk"] == [PHANTOM_SHAPE[0] - 1 - i, PHANTOM_SHAPE[1] - 1 - j, k]
    assert sra[2]["centre_file_ijk"] == [k, i, j]
    # Liver Dice in the title, by hand from the files.
    label = np.asanyarray(nib.load(str(tmp_path / "RAS" / "label" / "liver_1.nii.gz")).dataobj) > 0
    pred = np.asanyarray(nib.load(str(tmp_path / "RAS" / "pred" / "liver_1.nii.gz")).dataobj) > 0
    expected = 2.0 * np.sum(label & pred) / (np.sum(label) + np.sum(pred))
    assert 0.5 < expected < 0.95
    assert ras[1] == f"liver_1   liver Dice {expected:.3f}"
    # The phantom's liver is on the patient's right: in the axial panel the green fill lies left of the middle.
    left, top, right, bot = (int(round(v)) for v in ras[2]["panels_px"]["axial"])
    panel = ras[0][top:bot, left:right].astype(int)
    green = (panel[..., 1] - panel[..., 0] > 40) & (panel[..., 1] - panel[..., 2] > 40)
    assert green.sum() > 100
    assert np.nonzero(green)[1].mean() < 0.45 * panel.shape[1]


def test_overlay_image_only_and_nibabel_inputs(tmp_path):
    img, label, _, affine = _synthetic_case()
    out = viz.overlay(nib.Nifti1Image(img, affine), tmp_path / "sub" / "only.png", dpi=30)
    _, text, size = _png(out)
    assert size == (int(viz.OVERLAY_FIGSIZE[0] * 30), int(viz.OVERLAY_FIGSIZE[1] * 30))
    assert "Dice" not in text["Title"]
    assert json.loads(text["Description"])["centre_canonical_ijk"] == [20, 16, 10]  # no label: volume centre
    out = viz.overlay(nib.Nifti1Image(img, affine), tmp_path / "l.png", label=nib.Nifti1Image(label, affine), dpi=30)
    assert "Dice" not in _png(out)[1]["Title"]  # Dice only with both label and prediction


def test_overlay_rejects_mismatched_grid_and_missing_files(tmp_path):
    paths = _write_case(tmp_path, "liver_2")
    img, label, _, affine = _synthetic_case()
    shifted = affine.copy()
    shifted[0, 3] += 5.0
    bad_grid = _save(tmp_path / "bad" / "moved.nii.gz", label, shifted)
    bad_shape = _save(tmp_path / "bad" / "small.nii.gz", label[:-1], affine)
    out = tmp_path / "x.png"
    for bad in (bad_grid, bad_shape):
        with pytest.raises(ValueError) as err:
            viz.overlay(paths["image"], out, label=bad)
        assert bad in str(err.value) and paths["image"] in str(err.value)
        with pytest.raises(ValueError, match="moved|small"):
            viz.overlay(paths["image"], out, pred=bad)
    with pytest.raises(FileNotFoundError, match="nothere"):
        viz.overlay(tmp_path / "nothere.nii.gz", out)
    assert sorted(os.listdir(tmp_path)) == ["bad", "image", "label", "pred"]  # no output, no temporary file


def test_failed_write_leaves_no_temporary_file(tmp_path):
    paths = _write_case(tmp_path, "liver_3")
    target = tmp_path / "out" / "taken.png"
    target.mkdir(parents=True)  # a folder where the PNG should go: the final rename fails
    with pytest.raises(OSError):
        viz.overlay(paths["image"], target, dpi=20)
    assert os.listdir(tmp_path / "out") == ["taken.png"] and target.is_dir()


# ------------------------------------------------------------------------------------------------------------ grid


def test_order_worst_first():
    cases = [
        {"name": "a", "dice": 0.9},
        {"name": "b", "dice": 0.5},
        {"name": "c", "dice": float("nan")},
        {"name": "d", "dice": 0.7},
        {"name": "e", "dice": 0.5},
    ]
    assert [c["name"] for c in viz.order_worst_first(cases)] == ["c", "b", "e", "d", "a"]


def test_grid_orders_worst_first_and_writes_png(tmp_path):
    cases = []
    for name, seed, erode in (("good", 0, 0), ("bad", 1, 2), ("middle", 2, 1)):
        paths = _phantom_case(tmp_path, name, seed=seed, erode=erode)
        cases.append({"name": name, **paths})
    out = viz.grid(cases, tmp_path / "grid.png")
    rgb, text, size = _png(out)
    info = json.loads(text["Description"])
    assert info["order"] == ["bad", "middle", "good"]
    assert info["dice"][2] == 1.0 and info["dice"][0] < info["dice"][1] < 1.0
    assert viz.grid_figsize(3) == (2 * viz.GRID_TILE_INCHES, 2 * viz.GRID_TILE_INCHES + viz.GRID_MARGIN_INCHES)
    assert size == tuple(round(v * viz.GRID_DPI) for v in viz.grid_figsize(3))
    assert np.all(rgb == viz.PRED_RGB, axis=2).sum() > 50
    # Given Dice values win over computed ones; max_cases keeps the worst.
    cases[0]["dice"] = 0.1
    out = viz.grid(cases, tmp_path / "grid2.png", max_cases=2)
    info = json.loads(_png(out)[1]["Description"])
    assert info["order"] == ["good", "bad"] and info["num_cases"] == 3
    with pytest.raises(ValueError):
        viz.grid([], tmp_path / "empty.png")


def test_read_metrics_formats(tmp_path):
    bundle_csv = tmp_path / "metrics.csv"  # scripts.components.handlers.CaseTable: case, ..., dice
    bundle_csv.write_text("case,liver_volume_ml,dice,hd95_mm\nliver_1,1500.0,0.9512,3.1\nliver_2,1400.0,,nan\n")
    m = viz.read_metrics(str(bundle_csv))
    assert m["liver_1"] == 0.9512 and np.isnan(m["liver_2"])
    monai_csv = tmp_path / "mean_dice_raw.csv"  # MONAI MetricsSaver: filename (a path), class0..., mean
    monai_csv.write_text("filename\tclass0\tclass1\tmean\n/data/imagesTr/liver_3.nii.gz\t0.9000\t0.5000\t0.7000\n")
    assert viz.read_metrics(str(monai_csv)) == {"liver_3": 0.7}
    assert viz.read_metrics(str(monai_csv), dice_column="class0") == {"liver_3": 0.9}
    with pytest.raises(ValueError, match="class7"):
        viz.read_metrics(str(monai_csv), dice_column="class7")
    assert viz.metrics_for_case({"liver_1_seg": 0.5}, "liver_1") == 0.5
    assert viz.metrics_for_case({"liver_10": 0.5}, "liver_1") is None


def test_grid_cli_pairs_seg_suffix_and_reads_metrics(tmp_path, capsys):
    for name, erode in (("liver_1", 0), ("liver_2", 2), ("liver_10", 1)):
        paths = _phantom_case(tmp_path, name, seed=int(name.split("_")[1]), erode=erode)
        # MONAI SaveImage names: NAME_seg.nii.gz, in a per-case subfolder when separate_folder is on.
        seg = os.path.join(os.path.dirname(paths["pred"]), name if name == "liver_2" else "", f"{name}_seg.nii.gz")
        os.makedirs(os.path.dirname(seg), exist_ok=True)
        os.rename(paths["pred"], seg)
    # An image without a prediction is skipped.
    _phantom_case(tmp_path / "extra", "liver_99", seed=99)
    os.rename(tmp_path / "extra" / "image" / "liver_99.nii.gz", tmp_path / "image" / "liver_99.nii.gz")
    metrics = tmp_path / "metrics.csv"
    metrics.write_text("case,liver_volume_ml,dice\nliver_1,10.0,0.95\nliver_2,10.0,0.20\nliver_10,10.0,0.60\n")
    out = tmp_path / "g.png"
    args = [
        "grid",
        "--images",
        str(tmp_path / "image"),
        "--labels",
        str(tmp_path / "label"),
        "--preds",
        str(tmp_path / "pred"),
        "--output",
        str(out),
    ]
    assert viz_cli.main(args + ["--metrics", str(metrics)]) == 0
    info = json.loads(_png(out)[1]["Description"])
    assert info["order"] == ["liver_2", "liver_10", "liver_1"]
    assert info["dice"] == [0.20, 0.60, 0.95] and info["num_cases"] == 3
    # Without the CSV the Dice values are computed: liver_1 (not eroded) is perfect.
    assert viz_cli.main(args) == 0
    info = json.loads(_png(out)[1]["Description"])
    assert info["order"] == ["liver_2", "liver_10", "liver_1"] and info["dice"][2] == 1.0
    # A prediction without an image: one error line, exit 1.
    os.rename(tmp_path / "extra" / "label" / "liver_99.nii.gz", tmp_path / "pred" / "stray_seg.nii.gz")
    capsys.readouterr()
    assert viz_cli.main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "stray_seg.nii.gz" in err[0]


# ---------------------------------------------------------------------------------------------------------- curves


def _write_training_log(log_dir, epochs=3, iters=5, val_epochs=None, with_val=True, with_loss=True):
    """Event files as the bundle writes them: the trainer's train_loss per iteration, the evaluator's val_mean_dice
    per validation (step = trainer epoch), from two writers; the evaluator's in a subfolder."""
    from torch.utils.tensorboard import SummaryWriter

    val_epochs = list(range(1, epochs + 1)) if val_epochs is None else val_epochs
    rng = np.random.default_rng(0)
    losses = {}
    vals = {}
    t = 1_000_000.0
    train = SummaryWriter(log_dir=str(log_dir))
    evaluator = SummaryWriter(log_dir=str(log_dir / "eval"))
    for e in range(1, epochs + 1):
        for n in range(iters):
            step = (e - 1) * iters + n + 1
            losses[step] = float(1.0 / e + 0.05 * rng.random())
            t += 1.0
            if with_loss:
                train.add_scalar("train_loss", losses[step], step, walltime=t)
        if e in val_epochs:
            vals[e] = {1: 0.5, 2: 0.8, 3: 0.7, 4: 0.75}.get(e, 0.6)
            t += 5.0
            if with_val:
                evaluator.add_scalar("val_mean_dice", vals[e], e, walltime=t)
    train.close()
    evaluator.close()
    return losses, vals


def test_curves_from_real_event_files(tmp_path):
    log_dir = tmp_path / "runs"
    losses, vals = _write_training_log(log_dir, epochs=3, iters=5)
    out = viz.curves(log_dir, tmp_path / "curves.png")
    _, text, size = _png(out)
    assert size == (viz.CURVES_FIGSIZE[0] * viz.CURVES_DPI, viz.CURVES_FIGSIZE[1] * viz.CURVES_DPI)
    info = json.loads(text["Description"])
    assert info["event_files"] == 2 and info["missing_tags"] == []
    assert info["iterations_per_epoch"] == 5
    assert info["best_val_mean_dice"] == pytest.approx(0.8) and info["best_epoch"] == 2
    expected = [[e, np.mean([losses[s] for s in range((e - 1) * 5 + 1, e * 5 + 1)])] for e in (1, 2, 3)]
    assert [m[0] for m in info["loss_epoch_means"]] == [1, 2, 3]
    assert [m[1] for m in info["loss_epoch_means"]] == pytest.approx([m[1] for m in expected], rel=1e-6)


def test_read_scalars_later_write_wins(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    first = SummaryWriter(log_dir=str(tmp_path / "runs"))  # a run stopped after iteration 3 ...
    for step in (1, 2, 3):
        first.add_scalar("train_loss", 1.0, step, walltime=100.0 + step)
    first.close()
    resumed = SummaryWriter(log_dir=str(tmp_path / "runs" / "resumed"))  # ... and resumed from iteration 2
    for step in (2, 3, 4):
        resumed.add_scalar("train_loss", 0.5, step, walltime=200.0 + step)
    resumed.close()
    series = viz.read_scalars(tmp_path / "runs")
    assert [(s, v) for s, v, _ in series["train_loss"]] == [(1, 1.0), (2, 0.5), (3, 0.5), (4, 0.5)]


def test_infer_iterations_per_epoch():
    loss = [(s, 0.5, float(s)) for s in range(1, 13)]  # 12 iterations at wall times 1..12
    assert viz.infer_iterations_per_epoch(loss, [(2, 0.6, 6.5), (4, 0.7, 12.5)]) == 3  # every 2nd epoch, 3 per epoch
    assert viz.infer_iterations_per_epoch(loss, [(1, 0.6, 4.5), (2, 0.7, 7.5)]) is None  # 4 then 3.5: no answer
    assert viz.infer_iterations_per_epoch(loss, []) is None


def test_curves_with_a_missing_tag(tmp_path):
    log_dir = tmp_path / "runs"
    _write_training_log(log_dir, epochs=4, iters=10, with_val=False)
    info = json.loads(_png(viz.curves(log_dir, tmp_path / "c.png"))[1]["Description"])
    assert info["missing_tags"] == ["val_mean_dice"]
    assert info["iterations_per_epoch"] is None and "best_val_mean_dice" not in info
    log_dir2 = tmp_path / "runs2"
    _write_training_log(log_dir2, epochs=2, iters=3, with_loss=False)
    info = json.loads(_png(viz.curves(log_dir2, tmp_path / "d.png"))[1]["Description"])
    assert info["missing_tags"] == ["train_loss"] and info["best_epoch"] == 2


def test_curves_without_event_files(tmp_path):
    with pytest.raises(ValueError, match="nowhere"):
        viz.curves(tmp_path / "nowhere", tmp_path / "c.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty"):
        viz.curves(tmp_path / "empty", tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()


# ------------------------------------------------------------------------------------------------------------- CLI


def test_cli_help_and_error_line(tmp_path):
    run = [sys.executable, "-m", "scripts", "visualize"]
    res = subprocess.run(run + ["--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "overlay" in res.stdout and "curves" in res.stdout
    missing = str(tmp_path / "missing.nii.gz")
    res = subprocess.run(
        run + ["overlay", "--image", missing, "--output", str(tmp_path / "o.png")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 1
    err = res.stderr.strip().splitlines()
    assert err[-1] == f"error: {missing}: image file not found"
    assert "Traceback" not in res.stderr and not (tmp_path / "o.png").exists()


def test_cli_overlay_and_curves(tmp_path):
    paths = _phantom_case(tmp_path, "liver_5", seed=5)
    out = tmp_path / "o.png"
    assert (
        viz_cli.main(
            [
                "overlay",
                "--image",
                paths["image"],
                "--label",
                paths["label"],
                "--pred",
                paths["pred"],
                "--output",
                str(out),
                "--dpi",
                "30",
            ]
        )
        == 0
    )
    assert "liver Dice" in _png(out)[1]["Title"]
    _write_training_log(tmp_path / "runs")
    assert viz_cli.main(["curves", "--log_dir", str(tmp_path / "runs"), "--output", str(tmp_path / "c.png")]) == 0
    assert viz_cli.main(["curves", "--log_dir", str(tmp_path / "none"), "--output", str(tmp_path / "c2.png")]) == 1


# ---------------------------------------------------------------------------------------------------------- legends


def _in_memory_cases(n, tumour):
    """``n`` grid cases as in-memory nibabel images with given Dice values; without tumour labels unless ``tumour``.

    A prediction with a tumour draws all four legend entries (the widest legend); without, two.
    """
    img, label, pred, affine = _synthetic_case(shift=2)
    if not tumour:
        label, pred = (label > 0).astype(np.uint8), (pred > 0).astype(np.uint8)
    image, label, pred = (nib.Nifti1Image(a, affine) for a in (img, label, pred))
    return [
        {"name": f"liver_{t}", "image": image, "label": label, "pred": pred, "dice": 0.5 + t / 100} for t in range(n)
    ]


def _assert_legends_whole(png):
    """Every legend of the PNG lies whole inside it, clear of the panels; nothing is drawn on the PNG's edges.

    The legend boxes come from the PNG's Description (``legends_px``, measured by matplotlib when the figure was
    drawn); the edge check reads the pixels themselves: a legend (or title) running off the figure leaves
    non-white pixels in the outermost rows or columns.
    """
    rgb, text, (width, height) = _png(png)
    for name, edge in (("left", rgb[:, 0]), ("right", rgb[:, -1]), ("top", rgb[0]), ("bottom", rgb[-1])):
        assert np.all(edge == 255), f"{png}: something is drawn on the {name} edge (cut off)"
    info = json.loads(text["Description"])
    assert info["legends_px"], f"{png}: no legend"
    for left, top, right, bottom in info["legends_px"]:
        assert 0 <= left < right <= width and 0 <= top < bottom <= height, f"{png}: legend {left, top, right, bottom}"
        panels = info.get("panels_px", [])  # overlay: {plane: box}; grid: [box] in the order drawn
        for p_left, p_top, p_right, p_bottom in panels.values() if isinstance(panels, dict) else panels:
            apart = right <= p_left or left >= p_right or bottom <= p_top or top >= p_bottom
            assert apart, f"{png}: a legend overlaps a panel"
    return info


@pytest.mark.parametrize("tumour", [False, True], ids=["2 classes", "3 classes"])
def test_grid_legend_whole_for_any_number_of_cases(tmp_path, tumour):
    cases = _in_memory_cases(8, tumour)
    for n in (1, 2, 3, 5, 8):
        info = _assert_legends_whole(viz.grid(cases[:n], tmp_path / f"grid_{n}.png"))
        assert len(info["panels_px"]) == n
    # More cases than drawn: the longer title stays whole too.
    _assert_legends_whole(viz.grid(cases, tmp_path / "grid_1_of_8.png", max_cases=1))


@pytest.mark.parametrize("dpi", [30, 100])
def test_overlay_and_curves_legends_whole(tmp_path, dpi):
    img, label, pred, affine = _synthetic_case(shift=2)
    image, label, pred = (nib.Nifti1Image(a, affine) for a in (img, label, pred))
    info = _assert_legends_whole(viz.overlay(image, tmp_path / "o.png", label=label, pred=pred, dpi=dpi))
    assert len(info["legends_px"]) == 1 and len(info["panels_px"]) == 3
    log_dir = tmp_path / "runs"
    _write_training_log(log_dir, epochs=3, iters=5)
    info = _assert_legends_whole(viz.curves(log_dir, tmp_path / "c.png"))
    assert len(info["legends_px"]) == 2  # loss and Dice panels
