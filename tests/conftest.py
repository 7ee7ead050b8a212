"""Shared fixtures: a small phantom dataset in the MSD layout, and a bundle trained on it for a few iterations.

The bundle runs as users run it: `python -m monai.bundle run ...` in a subprocess, from the bundle root, with
command-line overrides that shrink the work (few epochs, small patches) and send every output to a temporary folder.
Each such process pays ~10 s of imports (MONAI, torch, ignite) before any work, so a run that several test files check
is a session fixture here (`one_epoch`, `resumed`, `inferred`, `evaluated`), and variants of a case whose command line
one run already covers run in the test's own process (`run_in_process`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BUNDLE_ROOT = Path(__file__).resolve().parents[1]
CONFIGS = BUNDLE_ROOT / "configs"

# Small and fast, for tests only: 3 mm voxels (the demo geometry) and 32^3 patches (the smallest size the U-Net's
# four stride-2 levels divide).
# float32 training (cpu_bf16 false): the tests compare runs of one seed exactly, and with the bfloat16 forward pass two
# such runs differed in the 4th decimal of a loss (tests/test_training_speed.py covers the bfloat16 path).
FAST = {
    "pixdim": "[3.0,3.0,3.0]",
    "patch_size": "[32,32,32]",
    "num_workers": "0",
    "sw_batch_size": "2",
    "cpu_bf16": "false",
}


def bundle_cmd(run_id: str, config_files: list[str], **overrides) -> list[str]:
    """The command line a user types: `python -m monai.bundle run <id> --config_file ... --key value ...`."""
    files = [str(CONFIGS / f) for f in config_files]
    cmd = [sys.executable, "-m", "monai.bundle", "run", run_id, "--config_file", json.dumps(files)]
    cmd += ["--meta_file", str(CONFIGS / "metadata.json"), "--logging_file", str(CONFIGS / "logging.conf")]
    for key, value in overrides.items():
        cmd += [f"--{key}", str(value)]
    return cmd


def run_bundle(
    run_id: str, config_files: list[str], check: bool = True, timeout: int = 900, cwd=BUNDLE_ROOT, **overrides
):
    """Run the bundle in a subprocess from ``cwd`` (the bundle root unless given); return the CompletedProcess
    (stdout+stderr merged)."""
    proc = subprocess.run(
        bundle_cmd(run_id, config_files, **overrides),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        # one thread per bundle process: on a small shared CPU, 2 threads per process thrash (10x slower, measured)
        env={"OMP_NUM_THREADS": "1", **os.environ, "PYTHONUNBUFFERED": "1"},
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"bundle run {run_id} failed ({proc.returncode}):\n{proc.stdout[-6000:]}")
    return proc


def run_in_process(run_id: str, config_files: list[str], **overrides) -> None:
    """What `python -m monai.bundle run <id> ...` does, in this process: MONAI's `run` with the same config, meta and
    logging files and the overrides as the runner receives them from its command line (fire parses each value:
    '[3.0,3.0,3.0]' becomes a list, 'false' stays a string). One thread, as run_bundle's OMP_NUM_THREADS=1.

    No fresh interpreter, so none of its ~10 s of imports: for the variants of a case whose command-line path (exit
    status, the one `error:` line) a run_bundle test covers. An `error:` stop raises SystemExit(<the line>), which the
    interpreter prints as the last line before it exits with status 1."""
    import torch
    from fire.parser import DefaultParseValue
    from monai.bundle import run

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run(
            run_id,
            config_file=[str(CONFIGS / f) for f in config_files],
            meta_file=str(CONFIGS / "metadata.json"),
            logging_file=str(CONFIGS / "logging.conf"),
            **{key: DefaultParseValue(str(value)) for key, value in overrides.items()},
        )
    finally:
        torch.set_num_threads(threads)


def workflow(files, workflow_type, **overrides):
    """MONAI's ConfigWorkflow over the bundle's config ``files`` (names in configs/), initialized: what
    `monai.bundle run` builds, with ``bundle_root`` set to this bundle unless given."""
    from monai.bundle import ConfigWorkflow

    w = ConfigWorkflow(
        config_file=[str(CONFIGS / f) for f in files],
        meta_file=str(CONFIGS / "metadata.json"),
        logging_file=str(CONFIGS / "logging.conf"),
        workflow_type=workflow_type,
        **{"bundle_root": str(BUNDLE_ROOT), **overrides},
    )
    w.initialize()
    return w


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory) -> Path:
    """Six training and two test phantom cases in the MSD layout (plus labelsTs/)."""
    from scripts.lib import phantom

    root = tmp_path_factory.mktemp("phantom")
    phantom.write_dataset(str(root), num_train=6, num_test=2, seed=1)
    return root


@pytest.fixture(scope="session")
def trained(tmp_path_factory, phantom_dir):
    """Train 3 epochs (2 iterations each) on the phantom; returns the paths and the training log."""
    out = tmp_path_factory.mktemp("trained")
    proc = run_bundle(
        "training",
        ["train.yaml"],
        bundle_root=BUNDLE_ROOT,
        dataset_dir=phantom_dir,
        output_dir=out / "runs",
        ckpt_dir=out / "models",
        epochs=3,
        val_interval=1,
        **FAST,
    )
    return {"root": out, "runs": out / "runs", "models": out / "models", "log": proc.stdout, "data": phantom_dir}


def decoy_project(folder: Path) -> Path:
    """``folder`` made a user's working directory outside the bundle, with a `scripts` package of its own (a user's
    project often has one) that fails when imported: a run that takes it for the bundle's package stops."""
    (folder / "scripts").mkdir(parents=True)
    (folder / "scripts" / "__init__.py").write_text("raise ImportError('the decoy scripts package was imported')\n")
    return folder


