"""Training and evaluation spread over processes with torchrun (configs/multi_gpu.yaml and multi_gpu_train.yaml or
multi_gpu_evaluate.yaml), and the disk cache.

The multi-process runs use 2 CPU processes over gloo, exactly as users start several GPUs:
`torchrun --standalone --nproc_per_node=2 -m monai.bundle run ...` (`--standalone` picks a free port, so tests and
other jobs on the machine never share a rendezvous). Each run starts 2 Python processes that import MONAI, so these
tests are slow on a 2-core machine.
"""

from __future__ import annotations

import csv
import json
import math
import multiprocessing
import os
import re
import stat
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import BUNDLE_ROOT, CONFIGS, FAST, bundle_cmd

from scripts.commands import cache as cache_cli
from scripts.components import cache, distributed

TRAIN = ["train.yaml", "multi_gpu.yaml", "multi_gpu_train.yaml"]
EVALUATE = ["inference.yaml", "evaluate.yaml"]
MULTI_GPU_EVALUATE = EVALUATE + ["multi_gpu.yaml", "multi_gpu_evaluate.yaml"]


def torchrun(nproc: int, run_id: str, config_files: list[str], timeout: int = 600, env=None, **overrides):
    """Run the bundle under torchrun with ``nproc`` processes (``env``: more environment variables); return
    (CompletedProcess, seconds it took)."""
    cmd = bundle_cmd(run_id, config_files, **overrides)  # [python, -m, monai.bundle, run, ...]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] + cmd[1:]
    start = time.monotonic()
    proc = subprocess.run(
        cmd,
        cwd=BUNDLE_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        # OMP_NUM_THREADS 1: torchrun's own choice for N > 1
        env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **(env or {})},
    )
    return proc, time.monotonic() - start


def train_losses(log: str) -> list[str]:
    return re.findall(r"Epoch: \d+/\d+, Iter: \d+/\d+ -- train_loss: ([0-9.]+)", log)


def key_metrics(log: str) -> list[float]:
    return [float(v) for v in re.findall(r"Key metric: val_mean_dice best value: ([0-9.eE+-]+)", log)]


def rank_pids(log: str) -> dict[int, int]:
    return {int(r): int(p) for r, p in re.findall(r"rank (\d+) of \d+: pid (\d+)", log)}


# ---- training ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def disk_run(phantom_dir, tmp_path_factory):
    """2-process training for 1 epoch with the disk cache; the workers' string hashes are seeded with PYTHONHASHSEED
    12345, not this interpreter's seed (test_the_cache_folder_name_is_the_same_in_every_process)."""
    root = tmp_path_factory.mktemp("disk_run")
    common = dict(bundle_root=BUNDLE_ROOT, dataset_dir=phantom_dir, epochs=1, val_interval=1, **FAST)
    proc, took = torchrun(
        2,
        "training",
        TRAIN,
        env={"PYTHONHASHSEED": "12345"},
        output_dir=root / "disk" / "runs",
        ckpt_dir=root / "disk" / "models",
        cache="disk",
        cache_dir=root / "cache",
        **common,
    )
    assert proc.returncode == 0, proc.stdout[-6000:]
    return {"root": root, "proc": proc, "took": took, "common": common}


