"""Developer tool: the cases that measure the per-case verdict (scripts/components/qc.py), and its table.

``make`` crops labelled phantom cases (an MSD-layout folder from ``python -m scripts phantom --output_dir``) along the
body axis into the failures a verdict must catch, and writes them with their labels and a ``dataset.json``:

- ``pelvis``: everything below the liver (no liver in view; wide profiles reach the pelvis);
- ``chest``: everything above the liver (a non-abdominal field of view);
- ``tip3cm``: the liver's lowest 3 cm and what lies below them;
- ``cut_top`` / ``cut_bottom``: the scan ends halfway down the liver, from below or above.

``table`` reads the ``metrics.csv`` that ``run evaluation`` writes for those cases (and for whole held-out cases) and
prints a Markdown table: how often each reason fires, by kind of case and, for whole cases, by Dice above or below
0.85.

    python -m tools.qc_cases make --source DATASET --output_dir CROPS
    python -m tools.qc_cases table --metrics eval/metrics.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from collections import Counter

import nibabel as nib
import numpy as np

from scripts.components.qc import body_axis

KINDS = ("pelvis", "chest", "tip3cm", "cut_top", "cut_bottom")
REASONS = ("ok", "no_liver", "cut_by_scan", "implausible_volume", "uncertain")
TIP_MM = 30.0
MIN_SLICES = 16  # a crop thinner than this is not a scan (the network's coarse window is 4 mm x 96)


def _slab(length: int, axis_up: bool, low_mm: float, high_mm: float, spacing: float) -> tuple[int, int] | None:
    """Slice indices [start, stop) covering heights low..high mm above the array's first (axis_up) or last slice."""
    lo, hi = int(np.floor(low_mm / spacing)), int(np.ceil(high_mm / spacing))
    lo, hi = max(lo, 0), min(hi, length)
    if hi - lo < MIN_SLICES:
        return None
    return (lo, hi) if axis_up else (length - hi, length - lo)


def crops(image: nib.Nifti1Image, label: nib.Nifti1Image) -> dict[str, tuple[slice, ...]]:
    """The crop of each kind (:data:`KINDS`) that the case allows, as index slices of the image array."""
    lab = np.asarray(label.dataobj) > 0
    axis = body_axis(image.affine)
    up = image.affine[2, axis] > 0  # the axis runs towards the head
    spacing = float(np.linalg.norm(image.affine[:3, axis]))
    length = lab.shape[axis]
    rows = np.nonzero(lab.any(axis=tuple(a for a in range(3) if a != axis)))[0]
    if rows.size == 0:
        return {}
    heights = (rows if up else length - 1 - rows) * spacing  # mm above the scan's lowest slice
    bottom, top = float(heights.min()), float(heights.max())
    middle = (bottom + top) / 2
    total = length * spacing
    wanted = {
        "pelvis": (0.0, bottom - 10.0),
        "chest": (top + 10.0, total),
        "tip3cm": (0.0, bottom + TIP_MM),
        "cut_top": (0.0, middle),
        "cut_bottom": (middle, total),
    }
    out = {}
    for kind, (low, high) in wanted.items():
        slab = _slab(length, up, low, high, spacing)
        if slab is not None:
            index = [slice(None)] * 3
            index[axis] = slice(*slab)
            out[kind] = tuple(index)
    return out


def make(source: str, output_dir: str) -> str:
    """Write every crop of every labelled case of ``source``; return the dataset.json path."""
    with open(os.path.join(source, "dataset.json")) as f:
        cases = json.load(f)["training"]
    for sub in ("imagesTr", "labelsTr"):
        os.makedirs(os.path.join(output_dir, sub), exist_ok=True)
    entries = []
    for case in cases:
        image = nib.load(os.path.join(source, case["image"]))
        label = nib.load(os.path.join(source, case["label"]))
        name = os.path.basename(case["image"]).replace(".nii.gz", "")
        for kind, index in crops(image, label).items():
            for img, sub in ((image, "imagesTr"), (label, "labelsTr")):
                part = img.slicer[index]
                path = os.path.join(output_dir, sub, f"{kind}__{name}.nii.gz")
                nib.save(nib.Nifti1Image(np.asarray(part.dataobj), part.affine), path)
            entries.append({"image": f"imagesTr/{kind}__{name}.nii.gz", "label": f"labelsTr/{kind}__{name}.nii.gz"})
            print(f"{kind}__{name}: {part.shape}", flush=True)
    path = os.path.join(output_dir, "dataset.json")
    with open(path, "w") as f:
        json.dump({"training": entries}, f, indent=1)
    return path


def table(metrics: list[str], threshold: float = 0.85) -> str:
    """The Markdown table of reasons by kind of case (the name's prefix before ``__``; whole cases by Dice)."""
    counts: dict[str, Counter] = {}
    totals: Counter = Counter()
    for path in metrics:
        with open(path) as f:
            for row in csv.DictReader(f):
                if "__" in row["case"]:
                    kind = row["case"].split("__")[0]
                else:
                    kind = (
                        f"whole, Dice >= {threshold}"
                        if float(row["dice"]) >= threshold
                        else f"whole, Dice < {threshold}"
                    )
                totals[kind] += 1
                counts.setdefault(kind, Counter()).update(row["qc"].split(";"))
    lines = ["| cases | n | " + " | ".join(REASONS) + " |", "| --- | --- |" + " --- |" * len(REASONS)]
    for kind in sorted(counts):
        cells = [f"{counts[kind][r]}" for r in REASONS]
        lines.append(f"| {kind} | {totals[kind]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.qc_cases", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("make", help="write the failure crops of a labelled phantom dataset")
    m.add_argument("--source", required=True)
    m.add_argument("--output_dir", required=True)
    t = sub.add_parser("table", help="the verdict table of evaluation metrics.csv files")
    t.add_argument("--metrics", nargs="+", required=True)
    args = parser.parse_args(argv)
    if args.command == "make":
        print(make(args.source, args.output_dir))
    else:
        print(table(args.metrics))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
