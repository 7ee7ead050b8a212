"""Tests of scripts.lib.check_dataset: a clean dataset passes, each planted problem is flagged, the CLI exit codes."""

import csv
import functools
import gzip
import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from scripts.lib import check_dataset as cd
from scripts.lib import phantom

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPE, SPACING = (48, 48, 24), (8.0, 8.0, 8.0)


@functools.lru_cache(maxsize=None)
def _phantom_case(seed, orientation):
    return phantom.make_case(seed, shape=SHAPE, spacing=SPACING, orientation=orientation)


def make_case(seed, orientation="RAS"):
    """A small phantom case (int16 HU image, uint8 label, RAS+ affine), stored RAS unless told otherwise.

    Fresh copies each call, so tests may modify them.
    """
    return tuple(a.copy() for a in _phantom_case(seed, orientation))


def _save(path, data, affine):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return str(path)


def _case(tmp_path, name="case", image=None, label=None, image_affine=None, label_affine=None, seed=0):
    """Write one case (defaults: a clean one); returns (image_path, label_path)."""
    img, lab, affine = make_case(seed)
    img = img if image is None else image
    lab = lab if label is None else label
    image_path = _save(tmp_path / "imagesTr" / f"{name}.nii.gz", img, affine if image_affine is None else image_affine)
    label_path = _save(tmp_path / "labelsTr" / f"{name}.nii.gz", lab, affine if label_affine is None else label_affine)
    return image_path, label_path


def _dataset(root, n=4):
    """An MSD-style dataset of clean cases; returns the dataset.json path."""
    training = []
    for seed in range(n):
        _case(root, f"liver_{seed}", seed=seed)
        training.append({"image": f"./imagesTr/liver_{seed}.nii.gz", "label": f"./labelsTr/liver_{seed}.nii.gz"})
    path = os.path.join(str(root), "dataset.json")
    with open(path, "w") as f:
        json.dump({"training": training, "test": []}, f)
    return path


def _only(findings, severity, text):
    """The findings of ``severity`` whose problem contains ``text``; asserts there is at least one."""
    hits = [f for f in findings if f["severity"] == severity and text in f["problem"]]
    assert hits, f"no {severity} mentioning {text!r} in {findings}"
    return hits


# ----------------------------------------------------------------------------------------------
# clean data
# ----------------------------------------------------------------------------------------------
def test_clean_case_row(tmp_path):
    image_path, label_path = _case(tmp_path)
    row, findings = cd.check_case(image_path, label_path)
    assert findings == []
    img, lab, affine = make_case(0)
    assert row["name"] == "case" and row["shape"] == SHAPE and row["orientation"] == "RAS"
    assert row["spacing"] == pytest.approx(SPACING)
    assert row["hu_min"] == img.min() and row["hu_max"] == img.max()
    assert row["hu_min"] <= row["hu_p1"] <= row["hu_p50"] <= row["hu_p99"] <= row["hu_max"]
    assert row["label_values"] == np.unique(lab).tolist() and row["label_values"][:2] == [0, 1]
    voxel_ml = np.prod(SPACING) / 1000.0
    assert row["liver_ml"] == pytest.approx(np.count_nonzero(lab) * voxel_ml)
    assert row["tumour_ml"] == pytest.approx(np.count_nonzero(lab == 2) * voxel_ml)
    assert row["tumour_ml"] < row["liver_ml"] and row["liver_ml"] > 500


def test_clean_dataset_passes(tmp_path, capsys):
    """The phantom's own MSD dataset (default grids, random stored orientations) passes without a finding."""
    dataset_json = phantom.write_dataset(tmp_path / "data", num_train=4, num_test=1, seed=0)
    capsys.readouterr()
    assert cd.assert_dataset_ok(dataset_json, report_dir=tmp_path / "report") is True
    out = capsys.readouterr().out
    assert [line.split("]")[0] for line in out.splitlines() if line.startswith("[")] == ["[1/4", "[2/4", "[3/4", "[4/4"]
    assert "liver_003" in out
    report = json.loads((tmp_path / "report" / "dataset_check.json").read_text())
    assert report["num_cases"] == 4 and report["num_errors"] == 0 and report["findings"] == []
    assert all(case["liver_ml"] > 500 for case in report["cases"])


