"""Tests of scripts.lib.dicom: writing, finding, checking, reading and converting DICOM CT series, the CLI, and which
MONAI readers load our series with the same voxels and affine as the NIfTI that ``convert`` writes."""

import os
import shutil
import subprocess
import sys
import warnings

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.uid import (
    BasicTextSRStorage,
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    generate_uid,
)

from scripts.lib import dicom, phantom
from scripts.lib.dicom import write as dicom_write

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CODECS = {"explicit": ExplicitVRLittleEndian, "jpeg2000": JPEG2000Lossless, "jpegls": JPEGLSLossless}
SHAPE = (64, 64, 20)


def _volume(shape=SHAPE, seed=0, padding=None):
    """Phantom HU values cut to ``shape``; ``padding`` fills a corner column, like a scanner's out-of-field value.

    The phantom needs a field of view that holds the liver, so it is drawn with at least 6 voxels per axis.
    """
    full = tuple(max(n, 6) for n in shape)
    spacing = (min(50.0, 280.0 / full[0]), min(50.0, 280.0 / full[1]), min(50.0, 250.0 / full[2]))
    image = phantom.make_case(seed, shape=full, spacing=spacing, orientation="RAS")[0]
    image = np.array(image[: shape[0], : shape[1], : shape[2]])
    if padding is not None:
        image[:3, :3, :] = padding
    return image


# phantom grids (orientation code, spacing) for 64x64x20 volumes; LAS and PLS are left-handed
PHANTOM_GRIDS = {
    "RAS": ("RAS", (4.375, 4.375, 12.5)),
    "LPS": ("LPS", (4.375, 4.375, 12.5)),
    "aniso": ("LPS", (3.6, 4.7, 13.0)),
    "LAS": ("LAS", (4.4, 4.0, 12.5)),
    "PLS": ("PLS", (4.0, 4.4, 12.5)),
}


def _oblique(affine):
    """The same grid rotated 20 degrees about z and 11 degrees about x (world RAS)."""
    t, u = np.deg2rad(20), np.deg2rad(11)
    rot = np.eye(4)
    rz = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(u), -np.sin(u)], [0, np.sin(u), np.cos(u)]])
    rot[:3, :3] = rz @ rx
    return rot @ affine


def _case(kind, seed=0):
    """A 64x64x20 phantom case (int16 HU image, RAS affine) on one of PHANTOM_GRIDS, or "oblique" (rotated RAS)."""
    if kind == "oblique":
        image, affine = _case("RAS", seed)
        return image, _oblique(affine)
    orientation, spacing = PHANTOM_GRIDS[kind]
    image, _, affine = phantom.make_case(seed, shape=SHAPE, spacing=spacing, orientation=orientation)
    return image, affine


def _affine(kind):
    """Simple RAS affines with known numbers, for header checks: axis-aligned RAS or LPS."""
    a = np.diag([0.8, 0.8, 2.5, 1.0]) if kind == "RAS" else np.diag([-0.8, -0.8, 2.5, 1.0])
    a[:3, 3] = [-20.5, 13.25, -101.125]
    return a


def _flip_k(affine, n):
    """The affine of the same grid with the third axis reversed."""
    flip = np.eye(4)
    flip[2, 2], flip[2, 3] = -1, n - 1
    return affine @ flip


