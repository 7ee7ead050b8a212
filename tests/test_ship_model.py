"""tools/ship_model.py: the shipped model's weights and provenance are written together, from a synthetic-data run
only, with the training figures read from its log and every evaluation with its source; bad inputs write nothing."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import BUNDLE_ROOT

from scripts.components.training import write_provenance
from tools import ship_model
from tools.benchmark import random_weights

LOG = """\
2026-12-03 01:47:20,100 - INFO - Epoch: 1/3, Iter: 1/16 -- train_loss: 0.9000
2026-12-03 01:48:20,100 - ignite.engine.engine.SupervisedTrainer - INFO - Epoch[1] Complete. Time taken: 00:00:13.2
2026-12-03 01:49:20,100 - INFO - Key metric: val_mean_dice best value: 0.8123 at epoch: 2
2026-12-03 01:49:20,100 - ignite.engine.engine.SupervisedTrainer - INFO - Epoch[2] Complete. Time taken: 00:00:13.3
2026-12-03 01:50:20,100 - INFO - Key metric: val_mean_dice best value: 0.8456 at epoch: 3
2026-12-03 01:50:20,100 - ignite.engine.engine.SupervisedTrainer - INFO - Epoch[3] Complete. Time taken: 00:00:13.1
2026-12-03 01:50:20,200 - ignite.engine.engine.SupervisedTrainer - INFO - Engine run finished. Time taken: 00:01:02.500
"""
GENERATOR = {"generator": "scripts/lib/phantom", "profile": "wide", "first_seed": 7, "spacing_mm": [6.0, 6.0, 6.0]}


def make_run(folder, generator=GENERATOR, log=LOG, initial_weights=None):
    """A training run's folder as training leaves it: weights, their provenance (written by the bundle's own
    write_provenance) and the captured log."""
    models = folder / "models"
    models.mkdir(parents=True)
    random_weights(str(models / "model.pt"))
    datalist = folder / "dataset.json"
    datalist.write_text(json.dumps({"name": "LiverPhantom", "description": "SYNTHETIC phantom"}))
    split = {"training": [{"seed": 1000000}], "validation": [{"image": "a.nii.gz", "label": "b.nii.gz"}]}
    write_provenance(str(models), str(datalist), split, generator=generator, initial_weights=initial_weights)
    (folder / "train.log").write_text(log)
    return folder


def args(run, out, *extra):
    return [
        "--run_dir",
        str(run),
        "--source_dir",
        str(BUNDLE_ROOT),
        "--command",
        "python -m monai.bundle run training ...",
        "--output_dir",
        str(out),
        *extra,
    ]


def test_ships_the_weights_with_their_provenance(tmp_path):
    run = make_run(tmp_path / "run")
    metrics = tmp_path / "metrics.csv"
    metrics.write_text("case,dice\nct_000,0.96\nct_001,0.94\n")
    weights_sha = ship_model.sha256(str(run / "models" / "model.pt"))
    real = tmp_path / "real_ct.json"
    real.write_text(json.dumps({"case": "LiTS crop 117", "weights": {"sha256": weights_sha}, "liver_dice": 0.91}))
    out = tmp_path / "models"
    assert ship_model.main(args(run, out, "--evaluation", f"phantom={metrics}", "--real_ct", str(real))) == 0

    assert (out / "model.pt").read_bytes() == (run / "models" / "model.pt").read_bytes()
    record = json.loads((out / "model_provenance.json").read_text())
    assert record["trained_on"].startswith("SYNTHETIC DATA ONLY") and "not clinically validated" in record["statement"]
    assert record["weights_sha256"] == weights_sha and record["generator"] == GENERATOR
    training = record["training"]
    assert (training["best_validation_dice"], training["best_epoch"], training["epochs"]) == (0.8456, 3, 3)
    assert training["trainer_seconds"] == 62.5 and training["command"].startswith("python -m monai.bundle")
    assert record["evaluations"]["phantom"] | {"source": ""} == {
        "source": "",
        "cases": 2,
        "mean_dice": 0.95,
        "min_dice": 0.94,
        "max_dice": 0.96,
    }
    assert record["real_ct"][0]["liver_dice"] == 0.91
    generator = sorted(p.name for p in (BUNDLE_ROOT / "scripts/lib/phantom").glob("*.py"))
    hashed = [name for name in record["source_sha256"] if name.startswith("scripts/lib/phantom/")]
    assert "__init__.py" in generator and hashed == [f"scripts/lib/phantom/{name}" for name in generator]
    for name in hashed:
        assert record["source_sha256"][name] == ship_model.sha256(str(BUNDLE_ROOT / name))
    assert "seeds [7, 8]" in record["generator_check"]
    assert sorted(p.name for p in out.iterdir()) == ["model.pt", "model_provenance.json"]  # no staging left


FINE_TUNED = ("fine-tuned", "another's provenance", "not synthetic provenance")


def test_ships_a_fine_tuned_model_with_the_provenance_of_its_initial_weights(tmp_path, capsys):
    """The chain of runs that made the weights is in one record: the first run's shipped provenance, whole, under
    ``initialized_from``, and the generator checked for the cases of both runs."""
    first = make_run(tmp_path / "first")
    assert ship_model.main(args(first, tmp_path / "shipped")) == 0
    parent = json.loads((tmp_path / "shipped" / "model_provenance.json").read_text())
    started = {"path": str(tmp_path / "shipped" / "model.pt"), "sha256": parent["weights_sha256"]}
    second = make_run(tmp_path / "second", generator=GENERATOR | {"profile": "wide2"}, initial_weights=started)
    out = tmp_path / "models"
    init = ["--init_provenance", str(tmp_path / "shipped" / "model_provenance.json")]
    assert ship_model.main(args(second, out, *init)) == 0

    record = json.loads((out / "model_provenance.json").read_text())
    assert record["initialized_from"] == parent and record["generator"]["profile"] == "wide2"
    assert record["generator_check"].endswith(
        "(seeds [7, 8]), and as the run it was fine-tuned from (wide, seeds [7, 8])"
    )
    capsys.readouterr()
    assert ship_model.main(args(first, tmp_path / "again", *init)) == 1  # a run from random weights has no parent
    assert "the run started from random weights; --init_provenance is for fine-tuning" in capsys.readouterr().err
    assert not (tmp_path / "again").exists() or list((tmp_path / "again").iterdir()) == []


@pytest.mark.parametrize(
    "case,message",
    [
        ("user data", "not a run on generated synthetic data"),
        ("unfinished", "not the log of a finished training run"),
        ("other generator", "draws another case for seed 7 than the generator the weights were trained with"),
        ("other weights", "measured other weights"),
        (
            "fine-tuned",
            "started from other weights (/x/model.pt); give their shipped provenance with --init_provenance",
        ),
        ("another's provenance", "describes other weights than the run started from (/x/model.pt)"),
        ("not synthetic provenance", "not the provenance of a shipped model trained on synthetic data"),
    ],
)
def test_refuses_what_it_cannot_vouch_for_and_writes_nothing(case, message, tmp_path, capsys):
    run = make_run(
        tmp_path / "run",
        generator=None if case == "user data" else GENERATOR,
        log=LOG.split("Key metric")[0] if case == "unfinished" else LOG,
        initial_weights={"path": "/x/model.pt", "sha256": "0" * 64} if case in FINE_TUNED else None,
    )
    extra, source = [], BUNDLE_ROOT
    if case == "other generator":
        source = tmp_path / "src"
        for name in ship_model.source_files(str(BUNDLE_ROOT)):
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(BUNDLE_ROOT / name, source / name)
        appearance = source / "scripts" / "lib" / "phantom" / "appearance.py"
        trained = appearance.read_text()
        edited = trained.replace("noise_hu = rng.uniform(5.0, 40.0)", "noise_hu = rng.uniform(5.0, 41.0)")
        assert edited != trained
        appearance.write_text(edited)
    if case in FINE_TUNED[1:]:  # a shipped record of other weights; one of the initial weights, not synthetic
        other = case == "another's provenance"
        shipped = {"weights_sha256": ("1" if other else "0") * 64, "trained_on": "SYNTHETIC" if other else "CT"}
        parent = tmp_path / "parent.json"
        parent.write_text(json.dumps(shipped | {"generator": GENERATOR, "training": {}}))
        extra = ["--init_provenance", str(parent)]
    if case == "other weights":
        real = tmp_path / "real_ct.json"
        real.write_text(json.dumps({"weights": {"sha256": "0" * 64}, "liver_dice": 0.5}))
        extra = ["--real_ct", str(real)]
    out = tmp_path / "models"
    argv = args(run, out, *extra)
    argv[argv.index("--source_dir") + 1] = str(source)
    assert ship_model.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not out.exists() or list(out.iterdir()) == []
