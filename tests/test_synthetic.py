"""Training on the fly (scripts/components/synthetic.py, configs/synthetic.yaml): a generated case is exactly what LoadImaged
reads from the same case on disk, seeds name cases for ever, the pool never takes a case twice, training and
validation seeds never meet, and a real run trains on generated cases and validates on the folder's cases only."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import BUNDLE_ROOT, CONFIGS, FAST, run_bundle, run_in_process, workflow
from monai.bundle import ConfigParser
from monai.transforms import Compose, LoadImaged

from scripts.components import synthetic
from scripts.lib import phantom

FILES = ["train.yaml", "synthetic.yaml"]
PROFILE = "wide3"  # synthetic.yaml's default profile
# small settings for the tests: a 4-case pool, half of it replaced every epoch
TINY = {"synthetic_profile": PROFILE, "pool_size": 4, "replace_rate": 0.5}


def parser(**overrides) -> ConfigParser:
    p = ConfigParser()
    p.read_config([str(CONFIGS / f) for f in FILES])
    p.read_meta(str(CONFIGS / "metadata.json"))
    p.update({"bundle_root": str(BUNDLE_ROOT), **overrides})
    return p


CASES = [(7, None, "standard"), (8, (3.0, 3.0, 3.0), "standard"), (9, (2.0, 2.5, 3.5), "standard")]
CASES += [(10, None, "wide")]


@pytest.mark.parametrize("seed,spacing,profile", CASES)
def test_a_generated_case_is_what_loadimaged_reads_from_disk(seed, spacing, profile, tmp_path):
    """The same phantom case generated in the pipeline and written to NIfTI then loaded: equal arrays (int16 HU and
    uint8 labels are exact in float32) and equal affines (to the float32 of the NIfTI header, ~1e-5 mm), before and
    after train.yaml's deterministic transforms (reorientation, resampling to 3 mm, window, crop, pad; resampled
    images agree within 0.04 HU, labels exactly). The seeds draw LAS, LPI... orientations; spacing None keeps the
    phantom's own anisotropic voxels, which Spacingd resamples."""
    image, label, affine = phantom.make_case(seed, spacing=spacing, profile=profile)
    phantom.save_nifti(image, affine, tmp_path / "image.nii.gz")
    phantom.save_nifti(label, affine, tmp_path / "label.nii.gz")
    files = {"image": str(tmp_path / "image.nii.gz"), "label": str(tmp_path / "label.nii.gz")}
    read = LoadImaged(keys=["image", "label"], ensure_channel_first=True)(files)
    made = synthetic.SyntheticCased(keys=["image", "label"], spacing=spacing, profile=profile)({"seed": seed})
    assert made["seed"] == seed
    transforms = parser(pixdim=[3.0, 3.0, 3.0]).get_parsed_content("train#deterministic_transforms")
    rest = Compose(synthetic.replace_loader(transforms, synthetic.SyntheticCased())[1:])
    for stage, (a, b) in {"loaded": (made, read), "preprocessed": (rest(dict(made)), rest(dict(read)))}.items():
        for key in ("image", "label"):
            assert a[key].shape == b[key].shape and a[key].dtype == b[key].dtype, f"{stage} {key}"
            # loaded: exact. Preprocessed: resampling with the header's float32 affine moves intensities by up to
            # ~1e-4 of the window (0.04 HU; seed 10); labels stay exact.
            atol = 2e-4 if (stage, key) == ("preprocessed", "image") else 0.0
            torch.testing.assert_close(a[key].as_tensor(), b[key].as_tensor(), atol=atol, rtol=0.0, msg=stage)
            np.testing.assert_allclose(a[key].affine.numpy(), b[key].affine.numpy(), atol=1e-4, err_msg=stage)
    assert made["image"].shape == (1, *image.shape) and made["image"].affine.dtype == torch.float64
    assert set(torch.unique(rest(made)["label"]).tolist()) == {0.0, 1.0}  # train.yaml merges liver and tumour


def test_a_seed_names_one_case_for_ever():
    make = synthetic.SyntheticCased(spacing=(4.0, 4.0, 4.0))
    first, again, other = make({"seed": 11}), make({"seed": 11}), make({"seed": 12})
    for key in ("image", "label"):
        assert torch.equal(first[key], again[key])
        assert torch.equal(first[key].affine, again[key].affine)
    assert first["image"].shape != other["image"].shape or not torch.equal(first["image"], other["image"])
    assert synthetic.seed_items(5, 3) == [{"seed": 5}, {"seed": 6}, {"seed": 7}]
    with pytest.raises(ValueError, match="first training seed"):
        synthetic.seed_items(-1, 3)


@pytest.mark.parametrize("profile", phantom.PROFILES)
def test_every_profile_generates_a_case_with_a_liver(profile):
    case = synthetic.SyntheticCased(spacing=(4.0, 4.0, 4.0), profile=profile)({"seed": 3})
    assert case["image"].dtype == torch.float32 and case["image"].shape == case["label"].shape
    assert (case["label"] == 1).any() and case["image"].min() >= -1024


def test_the_pool_takes_each_seed_once(tmp_path, phantom_dir):
    """SmartCacheDataset as synthetic.yaml builds it, run through 3 epochs as SmartCacheHandler runs it: the pool
    starts with the first seeds, each epoch swaps in new ones in order, and no seed comes back."""
    geometry = {"pixdim": [3.0, 3.0, 3.0], "patch_size": [32, 32, 32]}
    p = parser(dataset_dir=str(phantom_dir), output_dir=str(tmp_path), epochs=3, num_workers=0, **geometry, **TINY)
    assert p.get_parsed_content("train_seeds") == {"first": 1000000, "count": 4 + 3 * 2}
    dataset = p.get_parsed_content("train#dataset")
    first = p["train_seed_start"]
    entered, pools = [], []
    dataset.start()
    try:
        for _ in range(3):
            pool = sorted(dataset[i][0]["seed"] for i in range(len(dataset)))  # [0]: the first random patch
            entered += [s for s in pool if not pools or s not in pools[-1]]
            pools.append(pool)
            dataset.update_cache()
    finally:
        dataset.shutdown()
    assert pools[0] == list(range(first, first + 4))
    assert entered == list(range(first, first + 4 + 2 * 2)), "a seed entered the pool twice or out of order"