def _sr_file(path, patient_id="PHANTOM"):
    """A tiny non-image DICOM object (Basic Text SR) of its own series."""
    meta = pydicom.dataset.FileMetaDataset()
    meta.MediaStorageSOPClassUID = BasicTextSRStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = BasicTextSRStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.PatientID, ds.SeriesNumber = "SR", patient_id, 99
    os.makedirs(os.path.dirname(path), exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return ds.SeriesInstanceUID


# ----------------------------------------------------------------------------------------------------------------------
# writing and round trips


@pytest.mark.parametrize("codec", sorted(CODECS))
@pytest.mark.parametrize("kind", ["RAS", "LPS", "aniso", "oblique"])
def test_round_trip_read_series_and_convert(tmp_path, codec, kind):
    vol, affine = _case(kind, seed=1)
    series = tmp_path / "dicom" / "s1"
    files = dicom_write.write_series(vol, affine, series, transfer_syntax=codec, series_number=7)
    assert len(files) == SHAPE[2]
    assert pydicom.dcmread(files[0]).file_meta.TransferSyntaxUID == CODECS[codec]

    out, aff, info = dicom.read_series(series)
    assert out.dtype == np.int16 and out.shape == vol.shape
    np.testing.assert_array_equal(out, vol)
    np.testing.assert_allclose(aff, affine, atol=1e-4)
    assert info["shape"] == SHAPE and not info["irregular"]
    np.testing.assert_allclose(info["spacing"], np.linalg.norm(affine[:3, :3], axis=0), atol=1e-5)

    written = dicom_write.convert(tmp_path / "dicom", tmp_path / "nii")
    assert [os.path.basename(p) for p in written] == ["PHANTOM_7.nii.gz"]
    img = nib.load(written[0])
    assert img.get_data_dtype() == np.int16
    np.testing.assert_array_equal(np.asarray(img.dataobj), vol)
    np.testing.assert_allclose(img.affine, affine, atol=1e-4)
    assert int(img.header["sform_code"]) == 1 and int(img.header["qform_code"]) == 1
    np.testing.assert_allclose(img.get_qform(), affine, atol=1e-4)


@pytest.mark.parametrize("codec", sorted(CODECS))
@pytest.mark.parametrize("padding, signed, intercept", [(None, 0, -1024), (-2048, 1, 0)])
def test_storage_layout_unsigned_or_signed(tmp_path, codec, padding, signed, intercept):
    vol = _volume(shape=(32, 40, 6), seed=2, padding=padding)
    assert vol.min() == (-1024 if padding is None else -2048)
    files = dicom_write.write_series(vol, _affine("RAS"), tmp_path, transfer_syntax=codec)
    ds = pydicom.dcmread(files[0])
    assert ds.PixelRepresentation == signed and float(ds.RescaleIntercept) == intercept
    assert float(ds.RescaleSlope) == 1 and ds.BitsAllocated == 16
    out, _, _ = dicom.read_series(tmp_path)
    np.testing.assert_array_equal(out, vol)


def test_headers_geometry_and_uids(tmp_path):
    affine = _affine("LPS")
    files = dicom_write.write_series(
        _volume(shape=(40, 30, 5)),
        affine,
        tmp_path,
        study_uid="1.2.3.4",
        series_uid="1.2.3.5",
        frame_of_reference_uid="1.2.3.6",
        series_description="abdomen",
        series_number=4,
    )
    headers = [pydicom.dcmread(f) for f in files]
    sop_uids = {ds.SOPInstanceUID for ds in headers}
    assert len(sop_uids) == 5
    for k, ds in enumerate(headers):
        assert ds.preamble is not None and ds.file_meta.MediaStorageSOPClassUID == CTImageStorage
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.SOPClassUID == CTImageStorage and ds.Modality == "CT"
        assert (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID) == ("1.2.3.4", "1.2.3.5", "1.2.3.6")
        assert ds.InstanceNumber == k + 1 and ds.Rows == 30 and ds.Columns == 40
        # nibabel LPS axes (-x, -y in RAS) are +x, +y in DICOM LPS: identity cosines
        np.testing.assert_allclose([float(v) for v in ds.ImageOrientationPatient], [1, 0, 0, 0, 1, 0], atol=1e-9)
        expected_ipp = [20.5, -13.25, -101.125 + 2.5 * k]
        np.testing.assert_allclose([float(v) for v in ds.ImagePositionPatient], expected_ipp, atol=1e-6)
        np.testing.assert_allclose([float(v) for v in ds.PixelSpacing], [0.8, 0.8])
        assert float(ds.SliceThickness) == pytest.approx(2.5) and float(ds.SpacingBetweenSlices) == pytest.approx(2.5)
        assert list(ds.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"]


def test_write_series_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="transfer_syntax"):
        dicom_write.write_series(_volume(shape=(8, 8, 2)), np.eye(4), tmp_path, transfer_syntax="jpeg")
    with pytest.raises(ValueError, match="fractional HU"):
        dicom_write.write_series(np.full((8, 8, 2), 0.5), np.eye(4), tmp_path)
    with pytest.raises(ValueError, match="does not fit 16-bit"):
        dicom_write.write_series(np.full((8, 8, 2), 70000), np.eye(4), tmp_path)
    sheared = np.eye(4)
    sheared[0, 1] = 0.5
    with pytest.raises(ValueError, match="not orthogonal"):
        dicom_write.write_series(_volume(shape=(8, 8, 2)), sheared, tmp_path)
    with pytest.raises(ValueError, match="at least 32x32"):
        dicom_write.write_series(_volume(shape=(40, 24, 2)), np.eye(4), tmp_path, transfer_syntax="jpeg2000")
    assert not os.listdir(tmp_path)


def test_write_series_leaves_no_partial_series(tmp_path):
    os.makedirs(tmp_path / "IM_0003.dcm")  # a folder in the way of slice 3
    with pytest.raises(OSError):
        dicom_write.write_series(_volume(shape=(16, 16, 5)), np.eye(4), tmp_path, transfer_syntax="jpegls")
    assert os.listdir(tmp_path) == ["IM_0003.dcm"]


@pytest.mark.parametrize("kind", ["LAS", "PLS"])
def test_left_handed_grid_reads_back_along_the_slice_normal(tmp_path, kind):
    """A left-handed grid has k against the DICOM slice normal: it reads back k-reversed with the matching affine."""
    vol, affine = _case(kind, seed=3)
    assert np.linalg.det(affine[:3, :3]) < 0
    dicom_write.write_series(vol, affine, tmp_path / "dicom", transfer_syntax="jpegls", series_number=1)
    out, aff, _ = dicom.read_series(tmp_path / "dicom")
    np.testing.assert_array_equal(out, vol[:, :, ::-1])
    np.testing.assert_allclose(aff, _flip_k(affine, SHAPE[2]), atol=1e-4)
    assert np.linalg.det(aff[:3, :3]) > 0
    img = nib.load(dicom_write.convert(tmp_path / "dicom", tmp_path / "nii")[0])
    # same voxels at the same world positions as the input
    canonical_in = nib.as_closest_canonical(nib.Nifti1Image(vol, affine))
    canonical_out = nib.as_closest_canonical(img)
    np.testing.assert_array_equal(np.asarray(canonical_out.dataobj), np.asarray(canonical_in.dataobj))
    np.testing.assert_allclose(canonical_out.affine, canonical_in.affine, atol=1e-4)


# ----------------------------------------------------------------------------------------------------------------------
# checks


def test_missing_slice_is_reported_with_series_and_instance(tmp_path):
    vol, affine = _volume(seed=4), _affine("RAS")
    series = tmp_path / "dicom" / "patient" / "ct"
    files = dicom_write.write_series(vol, affine, series, series_number=2)
    uid = pydicom.dcmread(files[0]).SeriesInstanceUID
    os.remove(files[7])  # instance 8, z = -101.125 + 7 * 2.5 = -83.625 (RAS) = position along the LPS normal
    with pytest.raises(ValueError) as err:
        dicom.check_series(series)
    message = str(err.value)
    assert str(series) in message and uid in message
    assert "missing 1 slice" in message and "(instance 8)" in message and "-83.625" in message
    with pytest.raises(ValueError, match="missing 1 slice"):
        dicom.read_series(series)
    with pytest.raises(ValueError, match="missing 1 slice"):
        dicom_write.convert(tmp_path / "dicom", tmp_path / "nii")
    assert not (tmp_path / "nii").exists()

    with pytest.warns(UserWarning, match="missing 1 slice"):
        out, aff, info = dicom.read_series(series, allow_irregular=True)
    assert out.shape == (64, 64, 19) and info["irregular"]
    np.testing.assert_array_equal(out, np.delete(vol, 7, axis=2))
    assert aff[2, 2] == pytest.approx(2.5 * 19 / 18)  # first to last slice, evenly


def test_duplicate_position_and_inconsistent_orientation(tmp_path):
    files = dicom_write.write_series(_volume(shape=(16, 16, 6)), _affine("RAS"), tmp_path / "dup")
    ds = pydicom.dcmread(files[3])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.InstanceNumber = 99
    ds.save_as(tmp_path / "dup" / "copy.dcm", enforce_file_format=True)
    with pytest.raises(ValueError, match=r"duplicate slice position .*instance 99"):
        dicom.check_series(tmp_path / "dup")

    files = dicom_write.write_series(_volume(shape=(16, 16, 6)), _affine("RAS"), tmp_path / "tilt")
    ds = pydicom.dcmread(files[2])
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0.8, -0.6]
    ds.save_as(files[2], enforce_file_format=True)
    with pytest.raises(ValueError, match=r"inconsistent ImageOrientationPatient"):
        dicom.check_series(tmp_path / "tilt")


