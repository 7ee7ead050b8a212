"""Real-world DICOM series as archives and anonymisers leave them (issue 16, "nothing silent").

Each case is written with pydicom (``scripts.lib.dicom_write.write_series``, then headers edited): blank or absent UIDs, a
folder holding a blank-UID series beside a normal one, duplicated instance numbers, a localizer in its own folder and
in the CT's folder, gantry tilt, varying slice thickness and varying slice spacing. Every case ends either in a
volume (and, end to end, a mask) on exactly the grid of :func:`scripts.lib.dicom.read_series`, which is also what the
inference config's reader gives, or in one error line naming the folder and the reason.
"""

from __future__ import annotations

import logging
import os
import shutil

import nibabel as nib
import numpy as np
import pydicom
import pytest
from conftest import BUNDLE_ROOT, FAST, run_bundle
from test_dicom import _cli
from test_reader import _config_loader
from test_robustness import assert_one_line_error

from scripts.components import inputs
from scripts.lib import dicom, phantom
from scripts.lib.dicom import write as dicom_write

SHAPE = (40, 36, 20)  # at least 32x32 pixels: JPEG 2000, as in the anonymised example series TotalSegmentator ships
SPACING = (9.0, 9.0, 10.0)
SCOUT_AFFINE = np.array([[9.0, 0, 0, 0], [0, 0, 9.0, 0], [0, 9.0, 0, 0], [0, 0, 0, 1]])  # a coronal slice


@pytest.fixture(scope="module")
def ct():
    """A small phantom CT (int16 HU) and its RAS affine (LPS-ordered voxels, as scanners store them)."""
    image, _, affine = phantom.make_case(4, shape=SHAPE, spacing=SPACING, orientation="LPS")
    return np.asarray(image), np.asarray(affine)


def _edit(files, change):
    """Rewrite each file's header with ``change(k, dataset)`` (k: the slice index as written)."""
    for k, path in enumerate(files):
        ds = pydicom.dcmread(path)
        change(k, ds)
        ds.save_as(path, enforce_file_format=True)
    return files


def _no_uids(how):
    """A header edit that blanks (``"blank"``) or deletes (``"absent"``) the series and study UIDs."""

    def change(_, ds):
        for keyword in ("SeriesInstanceUID", "StudyInstanceUID"):
            if how == "blank":
                setattr(ds, keyword, "")
            else:
                delattr(ds, keyword)

    return change


def _blank_series(ct, folder, how="blank", prefix=""):
    """The anonymised example: 20 JPEG 2000 slices without series and study UIDs; ``prefix`` renames the files."""
    image, affine = ct
    files = _edit(dicom_write.write_series(image, affine, folder, transfer_syntax="jpeg2000"), _no_uids(how))
    return _move_in(files, folder, prefix) if prefix else files


def _move_in(files, folder, prefix):
    """Move a series' files into ``folder`` under new names (two series in one folder)."""
    os.makedirs(folder, exist_ok=True)
    return [shutil.move(f, os.path.join(folder, prefix + os.path.basename(f))) for f in files]


def _assert_inference_reads_the_series(folder):
    """The inference config's loader (DicomSeriesReader for a folder) gives the voxels and affine of read_series."""
    volume, affine, _ = dicom.read_series(folder)
    img = _config_loader()({"image": str(folder)})["image"]
    np.testing.assert_array_equal(img.numpy(), volume)
    np.testing.assert_allclose(img.affine.numpy(), affine, atol=1e-4)
    return volume, affine


def _one_line_error(call, *fragments):
    with pytest.raises(ValueError) as err:
        call()
    message = str(err.value)
    assert "\n" not in message
    for fragment in fragments:
        assert str(fragment) in message, f"{fragment!r} not in: {message}"
    return message


# ----------------------------------------------------------------------------------------------------------------------
# blank and absent UIDs