def test_a_resumed_run_draws_fresh_seeds_only(tmp_path):
    """After `done` epochs the run has drawn the first pool and `done` replacements; a resume starts a new pool after
    them, with enough seeds for the epochs left. The epoch comes from the newest checkpoint's name."""
    start, pool, rate = 1000000, 4, 0.5  # 2 new cases an epoch
    assert synthetic.train_seeds(start, pool, rate, epochs=10) == {"first": start, "count": 4 + 10 * 2}
    assert synthetic.train_seeds(start, pool, rate, epochs=10, resume="false", ckpt_dir=tmp_path)["first"] == start
    with pytest.raises(FileNotFoundError, match="no checkpoint_epoch=N.pt to resume from"):
        synthetic.train_seeds(start, pool, rate, epochs=10, resume="true", ckpt_dir=tmp_path)
    for epoch in (3, 7):  # an earlier run's older checkpoint beside the newest
        (tmp_path / f"checkpoint_epoch={epoch}.pt").write_bytes(b"")
    resumed = synthetic.train_seeds(start, pool, rate, epochs=10, resume=True, ckpt_dir=tmp_path)
    assert resumed == {"first": start + 4 + 7 * 2, "count": 4 + 3 * 2}


def test_overlapping_training_and_validation_seeds_are_refused(phantom_dir, tmp_path):
    """phantom_dir was written with --seed 1: its cases are seeds 1000..1007."""
    datalist = str(phantom_dir / "dataset.json")
    assert synthetic.validation_seeds(datalist) == list(range(1000, 1008))
    assert synthetic.check_disjoint(1008, 5, datalist) == list(range(1000, 1008))
    assert synthetic.check_disjoint(0, 1000, datalist) == list(range(1000, 1008))
    with pytest.raises(ValueError, match="training seeds 995..1004 include validation seed"):
        synthetic.check_disjoint(995, 10, datalist)
    p = parser(dataset_dir=str(phantom_dir), output_dir=str(tmp_path), train_seed_start=1005)
    with pytest.raises(SystemExit) as stop:
        p.get_parsed_content("split")
    assert str(stop.value).startswith("error: ") and "\n" not in str(stop.value)
    assert "include validation seed(s) 1005..1007" in str(stop.value)


def test_the_synthetic_training_workflow_checks_clean(phantom_dir, tmp_path):
    w = workflow(
        FILES,
        "train",
        dataset_dir=str(phantom_dir),
        output_dir=str(tmp_path / "runs"),
        ckpt_dir=str(tmp_path / "models"),
        **TINY,
    )
    assert w.check_properties() == []
    split = w.parser.get_parsed_content("split")
    assert len(split["validation"]) == 6 and all("seed" in item and len(item) == 1 for item in split["training"])


def test_training_on_the_fly_writes_weights_trained_on_synthetic_data_only(tmp_path, phantom_dir):
    """A real 2-epoch run: generated training cases, validation on every labelled case of --dataset_dir and nothing
    else, model.pt written, and the provenance names the generator, its profile and seeds and the validation cases."""
    out = tmp_path
    run = dict(bundle_root=BUNDLE_ROOT, dataset_dir=phantom_dir, output_dir=out / "runs", ckpt_dir=out / "models")
    run.update(val_interval=1, **FAST, **TINY)
    proc = run_bundle("training", FILES, epochs=2, **run)
    assert "Epoch: 2/2, Iter: 2/2" in proc.stdout  # an epoch is pool_size / batch_size = 2 steps
    assert proc.stdout.count("val_mean_dice best value") == 2
    assert (out / "models" / "model.pt").stat().st_size > 0
    cases = json.loads((phantom_dir / "dataset.json").read_text())["training"]
    expected = sorted(str((phantom_dir / c["image"]).resolve()) for c in cases)
    split = json.loads((out / "runs" / "split.json").read_text())
    assert sorted(c["image"] for c in split["validation"]) == expected
    assert split["training_seeds"] == {"first": 1000000, "count": 4 + 2 * 2}
    provenance = json.loads((out / "models" / "model_provenance.json").read_text())
    assert provenance["trained_on"].startswith("SYNTHETIC DATA ONLY")
    assert provenance["generator"]["generator"] == "scripts/lib/phantom"
    assert provenance["generator"]["profile"] == PROFILE
    assert (provenance["generator"]["first_seed"], provenance["generator"]["num_seeds"]) == (1000000, 8)
    assert sorted(provenance["validation_cases"]) == expected
    assert provenance["num_validation_cases"] == 6
    # resumed for one more epoch: a new pool of fresh seeds after the 8 drawn, and the provenance covers both parts
    run_in_process("training", FILES, epochs=3, resume="true", **run)
    assert json.loads((out / "runs" / "split.json").read_text())["training_seeds"] == {"first": 1000008, "count": 6}
    provenance = json.loads((out / "models" / "model_provenance.json").read_text())
    assert (provenance["generator"]["first_seed"], provenance["generator"]["num_seeds"]) == (1000000, 14)
    assert [p.name for p in (out / "models").glob("checkpoint_epoch=*.pt")] == ["checkpoint_epoch=3.pt"]