def test_irregular_gap_and_gantry_tilt(tmp_path):
    vol = _volume(shape=(16, 16, 6))
    files = dicom_write.write_series(vol, _affine("RAS"), tmp_path / "gap")
    ds = pydicom.dcmread(files[2])
    ds.ImagePositionPatient[2] += 0.7  # gaps of 3.2 and 1.8 mm instead of 2.5: no whole missing slice
    ds.save_as(files[2], enforce_file_format=True)
    with pytest.raises(ValueError, match=r"irregular slice spacing: gap of 3\.200 mm between instance 2"):
        dicom.check_series(tmp_path / "gap")

    files = dicom_write.write_series(vol, _affine("RAS"), tmp_path / "tilt")
    for k, f in enumerate(files):  # each slice shifted 0.4 mm further along y: a tilted stack
        ds = pydicom.dcmread(f)
        ds.ImagePositionPatient[1] += 0.4 * k
        ds.save_as(f, enforce_file_format=True)
    with pytest.raises(ValueError, match="drift off the slice normal"):
        dicom.check_series(tmp_path / "tilt")
    with pytest.warns(UserWarning, match="drift off the slice normal"):
        out, aff, _ = dicom.read_series(tmp_path / "tilt", allow_irregular=True)
    np.testing.assert_array_equal(out, vol)
    expected = _affine("RAS")
    expected[1, 2] = -0.4  # the sheared third column (LPS +y is RAS -y)
    np.testing.assert_allclose(aff, expected, atol=1e-6)
    with pytest.warns(UserWarning):
        written = dicom_write.convert(tmp_path / "tilt", tmp_path / "nii", allow_irregular=True)
    np.testing.assert_allclose(nib.load(written[0]).affine, expected, atol=1e-4)


