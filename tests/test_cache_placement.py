"""Where training keeps its preprocessed cases (issue 17, the GPU fast path): ``cache: auto`` takes the GPU when the
cases fit in its share of the free GPU memory, else RAM, else disk, and logs why; the cached cases and the random
transforms then live on that device, and the loaders hand CUDA tensors over in a thread, not in worker processes.

The choice is computed from the real NIfTI headers of phantom cases and from free-memory figures given to it, so every
branch runs on this CPU; the test that trains with the cases on a GPU runs where CUDA is present (the lent device)."""

from __future__ import annotations

import logging

import pytest
import torch
from conftest import BUNDLE_ROOT, CONFIGS, FAST, run_in_process, workflow
from monai.bundle import ConfigParser

from scripts.components import cache
from scripts.lib.datalist import load_datalist
from scripts.lib.errors import InputError

GB = 1e9


@pytest.fixture(scope="module")
def items(phantom_dir):
    return load_datalist(str(phantom_dir / "dataset.json"), base_dir=str(phantom_dir))["training"]


def parser(**overrides) -> ConfigParser:
    p = ConfigParser()
    p.read_config(str(CONFIGS / "train.yaml"))
    p.read_meta(str(CONFIGS / "metadata.json"))
    p.update({"bundle_root": str(BUNDLE_ROOT), **overrides})
    return p


def test_auto_takes_the_first_place_the_cases_fit_and_says_why(items, caplog):
    need = sum(row["bytes"] for row in cache.estimate(items, (2.0, 2.0, 2.0), progress=False))
    assert need > 0
    cuda, cpu = "cuda:0", torch.device("cpu")  # a device name: planning needs no GPU when the free bytes are given
    cases = [
        ((cuda, need / cache.GPU_SHARE + 1, 0), "gpu"),
        ((cuda, need / cache.GPU_SHARE - 1, need / cache.RAM_SHARE + 1), "ram"),
        ((cuda, 0, need / cache.RAM_SHARE - 1), "disk"),
        ((cpu, 100 * need, 100 * need), "ram"),  # a CPU run never caches on a GPU
        ((cpu, 100 * need, need), "disk"),
    ]
    for (device, gpu_free, ram_free), where in cases:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="scripts.components.cache"):
            got = cache.choose("auto", device, items, (2.0, 2.0, 2.0), 1.0, gpu_free=gpu_free, ram_free=ram_free)
        assert got == where, (device, gpu_free, ram_free)
        line = caplog.records[-1].getMessage()
        assert line.startswith(f"cache: auto -> {where}: {len(items)} case(s) need at most {need / GB:.2f} GB"), line
        assert ("gpu " in line.split("this machine):")[1]) is (device == cuda)
    # four processes on one machine: four copies in RAM, one on each GPU
    room = dict(gpu_free=need / cache.GPU_SHARE + 1, ram_free=2 * need / cache.RAM_SHARE)
    assert cache.choose("auto", cpu, items, processes=2, **room) == "ram"
    assert cache.choose("auto", cpu, items, processes=4, **room) == "disk"
    assert cache.choose("auto", cuda, items, processes=4, **room) == "gpu"
    # cache_rate scales what the cases need; generated cases (seeds, no file) are not counted
    assert cache.choose("auto", cpu, items, (2.0, 2.0, 2.0), cache_rate=0.0, ram_free=0) == "ram"
    assert cache.choose("auto", cpu, [{"seed": 1000000}], ram_free=0) == "ram"
    # a coarser grid needs fewer bytes: 3 mm takes (2/3)^3 of 2 mm's
    assert cache.choose("auto", cpu, items, (3.0, 3.0, 3.0), ram_free=need / cache.RAM_SHARE / 2) == "ram"


