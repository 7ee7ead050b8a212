"""The bundle runs from any working directory given --bundle_root, as after `monai.bundle download`: no `cd`, no
PYTHONPATH. Every run happens in a folder that is not the bundle root and holds a `scripts` package of its own (a
user's project often has one), which must not be taken for the bundle's.

The training, evaluation and inference runs are conftest's session fixtures `one_epoch`, `evaluated` and `inferred`,
which run from such a folder (conftest.run_elsewhere) and which other test files check too: each runs once."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import nibabel as nib
import numpy as np
import pytest
from conftest import BUNDLE_ROOT, CONFIGS, decoy_project


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """A working directory outside the bundle, with a decoy `scripts` package; PYTHONPATH unset."""
    monkeypatch.delenv("PYTHONPATH", raising=False)
    return decoy_project(tmp_path / "project")


def test_training_evaluation_and_inference_run_from_another_folder(one_epoch, evaluated, inferred):
    """conftest's `one_epoch`, `evaluated` and `inferred` runs, each started from its own decoy folder (any of them
    would stop at the decoy's ImportError had it imported that package)."""
    models = one_epoch["models"]
    assert sorted(p.name for p in models.glob("*.pt")) == ["checkpoint_epoch=1.pt", "model.pt"]

    assert (evaluated["out"] / "metrics.csv").read_text().count("\n") == 1 + len(
        json.loads(evaluated["datalist"].read_text())["validation"]
    )

    for name in inferred["written"]:
        seg = nib.load(str(inferred["out"] / f"{name}_seg.nii.gz"))
        np.testing.assert_allclose(seg.affine, nib.load(str(inferred["in"] / f"{name}.nii.gz")).affine, atol=1e-5)
    for run in (one_epoch, evaluated, inferred):
        assert run["cwd_after"] == ["scripts"]  # nothing was written to the working folder


# Each workflow is checked as in a fresh interpreter (the bundle's package not imported, the bundle root not on
# sys.path), all in one: one interpreter's imports instead of one per workflow.
WORKFLOW_CHECK = """
import json, sys
from monai.bundle import ConfigWorkflow
fresh_path, results = list(sys.path), []
for configs, meta, logging_file, workflow_type, overrides in json.loads(sys.argv[1]):
    sys.path[:] = fresh_path
    for name in [m for m in sys.modules if m == "scripts" or m.startswith("scripts.")]:
        del sys.modules[name]
    w = ConfigWorkflow(config_file=configs, meta_file=meta, logging_file=logging_file, workflow_type=workflow_type,
                       **overrides)
    w.initialize()
    results.append({"missing": w.check_properties(), "scripts": w.parser.get_parsed_content("scripts").__file__})
print(json.dumps(results))
"""
WORKFLOWS = [(["train.yaml"], "train"), (["inference.yaml", "evaluate.yaml"], "infer")]


@pytest.fixture(scope="module")
def workflow_checks(tmp_path_factory, phantom_dir, trained):
    """WORKFLOW_CHECK of every WORKFLOWS entry, in one interpreter started from a decoy folder: workflow type -> result."""
    root = tmp_path_factory.mktemp("workflows")
    overrides = {
        "bundle_root": str(BUNDLE_ROOT),
        "dataset_dir": str(phantom_dir),
        "output_dir": str(root / "o"),
        "ckpt_dir": str(root / "m"),
        "eval_datalist": str(trained["runs"] / "split.json"),
        "ckpt_path": str(trained["models"] / "model.pt"),
    }
    args = [
        [
            [str(CONFIGS / f) for f in files],
            str(CONFIGS / "metadata.json"),
            str(CONFIGS / "logging.conf"),
            kind,
            overrides,
        ]
        for files, kind in WORKFLOWS
    ]
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("PYTHONPATH", raising=False)
        proc = subprocess.run(
            [sys.executable, "-c", WORKFLOW_CHECK, json.dumps(args)],
            cwd=decoy_project(root / "project"),
            text=True,
            capture_output=True,
            timeout=300,
        )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    return {kind: result for (_, kind), result in zip(WORKFLOWS, results, strict=True)}


@pytest.mark.parametrize("files, workflow_type", WORKFLOWS)
def test_config_workflow_initializes_from_another_folder(workflow_checks, files, workflow_type):
    result = workflow_checks[workflow_type]
    assert result["missing"] == []
    assert result["scripts"] == str(BUNDLE_ROOT / "scripts" / "__init__.py")  # the bundle's package, not the decoy


# ------------------------------------------------------------------------------------------------------ user commands
# `python <bundle>/scripts <command> ...` from a folder with a decoy `scripts` package: the dispatcher must import the
# bundle's own package, and default paths must point into the bundle, not into the working directory.

COMMANDS = ["demo", "phantom", "dicom", "datalist", "check_dataset", "cache", "visualize", "export", "deploy_app"]