def test_two_series_in_one_folder_are_reported(tmp_path):
    mixed, study = tmp_path / "mixed", generate_uid()
    dicom_write.write_series(
        _volume(shape=(16, 16, 4)),
        _affine("RAS"),
        mixed,
        study_uid=study,
        series_number=3,
        series_description="arterial",
    )
    other = dicom_write.write_series(
        _volume(shape=(16, 16, 5), seed=9),
        _affine("RAS"),
        tmp_path / "tmp",
        study_uid=study,
        series_number=4,
        series_description="venous",
    )
    for f in other:
        shutil.move(f, mixed / ("B_" + os.path.basename(f)))
    found = dicom.find_series(mixed)
    assert [(s["series_number"], s["n_files"], s["series_description"]) for s in found] == [
        (3, 4, "arterial"),
        (4, 5, "venous"),
    ]
    with pytest.raises(ValueError) as err:
        dicom.check_series(mixed)
    message = str(err.value)
    assert str(mixed) in message and "2 DICOM series" in message
    for s in found:
        assert s["uid"] in message
    assert "arterial" in message and "venous" in message
    with pytest.raises(ValueError, match="2 DICOM series"):
        dicom.read_series(mixed)
    # convert groups by SeriesInstanceUID, not by folder: both come out whole
    written = dicom_write.convert(tmp_path / "mixed", tmp_path / "nii")
    assert [nib.load(p).shape for p in written] == [(16, 16, 4), (16, 16, 5)]


