"""A DICOM study as a PACS export lays it out, through the bundle's inference (issue 27).

The study (``_write_study``) nests one folder per series under patient and study folders, as DICOMDIR exports do:
CT series derived from a real CT slice (``tests/real_dicom.py``), a localizer, a dose report (an SR without pixels), a
secondary capture, a second patient whose CT series has the same number and description, and a CT series whose UIDs
an anonymiser blanked. ``run inference --input STUDY`` segments each CT series, names each output after its series,
skips the rest with a line each; ``--output_format seg`` answers in DICOM SEG where the series can be referenced.
"""

from __future__ import annotations

import os
import sys

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from conftest import BUNDLE_ROOT, CONFIGS, FAST, run_bundle
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, XRayRadiationDoseSRStorage, generate_uid
from real_dicom import N_SLICES, write_real_series
from test_robustness import assert_one_line_error

from scripts.lib import dicom, phantom
from scripts.lib.dicom import write as dicom_write
from scripts.lib.metrics import dice

#: case name of each CT series -> its folder below the study root
CT_CASES = {
    "PAT1_STUDY1_SE2_2_Abdomen_5_0_B30f": "PAT1/STUDY1/SE2",
    "3_Abdomen_arterial": "PAT1/STUDY1/SE3",
    "PAT2_STUDY1_SE2_2_Abdomen_5_0_B30f": "PAT2/STUDY1/SE2",
    "SE4": "PAT2/STUDY1/SE4",  # UIDs, number and description blanked: named after its folder
}
BLANK_UIDS = "SE4"


def _edit(files, change):
    for path in files:
        ds = pydicom.dcmread(path)
        change(ds)
        ds.save_as(path, enforce_file_format=True)
    return files


