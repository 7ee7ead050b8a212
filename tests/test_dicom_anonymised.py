"""DICOM headers as anonymisers and old archives leave them (issue 27): every state reads exactly or is refused.

Each row transforms a real CT series (:mod:`real_dicom`: pydicom's real CT slice, one file per slice) with pydicom:
tags blanked or deleted, files saved as bare data sets (no preamble, no file meta), renamed, renumbered, or
transcoded to JPEG 2000 lossless. Then either :func:`scripts.lib.dicom.read_series` gives exactly
:func:`real_dicom.expected_volume` (voxels and RAS affine), or :func:`scripts.lib.dicom.check_series` raises a one-line
ValueError naming the tag. The headline case is the anonymised series that used to be refused with ``SOP class none
is not CT Image Storage``: JPEG 2000 lossless, SOP Class, SOP Instance, Series and Study Instance UIDs all blank,
while each file's meta header says CT Image Storage.
"""

from __future__ import annotations

import logging
import os

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import (
    ComprehensiveSRStorage,
    CTImageStorage,
    EnhancedCTImageStorage,
    JPEG2000Lossless,
    RTDoseStorage,
    SecondaryCaptureImageStorage,
)
from real_dicom import N_SLICES, expected_volume, write_real_series
from test_dicom import _cli

from scripts.lib import dicom

HEADLINE_SLICES = 20  # as many files as the anonymised example series
SHUFFLED = [7, 2, 11, 0, 5, 9, 1, 10, 3, 8, 6, 4]  # a permutation of the 12 slice indices


# ----------------------------------------------------------------------------------------------------------------------
# transforming the real series


def _save(ds, path):
    """Write ``ds`` as it is: its preamble and file meta (if any) unchanged, nothing filled in by pydicom."""
    pydicom.dcmwrite(path, ds, enforce_file_format=False)


def _save_bare(implicit: bool):
    """A saver that writes a bare data set (no preamble, no file meta), implicit or explicit VR little endian."""

    def save(ds, path):
        del ds.file_meta
        ds.preamble = None
        pydicom.dcmwrite(path, ds, enforce_file_format=False, implicit_vr=implicit, little_endian=True)

    return save


def _edit(paths, change=None, save=_save):
    """Rewrite each file with ``change(k, dataset)`` (k: the slice index, ascending along the normal), saved by
    ``save``; returns the paths."""
    for k, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        if change is not None:
            change(k, ds)
        save(ds, path)
    return paths


def _blank(*keywords):
    """Blank the tags (SOPInstanceUID: its file meta copy too, as the headline series has it)."""

    def change(_, ds):
        for keyword in keywords:
            setattr(ds, keyword, "")
            if keyword == "SOPInstanceUID":
                ds.file_meta.MediaStorageSOPInstanceUID = ""

    return change


def _delete(*keywords, only=None):
    """Delete the tags from every file, or from slice ``only``."""

    def change(k, ds):
        if only is None or k == only:
            for keyword in keywords:
                delattr(ds, keyword)

    return change


def _both(*changes):
    def change(k, ds):
        for c in changes:
            c(k, ds)

    return change


def _rename(paths, name):
    """Rename file k to ``name(k)`` in its folder (slice order unchanged); returns the new paths."""
    renamed = [os.path.join(os.path.dirname(p), name(k)) for k, p in enumerate(paths)]
    for old, new in zip(paths, renamed, strict=True):
        os.rename(old, new)
    return renamed


def _reversed_names(paths):
    """File names that sort in the opposite order to the slice positions."""
    return _rename(paths, lambda k: f"IM{len(paths) - k:04d}.dcm")


def _shuffle_instances(paths):
    """InstanceNumbers in shuffled order, and file names that follow them: neither gives the slice order."""
    _edit(paths, lambda k, ds: setattr(ds, "InstanceNumber", SHUFFLED[k] + 1))
    return _rename(paths, lambda k: f"IM{SHUFFLED[k] + 1:04d}.dcm")


def _same_sop_instance_uid(_, ds):
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"


