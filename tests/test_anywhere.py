"""The bundle runs from any working directory given --bundle_root, as after `monai.bundle download`: no `cd`, no
PYTHONPATH. Every run happens in a folder that is not the bundle root and holds a `scripts` package of its own (a
user's project often has one), which must not be taken for the bundle's."""

from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from conftest import BUNDLE_ROOT, CONFIGS, FAST, run_bundle


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """A working directory outside the bundle, with a decoy `scripts` package; PYTHONPATH unset."""
    folder = tmp_path / "project"
    (folder / "scripts").mkdir(parents=True)
    (folder / "scripts" / "__init__.py").write_text("raise ImportError('the decoy scripts package was imported')\n")
    monkeypatch.delenv("PYTHONPATH", raising=False)
    return folder


@pytest.mark.slow
def test_training_evaluation_and_inference_run_from_another_folder(elsewhere, trained, phantom_dir, tmp_path):
    models = tmp_path / "models"
    run_bundle(
        "training",
        ["train.yaml"],
        cwd=elsewhere,
        bundle_root=BUNDLE_ROOT,
        dataset_dir=phantom_dir,
        output_dir=tmp_path / "runs",
        ckpt_dir=models,
        epochs=1,
        val_interval=1,
        **FAST,
    )
    assert sorted(p.name for p in models.glob("*.pt")) == ["checkpoint_epoch=1.pt", "model.pt"]

    run_bundle(
        "evaluation",
        ["inference.yaml", "evaluate.yaml"],
        cwd=elsewhere,
        bundle_root=BUNDLE_ROOT,
        eval_datalist=trained["runs"] / "split.json",
        output_dir=tmp_path / "eval",
        ckpt_path=trained["models"] / "model.pt",
        **FAST,
    )
    assert (tmp_path / "eval" / "metrics.csv").read_text().count("\n") == 1 + len(
        json.loads((trained["runs"] / "split.json").read_text())["validation"]
    )

    image = phantom_dir / "imagesTs" / "liver_006.nii.gz"
    run_bundle(
        "inference",
        ["inference.yaml"],
        cwd=elsewhere,
        bundle_root=BUNDLE_ROOT,
        input=image,
        output_dir=tmp_path / "out",
        ckpt_path=trained["models"] / "model.pt",
        **FAST,
    )
    seg = nib.load(str(tmp_path / "out" / "liver_006_seg.nii.gz"))
    np.testing.assert_allclose(seg.affine, nib.load(str(image)).affine, atol=1e-5)
    assert sorted(p.name for p in elsewhere.iterdir()) == ["scripts"]  # nothing was written to the working folder


WORKFLOW_CHECK = """
import json, sys
from monai.bundle import ConfigWorkflow
configs, meta, logging_file, workflow_type, overrides = json.loads(sys.argv[1])
w = ConfigWorkflow(config_file=configs, meta_file=meta, logging_file=logging_file, workflow_type=workflow_type,
                   **overrides)
w.initialize()
print(json.dumps({"missing": w.check_properties(), "scripts": w.parser.get_parsed_content("scripts").__file__}))
"""


@pytest.mark.parametrize(
    "files, workflow_type", [(["train.yaml"], "train"), (["inference.yaml", "evaluate.yaml"], "infer")]
)
def test_config_workflow_initializes_from_another_folder(
    elsewhere, phantom_dir, trained, tmp_path, files, workflow_type
):
    overrides = {
        "bundle_root": str(BUNDLE_ROOT),
        "dataset_dir": str(phantom_dir),
        "output_dir": str(tmp_path / "o"),
        "ckpt_dir": str(tmp_path / "m"),
        "eval_datalist": str(trained["runs"] / "split.json"),
        "ckpt_path": str(trained["models"] / "model.pt"),
    }
    args = [
        [str(CONFIGS / f) for f in files],
        str(CONFIGS / "metadata.json"),
        str(CONFIGS / "logging.conf"),
        workflow_type,
        overrides,
    ]
    proc = subprocess.run(
        [sys.executable, "-c", WORKFLOW_CHECK, json.dumps(args)],
        cwd=elsewhere,
        text=True,
        capture_output=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["missing"] == []
    assert result["scripts"] == str(BUNDLE_ROOT / "scripts" / "__init__.py")  # the bundle's package, not the decoy