@pytest.mark.parametrize("how", ["blank", "absent"])
def test_a_series_without_uids_is_found_read_and_warned_about(tmp_path, ct, caplog, how):
    folder = tmp_path / "series"
    _blank_series(ct, folder, how)
    (found,) = dicom.find_series(tmp_path)
    assert found["uid"] == "" and found["n_files"] == SHAPE[2]
    assert found["missing_uids"] == [f"SeriesInstanceUID {how}", f"StudyInstanceUID {how}"]
    with caplog.at_level(logging.WARNING, logger="scripts.lib.dicom"):
        volume, affine, info = dicom.read_series(folder)
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warning) == 1 and str(folder) in warning[0]
    assert f"SeriesInstanceUID {how}, StudyInstanceUID {how}" in warning[0]
    np.testing.assert_array_equal(volume, ct[0])
    np.testing.assert_allclose(affine, ct[1], atol=1e-4)
    assert info["missing_uids"] == found["missing_uids"]

    written = dicom_write.convert(tmp_path, tmp_path / "nii")
    assert len(written) == 1
    np.testing.assert_array_equal(np.asarray(nib.load(written[0]).dataobj), ct[0])


def test_copies_of_a_series_without_uids_in_two_folders_are_two_series(tmp_path, ct):
    """Without a UID, identical headers in two folders are two copies (or unrelated files), not one series."""
    _blank_series(ct, tmp_path / "copy_a")
    shutil.copytree(tmp_path / "copy_a", tmp_path / "copy_b")  # byte-identical files
    found = dicom.find_series(tmp_path)
    assert sorted(os.path.basename(s["folder"]) for s in found) == ["copy_a", "copy_b"]
    assert all(s["n_files"] == SHAPE[2] for s in found)
    assert len(dicom_write.convert(tmp_path, tmp_path / "nii")) == 2


def test_convert_and_check_commands_take_a_series_without_uids(tmp_path, ct):
    _blank_series(ct, tmp_path / "dicom" / "series")
    proc = _cli("convert", "-i", tmp_path / "dicom", "-o", tmp_path / "nii")
    assert proc.returncode == 0, proc.stderr
    assert "warning: series " in proc.stderr and "SeriesInstanceUID blank, StudyInstanceUID blank" in proc.stderr
    assert len(os.listdir(tmp_path / "nii")) == 1
    check = _cli("check", "-i", tmp_path / "dicom")
    assert check.returncode == 0, check.stderr
    assert " ok " in check.stdout and "40x36x20" in check.stdout


def test_inference_takes_a_series_without_uids_and_reads_its_grid(tmp_path, ct):
    folder = tmp_path / "series"
    _blank_series(ct, folder)
    named = [{"image": str(folder), "case_name": "series"}]  # no number or description: the folder's name
    assert inputs.list_inputs(tmp_path) == named
    assert inputs.list_inputs(folder) == named
    _assert_inference_reads_the_series(folder)


def test_two_series_one_without_uids_are_refused_and_listed(tmp_path, ct):
    """The blank-UID series used to be invisible: the folder passed as the 3-slice series, and ITK read whichever."""
    image, affine = ct
    folder = tmp_path / "mixed"
    _blank_series(ct, folder, prefix="A_")
    normal = dicom_write.write_series(image[:, :, :3], affine, tmp_path / "tmp", series_number=5)
    _move_in(normal, folder, "B_")
    uid = pydicom.dcmread(os.path.join(folder, "B_" + os.path.basename(normal[0]))).SeriesInstanceUID
    message = _one_line_error(
        lambda: inputs.list_inputs(folder),
        f"{folder}: folder holds 2 DICOM series",
        "no SeriesInstanceUID",
        f"{SHAPE[2]} files",
        uid,
        "3 files",
    )
    assert message.startswith(str(folder))
    _one_line_error(lambda: inputs.check_dicom(str(folder)), "2 DICOM series")
    written = dicom_write.convert(folder, tmp_path / "nii")  # convert takes each series on its own
    assert sorted(nib.load(p).shape for p in written) == [(40, 36, 3), SHAPE]


def test_acquisitions_without_uids_that_share_every_attribute_are_a_clear_error(tmp_path, ct):
    """AcquisitionNumber is not part of the grouping (it varies inside one series on some scanners): two such
    acquisitions in one folder meet as duplicate slice positions, and the message says why they could not be told
    apart."""
    image, affine = ct
    folder = tmp_path / "two_acquisitions"
    first = _move_in(_blank_series(ct, tmp_path / "a"), folder, "A_")
    frame = pydicom.dcmread(first[0]).FrameOfReferenceUID
    second = _edit(
        dicom_write.write_series(image, affine, tmp_path / "b", frame_of_reference_uid=frame), _no_uids("blank")
    )
    _move_in(second, folder, "B_")
    for prefix, number in (("A_", 1), ("B_", 2)):
        _edit([str(p) for p in folder.glob(prefix + "*")], lambda _, ds, n=number: setattr(ds, "AcquisitionNumber", n))
    _one_line_error(
        lambda: inputs.check_dicom(str(folder)),
        str(folder),
        "duplicate slice position",
        "no SeriesInstanceUID",
        "AcquisitionNumber 1, 2",
    )