def _headline(folder, n_slices=HEADLINE_SLICES):
    """The anonymised example: JPEG 2000 lossless, SOP Class/Instance, Series and Study UIDs blank, file meta intact
    (MediaStorageSOPClassUID CT Image Storage)."""
    blank = _blank("SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID")
    paths = write_real_series(folder, n_slices)
    return _edit(paths, _both(lambda k, ds: ds.compress(JPEG2000Lossless, generate_instance_uid=False), blank))


def _assert_reads_exactly(folder, n_slices=N_SLICES):
    volume, affine, info = dicom.read_series(folder)
    expected, expected_affine = expected_volume(n_slices)
    assert volume.shape == expected.shape
    np.testing.assert_allclose(volume, expected, rtol=0, atol=1e-4)
    np.testing.assert_allclose(affine, expected_affine, rtol=0, atol=1e-4)
    return info


def _one_line_error(call, *fragments):
    with pytest.raises(ValueError) as err:
        call()
    message = str(err.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert str(fragment) in message, f"{fragment!r} not in: {message}"
    return message


# ----------------------------------------------------------------------------------------------------------------------
# the headline series


def test_headline_series_is_ct_by_its_file_meta_and_reads_exactly(tmp_path, caplog):
    folder = tmp_path / "series"
    files = _headline(folder)
    ds = pydicom.dcmread(files[0])
    assert ds.SOPClassUID == ds.SOPInstanceUID == ds.SeriesInstanceUID == ds.StudyInstanceUID == ""
    assert ds.file_meta.MediaStorageSOPClassUID == CTImageStorage
    assert ds.file_meta.TransferSyntaxUID == JPEG2000Lossless

    with caplog.at_level(logging.INFO, logger="scripts.lib.dicom"):
        (found,), skipped = dicom.ct_series(tmp_path)
    assert skipped == [] and dicom.skip_reason(found) is None
    decided = [r.getMessage() for r in caplog.records if r.name == "scripts.lib.dicom" and r.levelno == logging.INFO]
    assert len(decided) == 1 and str(folder) in decided[0] and "MediaStorageSOPClassUID" in decided[0]
    assert found["sop_class_uid"] == "" and found["sop_class"] == CTImageStorage
    assert found["sop_class_from"] == "MediaStorageSOPClassUID"
    assert found["n_files"] == HEADLINE_SLICES
    assert found["missing_uids"] == ["SeriesInstanceUID blank", "StudyInstanceUID blank", "SOPInstanceUID blank"]
    _assert_reads_exactly(folder, HEADLINE_SLICES)


def test_convert_command_converts_the_headline_series(tmp_path):
    _headline(tmp_path / "dicom" / "series")
    proc = _cli("convert", "-i", tmp_path / "dicom", "-o", tmp_path / "nii")
    assert proc.returncode == 0, proc.stderr
    assert "SOPInstanceUID blank" in proc.stderr  # the warning names the blank UIDs
    (written,) = os.listdir(tmp_path / "nii")
    img = nib.load(tmp_path / "nii" / written)
    expected, expected_affine = expected_volume(HEADLINE_SLICES)
    np.testing.assert_allclose(np.asarray(img.dataobj), expected, rtol=0, atol=1e-4)
    np.testing.assert_allclose(img.affine, expected_affine, rtol=0, atol=1e-4)


@pytest.mark.parametrize("kind", ["headline", "bare"])
def test_find_series_skips_files_that_are_not_dicom(tmp_path, kind):
    """Beside the series: a text file, a PNG, an empty file, a NIfTI (gzip and plain) and random bytes that start like
    a bare data set (tag 0008,0005): none is misread as a slice, the series keeps its files."""
    folder = tmp_path / "series"
    if kind == "headline":
        files = _headline(folder, N_SLICES)
    else:
        files = _edit(write_real_series(folder), save=_save_bare(implicit=True))
    (folder / "notes.txt").write_text("anonymised by the archive\n")
    Image.fromarray(np.arange(64 * 64, dtype=np.uint8).reshape(64, 64)).save(folder / "preview.png")
    (folder / "empty.dcm").write_bytes(b"")
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.eye(4)), folder / "mask.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.eye(4)), folder / "mask.nii")
    noise = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    (folder / "noise.dcm").write_bytes(b"\x08\x00\x05\x00" + noise)

    (found,) = dicom.find_series(tmp_path)
    assert found["n_files"] == N_SLICES and sorted(found["files"]) == sorted(map(str, files))
    _assert_reads_exactly(folder)


