"""The one model the bundle ships: models/model.pt is a plain state dict that fits the inference network, under the
Model Zoo's 25 MB, labelled as trained on synthetic data only by its provenance (whose digest is the file's), and
`run inference` with nothing but an input segments the liver with it at the config's default geometry. The figures
the model card and the README quote are the provenance's."""

from __future__ import annotations

import json
import re

import nibabel as nib
import numpy as np
import pytest
from conftest import BUNDLE_ROOT, run_bundle
from monai.bundle import ConfigParser

from scripts.lib import phantom
from scripts.lib.fileio import sha256
from scripts.lib.metrics import dice

WEIGHTS = BUNDLE_ROOT / "models" / "model.pt"
RECORD = BUNDLE_ROOT / "models" / "model_provenance.json"


@pytest.fixture(scope="module")
def record():
    return json.loads(RECORD.read_text())


def runs(record: dict):
    """The shipped model's record, then those of the runs it was fine-tuned from (``initialized_from``)."""
    while record is not None:
        yield record
        record = record.get("initialized_from")


def test_the_shipped_weights_are_what_the_provenance_describes(record):
    from tools.ship_model import MAX_BYTES, check_weights

    assert WEIGHTS.stat().st_size < MAX_BYTES
    check_weights(str(WEIGHTS))  # weights_only load, fits the inference network, no NaN/Inf
    assert record["weights_sha256"] == sha256(str(WEIGHTS))
    assert record["trained_on"].startswith("SYNTHETIC DATA ONLY")
    assert "not a medical device" in record["statement"] and "not clinically validated" in record["statement"]
    for run in runs(record):  # the run that made the weights, and any it was fine-tuned from
        assert run["trained_on"].startswith("SYNTHETIC DATA ONLY")
        assert run["training"]["command"].startswith("python -m monai.bundle run training")
    default = ConfigParser.load_config_file(str(BUNDLE_ROOT / "configs" / "synthetic.yaml"))["synthetic_profile"]
    assert record["generator"]["profile"] == default  # synthetic.yaml trains the shipped model's kind of case
    assert record["real_ct"] and all(0.0 <= r["liver_dice"] <= 1.0 for r in record["real_ct"])


def test_the_model_card_and_readme_quote_the_provenance(record):
    """One fact in one place: the Dice figures written in the docs are the provenance's, to 3 decimals."""
    card = (BUNDLE_ROOT / "docs" / "README.md").read_text()
    readme = (BUNDLE_ROOT / "README.md").read_text()
    crop = f"{record['real_ct'][0]['liver_dice']:.3f}"
    assert f"**{crop}**" in card and f"liver Dice {crop}" in readme
    for name, figures in record["evaluations"].items():
        assert f"{figures['mean_dice']:.3f}" in card, name
    best = f"{record['training']['best_validation_dice']:.3f}"
    assert re.search(rf"best mean Dice {best} at epoch\s+{record['training']['best_epoch']}\b", card)


# sha256 (first 16 hex digits, tests/test_phantom.py's _hash) of the first two cases each training run of the shipped
# model drew, by profile and seed, as the generator of that run drew them (wide3: commit 94b456b's tree; wide4:
# 1892335's).
TRAINED_CASES = {
    ("wide4", 1000000): "7e4ae71851161b43",
    ("wide4", 1000001): "0a7c8682ceb2de72",
    ("wide3", 1000000): "2005fa6b16fb8840",
    ("wide3", 1000001): "e2f85e772b0b7969",
}


def test_the_generator_still_draws_the_cases_the_shipped_model_saw(record):
    """The training commands in the provenance reproduce the shipped model only while the generator draws their
    cases: a change to the output of a profile it trained on (or of the profiles that one builds on) needs a new
    profile name, or a new model trained and shipped with it."""
    from test_phantom import _hash

    drawn = []
    for run in runs(record):
        generator = run["generator"]
        for seed in (generator["first_seed"], generator["first_seed"] + 1):
            case = phantom.make_case(seed, spacing=tuple(generator["spacing_mm"]), profile=generator["profile"])
            drawn.append(((generator["profile"], seed), _hash(case)))
    assert dict(drawn) == TRAINED_CASES


@pytest.mark.slow
def test_inference_out_of_the_box_segments_the_liver(tmp_path):
    """`run inference --input CT` with the defaults: the shipped weights at inference.yaml's geometry, on a
    phantom case of the standard kind (the one whose Dice the model card gives), in the CT's own grid."""
    image, label, affine = phantom.make_case(5, spacing=(1.6, 1.6, 3.0))
    phantom.save_nifti(image, affine, tmp_path / "ct.nii.gz")
    run_bundle("inference", ["inference.yaml"], input=tmp_path / "ct.nii.gz", output_dir=tmp_path / "out")
    mask = nib.load(tmp_path / "out" / "ct_seg.nii.gz")
    assert mask.shape == image.shape and np.allclose(mask.affine, affine, atol=1e-4)
    assert dice(np.asarray(mask.dataobj) > 0, label > 0) > 0.9


def test_a_case_the_coarse_pass_barely_sees_keeps_its_liver(tmp_path):
    """Held-out standard case 77002 (the model card's held-out set): at 4 mm the coarse pass of the weights of
    versions 0.5 and 0.6 saw only part of its liver, so the fast path's first box was far too small. The box, widened
    and filled to whole windows, must still give the whole liver, as a crop padded to the window size once did not."""
    image, label, affine = phantom.make_case(77002)
    phantom.save_nifti(image, affine, tmp_path / "ct.nii.gz")
    run_bundle("inference", ["inference.yaml"], input=tmp_path / "ct.nii.gz", output_dir=tmp_path / "out")
    mask = np.asarray(nib.load(tmp_path / "out" / "ct_seg.nii.gz").dataobj) > 0
    assert dice(mask, label > 0) > 0.95