# ----------------------------------------------------------------------------------------------------------------------
# instance numbers, localizers


def test_duplicated_instance_numbers_are_sorted_by_position(tmp_path, ct):
    """Instance numbers restart halfway (two reconstructions numbered 1..10), file names shuffled: order by position."""
    folder = tmp_path / "series"
    files = _edit(dicom_write.write_series(*ct, folder), lambda k, ds: setattr(ds, "InstanceNumber", k % 10 + 1))
    for n, f in enumerate(files):
        os.rename(f, folder / f"x{(n * 7) % len(files):02d}.dcm")
    assert inputs.list_inputs(folder) == [{"image": str(folder), "case_name": "series"}]
    volume, _ = _assert_inference_reads_the_series(folder)
    np.testing.assert_array_equal(volume, ct[0])


def test_a_localizer_in_a_folder_of_its_own_is_skipped_with_a_warning(tmp_path, ct, caplog):
    image, affine = ct
    dicom_write.write_series(image, affine, tmp_path / "ct", series_number=2)
    dicom_write.write_series(
        image[:, :, :1],
        SCOUT_AFFINE,
        tmp_path / "scout",
        series_number=1,
        image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
    )
    failures = []
    with caplog.at_level(logging.WARNING, logger="scripts.components.inputs"):
        assert inputs.list_inputs(tmp_path, failures=failures) == [{"image": str(tmp_path / "ct"), "case_name": "2"}]
    assert failures == []
    skipped = [r.getMessage() for r in caplog.records if "scout" in r.getMessage()]
    assert len(skipped) == 1 and "localizer" in skipped[0] and str(tmp_path / "scout") in skipped[0]
    # nothing but the localizer: an error that says so
    _one_line_error(
        lambda: inputs.list_inputs(tmp_path / "scout"), str(tmp_path / "scout"), "no CT image series", "localizer"
    )


def test_a_localizer_in_the_cts_folder_is_refused_naming_it(tmp_path, ct):
    """A case is a folder: a localizer beside the CT is refused, naming both, rather than guessed away."""
    image, affine = ct
    folder = tmp_path / "study"
    dicom_write.write_series(image, affine, folder, series_number=2)
    scout = dicom_write.write_series(
        image[:, :, :1],
        SCOUT_AFFINE,
        tmp_path / "tmp",
        series_number=1,
        image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
    )
    _move_in(scout, folder, "S_")
    _one_line_error(
        lambda: inputs.list_inputs(folder), f"{folder}: folder holds 2 DICOM series", "localizer", "a folder of its own"
    )


# ----------------------------------------------------------------------------------------------------------------------
# gantry tilt, slice thickness and spacing


def test_gantry_tilt_is_refused_with_a_remedy_that_exists(tmp_path, ct):
    """Slices tilted 12 degrees about the patient's left-right axis, stacked along the table (z), as a tilted gantry
    acquires them: a sheared grid that an orthogonal volume would misplace."""
    image, affine = ct
    t = np.deg2rad(12)
    tilted = affine.copy()
    tilted[:3, 1] = affine[:3, 1] @ np.array([[1, 0, 0], [0, np.cos(t), np.sin(t)], [0, -np.sin(t), np.cos(t)]])
    folder = tmp_path / "tilt"
    dicom_write.write_series(image, tilted, folder)
    message = _one_line_error(
        lambda: inputs.check_dicom(str(folder)),
        str(folder),
        "gantry tilt",
        "python -m scripts dicom convert --allow_irregular",
    )
    assert "allow_irregular=True" not in message  # inference has no such option
    with pytest.warns(UserWarning, match="gantry tilt"):
        _, sheared, _ = dicom.read_series(folder, allow_irregular=True)
    np.testing.assert_allclose(sheared, tilted, atol=1e-4)  # the sheared grid, exactly


