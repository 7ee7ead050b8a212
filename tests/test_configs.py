"""Every config parses and instantiates, the workflow property checks are clean, the copies that inference.yaml must
hold agree with train.yaml, and the documented overrides change what they say."""

from __future__ import annotations

import os
import re

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import BUNDLE_ROOT, CONFIGS, workflow
from monai.bundle import ConfigParser

from scripts.components.training import cpu_has_bf16
from tools import imports

# Values that inference.yaml repeats from train.yaml because it must stand alone inside model.ts.
SHARED_KEYS = [
    "device",
    "amp",
    "scripts",
    "scripts",
    "num_classes",
    "pixdim",
    "patch_size",
    "hu_window",
    "sw_batch_size",
    "sw_overlap",
    "network_def",
]


def parser(*files, **overrides) -> ConfigParser:
    p = ConfigParser()
    p.read_config([str(CONFIGS / f) for f in files])
    p.read_meta(str(CONFIGS / "metadata.json"))
    p.update({"bundle_root": str(BUNDLE_ROOT), **overrides})
    return p


def test_inference_copies_agree_with_train():
    train, infer = parser("train.yaml"), parser("inference.yaml")
    for key in SHARED_KEYS:
        assert train[key] == infer[key], f"inference.yaml's {key} differs from train.yaml's"


def test_evaluation_measures_what_validation_measures():
    """Evaluation (inference.yaml + evaluate.yaml) and training's validation: the same key metric on labels made the
    same way; the same sliding window as inference."""
    train, evaluation = parser("train.yaml"), parser("inference.yaml", "evaluate.yaml")
    assert evaluation["key_metric"] == train["validate#key_metric"]
    post = evaluation["postprocessing#transforms"]
    label = next(t for t in post if t.get("keys") == "label" and "threshold" in t)
    assert label["threshold"] == train["label_threshold"]  # the same label merge as training
    onehot = next(t for t in post if "to_onehot" in t)
    assert onehot["to_onehot"] == train["validate#postprocessing#transforms#0#to_onehot"]
    assert evaluation["inferer#inferer"] == train["validate#inferer"], "validation's window differs from inference's"


def test_max_voxels_is_the_library_default():
    """inference.yaml must stand alone (model.ts), so it repeats scripts.components.inputs.MAX_VOXELS."""
    from scripts.components import inputs

    assert parser("inference.yaml")["max_voxels"] == inputs.MAX_VOXELS


PROCESS_GROUP_KEYS = ("dist_timeout_s", "process_group", "rank", "world_size", "+initialize", "finalize")


def test_the_multi_gpu_configs_join_the_job_through_one_mixin():
    """multi_gpu.yaml holds the process group; multi_gpu_train.yaml and multi_gpu_evaluate.yaml, merged after it,
    hold only their own parts, and the merged configs get the mixin's block."""
    import yaml

    mixin, train, evaluate = (
        yaml.safe_load((CONFIGS / f).read_text())
        for f in ("multi_gpu.yaml", "multi_gpu_train.yaml", "multi_gpu_evaluate.yaml")
    )
    assert sorted(mixin) == sorted(PROCESS_GROUP_KEYS)
    for name, own in (("multi_gpu_train.yaml", train), ("multi_gpu_evaluate.yaml", evaluate)):
        assert not set(own) & set(PROCESS_GROUP_KEYS), f"{name} repeats multi_gpu.yaml's process group"
    for sampler in (train["validate#sampler"], evaluate["sampler"]):  # each evaluation case once, on one rank
        assert sampler["shuffle"] is False and sampler["even_divisible"] is False
    merged_train = parser("train.yaml", "multi_gpu.yaml", "multi_gpu_train.yaml")
    merged_eval = parser("inference.yaml", "evaluate.yaml", "multi_gpu.yaml", "multi_gpu_evaluate.yaml")
    for merged in (merged_train, merged_eval):
        assert merged["rank"] == mixin["rank"] and merged["finalize"] == mixin["finalize"]
        assert merged["initialize"][-1] == mixin["+initialize"][-1]  # appended to the base config's initialize