@pytest.mark.parametrize("orientation", ["LPS", "PLS", "LPI"])
def test_other_stored_orientations_are_not_flagged(tmp_path, orientation):
    """Data stored in another axis order, with an affine that says so, is fine: the check works in world space."""
    img, lab, affine = make_case(1, orientation)
    row, findings = cd.check_case(*_case(tmp_path, image=img, label=lab, image_affine=affine, label_affine=affine))
    assert row["orientation"] == orientation
    assert findings == []


# ----------------------------------------------------------------------------------------------
# planted problems, one at a time
# ----------------------------------------------------------------------------------------------
def test_shape_mismatch(tmp_path):
    img, lab, affine = make_case(0)
    row, findings = cd.check_case(*_case(tmp_path, label=lab[:, :, :-2].copy()))
    _only(findings, "error", "shape mismatch")


def test_spacing_mismatch(tmp_path):
    img, lab, affine = make_case(0)
    label_affine = affine.copy()
    label_affine[2, 2] = 7.5
    row, findings = cd.check_case(*_case(tmp_path, label_affine=label_affine))
    _only(findings, "error", "spacing mismatch")
    assert not [f for f in findings if "origin" in f["problem"] or "shape" in f["problem"]]


def test_origin_mismatch(tmp_path):
    img, lab, affine = make_case(0)
    label_affine = affine.copy()
    label_affine[:3, 3] += [5.0, 0.0, 0.0]
    row, findings = cd.check_case(*_case(tmp_path, label_affine=label_affine))
    _only(findings, "error", "origin mismatch by 5.000 mm")
    assert len([f for f in findings if f["severity"] == "error"]) == 1


def test_direction_mismatch(tmp_path):
    img, lab, affine = make_case(0)
    label_affine = affine @ np.array([[-1, 0, 0, SHAPE[0] - 1], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])
    row, findings = cd.check_case(*_case(tmp_path, label=lab[::-1].copy(), label_affine=label_affine))
    _only(findings, "error", "direction mismatch")


def test_unexpected_label_value(tmp_path):
    img, lab, affine = make_case(0)
    lab.flat[np.flatnonzero(lab == 1)[::50]] = 3
    row, findings = cd.check_case(*_case(tmp_path, label=lab))
    problem = _only(findings, "error", "unexpected label values 3")[0]["problem"]
    assert f"({np.count_nonzero(lab == 3)} voxels)" in problem
    assert 3 in row["label_values"] and row["label_values"] == np.unique(lab).tolist()
    # the same case passes when 3 is declared
    assert cd.check_case(row["image"], row["label"], expected_labels=(0, 1, 2, 3))[1] == []


@pytest.mark.parametrize("fraction,severity", [(0.05, "warning"), (0.5, "error")])
def test_labels_outside_the_body(tmp_path, fraction, severity):
    img, lab, affine = make_case(0)
    air = np.argwhere(img < -900)
    count = int(round(fraction * np.count_nonzero(lab) / (1 - fraction)))
    lab[tuple(air[:count].T)] = 1
    row, findings = cd.check_case(*_case(tmp_path, label=lab))
    _only(findings, severity, "lie in air")
    assert not [f for f in findings if "air" in f["problem"] and f["severity"] != severity]


def test_empty_label(tmp_path):
    img, lab, affine = make_case(0)
    row, findings = cd.check_case(*_case(tmp_path, label=np.zeros_like(lab)))
    _only(findings, "error", "label is empty")
    assert row["liver_ml"] == 0


