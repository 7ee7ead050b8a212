"""Speed and memory benchmark of the inference (and training) pipeline, against the Model Zoo reference bundle.

A command, not a timed test: every figure in ``docs/benchmark.md`` comes from one run of it, on this machine.

    python -m tools.benchmark                       # everything; writes docs/benchmark.md and docs/benchmark.json
    python -m tools.benchmark --steps e2e stages    # only some steps (the report holds what was run)
    python -m tools.benchmark --trained_ckpt models/model.pt --trained_configs configs/demo.yaml

Steps (``--steps``):
  e2e      the standard workload (a folder of 5 synthetic 512x512x150 CTs, 0.8x0.8x2.5 mm, int16 gzip NIfTI) and one
           single volume, each processed by ONE ``python -m monai.bundle run inference`` command (start-up counted
           once), alternating with the reference pipeline on the same inputs; wall time to the last mask, time per
           volume once the engine started, peak RSS of the process tree (psutil polling), CPU time.
  stages   where the time goes: every pre/postprocessing transform and the network timed in one process on one
           volume, for the current config and for each optimisation reverted (the before/after figures), plus the
           FLOPs of the windows actually run and the compute floor (FLOPs / measured matmul rate).
  train    training steps per second and the share of time spent waiting for data (train.yaml + demo.yaml, phantom).
  race     time to accuracy: the demo's training (train.yaml + demo.yaml) against the reference trainer (its
           train.json, pointed at the same phantom split and geometry by ``reference_train_overrides``), alternating;
           time from the command's start to a validation Dice of 0.90 and 0.95, steps/s, peak RSS. The reference
           stops after ``--race_budget`` times our time to 0.95. ``--race_before`` adds the demo's training before
           issue 17 (worker-process loaders, float32, 80 epochs).
  rss600   peak RSS of one 512x512x600 volume.
  dice     the fast path against the plain path (float64 resampling, both class channels inverted, argmax) with the
           same trained weights on held-out phantom cases: Dice of each against the phantom label.
  gpu      CUDA latency per volume (fp32 / fp16 / bf16 autocast) and training throughput; "not run" without a GPU.
  shares   what each bespoke Python component buys end to end: the standard folder (its first ``--share_cases``)
           with the current config and with each revert of ``--shares`` (by default the three that each take out one
           component of the inference path), one ``monai.bundle run inference`` per run, alternating (ours, revert A,
           ours, revert B, ...); per component the seconds with and without it and its share, (without - with) /
           without. Every run also records the lines of Python on the inference path against the config's
           (``tools/imports.py``).

Weights: the network costs the same whatever its weights, but the post-processing does not: the liver-box
resampling and the largest-component search cost what the mask covers, and random weights "find" liver in the whole
body. So the timed steps (e2e, stages, rss600, shares) use ``--trained_ckpt`` when it is given, and a randomly initialised
state dict written outside the bundle otherwise (then the post-processing is slower than it would be). The reference
runs with random weights: its post-processing (Invertd, argmax) costs the same for any mask.

The machine may be shared: runs alternate (ours, reference, ours, ...) and medians are reported with the spread.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import glob
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from scripts.lib.fileio import case_name
from scripts.lib.metrics import dice  # the bundle's Dice of two masks (benchmark.dice for the tests)
from tools import imports

BUNDLE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STANDARD_SHAPE = (512, 512, 150)
STANDARD_SPACING = (0.8, 0.8, 2.5)
STEPS = ("e2e", "stages", "train", "race", "rss600", "dice", "gpu", "shares")
# Measured but not adopted (docs/benchmark.md, "Measured and left alone", gives the figures): windows without overlap
# (sw_overlap is training geometry, shared with train.yaml), and bf16 autocast in inference on a CPU without AVX-512
# BF16 (training uses it only where the CPU has it: scripts.components.training.cpu_autocast).
GPU_PARTS = ("stages", "e2e", "train")
# optimisations that only a whole run shows (the stage profile runs one case in process)
E2E_ONLY = {"thread_loader", "gpu_loader_threads"}
# optimisations that change nothing on a 2-core CPU: each is reverted beside ours in the gpu step's end-to-end runs
GPU_ONLY = {"gpu_preprocessing", "gpu_loader_threads"}
OPTIONS = {"option: sw_overlap 0": {"overrides": {"sw_overlap": 0.0}}}
INFERENCE_CONFIG = "configs/inference.yaml"
ONNX_CONFIGS = (INFERENCE_CONFIG, "configs/inference_onnx.yaml")  # the network in ONNX Runtime
NETWORK_STAGE = "network (sliding window)"  # the stage name of the inferer's call (coarse and fine passes)
BOX_STAGE = "post: Lambdad'"  # the stage name of the liver-box resampling (the second Lambdad of the postprocessing)

# ------------------------------------------------------------------------------------------------------------------
# inputs
# ------------------------------------------------------------------------------------------------------------------


def make_cases(folder: str, seeds, shape=STANDARD_SHAPE, spacing=STANDARD_SPACING, orientation="LPS") -> list[str]:
    """Write phantom CTs ``folder/imagesTs/ct_<seed>.nii.gz`` (int16 gzip) and labels ``folder/labelsTs/``.

    Files already there with the same parameters (recorded in ``folder/cases.json``) are reused. Returns the image
    paths. ``folder`` is then a valid ``--dataset_dir`` for the reference bundle and ``folder/imagesTs`` an
    ``--input`` for ours.
    """
    from scripts.lib import fileio, phantom

    params = {
        "seeds": [int(s) for s in seeds],
        "shape": list(shape),
        "spacing": list(spacing),
        "orientation": orientation,
    }
    record = os.path.join(folder, "cases.json")
    images = [os.path.join(folder, "imagesTs", f"ct_{s:03d}.nii.gz") for s in params["seeds"]]
    labels = [p.replace("imagesTs", "labelsTs") for p in images]
    if os.path.isfile(record) and all(os.path.isfile(p) for p in images + labels):
        with open(record) as f:
            if json.load(f) == params:
                return images
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    os.makedirs(os.path.join(folder, "imagesTs"))
    os.makedirs(os.path.join(folder, "labelsTs"))
    for seed, image_path, label_path in zip(params["seeds"], images, labels, strict=True):
        t0 = time.perf_counter()
        image, label, affine = phantom.make_case(
            seed, shape=tuple(shape), spacing=tuple(spacing), orientation=orientation
        )
        phantom.save_nifti(image, affine, image_path, f"SYNTHETIC benchmark phantom, seed {seed}")
        phantom.save_nifti(label, affine, label_path, f"SYNTHETIC benchmark phantom label, seed {seed}")
        log(f"  wrote {image_path} {tuple(image.shape)} ({time.perf_counter() - t0:.1f} s)")
    fileio.write_text(record, json.dumps(params))
    return images


def make_thin_slice_case(path: str, seed: int = 0, shape=(512, 512, 600), spacing=(0.8, 0.8, 0.625)) -> str:
    """A thin-slice int16 CT of ``shape`` at ``spacing`` (default 512x512x600 at 0.8x0.8x0.625 mm): a phantom drawn
    with half the slices, each twice as thick, then every slice repeated (the phantom draws at most 150 M voxels)."""
    from scripts.lib import phantom

    if os.path.isfile(path):
        return path
    if shape[2] % 2:
        raise ValueError(f"the slice count must be even, got {shape[2]}")
    image, _, affine = phantom.make_case(
        seed,
        shape=(shape[0], shape[1], shape[2] // 2),
        spacing=(spacing[0], spacing[1], 2 * spacing[2]),
        orientation="LPS",
    )
    image = np.repeat(image, 2, axis=2)
    half = np.eye(4)
    half[2, 2], half[2, 3] = 0.5, -0.25  # thin slice k sits at thick index (k - 0.5) / 2
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    phantom.save_nifti(image, affine @ half, path, f"SYNTHETIC benchmark phantom, seed {seed}, thin slices")
    return path


def random_weights(path: str, config_files=(INFERENCE_CONFIG,), seed: int = 0) -> str:
    """Save the randomly initialised state dict of the config's ``network_def`` to ``path`` (a stand-in for trained
    weights: the network costs the same whatever its weights)."""
    import torch
    from monai.bundle import ConfigParser

    torch.manual_seed(seed)
    cfg = ConfigParser()
    cfg.read_config([os.path.join(BUNDLE_ROOT, c) for c in config_files])
    net = cfg.get_parsed_content("network_def")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.save(net.state_dict(), path)
    return path


# ------------------------------------------------------------------------------------------------------------------
# configuration variants: each optimisation of inference.yaml, and the overrides that revert it
# ------------------------------------------------------------------------------------------------------------------


REVERTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reverts")
#: The reverts of the components replaced by MONAI's in 0.8.0 (each bought under 5 % end to end: the shares table):
#: their files are the record, in ``tools/reverts/replaced/``, and no longer apply (``revert_overrides`` reads only
#: the top-level files); the shares table still renders their stored rows.
REPLACED = ("slab_reader", "isal_gzip", "nifti_writer")
#: The transform each revert file patches, by its place in configs/inference.yaml's lists: a config edit that moves
#: one makes revert_overrides refuse to run rather than time the wrong thing.
REVERT_TARGETS = {
    "preprocessing#transforms#6": "Spacingd",
    "postprocessing#transforms#1": "liver_channel",
    "postprocessing#transforms#3": "to_input_grid",
}
#: The reverts that make up ``plain``, in the order they are applied, then ``plain.yaml``. MONAI's reader and writer
#: are the config's own since 0.8.0, so ``plain`` needs nothing for them.
PLAIN = (
    "float32_resampling",
    "liver_channel_only",
    "liver_box_resampling",
    "liver_box_inference",
    "thread_loader",
    "cpu_batch_of_2",
    "gpu_preprocessing",
)
#: What each revert takes out of the inference path, for the shares table (``step_shares``). The first three are the
#: record of ``REPLACED`` (the stored rows of docs/benchmark.json); the next three the bespoke Python components the
#: config names.
COMPONENTS = {
    "slab_reader": "NiftiReader (`scripts.components.inputs`): slab-wise C-order copy and ISA-L inflate",
    "isal_gzip": "NiftiReader's ISA-L inflate (`isal.igzip` through `scripts.lib.fileio`)",
    "nifti_writer": "the mask writer (`scripts.components.postprocess.NiftiWriter`, x-fastest mask, ISA-L deflate)",
    "liver_box_inference": "LiverBoxInferer (`scripts.components.inferers`): the windows in the liver's box",
    "liver_box_resampling": "to_input_grid (`scripts.components.postprocess`): back to the input grid in the box",
    "liver_channel_only": "liver_channel (`scripts.components.postprocess`): the liver channel alone",
    "float32_resampling": "Spacingd in float32 (a config value)",
    "thread_loader": "ThreadDataLoader (a config value)",
    "cpu_batch_of_2": "2 windows per network call on a CPU (`scripts.components.hardware.windows_per_call`)",
    "gpu_preprocessing": "preprocessing on the GPU (`preprocess_device`)",
    "gpu_loader_threads": "loader threads with GPU preprocessing",
    "plain": "all the optimisations of `PLAIN` together (the pipeline before issue 6)",
}
#: The reverts the shares step runs by default: one bespoke Python component each.
SHARES = (
    "liver_box_inference",
    "liver_box_resampling",
    "liver_channel_only",
)


def _target_name(item) -> str:
    """The last part of a config item's ``_target_``, or of its ``func`` for a ``Lambdad``."""
    if not isinstance(item, dict):
        return ""
    if str(item.get("_target_", "")).split(".")[-1] == "Lambdad":
        return str(item.get("func", "")).split(".")[-1].split("(")[0]
    return str(item.get("_target_", "")).split(".")[-1]


def revert_overrides(config_files=(INFERENCE_CONFIG,)) -> dict:
    """``{optimisation: {config id: value}}``: the overrides that give each optimisation's "before" path.

    Each optimisation's overrides are the file ``tools/reverts/<optimisation>.yaml`` (its comment says what it
    reverts; only the top-level files: ``tools/reverts/replaced/`` is the record of ``REPLACED``, out of use);
    ``plain`` applies those of ``PLAIN`` in order, then ``plain.yaml``: the pipeline as it was before issue 6. Raises
    ValueError when a file's ids no longer name the transform ``REVERT_TARGETS`` expects in the config.
    """
    from monai.bundle import ConfigParser

    cfg = ConfigParser()
    cfg.read_config([os.path.join(BUNDLE_ROOT, c) for c in config_files])
    for place, target in REVERT_TARGETS.items():
        if _target_name(cfg.get(place)) != target:
            raise ValueError(f"{config_files[0]}: {place} is not {target}; tools/reverts/ needs updating")
    reverts = {}
    for path in sorted(glob.glob(os.path.join(REVERTS_DIR, "*.yaml"))):
        name = os.path.splitext(os.path.basename(path))[0]
        reverts[name] = dict(ConfigParser.load_config_file(path))
        for key in reverts[name]:
            place = "#".join(key.split("#")[:3])
            if "#transforms#" in key and place not in REVERT_TARGETS:
                raise ValueError(f"{path}: {key} patches {place}, which REVERT_TARGETS does not check")
    plain = {}
    for name in (*PLAIN, "plain"):
        plain.update(reverts.pop(name) if name == "plain" else reverts[name])
    return {**reverts, "plain": plain}


def cli_overrides(overrides: dict) -> list[str]:
    """``{id: value}`` as ``monai.bundle run`` arguments (``--id value``; None and bools as Python literals)."""
    out = []
    for key, value in overrides.items():
        out += [f"--{key}", "None" if value is None else str(value)]
    return out


# ------------------------------------------------------------------------------------------------------------------
# running and watching a command
# ------------------------------------------------------------------------------------------------------------------


def log(message: str) -> None:
    print(message, flush=True)


def tree_rss(proc) -> tuple[int, int]:
    """(sum of RSS over ``proc`` and all its descendants, largest single RSS) in bytes; vanished processes count 0.

    The sum counts pages that forked workers share with their parent twice: it is an upper bound.
    """
    import psutil

    total = largest = 0
    try:
        procs = [proc] + proc.children(recursive=True)
    except psutil.Error:
        return 0, 0
    for p in procs:
        try:
            rss = p.memory_info().rss
        except psutil.Error:
            continue
        total += rss
        largest = max(largest, rss)
    return total, largest


