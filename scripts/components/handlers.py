"""The evaluation and inference engines' handlers where MONAI has no component (the training ones: ``training``):
:func:`attach`, and :class:`CaseTable`, one CSV row per case with every measure (docs/workflows.md, "Evaluation":
the columns, and why not MONAI's ``MetricsSaver``), gathered from every rank under torchrun.
"""

from __future__ import annotations

import csv
import io
import logging
import os

import numpy as np
import torch
import torch.distributed as dist
from ignite.engine import Events
from monai.metrics import compute_average_surface_distance, compute_dice, compute_hausdorff_distance

from scripts.components.postprocess import foreground
from scripts.components.qc import UNCERTAIN_KEY, verdict
from scripts.lib.fileio import case_label, write_text
from scripts.lib.metrics import dice

logger = logging.getLogger(__name__)


def attach(handlers, engine) -> None:
    """Attach each handler of ``handlers`` to ``engine``, skipping the None of a disabled config component (MONAI
    resolves a component with ``_disabled_: true`` to None): the savers and loaders that name the trainer in their
    state, which therefore cannot be among the trainer's own handlers."""
    for handler in handlers:
        if handler is not None:
            handler.attach(engine)


def _case_source(img) -> str:
    """The file (or DICOM folder) a case was read from, as its metadata records it."""
    meta = getattr(img, "meta", {}) or {}
    return str(meta.get("filename_or_obj", "case")).rstrip("/")


def _as_labels(x: torch.Tensor) -> torch.Tensor:
    """A (C, ...) one-hot/probability map or a (1, ...) label map -> a (...) integer label map."""
    x = torch.as_tensor(x)
    if x.shape[0] > 1:
        return x.argmax(0)
    return x[0].long() if not x.is_floating_point() else x[0].round().long()


def case_measures(pred, label=None, image_hu=None, num_classes: int = 2, qc: dict | None = None) -> dict:
    """The per-case numbers: volumes, mean HU and, with a reference label, Dice/HD95/ASD/volume difference; with
    ``qc`` (``scripts.components.qc.verdict``'s ``volume_ml`` and ``max_uncertain_share``) the verdict, column ``qc``, last.

    ``pred``/``label``: channel-first MetaTensors (one-hot or label maps) on the same grid, in physical space.
    """
    affine = getattr(pred, "affine", None)
    spacing = np.ones(3) if affine is None else np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    liver_p = np.asarray(foreground(pred).cpu())  # a bool mask, cheaper to index with than a label map
    row = {
        "case": case_label(getattr(pred, "meta", None)),
        "liver_volume_ml": float(np.count_nonzero(liver_p)) * voxel_ml,
    }
    if image_hu is not None:
        hu = np.asarray(torch.as_tensor(image_hu)[0].cpu())
        row["liver_mean_hu"] = float(hu[liver_p].mean(dtype=np.float64)) if liver_p.any() else float("nan")
    if qc is not None:
        affine = np.asarray(torch.as_tensor(pred.affine).cpu(), dtype=np.float64)
        meta = getattr(pred, "meta", None) or {}
        verdict_text = verdict(liver_p, affine, meta, qc["volume_ml"], qc["max_uncertain_share"])
        row["uncertain_share"] = float(meta.get(UNCERTAIN_KEY, float("nan")))
    if label is None:
        return row if qc is None else {**row, "qc": verdict_text}
    liver_p = torch.from_numpy(liver_p)
    y = _as_labels(label).cpu()
    if y.shape != liver_p.shape:
        raise ValueError(f"{row['case']}: prediction {tuple(liver_p.shape)} and label {tuple(y.shape)} grids differ")
    liver_y = y > 0
    pred_oh, ref_oh = torch.stack([liver_p, liver_y])[:, None, None].float()  # each (B=1, C=1, ...)
    row["reference_volume_ml"] = float(liver_y.sum()) * voxel_ml
    row["volume_difference_ml"] = row["liver_volume_ml"] - row["reference_volume_ml"]
    row["dice"] = float(compute_dice(pred_oh, ref_oh, include_background=True, ignore_empty=False)[0, 0])
    if liver_p.any() and liver_y.any():
        surface = {"y_pred": pred_oh, "y": ref_oh, "include_background": True, "spacing": spacing.tolist()}
        row["hd95_mm"] = float(compute_hausdorff_distance(**surface, percentile=95)[0, 0])
        row["asd_mm"] = float(compute_average_surface_distance(**surface, symmetric=True)[0, 0])
    else:  # a distance to an empty mask is undefined
        row["hd95_mm"] = row["asd_mm"] = float("nan")
    if num_classes > 2:  # per-class labels only where there are classes
        p = _as_labels(pred).cpu()
        for c in range(1, num_classes):
            row[f"dice_class{c}"] = dice(p == c, y == c)
    return row if qc is None else {**row, "qc": verdict_text}


SUMMARY_OPS = {"mean": np.nanmean, "median": np.nanmedian, "std": np.nanstd, "min": np.nanmin, "max": np.nanmax}


