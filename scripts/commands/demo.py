"""``python -m scripts demo``: the whole job on the synthetic phantom, with the commands a user runs on real data.

    python -m scripts demo [--workdir DIR] [--epochs N] [--bundle_root DIR]

Steps: generate a phantom dataset (MSD layout), check it, train (configs/train.yaml + configs/demo.yaml), evaluate on
held-out phantom cases, run inference on a folder, and draw an overlay, an evaluation grid and the training curves.
Every step is a separate command, printed before it runs and run from the bundle root, so each can be copied and
rerun alone there. Everything is written under --workdir (default: demo/ in the bundle root; a folder given is
relative to the working directory). The weights it trains are labelled as phantom-trained.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
import time

from scripts.commands import PROG, add_bundle_root, in_bundle


def bundle_run(run_id: str, configs: list[str], **overrides) -> list[str]:
    """`python -m monai.bundle run <run_id>` with the bundle's configs, metadata and logging, plus overrides."""
    files = [os.path.join("configs", c) for c in configs]
    cmd = [sys.executable, "-m", "monai.bundle", "run", run_id, "--config_file", json.dumps(files)]
    cmd += ["--meta_file", "configs/metadata.json", "--logging_file", "configs/logging.conf"]
    for key, value in overrides.items():
        cmd += [f"--{key}", str(value)]
    return cmd


def step(title: str, cmd: list[str], bundle_root: str) -> float:
    """Print and run one command from ``bundle_root``; stop the demo (exit 1) if it fails. Returns its seconds."""
    cmd = [str(c) for c in cmd]
    shown = " ".join(shlex.quote(c if c != sys.executable else "python") for c in cmd)
    print(f"\n=== {title}\n$ {shown}", flush=True)
    start = time.time()
    code = subprocess.call(cmd, cwd=bundle_root)
    if code != 0:
        print(f"error: demo step {title!r} failed with exit code {code}", file=sys.stderr)
        sys.exit(1)
    return time.time() - start


def mean_dice(metrics_csv: str) -> tuple[float, str]:
    """Mean Dice and the worst case's name from an evaluation's metrics.csv."""
    with open(metrics_csv) as f:
        rows = list(csv.DictReader(f))
    dices = [float(r["dice"]) for r in rows]
    worst = min(rows, key=lambda r: float(r["dice"]))["case"]
    return sum(dices) / len(dices), worst


def parse_args(argv=None) -> argparse.Namespace:
    """The demo's command line (see the module docstring)."""
    p = argparse.ArgumentParser(
        prog=f"{PROG} demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--workdir", default=None, help="output folder (default: demo/ in the bundle root)")
    p.add_argument("--num_train", type=int, default=12, help="phantom training cases (default: 12)")
    p.add_argument("--num_test", type=int, default=4, help="held-out phantom cases (default: 4)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: configs/demo.yaml's)")
    p.add_argument("--seed", type=int, default=0, help="phantom and training seed (default: 0)")
    add_bundle_root(p)
    return p.parse_args(argv)


def demo_paths(args: argparse.Namespace) -> dict:
    """Where the demo works: ``root`` (the bundle root, where every step runs), ``workdir`` (absolute) and the folders
    the steps write, as a user in the bundle root would type them: ``w`` (the workdir), ``data``, ``runs``,
    ``models``, ``eval`` and ``inference``."""
    root = in_bundle(args.bundle_root)
    workdir = os.path.abspath(args.workdir) if args.workdir else in_bundle(root, "demo")
    # the steps run from the bundle root: its own folders are shown relative to it, as a user there would type them
    w = os.path.relpath(workdir, root) if workdir.startswith(os.path.join(root, "")) else workdir
    return {
        "root": root,
        "workdir": workdir,
        "w": w,
        "data": f"{w}/data",
        "runs": f"{w}/runs",
        "models": f"{w}/models",
        "eval": f"{w}/eval",
        "inference": f"{w}/inference",
    }


def prepare_data(args: argparse.Namespace, paths: dict) -> None:
    """Steps 1-3: generate the phantom dataset, list its held-out cases as a datalist, check the dataset."""
    python, root, data = sys.executable, paths["root"], paths["data"]
    step(
        "1/7 generate a synthetic phantom dataset (MSD layout)",
        [
            python,
            "-m",
            "scripts",
            "phantom",
            "--output_dir",
            data,
            "--num_train",
            args.num_train,
            "--num_test",
            args.num_test,
            "--seed",
            args.seed,
        ],
        root,
    )
    step(
        "2/7 list the held-out phantom cases as a datalist",
        [
            python,
            "-m",
            "scripts",
            "datalist",
            "--images",
            f"{data}/imagesTs",
            "--labels",
            f"{data}/labelsTs",
            "--output",
            f"{data}/heldout.json",
        ],
        root,
    )
    step(
        "3/7 check the dataset",
        [python, "-m", "scripts", "check_dataset", "--dataset_dir", data, "--output_dir", paths["runs"]],
        root,
    )


