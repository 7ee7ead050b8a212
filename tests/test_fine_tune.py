"""Fine-tuning: `--init_weights FILE` starts training from a weights file (the shipped synthetic model, say) instead of
random weights, and the provenance of the new weights names that file.

The runs train in this process (conftest.run_in_process) on the phantom, from the `trained` fixture's weights. With a
learning rate of 0 no step changes a weight, so the weights a run saves are the weights it started from: the file
given, or the seeded random initialisation without it.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from conftest import BUNDLE_ROOT, FAST, run_in_process

from scripts.components.checkpoint import start_from
from scripts.lib.errors import InputError
from scripts.lib.fileio import sha256


def _train(trained, out, **overrides):
    run_in_process(
        "training",
        ["train.yaml"],
        bundle_root=BUNDLE_ROOT,
        dataset_dir=trained["data"],
        output_dir=out / "runs",
        ckpt_dir=out / "models",
        epochs=1,
        val_interval=1,
        **{**FAST, **overrides},
    )
    return out / "models"


def _same(a, b) -> bool:
    a, b = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_training_starts_from_the_init_weights_and_records_them(trained, tmp_path):
    start = trained["models"] / "model.pt"
    models = _train(trained, tmp_path / "tuned", init_weights=start, learning_rate=0.0)
    assert _same(models / "model.pt", start)

    record = json.loads((models / "model_provenance.json").read_text())["initial_weights"]
    assert record["path"] == str(start) and record["sha256"] == sha256(start)
    # the `trained` run's own provenance lies beside its model.pt: what trained those weights travels on
    assert record["trained_on"].startswith("SYNTHETIC PHANTOM")

    # the control: the same run without --init_weights saves its random initialisation, not the file
    control = _train(trained, tmp_path / "scratch", learning_rate=0.0)
    assert not _same(control / "model.pt", start)
    assert "initial_weights" not in json.loads((control / "model_provenance.json").read_text())


@pytest.mark.parametrize("kind", ["missing", "checkpoint"])
def test_init_weights_that_cannot_start_training_stop_it_with_one_line(trained, tmp_path, kind):
    given = {
        "missing": tmp_path / "nowhere.pt",
        "checkpoint": trained["models"] / "checkpoint_epoch=3.pt",  # a resumable state, not a weights file
    }[kind]
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stop:
        _train(trained, out, init_weights=given)
    assert isinstance(stop.value.code, str) and str(given) in stop.value.code  # one line that names the file
    assert not (out / "models").exists() or not any((out / "models").iterdir())  # no provenance, no weights


def test_a_resumed_run_records_its_init_weights_without_loading_them(trained):
    network = torch.nn.Conv3d(1, 2, 3)  # would not fit the file: loading it would raise
    before = {k: v.clone() for k, v in network.state_dict().items()}
    record = start_from(network, trained["models"] / "model.pt", resume="true")
    assert record["sha256"] == sha256(trained["models"] / "model.pt")
    assert all(torch.equal(before[k], v) for k, v in network.state_dict().items())
    assert start_from(network, None) is None and start_from(network, "") is None


def test_the_provenance_beside_the_file_counts_only_when_it_describes_that_file(tmp_path):
    """A shipped model's record names its weights by sha256: a copy of models/ keeps what trained them, and other
    weights put beside that record do not borrow it."""
    shipped = tmp_path / "shipped"
    shutil.copytree(BUNDLE_ROOT / "models", shipped, ignore=shutil.ignore_patterns("*.ts", "*.onnx"))
    network = torch.nn.Conv3d(1, 2, 3)
    record = start_from(network, shipped / "model.pt", resume=True)
    assert record["trained_on"].startswith("SYNTHETIC DATA ONLY")
    torch.save(network.state_dict(), shipped / "model.pt")  # other weights under the same name
    assert "trained_on" not in start_from(network, shipped / "model.pt", resume=True)


OUTPUT_LAYERS = [
    "model.2.0.conv.weight",
    "model.2.0.conv.bias",
    "model.2.1.conv.unit0.conv.weight",
    "model.2.1.conv.unit0.conv.bias",
]


def test_weights_for_another_class_count_start_all_but_the_output_layers(trained, tmp_path):
    """The 2-class weights start a 3-class (liver and tumour) run: every tensor comes from the file except the last
    up-sampling block's, which keeps its random initialisation, and the provenance names those."""
    start = trained["models"] / "model.pt"
    models = _train(trained, tmp_path / "tumour", init_weights=start, learning_rate=0.0, num_classes=3)
    file, saved = torch.load(start, weights_only=True), torch.load(models / "model.pt", weights_only=True)
    bias = "model.2.1.conv.unit0.conv.bias"  # the network's last tensor: one value per class
    assert saved[bias].shape == (3,) and file[bias].shape == (2,)
    assert [k for k in saved if saved[k].shape == file[k].shape and not torch.equal(saved[k], file[k])] == []
    assert [k for k in saved if saved[k].shape != file[k].shape] == OUTPUT_LAYERS

    record = json.loads((models / "model_provenance.json").read_text())["initial_weights"]
    assert record["output_layers_reinitialised"] == {"file_classes": 2, "classes": 3, "tensors": OUTPUT_LAYERS}


def _unet(in_channels=1, classes=2, channels=(16, 32, 64, 128, 256)):
    """The bundle's network (inference.yaml network_def) with other inputs, classes or channels."""
    from monai.networks.nets import UNet

    return UNet(3, in_channels, classes, channels=channels, strides=(2, 2, 2, 2), num_res_units=2, norm="instance")


def test_only_the_class_count_may_differ(trained, tmp_path):
    """Weights of another network (other channels, or another number of input channels) are refused whatever the
    class count, and a file with the network's own class count reinitialises nothing."""
    start = trained["models"] / "model.pt"
    with pytest.raises(InputError, match="do not fit the bundle's network"):
        start_from(_unet(classes=3, channels=(8, 16, 32, 64, 128)), start, num_classes=3)
    torch.save(_unet(in_channels=2).state_dict(), tmp_path / "two_inputs.pt")  # the first layers differ: 2 vs 1
    with pytest.raises(InputError, match="do not fit the bundle's network"):
        start_from(_unet(), tmp_path / "two_inputs.pt", num_classes=2)
    same = _unet()
    assert "output_layers_reinitialised" not in start_from(same, start, num_classes=2)
    assert all(torch.equal(v, torch.load(start, weights_only=True)[k]) for k, v in same.state_dict().items())