# ----------------------------------------------------------------------------------------------------------------------
# header states that read exactly, in slice-position order


READS = [
    # (transform of the paths, returning the paths; the tag that says CT; a fragment of the UID warning, or None)
    pytest.param(
        lambda p: _edit(p, _blank("SOPInstanceUID")), "SOPClassUID", "SOPInstanceUID blank", id="blank-SOPInstanceUID"
    ),
    pytest.param(
        lambda p: _edit(p, _same_sop_instance_uid),
        "SOPClassUID",
        "SOPInstanceUID not unique (1 value in 12 files)",
        id="one-SOPInstanceUID-for-all-files",
    ),
    pytest.param(
        lambda p: _edit(p, _blank("SeriesInstanceUID", "StudyInstanceUID")),
        "SOPClassUID",
        "SeriesInstanceUID blank, StudyInstanceUID blank",
        id="blank-Series-Study-UIDs",
    ),
    pytest.param(
        lambda p: _edit(p, _delete("SeriesInstanceUID", "StudyInstanceUID")),
        "SOPClassUID",
        "SeriesInstanceUID absent, StudyInstanceUID absent",
        id="absent-Series-Study-UIDs",
    ),
    pytest.param(
        lambda p: _edit(p, _blank("SOPClassUID")), "MediaStorageSOPClassUID", None, id="blank-SOPClassUID-meta-CT"
    ),
    pytest.param(lambda p: _edit(p, save=_save_bare(implicit=True)), "SOPClassUID", None, id="bare-implicit-VR"),
    pytest.param(lambda p: _edit(p, save=_save_bare(implicit=False)), "SOPClassUID", None, id="bare-explicit-VR"),
    pytest.param(
        lambda p: _edit(p, _delete("SOPClassUID"), save=_save_bare(implicit=True)),
        "Modality",
        None,
        id="bare-without-SOPClassUID-Modality-CT",
    ),
    pytest.param(lambda p: _edit(p, _delete("InstanceNumber")), "SOPClassUID", None, id="no-InstanceNumber"),
    pytest.param(
        lambda p: _edit(p, _delete("SliceThickness", "SpacingBetweenSlices")),
        "SOPClassUID",
        None,
        id="no-SliceThickness-SpacingBetweenSlices",
    ),
    pytest.param(_reversed_names, "SOPClassUID", None, id="names-in-reverse-position-order"),
    pytest.param(_shuffle_instances, "SOPClassUID", None, id="shuffled-InstanceNumbers-and-names"),
    pytest.param(
        lambda p: _reversed_names(
            _edit(
                p,
                _both(
                    _blank("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID"),
                    _delete("SOPClassUID", "InstanceNumber", "SliceThickness"),
                ),
                save=_save_bare(implicit=True),
            )
        ),
        "Modality",
        "SeriesInstanceUID blank, StudyInstanceUID blank",
        id="all-at-once-bare",
    ),
]


@pytest.mark.parametrize("transform, sop_class_from, warned", READS)
def test_header_state_reads_exactly_in_position_order(tmp_path, caplog, transform, sop_class_from, warned):
    folder = tmp_path / "series"
    transform(write_real_series(folder))
    (found,) = dicom.find_series(tmp_path)
    assert found["n_files"] == N_SLICES
    assert dicom.skip_reason(found) is None and found["sop_class_from"] == sop_class_from
    with caplog.at_level(logging.WARNING, logger="scripts.lib.dicom"):
        _assert_reads_exactly(folder)
    warnings = [
        r.getMessage() for r in caplog.records if r.name == "scripts.lib.dicom" and r.levelno == logging.WARNING
    ]
    if warned is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and warned in warnings[0] and str(folder) in warnings[0]


# ----------------------------------------------------------------------------------------------------------------------
# header states that are refused in one line naming the tag