def _dose_report(folder):
    """An X-Ray Radiation Dose SR: a series of one object without pixels, as scanners add to a study."""
    os.makedirs(folder, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = XRayRadiationDoseSRStorage
    meta.MediaStorageSOPInstanceUID = uid = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = XRayRadiationDoseSRStorage, uid
    ds.Modality, ds.SeriesNumber, ds.SeriesDescription = "SR", 900, "Dose Report"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID = "PAT1"
    ds.save_as(os.path.join(folder, "SR0001.dcm"), enforce_file_format=True)


def _write_study(root):
    study = root / "study"
    write_real_series(study / "PAT1/STUDY1/SE2", series_number=2, series_description="Abdomen 5.0 B30f")
    write_real_series(study / "PAT1/STUDY1/SE3", series_number=3, series_description="Abdomen/arterial")
    write_real_series(study / "PAT2/STUDY1/SE2", series_number=2, series_description="Abdomen 5.0 B30f")

    def blank(ds):
        ds.SeriesInstanceUID = ds.StudyInstanceUID = ""
        ds.SeriesNumber, ds.SeriesDescription = None, ""

    _edit(write_real_series(study / "PAT2/STUDY1/SE4"), blank)
    scout = write_real_series(study / "PAT1/STUDY1/SE1", n_slices=1, series_number=1, series_description="Topogram")
    _edit(scout, lambda ds: setattr(ds, "ImageType", ["ORIGINAL", "PRIMARY", "LOCALIZER"]))
    capture = write_real_series(study / "PAT1/STUDY1/SE901", n_slices=1, series_number=901, series_description="SC")
    _edit(capture, lambda ds: setattr(ds, "SOPClassUID", SecondaryCaptureImageStorage))
    _dose_report(study / "PAT1/STUDY1/SE900")
    (study / "DICOMDIR_README.txt").write_text("not DICOM")
    return study


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return _write_study(tmp_path_factory.mktemp("pacs_export"))


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A freshly initialised network (seeded), as the Deploy tests use: its mask means nothing anatomically, but it
    is neither empty nor full, so comparing two masks compares something."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "inference.yaml"))
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "model.pt"
    torch.save(parser.get_parsed_content("network_def").state_dict(), path)
    return path


def _infer(study, out, weights, **overrides):
    return run_bundle(
        "inference",
        ["inference.yaml"],
        check=False,
        bundle_root=BUNDLE_ROOT,
        input=study,
        output_dir=out,
        ckpt_path=weights,
        **FAST,
        **overrides,
    )


@pytest.fixture(scope="module")
def nifti_run(tmp_path_factory, study, weights):
    out = tmp_path_factory.mktemp("study_nifti")
    proc = _infer(study, out, weights)
    assert proc.returncode == 0, proc.stdout[-5000:]
    return {"out": out, "stdout": proc.stdout}


@pytest.fixture(scope="module")
def seg_run(tmp_path_factory, study, weights):
    out = tmp_path_factory.mktemp("study_seg")
    proc = _infer(study, out, weights, output_format="seg")
    assert proc.returncode == 0, proc.stdout[-5000:]
    return {"out": out, "stdout": proc.stdout}


def test_case_names_come_from_the_series_and_never_collide(study):
    cts, skipped = dicom.ct_series(study)
    names = dicom.case_names(cts, study)
    assert dict(zip(names, (os.path.relpath(s["folder"], study) for s in cts), strict=True)) == CT_CASES
    assert sorted(os.path.basename(s["folder"]) for s, _ in skipped) == ["SE1", "SE900", "SE901"]


@pytest.mark.slow
def test_a_study_folder_gives_one_mask_per_ct_series_named_after_it(study, nifti_run):
    out = nifti_run["out"]
    assert sorted(p.name for p in out.glob("*_seg.nii.gz")) == sorted(f"{n}_seg.nii.gz" for n in CT_CASES)
    for name, folder in CT_CASES.items():
        volume, affine, _ = dicom.read_series(study / folder)
        mask = nib.load(out / f"{name}_seg.nii.gz")
        assert mask.shape == volume.shape == (128, 128, N_SLICES)
        np.testing.assert_allclose(mask.affine, affine, atol=1e-4)  # on the series' own grid
    report = (out / "report.csv").read_text().splitlines()
    assert sorted(line.split(",")[0] for line in report[1:]) == sorted(CT_CASES)
    lines = nifti_run["stdout"].splitlines()
    for folder, why in (("SE1", "localizer"), ("SE900", "X-Ray Radiation Dose SR"), ("SE901", "Secondary Capture")):
        said = [s for s in lines if "skipped: " in s and f"{os.sep}{folder} " in s]
        assert len(said) == 1 and why in said[0], said


@pytest.mark.slow
def test_seg_output_references_its_series_and_carries_the_nifti_mask(study, nifti_run, seg_run):
    import highdicom as hd

    out = seg_run["out"]
    for name, folder in CT_CASES.items():
        reference = np.asarray(nib.load(nifti_run["out"] / f"{name}_seg.nii.gz").dataobj)
        if name == BLANK_UIDS:  # no UIDs to reference: NIfTI, and one line says why
            assert not (out / f"{name}_seg.dcm").exists()
            np.testing.assert_array_equal(np.asarray(nib.load(out / f"{name}_seg.nii.gz").dataobj), reference)
            said = [s for s in seg_run["stdout"].splitlines() if "written as NIfTI, not DICOM SEG" in s]
            assert len(said) == 1 and name in said[0] and "SeriesInstanceUID blank" in said[0], said
            continue
        assert not (out / f"{name}_seg.nii.gz").exists()
        series = dicom.check_series(study / folder)
        seg = pydicom.dcmread(out / f"{name}_seg.dcm")
        assert seg.Modality == "SEG" and int(seg.NumberOfFrames) == N_SLICES
        (referenced,) = seg.ReferencedSeriesSequence
        assert referenced.SeriesInstanceUID == series["uid"]
        sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in series["files"]]
        frames = hd.seg.segread(out / f"{name}_seg.dcm").get_pixels_by_source_instance(
            [s.SOPInstanceUID for s in sources], combine_segments=True
        )
        np.testing.assert_array_equal(frames, reference.transpose(2, 1, 0))
        assert 0 < int(reference.sum()) < reference.size  # a real comparison, not two empty (or full) masks


