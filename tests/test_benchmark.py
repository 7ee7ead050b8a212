"""Smoke tests of the benchmark's pieces (tools/benchmark.py) on tiny inputs. Nothing here is timed: the figures
come from `python -m tools.benchmark`, which writes docs/benchmark.md."""

from __future__ import annotations

import json
import os
import re
import sys
import time

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import NibabelWriter

from scripts.lib import phantom
from tools import benchmark

TINY = {"shape": (64, 64, 40), "spacing": (7.0, 7.0, 8.0)}
# the demo geometry shrunk further: 8 mm voxels, 32^3 windows
TINY_OVERRIDES = {"pixdim": [8.0, 8.0, 8.0], "patch_size": [32, 32, 32], "sw_batch_size": 2}


@pytest.fixture(scope="module")
def tiny_cases(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench") / "cases"
    images = benchmark.make_cases(str(folder), [3, 4], **TINY)
    return folder, images


def test_make_cases_writes_int16_gzip_nifti_and_labels_and_reuses_them(tiny_cases):
    folder, images = tiny_cases
    assert [os.path.basename(p) for p in images] == ["ct_003.nii.gz", "ct_004.nii.gz"]
    img = nib.load(images[0])
    assert img.get_data_dtype() == np.int16 and img.shape == TINY["shape"]
    assert nib.aff2axcodes(img.affine) == ("L", "P", "S")
    with open(images[0], "rb") as f:
        assert f.read(2) == b"\x1f\x8b"  # gzip
    label = np.asarray(nib.load(str(folder / "labelsTs" / "ct_003.nii.gz")).dataobj)
    assert label.max() >= 1
    stamp = os.stat(images[0]).st_mtime_ns
    assert benchmark.make_cases(str(folder), [3, 4], **TINY) == images
    assert os.stat(images[0]).st_mtime_ns == stamp  # reused, not redrawn


def test_thin_slice_case_doubles_the_slices_on_the_same_field_of_view(tmp_path):
    path = benchmark.make_thin_slice_case(
        str(tmp_path / "thin.nii.gz"), seed=1, shape=(48, 48, 80), spacing=(9.0, 9.0, 4.5)
    )
    thin = nib.load(path)
    assert thin.shape == (48, 48, 80) and thin.get_data_dtype() == np.int16
    assert np.allclose(nib.affines.voxel_sizes(thin.affine), (9.0, 9.0, 4.5))
    data = np.asarray(thin.dataobj)
    assert np.array_equal(data[..., 0], data[..., 1]) and not np.array_equal(data[..., 1], data[..., 2])
    # the first thin slice sits a quarter of a thick slice below the first thick slice's centre (LPS: k is S)
    thick = phantom.make_case(1, shape=(48, 48, 40), spacing=(9.0, 9.0, 9.0), orientation="LPS")[2]
    assert thin.affine[2, 3] == pytest.approx(thick[2, 3] - 0.25 * thick[2, 2])
    with pytest.raises(ValueError, match="even"):
        benchmark.make_thin_slice_case(str(tmp_path / "odd.nii.gz"), shape=(48, 48, 81))


def test_revert_overrides_target_the_optimised_transforms():
    reverts = benchmark.revert_overrides()
    parts = {
        "float32_resampling",
        "liver_channel_only",
        "liver_box_resampling",
        "liver_box_inference",
        "thread_loader",
        "cpu_batch_of_2",
        "gpu_preprocessing",
    }
    gpu_only = {"gpu_loader_threads"}  # one loader thread: the 2-core CPU's setting already, so not in plain
    # only the top-level files apply: tools/reverts/replaced/ is the record of the components MONAI's replaced
    assert set(reverts) == parts | gpu_only | {"plain"}
    assert not set(benchmark.REPLACED) & (set(reverts) | set(benchmark.PLAIN) | set(benchmark.SHARES))
    assert set(benchmark.SHARES) <= set(reverts)
    assert set(benchmark.PLAIN) == parts
    plain_keys = [k for name in benchmark.PLAIN for k in reverts[name]]
    assert all(key in reverts["plain"] for key in plain_keys) and len(reverts["plain"]) == len(set(plain_keys)) + 2
    from monai.bundle import ConfigParser

    for name, expect_argmax, expect_dtype in (("plain", True, np.float64), (None, False, torch.float32)):
        cfg = ConfigParser()
        cfg.read_config(os.path.join(benchmark.BUNDLE_ROOT, "configs/inference.yaml"))
        cfg["input"] = benchmark.BUNDLE_ROOT
        cfg["datalist"] = []  # the loader is built, but no input is listed (the bundle root holds venvs of DICOM)
        for key, value in (reverts[name] if name else {}).items():
            cfg[key] = value
        post = cfg.get_parsed_content("postprocessing").flatten().transforms  # a revert's Compose, unpacked
        pre = cfg.get_parsed_content("preprocessing").transforms
        names = [type(t).__name__ for t in post]
        inferer, reader = cfg.get_parsed_content("inferer"), pre[0]._loader.readers[-1]
        assert type(inferer).__name__ == "LiverBoxInferer" and inferer.enabled is not bool(name)
        assert inferer.inferer.sw_batch_size == (4 if name else 2)  # on this CPU
        moved = next(t for t in pre if type(t).__name__ == "EnsureTyped" and t.converter.device is not None)
        assert str(moved.converter.device) == "cpu"  # the CPU here; plain: preprocess_device cpu everywhere
        assert type(reader).__name__ == "NibabelReader"  # MONAI's, in every variant since 0.8.0
        assert cfg["dataloader"]["_target_"] == ("DataLoader" if name else "ThreadDataLoader")
        assert type(cfg.get_parsed_content("dataloader")).__name__ == cfg["dataloader"]["_target_"]
        lam = next(t for t in post if type(t).__name__ == "Lambdad")
        spacing = next(t for t in pre if type(t).__name__ == "Spacingd")
        if name:  # the plain path: Invertd, AsDiscreted (argmax) and KeepLargestConnectedComponentd on the whole grid
            assert names == [
                "Activationsd",
                "Lambdad",
                "Lambdad",
                "Invertd",
                "AsDiscreted",
                "KeepLargestConnectedComponentd",
                "Lambdad",
                "SaveImaged",
            ]
            assert bool(post[4].argmax[0]) is expect_argmax
        else:  # the box resampling of scripts.components.postprocess replaces those three
            assert names == ["Activationsd", "Lambdad", "Lambdad", "Lambdad", "Lambdad", "SaveImaged"]
            assert post[3].func[0].__name__ == "to_input_grid"
        # the verdict's steps (scripts.components.qc) stay in every variant: confidence before the grid, the small-find filter after
        assert [type(post[i].func[0]).__name__ for i in (2, -2)] == ["RecordConfidence", "SmallLiverFilter"]
        assert spacing.dtype[0] == expect_dtype
        saver = next(t for t in post if type(t).__name__ == "SaveImaged").saver
        writer = getattr(saver.writers[0], "func", saver.writers[0])  # mask_writer binds the output format
        assert writer.__name__ == "MaskWriter" and issubclass(writer, NibabelWriter)  # MONAI's, in every variant
        two = torch.rand(2, 3, 3, 3)
        assert lam.func[0](two).shape[0] == (2 if name else 1)


def test_replaced_reverts_are_a_record_and_apply_nowhere():
    """tools/reverts/replaced/ holds the reverts of the components replaced by MONAI's in 0.8.0: each says it is the
    record and no longer applies; the benchmark reads none of them, and the shares table points its rows there."""
    folder = os.path.join(benchmark.REVERTS_DIR, "replaced")
    files = sorted(f for f in os.listdir(folder) if f.endswith(".yaml"))
    assert files == sorted(f"{name}.yaml" for name in benchmark.REPLACED)
    for file in files:
        with open(os.path.join(folder, file)) as f:
            text = f.read()
        first = text.splitlines()[0]
        comment = " ".join(line for line in text.splitlines() if line.startswith("#"))
        assert first.startswith("#") and "record" in first.lower(), file
        assert "replaced by MONAI's in 0.8.0" in first and "no longer applies" in comment, file
        assert not os.path.exists(os.path.join(benchmark.REVERTS_DIR, file))
    assert benchmark._record_file("tools/reverts/slab_reader.yaml against isal_gzip.yaml") == (
        "tools/reverts/replaced/slab_reader.yaml against isal_gzip.yaml"
    )
    assert benchmark._record_file("tools/reverts/liver_box_inference.yaml") == "tools/reverts/liver_box_inference.yaml"


def test_cli_overrides_are_monai_bundle_arguments():
    args = benchmark.cli_overrides({"a#b": None, "c": True, "d": "$lambda p: p"})
    assert args == ["--a#b", "None", "--c", "True", "--d", "$lambda p: p"]


def test_profile_case_times_every_stage_and_counts_the_windows_it_runs(tiny_cases, tmp_path):
    _, images = tiny_cases
    ckpt = benchmark.random_weights(str(tmp_path / "w" / "random.pt"))
    # the plain sliding window: its windows are known before the network runs (random weights find no liver)
    overrides = {**TINY_OVERRIDES, "coarse_to_fine": False}
    res = benchmark.profile_case(images[0], ckpt, overrides=overrides, output_dir=str(tmp_path / "out"))
    names = list(res["stages"])
    assert names[0] == "pre: LoadImaged" and "network (sliding window)" in names
    assert "post: Lambdad'" in names and "post: SaveImaged" in names and names[-1] == "report row (CaseTable)"
    assert "post: Invertd" not in names  # the liver-box resampling replaces it
    assert all(v >= 0 for v in res["stages"].values()) and res["total_s"] >= res["network_s"] > 0
    assert (tmp_path / "out" / "ct_003_seg.nii.gz").is_file()
    # the windows the network saw are the windows the inferer plans for this input
    parsed = benchmark._parsed(["inferer"])
    from monai.inferers import SlidingWindowInferer

    inferer = SlidingWindowInferer(roi_size=[32, 32, 32], sw_batch_size=2, overlap=parsed["inferer"].inferer.overlap)
    assert res["windows"] == benchmark.count_windows(inferer, (1, 1, *res["network_input_shape"])) > 0
    # one 32^3 window of this U-Net: a few hundred MFLOP
    assert 1e8 < res["flops_per_window"] < 1e10


def test_flops_scale_with_the_window_volume():
    from monai.networks.nets import UNet

    net = UNet(3, 1, 2, channels=(4, 8), strides=(2,), num_res_units=0).eval()
    small = benchmark.flops_per_window(net, (16, 16, 16))
    big = benchmark.flops_per_window(net, (32, 32, 32))
    assert small > 0 and big == pytest.approx(8 * small, rel=0.01)


def test_run_monitored_sees_the_memory_of_child_processes(tmp_path):
    child = "import time, numpy as np; a = np.ones(300_000_000 // 8); time.sleep(0.8)"
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}], check=True)"
    run = benchmark.run_monitored([sys.executable, "-c", parent], str(tmp_path), str(tmp_path / "log.txt"))
    assert run["peak_rss_gb"] > 0.3 and run["peak_rss_one_process_gb"] > 0.3
    assert run["wall_s"] >= 0.8 and run["cpu_s"] > 0
    with pytest.raises(RuntimeError, match="exit code 3"):
        benchmark.run_monitored(
            [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"], str(tmp_path), str(tmp_path / "log2.txt")
        )


def test_summarize_run_reads_engine_start_and_mask_times(tmp_path):
    start = time.time() - 20
    engine = start + 5
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(engine)) + f",{int((engine % 1) * 1000):03d}"
    log_path = tmp_path / "run.log"
    log_path.write_text(f"some line\n{stamp} - ignite - INFO - Engine run resuming from iteration 0\n")
    masks = []
    for i, t in enumerate((engine + 4, engine + 10)):
        m = tmp_path / f"m{i}_seg.nii.gz"
        m.write_bytes(b"x")
        os.utime(m, (t, t))
        masks.append(str(m))
    run = benchmark.summarize_run({"start_epoch": start, "log": str(log_path)}, masks, 2)
    assert run["to_last_mask_s"] == pytest.approx(15, abs=0.01)
    assert run["startup_s"] == pytest.approx(5, abs=0.01)
    assert run["per_volume_s"] == pytest.approx(5, abs=0.01)
    assert run["first_mask_s"] == pytest.approx(4, abs=0.01)  # engine start to the first mask
    assert run["steady_per_volume_s"] == pytest.approx(6, abs=0.01)  # first to last mask, over the one after it
    with pytest.raises(RuntimeError, match="expected 3 masks"):
        benchmark.summarize_run({"start_epoch": start, "log": str(log_path)}, masks, 3)