def summarize(rows: list[dict]) -> list[dict]:
    """Mean/median/std/min/max of every numeric column of ``rows`` (NaNs ignored)."""
    columns = [k for k in rows[0] if k != "case" and isinstance(rows[0][k], (int, float))] if rows else []
    out = []
    for op, fn in SUMMARY_OPS.items():
        entry = {"statistic": op}
        for col in columns:
            values = np.array([r.get(col, np.nan) for r in rows], dtype=float)
            entry[col] = float(fn(values)) if np.isfinite(values).any() else float("nan")
        out.append(entry)
    return out


def gather_cases(rows: list[dict], sources: list[str]) -> tuple[list[dict], list[str]]:
    """All ranks' rows in dataset order, each case once; the input unchanged without a torch.distributed job.

    Every rank must call it (a collective). ``sources`` holds each row's source file, the identity of a case. The
    sampler deals case ``i`` to rank ``i % world_size`` (``DistributedSampler(shuffle=False)``), so taking one row
    from each rank in turn restores the dataset order. A case that a padding sampler gave to two ranks is kept once,
    with a warning: the padded copy also counts twice in MONAI's mean metrics.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return rows, sources
    per_rank: list = [None] * dist.get_world_size()
    dist.all_gather_object(per_rank, list(zip(sources, rows, strict=True)))
    merged = [r[i] for i in range(max(len(r) for r in per_rank)) for r in per_rank if i < len(r)]
    kept: dict[str, dict] = {}
    for source, row in merged:
        kept.setdefault(source, row)
    if len(kept) < len(merged):
        logger.warning(
            "%d case(s) were evaluated on two ranks (a padding sampler; use even_divisible=False); each is listed once",
            len(merged) - len(kept),
        )
    return list(kept.values()), list(kept)


def write_csv(rows: list[dict], path: str) -> str:
    """Atomically write dict rows as CSV (columns from the union of keys, in first-seen order)."""
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()})
    return write_text(path, buffer.getvalue())


class CaseTable:
    """Ignite handler: after each iteration, measure every case of the batch; at the end, write the CSV files.

    Args:
        output_dir: where ``<prefix>.csv`` (one row per case) and ``<prefix>_summary.csv`` go.
        label_key: reference label key in ``engine.state.output`` (``None`` for inference: volumes and HU only).
        image_key: key of the image in HU on the prediction's grid (``None``: no mean HU column).
        pred_key: the prediction key.
        prefix: file name stem.
        num_classes: adds a Dice column per class when > 2.
        qc_volume_ml, qc_max_uncertain_share: with both, a ``qc`` column holds each case's verdict
            (``scripts.components.qc.verdict``: ``ok`` or the reasons), which the log line of the case shows too.
    """

    def __init__(
        self,
        output_dir,
        label_key=None,
        image_key=None,
        pred_key="pred",
        prefix="metrics",
        num_classes=2,
        qc_volume_ml=None,
        qc_max_uncertain_share=None,
    ):
        self.output_dir = output_dir
        self.label_key, self.image_key, self.pred_key = label_key, image_key, pred_key
        self.prefix, self.num_classes = prefix, int(num_classes)
        self.qc = None
        if qc_volume_ml is not None and qc_max_uncertain_share is not None:
            self.qc = {"volume_ml": qc_volume_ml, "max_uncertain_share": float(qc_max_uncertain_share)}
        self.rows: list[dict] = []
        self.sources: list[str] = []  # the source file of each row: the identity of a case across ranks

    def attach(self, engine) -> None:
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self._write)

    def _reset(self, engine) -> None:
        self.rows, self.sources = [], []

    def _collect(self, engine) -> None:
        batch = engine.state.batch if isinstance(engine.state.batch, list) else [{}] * len(engine.state.output)
        for item, source in zip(engine.state.output, batch, strict=True):

            def get(key):  # postprocessing leaves keys it did not create in the batch, the rest in the output
                return None if key is None else item.get(key, source.get(key))

            row = case_measures(
                item[self.pred_key], get(self.label_key), get(self.image_key), num_classes=self.num_classes, qc=self.qc
            )
            self.rows.append(row)
            self.sources.append(_case_source(item[self.pred_key]))
            shown = ", ".join(f"{k} {v:.3f}" for k, v in row.items() if isinstance(v, float))
            shown += f", qc {row['qc']}" if "qc" in row else ""
            logger.info("case %d: %s: %s", len(self.rows), row["case"], shown)

    def _write(self, engine) -> None:
        rows, _ = gather_cases(self.rows, self.sources)  # every rank takes part; only rank 0 writes
        if not rows or (dist.is_available() and dist.is_initialized() and dist.get_rank() != 0):
            return
        path = write_csv(rows, os.path.join(self.output_dir, f"{self.prefix}.csv"))
        summary = summarize(rows)
        write_csv(summary, os.path.join(self.output_dir, f"{self.prefix}_summary.csv"))
        for entry in summary[:2]:
            shown = ", ".join(f"{k} {v:.3f}" for k, v in entry.items() if isinstance(v, float))
            logger.info("%s over %d cases: %s", entry["statistic"], len(rows), shown)
        logger.info("per-case table: %s", path)