REFUSED = [
    pytest.param(_delete("ImagePositionPatient"), "ImagePositionPatient", None, id="no-ImagePositionPatient"),
    pytest.param(
        _delete("ImagePositionPatient", only=5), "ImagePositionPatient", 5, id="one-file-without-ImagePositionPatient"
    ),
    pytest.param(_blank("ImagePositionPatient"), "ImagePositionPatient", None, id="blank-ImagePositionPatient"),
    pytest.param(_delete("ImageOrientationPatient"), "ImageOrientationPatient", None, id="no-ImageOrientationPatient"),
    pytest.param(_delete("PixelSpacing"), "PixelSpacing", None, id="no-PixelSpacing"),
]


@pytest.mark.parametrize("change, tag, file_index", REFUSED)
def test_header_state_is_refused_naming_the_tag(tmp_path, change, tag, file_index):
    folder = tmp_path / "series"
    files = _edit(write_real_series(folder), change)
    fragments = [folder, f"missing or malformed {tag}"]
    if file_index is not None:
        fragments.append(files[file_index])
    _one_line_error(lambda: dicom.check_series(folder), *fragments)
    _one_line_error(lambda: dicom.read_series(folder), *fragments)


# ----------------------------------------------------------------------------------------------------------------------
# what is not a CT image series stays skipped


SKIPPED = [
    pytest.param(
        lambda k, ds: setattr(ds, "SOPClassUID", SecondaryCaptureImageStorage),
        "SOP class Secondary Capture Image Storage is not CT Image Storage",
        id="SOPClassUID-Secondary-Capture-meta-CT",
    ),
    pytest.param(
        lambda k, ds: setattr(ds, "SOPClassUID", EnhancedCTImageStorage),
        "SOP class Enhanced CT Image Storage is not CT Image Storage",
        id="SOPClassUID-Enhanced-CT",
    ),
    pytest.param(
        lambda k, ds: setattr(ds, "SOPClassUID", RTDoseStorage),
        "SOP class RT Dose Storage is not CT Image Storage",
        id="SOPClassUID-RT-Dose",
    ),
    pytest.param(
        lambda k, ds: setattr(ds, "SOPClassUID", ComprehensiveSRStorage),
        "SOP class Comprehensive SR Storage is not CT Image Storage",
        id="SOPClassUID-SR",
    ),
    pytest.param(
        _both(_blank("SOPClassUID"), lambda k, ds: setattr(ds.file_meta, "MediaStorageSOPClassUID", RTDoseStorage)),
        "SOP class RT Dose Storage is not CT Image Storage (by MediaStorageSOPClassUID; SOPClassUID blank or absent)",
        id="blank-SOPClassUID-meta-RT-Dose",
    ),
    pytest.param(
        _both(
            _blank("SOPClassUID"),
            lambda k, ds: setattr(ds.file_meta, "MediaStorageSOPClassUID", ""),
            lambda k, ds: setattr(ds, "Modality", "MR"),
        ),
        "SOP class none is not CT Image Storage and modality MR is not CT (SOPClassUID and MediaStorageSOPClassUID "
        "blank or absent)",
        id="blank-SOPClassUID-and-meta-Modality-MR",
    ),
    pytest.param(
        _both(_blank("SOPClassUID"), lambda k, ds: setattr(ds, "ImageType", ["ORIGINAL", "PRIMARY", "LOCALIZER"])),
        "localizer/scout (ImageType ORIGINAL\\PRIMARY\\LOCALIZER)",
        id="localizer-blank-SOPClassUID",
    ),
    pytest.param(
        lambda k, ds: setattr(ds, "Modality", "OT"),
        "modality OT is not CT",
        id="SOPClassUID-CT-Modality-OT",
    ),
]


@pytest.mark.parametrize("change, reason", SKIPPED)
def test_other_sop_classes_and_localizers_are_still_skipped(tmp_path, change, reason):
    _edit(write_real_series(tmp_path / "series"), change)
    (found,) = dicom.find_series(tmp_path)
    assert dicom.skip_reason(found) == reason
