"""The real-CT check (tools/real_ct.py): MRC -> NIfTI with the assumed geometry, its errors, and one run on the real
LiTS crop. The crop is never stored here: the end-to-end test takes the wheel from LIVER_CT_REAL_WHEEL, the tool's
cache or the package registry, and skips when none of them has it. Its weights are random: it checks the pipeline,
not a Dice figure (those come from `python -m tools.real_ct` with trained weights)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import nibabel as nib
import numpy as np
import pytest

from scripts.lib.metrics import dice
from tools import real_ct
from tools.benchmark import random_weights

BUNDLE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
mrcfile = pytest.importorskip("mrcfile", reason="mrcfile (requirements-dev.txt) reads the crop's MRC files")


def write_mrc(path, data) -> str:
    with mrcfile.new(str(path), overwrite=True) as mrc:
        mrc.set_data(data)
    return str(path)


def test_mrc_to_nifti_keeps_the_array_and_writes_the_assumed_geometry(tmp_path):
    image = (np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6) - 1000.0) / 8.0  # HU in steps of 1/8
    label = np.zeros((4, 5, 6), dtype=np.uint16)
    label[1:3, 2:4, 3:] = 1
    label[2, 3, 5] = 2
    img = nib.load(real_ct.mrc_to_nifti(write_mrc(tmp_path / "i.mrc", image), str(tmp_path / "i.nii.gz"), "image"))
    lab = nib.load(real_ct.mrc_to_nifti(write_mrc(tmp_path / "l.mrc", label), str(tmp_path / "l.nii.gz"), "label"))

    # the array as mrcfile reads it, axis for axis, in float32 HU and uint8 labels
    assert img.get_data_dtype() == np.float32 and lab.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asarray(img.dataobj), image)
    np.testing.assert_array_equal(np.asarray(lab.dataobj), label)
    # the documented geometry: axis 0 towards the patient's left, 1 posterior, 2 superior; 1.3 mm; centre at 0
    s = real_ct.SPACING_MM[0]
    expected = np.array([[-s, 0, 0, 1.5 * s], [0, -s, 0, 2.0 * s], [0, 0, s, -2.5 * s], [0, 0, 0, 1]])
    for affine in (img.affine, lab.affine, img.header.get_qform(), img.header.get_sform()):
        np.testing.assert_allclose(affine, expected, atol=1e-5)
    assert nib.aff2axcodes(img.affine) == ("L", "P", "S") == tuple(real_ct.AXCODES)
    np.testing.assert_allclose(img.affine @ [1.5, 2.0, 2.5, 1.0], [0, 0, 0, 1], atol=1e-5)
    # as nibabel shows it in RAS+ order: the array flipped along axes 0 and 1
    np.testing.assert_array_equal(np.asarray(nib.as_closest_canonical(img).dataobj), image[::-1, ::-1, :])


def test_a_label_with_other_values_is_refused(tmp_path):
    bad = write_mrc(tmp_path / "l.mrc", np.full((3, 3, 3), 3, dtype=np.uint16))
    with pytest.raises(ValueError, match=r"l\.mrc: label values \[3\] are not 0/1/2"):
        real_ct.mrc_to_nifti(bad, str(tmp_path / "l.nii.gz"), "label")


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_errors_are_one_line_naming_the_file(tmp_path, capsys):
    weights = tmp_path / "w.pt"
    common = ["--cache_dir", str(tmp_path / "cache"), "--output_dir", str(tmp_path / "out")]

    assert real_ct.main(["--ckpt_path", str(weights), *common]) == 1
    assert _error_line(capsys) == f"error: {weights}: weights file not found"

    weights.write_bytes(b"not read before the data is checked")
    wheel = tmp_path / real_ct.WHEEL_NAME
    with zipfile.ZipFile(wheel, "w") as z:  # a wheel of the right name without the data
        z.writestr("liver_ct_segmentation_package/__init__.py", "")
    assert real_ct.main(["--ckpt_path", str(weights), "--wheel", str(wheel), *common]) == 1
    line = _error_line(capsys)
    assert line.startswith(f"error: {wheel}: the wheel has no {real_ct.MEMBERS['image']}"), line

    assert real_ct.main(["--ckpt_path", str(weights), "--spacing", "0", *common]) == 1
    assert _error_line(capsys) == "error: --spacing 0.0: expected a voxel size in mm, above 0 and below 10"

    wheel.write_text("not a zip")
    assert real_ct.main(["--ckpt_path", str(weights), "--wheel", str(wheel), *common]) == 1
    assert _error_line(capsys).startswith(f"error: {wheel}: not a wheel (zip) file")
    assert not (tmp_path / "out").exists()


def test_an_unfetchable_wheel_is_an_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip as it runs without a registry: nothing to download from
    cache = tmp_path / "cache"
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"")
    assert real_ct.main(["--ckpt_path", str(weights), "--cache_dir", str(cache), "--output_dir", str(tmp_path)]) == 1
    line = _error_line(capsys)
    assert line.startswith(f"error: {cache / real_ct.WHEEL_NAME}: cannot download {real_ct.PACKAGE}=="), line
    assert line.endswith("give --wheel PATH"), line


@pytest.fixture(scope="module")
def real_wheel() -> str:
    """The package's wheel: $LIVER_CT_REAL_WHEEL, else the tool's cache, else downloaded there; skips without it."""
    given = os.environ.get("LIVER_CT_REAL_WHEEL")
    if given:
        if not os.path.isfile(given):
            pytest.fail(f"LIVER_CT_REAL_WHEEL={given}: no such file")
        return given
    try:
        return real_ct.fetch_wheel(real_ct.DEFAULT_CACHE)
    except OSError as e:
        pytest.skip(
            f"the real LiTS crop is not available ({e}); set LIVER_CT_REAL_WHEEL to a copy of {real_ct.WHEEL_NAME}"
        )


def test_the_tool_runs_the_bundle_on_the_real_crop(tmp_path, real_wheel):
    weights = random_weights(str(tmp_path / "random.pt"))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "tools.real_ct", "--ckpt_path", weights, "--wheel", real_wheel]
    cmd += ["--cache_dir", str(tmp_path / "cache"), "--output_dir", str(out)]
    proc = subprocess.run(cmd, cwd=BUNDLE_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    summary = proc.stdout.strip().splitlines()
    assert len(summary) == 1 and "liver Dice" in summary[0], proc.stdout

    record = json.loads((out / "real_ct.json").read_text())
    assert 0.0 <= record["liver_dice"] <= 1.0
    assert record["weights"] == {"path": weights, "sha256": real_ct.sha256(weights)}
    assert record["config_files"] == ["configs/inference.yaml"]
    assert record["data"]["wheel_sha256"] == real_ct.WHEEL_SHA256
    assert record["geometry"]["axcodes"] == "LPS" and record["geometry"]["spacing_mm"] == list(real_ct.SPACING_MM)
    # the reference volume: the crop's liver and tumour voxels, counted in the MRC file itself, at the assumed spacing
    with zipfile.ZipFile(real_wheel) as z:
        z.extract(real_ct.MEMBERS["label"], tmp_path / "check")
    with mrcfile.open(str(tmp_path / "check" / real_ct.MEMBERS["label"]), permissive=True) as mrc:
        liver_voxels = int(np.count_nonzero(mrc.data))
    assert record["volume_ml"]["reference"] == pytest.approx(liver_voxels * real_ct.SPACING_MM[0] ** 3 / 1000, abs=0.1)
    # the Dice is the one of the mask the bundle wrote on the label's grid
    label = nib.load(str(tmp_path / "cache" / "nifti" / "label.nii.gz"))
    pred = nib.load(record["prediction"])
    assert pred.shape == label.shape and np.allclose(pred.affine, label.affine, atol=1e-4)
    assert record["liver_dice"] == pytest.approx(dice(label.dataobj, pred.dataobj), abs=1e-4)

    png = out / "real_ct.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    title = Image.open(png).text["Title"]
    assert f"liver Dice {record['liver_dice']:.3f}" in title and "assumed" in title


def test_another_spacing_is_a_labelled_sensitivity_check(tmp_path, real_wheel):
    """--spacing converts the same arrays at another voxel size, into a folder of their own, and says so."""
    other = real_ct.prepare(real_wheel, str(tmp_path), (1.5, 1.5, 1.5))
    assumed = real_ct.prepare(real_wheel, str(tmp_path))
    assert os.path.dirname(other["image"]).endswith("nifti_1.5mm") and os.path.dirname(assumed["image"]).endswith(
        "nifti"
    )
    a, b = nib.load(other["image"]), nib.load(assumed["image"])
    assert np.array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))
    assert np.allclose(np.abs(np.diag(a.affine)[:3]), 1.5) and np.allclose(np.abs(np.diag(b.affine)[:3]), 1.3)
    record = real_ct.geometry_record(other["image"], (1.5, 1.5, 1.5))
    assert record["spacing_mm"] == [1.5] * 3 and np.allclose(np.abs(np.diag(record["affine"])[:3]), 1.5)
    assert record["note"].startswith("a sensitivity check") and "1.5 mm" in record["note"]
    assert real_ct.geometry_record(assumed["image"], real_ct.SPACING_MM)["note"] == real_ct.GEOMETRY_NOTE