def test_varying_slice_thickness_on_evenly_spaced_slices_is_read_whole(tmp_path, ct):
    """Evenly spaced slices whose SliceThickness changes halfway: one series. ITK (GDCM's series details) split it by
    SliceThickness and read the first half, silently; the bundle's reader reads all of it."""
    folder = tmp_path / "series"
    _edit(dicom_write.write_series(*ct, folder), lambda k, ds: setattr(ds, "SliceThickness", 10 if k < 10 else 5))
    assert inputs.check_dicom(str(folder)) == SHAPE
    volume, _ = _assert_inference_reads_the_series(folder)
    np.testing.assert_array_equal(volume, ct[0])


def test_varying_slice_spacing_is_refused_with_a_remedy_that_exists(tmp_path, ct):
    """10 mm slices, then 5 mm slices (thickness and positions): irregular spacing, refused naming the gap."""

    def thinner(k, ds):
        if k >= 10:
            ds.ImagePositionPatient[2] -= 5.0 * (k - 9)
            ds.SliceThickness = ds.SpacingBetweenSlices = 5

    folder = tmp_path / "series"
    _edit(dicom_write.write_series(*ct, folder), thinner)
    message = _one_line_error(
        lambda: inputs.check_dicom(str(folder)),
        str(folder),
        "irregular slice spacing",
        "gaps of 5, 10 mm",
        "SliceThickness varies (10.0, 5.0 mm)",
        "python -m scripts dicom convert --allow_irregular",
    )
    assert "allow_irregular=True" not in message


# ----------------------------------------------------------------------------------------------------------------------
# end to end: the bundle's inference on a folder of such series


@pytest.mark.slow
def test_inference_on_real_world_dicom_folders(tmp_path, ct):
    """One batch run: the readable series get masks on their exact grid (the blank-UID one with a warning naming the
    missing tags), the localizer folder is skipped with a warning, every refused folder is listed with its reason."""
    image, affine = ct
    root, out = tmp_path / "in", tmp_path / "out"
    _blank_series(ct, root / "a_blank")
    _blank_series(ct, root / "b_absent", "absent")
    _edit(dicom_write.write_series(image, affine, root / "c_instances"), lambda k, ds: setattr(ds, "InstanceNumber", 1))
    dicom_write.write_series(
        image[:, :, :1], SCOUT_AFFINE, root / "d_scout", image_type=("ORIGINAL", "PRIMARY", "LOCALIZER")
    )
    _blank_series(ct, root / "e_mixed", prefix="A_")
    _move_in(dicom_write.write_series(image[:, :, :3], affine, tmp_path / "tmp"), root / "e_mixed", "B_")
    _edit(
        dicom_write.write_series(image, affine, root / "f_thickness"),
        lambda k, ds: setattr(ds, "SliceThickness", 10 if k < 10 else 5),
    )
    proc = run_bundle(
        "inference",
        ["inference.yaml"],
        check=False,
        bundle_root=BUNDLE_ROOT,
        input=root,
        output_dir=out,
        load_pretrain="false",
        **FAST,
    )
    line = assert_one_line_error(
        proc,
        "error: 1 of 5 input case(s) failed and were skipped (4 written)",
        f"{root / 'e_mixed'}: folder holds 2 DICOM series",
    )
    assert "d_scout" not in line
    assert any("d_scout" in s and "localizer" in s for s in proc.stdout.splitlines()), proc.stdout[-3000:]
    for name in ("a_blank", "b_absent"):
        assert any(str(root / name) in s and "StudyInstanceUID" in s for s in proc.stdout.splitlines())
    for name in ("a_blank", "b_absent", "c_instances", "f_thickness"):
        volume, dicom_affine, _ = dicom.read_series(root / name)
        seg = nib.load(str(out / f"{name}_seg.nii.gz"))
        assert seg.shape == volume.shape == SHAPE
        np.testing.assert_allclose(seg.affine, dicom_affine, atol=1e-4)
    assert sorted(p.name for p in out.glob("*_seg.nii.gz")) == [
        f"{n}_seg.nii.gz" for n in ("a_blank", "b_absent", "c_instances", "f_thickness")
    ]