def test_seg_of_a_nifti_input_is_nifti_with_a_line_saying_why(tmp_path, weights):
    write_real_series(tmp_path / "series")
    volume, affine, _ = dicom.read_series(tmp_path / "series")
    nib.save(nib.Nifti1Image(volume, affine), tmp_path / "ct.nii.gz")
    proc = _infer(tmp_path / "ct.nii.gz", tmp_path / "out", weights, output_format="seg")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert sorted(os.listdir(tmp_path / "out")) == ["ct_seg.nii.gz", "report.csv", "report_summary.csv"]
    said = [s for s in proc.stdout.splitlines() if "written as NIfTI, not DICOM SEG" in s]
    assert len(said) == 1 and "ct:" in said[0] and "not a DICOM series" in said[0], said


def test_an_unknown_output_format_stops_before_any_case(tmp_path, study, weights):
    proc = _infer(study, tmp_path / "out", weights, output_format="dicom")
    assert_one_line_error(proc, "--output_format 'dicom': expected one of nifti, seg")
    assert not (tmp_path / "out").exists()


def test_seg_without_highdicom_stops_naming_the_deploy_requirements(tmp_path, study, weights):
    """An environment made from requirements.txt alone, without the Deploy packages: ``None`` in sys.modules makes
    their import fail, as a missing package does, in a real run of MONAI's runner."""
    import subprocess

    from conftest import bundle_cmd

    cmd = bundle_cmd("inference", ["inference.yaml"], bundle_root=BUNDLE_ROOT, input=study, output_dir=tmp_path / "o")
    cmd += ["--ckpt_path", str(weights), "--output_format", "seg"]
    runner = "import sys, runpy; sys.modules.update(dict.fromkeys(['highdicom', 'monai.deploy'])); "
    runner += "sys.argv = sys.argv[1:]; "
    runner += "runpy.run_module('monai.bundle', run_name='__main__')"
    proc = subprocess.run(
        [sys.executable, "-c", runner, *cmd[2:]],
        cwd=BUNDLE_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
    )
    assert_one_line_error(proc, "--output_format seg needs highdicom", "requirements-deploy.txt")
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_the_anonymised_example_gives_a_mask_aligned_with_the_series_in_world_coordinates(tmp_path):
    """The issue's anonymised series, rebuilt on a phantom whose liver is known: JPEG 2000 lossless, Modality CT,
    SOP Class, SOP Instance, Series and Study Instance UIDs blank, the file meta saying CT Image Storage, slices stored
    in the scanner's LPS order. The shipped model's mask, compared with the reference label in world coordinates (both
    reoriented to RAS by their own affines), finds the liver as it does from the NIfTI (test_shipped_model.py)."""
    image, label, affine = phantom.make_case(5, spacing=(1.6, 1.6, 3.0), orientation="LPS")
    files = dicom_write.write_series(image, affine, tmp_path / "series", transfer_syntax="jpeg2000")

    def anonymise(ds):
        for keyword in ("SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID"):
            setattr(ds, keyword, "")

    _edit(files, anonymise)
    assert pydicom.dcmread(files[0]).file_meta.MediaStorageSOPClassUID == pydicom.uid.CTImageStorage
    proc = run_bundle("inference", ["inference.yaml"], input=tmp_path / "series", output_dir=tmp_path / "out")
    assert "CT Image Storage by the file meta's MediaStorageSOPClassUID" in proc.stdout
    mask = nib.as_closest_canonical(nib.load(tmp_path / "out" / "series_seg.nii.gz"))
    reference = nib.as_closest_canonical(nib.Nifti1Image(label.astype(np.uint8), affine))
    np.testing.assert_allclose(mask.affine, reference.affine, atol=1e-3)
    assert dice(np.asarray(mask.dataobj) > 0, np.asarray(reference.dataobj) > 0) > 0.9