def run_monitored(
    cmd: list[str], cwd: str, log_path: str, timeout: float = 3600.0, interval: float = 0.05, budget: float = None
) -> dict:
    """Run ``cmd``, polling the RSS of its process tree; return wall time, peak RSS, CPU time and exit code.

    ``wall_s`` runs from just before the process starts to its exit; ``start_epoch`` is the start as a Unix time
    (for comparing with log and file times). Raises RuntimeError (with the log's tail) if the command fails.
    ``budget``: seconds after which the process tree is stopped on purpose (``stopped_at_budget`` in the result; not
    a failure).
    """
    import psutil

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    before = os.times()
    with open(log_path, "w") as out:
        start_epoch = time.time()
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env)
        watched = psutil.Process(proc.pid)
        peak_sum = peak_one = 0
        stopped = False
        while proc.poll() is None:
            total, largest = tree_rss(watched)
            peak_sum, peak_one = max(peak_sum, total), max(peak_one, largest)
            if budget is not None and time.perf_counter() - t0 > budget:
                for p in watched.children(recursive=True) + [watched]:
                    with contextlib.suppress(psutil.Error):
                        p.kill()
                proc.wait()
                stopped = True
                break
            if time.perf_counter() - t0 > timeout:
                proc.kill()
                proc.wait()
                raise RuntimeError(f"{log_path}: command timed out after {timeout:.0f} s: {' '.join(cmd)}")
            time.sleep(interval)
        wall = time.perf_counter() - t0
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    if proc.returncode != 0 and not stopped:
        with open(log_path) as f:
            tail = f.read()[-3000:]
        raise RuntimeError(f"{log_path}: command failed with exit code {proc.returncode}: {' '.join(cmd)}\n{tail}")
    return {
        "wall_s": wall,
        "peak_rss_gb": peak_sum / 1e9,
        "peak_rss_one_process_gb": peak_one / 1e9,
        "cpu_s": cpu,
        "start_epoch": start_epoch,
        "log": log_path,
        "stopped_at_budget": stopped,
    }


def log_time(log_path: str, marker: str) -> float | None:
    """Unix time of the first log line containing ``marker`` (lines start ``YYYY-mm-dd HH:MM:SS,mmm``), or None."""
    with open(log_path, errors="replace") as f:
        for line in f:
            if marker in line:
                try:
                    stamp = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
                except ValueError:
                    continue
                return stamp.timestamp()
    return None


def summarize_run(run: dict, masks: list[str], n_cases: int) -> dict:
    """Add to ``run``: time to the last mask written, engine start-up, time per volume once started (engine start
    to the last mask, over the cases), the first mask after the engine started, and the steady interval between
    masks (first to last mask, over the cases after the first)."""
    if len(masks) != n_cases:
        raise RuntimeError(f"{run['log']}: expected {n_cases} masks, found {len(masks)}")
    times = sorted(os.stat(m).st_mtime for m in masks)
    first, last = times[0], times[-1]
    started = log_time(run["log"], "Engine run")
    run["to_last_mask_s"] = last - run["start_epoch"]
    if n_cases > 1:
        run["steady_per_volume_s"] = (last - first) / (n_cases - 1)
    if started is not None:
        run["startup_s"] = started - run["start_epoch"]
        run["per_volume_s"] = (last - started) / n_cases
        run["first_mask_s"] = first - started
    return run


def ours_command(input_dir: str, output_dir: str, ckpt: str, config_files=(INFERENCE_CONFIG,), overrides=None):
    files = [os.path.join(BUNDLE_ROOT, c) for c in config_files]
    cmd = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "inference",
        "--config_file",
        json.dumps(files),
        "--meta_file",
        os.path.join(BUNDLE_ROOT, "configs/metadata.json"),
        "--logging_file",
        os.path.join(BUNDLE_ROOT, "configs/logging.conf"),
        "--input",
        input_dir,
        "--output_dir",
        output_dir,
        "--ckpt_path",
        ckpt,
    ]
    return cmd + cli_overrides(overrides or {})


def reference_command(dataset_dir: str, output_dir: str):
    """The reference bundle's README command (random weights, no loader workers); run from its folder."""
    return [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        "configs/inference.json",
        "--meta_file",
        "configs/metadata.json",
        "--logging_file",
        "configs/logging.conf",
        "--dataset_dir",
        dataset_dir,
        "--output_dir",
        output_dir,
        "--load_pretrain",
        "False",
        "--dataloader#num_workers",
        "0",
    ]


def run_ours(case_dir: str, out: str, ckpt: str, n_cases: int, config_files=(INFERENCE_CONFIG,), overrides=None):
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    run = run_monitored(
        ours_command(os.path.join(case_dir, "imagesTs"), out, ckpt, config_files, overrides), BUNDLE_ROOT, out + ".log"
    )
    return summarize_run(run, sorted(glob.glob(os.path.join(out, "*_seg.nii.gz"))), n_cases)


def run_reference(case_dir: str, out: str, n_cases: int, reference_dir: str):
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    run = run_monitored(reference_command(case_dir, out), reference_dir, out + ".log")
    return summarize_run(run, sorted(glob.glob(os.path.join(out, "*", "*_trans.nii.gz"))), n_cases)


def spread(values) -> dict:
    """Median, min, max and the values themselves (rounded) of a list of numbers."""
    values = [float(v) for v in values if v is not None]
    if not values:
        return {"median": None, "min": None, "max": None, "values": []}
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "values": [round(v, 3) for v in values],
    }


def compare_alternating(
    case_dir: str,
    work: str,
    ckpt: str,
    n_cases: int,
    repeats: int,
    reference_dir: str | None,
    label: str,
    onnx_path: str | None = None,
    variants: dict | None = None,
) -> dict:
    """Ours and the reference on the same folder, alternating (ours first, then the reference, ``repeats`` times);
    medians of each figure and the median of the per-pair ratios of wall time. Without ``reference_dir`` only ours
    runs (and there are no ratios). ``variants`` (``{name: overrides}``) run ours with those overrides too, in the
    same rotation, as ``ours_no_<name>``."""
    variants = {f"ours_no_{k}": v for k, v in (variants or {}).items()}
    runs = {"ours": [], "ours_onnx": [], "reference": [], **{k: [] for k in variants}}
    ours, ref = runs["ours"], runs["reference"]
    pipelines = (
        ("ours",) + (("ours_onnx",) if onnx_path else ()) + tuple(variants) + (("reference",) if reference_dir else ())
    )
    for r in range(repeats):
        for who in pipelines:
            out = os.path.join(work, f"{label}_{who}_{r}")
            t0 = time.perf_counter()
            if who == "ours":
                run = run_ours(case_dir, out, ckpt, n_cases)
            elif who == "ours_onnx":  # inference_onnx.yaml merged over inference.yaml
                run = run_ours(case_dir, out, ckpt, n_cases, ONNX_CONFIGS, {"onnx_path": onnx_path})
            elif who in variants:
                run = run_ours(case_dir, out, ckpt, n_cases, overrides=variants[who])
            else:
                run = run_reference(case_dir, out, n_cases, reference_dir)
            run["load_average"] = os.getloadavg()[0]
            runs[who].append(run)
            log(
                f"  {label} {who} run {r + 1}/{repeats}: {run['to_last_mask_s']:.1f} s to last mask, "
                f"peak RSS {run['peak_rss_gb']:.2f} GB ({time.perf_counter() - t0:.0f} s)"
            )
    keys = (
        "to_last_mask_s",
        "wall_s",
        "per_volume_s",
        "first_mask_s",
        "steady_per_volume_s",
        "startup_s",
        "cpu_s",
        "peak_rss_gb",
        "load_average",
    )
    result = {"cases": n_cases, "repeats": repeats, "ours": {k: spread([r.get(k) for r in ours]) for k in keys}}
    for who in variants:
        result[who] = {k: spread([r.get(k) for r in runs[who]]) for k in keys}
    if not ref:
        return result
    result["reference"] = {k: spread([r.get(k) for r in ref]) for k in keys}
    ratios = [o["to_last_mask_s"] / f["to_last_mask_s"] for o, f in zip(ours, ref, strict=True)]
    result["ratio_to_last_mask"] = spread(ratios)
    cpu_ratios = [o["cpu_s"] / f["cpu_s"] for o, f in zip(ours, ref, strict=True)]
    result["ratio_cpu"] = spread(cpu_ratios)
    if all("per_volume_s" in r for r in ours + ref):
        result["ratio_per_volume"] = spread(
            [o["per_volume_s"] / f["per_volume_s"] for o, f in zip(ours, ref, strict=True)]
        )
    if runs["ours_onnx"]:
        result["ours_onnx"] = {k: spread([r.get(k) for r in runs["ours_onnx"]]) for k in keys}
        result["ratio_onnx_to_last_mask"] = spread(
            [o["to_last_mask_s"] / f["to_last_mask_s"] for o, f in zip(runs["ours_onnx"], ref, strict=True)]
        )
        result["ratio_onnx_cpu"] = spread(
            [o["cpu_s"] / f["cpu_s"] for o, f in zip(runs["ours_onnx"], ref, strict=True)]
        )
    return result


# ------------------------------------------------------------------------------------------------------------------
# compute: FLOPs, windows, measured rates
# ------------------------------------------------------------------------------------------------------------------


def flops_per_window(network, roi_size, in_channels: int = 1) -> float:
    """FLOPs (2 per multiply-add) of one forward pass of ``network`` on one ``roi_size`` window, counted by torch."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    param = next(network.parameters())
    x = torch.zeros((1, in_channels, *roi_size), device=param.device, dtype=param.dtype)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        network(x)
    return float(counter.get_total_flops())


class WindowCounter:
    """``network`` behind a count of the windows (batch items) it is called with, the benchmark's one window
    counter: pass it to an inferer in the network's place. Without ``network`` a stand-in returns zeros with
    ``out_channels`` channels (the plan of a plain sliding window, which does not depend on the output)."""

    def __init__(self, network=None, out_channels: int = 2):
        self.network, self.out_channels, self.windows = network, out_channels, 0

    def __call__(self, x):
        import torch

        self.windows += x.shape[0]
        if self.network is not None:
            return self.network(x)
        return torch.zeros((x.shape[0], self.out_channels, *x.shape[2:]), dtype=x.dtype)


def count_windows(inferer, image, network=None, out_channels: int = 2) -> int:
    """How many windows ``inferer`` runs on ``image``, a (1, C, *spatial) tensor or its shape. Without ``network``,
    a stand-in that returns zeros is run on zeros of that shape (the plan of a plain sliding window); the
    coarse-to-fine inferer's windows depend on what the network finds, so for it pass the ``network`` and the image."""
    import torch

    counter = WindowCounter(network, out_channels)
    with torch.no_grad():
        inferer(image if isinstance(image, torch.Tensor) else torch.zeros(image), counter)
    return counter.windows


def matmul_rate(size: int = 2048, repeats: int = 7) -> float:
    """Measured fp32 matrix-multiply rate of this CPU in GFLOP/s (median of ``repeats``; all torch threads)."""
    import torch

    a, b = torch.rand(size, size), torch.rand(size, size)
    for _ in range(2):
        a @ b
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        rates.append(2 * size**3 / (time.perf_counter() - t0) / 1e9)
    return statistics.median(rates)


def conv_rate(repeats: int = 5) -> float:
    """Measured rate of one 3x3x3 conv3d (32 -> 32 channels, 4 x 48^3 voxels: a mid-size U-Net layer), GFLOP/s."""
    import torch

    conv = torch.nn.Conv3d(32, 32, 3, padding=1, bias=False).eval()
    x = torch.rand(4, 32, 48, 48, 48)
    flops = 2 * 27 * 32 * 32 * 4 * 48**3
    with torch.no_grad():
        conv(x)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            conv(x)
            times.append(time.perf_counter() - t0)
    return flops / statistics.median(times) / 1e9


# ------------------------------------------------------------------------------------------------------------------
# in-process stage profile (run in a fresh worker process: python -m tools.benchmark --worker stages ARGS.json)
# ------------------------------------------------------------------------------------------------------------------


def _stage_name(transform) -> str:
    """A transform's class name, or a plain function's own name."""
    while isinstance(transform, functools.partial):
        transform = transform.func
    return getattr(transform, "__name__", None) or type(transform).__name__


def _inference_parts(image: str, ckpt: str, config_files, overrides, output_dir, device: str) -> tuple:
    """The inference config's preprocessing, postprocessing, inferer, network (``ckpt`` loaded, in eval mode) and
    window size, parsed for one ``image`` with ``overrides`` on ``device``."""
    from monai.bundle import ConfigParser

    from scripts.lib.weights import load_into

    cfg = ConfigParser()
    cfg.read_config([os.path.join(BUNDLE_ROOT, c) for c in config_files])
    cfg["bundle_root"] = BUNDLE_ROOT
    cfg["input"] = image
    cfg["output_dir"] = output_dir or tempfile.mkdtemp(prefix="liver-bench-")
    cfg["ckpt_path"] = ckpt
    cfg["device"] = f"$torch.device({str(device)!r})"
    for key, value in (overrides or {}).items():
        cfg[key] = value
    pre, post, inferer, net = (
        cfg.get_parsed_content(k) for k in ("preprocessing", "postprocessing", "inferer", "network")
    )
    load_into(net, ckpt)
    net.eval()
    return pre, post, inferer, net, cfg.get_parsed_content("patch_size")


class StageClock:
    """Times calls by stage name (a repeated name gains a ``'``), waiting for the GPU's work on ``device``."""

    def __init__(self, device):
        import torch

        self.device, self.stages = torch.device(device), {}

    def __call__(self, name: str, fn, arg):
        import torch

        t0 = time.perf_counter()
        out = fn(arg)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        while name in self.stages:
            name += "'"
        self.stages[name] = time.perf_counter() - t0
        return out


def _network_call(inferer, network, device_type: str, amp_dtype: str | None):
    """``x -> inferer(x, network)`` without gradients, under autocast to ``amp_dtype`` when it is given."""
    import torch

    def run(x):
        with torch.no_grad():
            if amp_dtype:
                with torch.autocast(device_type, dtype=getattr(torch, amp_dtype)):
                    return inferer(x, network)
            return inferer(x, network)

    return run


