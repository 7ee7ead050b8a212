"""Bad input, damaged or foreign weights, untrusted files: each case gives a clear error naming the file and the
problem (or a documented fallback with a warning naming the file), and the bundle runner prints it as one line.

Most cases call the check functions in-process (they are what the configs call); a handful of end-to-end runs of
`python -m monai.bundle run ...` check the one-line-error contract, the batch behaviour (go on past a bad case, list
the failures, exit non-zero) and that a volume smaller than the patch is segmented on its own grid. Other variants of a
failure that one of those runs covers run the whole workflow in this process (conftest.run_in_process: MONAI's `run`,
as the runner calls it), without a fresh interpreter's imports.
"""

from __future__ import annotations

import csv
import gzip
import os
import pathlib
import pickle
import re
import shutil
import traceback
import tracemalloc

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import BUNDLE_ROOT, CONFIGS, FAST, run_bundle, run_in_process

from scripts.components import evaluation, inputs
from scripts.lib import errors, phantom
from scripts.lib.dicom import write as dicom_write

SHAPE = (40, 36, 24)
SPACING = (9.0, 9.0, 10.0)


# ----------------------------------------------------------------------------------------------------------------------
# helpers


@pytest.fixture(scope="module")
def ct():
    """A small phantom CT (int16 HU), its label and affine."""
    image, label, affine = phantom.make_case(3, shape=SHAPE, spacing=SPACING)
    return np.asarray(image), np.asarray(label), np.asarray(affine)


def save(path, array, affine):
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return str(path)


def truncate(src, dst, keep):
    """Copy the first ``keep`` bytes of ``src`` (``keep`` < 0: all but the last ``-keep``)."""
    raw = pathlib.Path(src).read_bytes()
    pathlib.Path(dst).write_bytes(raw[:keep])
    return str(dst)


def unet(num_classes=2):
    from monai.networks.nets import UNet

    return UNet(
        3, 1, num_classes, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), num_res_units=2, norm="instance"
    )