def test_asked_for_places_are_kept_and_a_gpu_cache_needs_cuda(items):
    for where in ("ram", "disk"):
        assert cache.choose(where, "cpu", items, ram_free=0) == where
    assert cache.choose("GPU", "cuda:1", items, gpu_free=0) == "gpu"  # as asked, even where it may not fit
    with pytest.raises(InputError, match="^error: cache: gpu needs a CUDA device; this run trains on cpu"):
        cache.choose("gpu", "cpu", items)
    with pytest.raises(InputError, match="'ssd' is not one of auto, gpu, ram, disk"):
        cache.choose("ssd", "cpu", items)


def test_the_training_config_caches_where_choose_says(phantom_dir):
    geometry = {"pixdim": [3.0, 3.0, 3.0], "patch_size": [32, 32, 32], "num_workers": 0}
    for asked, where in (("auto", "ram"), ("disk", "disk")):  # this CPU holds the six small cases in RAM
        p = parser(dataset_dir=str(phantom_dir), cache=asked, **geometry)
        assert p.get_parsed_content("cache_choice") == where and p.get_parsed_content("loader_workers") == 0
        data = p.get_parsed_content("train#dataset")
        assert type(data).__name__ == ("PersistentDataset" if where == "disk" else "CacheDataset")
        assert all(patch["image"].device.type == "cpu" for patch in data[0])


def test_a_gpu_cache_moves_each_case_once_after_the_deterministic_part(phantom_dir):
    """``cache.on_device``, checked on the CPU device: ToDeviced sits between the cached and the random part, and the
    cases and patches come out equal to the plain pipeline's (same seed)."""
    geometry = {"pixdim": [3.0, 3.0, 3.0], "patch_size": [32, 32, 32], "num_workers": 0}
    p = parser(dataset_dir=str(phantom_dir), **geometry)
    transform = p.get_parsed_content("train#preprocessing")
    moved = cache.on_device(transform, torch.device("cpu"))
    names = [type(t).__name__ for t in moved.transforms]
    n = len(cache.deterministic_transforms(transform))
    assert names[n] == "ToDeviced" and names[n - 1] == "EnsureTyped" and names[n + 1] == "RandCropByPosNegLabeld"
    assert moved.transforms[n].keys == ("image", "label")
    item = p.get_parsed_content("split")["training"][0]
    got = []
    for t in (transform, moved):
        t.set_random_state(seed=3)
        got.append(t(dict(item)))
    for a, b in zip(*got, strict=True):
        assert torch.equal(a["image"].as_tensor(), b["image"].as_tensor())
        assert torch.equal(a["label"].as_tensor(), b["label"].as_tensor())


def test_a_gpu_cache_on_a_cpu_run_stops_with_one_line(phantom_dir, tmp_path):
    with pytest.raises(SystemExit, match="^error: cache: gpu needs a CUDA device; this run trains on cpu$"):
        run_in_process(
            "training",
            ["train.yaml"],
            bundle_root=BUNDLE_ROOT,
            dataset_dir=phantom_dir,
            output_dir=tmp_path / "runs",
            ckpt_dir=tmp_path / "models",
            epochs=1,
            cache="gpu",
            device="cpu",
            **FAST,
        )
    assert not list(tmp_path.glob("models/*.pt"))  # stopped before any case was cached or any step was taken


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU (run on the lent device machine)")
def test_on_a_gpu_the_cases_are_cached_and_augmented_there(phantom_dir, tmp_path):
    w = workflow(
        ["train.yaml"],
        "train",
        dataset_dir=str(phantom_dir),
        output_dir=str(tmp_path / "runs"),
        ckpt_dir=str(tmp_path / "models"),
        epochs=1,
        **FAST,
    )
    assert w.parser.get_parsed_content("cache_choice") == "gpu" and w.parser.get_parsed_content("loader_workers") == 0
    patches = w.parser.get_parsed_content("train#dataset")[0]
    assert all(p["image"].device.type == "cuda" and p["label"].device.type == "cuda" for p in patches)
    w.run()
    assert (tmp_path / "models" / "model.pt").is_file()
