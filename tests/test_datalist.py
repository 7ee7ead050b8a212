"""Tests of scripts.lib.datalist: builders, fold assignment, datalist writing, split() and the CLI."""

import json
import os
import random
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from scripts.lib import datalist, phantom

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _touch_nii(path):
    """A tiny valid NIfTI file (the builders and split() never read voxel data)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.int16), np.eye(4)), path)
    return path


def _msd_dataset(root, n=6, n_test=2):
    """An MSD-style folder with ./imagesTr/x.nii.gz paths in dataset.json."""
    training, test = [], []
    for i in range(n):
        _touch_nii(os.path.join(root, "imagesTr", f"liver_{i}.nii.gz"))
        _touch_nii(os.path.join(root, "labelsTr", f"liver_{i}.nii.gz"))
        training.append({"image": f"./imagesTr/liver_{i}.nii.gz", "label": f"./labelsTr/liver_{i}.nii.gz"})
    for i in range(n, n + n_test):
        _touch_nii(os.path.join(root, "imagesTs", f"liver_{i}.nii.gz"))
        test.append(f"./imagesTs/liver_{i}.nii.gz")
    # a macOS resource-fork file, as found in the real Task03_Liver archive, must be ignored
    with open(os.path.join(root, "imagesTr", "._liver_0.nii.gz"), "wb") as f:
        f.write(b"\0\5\26\7")
    path = os.path.join(root, "dataset.json")
    with open(path, "w") as f:
        json.dump({"name": "Liver", "numTraining": n, "training": training, "test": test}, f)
    return path


def _items(root, n):
    return [
        {"image": os.path.join(root, f"img_{i:02d}.nii.gz"), "label": os.path.join(root, f"lab_{i:02d}.nii.gz")}
        for i in range(n)
    ]


def _write_json(path, data):
    with open(path, "w") as f:
        json.dump(data, f)
    return str(path)


# ----------------------------------------------------------------------------------------------
# builders
# ----------------------------------------------------------------------------------------------
def test_from_msd(tmp_path):
    _msd_dataset(str(tmp_path), n=5)
    items = datalist.from_msd(tmp_path)
    assert [os.path.basename(it["image"]) for it in items] == [f"liver_{i}.nii.gz" for i in range(5)]
    for it in items:
        assert set(it) == {"image", "label"}
        assert os.path.isabs(it["image"]) and os.path.isabs(it["label"])
        assert os.path.isfile(it["image"]) and os.path.isfile(it["label"])
        assert "/./" not in it["image"] and os.path.dirname(it["label"]) == str(tmp_path / "labelsTr")
    # the dataset.json path itself works too
    assert datalist.from_msd(tmp_path / "dataset.json") == items


def test_from_msd_on_the_phantom_dataset(tmp_path, capsys):
    dataset_json = phantom.write_dataset(tmp_path / "ds", num_train=4, num_test=1, seed=0)
    items = datalist.from_msd(tmp_path / "ds")
    assert [os.path.basename(it["image"]) for it in items] == [f"liver_{i:03d}.nii.gz" for i in range(4)]
    assert all(os.path.isfile(it["label"]) and "/labelsTr/" in it["label"] for it in items)
    assert [os.path.basename(t["image"]) for t in datalist.load_datalist(dataset_json)["test"]] == ["liver_004.nii.gz"]
    parts = datalist.split(dataset_json, fold=1, num_folds=4, seed=0)
    assert len(parts["validation"]) == 1 and len(parts["training"]) == 3


def test_from_msd_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="dataset.json"):
        datalist.from_msd(tmp_path)
    _msd_dataset(str(tmp_path), n=3)
    os.remove(tmp_path / "labelsTr" / "liver_1.nii.gz")
    with pytest.raises(ValueError, match=r"labelsTr/liver_1\.nii\.gz"):
        datalist.from_msd(tmp_path)


def test_from_lits_pairs_and_sorts_numerically(tmp_path):
    batch1, batch2 = tmp_path / "Training Batch 1", tmp_path / "Training Batch 2"
    for folder, number, ext in [
        (batch1, 10, ".nii"),
        (batch1, 2, ".nii.gz"),
        (batch2, 1, ".nii"),
        (batch2, 100, ".nii"),
    ]:
        _touch_nii(str(folder / f"volume-{number}{ext}"))
        _touch_nii(str(folder / f"segmentation-{number}{ext}"))
    _touch_nii(str(tmp_path / "test-volume-3.nii"))  # LiTS test volume: not a training case
    _touch_nii(str(batch1 / "._volume-5.nii"))  # hidden macOS file: ignored
    items = datalist.from_lits(tmp_path)
    names = [os.path.basename(it["image"]) for it in items]
    assert names == ["volume-1.nii", "volume-2.nii.gz", "volume-10.nii", "volume-100.nii"]
    for it in items:
        number = os.path.basename(it["image"]).split("-")[1].split(".")[0]
        assert os.path.basename(it["label"]).startswith(f"segmentation-{number}.")
        assert os.path.isabs(it["image"]) and os.path.isfile(it["label"])


def test_from_lits_unpaired_is_an_error(tmp_path):
    _touch_nii(str(tmp_path / "volume-0.nii"))
    _touch_nii(str(tmp_path / "segmentation-0.nii"))
    _touch_nii(str(tmp_path / "volume-7.nii.gz"))
    with pytest.raises(ValueError, match=r"volume-7\.nii\.gz"):
        datalist.from_lits(tmp_path)
    os.remove(tmp_path / "volume-7.nii.gz")
    _touch_nii(str(tmp_path / "segmentation-4.nii"))
    with pytest.raises(ValueError, match=r"segmentation-4\.nii"):
        datalist.from_lits(tmp_path)
    os.makedirs(tmp_path / "empty")
    with pytest.raises(ValueError, match="empty: no volume"):
        datalist.from_lits(tmp_path / "empty")


def test_from_folders(tmp_path):
    for name in ["b.nii.gz", "a.nii.gz", "c.nii"]:
        _touch_nii(str(tmp_path / "img" / name))
        _touch_nii(str(tmp_path / "lab" / name))
    _touch_nii(str(tmp_path / "img" / ".hidden.nii.gz"))
    items = datalist.from_folders(tmp_path / "img", tmp_path / "lab")
    assert [os.path.basename(it["image"]) for it in items] == ["a.nii.gz", "b.nii.gz", "c.nii"]
    assert all(os.path.basename(it["image"]) == os.path.basename(it["label"]) for it in items)
    assert all(os.path.dirname(it["label"]) == str(tmp_path / "lab") for it in items)

    _touch_nii(str(tmp_path / "img" / "d.nii.gz"))
    with pytest.raises(ValueError, match=r"img/d\.nii\.gz"):
        datalist.from_folders(tmp_path / "img", tmp_path / "lab")
    os.remove(tmp_path / "img" / "d.nii.gz")
    _touch_nii(str(tmp_path / "lab" / "e.nii.gz"))
    with pytest.raises(ValueError, match=r"lab/e\.nii\.gz"):
        datalist.from_folders(tmp_path / "img", tmp_path / "lab")
    with pytest.raises(ValueError, match="missing_dir"):
        datalist.from_folders(tmp_path / "missing_dir", tmp_path / "lab")


# ----------------------------------------------------------------------------------------------
# folds
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n,k", [(10, 5), (11, 5), (7, 3), (2, 2), (23, 4)])
def test_assign_folds_balanced(tmp_path, n, k):
    folded = datalist.assign_folds(_items(str(tmp_path), n), num_folds=k, seed=3)
    sizes = [sum(it["fold"] == f for it in folded) for f in range(k)]
    assert sum(sizes) == n and max(sizes) - min(sizes) <= 1
    assert all(it["fold"] in range(k) for it in folded)


def test_assign_folds_deterministic_and_order_independent(tmp_path):
    items = _items(str(tmp_path), 20)
    first = datalist.assign_folds(items, num_folds=5, seed=0)
    assert first == datalist.assign_folds(items, num_folds=5, seed=0)
    assert [it["image"] for it in first] == [it["image"] for it in items]  # input order kept
    assert "fold" not in items[0]  # inputs are not modified
    shuffled = list(items)
    random.Random(42).shuffle(shuffled)
    mapping = {it["image"]: it["fold"] for it in first}
    assert {it["image"]: it["fold"] for it in datalist.assign_folds(shuffled, num_folds=5, seed=0)} == mapping
    assert {it["image"]: it["fold"] for it in datalist.assign_folds(items[::-1], num_folds=5, seed=0)} == mapping
    other_seed = {it["image"]: it["fold"] for it in datalist.assign_folds(items, num_folds=5, seed=1)}
    assert other_seed != mapping


def test_assign_folds_errors(tmp_path):
    items = _items(str(tmp_path), 4)
    with pytest.raises(ValueError, match="num_folds"):
        datalist.assign_folds(items, num_folds=1)
    with pytest.raises(ValueError, match="img_00"):
        datalist.assign_folds(items + [dict(items[0])], num_folds=2)


# ----------------------------------------------------------------------------------------------
# write / load
# ----------------------------------------------------------------------------------------------
def test_write_datalist_roundtrip(tmp_path):
    root = str(tmp_path / "data")
    _msd_dataset(root, n=4)
    items = datalist.assign_folds(datalist.from_msd(root), num_folds=2, seed=0)
    outside = _touch_nii(str(tmp_path / "elsewhere" / "extra.nii.gz"))
    out = datalist.write_datalist(
        items, os.path.join(root, "datalist.json"), test=[outside, {"image": items[0]["image"]}]
    )
    with open(out) as f:
        raw = json.load(f)
    assert raw["training"][0]["image"] == "./imagesTr/liver_0.nii.gz"  # inside the JSON's folder: relative
    assert raw["test"][0] == outside  # outside: absolute
    assert [e["fold"] for e in raw["training"]] == [it["fold"] for it in items]
    loaded = datalist.load_datalist(out)
    assert loaded["training"] == items
    assert loaded["test"] == [{"image": outside}, {"image": items[0]["image"]}]
    assert sorted(os.listdir(root)) == ["datalist.json", "dataset.json", "imagesTr", "imagesTs", "labelsTr"]


def test_write_datalist_bad_item_leaves_previous_file(tmp_path):
    path = tmp_path / "datalist.json"
    datalist.write_datalist(_items(str(tmp_path), 2), path)
    before = path.read_text()
    with pytest.raises(ValueError, match="datalist.json"):
        datalist.write_datalist([{"image": "x.nii.gz"}], path)
    assert path.read_text() == before
    assert os.listdir(tmp_path) == ["datalist.json"]


# ----------------------------------------------------------------------------------------------
# split
# ----------------------------------------------------------------------------------------------
def test_split_disjoint_and_covering(tmp_path):
    dataset_json = _msd_dataset(str(tmp_path), n=8)
    every = {it["image"] for it in datalist.from_msd(tmp_path)}
    seen_validation = []
    for fold in range(4):
        parts = datalist.split(dataset_json, fold=fold, num_folds=4, seed=0)
        train = {it["image"] for it in parts["training"]}
        val = {it["image"] for it in parts["validation"]}
        assert train.isdisjoint(val) and train | val == every
        assert len(val) == 2
        for it in parts["training"] + parts["validation"]:
            assert set(it) == {"image", "label"} and os.path.isabs(it["label"]) and os.path.isfile(it["label"])
            assert os.path.basename(it["image"]) == os.path.basename(it["label"])
        seen_validation += sorted(val)
    assert sorted(seen_validation) == sorted(every)  # every case validated exactly once
    everything = datalist.split(dataset_json, fold=-1, num_folds=4)
    assert everything["validation"] == [] and {it["image"] for it in everything["training"]} == every


def test_split_uses_folds_of_the_file_and_base_dir(tmp_path):
    data_dir = str(tmp_path / "data")
    _msd_dataset(data_dir, n=6)
    folds = [2, 0, 1, 2, 0, 1]
    training = [
        {"image": f"imagesTr/liver_{i}.nii.gz", "label": f"labelsTr/liver_{i}.nii.gz", "fold": f}
        for i, f in enumerate(folds)
    ]
    dl_file = _write_json(tmp_path / "configs_datalist.json", {"training": training})
    parts = datalist.split(dl_file, fold=2, num_folds=5, seed=9, base_dir=data_dir)
    assert [os.path.basename(it["image"]) for it in parts["validation"]] == ["liver_0.nii.gz", "liver_3.nii.gz"]
    assert len(parts["training"]) == 4
    with pytest.raises(ValueError, match="out of range"):
        datalist.split(dl_file, fold=3, base_dir=data_dir)  # the file defines 3 folds
    gap = _write_json(tmp_path / "gap.json", {"training": [dict(e, fold=2 * (e["fold"] > 0)) for e in training]})
    with pytest.raises(ValueError, match=r"gap\.json: fold 1 has no cases"):
        datalist.split(gap, fold=1, base_dir=data_dir)
    with pytest.raises(ValueError, match=r"imagesTr/liver_0\.nii\.gz"):
        datalist.split(dl_file, fold=0)  # relative to the JSON's folder: files are not there


def test_split_record_file(tmp_path):
    dataset_json = _msd_dataset(str(tmp_path / "data"), n=5)
    record = tmp_path / "runs" / "fold1" / "split.json"
    parts = datalist.split(dataset_json, fold=1, num_folds=3, seed=7, record_file=record)
    with open(record) as f:
        saved = json.load(f)
    assert saved["datalist_file"] == os.path.abspath(dataset_json)
    assert (saved["seed"], saved["num_folds"], saved["fold"], saved["folds_from"]) == (7, 3, 1, "assigned")
    assert saved["training"] == parts["training"] and saved["validation"] == parts["validation"]
    assert saved["num_training"] + saved["num_validation"] == 5
    assert os.listdir(record.parent) == ["split.json"]  # no temporary file left behind
    # the record reproduces the run: the same call gives the same split
    assert (
        datalist.split(saved["datalist_file"], fold=saved["fold"], num_folds=saved["num_folds"], seed=saved["seed"])
        == parts
    )


def test_split_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(ValueError, match="nope.json"):
        datalist.split(missing)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        datalist.split(bad)
    no_training = _write_json(tmp_path / "no_training.json", {"test": []})
    with pytest.raises(ValueError, match=r"no_training\.json: no 'training' list"):
        datalist.split(no_training)
    root = str(tmp_path / "d")
    dataset_json = _msd_dataset(root, n=4)
    with open(dataset_json) as f:
        data = json.load(f)
    one = _write_json(os.path.join(root, "one.json"), {"training": data["training"][:1]})
    with pytest.raises(ValueError, match=r"one\.json: 1 labelled case"):
        datalist.split(one, fold=-1)
    for fold in (4, -2, 10):
        with pytest.raises(ValueError, match=r"dataset\.json: fold .* out of range"):
            datalist.split(dataset_json, fold=fold, num_folds=4)
    no_label = _write_json(
        os.path.join(root, "no_label.json"), {"training": [{"image": "./imagesTr/liver_0.nii.gz"}] * 2}
    )
    with pytest.raises(ValueError, match=r"no_label\.json"):
        datalist.split(no_label)
    dup = _write_json(os.path.join(root, "dup.json"), {"training": data["training"][:2] + data["training"][:1]})
    with pytest.raises(ValueError, match=r"dup\.json: image listed more than once.*liver_0"):
        datalist.split(dup)
    partial = _write_json(
        os.path.join(root, "partial.json"), {"training": [dict(data["training"][0], fold=0)] + data["training"][1:]}
    )
    with pytest.raises(ValueError, match=r"partial\.json: 1 of 4"):
        datalist.split(partial)
    os.remove(os.path.join(root, "imagesTr", "liver_2.nii.gz"))
    with pytest.raises(ValueError, match=r"dataset\.json: file not found: .*imagesTr/liver_2\.nii\.gz"):
        datalist.split(dataset_json, fold=0, num_folds=2)


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------
def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "scripts", "datalist", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_msd(tmp_path):
    _msd_dataset(str(tmp_path / "data"), n=7)
    out = tmp_path / "out" / "datalist.json"
    proc = _cli("--msd", tmp_path / "data", "--output", out, "--num_folds", "3", "--seed", "1")
    assert proc.returncode == 0, proc.stderr
    fold_lines = [line for line in proc.stdout.splitlines() if line.startswith("fold ")]
    assert [line.split(":")[0] for line in fold_lines] == ["fold 0", "fold 1", "fold 2"]
    with open(out) as f:
        written = json.load(f)
    assert sorted(e["fold"] for e in written["training"]) == [0, 0, 0, 1, 1, 2, 2]
    assert len(written["test"]) == 2 and all(os.path.isfile(p) for p in written["test"])
    expected = datalist.assign_folds(datalist.from_msd(tmp_path / "data"), num_folds=3, seed=1)
    assert [e["fold"] for e in written["training"]] == [it["fold"] for it in expected]
    assert datalist.split(out, fold=0)["validation"]  # usable by the training config


def test_cli_folders_and_lits(tmp_path):
    for name in ["a.nii.gz", "b.nii.gz", "c.nii.gz"]:
        _touch_nii(str(tmp_path / "img" / name))
        _touch_nii(str(tmp_path / "lab" / name))
    proc = _cli(
        "--images", tmp_path / "img", "--labels", tmp_path / "lab", "--output", tmp_path / "f.json", "--num_folds", "2"
    )
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads((tmp_path / "f.json").read_text())["training"]) == 3
    for n in (3, 1):
        _touch_nii(str(tmp_path / "lits" / f"volume-{n}.nii"))
        _touch_nii(str(tmp_path / "lits" / f"segmentation-{n}.nii"))
    proc = _cli("--lits", tmp_path / "lits", "--output", tmp_path / "l.json", "--num_folds", "2")
    assert proc.returncode == 0, proc.stderr
    assert [os.path.basename(e["image"]) for e in json.loads((tmp_path / "l.json").read_text())["training"]] == [
        "volume-1.nii",
        "volume-3.nii",
    ]


def test_cli_error_is_one_line_and_writes_nothing(tmp_path):
    _touch_nii(str(tmp_path / "img" / "a.nii.gz"))
    _touch_nii(str(tmp_path / "lab" / "b.nii.gz"))
    out = tmp_path / "datalist.json"
    proc = _cli("--images", tmp_path / "img", "--labels", tmp_path / "lab", "--output", out)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1
    assert "a.nii.gz" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()
    assert _cli("--help").returncode == 0