class Payload:
    """Unpickling this runs code: it creates the file named in ``marker``. A stand-in for a malicious checkpoint."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def assert_one_line_error(proc, *fragments):
    """Non-zero exit; the last line is `error: ...` holding every fragment; no traceback anywhere."""
    assert proc.returncode != 0, proc.stdout[-3000:]
    line = last_line(proc.stdout)
    assert line.startswith("error: "), proc.stdout[-3000:]
    for fragment in fragments:
        assert str(fragment) in line, f"{fragment!r} not in the error line: {line}"
    assert "Traceback" not in proc.stdout, proc.stdout[-3000:]
    return line


def assert_one_line_exit(stop, *fragments):
    """assert_one_line_error for a run in this process: it stopped with SystemExit whose code is the one line
    `error: ...` holding every fragment, which the interpreter prints (no traceback) before it exits with status 1."""
    line = stop.value.code
    assert isinstance(line, str) and line.startswith("error: ") and "\n" not in line, line
    for fragment in fragments:
        assert str(fragment) in line, f"{fragment!r} not in the error line: {line}"
    return line


# ----------------------------------------------------------------------------------------------------------------------
# missing and empty paths


def test_missing_or_empty_paths_name_the_path(tmp_path):
    with pytest.raises(ValueError, match="--input is empty"):
        inputs.list_inputs("")
    with pytest.raises(ValueError, match="--input is empty"):
        inputs.list_inputs("   ")
    missing = tmp_path / "nowhere" / "ct.nii.gz"
    with pytest.raises(FileNotFoundError, match=re.escape(f"{missing}: no such file or folder")):
        inputs.list_inputs(missing)
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    with pytest.raises(ValueError, match=re.escape(f"{empty_dir}: the folder holds no NIfTI files")):
        inputs.list_inputs(empty_dir)
    empty_file = tmp_path / "zero.nii.gz"
    empty_file.write_bytes(b"")
    with pytest.raises(ValueError, match=re.escape(f"{empty_file}: the file is empty (0 bytes)")):
        inputs.list_inputs(empty_file)


# ----------------------------------------------------------------------------------------------------------------------
# header-level checks (cheap: no voxel data is read)


def bad_headers(folder, image, affine):
    """name -> (path, expected message fragment) for files that the header checks must refuse."""
    good = save(folder / "good.nii.gz", image, affine)
    singular = nib.Nifti1Image(image, None)
    flat = affine.copy()
    flat[:3, 2] = 0.0  # the third axis has no extent: no voxel-to-world mapping
    singular.set_sform(flat, code=1)
    nib.save(singular, str(folder / "singular.nii.gz"))
    nonfinite = nib.Nifti1Image(image, None)
    broken = affine.copy()
    broken[0, 3] = np.nan
    nonfinite.set_sform(broken, code=1)
    nib.save(nonfinite, str(folder / "nonfinite.nii.gz"))
    save(folder / "plain.nii", image, affine)
    return {
        "2d": (save(folder / "2d.nii.gz", image[:, :, 0], affine), "a 2D image of shape 40x36"),
        "slice": (save(folder / "slice.nii.gz", image[:, :, :1], affine), "a single slice of shape 40x36x1"),
        "4d": (
            save(folder / "4d.nii.gz", np.stack([image] * 3, -1), affine),
            "4D data of shape 40x36x24x3 (3 volumes)",
        ),
        "singular": (str(folder / "singular.nii.gz"), "the affine is singular"),
        "nonfinite": (str(folder / "nonfinite.nii.gz"), "the affine holds NaN/Inf"),
        "truncated_gz": (
            truncate(good, folder / "truncated.nii.gz", len(pathlib.Path(good).read_bytes()) // 2),
            "truncated gzip file",
        ),
        "trailer_lost": (truncate(good, folder / "trailer.nii.gz", -6), "truncated gzip file"),
        "truncated_nii": (truncate(folder / "plain.nii", folder / "short.nii", -100), "truncated file: it holds"),
        "not_nifti": (str(folder / "text.nii.gz"), "not a readable NIfTI file"),
    }


@pytest.fixture
def bad_files(tmp_path, ct):
    image, _, affine = ct
    (tmp_path / "text.nii.gz").write_text("not a NIfTI file at all, just text " * 4)
    return bad_headers(tmp_path, image, affine)


@pytest.mark.parametrize(
    "name", ["2d", "slice", "4d", "singular", "nonfinite", "truncated_gz", "trailer_lost", "truncated_nii", "not_nifti"]
)
def test_header_checks_refuse_with_file_and_problem(bad_files, name):
    path, fragment = bad_files[name]
    with pytest.raises(ValueError) as info:
        inputs.check_nifti(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and fragment in message, message


def test_header_checks_accept_good_files_without_reading_voxels(tmp_path, ct):
    image, _, affine = ct
    good = save(tmp_path / "good.nii.gz", image, affine)
    assert inputs.check_nifti(good) == SHAPE
    assert inputs.check_nifti(save(tmp_path / "good.nii", image, affine)) == SHAPE
    # a trailing singleton 4th axis holds one volume: accepted as 3D
    assert inputs.check_nifti(save(tmp_path / "one.nii.gz", image[..., None], affine)) == SHAPE
    # a valid multi-member gzip (its trailer records only the last member) is decompressed once and accepted
    raw = gzip.decompress(pathlib.Path(good).read_bytes())
    multi = tmp_path / "multi.nii.gz"
    multi.write_bytes(gzip.compress(raw[:1000]) + gzip.compress(raw[1000:]) + b"\0" * 8)
    assert inputs.check_nifti(str(multi)) == SHAPE


def test_identity_affine_is_a_warning_naming_the_file(tmp_path, ct, caplog):
    image, _, _ = ct
    path = save(tmp_path / "identity.nii.gz", image, np.eye(4))
    with caplog.at_level("WARNING", logger="scripts.components.inputs"):
        assert inputs.check_nifti(path) == SHAPE
    assert any(path in r.getMessage() and "the affine is the identity" in r.getMessage() for r in caplog.records)


def test_a_huge_declared_size_is_refused_before_any_allocation(tmp_path):
    header = nib.Nifti1Header()
    header.set_data_shape((4096, 4096, 4096))
    header.set_data_dtype(np.int16)
    header.set_sform(np.diag([0.5, 0.5, 0.5, 1.0]), code=1)
    path = tmp_path / "huge.nii.gz"
    with gzip.open(path, "wb") as f:  # the header alone: a 128 GiB volume that is not there
        f.write(header.binaryblock + b"\0" * 4)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError) as info:
            inputs.list_inputs(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(info.value)
    assert message.startswith(f"{path}: too large") and "4096x4096x4096" in message and "128.0 GiB as stored" in message
    assert "max_voxels" in message
    assert peak < 20 * 1024**2, f"checking the header allocated {peak} bytes"


def test_the_size_limit_is_a_setting_and_applies_to_dicom(tmp_path, ct):
    image, _, affine = ct
    path = save(tmp_path / "ct.nii.gz", image, affine)
    with pytest.raises(ValueError, match="too large: the header declares 40x36x24 voxels"):
        inputs.check_nifti(path, max_voxels=1000)
    series = tmp_path / "series"
    dicom_write.write_series(image[:, :, :6], affine, series)
    assert inputs.check_dicom(str(series)) == (40, 36, 6)
    with pytest.raises(ValueError, match=re.escape(f"{series}: too large")):
        inputs.check_dicom(str(series), max_voxels=1000)


def test_dicom_missing_slice_and_mixed_series_are_refused(tmp_path, ct):
    image, _, affine = ct
    good, gap, mixed = tmp_path / "good", tmp_path / "gap", tmp_path / "mixed"
    dicom_write.write_series(image[:, :, :8], affine, good)
    files = dicom_write.write_series(image[:, :, :8], affine, gap)
    os.remove(files[4])
    dicom_write.write_series(image[:, :, :4], affine, mixed, series_number=1)
    other = tmp_path / "other"
    for f in dicom_write.write_series(image[:, :, 4:8], affine, other, series_number=2):
        shutil.move(f, mixed / ("B_" + os.path.basename(f)))
    with pytest.raises(ValueError, match=r"missing 1 slice\(s\)") as info:
        inputs.check_dicom(str(gap))
    assert str(gap) in str(info.value)
    with pytest.raises(ValueError, match=re.escape(f"{mixed}: folder holds 2 DICOM series")):
        inputs.check_dicom(str(mixed))
    shutil.rmtree(other)

    # a folder of series folders: the good one is kept, the others recorded; without a failures list, all are listed
    failures = []
    assert inputs.list_inputs(tmp_path, failures=failures) == [{"image": str(good), "case_name": "good"}]
    assert [os.path.basename(f["image"]) for f in failures] == ["gap", "mixed"]
    with pytest.raises(ValueError, match="2 of 3 input case") as info:
        inputs.list_inputs(tmp_path)
    assert str(gap) in str(info.value) and str(mixed) in str(info.value)


def test_batch_listing_keeps_the_good_cases_and_records_the_bad(bad_files, tmp_path):
    failures = []
    cases = inputs.list_inputs(tmp_path, output_dir=tmp_path / "out", failures=failures)
    kept = sorted(os.path.basename(c["image"]) for c in cases)
    assert kept == ["good.nii.gz", "plain.nii"]
    recorded = {f["image"] for f in failures}
    assert recorded == {p for p, _ in bad_files.values()}
    assert all(f["stage"] == "check" and f["problem"].startswith(f["image"]) for f in failures)
    with pytest.raises(errors.InputError) as info:  # the config's failure_report: one line
        inputs.report_failures(failures, cases)
    assert info.value.message.startswith(f"{len(failures)} of {len(failures) + 2} input case(s) failed")


def test_one_bad_file_alone_raises_its_own_message(bad_files):
    path, fragment = bad_files["truncated_gz"]
    with pytest.raises(ValueError) as info:
        inputs.list_inputs(path, failures=[])
    assert str(info.value).startswith(f"{path}: {fragment}")


# ----------------------------------------------------------------------------------------------------------------------
# evaluation inputs: image/label grids


def test_labelled_cases_list_every_grid_mismatch_at_once(tmp_path, ct):
    image, label, affine = ct
    img = save(tmp_path / "a.nii.gz", image, affine)
    good_lab = save(tmp_path / "a_label.nii.gz", label, affine)
    short_lab = save(tmp_path / "short_label.nii.gz", label[:, :, :20], affine)
    moved = affine.copy()
    moved[:3, 3] += 25.0
    moved_lab = save(tmp_path / "moved_label.nii.gz", label, moved)
    missing = tmp_path / "missing_label.nii.gz"
    datalist = tmp_path / "datalist.json"
    import json

    cases = [
        {"image": img, "label": good_lab},
        {"image": img, "label": short_lab},
        {"image": img, "label": moved_lab},
        {"image": img, "label": str(missing)},
    ]
    datalist.write_text(json.dumps({"validation": cases}))
    with pytest.raises(errors.InputError) as info:  # evaluate.yaml's datalist: one line
        evaluation.labelled_cases(str(datalist))
    message = info.value.message
    assert message.startswith(f"{datalist}: 3 problem(s)")
    assert f"{short_lab}: label grid differs from its image {img}: shape 40x36x20 vs 40x36x24" in message
    assert (
        f"{moved_lab}: label grid differs from its image {img}: the affines differ (origins 43.301 mm apart" in message
    )
    assert f"label {missing}: no such file" in message
    datalist.write_text(json.dumps({"validation": cases[:1]}))
    assert evaluation.labelled_cases(str(datalist)) == [{"image": img, "label": good_lab}]


# ----------------------------------------------------------------------------------------------------------------------
# voxel-level checks while the pipeline reads each case


def loader_pipeline(labelled=False):
    """The dataset transform of ``run inference`` (``labelled``: of ``run evaluation``, which also reads the label):
    the config's preprocessing wrapped by :func:`inputs.tolerant`, which checks each case's voxels."""
    from monai.bundle import ConfigParser

    cfg = ConfigParser()
    cfg.read_config([str(CONFIGS / name) for name in ["inference.yaml"] + ["evaluate.yaml"] * labelled])
    cfg["bundle_root"] = str(BUNDLE_ROOT)
    return cfg.get_parsed_content("dataset#transform")


@pytest.fixture
def voxel_cases(tmp_path, ct):
    image, label, affine = ct
    f = image.astype(np.float32)
    nan, inf = f.copy(), f.copy()
    nan[3, 4, 5] = np.nan
    inf[6, 7, 8] = np.inf
    good = save(tmp_path / "good.nii.gz", image, affine)
    raw = pathlib.Path(good).read_bytes()
    middle = len(raw) // 2  # 100 bytes gone from inside the deflate stream; the gzip trailer (size) is intact
    (tmp_path / "corrupt.nii.gz").write_bytes(raw[:middle] + raw[middle + 100 :])
    unit = (f - f.min()) / (f.max() - f.min())
    return {
        "good": (good, None),
        "nan": (save(tmp_path / "nan.nii.gz", nan, affine), "1 NaN/Inf voxel(s) in the image"),
        "inf": (save(tmp_path / "inf.nii.gz", inf, affine), "1 NaN/Inf voxel(s) in the image"),
        "unit": (save(tmp_path / "unit.nii.gz", unit, affine), "intensities lie within [0, 1]"),
        "mr": (save(tmp_path / "mr.nii.gz", (image - image.min()).astype(np.int16), affine), "no intensity below 0"),
        "corrupt": (str(tmp_path / "corrupt.nii.gz"), "cannot be read or prepared"),
    }


@pytest.mark.parametrize("name", ["nan", "inf", "unit", "mr"])
def test_voxel_checks_refuse_non_ct_data_naming_the_file(voxel_cases, name):
    path, fragment = voxel_cases[name]
    assert inputs.check_nifti(path) == SHAPE  # the header is fine: only the voxels tell
    problem = loader_pipeline()({"image": path})["failed"]
    assert problem.startswith(f"{path}: ") and fragment in problem


def test_unexpected_label_values_name_the_label_file(tmp_path, ct):
    image, label, affine = ct
    odd = label.astype(np.uint8)
    odd[:2, :2, :2] = 7
    img = save(tmp_path / "ct.nii.gz", image, affine)
    lab = save(tmp_path / "odd_label.nii.gz", odd, affine)
    item = loader_pipeline(labelled=True)({"image": img, "label": lab})
    assert item == {
        "failed": f"{lab}: unexpected label values 7 (8 voxels); expected [0, 1, 2] (background, liver, tumour)"
    }
    ok = save(tmp_path / "ok_label.nii.gz", label.astype(np.uint8), affine)
    assert "failed" not in loader_pipeline(labelled=True)({"image": img, "label": ok})


@pytest.mark.parametrize("num_workers", [0, 1])
def test_a_batch_skips_cases_that_fail_to_load_and_lists_them(voxel_cases, num_workers):
    from monai.data import DataLoader, Dataset

    names = ["good", "nan", "corrupt", "unit", "good"]
    items = [{"image": voxel_cases[n][0]} for n in names]
    failures = []
    loader = DataLoader(Dataset(items, transform=loader_pipeline()), batch_size=1, num_workers=num_workers)
    batches = list(inputs.SkipFailed(loader, failures))
    good = loader_pipeline()({"image": voxel_cases["good"][0]})["image"].shape  # the preprocessed grid
    assert len(batches) == 2 and all(b["image"].shape == (1, *good) for b in batches)
    assert [f["image"] for f in failures] == [voxel_cases[n][0] for n in ("nan", "corrupt", "unit")]
    for failure, name in zip(failures, ("nan", "corrupt", "unit"), strict=True):
        assert failure["problem"].startswith(voxel_cases[name][0]) and voxel_cases[name][1] in failure["problem"]
    with pytest.raises(
        errors.InputError, match=r"^error: 3 of 5 input case\(s\) failed and were skipped \(2 written\)"
    ):
        inputs.report_failures(failures, items)


# ----------------------------------------------------------------------------------------------------------------------
# weights: damaged, foreign, untrusted


@pytest.fixture(scope="module")
def weights_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    net = unet()
    torch.save(net.state_dict(), folder / "good.pt")
    raw = (folder / "good.pt").read_bytes()
    (folder / "truncated.pt").write_bytes(raw[: len(raw) // 2])
    torch.save(unet(num_classes=3).state_dict(), folder / "three_classes.pt")
    torch.save({"network": net.state_dict(), "optimizer": {}, "trainer": {}}, folder / "training_state.pt")
    state = net.state_dict()
    first = next(iter(state))
    state[first] = state[first].clone()
    state[first].view(-1)[0] = float("nan")
    torch.save(state, folder / "nan.pt")
    torch.save({"model": net.state_dict()}, folder / "wrapped.pt")
    torch.save({"weights": torch.zeros(3), "payload": Payload(folder / "PWNED_pt")}, folder / "payload.pt")
    with open(folder / "payload.pkl", "wb") as f:
        pickle.dump(Payload(folder / "PWNED_pkl"), f)
    return folder


@pytest.mark.parametrize(
    "name, fragment",
    [
        ("truncated.pt", "not a readable PyTorch weights file (truncated or corrupt?): PytorchStreamReader failed"),
        (
            "three_classes.pt",
            "these weights do not fit the bundle's network (0 missing, 0 unexpected, 4 of another shape",
        ),
        ("training_state.pt", "a resumable training checkpoint (network, optimizer, ...), not a weights file"),
        ("nan.pt", "1 weight tensor(s) hold NaN/Inf values"),
        ("payload.pt", "refused: the file holds Python objects that are not weights (getattr)"),
        ("payload.pkl", "refused: the file holds Python objects that are not weights"),
    ],
)
def test_bad_weights_are_refused_naming_the_file(weights_files, name, fragment):
    path = weights_files / name
    with pytest.raises(ValueError) as info:
        inputs.check_weights(str(path), True, unet())
    assert str(info.value).startswith(f"{path}: {fragment}"), str(info.value)
    assert not list(weights_files.glob("PWNED*")), "unpickling ran the payload"


def test_good_weights_pass_in_both_layouts(weights_files):
    inputs.check_weights(str(weights_files / "good.pt"), True, unet())
    inputs.check_weights(
        str(weights_files / "wrapped.pt"), True, unet()
    )  # {"model": state_dict}, as CheckpointLoader takes


def test_monai_checkpoint_loader_we_use_refuses_pickled_objects(weights_files):
    """The loader the configs use (MONAI CheckpointLoader) loads with weights_only=True: the payload never runs."""
    from ignite.engine import Engine
    from monai.handlers import CheckpointLoader

    loader = CheckpointLoader(load_path=str(weights_files / "payload.pt"), load_dict={"model": unet()})
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        loader(Engine(lambda e, b: None))
    assert not list(weights_files.glob("PWNED*"))


def test_every_torch_load_in_the_bundle_is_weights_only():
    """A static guard: no torch.load without weights_only=True in scripts/ or configs/, and no fallback."""
    offenders = []
    for folder in ("scripts", "configs"):
        for path in sorted((BUNDLE_ROOT / folder).glob("*.*")):
            if path.suffix not in (".py", ".yaml", ".json"):
                continue
            text = path.read_text()
            if "weights_only=False" in text.replace(" ", ""):
                offenders.append(f"{path.name}: weights_only=False")
            for match in re.finditer(r"torch\.load\(", text):
                depth, end = 0, match.end() - 1
                for end in range(match.end() - 1, len(text)):  # the call's balanced parentheses
                    depth += {"(": 1, ")": -1}.get(text[end], 0)
                    if depth == 0:
                        break
                call = text[match.start() : end + 1]
                if "weights_only=True" not in call.replace(" ", ""):
                    offenders.append(f"{path.name}: {call}")
    assert not offenders, offenders
    import inspect

    from monai.handlers import CheckpointLoader

    assert "weights_only=True" in inspect.getsource(CheckpointLoader.__call__)


# ----------------------------------------------------------------------------------------------------------------------
# the one-line error of the runner


def test_the_config_components_turn_check_errors_into_one_line_exits(monkeypatch, tmp_path):
    """inputs.input_cases (inference.yaml's datalist) is inputs.list_inputs with reports_input_errors: the library
    function raises, the component stops with one line, and LIVER_CT_DEBUG=1 gives the library's exception back."""
    monkeypatch.delenv(errors.DEBUG_ENV, raising=False)
    missing = tmp_path / "x.nii.gz"
    with pytest.raises(FileNotFoundError):
        inputs.list_inputs(missing)
    with pytest.raises(errors.InputError) as info:
        inputs.input_cases(missing)
    assert isinstance(info.value, SystemExit) and not isinstance(
        info.value, Exception
    )  # passes MONAI's `except Exception`
    assert info.value.code == f"error: {missing}: no such file or folder"
    assert isinstance(info.value.__cause__, FileNotFoundError)
    assert inputs.input_cases.__wrapped__ is inputs.list_inputs  # functools.wraps: its signature and documentation
    assert errors.reports_input_errors(len)([1, 2]) == 2
    monkeypatch.setenv(errors.DEBUG_ENV, "1")
    with pytest.raises(FileNotFoundError):
        inputs.input_cases(missing)


def test_a_bad_input_stops_inference_with_one_line_and_no_output(tmp_path, ct, monkeypatch):
    image, _, affine = ct
    good = save(tmp_path / "good.nii.gz", image, affine)
    bad = truncate(good, tmp_path / "bad.nii.gz", -6)
    out = tmp_path / "out"
    monkeypatch.delenv(errors.DEBUG_ENV, raising=False)
    proc = run_bundle(
        "inference",
        ["inference.yaml"],
        check=False,
        bundle_root=BUNDLE_ROOT,
        input=bad,
        output_dir=out,
        load_pretrain="false",
        **FAST,
    )
    assert_one_line_error(proc, f"error: {bad}: truncated gzip file")
    assert not out.exists()


def test_the_debug_flag_brings_the_traceback_back(tmp_path, ct, monkeypatch):
    """In this process: with LIVER_CT_DEBUG=1 the check's ValueError leaves MONAI's runner as an exception (not the
    one-line SystemExit), which the interpreter prints with its traceback and exits non-zero. The same input without
    the flag runs on the command line in test_a_bad_input_stops_inference_with_one_line_and_no_output."""
    image, _, affine = ct
    bad = truncate(save(tmp_path / "good.nii.gz", image, affine), tmp_path / "bad.nii.gz", -6)
    out = tmp_path / "out"
    monkeypatch.setenv(errors.DEBUG_ENV, "1")
    with pytest.raises(Exception) as info:  # an Exception, so not SystemExit
        run_in_process(
            "inference",
            ["inference.yaml"],
            bundle_root=BUNDLE_ROOT,
            input=bad,
            output_dir=out,
            load_pretrain="false",
            **FAST,
        )
    printed = "".join(traceback.format_exception(info.value))  # what the interpreter prints for it
    assert "Traceback" in printed
    assert f"ValueError: {bad}: truncated gzip file" in printed
    assert not out.exists()


@pytest.mark.parametrize(
    "name, fragment",
    [
        ("truncated.pt", "not a readable PyTorch weights file (truncated or corrupt?)"),
        ("three_classes.pt", "these weights do not fit the bundle's network"),
        ("payload.pt", "refused: the file holds Python objects that are not weights"),
    ],
)
def test_bad_weights_stop_inference_with_one_line(weights_files, tmp_path, ct, name, fragment):
    """payload.pt runs on the command line (run_bundle): exit status, the one `error:` line, no traceback, and no payload
    run by the real runner. The other files take the same path (the weights check) and run in this process."""
    image, _, affine = ct
    case = save(tmp_path / "ct.nii.gz", image, affine)
    out = tmp_path / "out"
    settings = dict(bundle_root=BUNDLE_ROOT, input=case, output_dir=out, ckpt_path=weights_files / name, **FAST)
    if name == "payload.pt":
        proc = run_bundle("inference", ["inference.yaml"], check=False, **settings)
        assert_one_line_error(proc, f"error: {weights_files / name}: {fragment}")
    else:
        with pytest.raises(SystemExit) as stop:
            run_in_process("inference", ["inference.yaml"], **settings)
        assert_one_line_exit(stop, f"error: {weights_files / name}: {fragment}")
    assert not out.exists()
    assert not list(weights_files.glob("PWNED*"))


def test_a_bad_dataset_stops_training_with_one_line(phantom_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(phantom_dir, data)
    label = data / "labelsTr" / "liver_001.nii.gz"
    img = nib.load(str(label))
    values = np.asarray(img.dataobj).copy()
    values[0, 0, 0] = 5
    nib.save(nib.Nifti1Image(values, img.affine, img.header), str(label))
    proc = run_bundle(
        "training",
        ["train.yaml"],
        check=False,
        bundle_root=BUNDLE_ROOT,
        dataset_dir=data,
        output_dir=tmp_path / "runs",
        ckpt_dir=tmp_path / "models",
        epochs=1,
        **FAST,
    )
    assert_one_line_error(
        proc, f"error: {data / 'dataset.json'}: dataset check found 1 error(s)", "unexpected label values 5"
    )
    assert not (tmp_path / "models" / "model.pt").exists()


def test_a_grid_mismatch_stops_evaluation_with_one_line(tmp_path, ct):
    import json

    image, label, affine = ct
    img = save(tmp_path / "a.nii.gz", image, affine)
    lab = save(tmp_path / "a_label.nii.gz", label[:, :, :20], affine)
    datalist = tmp_path / "split.json"
    datalist.write_text(json.dumps({"validation": [{"image": img, "label": lab}]}))
    proc = run_bundle(
        "evaluation",
        ["inference.yaml", "evaluate.yaml"],
        check=False,
        bundle_root=BUNDLE_ROOT,
        eval_datalist=datalist,
        output_dir=tmp_path / "eval",
        load_pretrain="false",
        **FAST,
    )
    assert_one_line_error(proc, f"error: {datalist}: 1 problem(s)", f"{lab}: label grid differs from its image")
    assert not (tmp_path / "eval").exists()


@pytest.mark.slow
def test_batch_inference_goes_on_past_bad_cases_and_keeps_tiny_volumes(tmp_path, ct):
    """Good, tiny (smaller than the patch) and bad cases in one folder: the good ones are segmented on their own grid,
    each bad one is listed at the end, and the run exits non-zero."""
    image, _, affine = ct
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    good = save(folder / "a_good.nii.gz", image, affine)
    tiny_shape = (12, 10, 5)  # 36 x 30 x 17 voxels at 3 mm: far smaller than the 32^3 patch
    corner = np.array([2, 13, 9])
    tiny_affine = affine.copy()
    tiny_affine[:3, 3] += affine[:3, :3] @ corner
    tiny = save(folder / "b_tiny.nii.gz", np.ascontiguousarray(image[2:14, 13:23, 9:14]), tiny_affine)
    f = image.astype(np.float32)
    f[5, 5, 5] = np.nan
    bad = {
        truncate(good, folder / "c_truncated.nii.gz", 2000): "truncated gzip file",
        save(folder / "d_nan.nii.gz", f, affine): "1 NaN/Inf voxel(s)",
        save(folder / "e_flat.nii.gz", image[:, :, 0], affine): "a 2D image",
        save(folder / "f_mr.nii.gz", (image - image.min()).astype(np.int16), affine): "no intensity below 0",
    }
    proc = run_bundle(
        "inference",
        ["inference.yaml"],
        check=False,
        bundle_root=BUNDLE_ROOT,
        input=folder,
        output_dir=out,
        load_pretrain="false",
        **FAST,
    )
    line = assert_one_line_error(proc, "error: 4 of 6 input case(s) failed and were skipped (2 written)")
    for path, fragment in bad.items():
        assert f"{path}: {fragment}" in line
    for path, shape in ((good, SHAPE), (tiny, tiny_shape)):
        seg = nib.load(str(out / (inputs.case_name(path) + "_seg.nii.gz")))
        assert seg.shape == shape
        np.testing.assert_allclose(seg.affine, nib.load(path).affine, atol=1e-5)
    assert sorted(p.name for p in out.glob("*_seg.nii.gz")) == ["a_good_seg.nii.gz", "b_tiny_seg.nii.gz"]
    with open(out / "report.csv") as f:
        assert sorted(r["case"] for r in csv.DictReader(f)) == ["a_good", "b_tiny"]


# ----------------------------------------------------------------------------------------------------------------------
# the disk cache (scripts/components/cache.py; its privacy and invalidation are tested in tests/test_distributed.py): untrusted
# files in it are refused


def test_a_disk_cache_folder_open_to_others_is_refused(tmp_path):
    from scripts.components import cache

    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    with pytest.raises(PermissionError, match=re.escape(f"{shared}: the cache folder is open to other users")):
        cache.private_dir(shared)


def test_a_planted_pickle_in_the_disk_cache_never_runs(tmp_path, ct):
    """Cached cases are read with torch.load(weights_only=True): a file planted under a case's cache name is refused
    (MONAI deletes it and preprocesses the case again), and its payload never runs."""
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

    from scripts.components import cache

    image, _, affine = ct
    item = {"image": save(tmp_path / "ct.nii.gz", image, affine)}
    transform = Compose([LoadImaged(keys="image"), EnsureChannelFirstd(keys="image")])
    root = tmp_path / "cache"
    fresh = cache.dataset([item], transform, cache="disk", cache_dir=root)[0]
    (cached,) = (root / cache.transform_hash(transform)).glob("*.pt")
    marker = tmp_path / "PWNED"
    torch.save({"image": torch.zeros(1), "payload": Payload(marker)}, cached)  # replaced by a malicious file
    with pytest.warns(UserWarning, match="Corrupt cache file detected"):
        again = cache.dataset([item], transform, cache="disk", cache_dir=root)[0]
    assert not marker.exists(), "unpickling the cached file ran its payload"
    assert torch.equal(torch.as_tensor(again["image"]), torch.as_tensor(fresh["image"]))