def test_find_series_fields_and_sorting(tmp_path):
    vol = _volume(shape=(16, 16, 12))
    files = dicom_write.write_series(
        vol, _affine("RAS"), tmp_path / "a" / "b", patient_id="P1", series_number=5, series_description="portal venous"
    )
    # shuffle the file names so that name order differs from slice order
    for n, f in enumerate(files):
        os.rename(f, os.path.join(os.path.dirname(f), f"x{(n * 7) % 12:02d}.dcm"))
    (tmp_path / "a" / "README.txt").write_text("not dicom")
    (found,) = dicom.find_series(tmp_path)
    assert found["n_files"] == 12 and found["folder"] == str(tmp_path / "a" / "b")
    assert (found["modality"], found["patient_id"], found["series_number"]) == ("CT", "P1", 5)
    assert found["series_description"] == "portal venous"
    assert found["image_type"] == ("ORIGINAL", "PRIMARY", "AXIAL") and found["sop_class_uid"] == CTImageStorage
    instances = [int(pydicom.dcmread(f, stop_before_pixels=True).InstanceNumber) for f in found["files"]]
    assert instances == list(range(1, 13))
    out, _, _ = dicom.read_series(tmp_path / "a")
    np.testing.assert_array_equal(out, vol)


# ----------------------------------------------------------------------------------------------------------------------
# convert


def test_convert_skips_and_lists_localizers_and_non_image_objects(tmp_path, capsys):
    root = tmp_path / "dicom"
    vol = _volume(shape=(32, 32, 8))
    dicom_write.write_series(vol, _affine("RAS"), root / "ct", series_number=2)
    scout_affine = np.array([[1.0, 0, 0, 0], [0, 0, 1.0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1]])  # coronal
    scout = dicom_write.write_series(
        _volume(shape=(32, 32, 1)),
        scout_affine,
        root / "scout",
        series_number=1,
        image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
    )
    sr_uid = _sr_file(str(root / "sr" / "report.dcm"))
    (root / "notes.txt").write_text("hello")
    found = dicom.find_series(root)
    assert len(found) == 3
    written = dicom_write.convert(root, tmp_path / "nii")
    assert [os.path.basename(p) for p in written] == ["PHANTOM_2.nii.gz"]
    np.testing.assert_array_equal(np.asarray(nib.load(written[0]).dataobj), vol)
    stdout = capsys.readouterr().out
    skip_lines = [line for line in stdout.splitlines() if line.startswith("skip:")]
    assert len(skip_lines) == 2
    scout_uid = pydicom.dcmread(scout[0]).SeriesInstanceUID
    assert any(scout_uid in line and "localizer" in line for line in skip_lines)
    assert any(sr_uid in line and "not CT Image Storage" in line for line in skip_lines)
    assert sorted(os.listdir(tmp_path / "nii")) == ["PHANTOM_2.nii.gz"]


def test_blank_series_number_and_descriptions(tmp_path):
    root = tmp_path / "dicom"
    first = dicom_write.write_series(_volume(shape=(16, 16, 4)), _affine("RAS"), root / "1", patient_id="ANON/1 x")
    second = dicom_write.write_series(_volume(shape=(16, 16, 3)), _affine("LPS"), root / "2", patient_id="ANON/1 x")
    ds = pydicom.dcmread(first[0])
    assert "SeriesNumber" in ds and ds.SeriesNumber in (None, "")
    assert ds.SeriesDescription == "" and ds.StudyDescription == ""
    found = dicom.find_series(root)
    assert [s["series_number"] for s in found] == [None, None]
    assert [s["series_description"] for s in found] == ["", ""]
    written = dicom_write.convert(root, tmp_path / "nii")
    tails = {}
    for files in (first, second):
        uid = pydicom.dcmread(files[0]).SeriesInstanceUID
        tails[uid.replace(".", "")[-8:]] = len(files)
    names = sorted(os.path.basename(p) for p in written)
    assert names == sorted(f"ANON_1_x_{tail}.nii.gz" for tail in tails)
    for p in written:
        tail = os.path.basename(p)[len("ANON_1_x_") : -len(".nii.gz")]
        assert nib.load(p).shape[2] == tails[tail]