def profile_case(
    image: str,
    ckpt: str,
    config_files=(INFERENCE_CONFIG,),
    overrides=None,
    output_dir=None,
    device: str = "cpu",
    amp_dtype: str | None = None,
) -> dict:
    """Time every preprocessing transform, the sliding-window network and every postprocessing transform of the
    inference config on one image, in this process, as the evaluator runs them (plus the report's HU/volume row).

    Returns ``{"stages": {name: seconds}, "network_s", "total_s", "windows", "network_input_shape",
    "flops_per_window", "mask_voxels"}``. ``amp_dtype`` ("float16"/"bfloat16") runs the network under autocast
    on ``device``.
    """
    import torch

    from scripts.components import handlers

    pre, post, inferer, net, roi = _inference_parts(image, ckpt, config_files, overrides, output_dir, device)
    clock = StageClock(device)
    data = {"image": image}
    for t in pre.transforms:
        data = clock("pre: " + _stage_name(t), t, data)
    x = data["image"].unsqueeze(0).to(clock.device)
    counted = WindowCounter(net)
    data["pred"] = clock(NETWORK_STAGE, _network_call(inferer, counted, clock.device.type, amp_dtype), x)[0].float()
    for t in post.flatten().transforms:  # a revert's nested Compose, transform by transform
        data = clock("post: " + _stage_name(t), t, data)
    clock("report row (CaseTable)", lambda d: handlers.case_measures(d["pred"], None, d.get("ct_hu")), data)
    return {
        "stages": clock.stages,
        "network_s": clock.stages[NETWORK_STAGE],
        "total_s": sum(clock.stages.values()),
        "windows": counted.windows,
        "network_input_shape": list(x.shape[2:]),
        "flops_per_window": flops_per_window(net, roi),
        "mask_voxels": int(torch.as_tensor(data["pred"]).count_nonzero()),
        "device": str(clock.device),
        "amp_dtype": amp_dtype,
    }


def _worker_stages(args: dict) -> dict:
    """Worker: profile each variant ``repeats`` times, rotating the order each round so none always runs first."""
    import torch

    results: dict[str, list] = {name: [] for name in args["variants"]}
    names = list(args["variants"])
    if args.get("threads"):
        torch.set_num_threads(int(args["threads"]))
    for r in range(int(args["repeats"])):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            v = args["variants"][name]
            res = profile_case(
                args["image"],
                args["ckpt"],
                args["config_files"],
                v.get("overrides"),
                device=v.get("device", "cpu"),
                amp_dtype=v.get("amp_dtype"),
            )
            results[name].append(res)
            print(
                f"  stages {name} round {r + 1}: total {res['total_s']:.1f} s, network {res['network_s']:.1f} s",
                flush=True,
            )
    return results


def _worker_train(args: dict) -> dict:
    """Worker: train ``epochs`` epochs with train.yaml (+ extra configs) and time the data wait of every step."""
    import torch
    from ignite.engine import Events
    from monai.bundle import ConfigParser

    cfg = ConfigParser()
    cfg.read_config([os.path.join(BUNDLE_ROOT, c) for c in args["config_files"]])
    cfg["bundle_root"] = BUNDLE_ROOT
    for key, value in args["overrides"].items():
        cfg[key] = value
    if args.get("device"):
        cfg["device"] = f"$torch.device({str(args['device'])!r})"
    t0 = time.perf_counter()
    cfg.get_parsed_content("initialize")
    trainer = cfg.get_parsed_content("train#trainer")  # builds (and caches) the datasets
    setup_s = time.perf_counter() - t0
    marks: dict[str, list] = {"wait": [], "iter": [], "epoch": []}
    state = {}

    def mark(key):
        def handler(engine):
            now = time.perf_counter()
            if key.endswith("_start"):
                state[key] = now
            else:
                base = key[: -len("_end")]
                marks[base].append(now - state[base + "_start"])

        return handler

    trainer.add_event_handler(Events.GET_BATCH_STARTED, mark("wait_start"))
    trainer.add_event_handler(Events.GET_BATCH_COMPLETED, mark("wait_end"))
    trainer.add_event_handler(Events.ITERATION_STARTED, mark("iter_start"))
    trainer.add_event_handler(Events.ITERATION_COMPLETED, mark("iter_end"))
    trainer.add_event_handler(Events.EPOCH_STARTED, mark("epoch_start"))
    trainer.add_event_handler(Events.EPOCH_COMPLETED, mark("epoch_end"))
    cfg.get_parsed_content("run")
    total = sum(marks["epoch"])
    steps = len(marks["iter"])
    batch = int(cfg.get_parsed_content("batch_size")) * int(cfg.get_parsed_content("num_samples"))
    return {
        "setup_s": setup_s,
        "epochs": len(marks["epoch"]),
        "steps": steps,
        "epoch_s": marks["epoch"],
        "steps_per_s": steps / total,
        "patches_per_s": steps * batch / total,
        "data_wait_s": sum(marks["wait"]),
        "data_wait_share": sum(marks["wait"]) / total,
        "step_s_median": statistics.median(marks["iter"]) if marks["iter"] else None,
        "patches_per_step": batch,
        "device": str(cfg.get_parsed_content("device")),
        "torch_threads": torch.get_num_threads(),
    }


def _worker_dice(args: dict) -> dict:
    """Worker: each variant on each labelled case, in process; Dice of each mask against the label (liver > 0)."""
    import nibabel as nib

    out = {}
    for name, v in args["variants"].items():
        rows = []
        for image, label in zip(args["images"], args["labels"], strict=True):
            folder = os.path.join(args["output_dir"], name.replace(" ", "_").replace(":", ""))
            res = profile_case(
                image,
                args["ckpt"],
                args["config_files"],
                v.get("overrides"),
                output_dir=folder,
                amp_dtype=v.get("amp_dtype"),
            )
            stem = case_name(image)
            mask = np.asarray(nib.load(os.path.join(folder, f"{stem}_seg.nii.gz")).dataobj) > 0
            ref = np.asarray(nib.load(label).dataobj) > 0
            rows.append(
                {
                    "case": stem,
                    "dice": dice(mask, ref),
                    "network_s": res["network_s"],
                    "total_s": res["total_s"],
                    "windows": res["windows"],
                }
            )
        out[name] = rows
        print(f"  stages dice {name}: " + ", ".join(f"{r['dice']:.4f}" for r in rows), flush=True)
    return out


def run_worker(kind: str, args: dict, work: str, timeout: float = 3600.0) -> dict:
    """Run ``_worker_<kind>(args)`` in a fresh Python process (clean memory, no state shared between steps)."""
    fd, args_path = tempfile.mkstemp(prefix=f"{kind}-", suffix=".json", dir=work)
    with os.fdopen(fd, "w") as f:
        json.dump(args, f)
    out_path = args_path[: -len(".json")] + ".out.json"
    cmd = [sys.executable, "-m", "tools.benchmark", "--worker", kind, args_path, out_path]
    proc = subprocess.run(
        cmd,
        cwd=BUNDLE_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("  stages ")]
    for ln in lines:
        log(ln)
    if proc.returncode != 0 or not os.path.isfile(out_path):
        raise RuntimeError(f"{kind} worker failed ({proc.returncode}):\n{proc.stdout[-4000:]}")
    with open(out_path) as f:
        return json.load(f)


def summarize_stages(results: dict) -> dict:
    """Median seconds per stage, network and total for each variant."""
    out = {}
    for name, runs in results.items():
        stage_names = list(runs[0]["stages"])
        out[name] = {
            "stages": {s: statistics.median(r["stages"].get(s, 0.0) for r in runs) for s in stage_names},
            "network_s": spread([r["network_s"] for r in runs]),
            "total_s": spread([r["total_s"] for r in runs]),
            "windows": runs[0]["windows"],
            "network_input_shape": runs[0]["network_input_shape"],
            "flops_per_window": runs[0]["flops_per_window"],
            "mask_voxels": runs[0]["mask_voxels"],
        }
    return out


# ------------------------------------------------------------------------------------------------------------------
# accuracy: fast path vs plain path
# ------------------------------------------------------------------------------------------------------------------


def compare_masks(fast_dir: str, plain_dir: str, label_dir: str) -> list[dict]:
    """Per case: Dice of the fast and plain liver masks against the label (liver = label > 0) and to each other."""
    import nibabel as nib

    rows = []
    for fast in sorted(glob.glob(os.path.join(fast_dir, "*_seg.nii.gz"))):
        name = os.path.basename(fast)[: -len("_seg.nii.gz")]
        f = np.asarray(nib.load(fast).dataobj) > 0
        p = np.asarray(nib.load(os.path.join(plain_dir, f"{name}_seg.nii.gz")).dataobj) > 0
        y = np.asarray(nib.load(os.path.join(label_dir, f"{name}.nii.gz")).dataobj) > 0
        rows.append(
            {
                "case": name,
                "dice_fast": dice(f, y),
                "dice_plain": dice(p, y),
                "dice_fast_vs_plain": dice(f, p),
                "voxels_differing": int(np.count_nonzero(f != p)),
            }
        )
    return rows


# ------------------------------------------------------------------------------------------------------------------
# machine and report
# ------------------------------------------------------------------------------------------------------------------


def machine_info() -> dict:
    """CPU, cores, memory, GPU, library versions, thread settings and the date."""
    import monai
    import nibabel
    import psutil
    import torch

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "cpu": cpu,
        "cpu_cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "numpy": np.__version__,
        "nibabel": nibabel.__version__,
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "load_average_at_start": list(os.getloadavg()),
    }


def _f(x, digits=1, unit=""):
    return "n/a" if x is None else f"{x:.{digits}f}{unit}"


def _sp(s, digits=1):
    """'median (min-max)' of a spread."""
    if not s or s.get("median") is None:
        return "n/a"
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"


def _shape_text(res: dict) -> str:
    """The standard cases' voxels, ``512x512x150``."""
    return "x".join(str(v) for v in res.get("shape", STANDARD_SHAPE))


def _header_markdown(res: dict) -> list[str]:
    """Title, machine, load and inputs."""
    m = res["machine"]
    lines = [
        "# Benchmark: inference and training speed",
        "",
        f"Written by `python -m tools.benchmark` on {m['date']} (do not edit by hand: rerun it; the exact commands "
        'are in the appendix, "Commands").',
        "",
        f"Machine: {m['cpu']}, {m['cpu_cores']} cores, {m['memory_gb']} GB RAM, GPU: {m['gpu'] or 'none'}; "
        f"Python {m['python']}, torch {m['torch']} ({m['torch_threads']} threads), MONAI {m['monai']}, "
        f"numpy {m['numpy']}, nibabel {m['nibabel']}; {m['platform']}.",
        "",
        "The machine is shared with other jobs: load average "
        f"{', '.join(f'{v:.1f}' for v in m['load_average_at_start'])} at the start"
        + (
            f" and {', '.join(f'{v:.1f}' for v in res['load_average_at_end'])} at the end"
            if res.get("load_average_at_end")
            else ""
        )
        + ". Runs alternate ours/reference and medians (min-max) are given; compare figures within this report "
        "only.",
        "",
    ]
    mm = "x".join(f"{v:g}" for v in res.get("spacing", STANDARD_SPACING))
    lines += [
        f"Inputs: synthetic phantom CTs, {_shape_text(res)} voxels at {mm} mm, LPS, int16 gzip NIfTI "
        f"(`scripts.lib.phantom`, seeds {res.get('seeds')}). Our timed runs use the weights "
        f"`{res.get('timed_ckpt', 'random')}`: the network costs the same whatever its weights, but the "
        "post-processing costs what the mask covers, and random weights find 'liver' all over the body. The "
        "reference runs with random weights (`--load_pretrain False`); its post-processing costs the same for any "
        "mask.",
        "",
    ]
    return lines


def _targets_markdown(res: dict) -> list[str]:
    tg = res.get("targets", {})
    if not tg:
        return []
    lines = ["## Targets", "", "| target | measured | met |", "| --- | --- | --- |"]
    for t in tg.values():
        lines.append(f"| {t['target']} | {t['measured']} | {t['met']} |")
    return lines + [""]


def _e2e_rows(wl: str, r: dict) -> list[str]:
    """The end-to-end table's rows of one workload: ours, the reference, their ratio, and ONNX Runtime's."""
    lines = []
    for who in ("ours", "reference"):
        s = r[who]
        lines.append(
            f"| {wl} ({r['cases']} cases, {r['repeats']} runs) | {who} | {_sp(s['to_last_mask_s'])} | "
            f"{_sp(s['per_volume_s'])} | {_sp(s['startup_s'])} | {_sp(s['cpu_s'])} | "
            f"{_sp(s['peak_rss_gb'], 2)} |"
        )
    lines.append(
        f"| {wl} | **ours / reference** | **{_sp(r['ratio_to_last_mask'], 3)}** | "
        f"{_sp(r.get('ratio_per_volume'), 3)} | | {_sp(r['ratio_cpu'], 3)} | |"
    )
    if r.get("ours_onnx"):
        s = r["ours_onnx"]
        lines.append(
            f"| {wl} | ours, ONNX Runtime | {_sp(s['to_last_mask_s'])} | {_sp(s['per_volume_s'])} | "
            f"{_sp(s['startup_s'])} | {_sp(s['cpu_s'])} | {_sp(s['peak_rss_gb'], 2)} |"
        )
        lines.append(
            f"| {wl} | **ours, ONNX Runtime / reference** | **{_sp(r['ratio_onnx_to_last_mask'], 3)}** "
            f"| | | {_sp(r['ratio_onnx_cpu'], 3)} | |"
        )
    return lines


