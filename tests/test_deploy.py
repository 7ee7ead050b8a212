"""The MONAI Deploy application (scripts/deploy_app) on synthetic DICOM studies, on the CPU.

The model is a freshly initialised network (seeded), exported the way users export (``ckpt_export`` with the inference
and demo configs: 3 mm voxels, 64^3 windows), so a run takes seconds. Its mask means nothing anatomically, but it is
neither empty nor full, and the same weights must give the same mask through the bundle's own inference: that is
what shows the SDK's MonaiBundleInferenceOperator runs our embedded config as the bundle does.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from conftest import BUNDLE_ROOT, CONFIGS
from pydicom.uid import JPEG2000Lossless, generate_uid

from scripts.lib import dicom, phantom
from scripts.lib.dicom import write as dicom_write

# The Deploy app's packages come from requirements-deploy.txt (requirements-dev.txt and CI install them).
pytest.importorskip("monai.deploy", reason="MONAI Deploy App SDK not installed: pip install -r requirements-deploy.txt")
pytest.importorskip("highdicom", reason="highdicom not installed: pip install -r requirements-deploy.txt")

CASE = {"seed": 3, "shape": (128, 128, 40), "spacing": (3.0, 3.0, 5.0)}  # 38 x 38 x 20 cm: the whole liver
SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"


def _write_study(root, transfer_syntax: str) -> dict:
    """A study folder as anonymised archives hold it: the CT series, a 3-slice localizer, an MR-labelled series
    and a non-DICOM file, with blank descriptions and series numbers. Returns the CT series' checked geometry."""
    image, _, affine = phantom.make_case(CASE["seed"], shape=CASE["shape"], spacing=CASE["spacing"])
    study, frame = generate_uid(), generate_uid()
    dicom_write.write_series(
        image, affine, root / "ct", transfer_syntax=transfer_syntax, study_uid=study, frame_of_reference_uid=frame
    )
    dicom_write.write_series(
        image[:, :, 20:23],
        affine,
        root / "scout",
        study_uid=study,
        frame_of_reference_uid=frame,
        image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
    )
    dicom_write.write_series(image[:, :, :12], affine, root / "mr", study_uid=study, modality="MR")
    (root / "notes.txt").write_text("not DICOM")
    return dicom.check_series(root / "ct")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A freshly initialised network as a plain state dict, and its TorchScript export with the demo geometry."""
    from monai.bundle import ConfigParser, ckpt_export

    out = tmp_path_factory.mktemp("deploy_model")
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "inference.yaml"))
    torch.manual_seed(0)
    torch.save(parser.get_parsed_content("network_def").state_dict(), out / "model.pt")
    ckpt_export(
        net_id="network_def",
        filepath=str(out / "model.ts"),
        ckpt_file=str(out / "model.pt"),
        meta_file=str(CONFIGS / "metadata.json"),
        config_file=[str(CONFIGS / "inference.yaml"), str(CONFIGS / "demo.yaml")],
    )
    return {"pt": out / "model.pt", "ts": out / "model.ts"}


@pytest.fixture(scope="module")
def j2k_run(tmp_path_factory, model):
    """The documented command on a JPEG 2000 study, in a subprocess from the bundle root."""
    root = tmp_path_factory.mktemp("study_j2k")
    series = _write_study(root, "jpeg2000")
    out = root.parent / (root.name + "_out")
    proc = subprocess.run(
        [sys.executable, "-m", "scripts.deploy_app", "-i", str(root), "-o", str(out), "-m", str(model["ts"])],
        cwd=BUNDLE_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {"study": root, "series": series, "out": out, "stdout": proc.stdout}


@pytest.fixture(scope="module")
def explicit_run(tmp_path_factory, model):
    """The application in this process (run_app) on the same study, uncompressed."""
    from scripts.deploy_app.app import run_app

    root = tmp_path_factory.mktemp("study_explicit")
    series = _write_study(root, "explicit")
    out = root.parent / (root.name + "_out")
    result = run_app(root, out, model["ts"])
    return {"study": root, "series": series, "out": out, "result": result}


def _outputs(out) -> tuple:
    names = sorted(os.listdir(out))
    segs = [n for n in names if n.endswith("_seg.dcm")]
    niftis = [n for n in names if n.endswith("_seg.nii.gz")]
    assert len(segs) == 1 and len(niftis) == 1 and len(names) == 2, f"unexpected outputs (or leftovers): {names}"
    return out / segs[0], out / niftis[0]


@pytest.mark.slow
def test_cli_segments_the_ct_series_and_names_every_series_it_skips(j2k_run):
    ct = pydicom.dcmread(j2k_run["series"]["files"][0], stop_before_pixels=True)
    assert ct.file_meta.TransferSyntaxUID == JPEG2000Lossless
    assert ct.SeriesDescription == "" and ct.StudyDescription == "" and ct.get("SeriesNumber") in (None, "")
    lines = j2k_run["stdout"].splitlines()
    skipped = [line for line in lines if line.startswith("not segmented: ")]
    assert len(skipped) == 2, j2k_run["stdout"][-2000:]
    assert any(os.sep + "scout " in line and "localizer" in line for line in skipped)
    assert any(os.sep + "mr " in line and "modality MR" in line for line in skipped)
    assert lines[-1].startswith("wrote ") and "_seg.dcm" in lines[-1] and "configs inference+demo" in lines[-1]


@pytest.mark.slow
@pytest.mark.parametrize("run", ["j2k_run", "explicit_run"])
def test_seg_aligns_with_the_source_series(run, request):
    """The SEG frame of each source slice holds the NIfTI mask's slice; geometry and references match the source."""
    import highdicom as hd

    run = request.getfixturevalue(run)
    seg_path, nifti_path = _outputs(run["out"])
    series = run["series"]
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in series["files"]]  # in slice order
    seg = pydicom.dcmread(seg_path)
    assert seg.SOPClassUID == SEG_STORAGE and seg.Modality == "SEG"
    assert (seg.Rows, seg.Columns) == (sources[0].Rows, sources[0].Columns)
    assert int(seg.NumberOfFrames) == len(sources)
    assert seg.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
    assert seg.StudyInstanceUID == sources[0].StudyInstanceUID
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["Liver"]
    assert seg.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeValue == "10200004"  # SNOMED CT: Liver
    (referenced,) = seg.ReferencedSeriesSequence
    assert referenced.SeriesInstanceUID == sources[0].SeriesInstanceUID
    assert {r.ReferencedSOPInstanceUID for r in referenced.ReferencedInstanceSequence} == {
        s.SOPInstanceUID for s in sources
    }
    frame_positions = np.array(
        [
            [float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient]
            for f in seg.PerFrameFunctionalGroupsSequence
        ]
    )
    source_positions = np.array([[float(v) for v in s.ImagePositionPatient] for s in sources])
    normal = np.cross(*np.reshape([float(v) for v in sources[0].ImageOrientationPatient], (2, 3)))
    by_normal = lambda positions: positions[np.argsort(positions @ normal)]  # noqa: E731 (highdicom orders frames)
    np.testing.assert_allclose(by_normal(frame_positions), source_positions, atol=1e-3)  # one frame per slice
    shared = seg.SharedFunctionalGroupsSequence[0]
    np.testing.assert_allclose(
        [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient],
        [float(v) for v in sources[0].ImageOrientationPatient],
        atol=1e-6,
    )
    np.testing.assert_allclose(
        [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing],
        [float(v) for v in sources[0].PixelSpacing],
        atol=1e-6,
    )

    frames = hd.seg.segread(seg_path).get_pixels_by_source_instance(
        [s.SOPInstanceUID for s in sources], combine_segments=True
    )
    mask = nib.load(nifti_path)
    np.testing.assert_allclose(mask.affine, series["affine"], atol=1e-4)
    voxels = np.asarray(mask.dataobj)
    assert voxels.shape == series["shape"] and voxels.dtype == np.uint8
    np.testing.assert_array_equal(frames, voxels.transpose(2, 1, 0))
    assert 0 < int(voxels.sum()) < voxels.size  # a real comparison, not two empty (or full) masks