@pytest.mark.slow
def test_two_process_training_shards_the_data_and_only_rank0_writes(disk_run):
    tmp_path, common, took = disk_run["root"], disk_run["common"], disk_run["took"]
    log = disk_run["proc"].stdout
    pids = rank_pids(log)
    assert set(pids) == {0, 1}, log[-3000:]

    # exactly one set of checkpoints, loadable by the single-process network (no DDP "module." prefix)
    models = tmp_path / "disk" / "models"
    assert sorted(p.name for p in models.glob("*.pt")) == ["checkpoint_epoch=1.pt", "model.pt"]
    state = torch.load(models / "checkpoint_epoch=1.pt", weights_only=True)
    assert not any(k.startswith("module.") for k in state["network"])
    from monai.networks.nets import UNet

    net = UNet(3, 1, 2, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), num_res_units=2, norm="instance")
    net.load_state_dict(torch.load(models / "model.pt", weights_only=True), strict=True)
    assert log.count("Saved checkpoint at epoch: 1") == 1

    # TensorBoard files come from rank 0's process only: their names end in .<pid>.<n>
    runs = tmp_path / "disk" / "runs"
    writers = {int(re.search(r"\.(\d+)\.\d+$", p.name).group(1)) for p in runs.glob("events.out.tfevents.*")}
    assert writers == {pids[0]}
    assert (runs / "split.json").is_file() and (runs / "dataset_check.json").is_file()

    # the training cases are shared between the ranks: each runs ceil(ceil(n / 2) / batch_size) steps per epoch,
    # and only rank 0 logs them; the validation Dice, gathered from both ranks, is logged once
    split = json.loads((runs / "split.json").read_text())
    steps = math.ceil(math.ceil(len(split["training"]) / 2) / 2)
    assert re.findall(r"Epoch: 1/1, Iter: (\d+)/(\d+)", log) == [(str(i), str(steps)) for i in range(1, steps + 1)]
    assert len(key_metrics(log)) == 1

    # the disk cache: a private folder holding every training and validation case once
    (folder,) = list((tmp_path / "cache").iterdir())
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert len(list(folder.glob("*.pt"))) == len(split["training"]) + len(split["validation"])

    # the same seed again, with the RAM cache: the same losses and Dice to the last digit. The run is reproducible
    # from one seed, and the disk cache hands the network the same data as the RAM cache.
    ram, _ = torchrun(
        2, "training", TRAIN, output_dir=tmp_path / "ram" / "runs", ckpt_dir=tmp_path / "ram" / "models", **common
    )
    assert ram.returncode == 0, ram.stdout[-6000:]
    assert train_losses(log) and train_losses(ram.stdout) == train_losses(log)
    assert key_metrics(ram.stdout) == key_metrics(log)
    print(f"2-process training, 1 epoch: {took:.0f} s")


# ---- evaluation ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_two_process_evaluation_equals_one_process(trained, evaluated, tmp_path):
    """The one-process run is conftest's `evaluated` (`monai.bundle run evaluation`, one thread, as torchrun gives each
    process) on `five_cases`: 5 labelled cases, an odd number, so the ranks get 3 and 2 and nothing may be padded."""
    datalist = evaluated["datalist"]
    cases = json.loads(datalist.read_text())["validation"]
    names = [Path(c["image"]).name.replace(".nii.gz", "") for c in cases]
    common = dict(bundle_root=BUNDLE_ROOT, eval_datalist=datalist, ckpt_path=trained["models"] / "model.pt", **FAST)

    two, t2 = torchrun(2, "evaluation", MULTI_GPU_EVALUATE, output_dir=tmp_path / "two", **common)
    assert two.returncode == 0, two.stdout[-6000:]
    assert set(rank_pids(two.stdout)) == {0, 1}

    # MeanDice gathers both ranks' cases: the same mean as one process. Only the order of the float32 sum differs,
    # which moves the last digits (observed: 3e-8).
    (dice_one,), (dice_two,) = key_metrics(evaluated["log"]), key_metrics(two.stdout)
    assert dice_one > 0.01, "the trained weights must find some liver, or the comparison proves nothing"
    assert dice_two == pytest.approx(dice_one, abs=1e-6)

    # the per-case table: every case exactly once, in the datalist's order, with the same numbers
    def table(folder):
        with open(folder / "metrics.csv") as f:
            return list(csv.DictReader(f))

    rows_one, rows_two = table(evaluated["out"]), table(tmp_path / "two")
    assert [r["case"] for r in rows_two] == names
    assert rows_two == rows_one
    assert np.mean([float(r["dice"]) for r in rows_two]) == pytest.approx(dice_one, abs=1e-4)  # the CSV keeps 4 digits

    # each rank wrote its own cases' masks: all of them, identical to the single-process ones
    for name in names:
        a = np.asarray(nib.load(str(evaluated["out"] / f"{name}_seg.nii.gz")).dataobj)
        b = np.asarray(nib.load(str(tmp_path / "two" / f"{name}_seg.nii.gz")).dataobj)
        np.testing.assert_array_equal(a, b)
    print(f"evaluation of 5 cases, 2 processes: {t2:.0f} s")


# ---- faults ----------------------------------------------------------------------------------------------------
def rank1_transforms(extra: str) -> str:
    """A training pipeline with ``extra`` (a transform) appended on rank 1 only."""
    return f"$@train#deterministic_transforms + @train#random_transforms + ([] if @rank == 0 else [{extra}])"