def run_elsewhere(folder: Path, run_id: str, config_files: list[str], **overrides):
    """run_bundle from ``folder`` (made a decoy project) with PYTHONPATH unset, as after `monai.bundle download`;
    returns the CompletedProcess and what ``folder`` holds afterwards. One thread, as torchrun gives each process
    (tests/test_distributed.py compares with its runs)."""
    cwd = decoy_project(folder)
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("PYTHONPATH", raising=False)
        patch.setenv("OMP_NUM_THREADS", "1")
        proc = run_bundle(run_id, config_files, cwd=cwd, **overrides)
    return proc, sorted(p.name for p in cwd.iterdir())


# ---- runs that several test files check, each run once per session ---------------------------------------------------


@pytest.fixture(scope="session")
def one_epoch(tmp_path_factory, phantom_dir):
    """Train 1 epoch with --val_interval 5 on the phantom, from another folder (`run_elsewhere`).

    One run checked three ways: tests/test_anywhere.py (training runs from another folder), tests/test_interruption.py
    (a 1-epoch run is validated, since its only epoch is the last, and writes model.pt) and tests/test_workflows.py
    (the same seed gives the `trained` run's first-epoch losses)."""
    out = tmp_path_factory.mktemp("one_epoch")
    proc, cwd_after = run_elsewhere(
        out / "project",
        "training",
        ["train.yaml"],
        bundle_root=BUNDLE_ROOT,
        dataset_dir=phantom_dir,
        output_dir=out / "runs",
        ckpt_dir=out / "models",
        epochs=1,
        val_interval=5,
        **FAST,
    )
    return {"runs": out / "runs", "models": out / "models", "log": proc.stdout, "cwd_after": cwd_after}