def test_dice_and_compare_masks(tmp_path):
    a = np.zeros((10, 10, 10), bool)
    a[2:6] = True
    b = np.zeros_like(a)
    b[4:8] = True
    assert benchmark.dice(a, b) == pytest.approx(0.5)
    assert benchmark.dice(np.zeros(3), np.zeros(3)) == 1.0
    for sub, arr in (("fast", a), ("plain", b), ("labels", a)):
        (tmp_path / sub).mkdir()
        name = "c_seg.nii.gz" if sub != "labels" else "c.nii.gz"
        nib.save(nib.Nifti1Image(arr.astype(np.uint8), np.eye(4)), str(tmp_path / sub / name))
    rows = benchmark.compare_masks(str(tmp_path / "fast"), str(tmp_path / "plain"), str(tmp_path / "labels"))
    assert rows == [
        {
            "case": "c",
            "dice_fast": 1.0,
            "dice_plain": pytest.approx(0.5),
            "dice_fast_vs_plain": pytest.approx(0.5),
            "voxels_differing": 400,
        }
    ]


def test_report_states_each_target_and_what_was_not_run(tmp_path):
    s = benchmark.spread
    res = {
        "command": "python -m tools.benchmark --steps e2e",
        "seeds": [0],
        "machine": benchmark.machine_info(),
        "e2e": {
            "folder": {
                "cases": 5,
                "repeats": 2,
                "ours": {
                    "to_last_mask_s": s([50, 60]),
                    "per_volume_s": s([8, 9]),
                    "startup_s": s([9]),
                    "cpu_s": s([90]),
                    "peak_rss_gb": s([2.5, 3.1]),
                },
                "reference": {
                    "to_last_mask_s": s([300, 320]),
                    "per_volume_s": s([55]),
                    "startup_s": s([9]),
                    "cpu_s": s([500]),
                    "peak_rss_gb": s([4.0]),
                },
                "ratio_to_last_mask": s([0.17, 0.19]),
                "ratio_cpu": s([0.18]),
            }
        },
        "dice": {
            "ckpt": "w.pt",
            "weights_note": "demo",
            "config_files": ["a"],
            "cases": [
                {"case": "c", "dice_fast": 0.9, "dice_plain": 0.91, "dice_fast_vs_plain": 0.99, "voxels_differing": 3}
            ],
        },
        "gpu": {"not_run": "no GPU lent"},
    }
    md_path, json_path = benchmark.write_report(res, str(tmp_path))
    md = open(md_path).read()
    saved = json.load(open(json_path))
    assert saved["targets"]["folder_ratio"]["met"] == "yes"
    assert saved["targets"]["rss150"]["met"] == "yes" and saved["targets"]["rss150"]["value"] == pytest.approx(3.1)
    assert saved["targets"]["dice"]["met"] == "NO"  # |0.9 - 0.91| > 0.005
    assert saved["targets"]["single_ratio"]["met"] == "not measured"
    assert "| 5-volume folder <= 0.2x reference | 0.180x" in md
    assert "Not run: no GPU lent" in md and res["machine"]["cpu"] in md
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp")]
    # the tables come first; the commands that wrote the report are its appendix
    sections = [line for line in md.splitlines() if line.startswith("## ")]
    assert sections[0] == "## Targets" and sections[-1] == "## Appendix: Commands"
    assert md.index(res["command"]) > md.index("## Appendix: Commands") > md.index("| 5-volume folder")