@pytest.mark.slow
def test_a_rank_that_raises_ends_the_whole_job(phantom_dir, tmp_path):
    # rank 1 fails on its first training batch, while rank 0 waits for it in the gradient all-reduce
    failing = "monai.transforms.Lambda(lambda d: int('rank 1 fails on purpose'))"
    proc, took = torchrun(
        2,
        "training",
        TRAIN,
        timeout=600,
        bundle_root=BUNDLE_ROOT,
        dataset_dir=phantom_dir,
        output_dir=tmp_path / "runs",
        ckpt_dir=tmp_path / "models",
        epochs=1,
        fold=-1,  # no validation, and no cache (cache_rate 0): the job stops in its first step, before either is used
        cache_rate=0,
        dist_timeout_s=600,
        **{"train#preprocessing#transforms": rank1_transforms(failing)},
        **FAST,
    )
    assert proc.returncode != 0
    assert "rank 1 fails on purpose" in proc.stdout  # the failing rank's error is shown
    assert took < 300, f"the job took {took:.0f} s to stop"  # torchrun stops rank 0 at once, not after 600 s
    assert not list((tmp_path / "models").glob("checkpoint_epoch=*.pt"))


@pytest.mark.slow
def test_a_rank_that_hangs_ends_the_whole_job_after_the_timeout(phantom_dir, tmp_path):
    # rank 1 blocks forever (as a rank on a lost machine would); rank 0 gives up after dist_timeout_s, 10 s: well
    # above how far apart the ranks reach a collective when neither hangs (both start together and train alike)
    hanging = "monai.transforms.Lambda(lambda d: os.read(os.pipe()[0], 1))"
    proc, took = torchrun(
        2,
        "training",
        TRAIN,
        timeout=600,
        bundle_root=BUNDLE_ROOT,
        dataset_dir=phantom_dir,
        output_dir=tmp_path / "runs",
        ckpt_dir=tmp_path / "models",
        epochs=1,
        fold=-1,  # no validation, and no cache (cache_rate 0): the job stops in its first step, before either is used
        cache_rate=0,
        dist_timeout_s=10,
        **{"train#preprocessing#transforms": rank1_transforms(hanging)},
        **FAST,
    )
    assert proc.returncode != 0
    assert "Timed out waiting 10000ms" in proc.stdout, proc.stdout[-4000:]
    assert took < 300, f"the job took {took:.0f} s to stop"


def test_the_multi_gpu_configs_refuse_to_run_without_torchrun(monkeypatch):
    for name in distributed.TORCHRUN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(RuntimeError, match="torchrun"):
        distributed.init_process_group("cpu", 60)


def gather_rank(rank: int, store: str, send, gather_cases) -> None:
    """Rank ``rank`` of a 2-process gloo job (a child forked from the test's process, torch and MONAI already imported):
    ``gather_cases`` over a DistributedSampler(shuffle=False) deal in which rank 1 also got a padded copy of case 0;
    sends the gathered rows and sources and the warnings it logged."""
    import logging

    import torch.distributed as dist

    torch.set_num_threads(1)  # no OpenMP pool after a fork
    warnings: list[str] = []
    catch = logging.Handler(logging.WARNING)
    catch.emit = lambda record: warnings.append(record.getMessage())
    logging.getLogger("scripts.components.handlers").addHandler(catch)
    dist.init_process_group(
        "gloo", init_method=f"file://{store}", rank=rank, world_size=2, timeout=timedelta(seconds=60)
    )
    try:
        mine = {0: ["c0", "c2", "c4"], 1: ["c1", "c3", "c0"]}[rank]
        rows, sources = gather_cases([{"case": s, "rank": rank} for s in mine], ["/data/" + s for s in mine])
        send.send({"rows": rows, "sources": sources, "warnings": warnings})
    finally:
        dist.destroy_process_group()