@pytest.fixture(scope="session")
def resumed(tmp_path_factory, trained):
    """The `trained` run (3 epochs) continued with --resume true --epochs 4 --val_interval 1: one more epoch, validated.

    Before the resume, the checkpoint's best-score record is raised to 1.0, a Dice no validation can beat. One run
    checked two ways: tests/test_workflows.py (the resume trains only epoch 4, replaces the checkpoint, stretches the LR
    schedule) and tests/test_interruption.py (the worse validation after the resume keeps model.pt)."""
    import torch

    out = tmp_path_factory.mktemp("resumed")
    models = out / "models"
    shutil.copytree(trained["models"], models)
    path = models / "checkpoint_epoch=3.pt"
    state = torch.load(path, weights_only=True)
    state["best_saver"]["_saved"] = [(1.0, name) for _, name in state["best_saver"]["_saved"]]
    state["best_saver"]["best_metric"] = 1.0
    torch.save(state, path)
    best_before = (models / "model.pt").read_bytes()
    proc = run_bundle(
        "training",
        ["train.yaml"],
        bundle_root=BUNDLE_ROOT,
        dataset_dir=trained["data"],
        output_dir=out / "runs",
        ckpt_dir=models,
        resume="true",
        epochs=4,
        val_interval=1,
        **FAST,
    )
    return {"models": models, "log": proc.stdout, "best_before": best_before}


# three phantom CTs that inference must give back on their own grids: orientation and (anisotropic) spacing
ROUND_TRIP_CASES = {
    "ras": ("RAS", (9.0, 9.0, 10.0)),
    "lps": ("LPS", (9.0, 9.0, 10.0)),
    "aniso": ("LAS", (7.3, 9.7, 12.1)),
}


@pytest.fixture(scope="session")
def inferred(tmp_path_factory, trained):
    """Inference with the `trained` weights on a folder of the ROUND_TRIP_CASES, from another folder (`run_elsewhere`).

    One run checked two ways: tests/test_workflows.py (shape, affine, orientation and report of every mask) and
    tests/test_anywhere.py (inference runs from another folder)."""
    import nibabel as nib

    from scripts.lib import phantom

    root = tmp_path_factory.mktemp("inferred")
    inputs = root / "in"
    inputs.mkdir()
    written = {}
    for seed, (name, (orientation, spacing)) in enumerate(ROUND_TRIP_CASES.items()):
        image, label, affine = phantom.make_case(seed, shape=(40, 36, 24), spacing=spacing, orientation=orientation)
        nib.save(nib.Nifti1Image(image, affine), str(inputs / f"{name}.nii.gz"))
        written[name] = (image, label, affine)
    proc, cwd_after = run_elsewhere(
        root / "project",
        "inference",
        ["inference.yaml"],
        bundle_root=BUNDLE_ROOT,
        input=inputs,
        output_dir=root / "out",
        ckpt_path=trained["models"] / "model.pt",
        **FAST,
    )
    return {"in": inputs, "out": root / "out", "written": written, "log": proc.stdout, "cwd_after": cwd_after}


@pytest.fixture(scope="session")
def five_cases(tmp_path_factory, phantom_dir):
    """A datalist of 5 labelled phantom cases (an odd number: 2 ranks get 3 and 2, and nothing may be padded)."""
    source = json.loads((phantom_dir / "dataset.json").read_text())["training"][:5]
    cases = [{"image": str(phantom_dir / c["image"]), "label": str(phantom_dir / c["label"])} for c in source]
    datalist = tmp_path_factory.mktemp("five") / "five.json"
    datalist.write_text(json.dumps({"validation": cases}))
    return datalist


@pytest.fixture(scope="session")
def evaluated(tmp_path_factory, trained, five_cases):
    """One evaluation process (`monai.bundle run evaluation`) of the `trained` weights on `five_cases`, from another
    folder (`run_elsewhere`).

    One run checked three ways: tests/test_anywhere.py (evaluation runs from another folder), tests/test_workflows.py
    (metrics.csv matches a hand-computed Dice) and tests/test_distributed.py (2 processes give what 1 gives)."""
    out = tmp_path_factory.mktemp("evaluated")
    proc, cwd_after = run_elsewhere(
        out / "project",
        "evaluation",
        ["inference.yaml", "evaluate.yaml"],
        bundle_root=BUNDLE_ROOT,
        eval_datalist=five_cases,
        output_dir=out / "eval",
        ckpt_path=trained["models"] / "model.pt",
        **FAST,
    )
    return {"out": out / "eval", "datalist": five_cases, "log": proc.stdout, "cwd_after": cwd_after}