def train_and_segment(args: argparse.Namespace, paths: dict) -> float:
    """Steps 4-6: train, evaluate on the held-out cases, segment a folder; returns the training's seconds."""
    root, data, models = paths["root"], paths["data"], paths["models"]
    schedule = {} if args.epochs is None else {"epochs": args.epochs}
    train_s = step(
        "4/7 train (phantom-sized settings from configs/demo.yaml)",
        bundle_run(
            "training",
            ["train.yaml", "demo.yaml"],
            dataset_dir=data,
            output_dir=paths["runs"],
            ckpt_dir=models,
            seed=args.seed,
            **schedule,
        ),
        root,
    )
    step(
        "5/7 evaluate on the held-out cases",
        bundle_run(
            "evaluation",
            ["inference.yaml", "demo.yaml", "evaluate.yaml"],
            eval_datalist=f"{data}/heldout.json",
            eval_key="training",
            ckpt_path=f"{models}/model.pt",
            output_dir=paths["eval"],
        ),
        root,
    )
    step(
        "6/7 segment a folder of CT volumes",
        bundle_run(
            "inference",
            ["inference.yaml", "demo.yaml"],
            input=f"{data}/imagesTs",
            ckpt_path=f"{models}/model.pt",
            output_dir=paths["inference"],
        ),
        root,
    )
    return train_s


def draw_pictures(paths: dict, worst: str) -> None:
    """Step 7: the overlay of the worst held-out case, the evaluation grid and the training curves."""
    python, root, data, evaluation, w = sys.executable, paths["root"], paths["data"], paths["eval"], paths["w"]
    step(
        "7/7 draw an overlay, the evaluation grid and the training curves",
        [
            python,
            "-m",
            "scripts",
            "visualize",
            "overlay",
            "--image",
            f"{data}/imagesTs/{worst}.nii.gz",
            "--label",
            f"{data}/labelsTs/{worst}.nii.gz",
            "--pred",
            f"{evaluation}/{worst}_seg.nii.gz",
            "--output",
            f"{w}/overlay_{worst}.png",
        ],
        root,
    )
    for cmd in (
        [
            python,
            "-m",
            "scripts",
            "visualize",
            "grid",
            "--images",
            f"{data}/imagesTs",
            "--labels",
            f"{data}/labelsTs",
            "--preds",
            evaluation,
            "--metrics",
            f"{evaluation}/metrics.csv",
            "--output",
            f"{w}/eval_grid.png",
        ],
        [
            python,
            "-m",
            "scripts",
            "visualize",
            "curves",
            "--log_dir",
            paths["runs"],
            "--output",
            f"{w}/training_curves.png",
        ],
    ):
        step("7/7 (continued)", cmd, root)


def print_summary(args: argparse.Namespace, paths: dict, worst: str, dice: float, train_s: float) -> None:
    """Where everything went, how long training took and the held-out mean liver Dice of this run."""
    w, evaluation, inference = paths["w"], paths["eval"], paths["inference"]
    print(
        f"\nDemo finished. Everything is under {paths['workdir']}:\n"
        f"  masks (inference):   {inference}/*_seg.nii.gz and {inference}/report.csv (liver mL, mean HU)\n"
        f"  metrics (held-out):  {evaluation}/metrics.csv, {evaluation}/metrics_summary.csv\n"
        f"  overlay PNG:         {w}/overlay_{worst}.png (the worst held-out case)\n"
        f"  evaluation grid:     {w}/eval_grid.png;  training curves: {w}/training_curves.png\n"
        f"  weights (PHANTOM-TRAINED, a demo only): {paths['models']}/model.pt\n"
        f"Training took {train_s / 60:.1f} min; held-out mean liver Dice {dice:.4f} over {args.num_test} phantom cases."
    )


def main(argv=None) -> int:
    """Command line entry; returns the exit status (the demo stops with status 1 at the first step that fails)."""
    args = parse_args(argv)
    paths = demo_paths(args)
    prepare_data(args, paths)
    train_s = train_and_segment(args, paths)
    dice, worst = mean_dice(os.path.join(paths["root"], paths["eval"], "metrics.csv"))
    draw_pictures(paths, worst)
    print_summary(args, paths, worst, dice, train_s)
    return 0