@pytest.mark.slow
def test_jpeg2000_and_uncompressed_studies_give_the_same_mask(j2k_run, explicit_run):
    j2k = nib.load(_outputs(j2k_run["out"])[1])
    explicit = nib.load(_outputs(explicit_run["out"])[1])
    np.testing.assert_array_equal(np.asarray(j2k.dataobj), np.asarray(explicit.dataobj))  # lossless: same voxels
    np.testing.assert_allclose(j2k.affine, explicit.affine)


def _bundle_inference(input_dir, output_dir, model, **overrides):
    """The bundle's own inference (inference and demo configs, as exported into model.ts) with the same weights."""
    from monai.bundle import ConfigWorkflow

    workflow = ConfigWorkflow(
        config_file=[str(CONFIGS / "inference.yaml"), str(CONFIGS / "demo.yaml")],
        meta_file=str(CONFIGS / "metadata.json"),
        workflow_type="infer",
        bundle_root=str(BUNDLE_ROOT),
        input=str(input_dir),
        output_dir=str(output_dir),
        ckpt_path=str(model["pt"]),
        num_workers=0,
        **overrides,
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()


@pytest.mark.slow
def test_deploy_mask_equals_the_bundle_inference(explicit_run, model, tmp_path):
    """Same weights, same configs: the bundle's own inference on the DICOM folder gives the Deploy app's mask."""
    _bundle_inference(explicit_run["study"] / "ct", tmp_path, model)
    bundle = nib.load(tmp_path / "ct_seg.nii.gz")
    deploy = nib.load(_outputs(explicit_run["out"])[1])
    np.testing.assert_allclose(bundle.affine, deploy.affine, atol=1e-4)
    b, d = np.asarray(bundle.dataobj), np.asarray(deploy.dataobj)
    assert b.shape == d.shape
    # TorchScript and eager PyTorch agree to ~1e-6 (test_export.py): only a voxel whose liver probability is within
    # that of 0.5 could flip. None did when this was written; allow 1 in 10^4.
    assert np.mean(b != d) <= 1e-4, f"{int(np.sum(b != d))} of {b.size} voxels differ"
    assert explicit_run["result"]["voxels"] == {1: int(d.sum())}


@pytest.mark.slow
def test_the_runners_seg_and_the_deploy_apps_carry_the_same_pixels(explicit_run, model, tmp_path):
    """One SEG writer (scripts.lib.seg) behind both: ``run inference --output_format seg`` on the series gives a SEG with
    the Deploy app's segment and, frame by frame, its pixels (within the TorchScript round-off allowed above)."""
    import highdicom as hd

    _bundle_inference(explicit_run["study"] / "ct", tmp_path, model, output_format="seg")
    assert sorted(os.listdir(tmp_path)) == ["ct_seg.dcm", "report.csv", "report_summary.csv"]
    uids = [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in explicit_run["series"]["files"]]
    runner = hd.seg.segread(tmp_path / "ct_seg.dcm")
    deploy = hd.seg.segread(_outputs(explicit_run["out"])[0])
    for attribute in ("SegmentLabel", "SegmentAlgorithmName", "SegmentAlgorithmType"):
        assert [getattr(s, attribute) for s in runner.SegmentSequence] == [
            getattr(s, attribute) for s in deploy.SegmentSequence
        ]
    a = runner.get_pixels_by_source_instance(uids, combine_segments=True)
    b = deploy.get_pixels_by_source_instance(uids, combine_segments=True)
    assert a.shape == b.shape and 0 < int(b.sum()) < b.size
    assert np.mean(a != b) <= 1e-4, f"{int(np.sum(a != b))} of {b.size} voxels differ"


# ----------------------------------------------------------------------------------------------------------------------
# the pieces, without running the application


def _series(root, name, n=20, **kwargs):
    rng = np.random.default_rng(len(name))
    image = rng.integers(-1000, 1000, size=(32, 32, n))
    affine = np.diag([-2.0, -2.0, 3.0, 1.0])
    return dicom_write.write_series(image, affine, root / name, **kwargs)


def test_selection_skips_localizers_other_modalities_short_and_gappy_series(tmp_path):
    from scripts.deploy_app.operators import select_ct_series

    good = _series(tmp_path, "good", n=20)
    gappy = _series(tmp_path, "gappy", n=30)
    os.remove(gappy[12])  # a missing slice: the volume would be stretched
    _series(tmp_path, "scout", n=3, image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))
    _series(tmp_path, "mr", n=25, modality="MR")
    _series(tmp_path, "short", n=5)
    chosen, skipped = select_ct_series(tmp_path)
    assert chosen["files"] == sorted(good) and chosen["shape"] == (32, 32, 20)
    reasons = {os.path.basename(name.split(" (UID")[0].split("series ", 1)[1]): reason for name, reason in skipped}
    assert set(reasons) == {"gappy", "scout", "mr", "short"}
    assert "missing 1 slice" in reasons["gappy"]
    assert "localizer" in reasons["scout"]
    assert "modality MR" in reasons["mr"]
    assert "5 slice(s)" in reasons["short"]