def test_case_rows_are_gathered_in_dataset_order_each_case_once(tmp_path):
    """Two real gloo processes, forked from this one: no fresh interpreters importing torch (the bundle's runs under
    torchrun above show the gather inside an evaluation)."""
    from scripts.components.handlers import gather_cases  # imported here, before the fork: the ranks inherit it

    context = multiprocessing.get_context("fork")
    pipes = [context.Pipe(duplex=False) for _ in range(2)]
    ranks = [
        context.Process(target=gather_rank, args=(rank, str(tmp_path / "store"), send, gather_cases))
        for rank, (_, send) in enumerate(pipes)
    ]
    for process in ranks:
        process.start()
    try:
        results = []
        for (receive, send), process in zip(pipes, ranks, strict=True):
            send.close()
            assert receive.poll(120), f"rank {ranks.index(process)} sent nothing (exit status {process.exitcode})"
            results.append(receive.recv())
    finally:
        for process in ranks:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
    assert [process.exitcode for process in ranks] == [0, 0]
    result = results[0]
    assert [r["case"] for r in result["rows"]] == ["c0", "c1", "c2", "c3", "c4"]
    assert result["rows"][0]["rank"] == 0  # the first copy of the padded case is kept
    assert result["sources"] == [f"/data/c{i}" for i in range(5)]
    assert results[1]["rows"] == result["rows"] and results[1]["sources"] == result["sources"]  # every rank has all
    assert any("evaluated on two ranks" in w for r in results for w in r["warnings"])


def test_gather_cases_leaves_a_single_process_run_alone():
    from scripts.components.handlers import gather_cases

    rows, sources = [{"case": "b"}, {"case": "a"}], ["/x/b", "/x/a"]
    assert not torch.distributed.is_initialized()

    assert gather_cases(rows, sources) == (rows, sources)


# ---- the disk cache --------------------------------------------------------------------------------------------
def parsed(overrides: dict | None = None, files=("train.yaml",)):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(CONFIGS / f) for f in files])
    for key, value in (overrides or {}).items():
        parser[key] = value
    return parser


def preprocessing_hash(overrides: dict | None = None, key: str = "train#preprocessing") -> str:
    return cache.transform_hash(parsed(overrides).get_parsed_content(key))


def test_the_cache_folder_follows_the_preprocessing_settings_only(phantom_dir):
    base = preprocessing_hash()
    # validation preprocessing = the deterministic part of training's: they share cached cases
    assert preprocessing_hash(key="validate#preprocessing") == base
    assert preprocessing_hash({"pixdim": [3.0, 3.0, 3.0]}) != base
    assert preprocessing_hash({"hu_window": [-100, 200]}) != base
    assert preprocessing_hash({"num_classes": 3}) != base  # the label is no longer thresholded
    # settings after the cached part do not matter
    assert preprocessing_hash({"epochs": 3, "learning_rate": 0.1, "num_samples": 4}) == base
    # nor does what the transforms remember after running (the reader's last file, tracing flags)
    transform = parsed().get_parsed_content("train#preprocessing")
    for item in small_cases(phantom_dir, 2):
        transform(item)
    assert cache.transform_hash(transform) == base


@pytest.mark.slow
def test_the_cache_folder_name_is_the_same_in_every_process(disk_run):
    # every rank, and every later run, computes the folder name itself: fresh interpreters with another string-hash
    # seed must find the same one. Those of the 2-process training run (`disk_run`, PYTHONHASHSEED 12345) made the one
    # folder there is; this interpreter, with its own seed, names the same one for the same settings.
    assert os.environ.get("PYTHONHASHSEED") != "12345"
    base = preprocessing_hash({"pixdim": [3.0, 3.0, 3.0], "patch_size": [32, 32, 32]})  # FAST's geometry
    assert [p.name for p in (disk_run["root"] / "cache").iterdir()] == [base]


def small_cases(phantom_dir, n=2):
    items = json.loads((phantom_dir / "dataset.json").read_text())["training"][:n]
    return [{"image": str(phantom_dir / c["image"]), "label": str(phantom_dir / c["label"])} for c in items]