@pytest.mark.parametrize("spacing", [(8.0, 8.0, 12.0), (0.25, 0.25, 1.0)])
def test_extreme_spacing(tmp_path, spacing):
    img, lab, affine = make_case(0)
    new_affine = np.diag(list(spacing) + [1.0])
    row, findings = cd.check_case(*_case(tmp_path, image_affine=new_affine, label_affine=new_affine))
    hits = _only(findings, "warning", "extreme spacing")
    assert len(hits) == 1 and not [f for f in findings if f["severity"] == "error"]


@pytest.mark.parametrize("orientation", ["RAS", "PLS"])
def test_flipped_orientation(tmp_path, orientation):
    """x data flipped, affine unchanged: the liver appears on the patient's left."""
    img, lab, affine = make_case(0, orientation)
    x_axis = [code in "LR" for code in nib.aff2axcodes(affine)].index(True)
    image, label = np.flip(img, x_axis).copy(), np.flip(lab, x_axis).copy()
    row, findings = cd.check_case(*_case(tmp_path, image=image, label=label, image_affine=affine, label_affine=affine))
    finding = _only(findings, "warning", "LEFT")[0]
    for words in ("LPS", "RAS", "Medical Segmentation Decathlon", "right"):
        assert words in finding["explanation"]
    assert f"(axes {orientation})" in finding["problem"]  # the explanation is shared, the problem this case's
    assert [f["severity"] for f in findings] == ["warning"]


def test_nan_voxel(tmp_path):
    img, lab, affine = make_case(0)
    image = img.astype(np.float32)
    image[10, 10, 10] = np.nan
    image[11, 10, 10] = np.inf
    row, findings = cd.check_case(*_case(tmp_path, image=image))
    _only(findings, "error", "2 NaN/Inf voxel")
    assert np.isfinite(row["hu_min"]) and np.isfinite(row["hu_max"])


def test_2d_image(tmp_path):
    img, lab, affine = make_case(0)
    row, findings = cd.check_case(*_case(tmp_path, image=img[:, :, 5].copy()))
    _only(findings, "error", "image is 2D")