def test_selection_prefers_the_longest_ct_series_unless_told(tmp_path):
    from scripts.deploy_app.operators import select_ct_series

    _series(tmp_path, "long", n=24)
    _series(tmp_path, "other", n=16)
    chosen, skipped = select_ct_series(tmp_path)
    assert chosen["n_files"] == 24
    assert len(skipped) == 1 and "another CT series was selected" in skipped[0][1]
    other_uid = dicom.check_series(tmp_path / "other")["uid"]
    chosen, skipped = select_ct_series(tmp_path, series_uid=other_uid)
    assert chosen["uid"] == other_uid and chosen["n_files"] == 16
    with pytest.raises(ValueError, match="not a usable CT series"):
        select_ct_series(tmp_path, series_uid="1.2.3.4")


def test_selection_without_a_usable_series_names_every_series(tmp_path):
    from scripts.deploy_app.operators import select_ct_series

    _series(tmp_path, "scout", n=3, image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))
    _series(tmp_path, "mr", n=25, modality="MR")
    with pytest.raises(ValueError, match="no usable CT series") as err:
        select_ct_series(tmp_path)
    assert f"{os.sep}scout " in str(err.value) and f"{os.sep}mr " in str(err.value)


def test_selection_refuses_a_series_without_uids_and_says_why(tmp_path):
    """A SEG references its source by Study/Series/SOP Instance UIDs: a series with blank ones is not segmented (new
    UIDs would reference images that do not exist), and the reason names the missing tags."""
    from scripts.deploy_app.operators import select_ct_series

    def blank(path):
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID = ds.StudyInstanceUID = ""
        ds.save_as(path, enforce_file_format=True)

    for path in _series(tmp_path, "anonymised", n=20):
        blank(path)
    with pytest.raises(ValueError) as err:
        select_ct_series(tmp_path)
    message = str(err.value)
    assert message.startswith(f"{tmp_path}: no usable CT series among 1 series: series {tmp_path / 'anonymised'}")
    assert "SeriesInstanceUID blank, StudyInstanceUID blank" in message and "DICOM SEG" in message
    assert "\n" not in message

    good = _series(tmp_path, "good", n=12)
    chosen, skipped = select_ct_series(tmp_path)
    assert chosen["files"] == sorted(good)
    assert [reason.split(":")[0] for _, reason in skipped] == ["SeriesInstanceUID blank, StudyInstanceUID blank"]
    assert str(tmp_path / "anonymised") in skipped[0][0]