def test_train_and_inference_preprocessing_give_the_network_the_same_input(phantom_dir):
    """Not just equal numbers: the image that inference feeds the network equals the one validation feeds it."""
    case = str(phantom_dir / "imagesTr" / "liver_000.nii.gz")
    label = str(phantom_dir / "labelsTr" / "liver_000.nii.gz")
    train = parser("train.yaml", dataset_dir=str(phantom_dir))
    infer = parser("inference.yaml")
    val_image = train.get_parsed_content("validate#preprocessing")({"image": case, "label": label})["image"]
    inf_image = infer.get_parsed_content("preprocessing")({"image": case})["image"]
    assert val_image.shape == inf_image.shape
    np.testing.assert_allclose(val_image.numpy(), inf_image.numpy(), atol=1e-6)


def test_speed_settings_follow_the_device():
    """On a CPU: 2 windows per network call, loader processes by core count. With a GPU: 4 windows per call, the image
    moved to the GPU after its HU copy is taken (the copy stays a NumPy array) and before any resampling, and loader
    threads instead of processes (CUDA does not run in forked processes)."""
    workers = min(4, (os.cpu_count() or 2) // 4)
    cpu = parser("inference.yaml", device="$torch.device('cpu')")
    assert cpu.get_parsed_content("sw_batch_size") == 2 and cpu.get_parsed_content("inferer").inferer.sw_batch_size == 2
    assert cpu.get_parsed_content("num_workers") == workers
    assert cpu.get_parsed_content("dataloader#use_thread_workers") is False
    gpu = parser("inference.yaml", device="$torch.device('cuda')")  # parsing touches no GPU
    assert gpu.get_parsed_content("sw_batch_size") == 4
    assert gpu.get_parsed_content("dataloader#use_thread_workers") is True
    pre = gpu.get_parsed_content("preprocessing").transforms
    names = [type(t).__name__ for t in pre]
    move = next(i for i, t in enumerate(pre) if getattr(getattr(t, "converter", None), "device", None) is not None)
    assert names.index("CopyItemsd") < move < names.index("Orientationd")
    assert str(pre[move].converter.device) == "cuda"
    on_cpu = parser("inference.yaml", device="$torch.device('cuda')", preprocess_device="cpu")
    assert on_cpu.get_parsed_content("dataloader#use_thread_workers") is False


def test_loader_threads_give_the_cases_in_order(phantom_dir):
    """The loader as a GPU runs it (thread workers) on this CPU: the cases in order, each fully prepared."""
    folder = str(phantom_dir / "imagesTr")
    ref = parser("inference.yaml", input=folder, num_workers=0)
    threads = parser("inference.yaml", input=folder, num_workers=2, **{"dataloader#use_thread_workers": True})
    got = []
    for p in (ref, threads):
        loader = p.get_parsed_content("dataloader")
        got.append([(b["image"].meta["filename_or_obj"][0], tuple(b["image"].shape)) for b in loader])
    assert len(got[0]) == 6 and got[0] == got[1]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU (run on the lent device machine)")
def test_preprocessing_on_the_gpu_gives_the_cpus_network_input_and_mask(phantom_dir, trained, tmp_path):
    case = str(phantom_dir / "imagesTs" / "liver_006.nii.gz")
    geometry = {"pixdim": [3.0, 3.0, 3.0], "patch_size": [32, 32, 32]}  # as the trained fixture's
    inputs, masks = {}, {}
    for where in ("cpu", "cuda"):
        pre = parser("inference.yaml", preprocess_device=where, **geometry).get_parsed_content("preprocessing")
        inputs[where] = pre({"image": case})["image"]
        w = workflow(
            ["inference.yaml"],
            "infer",
            input=case,
            output_dir=str(tmp_path / where),
            ckpt_path=str(trained["models"] / "model.pt"),
            preprocess_device=where,
            **geometry,
        )
        w.run()
        masks[where] = np.asarray(nib.load(tmp_path / where / "liver_006_seg.nii.gz").dataobj)
    assert inputs["cuda"].device.type == "cuda" and inputs["cuda"].shape == inputs["cpu"].shape
    np.testing.assert_allclose(inputs["cuda"].cpu().numpy(), inputs["cpu"].numpy(), atol=1e-5)
    assert masks["cpu"].sum() > 0 and np.mean(masks["cpu"] != masks["cuda"]) <= 1e-4


def test_evaluation_merges_labels_like_training():
    for num_classes in (2, 3):
        train = parser("train.yaml", num_classes=num_classes)
        evaluate = parser("inference.yaml", "evaluate.yaml", num_classes=num_classes)
        eval_threshold = evaluate.get_parsed_content("postprocessing").transforms[-2].threshold[0]
        assert train.get_parsed_content("label_threshold") == eval_threshold


@pytest.mark.parametrize("files", [["train.yaml"], ["train.yaml", "demo.yaml"]])
def test_train_workflow_properties(files, phantom_dir, tmp_path):
    w = workflow(
        files, "train", dataset_dir=str(phantom_dir), output_dir=str(tmp_path / "runs"), ckpt_dir=str(tmp_path)
    )
    assert w.check_properties() == []
    trainer = w.parser.get_parsed_content("train#trainer")
    assert trainer.state.max_epochs == w.parser["epochs"]


@pytest.mark.parametrize(
    "files", [["inference.yaml"], ["inference.yaml", "evaluate.yaml"], ["inference.yaml", "demo.yaml"]]
)
def test_infer_workflow_properties(files, phantom_dir, trained):
    w = workflow(
        files,
        "infer",
        dataset_dir=str(phantom_dir),
        eval_datalist=str(trained["runs"] / "split.json"),
        ckpt_path=str(trained["models"] / "model.pt"),
    )
    assert w.check_properties() == []
    net = w.parser.get_parsed_content("network_def")
    x = torch.zeros(1, 1, *w.parser["patch_size"])
    assert net(x).shape == (1, w.parser["num_classes"], *w.parser["patch_size"])


def test_num_classes_3_keeps_the_tumour_label(phantom_dir):
    """The documented 3-class override: the network gets 3 outputs and the training labels keep 0/1/2."""
    case = {
        "image": str(phantom_dir / "imagesTr/liver_000.nii.gz"),
        "label": str(phantom_dir / "labelsTr/liver_000.nii.gz"),
    }
    two = parser("train.yaml", dataset_dir=str(phantom_dir))
    three = parser("train.yaml", dataset_dir=str(phantom_dir), num_classes=3)
    labels2 = set(np.unique(two.get_parsed_content("validate#preprocessing")(dict(case))["label"].numpy()))
    labels3 = set(np.unique(three.get_parsed_content("validate#preprocessing")(dict(case))["label"].numpy()))
    assert labels2 == {0, 1}
    assert labels3 == {0, 1, 2}, "phantom case liver_000 has a tumour; 3 classes must keep it"
    assert three.get_parsed_content("network_def").out_channels == 3
    assert parser("inference.yaml", num_classes=3).get_parsed_content("network_def").out_channels == 3


def test_geometry_overrides_reach_the_transforms():
    p = parser("train.yaml", pixdim=[3.0, 3.0, 3.0], patch_size=[64, 64, 64], hu_window=[-100, 200])
    transforms = {type(t).__name__: t for t in p.get_parsed_content("train#deterministic_transforms")}
    assert tuple(transforms["Spacingd"].spacing_transform.pixdim) == (3.0, 3.0, 3.0)
    scaler = transforms["ScaleIntensityRanged"].scaler
    assert (scaler.a_min, scaler.a_max) == (-100, 200)
    assert tuple(p.get_parsed_content("validate#inferer").roi_size) == (64, 64, 64)


def test_default_dataset_dir_is_where_monai_downloads_task03(tmp_path):
    """`DecathlonDataset(root_dir='data', task='Task03_Liver')` unpacks to data/Task03_Liver: the configs' default."""
    from scripts.lib import phantom

    bundle = tmp_path / "bundle"
    phantom.write_dataset(str(bundle / "data" / "Task03_Liver"), num_train=3, num_test=1, seed=3)
    p = parser("train.yaml", bundle_root=str(bundle))
    split = p.get_parsed_content("split")
    cases = split["training"] + split["validation"]
    assert len(cases) == 3 and all(c["image"].startswith(str(bundle / "data" / "Task03_Liver")) for c in cases)
    assert (bundle / "runs" / "split.json").exists()
    infer = parser("inference.yaml", bundle_root=str(bundle), output_dir=str(tmp_path / "out"))
    assert [c["image"] for c in infer.get_parsed_content("datalist")] == [
        str(bundle / "data" / "Task03_Liver" / "imagesTs" / "liver_003.nii.gz")
    ]


def test_training_config_trains_fold_k_of_a_built_datalist(phantom_dir, tmp_path):
    from scripts.lib import datalist

    items = datalist.assign_folds(datalist.from_msd(str(phantom_dir)), num_folds=3, seed=0)
    datalist.write_datalist(items, str(tmp_path / "datalist.json"))
    for fold in range(3):
        p = parser("train.yaml", datalist_file=str(tmp_path / "datalist.json"), fold=fold, output_dir=str(tmp_path))
        split = p.get_parsed_content("split")
        expected = sorted(i["image"] for i in items if i["fold"] == fold)
        assert sorted(c["image"] for c in split["validation"]) == expected
        assert len(split["training"]) == len(items) - len(expected)


# ----------------------------------------------------------------------------------------------------------------------
# boolean overrides, as the runner receives them


def as_the_runner_receives(spelling: str):
    """The value `python -m monai.bundle run ... --key <spelling>` hands the config: python-fire parses the
    command line ('false' stays the string 'false', 'False' becomes False, '0' the integer 0)."""
    from fire import parser as fire_parser

    return fire_parser.DefaultParseValue(spelling)


SPELLINGS = {"true": True, "True": True, "1": True, "false": False, "False": False, "0": False}


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_boolean_overrides_of_inference_mean_what_they_say(spelling, tmp_path):
    value, on = as_the_runner_receives(spelling), SPELLINGS[spelling]
    assert isinstance(value, (str, bool, int))

    inferer = parser("inference.yaml", coarse_to_fine=value).get_parsed_content("inferer")
    assert type(inferer).__name__ == "LiverBoxInferer" and inferer.enabled is on  # off: the sliding window alone

    assert parser("inference.yaml", amp=value).get_parsed_content("evaluator#amp") is on

    # load_pretrain: a missing weights file stops the run unless untrained weights were asked for
    check = parser("inference.yaml", load_pretrain=value, ckpt_path=str(tmp_path / "missing.pt"))
    if on:
        with pytest.raises(SystemExit, match="missing.pt"):
            check.get_parsed_content("initialize#2")
    else:
        check.get_parsed_content("initialize#2")
    assert (check.get_parsed_content("checkpointloader") is None) is not on  # and no weights are loaded


@pytest.fixture(scope="module")
def warned_dataset(tmp_path_factory) -> str:
    """An MSD-style dataset whose only finding is a warning (one case's liver mirrored to the patient's left)."""
    from test_check_dataset import _case, _dataset, make_case

    root = tmp_path_factory.mktemp("warned")
    dataset_json = _dataset(root, n=2)
    image, label, _ = make_case(1)
    _case(root, "liver_1", image=image[::-1].copy(), label=label[::-1].copy(), seed=1)
    return dataset_json


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_boolean_overrides_of_training_mean_what_they_say(spelling, tmp_path, warned_dataset):
    value, on = as_the_runner_receives(spelling), SPELLINGS[spelling]
    settings = dict(
        ckpt_dir=str(tmp_path / "models"),
        output_dir=str(tmp_path / "runs"),
        cache_rate=0,
        datalist_file=warned_dataset,
        dataset_dir=os.path.dirname(warned_dataset),
    )

    assert parser("train.yaml", amp=value).get_parsed_content("train#trainer#amp") is on

    resume = parser("train.yaml", resume=value, **settings)
    if on:  # an empty checkpoint folder: a resume has nothing to continue from
        with pytest.raises(SystemExit, match="no checkpoint_epoch=N.pt to resume from"):
            resume.get_parsed_content("resume_loader")
    else:
        assert resume.get_parsed_content("resume_loader") is None

    check = parser("train.yaml", allow_dataset_warnings=value, **settings)
    if on:
        check.get_parsed_content("initialize#2")
    else:
        with pytest.raises(SystemExit, match="LEFT"):
            check.get_parsed_content("initialize#2")

    # cpu_bf16: the training forward pass in bfloat16 where the CPU computes it natively (never on CUDA)
    inferer = parser("train.yaml", cpu_bf16=value, device="$torch.device('cpu')").get_parsed_content("train#inferer")
    assert type(inferer).__name__ == "CpuAutocastInferer" and inferer.enabled is (on and cpu_has_bf16())
    inferer = parser("train.yaml", cpu_bf16=value, device="$torch.device('cuda:0')").get_parsed_content("train#inferer")
    assert inferer.enabled is False


def test_training_loaders_are_threads_with_workers_only_on_cuda(phantom_dir):
    """Both training loaders are ThreadDataLoaders; worker processes only with CUDA and the cases not cached on the
    GPU (scripts.components.hardware; asking for cache gpu on a CUDA device needs no GPU to plan)."""
    for device, cache, workers in (("cpu", "ram", 0), ("cuda:0", "ram", 2), ("cuda:0", "gpu", 0)):
        p = parser("train.yaml", device=f"$torch.device({device!r})", cache=cache, dataset_dir=str(phantom_dir))
        for loader in ("train#dataloader", "validate#dataloader"):
            assert p[loader]["_target_"] == "scripts.components.loaders.ThreadDataLoader"
            assert p.get_parsed_content(f"{loader}#num_workers") == workers


# The one expression allowed more than a call: it makes the bundle's package importable before any component of it
# can be named (a component cannot import the package it lives in).
BOOTSTRAP = "$sys.path.insert(0, os.path.abspath(@bundle_root)) or load_package('scripts')"


def _expressions(node, where=""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _expressions(value, f"{where}#{key}" if where else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _expressions(value, f"{where}#{i}")
    elif isinstance(node, str) and node.startswith("$"):
        yield where, node


@pytest.mark.parametrize("config", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_config_expressions_are_one_step_each(config):
    """Logic lives in named components: a `$` expression is a value, a reference, an import or one call, never a
    conditional, a lambda, a call inside a call or more than one line."""
    import yaml

    for where, expr in _expressions(yaml.safe_load((CONFIGS / config).read_text())):
        if expr == BOOTSTRAP:
            continue
        assert "\n" not in expr and " if " not in expr and "lambda" not in expr, f"{config}: {where}: {expr}"
        assert expr.count("(") <= 1, f"{config}: {where}: a call inside a call: {expr}"
        assert len(expr) <= 100, f"{config}: {where}: {len(expr)} characters: {expr}"


# ----------------------------------------------------------------------------------------------------------------------
# what the configs name


def _targets(node, where=""):
    """(where, name) of every ``_target_`` in a parsed config, nested ones included."""
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{where}#{key}" if where else str(key)
            if key == "_target_" or str(key).endswith("#_target_"):
                yield here, value
            else:
                yield from _targets(value, here)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _targets(value, f"{where}#{i}")


YAML_CONFIGS = sorted(p.name for p in CONFIGS.glob("*.yaml"))


@pytest.mark.parametrize("config", YAML_CONFIGS)
def test_configs_name_what_they_build(config):
    """Each component names its own `_target_` (no `exit_on_error` wrapper: the components report bad input in one
    line themselves, scripts.lib.errors.reports_input_errors), and every `_target_` resolves to an importable object
    as MONAI's runner resolves it (short names through MONAI's component locator)."""
    import yaml
    from monai.bundle.config_item import ComponentLocator, ConfigComponent

    text = (CONFIGS / config).read_text()
    assert "exit_on_error" not in text, f"{config}: names scripts.lib.errors.exit_on_error, which is gone"
    locator = ComponentLocator()
    targets = list(_targets(yaml.safe_load(text)))
    for where, name in targets:
        assert isinstance(name, str) and not name.startswith(("$", "@", "%")), f"{config}: {where}: {name!r}"
        resolved = ConfigComponent({"_target_": name}, locator=locator).resolve_module_name()
        assert isinstance(resolved, str), f"{config}: {where}: {name} names {resolved!r}"
        assert _locate(resolved) is not None, f"{config}: {where}: {name} ({resolved}) cannot be imported"


def _locate(name: str):
    import pydoc

    return pydoc.locate(name)


# (config, key): the checks a config runs before any work starts; a class's __init__ carries the decorator
CONFIG_CHECKS = [
    ("train.yaml", "dataset_check"),
    ("train.yaml", "split"),
    ("train.yaml", "cache_choice"),
    ("train.yaml", "initial_weights"),
    ("train.yaml", "resume_loader"),
    ("inference.yaml", "datalist"),
    ("inference.yaml", "output_check"),
    ("inference.yaml", "weights_check"),
    ("inference.yaml", "failure_report"),
    ("inference_onnx.yaml", "network"),
    ("evaluate.yaml", "datalist"),
    ("synthetic.yaml", "train_seeds"),
    ("synthetic.yaml", "split"),
]


@pytest.mark.parametrize("config, key", CONFIG_CHECKS)
def test_the_config_checks_report_bad_input_in_one_line(config, key):
    """Each check carries scripts.lib.errors.reports_input_errors (functools.wraps keeps the undecorated function as
    ``__wrapped__``); the library functions behind train.yaml's dataset checks still raise for Python callers."""
    import yaml

    from scripts.lib import check_dataset, datalist

    target = _locate(yaml.safe_load((CONFIGS / config).read_text())[key]["_target_"])
    checked = target.__init__ if isinstance(target, type) else target
    assert hasattr(checked, "__wrapped__"), f"{config}: {key}: a bad input would end in a traceback"
    assert not hasattr(datalist.split, "__wrapped__") and not hasattr(check_dataset.assert_dataset_ok, "__wrapped__")


# ----------------------------------------------------------------------------------------------------------------------
# no measured figure in a config comment: measurements go stale; docs/benchmark.md (generated) holds them

#: A measured figure: a number with a unit of time, share or memory ("0.38 s", "70 %", "6 GB"), a speed-up ("2x"), a
#: before -> after pair ("31.8 -> 29.2", "18 -> 1 + 4") or a Dice value ("Dice 0.951"). Chosen constants with a
#: source (a literature range in mL, HU, mm) and arithmetic on settings ("2 x 2 mm = 4 mm") do not match.
MEASURED = re.compile(
    r"\d(?:[\d.,]*\d)?\s?(?:s|ms|sec|seconds?|min|minutes?|h|hours?|%|bytes?|[KMGT]i?B)(?!\w)"
    r"|\d(?:[\d.]*\d)?x(?!\w)"
    r"|\d(?:[\d.]*\d)?\s*\w*\s*->\s*\d"
    r"|\bDice\b[^\n\d]{0,30}\d*\.\d"
)


def measured_figures(text: str) -> list[str]:
    """``"<line>: <figure>"`` for every measured figure in the comments of a YAML text."""
    lines = text.splitlines()
    return [
        f"{n}: {m.group(0)}"
        for n, column in imports.yaml_comments(text)
        for m in MEASURED.finditer(lines[n - 1][column + 1 :])
    ]


def test_the_measured_figure_check_finds_them():
    """The check below can fail: measurements of the kinds that went stale are found, chosen constants are not."""
    stale = """\
coarse_to_fine: true   # 18 -> 1 + 4 windows, Dice within 0.0019 on 5 CTs
dataloader:            # a folder of 5 CTs: 31.8 -> 29.2 s
cpu_bf16: true         # 80 epochs took 134 s instead of 175 s, held-out Dice 0.951
dtype: float32         # MONAI's float64 is 2x slower
cache_rate: 1.0        # 131 cases at 2 mm: about 6 GB, 70 % of the RAM
"""
    found = measured_figures(stale)
    assert {f.split(":")[0] for f in found} == {"1", "2", "3", "4", "5"}, found
    assert "3: 134 s" in found and "4: 2x" in found and "5: 6 GB" in found and "1: Dice within 0.0" in found
    chosen = """\
# a comment line with no figure
coarse_scale: 2          # 2 x 2 mm = 4 mm, one window for a trunk; margin 8 network voxels (16 mm)
qc_volume_ml: [500, 3500]  # smallest of 369 healthy adults' volumes 594 mL (Feng et al. 2017); 1717 +- 419 mL
train#dataloader#sampler: "@x"
ref: "%preprocessing#transforms#0#keys"   # 512x512x2048 voxels, a 96^3 patch, 0.25 overlap
quoted: 'a # 2 s in a string, not a comment'
"""
    assert measured_figures(chosen) == []


@pytest.mark.parametrize("config", YAML_CONFIGS)
def test_config_comments_hold_no_measured_figure(config):
    """Timings, speed-ups, Dice values and memory measured on a run go stale in a comment: say what and why, and point
    to docs/benchmark.md (the benchmark's generated report) for the figures."""
    found = measured_figures((CONFIGS / config).read_text())
    assert not found, f"{config}: measured figures in comments (move them to docs/benchmark.md): {found}"
