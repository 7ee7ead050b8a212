"""Shared fixtures: a small phantom dataset in the MSD layout, and a bundle trained on it for a few iterations.

The bundle runs as users run it: `python -m monai.bundle run ...` in a subprocess, from the bundle root, with
command-line overrides that shrink the work (few epochs, small patches) and send every output to a temporary folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BUNDLE_ROOT = Path(__file__).resolve().parents[1]
CONFIGS = BUNDLE_ROOT / "configs"

# Small and fast, for tests only: 3 mm voxels (the demo geometry) and 32^3 patches (the smallest size the U-Net's
# four stride-2 levels divide).
FAST = {"pixdim": "[3.0,3.0,3.0]", "patch_size": "[32,32,32]", "num_workers": "0", "sw_batch_size": "2"}


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


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory) -> Path:
    """Six training and two test phantom cases in the MSD layout (plus labelsTs/)."""
    from scripts import phantom

    root = tmp_path_factory.mktemp("phantom")
    phantom.write_dataset(str(root), num_train=6, num_test=2, seed=1)
    return root


@pytest.fixture(scope="session")
def trained(tmp_path_factory, phantom_dir):
    """Train 3 epochs (3 iterations each) on the phantom; returns the paths and the training log."""
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