def test_the_embedded_bundle_is_found_and_a_foreign_file_refused(model, tmp_path):
    import json

    from scripts.deploy_app.operators import read_embedded_bundle

    metadata, configs = read_embedded_bundle(model["ts"])
    assert configs == ["inference", "demo"]
    assert metadata["version"] == json.loads((CONFIGS / "metadata.json").read_text())["version"]
    plain = tmp_path / "plain.ts"
    torch.jit.save(torch.jit.script(torch.nn.Identity()), str(plain))  # TorchScript without bundle files
    with pytest.raises(ValueError, match="no bundle metadata inside"):
        read_embedded_bundle(plain)
    text = tmp_path / "model.ts"
    text.write_text("not a zip")
    with pytest.raises(ValueError, match="not a TorchScript file"):
        read_embedded_bundle(text)
    with zipfile.ZipFile(plain) as archive:
        assert not any(n.endswith("extra/metadata.json") for n in archive.namelist())


def test_writer_refuses_a_mask_that_does_not_fit_and_leaves_no_file(tmp_path):
    import json

    from scripts.deploy_app.operators import write_outputs

    _series(tmp_path, "ct", n=12)
    series = dicom.check_series(tmp_path / "ct")
    metadata = json.loads((CONFIGS / "metadata.json").read_text())
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="shape"):
        write_outputs(np.zeros((12, 32, 31), np.uint8), series, metadata, out)
    tumour = np.zeros((12, 32, 32), np.uint8)
    tumour[5, 10:20, 10:20] = 2  # a 2-class model's metadata names no label 2
    with pytest.raises(ValueError, match=r"label\(s\) \[2\]"):
        write_outputs(tumour, series, metadata, out)
    assert not out.exists() or not os.listdir(out)
    liver = (tumour > 0).astype(np.uint8)
    written = write_outputs(liver, series, metadata, out)
    assert written["voxels"] == {1: 100}
    assert sorted(os.listdir(out)) == sorted([os.path.basename(written["seg"]), os.path.basename(written["nifti"])])


def test_cli_errors_are_one_line_and_a_map_runner_needs_no_arguments(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "scripts.deploy_app",
            "-i",
            str(tmp_path / "missing"),
            "-o",
            str(tmp_path / "out"),
            "-m",
            str(tmp_path / "model.ts"),
        ],
        cwd=BUNDLE_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"error: {tmp_path / 'missing'}: input folder not found"]
    assert not (tmp_path / "out").exists()
    # inside a MONAI Application Package the runner sets these variables and passes no arguments
    (tmp_path / "in").mkdir()
    env = {
        **os.environ,
        "HOLOSCAN_INPUT_PATH": str(tmp_path / "in"),
        "HOLOSCAN_OUTPUT_PATH": str(tmp_path / "out"),
        "HOLOSCAN_MODEL_PATH": str(tmp_path / "models"),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "scripts.deploy_app"],
        cwd=BUNDLE_ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"error: {tmp_path / 'models'}: model file not found"]


def test_map_description_parses():
    import yaml

    app = yaml.safe_load((BUNDLE_ROOT / "scripts" / "deploy_app" / "app.yaml").read_text())
    assert app["application"]["inputFormats"] == ["file"] and app["application"]["outputFormats"] == ["file"]
    assert {"cpu", "gpu", "memory"} <= set(app["resources"])