def run_command(args, cwd, timeout=120):
    """``python <BUNDLE_ROOT>/scripts <args>`` from ``cwd``; the CompletedProcess with stdout and stderr apart."""
    return subprocess.run(
        [sys.executable, str(BUNDLE_ROOT / "scripts"), *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_the_command_list_names_every_command_module(elsewhere):
    proc = run_command(["--help"], elsewhere)
    assert proc.returncode == 0, proc.stderr
    listed = [line.split()[0] for line in proc.stdout.split("\ncommands:\n", 1)[1].splitlines() if line.strip()]
    assert listed == COMMANDS
    modules = {p.stem for p in (BUNDLE_ROOT / "scripts" / "commands").glob("*.py") if p.stem != "__init__"}
    assert modules == set(COMMANDS) - {"deploy_app"}  # every command module is reachable, and nothing else is listed
    assert run_command([], elsewhere).returncode == 2  # no command: the list, as a usage error


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_shows_its_usage_from_another_folder(elsewhere, name):
    proc = run_command([name, "--help"], elsewhere)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith(f"usage: python -m scripts {name} "), proc.stdout[:300]


def test_an_unknown_command_is_one_error_line(elsewhere):
    proc = run_command(["segment_everything", "--input", "x"], elsewhere)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown command 'segment_everything'"), proc.stderr


def test_commands_do_real_work_from_another_folder(elsewhere, phantom_dir, tmp_path):
    from scripts.lib.dicom import write as dicom_write

    volume = np.full((24, 20, 6), -1000, np.int16)
    volume[6:18, 5:15, 1:5] = 60
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    dicom_write.write_series(volume, affine, tmp_path / "dicom" / "ct", series_number=3, series_description="abdomen")
    proc = run_command(["dicom", "check", "-i", tmp_path / "dicom"], elsewhere)
    assert proc.returncode == 0, proc.stderr
    rows = proc.stdout.strip().splitlines()
    assert len(rows) == 2 and rows[1].split()[:5] == ["3", "CT", "6", "24x20x6", "0.8x0.8x2.5"] and " ok " in rows[1]
    # paths given on the command line are relative to the working directory
    proc = run_command(["dicom", "convert", "-i", tmp_path / "dicom", "-o", "nifti"], elsewhere)
    assert proc.returncode == 0, proc.stderr
    (written,) = (elsewhere / "nifti").iterdir()
    image = nib.load(str(written))
    np.testing.assert_array_equal(np.asarray(image.dataobj), volume)
    np.testing.assert_allclose(image.affine, affine, atol=1e-5)

    proc = run_command(
        [
            "datalist",
            "--images",
            phantom_dir / "imagesTs",
            "--labels",
            phantom_dir / "labelsTs",
            "--output",
            "held.json",
        ],
        elsewhere,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"wrote {elsewhere / 'held.json'}: 2 labelled cases in 5 folds")
    held = json.loads((elsewhere / "held.json").read_text())
    assert sorted(item["image"].rsplit("/", 1)[-1] for item in held["training"]) == [
        "liver_006.nii.gz",
        "liver_007.nii.gz",
    ]
    assert sorted(p.name for p in elsewhere.iterdir()) == ["held.json", "nifti", "scripts"]


def test_export_defaults_are_the_bundles_files_not_the_working_folders(elsewhere, monkeypatch, tmp_path):
    from scripts.commands import export as export_cli

    monkeypatch.chdir(elsewhere)
    calls = []
    monkeypatch.setattr(
        export_cli,
        "export_onnx",
        lambda *a, **kw: calls.append((a, kw)) or {"path": "", "max_abs_diff": 0.0, "shape": []},
    )
    assert export_cli.main(["onnx", "--output", "net.onnx"]) == 0
    ((args, kwargs),) = calls
    assert args == (str(BUNDLE_ROOT / "models" / "model.pt"), "net.onnx")  # a given path stays the user's
    assert kwargs["config_files"] == [str(CONFIGS / "inference.yaml")]
    assert kwargs["meta_file"] == str(CONFIGS / "metadata.json")
    assert kwargs["overrides"] == {"bundle_root": str(BUNDLE_ROOT)}

    # the zip is written from the bundle's files (no weights in a fresh clone: package without them)
    assert export_cli.main(["package", "--without_weights", "--output", "b.zip"]) == 0
    with zipfile.ZipFile(elsewhere / "b.zip") as archive:
        names = archive.namelist()
    assert "liver_ct_segmentation/configs/inference.yaml" in names
    assert (
        "liver_ct_segmentation/scripts/__main__.py" in names
        and "liver_ct_segmentation/scripts/commands/export.py" in names
    )


def test_the_demo_and_the_deploy_app_default_into_the_bundle(elsewhere, monkeypatch):
    from scripts.commands import demo
    from scripts.deploy_app.__main__ import _model_default

    monkeypatch.chdir(elsewhere)
    steps = []
    monkeypatch.setattr(demo, "step", lambda title, cmd, root: steps.append((cmd, root)) or 0.0)
    monkeypatch.setattr(demo, "mean_dice", lambda path: (steps.append(([path], None)) or (0.9, "liver_001")))
    assert demo.main(["--num_train", "2"]) == 0
    assert {root for _, root in steps if root} == {str(BUNDLE_ROOT)}  # every step runs from the bundle root
    assert steps[0][0][1:5] == ["-m", "scripts", "phantom", "--output_dir"] and steps[0][0][5] == "demo/data"
    assert str(BUNDLE_ROOT / "demo" / "eval" / "metrics.csv") in [cmd[0] for cmd, root in steps if root is None]
    steps.clear()
    assert demo.main(["--workdir", "mine"]) == 0  # a folder the user gives is relative to the working directory
    assert steps[0][0][5] == str(elsewhere / "mine" / "data")

    monkeypatch.delenv("HOLOSCAN_MODEL_PATH", raising=False)
    assert _model_default(str(BUNDLE_ROOT)) == str(BUNDLE_ROOT / "models" / "model.ts")