def test_cli_rejects_bad_arguments_with_one_line(capsys, tmp_path):
    assert benchmark.main(["--repeats", "0", "--work_dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --repeats and --num_cases must be at least 1"]
    assert benchmark.main(["--reference_dir", str(tmp_path / "none"), "--steps", "e2e"]) == 1
    assert "no configs/inference.json" in capsys.readouterr().err


def test_dice_worker_scores_each_variant_against_the_label(tiny_cases, tmp_path):
    folder, images = tiny_cases
    ckpt = benchmark.random_weights(str(tmp_path / "random.pt"))
    plain = benchmark.revert_overrides()["plain"]
    out = benchmark._worker_dice(
        {
            "images": images[:1],
            "labels": [str(folder / "labelsTs" / "ct_003.nii.gz")],
            "ckpt": ckpt,
            "config_files": ["configs/inference.yaml"],
            "output_dir": str(tmp_path / "out"),
            "variants": {"current": {"overrides": TINY_OVERRIDES}, "plain": {"overrides": {**TINY_OVERRIDES, **plain}}},
        }
    )
    assert set(out) == {"current", "plain"}
    for rows in out.values():
        assert [r["case"] for r in rows] == ["ct_003"]
        assert 0.0 <= rows[0]["dice"] <= 1.0 and rows[0]["windows"] > 0
    assert (tmp_path / "out" / "plain" / "ct_003_seg.nii.gz").is_file()


def test_render_only_rewrites_the_markdown_from_the_json(tmp_path):
    res = {
        "command": "python -m tools.benchmark",
        "seeds": [0],
        "machine": benchmark.machine_info(),
        "rss600": {"peak_rss_gb": 9.5, "peak_rss_one_process_gb": 8.0, "to_last_mask_s": 100.0},
    }
    (tmp_path / "benchmark.json").write_text(json.dumps(res))
    assert benchmark.main(["--render_only", "--report_dir", str(tmp_path)]) == 0
    md = (tmp_path / "benchmark.md").read_text()
    assert "| peak RSS <= 8 GB at 512x512x600 | 9.50 GB | NO |" in md
    assert json.loads((tmp_path / "benchmark.json").read_text())["targets"]["rss600"]["met"] == "NO"


def test_report_adds_the_onnx_runtime_rows_and_takes_gpu_latency_from_the_runner(tmp_path):
    s = benchmark.spread
    side = {
        "to_last_mask_s": s([40]),
        "per_volume_s": s([6]),
        "startup_s": s([8]),
        "cpu_s": s([70]),
        "peak_rss_gb": s([2.6]),
    }
    res = {
        "command": "python -m tools.benchmark --steps e2e gpu --onnx",
        "seeds": [0],
        "machine": benchmark.machine_info(),
        "e2e": {
            "single": {
                "cases": 1,
                "repeats": 1,
                "ours": side,
                "ours_onnx": side,
                "reference": side,
                "ratio_to_last_mask": s([0.4]),
                "ratio_cpu": s([0.4]),
                "ratio_onnx_to_last_mask": s([0.3]),
                "ratio_onnx_cpu": s([0.3]),
            }
        },
        "gpu": {
            "gpu": "Test GPU",
            "cpu_cores": 16,
            "ckpt": "w.pt",
            "stages": {"fp32": {"network_s": s([0.03]), "total_s": s([1.9]), "stages": {"network": 0.03}}},
            "e2e": {
                "ours": {**side, "per_volume_s": s([0.9]), "first_mask_s": s([2.2]), "steady_per_volume_s": s([0.55])}
            },
        },
    }
    md_path, json_path = benchmark.write_report(res, str(tmp_path))
    targets = json.load(open(json_path))["targets"]
    assert targets["single_ratio"]["met"] == "NO" and targets["single_ratio_onnx"]["met"] == "yes"
    assert targets["gpu_latency"]["value"] == pytest.approx(0.9) and targets["gpu_latency"]["met"] == "yes"
    md = open(md_path).read()
    assert "| single | **ours, ONNX Runtime / reference** | **0.300" in md
    assert "GPU: Test GPU (16 CPU cores)" in md and "measured on Test GPU" in md
    assert "| ours | 40.0 (40.0-40.0) | 0.90 (0.90-0.90) | 2.20 (2.20-2.20) | 0.55 (0.55-0.55) | 8.0" in md


def test_compare_alternating_without_a_reference_runs_ours_alone(tmp_path):
    """The gpu step's end-to-end runs: with no reference folder only ours runs, and there are no ratios."""
    folder = tmp_path / "one"
    benchmark.make_cases(str(folder), [3], **TINY)
    ckpt = benchmark.random_weights(str(tmp_path / "w" / "random.pt"))
    res = benchmark.compare_alternating(str(folder), str(tmp_path / "work"), ckpt, 1, 1, None, "gpu")
    assert set(res) == {"cases", "repeats", "ours"}
    assert res["ours"]["to_last_mask_s"]["median"] > 0
    assert [p.name for p in (tmp_path / "work" / "gpu_ours_0").glob("*_seg.nii.gz")] == ["ct_003_seg.nii.gz"]
    assert not (tmp_path / "work" / "gpu_reference_0").exists()


def test_gpu_step_keeps_the_earlier_parts_it_does_not_run_but_not_an_earlier_not_run(tmp_path):
    """--merge --gpu_parts ...: what the gpu step does not run now stays; a "not run" from a machine without CUDA goes."""
    import argparse

    args = argparse.Namespace(gpu_device="cpu", gpu_parts=[], trained_ckpt="w.pt")
    res = {"gpu": {"not_run": "no GPU lent", "stages": {"fp32": {}}, "train": {"steps_per_s": 3.7}}}
    benchmark.step_gpu(args, res, str(tmp_path), str(tmp_path))
    assert res["gpu"] == {
        "stages": {"fp32": {}},
        "train": {"steps_per_s": 3.7},
        "gpu": "cpu",
        "cpu_cores": os.cpu_count(),
        "ckpt": "w.pt",
    }


# ---- the training race (step_race) ---------------------------------------------------------------------------------

# The reference trainer's layout where reference_train_overrides changes it: the transforms by index, as in the Model
# Zoo's spleen bundle (configs/train.json), with the parts the race overrides.
REFERENCE_TRAIN = {
    "epochs": 800,
    "train": {
        "deterministic_transforms": [
            {"_target_": "LoadImaged", "keys": ["image", "label"]},
            {"_target_": "EnsureChannelFirstd", "keys": ["image", "label"]},
            {"_target_": "Orientationd", "keys": ["image", "label"], "axcodes": "RAS"},
            {
                "_target_": "Spacingd",
                "keys": ["image", "label"],
                "pixdim": [1.5, 1.5, 2.0],
                "mode": ["bilinear", "nearest"],
            },
            {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": -57, "a_max": 164, "b_min": 0, "b_max": 1},
            {"_target_": "EnsureTyped", "keys": ["image", "label"]},
        ],
        "random_transforms": [
            {
                "_target_": "RandCropByPosNegLabeld",
                "keys": ["image", "label"],
                "label_key": "label",
                "spatial_size": [96, 96, 96],
                "pos": 1,
                "neg": 1,
                "num_samples": 4,
            },
        ],
        "preprocessing": {
            "_target_": "Compose",
            "transforms": "$@train#deterministic_transforms + @train#random_transforms",
        },
        "dataset": {"_target_": "Dataset", "data": [], "transform": "@train#preprocessing"},
    },
    "validate": {
        "preprocessing": {"_target_": "Compose", "transforms": "%train#deterministic_transforms"},
        "dataset": {"_target_": "Dataset", "data": [], "transform": "@validate#preprocessing"},
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": [96, 96, 96], "sw_batch_size": 4},
    },
}


def _reference(folder, config) -> str:
    os.makedirs(folder / "configs", exist_ok=True)
    (folder / "configs" / "train.json").write_text(json.dumps(config))
    return str(folder)


def test_reference_train_overrides_train_the_reference_on_our_split_and_grid(tmp_path):
    """Merged over the reference's train.json as a second config file (as the race runs it), the overrides give its
    datasets our split, our grid, our patch and window, and a liver label of 0/1 from the phantom's 0/1/2."""
    from monai.bundle import ConfigParser

    root = tmp_path / "data"
    phantom.write_dataset(str(root), num_train=3, num_test=0, seed=5)
    from scripts.lib.datalist import split

    our_split = split(str(root / "dataset.json"), fold=0, num_folds=3, seed=0, base_dir=str(root))
    overrides = benchmark.reference_train_overrides(
        _reference(tmp_path / "ref", REFERENCE_TRAIN), our_split, [8.0, 8.0, 8.0], [32, 32, 32]
    )
    (tmp_path / "ov.json").write_text(json.dumps(overrides))
    cfg = ConfigParser()
    cfg.read_config([str(tmp_path / "ref" / "configs" / "train.json"), str(tmp_path / "ov.json")])
    train, val = cfg.get_parsed_content("train#dataset"), cfg.get_parsed_content("validate#dataset")
    assert [d["image"] for d in train.data] == [c["image"] for c in our_split["training"]]
    assert [d["image"] for d in val.data] == [c["image"] for c in our_split["validation"]]
    assert tuple(cfg.get_parsed_content("validate#inferer").roi_size) == (32, 32, 32)
    assert cfg.get_parsed_content("epochs") > 800
    patch = train[0][0]  # the first of the case's 4 patches
    assert tuple(patch["image"].shape[1:]) == (32, 32, 32)
    assert set(torch.unique(patch["label"]).tolist()) <= {0.0, 1.0}
    case = val[0]  # the tumour (2) has joined the liver, on the 8 mm grid
    assert set(torch.unique(case["label"]).tolist()) == {0.0, 1.0}
    assert np.allclose(case["image"].pixdim, 8.0)


def test_reference_train_overrides_refuse_a_reference_whose_transforms_moved(tmp_path):
    moved = json.loads(json.dumps(REFERENCE_TRAIN))
    moved["train"]["deterministic_transforms"].insert(3, {"_target_": "CropForegroundd", "keys": ["image"]})
    split = {"training": [], "validation": []}
    with pytest.raises(ValueError, match="deterministic_transforms#3 is CropForegroundd, not Spacingd"):
        benchmark.reference_train_overrides(_reference(tmp_path / "ref", moved), split, [3.0] * 3, [64] * 3)


def test_parse_training_log_reads_a_real_training_log(tmp_path, trained):
    """The `trained` session run (3 epochs, validated every epoch), as the race reads its log."""
    log_path = tmp_path / "train.log"
    log_path.write_text(trained["log"])
    parsed = benchmark.parse_training_log(str(log_path), start_epoch=0.0)
    per_epoch = int(re.search(r"Epoch: 1/3, Iter: 1/(\d+)", trained["log"]).group(1))
    assert parsed["steps"] == 3 * per_epoch and len(parsed["validations"]) == 3
    times = [t for t, _ in parsed["validations"]]
    assert times == sorted(times) and all(0.0 <= d <= 1.0 for _, d in parsed["validations"])
    assert 0 < parsed["eval_s"] and 0 < parsed["train_s"] < times[-1] - times[0] + 60
    # the race's readings of a timeline
    vals = [[10.0, 0.5], [20.0, 0.91], [30.0, 0.89], [40.0, 0.96]]
    assert benchmark.time_to(vals, 0.90) == 20.0 and benchmark.time_to(vals, 0.95) == 40.0
    assert benchmark.time_to(vals, 0.99) is None
    assert benchmark.dice_at(vals, 35.0) == 0.91 and benchmark.dice_at(vals, 5.0) is None


def test_report_has_the_race_section_and_target(tmp_path):
    s = benchmark.spread
    side = {
        "to_0.90_s": s([40]),
        "to_0.95_s": s([80]),
        "best_dice": s([0.96]),
        "wall_s": s([150]),
        "steps_per_s": s([3.0]),
        "patches_per_s": s([12.0]),
        "peak_rss_gb": s([1.6]),
    }
    ref = {**side, "to_0.90_s": s([]), "to_0.95_s": s([]), "best_dice": s([0.8]), "wall_s": s([240])}
    res = {
        "command": "python -m tools.benchmark --steps race",
        "machine": benchmark.machine_info(),
        "race": {
            "cases": {"training": 9, "validation": 3},
            "config_files": ["configs/train.yaml", "configs/demo.yaml"],
            "before_overrides": benchmark.RACE_BEFORE,
            "reference_overrides": {"epochs": 100000},
            "budget_factor": 3.0,
            "repeats": 1,
            "commands": {"ours": "python -m monai.bundle run training", "reference": "python -m monai.bundle run"},
            "ours": side,
            "reference": ref,
            "ratio_to_0.95": s([]),
            "reference_reached_0.95": 0,
            "ratio_to_0.95_bound": s([80 / 240]),
            "reference_dice_at_ours_0.95": s([0.7]),
            "reference_dice_at_ours_end": s([0.8]),
        },
    }
    md_path, json_path = benchmark.write_report(res, str(tmp_path))
    md, saved = open(md_path).read(), json.load(open(json_path))
    assert saved["targets"]["race"]["met"] == "NO" and saved["targets"]["race"]["value"] == pytest.approx(1 / 3)
    assert saved["targets"]["race"]["measured"].startswith("below 0.333x (the reference did not reach 0.95")
    assert "## Training: time to accuracy against the reference trainer" in md
    assert (
        "The reference reached 0.95 in 0 of 1 runs" in md
        and "| ours (demo) | 40.0 (40.0-40.0) | 80.0 (80.0-80.0) |" in md
    )
    assert "| reference trainer | not reached | not reached | 0.8000 (0.8000-0.8000) |" in md


# ---- what each component buys (step_shares) -------------------------------------------------------------------------


def _share_runs(seconds: dict) -> dict:
    """``{revert: ([with s by repeat], [without s by repeat])}`` as step_shares records the runs."""
    return {
        name: {
            side: [{"to_last_mask_s": t} for t in times] for side, times in zip(("with", "without"), pair, strict=True)
        }
        for name, pair in seconds.items()
    }


def test_shares_table_gives_each_component_its_share_and_flags_the_small_ones(tmp_path):
    runs = _share_runs(
        {
            "liver_box_resampling": ([10.0, 11.0, 12.0], [20.0, 20.0, 24.0]),  # median 11 against 20: 45 %
            "liver_channel_only": ([10.0, 10.0, 10.0], [10.2, 10.4, 10.3]),  # 2.9 %: under 5 %
        }
    )
    rows = benchmark.summarize_shares(runs)
    by_file = {r["file"]: r for r in rows}
    box = by_file["tools/reverts/liver_box_resampling.yaml"]
    assert box["with_s"]["median"] == 11.0 and box["without_s"]["median"] == 20.0
    assert box["share"] == pytest.approx(45.0) and not box["under_5"]
    assert box["pair_shares"]["min"] == pytest.approx(45.0) and box["pair_shares"]["max"] == pytest.approx(50.0)
    assert by_file["tools/reverts/liver_channel_only.yaml"]["under_5"]
    assert box["component"] == benchmark.COMPONENTS["liver_box_resampling"]
    assert not [r for r in rows if "derived" in r]  # the slab copy's derived row is docs/benchmark.json's record only
    # the stored rows of the components replaced in 0.8.0 (docs/benchmark.json) render, pointing at their record
    stored = benchmark.summarize_shares(_share_runs({"isal_gzip": ([10.0, 10.0], [10.1, 10.2])}))
    derived = {
        **stored[0],
        "component": "the slab copy alone",
        "file": "tools/reverts/slab_reader.yaml against isal_gzip.yaml",
    }
    rows += stored + [{**derived, "derived": True}]

    res = {
        "command": "python -m tools.benchmark --steps shares",
        "seeds": [0, 1],
        "machine": benchmark.machine_info(),
        "shares": {"cases": 2, "repeats": 3, "ckpt": "models/model.pt", "rows": rows},
        "inference_path": {
            "config": "configs/inference.yaml",
            "config_lines": 200,
            "modules": {"scripts": {"path": "scripts/__init__.py", "lines": 50}},
            "python_lines": 50,
            "ratio": 0.25,
        },
    }
    md = open(benchmark.write_report(res, str(tmp_path))[0]).read()
    assert "## What each bespoke component buys (end to end)" in md
    assert (
        f"| {box['component']} | tools/reverts/liver_box_resampling.yaml | 11.0 (10.0-12.0) | 20.0 (20.0-24.0) | "
        "45.0 (45.0 to 50.0) | no |" in md
    )
    assert (
        "| tools/reverts/liver_channel_only.yaml | 10.0 (10.0-10.0) | 10.3 (10.2-10.4) | 2.9 (2.0 to 3.8) | yes |" in md
    )
    assert f"| {benchmark.COMPONENTS['isal_gzip']} | tools/reverts/replaced/isal_gzip.yaml | 10.0 (10.0-10.0) |" in md
    assert "| the slab copy alone | tools/reverts/replaced/slab_reader.yaml against isal_gzip.yaml |" in md
    assert "The slab copy's row adds no runs" in md
    assert "replaced by MONAI's NibabelReader and NibabelWriter in 0.8.0" in md
    assert "## Inference path: bespoke Python against config" in md
    assert "| scripts | scripts/__init__.py | 50 |" in md and "Python / config: **0.2**" in md
    sections = [line for line in md.splitlines() if line.startswith("## ")]
    assert (
        sections.index("## What each bespoke component buys (end to end)")
        < sections.index("## Inference path: bespoke Python against config")
        < sections.index("## Changes kept (before -> after, from the stage table)")
    )


def test_step_shares_alternates_ours_with_each_revert_and_rotates_them(tmp_path, monkeypatch):
    import argparse

    cases = tmp_path / "standard" / "imagesTs"
    cases.mkdir(parents=True)
    for i in range(3):
        (cases / f"ct_{i:03d}.nii.gz").write_bytes(b"x")
    reverts = benchmark.revert_overrides()
    calls = []

    def fake_run_ours(case_dir, out, ckpt, n_cases, config_files=None, overrides=None):
        name = next((k for k, v in reverts.items() if v == overrides), "ours")
        calls.append(name)
        assert sorted(os.listdir(os.path.join(case_dir, "imagesTs"))) == ["ct_000.nii.gz", "ct_001.nii.gz"]
        return {"to_last_mask_s": 10.0 if name == "ours" else 12.0, "n": n_cases}

    monkeypatch.setattr(benchmark, "run_ours", fake_run_ours)
    args = argparse.Namespace(
        shares=["liver_box_inference", "liver_channel_only"],
        share_cases=2,
        repeats=2,
        shape=[8, 8, 4],
        spacing=[1, 1, 1],
    )
    res = {}
    benchmark.step_shares(args, res, str(tmp_path / "work"), str(tmp_path / "standard"), "w.pt")
    box, channel = "liver_box_inference", "liver_channel_only"
    assert calls == ["ours", box, "ours", channel, "ours", channel, "ours", box]
    sh = res["shares"]
    assert sh["cases"] == 2 and sh["repeats"] == 2 and sh["ckpt"] == "w.pt" and sh["shape"] == [8, 8, 4]
    assert [r["file"] for r in sh["rows"]] == [f"tools/reverts/{box}.yaml", f"tools/reverts/{channel}.yaml"]
    assert sh["rows"][0]["share"] == pytest.approx(100 * 2 / 12)
    with pytest.raises(ValueError, match="no revert"):
        benchmark.step_shares(argparse.Namespace(shares=["nonesuch"], share_cases=0, repeats=1), {}, "", "", "")
    for name in benchmark.REPLACED:  # the record only: replaced by MONAI's in 0.8.0
        with pytest.raises(ValueError, match="replaced"):
            benchmark.step_shares(argparse.Namespace(shares=[name], share_cases=0, repeats=1), {}, "", "", "")