def test_same_series_number_twice_gets_unique_names(tmp_path):
    root = tmp_path / "dicom"
    for name in ("study1", "study2"):
        dicom_write.write_series(_volume(shape=(16, 16, 3)), _affine("RAS"), root / name, series_number=2)
    names = [os.path.basename(p) for p in dicom_write.convert(root, tmp_path / "nii")]
    assert len(set(names)) == 2 and all(n.startswith("PHANTOM_2_") for n in names)


def test_no_partial_output_when_a_series_fails_to_decode(tmp_path):
    root = tmp_path / "dicom"
    dicom_write.write_series(_volume(shape=(16, 16, 4)), _affine("RAS"), root / "a", patient_id="A", series_number=1)
    bad = dicom_write.write_series(
        _volume(shape=(16, 16, 4)), _affine("RAS"), root / "b", patient_id="B", series_number=1
    )
    ds = pydicom.dcmread(bad[2])
    ds.PixelData = ds.PixelData[:100]  # header intact, pixels truncated
    ds.save_as(bad[2], enforce_file_format=True)
    dicom.check_series(root / "b")  # the header alone looks fine
    with pytest.raises(ValueError) as err:
        dicom_write.convert(root, tmp_path / "nii")
    assert bad[2] in str(err.value) and "cannot decode" in str(err.value)
    assert sorted(os.listdir(tmp_path / "nii")) == ["A_1.nii.gz"]  # no B_1 file, no temporary file


# ----------------------------------------------------------------------------------------------------------------------
# CLI


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "scripts", "dicom", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_convert_check_and_errors(tmp_path):
    root = tmp_path / "dicom"
    dicom_write.write_series(_volume(shape=(16, 16, 6)), _affine("RAS"), root / "good", series_number=1)
    files = dicom_write.write_series(_volume(shape=(16, 16, 6)), _affine("RAS"), root / "bad", series_number=2)

    ok = _cli("check", "-i", root / "good")
    assert ok.returncode == 0, ok.stderr
    assert " ok " in ok.stdout and "16x16x6" in ok.stdout

    os.remove(files[2])
    bad = _cli("convert", "-i", root, "-o", tmp_path / "nii")
    assert bad.returncode == 1
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: series ")
    assert str(root / "bad") in lines[0] and "missing 1 slice" in lines[0]
    assert not (tmp_path / "nii").exists()

    check = _cli("check", "-i", root)
    assert check.returncode == 1 and len(check.stderr.strip().splitlines()) == 1
    assert "error" in check.stdout and " ok " in check.stdout  # the table still lists both series

    debug = _cli("convert", "-i", root, "-o", tmp_path / "nii", "--debug")
    assert debug.returncode == 1 and "Traceback" in debug.stderr

    irregular = _cli("convert", "-i", root, "-o", tmp_path / "nii", "--allow_irregular")
    assert irregular.returncode == 0, irregular.stderr
    assert "warning: series" in irregular.stderr
    progress = [line for line in irregular.stdout.splitlines() if line.startswith("[")]
    assert len(progress) == 2 and progress[0].startswith("[1/2]")
    assert sorted(os.listdir(tmp_path / "nii")) == ["PHANTOM_1.nii.gz", "PHANTOM_2.nii.gz"]

    missing = _cli("convert", "-i", tmp_path / "nowhere", "-o", tmp_path / "nii")
    assert missing.returncode == 1 and missing.stderr.startswith("error: ") and "no such folder" in missing.stderr
    assert _cli("--help").returncode == 0 and _cli("convert", "--help").returncode == 0


# ----------------------------------------------------------------------------------------------------------------------
# MONAI readers: which of them loads our series like the NIfTI from convert?


def _monai_load(folder, **kwargs):
    from monai.transforms import LoadImage

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nvImageCodec absence and similar notices
        loader = LoadImage(image_only=True, ensure_channel_first=True, **kwargs)
        chosen = next(r for r in loader.readers[::-1] if r.verify_suffix(str(folder))) if loader.auto_select else None
        img = loader(str(folder))
    return img, chosen