def test_truncated_gz(tmp_path):
    image_path, label_path = _case(tmp_path)
    with open(image_path, "rb") as f:
        raw = f.read()
    with open(image_path, "wb") as f:
        f.write(raw[: len(raw) // 2])
    row, findings = cd.check_case(image_path, label_path)
    problem = _only(findings, "error", "truncated")[0]["problem"]
    assert image_path in problem and "\n" not in problem
    assert row["hu_min"] is None and [f["severity"] for f in findings] == ["error"]
    with open(image_path, "wb") as f:  # cut inside the header: cannot even be opened
        f.write(raw[:40])
    problem = _only(cd.check_case(image_path, label_path)[1], "error", "cannot read the image header")[0]["problem"]
    assert image_path in problem


def test_oversized_header_is_not_read(tmp_path):
    """A header declaring 16 GiB of voxels is refused before any voxel data is read (there is none)."""
    image_path, label_path = _case(tmp_path)
    header = nib.Nifti1Header()
    header.set_data_dtype(np.int16)
    header.set_data_shape((4096, 4096, 512))
    header.set_sform(np.diag([0.8, 0.8, 1.0, 1.0]), code=1)
    big = str(tmp_path / "big.nii")
    with open(big, "wb") as f:
        header.write_to(f)
        f.write(b"\0" * 4)  # extension flag; the header announces 16 GiB that are not there
    row, findings = cd.check_case(big, label_path)
    _only(findings, "error", "16.0 GiB")
    assert not [f for f in findings if "voxel data of" in f["problem"]]
    assert row["hu_min"] is None
    # a lower limit refuses an ordinary case too
    _only(cd.check_case(image_path, label_path, max_bytes=1000)[1], "error", "over the")


def test_missing_file(tmp_path):
    image_path, label_path = _case(tmp_path)
    os.remove(label_path)
    row, findings = cd.check_case(image_path, label_path)
    assert _only(findings, "error", "label file not found")[0]["problem"].endswith(label_path)


def test_identity_and_singular_affine(tmp_path):
    img, lab, affine = make_case(0)
    row, findings = cd.check_case(*_case(tmp_path, image_affine=np.eye(4), label_affine=np.eye(4)))
    _only(findings, "warning", "identity")
    image_path, label_path = _case(tmp_path, name="singular")
    raw = bytearray(gzip.decompress(open(image_path, "rb").read()))
    raw[312:328] = np.zeros(4, np.float32).tobytes()  # srow_z = 0: the third axis maps nowhere
    plain = str(tmp_path / "singular.nii")
    with open(plain, "wb") as f:
        f.write(bytes(raw))
    row, findings = cd.check_case(plain, label_path)
    _only(findings, "error", "singular")


def test_non_ct_intensities(tmp_path):
    img, lab, affine = make_case(0)
    normalised = ((img - img.min()) / float(img.max() - img.min())).astype(np.float32)
    row, findings = cd.check_case(*_case(tmp_path, name="a", image=normalised))
    _only(findings, "error", "within [0, 1]")
    row, findings = cd.check_case(*_case(tmp_path, name="b", image=(img + 1024).astype(np.int16)))
    _only(findings, "warning", "no air")


# ----------------------------------------------------------------------------------------------
# dataset level: report, assert, CLI
# ----------------------------------------------------------------------------------------------
def test_write_report(tmp_path, capsys):
    root = tmp_path / "data"
    _dataset(root, n=3)
    img, lab, affine = make_case(1)
    lab.flat[np.flatnonzero(lab == 1)[::50]] = 3
    _case(root, "liver_1", label=lab, seed=1)
    items = [
        {"image": str(root / "imagesTr" / f"liver_{i}.nii.gz"), "label": str(root / "labelsTr" / f"liver_{i}.nii.gz")}
        for i in range(3)
    ]
    rows, findings = cd.check_dataset(items)
    assert capsys.readouterr().out.splitlines()[1].startswith("[2/3] liver_1: 1 error")
    csv_path, json_path = cd.write_report(rows, findings, tmp_path / "out")
    assert sorted(os.listdir(tmp_path / "out")) == ["dataset_check.csv", "dataset_check.json"]
    with open(csv_path) as f:
        table = list(csv.DictReader(f))
    assert [r["name"] for r in table] == ["liver_0", "liver_1", "liver_2"]
    assert [r["errors"] for r in table] == ["0", "1", "0"]
    assert "unexpected label values 3" in table[1]["problems"] and table[0]["problems"] == ""
    assert table[0]["shape"] == "48x48x24" and table[0]["label_values"] == "0 1 2"
    report = json.loads(open(json_path).read())
    assert report["num_errors"] == 1 and report["findings"][0]["case"] == "liver_1"


def test_assert_dataset_ok_raises_naming_cases(tmp_path):
    root = tmp_path / "data"
    dataset_json = _dataset(root, n=4)
    img, lab, affine = make_case(2)
    _case(root, "liver_2", image=img[::-1].copy(), label=lab[::-1].copy(), seed=2)  # warning only
    with pytest.raises(ValueError) as info:
        cd.assert_dataset_ok(dataset_json)
    message = str(info.value)
    assert message.startswith(os.path.abspath(dataset_json)) and "liver_2" in message and "LEFT" in message
    assert "liver_0" not in message and "\n" not in message
    assert cd.assert_dataset_ok(dataset_json, allow_warnings=True) is True
    img, lab, affine = make_case(3)
    _case(root, "liver_3", label=np.zeros_like(lab), seed=3)  # an error
    with pytest.raises(ValueError, match=r"liver_3 \(error: label is empty"):
        cd.assert_dataset_ok(dataset_json, allow_warnings=True, report_dir=tmp_path / "rep")
    assert (tmp_path / "rep" / "dataset_check.csv").exists()
    with pytest.raises(ValueError, match="missing.json"):
        cd.assert_dataset_ok(tmp_path / "missing.json")


def test_assert_dataset_ok_explains_each_kind_once(tmp_path):
    """Several cases with the same kind of problem: its explanation once, then every affected case."""
    root = tmp_path / "data"
    dataset_json = _dataset(root, n=7)
    flipped = ("liver_1", "liver_2", "liver_4", "liver_5")
    for name in flipped:  # the liver on the patient's left: the MSD "LPS data under a RAS header" warning
        seed = int(name.split("_")[1])
        img, lab, affine = make_case(seed)
        _case(root, name, image=img[::-1].copy(), label=lab[::-1].copy(), seed=seed)
    for name in ("liver_3", "liver_6"):  # raw values without the rescale intercept: the "no air" warning
        seed = int(name.split("_")[1])
        img, lab, affine = make_case(seed)
        _case(root, name, image=(img + 1024).astype(np.int16), seed=seed)
    img, lab, affine = make_case(0)
    _case(root, "liver_0", label=np.zeros_like(lab), seed=0)  # an error of its own kind
    with pytest.raises(ValueError) as info:
        cd.assert_dataset_ok(dataset_json, report_dir=tmp_path / "report")
    message = str(info.value)
    assert "\n" not in message and message.count("Medical Segmentation Decathlon") == 1
    assert message.count("LPS") == 1 and message.count("rescale intercept") == 1
    explained = message.index("Medical Segmentation Decathlon")
    for name in flipped:
        assert message.count(f"{name} (") == 1 and message.index(name) > explained
    assert message.count("liver_3 (") == message.count("liver_6 (") == 1
    assert "liver_0 (error: label is empty" in message
    assert "in 7 of 7 case(s)" in message and len(message) < 2000
    # Each row of the per-case report still reads on its own.
    with open(tmp_path / "report" / "dataset_check.csv") as f:
        problems = {row["name"]: row["problems"] for row in csv.DictReader(f)}
    assert all("Medical Segmentation Decathlon" in problems[name] for name in flipped)


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "scripts", "check_dataset", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_exit_codes(tmp_path):
    root = tmp_path / "data"
    _dataset(root, n=2)
    proc = _cli("--dataset_dir", root, "--output_dir", tmp_path / "r0")
    assert proc.returncode == 0, proc.stderr
    assert "liver_1" in proc.stdout and (tmp_path / "r0" / "dataset_check.json").exists()

    img, lab, affine = make_case(1)
    _case(root, "liver_1", image=img[::-1].copy(), label=lab[::-1].copy(), seed=1)  # a warning
    proc = _cli("--dataset_dir", root, "--output_dir", tmp_path / "r1")
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ") and "liver_1" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert _cli("--dataset_dir", root, "--output_dir", tmp_path / "r2", "--allow_warnings").returncode == 0

    _case(root, "liver_0", label=np.zeros_like(lab))  # an error: warnings allowed or not, exit 1
    proc = _cli("--dataset_dir", root, "--output_dir", tmp_path / "r3", "--allow_warnings")
    assert proc.returncode == 1 and "label is empty" in proc.stderr
    report = json.loads((tmp_path / "r3" / "dataset_check.json").read_text())
    assert report["num_errors"] == 1 and report["num_warnings"] == 1

    # a separate datalist whose relative paths are resolved against --dataset_dir
    other = tmp_path / "lists" / "two.json"
    other.parent.mkdir()
    other.write_text(
        json.dumps({"training": [{"image": "imagesTr/liver_1.nii.gz", "label": "labelsTr/liver_1.nii.gz"}]})
    )
    proc = _cli("--dataset_dir", root, "--datalist", other, "--output_dir", tmp_path / "r4", "--allow_warnings")
    assert proc.returncode == 0, proc.stderr

    proc = _cli("--dataset_dir", tmp_path / "nowhere", "--output_dir", tmp_path / "r5")
    assert proc.returncode == 1 and proc.stderr.startswith("error: ") and "nowhere" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "r5").exists()