def _e2e_markdown(res: dict) -> list[str]:
    e2e = res.get("e2e")
    if not e2e:
        return []
    lines = [
        "## End to end (one `monai.bundle run` command per workload)",
        "",
        "Wall time from the command's start to the last mask written; per volume = (last mask - engine start) "
        "/ cases; start-up = engine start - command start; CPU = user+system of the process tree; peak RSS = "
        "sum over the process tree (workers included; an upper bound).",
        "",
        "| workload | pipeline | to last mask s | per volume s | start-up s | CPU s | peak RSS GB |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for wl, r in e2e.items():
        lines += _e2e_rows(wl, r)
    lines.append("")
    lines.append(
        "Commands: ours `python -m monai.bundle run inference --config_file configs/inference.yaml "
        "--meta_file configs/metadata.json --logging_file configs/logging.conf --input DIR/imagesTs "
        "--output_dir OUT --ckpt_path WEIGHTS.pt`; reference (from its folder) `python -m monai.bundle run "
        "--config_file configs/inference.json --meta_file configs/metadata.json --logging_file "
        "configs/logging.conf --dataset_dir DIR --output_dir OUT --load_pretrain False "
        "--dataloader#num_workers 0`; ours with ONNX Runtime adds configs/inference_onnx.yaml to the "
        "config files and `--onnx_path WEIGHTS.onnx` (`python -m scripts export onnx` of the same weights)."
    )
    return lines + [""]


def _e2e_trained_markdown(res: dict) -> list[str]:
    tr = res.get("e2e_trained")
    if not tr:
        return []
    lines = [
        "### With trained (phantom) weights",
        "",
        f"Config files {tr['config_files']}, weights `{tr['ckpt']}`; the fast path and the plain path alternate.",
        "",
        "| path | to last mask s | per volume s | peak RSS GB |",
        "| --- | --- | --- | --- |",
    ]
    for who in ("fast", "plain"):
        s = tr[who]
        lines.append(f"| {who} | {_sp(s['to_last_mask_s'])} | {_sp(s['per_volume_s'])} | {_sp(s['peak_rss_gb'], 2)} |")
    return lines + [""]


def _stages_markdown(res: dict) -> list[str]:
    st = res.get("stages")
    if not st:
        return []
    lines = [
        f"## Where the time goes (one {_shape_text(res)} volume, one process)",
        "",
        f"Median of {st['repeats']} rounds; variants rotate within each round. Each column reverts one "
        "optimisation (the before figure); `plain` reverts all of them (the pipeline before issue 6).",
        "",
    ]
    names = list(st["variants"])
    lines.append("| stage | " + " | ".join(names) + " |")
    lines.append("| --- |" + " --- |" * len(names))
    all_stages = []
    for n in names:
        all_stages += [s for s in st["variants"][n]["stages"] if s not in all_stages]
    for s in all_stages:
        lines.append(f"| {s} | " + " | ".join(_f(st["variants"][n]["stages"].get(s), 2) for n in names) + " |")
    lines.append("| **total** | " + " | ".join(f"**{_sp(st['variants'][n]['total_s'])}**" for n in names) + " |")
    lines.append("")
    lines += _compute_floor_markdown(st)
    if st.get("reference"):
        rf = st["reference"]
        lines += [
            f"Reference, same volume: network input {rf['network_input_shape']}, {rf['windows']} windows, "
            f"network {_f(rf['network_s'])} s.",
            "",
        ]
    return lines


def _compute_floor_markdown(st: dict) -> list[str]:
    """The stage section's FLOPs and compute floor."""
    cur, fl = st["variants"]["current"], st["compute"]
    lines = [
        "### Compute floor",
        "",
        f"Network input after preprocessing {cur['network_input_shape']} voxels; {cur['windows']} windows of "
        f"{fl['roi_size']} at {fl['flops_per_window'] / 1e9:.2f} GFLOP each = {fl['total_gflop']:.0f} GFLOP "
        f"per volume. Measured here: fp32 matmul {fl['matmul_gflops']:.0f} GFLOP/s, conv3d layer "
        f"{fl['conv_gflops']:.0f} GFLOP/s. Floor = FLOPs / matmul rate = {fl['floor_s']:.1f} s; the network "
        f"took {_f(cur['network_s']['median'])} s ({fl['network_gflops']:.0f} GFLOP/s, "
        f"{fl['network_vs_floor']:.1f}x the floor); the whole volume {_f(cur['total_s']['median'])} s "
        f"({fl['total_vs_floor']:.1f}x the floor). Network share of the volume: "
        f"{100 * fl['network_share']:.0f}%.",
        "",
    ]
    if fl.get("folder_total_gflop"):
        lines += [
            f"Standard folder: {fl['folder_windows']} windows, {fl['folder_total_gflop']:.0f} GFLOP, floor "
            f"{fl['folder_floor_s']:.1f} s"
            + (
                f"; end to end (to last mask) is {fl['folder_e2e_vs_floor']:.1f}x " "the floor."
                if fl.get("folder_e2e_vs_floor")
                else "."
            ),
            "",
        ]
    return lines


def _train_markdown(res: dict) -> list[str]:
    tn = res.get("train")
    if not tn:
        return []
    lines = [
        "## Training throughput (CPU)",
        "",
        f"`{tn['config_files']}` with {tn['overrides']} on {tn['cases']} phantom cases; "
        "data wait = time between asking the loader for a batch and getting it.",
        "",
        "| variant | steps/s | patches/s | median step s | data wait share | epochs x steps |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in tn["variants"].items():
        lines.append(
            f"| {name} | {r['steps_per_s']:.3f} | {r['patches_per_s']:.2f} | {_f(r['step_s_median'], 2)} | "
            f"{100 * r['data_wait_share']:.0f}% | {r['epochs']} x {r['steps'] // max(r['epochs'], 1)} |"
        )
    return lines + [""]


def _race_section(res: dict) -> list[str]:
    return race_markdown(res.get("race"))


def _rss600_markdown(res: dict) -> list[str]:
    r6 = res.get("rss600")
    if not r6:
        return []
    return [
        "## Large volume",
        "",
        f"One 512x512x600 volume (0.8x0.8x0.625 mm, 375 mm long): peak RSS {r6['peak_rss_gb']:.2f} GB (process tree), "
        f"largest process {r6['peak_rss_one_process_gb']:.2f} GB, {r6['to_last_mask_s']:.1f} s to the mask.",
        "",
    ]


def _dice_markdown(res: dict) -> list[str]:
    dc = res.get("dice")
    if not dc:
        return []
    lines = [
        "## Accuracy: fast path vs plain path, same trained weights",
        "",
        f"Weights `{dc['ckpt']}` ({dc['weights_note']}); config files {dc['config_files']}; held-out phantom "
        "cases (seeds not used in training), liver = label > 0.",
        "",
        "| case | Dice fast | Dice plain | difference | Dice fast vs plain | voxels differing |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in dc["cases"]:
        lines.append(
            f"| {r['case']} | {r['dice_fast']:.4f} | {r['dice_plain']:.4f} | "
            f"{r['dice_fast'] - r['dice_plain']:+.5f} | {r['dice_fast_vs_plain']:.5f} | "
            f"{r['voxels_differing']} |"
        )
    lines.append("")
    if dc.get("options"):
        lines += _dice_options_markdown(dc["options"])
    return lines


def _dice_options_markdown(opts: dict) -> list[str]:
    """The accuracy section's options table (mean Dice, windows and seconds of each option)."""
    lines = [
        "Options, run in one process with the same weights (mean over the cases; windows and network seconds "
        "are per case, with the geometry of the config files above):",
        "",
        "| variant | mean Dice | mean difference to current | windows | network s | volume s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    base = [r["dice"] for r in opts["current"]]
    for n in opts:
        d = [r["dice"] for r in opts[n]]
        lines.append(
            f"| {n} | {np.mean(d):.4f} | {np.mean(np.subtract(d, base)):+.5f} | "
            f"{np.mean([r['windows'] for r in opts[n]]):.1f} | "
            f"{np.median([r['network_s'] for r in opts[n]]):.2f} | "
            f"{np.median([r['total_s'] for r in opts[n]]):.2f} |"
        )
    return lines + [""]


def _gpu_markdown(res: dict) -> list[str]:
    gp = res.get("gpu")
    lines = ["## GPU", ""]
    if not gp or gp.get("not_run"):
        return lines + [
            f"Not run: {gp.get('not_run') if gp else 'step not selected'}. The step measures, on CUDA, the "
            "per-volume latency of the stage profile in fp32 and under fp16/bf16 autocast, and training "
            "throughput with AMP; run `python -m tools.benchmark --steps gpu` on a GPU machine.",
            "",
        ]
    lines += [
        f"GPU: {gp['gpu']} ({gp.get('cpu_cores')} CPU cores), weights `{gp.get('ckpt')}`.",
        "",
        "Stage profile of one standard volume in one process (median after a warm-up round):",
        "",
        "| variant | network s | volume s (in process) |",
        "| --- | --- | --- |",
    ]
    for name, v in gp["stages"].items():
        lines.append(f"| {name} | {_sp(v['network_s'], 3)} | {_sp(v['total_s'], 2)} |")
    fp32 = gp["stages"].get("fp32", {}).get("stages", {})
    if fp32:
        top = sorted(fp32.items(), key=lambda kv: -kv[1])[:6]
        lines += ["", "Largest fp32 stages: " + ", ".join(f"{k} {v:.2f} s" for k, v in top) + "."]
    if gp.get("e2e"):
        lines += _gpu_e2e_markdown(gp["e2e"])
    if gp.get("train"):
        t = gp["train"]
        lines.append("")
        lines.append(
            f"Training (AMP): {t['steps_per_s']:.2f} steps/s, {t['patches_per_s']:.1f} patches/s, data wait "
            f"{100 * t['data_wait_share']:.0f}%."
        )
    return lines + [""]


def _gpu_e2e_markdown(e2e: dict) -> list[str]:
    """The GPU section's end-to-end table of the standard folder."""
    lines = [
        "",
        "The standard folder end to end on the GPU machine (one `monai.bundle run` command each):",
        "",
        "| pipeline | to last mask s | per volume s | first mask s | steady s/volume | start-up s | peak RSS GB |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for who, v in e2e.items():
        if isinstance(v, dict) and "to_last_mask_s" in v:
            lines.append(
                f"| {who} | {_sp(v['to_last_mask_s'])} | {_sp(v['per_volume_s'], 2)} | "
                f"{_sp(v.get('first_mask_s'), 2)} | {_sp(v.get('steady_per_volume_s'), 2)} | "
                f"{_sp(v['startup_s'])} | {_sp(v['peak_rss_gb'], 2)} |"
            )
    return lines + [
        "",
        "Per volume: engine start to the last mask, over the cases (the target's figure). First mask: "
        "engine start to the first mask (reading and preparing the first case, the first windows, its "
        "post-processing). Steady: first to last mask, over the cases after the first (the loaders prepare "
        "the next cases meanwhile). `ours_no_X` reverts optimisation X (see the changes kept).",
    ]


def _notes_markdown(res: dict) -> list[str]:
    if not res.get("notes"):
        return []
    return ["## Notes", ""] + [f"- {n}" for n in res["notes"]] + [""]


def _appendix_markdown(res: dict) -> list[str]:
    lines = ["## Appendix: Commands", "", "The runs that wrote this report, in order (`; then` separates them):", ""]
    return lines + [f"- `{c}`" for c in str(res["command"]).split("; then ")] + [""]


def render_markdown(res: dict) -> str:
    """The human-readable report (docs/benchmark.md) from the results dict (docs/benchmark.json): the sections of
    ``REPORT_SECTIONS`` in order, each empty when its step has not run (but the GPU's, which says so)."""
    lines = []
    for section in REPORT_SECTIONS:
        lines += section(res)
    return "\n".join(lines)


def race_markdown(rc: dict | None) -> list[str]:
    """The report's section on the training race (``step_race``); nothing when the step did not run."""
    if not rc:
        return []
    names = {"ours": "ours (demo)", "ours_before": "ours before issue 17", "reference": "reference trainer"}
    lines = [
        "## Training: time to accuracy against the reference trainer (CPU, demo geometry)",
        "",
        f"The demo's training (`{rc['config_files']}`) and the reference's (`configs/train.json` with the overrides "
        f"below) on the same phantom split ({rc['cases']['training']} training, {rc['cases']['validation']} "
        f"validation cases of the demo's dataset), alternating, {rc['repeats']} runs each. Times run from the "
        "command's start (imports and caching included) to the end of the first validation at or above the Dice. "
        f"The reference stops at {rc['budget_factor']}x our time to 0.95. Steps/s count training only (validations "
        "left out); a reference step is 2 x 4 patches, ours 2 x 2.",
        "",
        "Peak RSS is summed over the process tree: forked loader workers share their parent's cache and count in full "
        "(an upper bound).",
        "",
        "| trainer | to Dice 0.90 s | to Dice 0.95 s | best val Dice | run s | steps/s | patches/s | peak RSS GB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for who in ("ours", "ours_before", "reference"):
        if who not in rc:
            continue
        r = rc[who]
        to = {k: _sp(r[k]) if r[k]["median"] is not None else "not reached" for k in ("to_0.90_s", "to_0.95_s")}
        lines.append(
            f"| {names[who]} | {to['to_0.90_s']} | {to['to_0.95_s']} | {_sp(r['best_dice'], 4)} | "
            f"{_sp(r['wall_s'])} | {_sp(r['steps_per_s'], 3)} | {_sp(r['patches_per_s'], 2)} | "
            f"{_sp(r['peak_rss_gb'], 2)} |"
        )
    reached = rc["reference_reached_0.95"]
    lines += [""]
    if rc["ratio_to_0.95"]["median"] is not None:
        lines.append(f"Ours / reference, time to Dice 0.95: **{_sp(rc['ratio_to_0.95'], 3)}**.")
    if reached < rc["repeats"]:
        lines.append(
            f"The reference reached 0.95 in {reached} of {rc['repeats']} runs. Where it did not, ours / its whole "
            f"run is an upper bound of the ratio: {_sp(rc['ratio_to_0.95_bound'], 3)}. Its best Dice by the time ours "
            f"reached 0.95: {_sp(rc['reference_dice_at_ours_0.95'], 4)}; by the end of our run: "
            f"{_sp(rc['reference_dice_at_ours_end'], 4)}."
        )
    lines += [
        "",
        f"Reference overrides (besides our split's cases as its `train#dataset#data` and `validate#dataset#data`): "
        f"`{json.dumps(rc['reference_overrides'])}`. Ours before issue 17: `{json.dumps(rc['before_overrides'])}`.",
        "",
        f"Commands: ours `{rc['commands']['ours']}`; reference (from its folder) `{rc['commands']['reference']}`.",
        "",
    ]
    return lines


def _stage_delta(res, variant, stages, after_variant="current") -> str:
    """'before -> after s' of the summed ``stages`` between a reverted variant and ``after_variant`` (the current
    config, or another reverted variant where two optimisations touch the same stage)."""
    v = res.get("stages", {}).get("variants", {})
    if variant not in v or after_variant not in v:
        return "(not measured)"
    before = sum(v[variant]["stages"].get(s, 0.0) for s in stages)
    after = sum(v[after_variant]["stages"].get(s, 0.0) for s in stages)
    return f"{before:.1f} s -> {after:.1f} s"


def _onnx_verdict(res: dict) -> str:
    """ONNX Runtime against PyTorch end to end, in words, from the e2e medians."""
    parts = []
    for wl in ("folder", "single"):
        e = res.get("e2e", {}).get(wl, {})
        ours = e.get("ours", {}).get("to_last_mask_s", {}).get("median")
        onnx = e.get("ours_onnx", {}).get("to_last_mask_s", {}).get("median")
        if ours and onnx:
            parts.append(f"{wl} {onnx:.1f} s vs {ours:.1f} s with PyTorch")
    return "end to end " + "; ".join(parts) if parts else "not measured in this run"


def _stage_total(res: dict, variant: str) -> str:
    """The stage profile's volume total of ``variant`` ('median (min-max)'), or 'n/a'."""
    v = res.get("stages", {}).get("variants", {})
    return _sp(v[variant]["total_s"]) if variant in v else "n/a"


def _changes_in_postprocessing(res: dict) -> list[str]:
    """Changes kept 1-5: the way back to the input grid, the report row, float32 resampling, the liver channel."""
    cur = res.get("stages", {}).get("variants", {}).get("current", {})
    total = functools.partial(_stage_total, res)
    invert_stages = ["post: Invertd", "post: AsDiscreted", "post: KeepLargestConnectedComponentd"]
    return [
        "1. The prediction goes back to the input's grid by resampling only the liver's box "
        "(`scripts/components/postprocess.py`; reverted by `tools/reverts/liver_box_resampling.yaml`). `Invertd` resampled "
        "the probability map over the whole input grid (39 M voxels for a 512x512x150 CT), then `AsDiscreted` and "
        "`KeepLargestConnectedComponentd` ran there. Now the largest component is found on the 2 mm network grid, "
        "its box (plus 2 voxels) is mapped to the input grid through the affines, and `SpatialResample` fills only "
        "that box, where the threshold and the largest component are taken: Invertd + AsDiscreted + "
        "KeepLargestConnectedComponentd "
        f"{_stage_delta(res, 'no liver_box_resampling', invert_stages)}"
        f" (the box step: {_f(cur.get('stages', {}).get(BOX_STAGE), 2)} s); volume "
        f"{total('no liver_box_resampling')} -> {total('current')} s. Same mask: tests/test_postprocess.py finds 0 "
        "differing voxels on a phantom, and the accuracy section compares whole runs.",
        "2. The report row (`scripts.components.handlers.case_measures`) counts the liver and averages its HU with a NumPy "
        "boolean mask instead of an int64 label map (the uint8 mask of change 1 made the old code take seconds).",
        "3. `Spacingd` computes in float32 (`dtype: $torch.float32`; MONAI's default is float64): Spacingd "
        f"{_stage_delta(res, 'no float32_resampling', ['pre: Spacingd'])}; volume "
        f"{total('no float32_resampling')} -> {total('current')} s.",
        "4. With 2 classes only the liver probability is resampled and thresholded at 0.5 (`Lambdad` keeps channel "
        "1), instead of both channels and an argmax. The mask is the same: resampling is linear, so the background "
        "channel is always 1 - liver, and argmax of [1 - p, p] is p >= 0.5 (up to exact ties). It halves the "
        "resampling and avoids torch's argmax over a 2-long channel axis, which is slow on this CPU: post-processing "
        f"{_stage_delta(res, 'no liver_channel_only', [BOX_STAGE])}; volume "
        f"{total('no liver_channel_only')} -> {total('current')} s. With 3 classes the argmax path is unchanged.",
        f"5. All together (`plain`, the pipeline before issue 6): volume {total('plain')} -> {total('current')} s "
        "in one process; the end-to-end tables above are for the current config.",
    ]


def _changes_in_reading_and_running(res: dict) -> list[str]:
    """Changes kept 6-13: requirements, the liver-box windows, the reader, the loader, batches, the writer, GPU."""
    v = res.get("stages", {}).get("variants", {})
    cur = v.get("current", {})
    total = functools.partial(_stage_total, res)
    return [
        "6. requirements.txt names the MONAI extras the bundle uses instead of `monai[all]`: `import monai` imports "
        "every optional package it finds, and [all] brings about 100 the bundle never uses (mlflow, transformers, "
        "torchvision, pandas, ...). Start-up is in the end-to-end table (both pipelines ran in that environment); "
        "the notes give the hand-timed import of both environments.",
        "7. The windows run only in the liver's box (`coarse_to_fine: true`, `scripts/components/inferers.py`). The image on "
        "the 2 mm grid is averaged down to 4 mm, where the same network and windows find the liver (one window for "
        "a trunk); the 96^3 windows then cover that box plus 8 voxels only, and the logits are pasted into a "
        "background-filled map of the full grid. The run falls back to windows over the whole body when the coarse "
        "pass finds no liver or the liver reaches a face of its box. Network (both passes) "
        f"{_stage_delta(res, 'no liver_box_inference', [NETWORK_STAGE])}, {cur.get('windows', 'n/a')} windows "
        f"instead of {v.get('no liver_box_inference', {}).get('windows', 'n/a')}; volume "
        f"{total('no liver_box_inference')} -> {total('current')} s. The Dice of the accuracy section compares it "
        "with the plain path.",
        "8. Replaced by MONAI's NibabelReader in 0.8.0, since the shares table measured it under 5 % end to end: NIfTI "
        "files were read by `scripts.components.inputs.NiftiReader`, MONAI's NibabelReader whose voxels were put in C "
        "order 8 slices at a time (MONAI's one-pass copy of nibabel's Fortran-order array strides across the whole "
        f"volume). LoadImaged {_stage_delta(res, 'no slab_reader', ['pre: LoadImaged'], 'no isal_gzip')} (both with "
        f"zlib's inflate); with change 9 too: volume {total('no slab_reader')} -> {total('current')} s.",
        "9. Replaced with it in 0.8.0 (under 5 % end to end, the shares table): the same reader inflated `.nii.gz` "
        "with ISA-L (the `isal` package) instead of zlib, whose inflate was the largest part of LoadImaged "
        f"(profiled): LoadImaged {_stage_delta(res, 'no isal_gzip', ['pre: LoadImaged'])}; volume "
        f"{total('no isal_gzip')} -> {total('current')} s.",
        "10. The loader is MONAI's ThreadDataLoader: with no loader processes (2 cores), a thread prepares the next "
        "case while the network runs on this one (reading and gzip release the GIL). It shows only in a whole run: "
        "the notes give the hand-timed folder with and without it; `plain` in the trained-weights table reverts it "
        "with the rest.",
        "11. On a CPU the network gets 2 windows per call (`sw_batch_size`; 4 on a GPU): here a window costs 0.17 s "
        "in a batch of 2, 0.22 s in a batch of 4 (activations out of cache) and 0.42 s alone (notes). Network "
        f"{_stage_delta(res, 'no cpu_batch_of_2', [NETWORK_STAGE])}; volume {total('no cpu_batch_of_2')} -> "
        f"{total('current')} s.",
        "12. Replaced by MONAI's NibabelWriter in 0.8.0 (the mask writer `mask_writer` is built on it and still "
        "writes atomically), since the shares table measured it under 5 % end to end: the mask was laid out "
        "x-fastest, as NIfTI stores voxels, and `scripts.components.postprocess.NiftiWriter` wrote it as it was, "
        "deflated by ISA-L, where MONAI's NibabelWriter makes the uint8 mask C-ordered and float64 on the way. "
        f"SaveImaged {_stage_delta(res, 'no nifti_writer', ['post: SaveImaged'])}; volume "
        f"{total('no nifti_writer')} -> {total('current')} s.",
        "13. On a GPU the image goes to the GPU after its HU copy is taken, and resampling, scaling and cropping run "
        "there (`preprocess_device`); the loaders are then threads (`use_thread_workers`), since CUDA does not run "
        "in forked loader processes. The GPU table gives both reverts end to end.",
    ]


def _left_alone_markdown(res: dict) -> list[str]:
    """What was measured and not adopted."""
    v = res.get("stages", {}).get("variants", {})
    cur = v.get("current", {})
    lines = ["## Measured and left alone", ""]
    lines.append(
        "- bf16 on the CPU: autocast of the network ran for over 2 minutes on one volume (fp32: 3 s) on this "
        "machine's EPYC, which has no AVX-512 BF16; bf16 weights and inputs too. An earlier machine with "
        "AVX-512 BF16 gave 17.1 -> 12.1 s, but MONAI's evaluator autocasts on CUDA only. Not adopted."
    )
    if "option: sw_overlap 0" in v and cur:
        so = v["option: sw_overlap 0"]
        opts = res.get("dice", {}).get("options", {})
        dice_diff = (
            (
                float(np.mean([r["dice"] for r in opts["option: sw_overlap 0"]]))
                - float(np.mean([r["dice"] for r in opts["current"]]))
            )
            if {"current", "option: sw_overlap 0"} <= set(opts)
            else None
        )
        lines.append(
            f"- Windows without overlap (`sw_overlap: 0`): {cur['windows']} -> {so['windows']} windows, network "
            f"{_sp(cur['network_s'])} -> {_sp(so['network_s'])} s; mean Dice "
            f"{'not measured' if dice_diff is None else f'{dice_diff:+.5f}'} on the phantom cases (options table "
            "of the accuracy section). Not adopted: `sw_overlap` is training geometry (shared with train.yaml's "
            "validation), windows that do not overlap leave seams at their borders, and over the whole body the "
            "same option lost 0.02 Dice (notes); a few phantom cases are too few to change it on."
        )
    if cur:
        save = cur["stages"].get("post: SaveImaged")
        load = cur["stages"].get("pre: LoadImaged")
        lines.append(
            f"- gzip I/O: reading the 45 MB input took {_f(load, 2)} s (in the loader's thread on 2 cores, "
            f"while the network runs on the previous case); writing the uint8 mask took {_f(save, 2)} s with "
            "ISA-L at level 1 (change 12, replaced in 0.8.0)."
        )
    lines += [
        "- Threads and loader workers: torch uses as many threads as cores (2). `num_workers` is a quarter of "
        "the cores, at most 4: none here, where the ThreadDataLoader's thread reads ahead instead. Measured by "
        "hand with the GPU-trained weights (notes): a loader process on 2 cores made the first volume seconds "
        "slower (it starts, and its reading competes with the network's 2 threads) and the folder no faster.",
        "- Full batches, tried and removed: every network call padded to `sw_batch_size` windows with empty ones "
        "(the coarse pass's single window became a batch of 2), so that no call has a batch of 1. One 96^3 window "
        "alone took 0.41 s and 0.34 s as a batch of 2 (hand-timed, notes), but in the stage profile the network "
        f"took {_sp(v.get('no full_batches', {}).get('network_s'))} s without it against "
        f"{_sp(cur.get('network_s'))} s with it (the `current` column, measured with it on): no gain. The "
        "end-to-end tables were measured with it on too; it was removed after this run.",
        "- TorchScript freezing and channels-last 3D, hand-timed on one 96^3 window (notes): a frozen trace ran a "
        "batch of 2 in 0.36 s against 0.34 s eager, after 3.4 s of tracing; channels-last 0.39 s against 0.41 s "
        "for a batch of 1. Neither adopted.",
        f"- ONNX Runtime (configs/inference_onnx.yaml): {_onnx_verdict(res)}. Not the default: it needs the "
        "export step (`python -m scripts export onnx`) after every training, and the PyTorch network is what "
        "model.ts, MONAI Deploy and TensorRT are built from.",
        "- Fewer or larger windows (whole volume in one pass, 128^3 or 192^3 windows, overlap 0.1 or 0): measured "
        "by hand with the GPU-trained phantom weights on the 5 standard cases (notes): every one lost more than "
        "0.005 mean Dice against the 96^3 windows with 0.25 overlap that the network was trained and validated "
        "with (instance normalisation sees other statistics in a larger window). Not adopted.",
        "",
    ]
    return lines


def decisions_markdown(res: dict) -> list[str]:
    """What the benchmark led to change in configs/inference.yaml, and what was measured and left alone."""
    lines = ["## Changes kept (before -> after, from the stage table)", ""]
    lines += _changes_in_postprocessing(res) + _changes_in_reading_and_running(res) + [""]
    return lines + _left_alone_markdown(res)


def shares_markdown(res: dict) -> list[str]:
    """The report's section on what each bespoke component buys end to end (``step_shares``)."""
    sh = res.get("shares")
    if not sh:
        return []
    lines = [
        "## What each bespoke component buys (end to end)",
        "",
        f"A folder of {sh['cases']} of the standard cases ({_shape_text(sh)} voxels), "
        f"one `monai.bundle run inference` command per run, weights `{sh['ckpt']}`. In each of the {sh['repeats']} "
        "repeats ours runs once before "
        "each revert (ours, revert A, ours, revert B, ...; the reverts' order rotates between repeats). With: the "
        "ours runs paired with that revert; without: the revert's runs; seconds from the command's start to the "
        "last mask, median (min-max). Share = (without - with) / without of the medians, with the range of the "
        "per-repeat pairs in brackets.",
        "",
        "| component | revert file | with s | without s | share % | under 5 % |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    replaced = False
    for row in sh["rows"]:
        pairs = row["pair_shares"]
        bracket = f" ({pairs['min']:.1f} to {pairs['max']:.1f})" if pairs.get("median") is not None else ""
        file = _record_file(row["file"])
        replaced |= file != row["file"]
        lines.append(
            f"| {row['component']} | {file} | {_sp(row['with_s'])} | {_sp(row['without_s'])} | "
            f"{_f(row['share'])}{bracket} | {'yes' if row['under_5'] else 'no'} |"
        )
    lines.append("")
    if any(r.get("derived") for r in sh["rows"]):
        lines += [
            "The slab copy's row adds no runs: with = the `isal_gzip` revert's runs (NiftiReader with zlib's "
            "inflate), without = the `slab_reader` revert's (MONAI's NibabelReader, zlib's inflate too), paired by "
            "repeat.",
            "",
        ]
    if replaced:
        lines += [
            "Rows whose revert file is in `tools/reverts/replaced/` are the record: those components (the NiftiReader "
            "with its ISA-L inflate, the mask writer NiftiWriter) bought under 5 % end to end and were replaced by "
            "MONAI's NibabelReader and NibabelWriter in 0.8.0; their reverts no longer apply to the config.",
            "",
        ]
    return lines


def _record_file(file: str) -> str:
    """A shares row's revert file as it stands now: those of ``REPLACED`` moved to ``tools/reverts/replaced/``."""
    for name in REPLACED:
        file = file.replace(f"tools/reverts/{name}.yaml", f"tools/reverts/replaced/{name}.yaml")
    return file


def inference_path_markdown(res: dict) -> list[str]:
    """The report's section on the Python that configs/inference.yaml runs, in lines (``tools.imports``)."""
    ip = res.get("inference_path")
    if not ip:
        return []
    lines = [
        "## Inference path: bespoke Python against config",
        "",
        f"The package modules that `{ip['config']}` runs (`python -m tools.imports`): those its `scripts.<...>` "
        "names denote, everything they import from the package, transitively (imports inside functions "
        "included), and the packages above them. Lines: raw lines, blank lines, comments and docstrings included"
        + (
            "; code: lines of code as `cloc` counts them (no blank line, comment or docstring), for the config too."
            if "python_code_lines" in ip
            else " (this run counted no lines of code)."
        ),
        "",
    ]
    if "python_code_lines" not in ip:  # a result recorded before the code counts
        lines += ["| module | file | lines |", "| --- | --- | --- |"]
        lines += [f"| {module} | {row['path']} | {row['lines']} |" for module, row in ip["modules"].items()]
        return lines + [
            f"| **{len(ip['modules'])} modules** | | **{ip['python_lines']}** |",
            "",
            f"`{ip['config']}`: {ip['config_lines']} lines. Python / config: **{_f(ip['ratio'])}** lines of Python "
            "per line of config.",
            "",
        ]
    lines += ["| module | file | lines | code |", "| --- | --- | --- | --- |"]
    for module, row in ip["modules"].items():
        lines.append(f"| {module} | {row['path']} | {row['lines']} | {row.get('code_lines', '')} |")
    lines += [
        f"| **{len(ip['modules'])} modules** | | **{ip['python_lines']}** | **{ip['python_code_lines']}** |",
        "",
        f"`{ip['config']}`: {ip['config_lines']} lines, {ip.get('config_code_lines', '-')} of code. Python / config: "
        f"**{_f(ip['ratio'])}** lines of Python per line of config; **{_f(ip.get('code_ratio'))}** in lines of code.",
        "",
    ]
    before = res.get("inference_path_before")
    if before:
        lines += [
            f"Before (commit {before.get('commit', '?')}, the same count): {len(before['modules'])} modules, "
            f"{before['python_lines']} lines ({before.get('python_code_lines', '-')} of code) against "
            f"{before['config_lines']} lines ({before.get('config_code_lines', '-')} of code) of config: "
            f"**{_f(before['ratio'])}** in lines, **{_f(before.get('code_ratio'))}** in lines of code.",
            "",
        ]
    return lines


def _commit(folder) -> str:
    """The short git commit of the checkout ``folder``, or "unknown"."""
    proc = subprocess.run(["git", "-C", str(folder), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return proc.stdout.strip() or "unknown"


#: The report's sections, in order: each takes the results dict and returns its lines (none when not run).
REPORT_SECTIONS = (
    _header_markdown,
    _targets_markdown,
    _e2e_markdown,
    _e2e_trained_markdown,
    _stages_markdown,
    _train_markdown,
    _race_section,
    _rss600_markdown,
    _dice_markdown,
    _gpu_markdown,
    shares_markdown,
    inference_path_markdown,
    decisions_markdown,
    _notes_markdown,
    _appendix_markdown,
)


def evaluate_targets(res: dict) -> dict:
    """The issue's targets, each with the measured figure and whether it is met (None: not measured)."""
    out = {}
    e2e = res.get("e2e", {})

    def add(key, target, value, limit, fmt):
        met = None if value is None else bool(value <= limit)
        out[key] = {
            "target": target,
            "value": value,
            "measured": "not measured" if value is None else fmt.format(value),
            "met": {None: "not measured", True: "yes", False: "NO"}[met],
        }

    fold = e2e.get("folder", {}).get("ratio_to_last_mask", {}).get("median")
    single = e2e.get("single", {}).get("ratio_to_last_mask", {}).get("median")
    add("folder_ratio", "5-volume folder <= 0.2x reference", fold, 0.2, "{:.3f}x (median of per-pair ratios)")
    add("single_ratio", "single volume <= 0.35x reference", single, 0.35, "{:.3f}x (median of per-pair ratios)")
    for wl, limit in (("folder", 0.2), ("single", 0.35)):
        onnx = e2e.get(wl, {}).get("ratio_onnx_to_last_mask", {}).get("median")
        if onnx is not None:
            add(
                f"{wl}_ratio_onnx",
                f"{'5-volume folder' if wl == 'folder' else 'single volume'} <= {limit}x "
                f"reference, with ONNX Runtime (configs/inference_onnx.yaml)",
                onnx,
                limit,
                "{:.3f}x (median of per-pair ratios)",
            )
    rss = e2e.get("folder", {}).get("ours", {}).get("peak_rss_gb", {}).get("max")
    add("rss150", "peak RSS <= 4 GB at 512x512x150", rss, 4.0, "{:.2f} GB (largest run)")
    r6 = res.get("rss600", {}).get("peak_rss_gb")
    add("rss600", "peak RSS <= 8 GB at 512x512x600", r6, 8.0, "{:.2f} GB")
    dc = res.get("dice")
    worst = max(abs(r["dice_fast"] - r["dice_plain"]) for r in dc["cases"]) if dc else None
    add("dice", "fast path Dice within 0.005 of plain", worst, 0.005, "largest |difference| {:.5f}")
    rc = res.get("race") or {}
    ratio, fmt = (rc.get("ratio_to_0.95") or {}).get("median"), "{:.3f}x (median of per-pair ratios)"
    if ratio is None and rc.get("reference_reached_0.95") == 0:  # it never got there: its budget gives a bound
        ratio = (rc.get("ratio_to_0.95_bound") or {}).get("max")
        fmt = "below {:.3f}x (the reference did not reach 0.95 within its budget in any run)"
    add("race", "CPU, demo geometry: time to val Dice 0.95 <= 0.25x reference trainer", ratio, 0.25, fmt)
    gp = res.get("gpu") or {}
    lat = None
    if gp.get("e2e", {}).get("ours"):  # the runner on the standard folder: per volume once started
        lat = gp["e2e"]["ours"]["per_volume_s"]["median"]
    elif gp.get("stages"):
        lat = min(v["total_s"]["median"] for v in gp["stages"].values())
    add(
        "gpu_latency",
        f"GPU: <= 1 s per standard volume (H100; measured on {gp.get('gpu', 'no GPU')})",
        lat,
        1.0,
        "{:.2f} s",
    )
    return out


def write_report(res: dict, report_dir: str) -> tuple[str, str]:
    """Write ``benchmark.json`` and ``benchmark.md`` atomically into ``report_dir``; return both paths."""
    from scripts.lib.fileio import write_text

    res["targets"] = evaluate_targets(res)
    fold, compute = res.get("e2e", {}).get("folder"), res.get("stages", {}).get("compute")
    if fold and compute:
        compute["folder_e2e_vs_floor"] = fold["ours"]["to_last_mask_s"]["median"] / compute["folder_floor_s"]
    json_path = write_text(os.path.join(report_dir, "benchmark.json"), json.dumps(res, indent=1) + "\n")
    md_path = write_text(os.path.join(report_dir, "benchmark.md"), render_markdown(res) + "\n")
    return md_path, json_path


# ------------------------------------------------------------------------------------------------------------------
# steps
# ------------------------------------------------------------------------------------------------------------------


def step_e2e(args, res, work, cases_dir, ckpt):
    single_dir = os.path.join(work, "single")
    os.makedirs(os.path.join(single_dir, "imagesTs"), exist_ok=True)
    first = sorted(glob.glob(os.path.join(cases_dir, "imagesTs", "*.nii.gz")))[0]
    link = os.path.join(single_dir, "imagesTs", os.path.basename(first))
    if not os.path.exists(link):
        os.symlink(first, link)
    res["e2e"] = {}
    onnx_path = None
    if args.onnx:
        from scripts.components import export

        onnx_path = os.path.join(work, "weights", os.path.splitext(os.path.basename(ckpt))[0] + ".onnx")
        export.export_onnx(
            ckpt,
            onnx_path,
            config_files=[os.path.join(BUNDLE_ROOT, INFERENCE_CONFIG)],
            meta_file=os.path.join(BUNDLE_ROOT, "configs/metadata.json"),
        )
    log("e2e: standard folder")
    res["e2e"]["folder"] = compare_alternating(
        cases_dir, work, ckpt, args.num_cases, args.repeats, args.reference_dir, "folder", onnx_path
    )
    log("e2e: single volume")
    res["e2e"]["single"] = compare_alternating(
        single_dir, work, ckpt, 1, args.repeats, args.reference_dir, "single", onnx_path
    )


def shares_folder(cases_dir: str, folder: str, n_cases: int) -> int:
    """``folder/imagesTs``: links to the first ``n_cases`` images of the standard folder (all with 0); returns how
    many."""
    images = sorted(glob.glob(os.path.join(cases_dir, "imagesTs", "*.nii.gz")))[: n_cases or None]
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(os.path.join(folder, "imagesTs"))
    for image in images:
        os.symlink(image, os.path.join(folder, "imagesTs", os.path.basename(image)))
    return len(images)


def step_shares(args, res, work, cases_dir, ckpt):
    """What each bespoke component buys end to end: the folder with the current config and with each revert of
    ``--shares``, one command per run, alternating (ours, revert A, ours, revert B, ...; the reverts' order rotates
    each repeat); ``summarize_shares`` makes the table."""
    replaced = [name for name in args.shares if name in REPLACED]
    if replaced:
        raise ValueError(
            f"--shares: {replaced} replaced by MONAI's in 0.8.0: tools/reverts/replaced/ is their record, out of use"
        )
    reverts = revert_overrides()
    unknown = [name for name in args.shares if name not in reverts]
    if unknown:
        raise ValueError(f"--shares: no revert {unknown} (tools/reverts/ has {sorted(reverts)})")
    folder = os.path.join(work, "shares")
    n_cases = shares_folder(cases_dir, folder, args.share_cases)
    names = list(args.shares)
    runs = {name: {"with": [], "without": []} for name in names}
    log(f"shares: {n_cases} cases, the current config against {len(names)} reverts, {args.repeats} repeat(s)")
    for r in range(args.repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            for side, overrides in (("with", None), ("without", reverts[name])):
                out = os.path.join(work, f"shares_{name}_{side}_{r}")
                run = run_ours(folder, out, ckpt, n_cases, overrides=overrides)
                run["load_average"] = os.getloadavg()[0]
                runs[name][side].append(run)
                shutil.rmtree(out, ignore_errors=True)  # the masks; the log (out + ".log") stays
                log(f"  shares {name} {side} run {r + 1}/{args.repeats}: {run['to_last_mask_s']:.1f} s to last mask")
    res["shares"] = {
        "cases": n_cases,
        "shape": list(args.shape),
        "spacing": list(args.spacing),
        "repeats": args.repeats,
        "ckpt": ckpt,
        "measure": "to_last_mask_s",
        "rows": summarize_shares(runs),
        "load_average": spread([run["load_average"] for sides in runs.values() for v in sides.values() for run in v]),
    }


def _share_row(component: str, file: str, with_s: list, without_s: list) -> dict:
    """One row of the shares table from paired times (seconds with and without the component, by repeat)."""
    with_, without = spread(with_s), spread(without_s)
    share = None
    if with_["median"] is not None and without["median"]:
        share = 100 * (without["median"] - with_["median"]) / without["median"]
    pairs = [100 * (b - a) / b for a, b in zip(with_s, without_s, strict=True) if a is not None and b]
    return {
        "component": component,
        "file": file,
        "with_s": with_,
        "without_s": without,
        "share": share,
        "pair_shares": spread(pairs),
        "under_5": share is not None and share < 5.0,
    }


def summarize_shares(runs: dict, measure: str = "to_last_mask_s") -> list[dict]:
    """The shares table: ``runs`` is ``{revert: {"with": [run, ...], "without": [run, ...]}}`` (by repeat; "with"
    the current config's run paired with the revert's). A row per revert."""
    rows = []
    for name, sides in runs.items():
        with_s, without_s = ([run.get(measure) for run in sides[k]] for k in ("with", "without"))
        rows.append(_share_row(COMPONENTS.get(name, name), f"tools/reverts/{name}.yaml", with_s, without_s))
    return rows


def step_stages(args, res, work, cases_dir, ckpt):
    from monai.bundle import ConfigParser

    image = sorted(glob.glob(os.path.join(cases_dir, "imagesTs", "*.nii.gz")))[0]
    reverts = revert_overrides()
    variants = {"current": {}}
    for name, ov in reverts.items():
        if name not in E2E_ONLY | GPU_ONLY:
            variants[name if name == "plain" else f"no {name}"] = {"overrides": ov}
    variants.update(OPTIONS)
    log("stages: per-transform timings (current config and each optimisation reverted)")
    raw = run_worker(
        "stages",
        {
            "image": image,
            "ckpt": ckpt,
            "config_files": [INFERENCE_CONFIG],
            "variants": variants,
            "repeats": args.repeats,
        },
        work,
    )
    summary = summarize_stages(raw)
    cur = summary["current"]
    mm, cv = matmul_rate(), conv_rate()
    cfg = ConfigParser()
    cfg.read_config(os.path.join(BUNDLE_ROOT, INFERENCE_CONFIG))
    roi = cfg.get_parsed_content("patch_size")
    total_gflop = cur["windows"] * cur["flops_per_window"] / 1e9
    compute = {
        "roi_size": roi,
        "flops_per_window": cur["flops_per_window"],
        "total_gflop": total_gflop,
        "matmul_gflops": mm,
        "conv_gflops": cv,
        "floor_s": total_gflop / mm,
        "network_gflops": total_gflop / cur["network_s"]["median"],
        "network_vs_floor": cur["network_s"]["median"] / (total_gflop / mm),
        "total_vs_floor": cur["total_s"]["median"] / (total_gflop / mm),
        "network_share": cur["network_s"]["median"] / cur["total_s"]["median"],
    }
    # windows over the whole folder: preprocessing each case, then counting the inferer's windows
    pre = _parsed(["preprocessing", "inferer", "network"])
    from scripts.lib.weights import load_into

    load_into(pre["network"], ckpt)
    pre["network"].eval()
    windows = 0
    for path in sorted(glob.glob(os.path.join(cases_dir, "imagesTs", "*.nii.gz"))):
        x = pre["preprocessing"]({"image": path})["image"]
        windows += count_windows(pre["inferer"], x[None], network=pre["network"])
    compute["folder_windows"] = windows
    compute["folder_total_gflop"] = windows * cur["flops_per_window"] / 1e9
    compute["folder_floor_s"] = compute["folder_total_gflop"] / mm
    res["stages"] = {
        "repeats": args.repeats,
        "image": image,
        "variants": summary,
        "compute": compute,
        "overrides": reverts,
    }
    if args.reference_dir and os.path.isdir(args.reference_dir):
        res["stages"]["reference"] = profile_reference(image, args.reference_dir)


def _parsed(ids, config_files=(INFERENCE_CONFIG,)):
    from monai.bundle import ConfigParser

    cfg = ConfigParser()
    cfg.read_config([os.path.join(BUNDLE_ROOT, c) for c in config_files])
    cfg["bundle_root"] = BUNDLE_ROOT
    cfg["input"] = BUNDLE_ROOT  # never read: only the transforms are used
    cfg["datalist"] = []
    return {i: cfg.get_parsed_content(i) for i in ids}


def profile_reference(image: str, reference_dir: str) -> dict:
    """Windows and network time of the reference pipeline on one volume (network only; in this process)."""
    import torch
    from monai.bundle import ConfigParser

    cfg = ConfigParser()
    cfg.read_config(os.path.join(reference_dir, "configs", "inference.json"))
    cfg["dataset_dir"] = os.path.dirname(os.path.dirname(image))
    pre, inferer, net = (cfg.get_parsed_content(k) for k in ("preprocessing", "inferer", "network"))
    t0 = time.perf_counter()
    x = pre({"image": image})["image"][None]
    t1 = time.perf_counter()
    counted = WindowCounter(net.eval())
    with torch.no_grad():
        inferer(x, counted)
    t2 = time.perf_counter()
    return {
        "network_input_shape": list(x.shape[2:]),
        "windows": counted.windows,
        "preprocessing_s": t1 - t0,
        "network_s": t2 - t1,
        "total_s": None,
    }


def step_train(args, res, work):
    from scripts.lib import phantom

    data = os.path.join(work, "train_data")
    if not os.path.isfile(os.path.join(data, "dataset.json")):
        phantom.write_dataset(data, num_train=args.train_cases, num_test=0, seed=7)
    base = {
        "dataset_dir": data,
        "output_dir": os.path.join(work, "train_runs"),
        "ckpt_dir": os.path.join(work, "train_models"),
        "epochs": args.train_epochs,
        "fold": -1,
        "val_interval": 1000,
        "allow_dataset_warnings": True,
    }
    variants = {"train.yaml as is": {}}
    if args.train_variants:
        variants["DataLoader, 2 worker processes (before issue 17)"] = {
            "train#dataloader#_target_": "DataLoader",
            "loader_workers": 2,
        }
    out = {
        "config_files": ["configs/train.yaml", "configs/demo.yaml"],
        "overrides": base,
        "cases": args.train_cases,
        "variants": {},
    }
    for name, ov in variants.items():
        log(f"train: {name}")
        shutil.rmtree(base["output_dir"], ignore_errors=True)
        shutil.rmtree(base["ckpt_dir"], ignore_errors=True)
        out["variants"][name] = run_worker(
            "train", {"config_files": out["config_files"], "overrides": {**base, **ov}}, work
        )
        r = out["variants"][name]
        log(f"  {r['steps_per_s']:.3f} steps/s, data wait {100 * r['data_wait_share']:.0f}%")
    res["train"] = out


# The reference trainer's transforms that reference_train_overrides changes, by index (refused when they move).
REFERENCE_TRAIN_TARGETS = {
    "train#deterministic_transforms#3": "Spacingd",
    "train#deterministic_transforms#5": "EnsureTyped",
    "train#random_transforms#0": "RandCropByPosNegLabeld",
}
RACE_THRESHOLDS = (0.90, 0.95)
# the demo's training before issue 17: worker-process loaders, float32 on the CPU, 80 epochs validated every 10
RACE_BEFORE = {
    "train#dataloader#_target_": "DataLoader",
    "validate#dataloader#_target_": "DataLoader",
    "loader_workers": 2,
    "cpu_bf16": False,
    "epochs": 80,
    "val_interval": 10,
}
_STAMP = r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) - "


def reference_train_overrides(reference_dir: str, split: dict, pixdim, patch_size, epochs: int = 100000) -> dict:
    """What the reference trainer (its configs/train.json) needs to train on our split at our geometry.

    - ``train#dataset#data`` / ``validate#dataset#data``: our split's training and validation cases (it otherwise
      globs ``imagesTr`` and keeps the last 9 cases for validation);
    - the grid (its Spacingd ``pixdim``), the patch (its RandCropByPosNegLabeld ``spatial_size``) and the validation
      window (``validate#inferer#roi_size``): ours;
    - the label: the phantom's tumour (2) joins the liver (1), as in ours (``AsDiscreted`` threshold 0.5, before
      its EnsureTyped), since its 2-class one-hot has no room for a third value;
    - ``epochs``: enough to run until the race stops it.
    Everything else (network with batch norm, DiceCE, Novograd lr 0.002, 2 x 4 patches a step, validation every
    epoch with overlap 0.5, 4 loader workers, its AMP flag) is the reference's own. Raises ValueError when the
    transforms changed here are no longer where ``REFERENCE_TRAIN_TARGETS`` expects them.
    """
    from monai.bundle import ConfigParser

    cfg = ConfigParser.load_config_file(os.path.join(reference_dir, "configs", "train.json"))
    parser = ConfigParser(cfg)
    for key, name in REFERENCE_TRAIN_TARGETS.items():
        found = _target_name(parser[key])
        if found != name:
            raise ValueError(f"{reference_dir}: train.json's {key} is {found}, not {name}: update the benchmark")

    def pairs(items):
        return [{"image": c["image"], "label": c["label"]} for c in items]

    ensure = parser["train#deterministic_transforms#5"]
    return {
        "train#dataset#data": pairs(split["training"]),
        "validate#dataset#data": pairs(split["validation"]),
        "train#deterministic_transforms#3#pixdim": list(pixdim),
        "train#deterministic_transforms#5": {
            "_target_": "Compose",
            "transforms": [{"_target_": "AsDiscreted", "keys": "label", "threshold": 0.5}, ensure],
        },
        "train#random_transforms#0#spatial_size": list(patch_size),
        "validate#inferer#roi_size": list(patch_size),
        "epochs": epochs,
    }


def _hms(text: str) -> float:
    h, m, sec = text.split(":")
    return int(h) * 3600 + int(m) * 60 + float(sec)


def parse_training_log(log_path: str, start_epoch: float) -> dict:
    """Read a ``monai.bundle run`` training log (MONAI's StatsHandler lines, stamped ``YYYY-mm-dd HH:MM:SS,mmm``).

    Returns the validations as ``[[seconds since start_epoch, mean Dice], ...]``, the training iterations, and the
    seconds of training proper: from the first to the last iteration line, less the evaluator's own run times.
    """
    vals, iters, evals = [], [], []
    with open(log_path, errors="replace") as f:
        for line in f:
            m = re.match(_STAMP, line)
            if not m:
                continue
            t = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp() - start_epoch
            if "Metrics --" in line and (v := re.search(r"val_mean_dice: ([0-9.]+)", line)):
                vals.append([round(t, 2), float(v.group(1))])
            elif re.search(r"Epoch: \d+/\d+, Iter: \d+/\d+", line):
                iters.append(t)
            elif "SupervisedEvaluator" in line and (d := re.search(r"Engine run finished\. Time taken: (\S+)", line)):
                evals.append((t, _hms(d.group(1))))
    train_s = None
    eval_s = sum(s for _, s in evals)
    if len(iters) > 1:  # the validations between the first and the last iteration are not training
        train_s = iters[-1] - iters[0] - sum(s for t, s in evals if iters[0] < t < iters[-1])
    return {"validations": vals, "steps": len(iters), "train_s": train_s, "eval_s": eval_s}


def time_to(validations, threshold: float):
    """Seconds to the first validation with mean Dice >= ``threshold`` (None if none reached it)."""
    return next((t for t, d in validations if d >= threshold), None)


def dice_at(validations, seconds: float):
    """The best mean Dice of the validations done within ``seconds`` (None if there were none)."""
    done = [d for t, d in validations if t <= seconds]
    return max(done) if done else None


def summarize_training(run: dict, patches_per_step: int) -> dict:
    """Add the log's figures to a run: validations, times to each of RACE_THRESHOLDS, best Dice, steps/s."""
    run.update(parse_training_log(run["log"], run["start_epoch"]))
    for th in RACE_THRESHOLDS:
        run[f"to_{th:.2f}_s"] = time_to(run["validations"], th)
    run["best_dice"] = max((d for _, d in run["validations"]), default=None)
    if run["train_s"]:
        run["steps_per_s"] = (run["steps"] - 1) / run["train_s"]
        run["patches_per_s"] = run["steps_per_s"] * patches_per_step
    return run


def step_race(args, res, work):
    """The training race (module docstring, ``race``): our demo training, optionally ours before issue 17, and the
    reference trainer on the demo's phantom split, alternating ``--repeats`` times."""
    from scripts.lib import phantom
    from scripts.lib.datalist import split as make_split
    from scripts.lib.fileio import write_text

    if not args.reference_dir:
        raise ValueError("the race step trains the reference bundle too: give --reference_dir")
    data = os.path.join(work, "race_data")
    if not os.path.isfile(os.path.join(data, "dataset.json")):  # the demo's dataset: 12 training cases, seed 0
        phantom.write_dataset(data, num_train=12, num_test=0, seed=0)
    configs = [os.path.join(BUNDLE_ROOT, c) for c in ("configs/train.yaml", "configs/demo.yaml")]
    parsed = _parsed(["pixdim", "patch_size", "batch_size", "num_samples"], configs)
    split = make_split(os.path.join(data, "dataset.json"), fold=0, num_folds=5, seed=0, base_dir=data)
    ref_json = os.path.join(work, "race_reference_overrides.json")
    overrides = reference_train_overrides(args.reference_dir, split, parsed["pixdim"], parsed["patch_size"])
    write_text(ref_json, json.dumps(overrides, indent=1) + "\n")
    pipelines = ["ours"] + (["ours_before"] if args.race_before else []) + ["reference"]
    runs = {p: [] for p in pipelines}
    patches = {"ours": parsed["batch_size"] * parsed["num_samples"], "reference": 2 * 4}
    patches["ours_before"] = patches["ours"]
    for r in range(args.repeats):
        for who in pipelines:
            out = os.path.join(work, f"race_{who}_{r}")
            shutil.rmtree(out, ignore_errors=True)
            os.makedirs(out)
            budget = None
            if who == "reference":
                ours = runs["ours"][-1]
                budget = args.race_budget * (ours.get("to_0.95_s") or ours["wall_s"])
                cmd = reference_train_command(ref_json, out)
                run = run_monitored(cmd, args.reference_dir, out + ".log", budget=budget)
            else:
                extra = RACE_BEFORE if who == "ours_before" else {}
                cmd = ours_train_command(configs, data, out, extra)
                run = run_monitored(cmd, BUNDLE_ROOT, out + ".log")
            run["load_average"] = os.getloadavg()[0]
            runs[who].append(summarize_training(run, patches[who]))
            log(
                f"  race {who} run {r + 1}/{args.repeats}: 0.95 at {_f(run['to_0.95_s'])} s, best Dice "
                f"{_f(run['best_dice'], 4)}, {run['wall_s']:.0f} s" + (" (stopped at its budget)" if budget else "")
            )
    keys = ["to_0.90_s", "to_0.95_s", "best_dice", "wall_s", "steps_per_s", "patches_per_s", "peak_rss_gb"]
    keys += ["load_average"]
    out = {
        "cases": {"training": len(split["training"]), "validation": len(split["validation"])},
        "config_files": ["configs/train.yaml", "configs/demo.yaml"],
        "before_overrides": RACE_BEFORE,
        "reference_overrides": {k: v for k, v in overrides.items() if not k.endswith("#data")},
        "budget_factor": args.race_budget,
        "repeats": args.repeats,
        "commands": {
            "ours": _shown(ours_train_command(configs, "DATA", "OUT", {})),
            "reference": _shown(reference_train_command("OVERRIDES.json", "OUT")),
        },
        "runs": {who: runs[who] for who in pipelines},
    }
    for who in pipelines:
        out[who] = {k: spread([r.get(k) for r in runs[who]]) for k in keys}
    # Dice the reference had reached by the time ours reached 0.95 (and by ours' whole run)
    pairs = list(zip(runs["ours"], runs["reference"], strict=True))
    out["reference_dice_at_ours_0.95"] = spread(
        [dice_at(f["validations"], o["to_0.95_s"]) for o, f in pairs if o["to_0.95_s"]]
    )
    out["reference_dice_at_ours_end"] = spread([dice_at(f["validations"], o["wall_s"]) for o, f in pairs])
    ratios = [o["to_0.95_s"] / f["to_0.95_s"] for o, f in pairs if o["to_0.95_s"] and f["to_0.95_s"]]
    out["ratio_to_0.95"] = spread(ratios)
    out["reference_reached_0.95"] = sum(1 for f in runs["reference"] if f["to_0.95_s"])
    # a bound where the reference never got there: its budget (race_budget x ours) is a lower bound of its time
    out["ratio_to_0.95_bound"] = spread(
        [o["to_0.95_s"] / f["wall_s"] for o, f in pairs if o["to_0.95_s"] and not f["to_0.95_s"]]
    )
    res["race"] = out


def _shown(cmd: list[str]) -> str:
    """A command as the report shows it: ``python`` for this interpreter, paths in the bundle relative to it."""
    shown = ["python" if c == sys.executable else c.replace(BUNDLE_ROOT + os.sep, "") for c in cmd]
    return shlex.join([c if c != BUNDLE_ROOT else "." for c in shown])


def ours_train_command(configs, data: str, out: str, overrides: dict) -> list[str]:
    """The demo's training command (``python -m scripts demo``, step 4) on ``data``, writing under ``out``."""
    cmd = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", json.dumps(list(configs))]
    cmd += ["--meta_file", os.path.join(BUNDLE_ROOT, "configs", "metadata.json")]
    cmd += ["--logging_file", os.path.join(BUNDLE_ROOT, "configs", "logging.conf"), "--bundle_root", BUNDLE_ROOT]
    cmd += ["--dataset_dir", data, "--output_dir", out + "/runs", "--ckpt_dir", out + "/models", "--seed", "0"]
    return cmd + cli_overrides(overrides)


def reference_train_command(overrides_json: str, out: str) -> list[str]:
    """The reference bundle's training command with the race's overrides file merged; run from its folder."""
    files = json.dumps(["configs/train.json", overrides_json])
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", files, "--meta_file", "configs/metadata.json"]
    return cmd + ["--logging_file", "configs/logging.conf", "--bundle_root", out]


def step_rss600(args, res, work, ckpt):
    folder = os.path.join(work, "thin", "imagesTs")
    log("rss600: 512x512x600 volume")
    make_thin_slice_case(os.path.join(folder, "ct_thin.nii.gz"))
    res["rss600"] = run_ours(os.path.dirname(folder), os.path.join(work, "rss600_ours"), ckpt, 1)


def step_dice(args, res, work, cases_dir):
    if not args.trained_ckpt:
        res.setdefault("notes", []).append("dice: not run (no --trained_ckpt given)")
        return
    configs = [INFERENCE_CONFIG] + list(args.trained_configs)
    plain = revert_overrides(configs)["plain"]
    runs = {"fast": [], "plain": []}
    log("dice: fast and plain paths with trained weights")
    for r in range(args.repeats if args.dice_timed else 1):
        for who in ("fast", "plain"):
            out = os.path.join(work, f"dice_{who}_{r}")
            run = run_ours(
                cases_dir, out, args.trained_ckpt, args.num_cases, configs, plain if who == "plain" else None
            )
            runs[who].append(run)
            log(f"  {who} run {r + 1}: {run['to_last_mask_s']:.1f} s to last mask")
    rows = compare_masks(
        os.path.join(work, "dice_fast_0"), os.path.join(work, "dice_plain_0"), os.path.join(cases_dir, "labelsTs")
    )
    res["dice"] = {"ckpt": args.trained_ckpt, "config_files": configs, "cases": rows, "weights_note": args.trained_note}
    images = sorted(glob.glob(os.path.join(cases_dir, "imagesTs", "*.nii.gz")))
    variants = {"current": {}, "plain": {"overrides": plain}, **OPTIONS}
    log("dice: the options, in process")
    res["dice"]["options"] = run_worker(
        "dice",
        {
            "images": images,
            "labels": [p.replace("imagesTs", "labelsTs") for p in images],
            "ckpt": args.trained_ckpt,
            "config_files": configs,
            "variants": variants,
            "output_dir": os.path.join(work, "dice_options"),
        },
        work,
    )
    keys = ("to_last_mask_s", "per_volume_s", "peak_rss_gb", "cpu_s")
    res["e2e_trained"] = {
        "ckpt": args.trained_ckpt,
        "config_files": configs,
        **{who: {k: spread([r.get(k) for r in v]) for k in keys} for who, v in runs.items()},
    }


def step_gpu(args, res, work, cases_dir):
    """On CUDA: the stage profile (fp32, fp16/bf16 autocast), the standard folder end to end (ours and, when its
    folder is there, the reference), and training throughput with AMP; ``--gpu_parts``
    picks among the three, and with ``--merge`` the parts not run keep their earlier results. ``--gpu_device cpu``
    dry-runs it."""
    import torch

    device = args.gpu_device
    if device.startswith("cuda") and not torch.cuda.is_available():
        res["gpu"] = {"not_run": "no GPU lent (torch.cuda.is_available() is False)"}
        return
    images = sorted(glob.glob(os.path.join(cases_dir, "imagesTs", "*.nii.gz")))
    ckpt = args.trained_ckpt or random_weights(os.path.join(work, "weights", "random.pt"))
    name = torch.cuda.get_device_name(0) if device.startswith("cuda") else device
    # res holds an earlier gpu section only with --merge: keep its parts, not a "not run" left from a run without CUDA
    earlier = {k: v for k, v in (res.get("gpu") or {}).items() if k != "not_run"}
    out = {**earlier, "gpu": name, "cpu_cores": os.cpu_count(), "ckpt": ckpt}
    parts = set(args.gpu_parts)
    if "stages" in parts:
        _gpu_stages(args, out, work, images, ckpt, device)
    if "e2e" in parts:
        log(f"gpu: the standard folder ({len(images)} cases) end to end, {args.repeats} run(s) each")
        has_reference = bool(args.reference_dir) and os.path.isfile(
            os.path.join(args.reference_dir, "configs", "inference.json")
        )
        reverts = revert_overrides()
        out["e2e"] = compare_alternating(
            cases_dir,
            work,
            ckpt,
            len(images),
            args.repeats,
            args.reference_dir if has_reference else None,
            "gpu",
            variants={k: reverts[k] for k in sorted(GPU_ONLY)},
        )
    if "train" in parts:
        _gpu_train(args, out, work, device)
    res["gpu"] = out


def _gpu_stages(args, out, work, images, ckpt, device):
    reverts = revert_overrides()
    variants = {
        "fp32": {"device": device},
        "fp16 autocast": {"device": device, "amp_dtype": "float16"},
        "bf16 autocast": {"device": device, "amp_dtype": "bfloat16"},
        **{f"fp32, no {k}": {"device": device, "overrides": reverts[k]} for k in sorted(GPU_ONLY - E2E_ONLY)},
    }
    log(f"gpu: stage profile on {device}")
    raw = run_worker(
        "stages",
        {
            "image": images[0],
            "ckpt": ckpt,
            "config_files": [INFERENCE_CONFIG],
            "variants": variants,
            "repeats": args.repeats + 1,
        },
        work,
    )
    for runs in raw.values():
        runs.pop(0)  # the first round warms up CUDA and cuDNN
    out["stages"] = summarize_stages(raw)


def _gpu_train(args, out, work, device):
    data = os.path.join(work, "train_data")
    if not os.path.isfile(os.path.join(data, "dataset.json")):
        from scripts.lib import phantom

        phantom.write_dataset(data, num_train=args.train_cases, num_test=0, seed=7)
    log("gpu: training throughput (AMP)")
    out["train"] = run_worker(
        "train",
        {
            "config_files": ["configs/train.yaml", "configs/demo.yaml"],
            "device": device,
            "overrides": {
                "dataset_dir": data,
                "output_dir": os.path.join(work, "gpu_runs"),
                "ckpt_dir": os.path.join(work, "gpu_models"),
                "epochs": args.train_epochs,
                "fold": -1,
                "val_interval": 1000,
                "amp": device.startswith("cuda"),
                "allow_dataset_warnings": True,
            },
        },
        work,
    )


# ------------------------------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tools.benchmark",
        description="Benchmark the bundle's inference (and training) against the reference "
        "pipeline; writes docs/benchmark.md and docs/benchmark.json.",
    )
    p.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS), help="steps to run (default: all)")
    p.add_argument(
        "--work_dir",
        default=os.path.join(tempfile.gettempdir(), "liver_benchmark"),
        help="inputs, outputs and logs (reused between runs; default: %(default)s)",
    )
    p.add_argument("--report_dir", default=os.path.join(BUNDLE_ROOT, "docs"), help="where the report goes")
    p.add_argument(
        "--reference_dir",
        help="the reference bundle's folder, e.g. ../shared/reference/spleen_ct_segmentation (needed by e2e and stages)",
    )
    p.add_argument("--repeats", type=int, default=3, help="alternating runs per comparison (default 3)")
    p.add_argument("--num_cases", type=int, default=5, help="volumes in the standard folder (default 5)")
    p.add_argument(
        "--shape",
        type=int,
        nargs=3,
        default=list(STANDARD_SHAPE),
        help="voxels of the standard cases (default: %(default)s; smaller only to try the command out)",
    )
    p.add_argument(
        "--spacing",
        type=float,
        nargs=3,
        default=list(STANDARD_SPACING),
        help="voxel size in mm of the standard cases (default: %(default)s)",
    )
    _add_weights_and_step_options(p)
    _add_report_options(p)
    p.add_argument("--debug", action="store_true", help="show a traceback on errors")
    p.add_argument("--worker", nargs=3, metavar=("KIND", "ARGS_JSON", "OUT_JSON"), help=argparse.SUPPRESS)
    return p


def _add_weights_and_step_options(p: argparse.ArgumentParser) -> None:
    """The weights, and the options of single steps (dice, train, race, shares)."""
    p.add_argument(
        "--trained_ckpt",
        help="trained weights: the dice step, and the timed steps (e2e, stages, rss600, shares) instead of random ones",
    )
    p.add_argument(
        "--trained_configs",
        nargs="*",
        default=["configs/demo.yaml"],
        help="configs merged over inference.yaml for --trained_ckpt (default: configs/demo.yaml)",
    )
    p.add_argument(
        "--trained_note",
        default="trained briefly on the synthetic phantom with configs/demo.yaml",
        help="how --trained_ckpt was trained (goes into the report)",
    )
    p.add_argument("--dice_timed", action="store_true", help="repeat the dice step's runs --repeats times")
    p.add_argument("--train_cases", type=int, default=8, help="phantom cases for the train step (default 8)")
    p.add_argument("--train_epochs", type=int, default=2, help="epochs for the train step (default 2)")
    p.add_argument("--train_variants", action="store_true", help="also time training with worker processes")
    p.add_argument(
        "--race_budget", type=float, default=3.0, help="race: the reference's budget, times our time to 0.95 (3)"
    )
    p.add_argument("--race_before", action="store_true", help="race: also the demo's training before issue 17")
    p.add_argument(
        "--shares",
        nargs="+",
        default=list(SHARES),
        metavar="REVERT",
        help="shares: the reverts (tools/reverts/*.yaml names, or plain) to run against the current config "
        "(default: the bespoke components, %(default)s)",
    )
    p.add_argument(
        "--share_cases",
        type=int,
        default=0,
        help="shares: run on the first N cases of the standard folder (default 0: all --num_cases of them)",
    )


def _add_report_options(p: argparse.ArgumentParser) -> None:
    """Rendering, merging, notes, ONNX Runtime and the gpu step's parts."""
    p.add_argument(
        "--render_only",
        action="store_true",
        help="only rewrite REPORT_DIR/benchmark.md (and the targets) from REPORT_DIR/benchmark.json",
    )
    p.add_argument(
        "--merge",
        action="store_true",
        help="keep the results of the steps not run now from the existing REPORT_DIR/benchmark.json",
    )
    p.add_argument("--note", action="append", default=[], help="a line for the report's notes (repeatable)")
    p.add_argument(
        "--path_before",
        metavar="DIR",
        help="with --render_only: an earlier checkout of the bundle, whose inference path is counted as the 'before' "
        "of the inference-path section (the current one is counted again at every rendering)",
    )
    p.add_argument(
        "--onnx",
        action="store_true",
        help="e2e: also run ours with ONNX Runtime (configs/inference_onnx.yaml merged over inference.yaml)",
    )
    p.add_argument(
        "--gpu_parts",
        nargs="+",
        choices=GPU_PARTS,
        default=list(GPU_PARTS),
        help="parts of the gpu step to run (default: all)",
    )
    p.add_argument("--gpu_device", default="cuda", help="device of the gpu step (default cuda; cpu: a dry run)")


def _check_arguments(args) -> None:
    """Raise ValueError or FileNotFoundError (one line each) for arguments the steps cannot run with."""
    if args.repeats < 1 or args.num_cases < 1:
        raise ValueError("--repeats and --num_cases must be at least 1")
    if not 0 <= args.share_cases <= args.num_cases:
        raise ValueError("--share_cases must be between 0 (all) and --num_cases")
    if {"e2e", "stages", "race"} & set(args.steps) and not args.reference_dir:
        raise ValueError("the e2e, stages and race steps compare against a reference bundle: give --reference_dir")
    if args.reference_dir and not os.path.isfile(os.path.join(args.reference_dir, "configs", "inference.json")):
        raise FileNotFoundError(f"{args.reference_dir}: no configs/inference.json (give --reference_dir)")
    if args.trained_ckpt and not os.path.isfile(args.trained_ckpt):
        raise FileNotFoundError(f"{args.trained_ckpt}: weights file not found")


def _start_results(args, argv) -> dict:
    """The results dict a run starts from: the command, machine and notes, and with ``--merge`` the results of the
    existing ``REPORT_DIR/benchmark.json`` (its commands and notes extended, its start load average kept)."""
    command = "python -m tools.benchmark " + shlex.join(argv if argv is not None else sys.argv[1:])
    res = {"command": command, "machine": machine_info(), "notes": list(args.note)}
    previous = os.path.join(args.report_dir, "benchmark.json")
    if args.merge and os.path.isfile(previous):
        with open(previous) as f:
            old = json.load(f)
        old.pop("targets", None)
        res = {
            **old,
            "command": f"{old.get('command')}; then {command}",
            "machine": res["machine"],
            "notes": old.get("notes", []) + [n for n in args.note if n not in old.get("notes", [])],
        }
        res["machine"]["load_average_at_start"] = old["machine"]["load_average_at_start"]
    return res


def _run_steps(args, res: dict, work: str, cases_dir: str, ckpt: str) -> None:
    """The steps of ``--steps``, in the benchmark's order, each adding its section to ``res``."""
    if "e2e" in args.steps:
        step_e2e(args, res, work, cases_dir, ckpt)
    if "stages" in args.steps:
        step_stages(args, res, work, cases_dir, ckpt)
    if "dice" in args.steps:
        step_dice(args, res, work, cases_dir)
    if "rss600" in args.steps:
        step_rss600(args, res, work, ckpt)
    if "train" in args.steps:
        step_train(args, res, work)
    if "race" in args.steps:
        step_race(args, res, work)
    if "gpu" in args.steps:
        step_gpu(args, res, work, cases_dir)
    if "shares" in args.steps:
        step_shares(args, res, work, cases_dir, ckpt)


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.worker:
        kind, args_path, out_path = args.worker
        with open(args_path) as f:
            wargs = json.load(f)
        from scripts.lib.fileio import write_text

        result = {"stages": _worker_stages, "train": _worker_train, "dice": _worker_dice}[kind](wargs)
        write_text(out_path, json.dumps(result))
        return 0
    try:
        if args.render_only:
            with open(os.path.join(args.report_dir, "benchmark.json")) as f:
                res = json.load(f)
            res["inference_path"] = imports.line_counts(BUNDLE_ROOT)  # static: counted from the code as it is
            if args.path_before:
                res["inference_path_before"] = {
                    **imports.line_counts(args.path_before),
                    "commit": _commit(args.path_before),
                }
            md, js = write_report(res, args.report_dir)
            log(f"wrote {md} and {js}")
            return 0
        _check_arguments(args)
        work = os.path.abspath(args.work_dir)
        os.makedirs(work, exist_ok=True)
        res = _start_results(args, argv)
        seeds = list(range(args.num_cases))
        res["seeds"] = seeds
        cases_dir = os.path.join(work, "standard")
        log(f"inputs: {args.num_cases} phantom CTs under {cases_dir}")
        make_cases(cases_dir, seeds, shape=args.shape, spacing=args.spacing)
        res["shape"], res["spacing"] = list(args.shape), list(args.spacing)
        ckpt = random_weights(os.path.join(work, "weights", "random.pt"))
        if args.trained_ckpt:  # the liver-box resampling costs what the mask covers: time with a real mask
            ckpt = os.path.abspath(args.trained_ckpt)
        if {"e2e", "stages", "rss600"} & set(args.steps):  # a merge keeps the weights of the timed steps it keeps
            res["timed_ckpt"] = ckpt
        started = time.perf_counter()
        _run_steps(args, res, work, cases_dir, ckpt)
        res["inference_path"] = imports.line_counts(BUNDLE_ROOT)
        res["load_average_at_end"] = list(os.getloadavg())
        res["benchmark_minutes"] = (time.perf_counter() - started) / 60
        md, js = write_report(res, args.report_dir)
        for t in res["targets"].values():
            log(f"target: {t['target']}: {t['measured']} -> {t['met']}")
        log(f"wrote {md} and {js}")
        return 0
    except (ValueError, OSError, RuntimeError) as e:
        if args.debug:
            raise
        print(f"error: {e}".splitlines()[0], file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