@pytest.mark.parametrize("codec", sorted(CODECS))
@pytest.mark.parametrize("kind", ["RAS", "LPS", "aniso", "oblique"])
def test_monai_readers_match_convert(tmp_path, monkeypatch, codec, kind):
    """Plain LoadImage (ITKReader for a folder) and PydicomReader give the voxels and RAS affine of our NIfTI."""
    from monai.data import ITKReader

    monkeypatch.delenv("MONAI_DICOM_READER", raising=False)
    vol, affine = _case(kind, seed=5)
    if kind == "aniso":  # out-of-field padding below -1024: signed storage
        vol[:3, :3, :] = -2048
    dicom_write.write_series(vol, affine, tmp_path / "dicom", transfer_syntax=codec, series_number=1)
    ref = nib.load(dicom_write.convert(tmp_path / "dicom", tmp_path / "nii")[0])
    ref_data = np.asarray(ref.dataobj)

    img, chosen = _monai_load(tmp_path / "dicom")
    assert isinstance(chosen, ITKReader)
    assert img.shape == (1, *SHAPE)
    np.testing.assert_array_equal(img[0].numpy(), ref_data)
    np.testing.assert_allclose(img.affine.numpy(), ref.affine, atol=1e-4)

    img, _ = _monai_load(tmp_path / "dicom", reader="PydicomReader")
    assert img.shape == (1, *SHAPE)
    np.testing.assert_array_equal(img[0].numpy(), ref_data)
    np.testing.assert_allclose(img.affine.numpy(), ref.affine, atol=1e-4)


def test_monai_pydicom_reader_stacks_by_instance_number(tmp_path, monkeypatch):
    """Caveat: PydicomReader orders slices by InstanceNumber, ITKReader (and convert) along the slice normal.

    With InstanceNumber running against the normal (a left-handed grid, as many scanners number head to feet) the
    PydicomReader volume is k-reversed relative to the NIfTI; its affine matches its own order, so both agree after
    MONAI's Orientation to RAS.
    """
    from monai.transforms import Orientation

    monkeypatch.delenv("MONAI_DICOM_READER", raising=False)
    vol, affine = _case("LAS", seed=6)
    dicom_write.write_series(vol, affine, tmp_path / "dicom", transfer_syntax="jpeg2000", series_number=1)
    ref = nib.load(dicom_write.convert(tmp_path / "dicom", tmp_path / "nii")[0])

    itk_img, _ = _monai_load(tmp_path / "dicom")
    np.testing.assert_array_equal(itk_img[0].numpy(), np.asarray(ref.dataobj))
    np.testing.assert_allclose(itk_img.affine.numpy(), ref.affine, atol=1e-4)

    pyd_img, _ = _monai_load(tmp_path / "dicom", reader="PydicomReader")
    np.testing.assert_array_equal(pyd_img[0].numpy(), vol)  # instance order = the order written
    np.testing.assert_allclose(pyd_img.affine.numpy(), affine, atol=1e-4)
    assert not np.allclose(pyd_img.affine.numpy(), ref.affine, atol=1e-4)

    to_ras = Orientation(axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S")))
    a, b = to_ras(itk_img), to_ras(pyd_img)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_allclose(a.affine.numpy(), b.affine.numpy(), atol=1e-4)


def test_reading_never_imports_the_writer():
    """Inference reads series through scripts.lib.dicom (the package gives its reader only) and scripts.lib.seg; the
    writer is imported by name, and then it is there."""
    code = (
        "import sys\n"
        "from scripts.lib import dicom, seg\n"
        "from scripts.lib.dicom import read_series\n"
        "assert 'scripts.lib.dicom.write' not in sys.modules, 'the writer is on the reading path'\n"
        "assert not hasattr(dicom, 'write_series'), 'the package gives a writer name'\n"
        "from scripts.lib.dicom import write\n"
        "assert write.write_series.__module__ == 'scripts.lib.dicom.write'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