def test_the_disk_cache_is_private_reused_and_renewed_when_a_file_changes(phantom_dir, tmp_path):
    transform = parsed({"pixdim": [3.0, 3.0, 3.0], "patch_size": [32, 32, 32]}).get_parsed_content(
        "validate#preprocessing"
    )
    data = small_cases(phantom_dir)
    first = cache.dataset(data, transform, cache="disk", cache_dir=tmp_path / "c")
    fresh = [first[i] for i in range(2)]
    folder = tmp_path / "c" / cache.transform_hash(transform)
    files = {p: p.stat().st_mtime_ns for p in folder.glob("*.pt")}
    assert len(files) == 2
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and stat.S_IMODE((tmp_path / "c").stat().st_mode) == 0o700

    again = cache.dataset(data, transform, cache="disk", cache_dir=tmp_path / "c")
    cached = [again[i] for i in range(2)]
    assert {p: p.stat().st_mtime_ns for p in folder.glob("*.pt")} == files  # read back, not written again
    for a, b in zip(fresh, cached, strict=True):
        assert torch.equal(torch.as_tensor(a["image"]), torch.as_tensor(b["image"]))
        assert torch.equal(torch.as_tensor(a["label"]), torch.as_tensor(b["label"]))
        # a file holds the cropped case, not the uncropped buffer the crop was a view of (the phantom's was 2x)
        stored = next(
            p for p in files if torch.equal(torch.load(p, weights_only=True)["image"], torch.as_tensor(b["image"]))
        )
        assert stored.stat().st_size < 1.02 * 2 * b["image"].numel() * 4  # image + label, float32, plus a header

    # an image replaced under the same name is preprocessed again
    image = Path(data[0]["image"])
    st = image.stat()
    try:
        os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        _ = cache.dataset(data, transform, cache="disk", cache_dir=tmp_path / "c")[0]
        assert len(list(folder.glob("*.pt"))) == 3
    finally:
        os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_batch_may_mix_fresh_and_disk_cached_cases(phantom_dir, tmp_path):
    # first epoch after an interrupted run, or a case another rank has just cached: hits and misses share a batch
    from monai.data import list_data_collate

    transform = parsed({"pixdim": [3.0, 3.0, 3.0], "patch_size": [32, 32, 32]}).get_parsed_content(
        "train#preprocessing"
    )
    data = small_cases(phantom_dir)
    _ = cache.dataset(data[:1], transform, cache="disk", cache_dir=tmp_path)[0]  # case 0 cached, case 1 not
    ds = cache.dataset(data, transform, cache="disk", cache_dir=tmp_path)
    batch = list_data_collate([ds[0], ds[1]])
    assert tuple(batch["image"].shape) == (4, 1, 32, 32, 32)  # 2 cases x num_samples 2 patches


def test_a_cache_folder_others_can_open_is_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o755)
    with pytest.raises(PermissionError, match=str(shared)):
        cache.private_dir(shared)
    assert stat.S_IMODE(Path(cache.private_dir(tmp_path / "new" / "deeper")).stat().st_mode) == 0o700


def test_an_unknown_cache_choice_is_an_error():
    with pytest.raises(ValueError, match="'ssd' is not one of gpu, ram, disk"):
        cache.dataset([], None, cache="ssd")


def test_default_cache_root_is_in_the_users_cache_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache.default_cache_root() == str(tmp_path / "liver_ct_segmentation")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache.default_cache_root() == os.path.join(os.path.expanduser("~"), ".cache", "liver_ct_segmentation")


def test_the_memory_estimate_matches_the_resampled_grid(phantom_dir, capsys):
    from monai.transforms import Compose, LoadImaged, Orientationd, Spacingd

    assert cache_cli.main(["--dataset_dir", str(phantom_dir), "--pixdim", "3", "3", "3", "--processes", "2"]) == 0
    out = capsys.readouterr().out
    lines = [l for l in out.splitlines() if re.match(r"\d+/6 ", l)]
    assert len(lines) == 6
    totals = re.search(r"total ([0-9.]+) GB", out)
    ram = re.search(r"cache: ram  -> up to ([0-9.]+) GB of RAM in each training process, ([0-9.]+) GB per machine", out)
    assert totals and ram and float(ram.group(2)) == pytest.approx(2 * float(ram.group(1)), abs=0.011)

    # the estimate's grid is MONAI's: resample one case to 3 mm and count its voxels
    item = small_cases(phantom_dir, 1)[0]
    (row,) = cache.estimate([item], pixdim=(3.0, 3.0, 3.0))
    resampled = Compose(
        [
            LoadImaged("image", ensure_channel_first=True),
            Orientationd("image", "RAS"),
            Spacingd("image", (3.0, 3.0, 3.0)),
        ]
    )(item)
    voxels = int(np.prod(resampled["image"].shape[1:]))
    assert row["bytes"] == pytest.approx(voxels * cache.BYTES_PER_VOXEL, rel=0.05)


def test_the_memory_estimate_reports_a_missing_dataset(tmp_path, capsys):
    assert cache_cli.main(["--dataset_dir", str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nowhere" in err
