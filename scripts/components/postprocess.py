"""The network's output back on the input's grid, resampled only where the liver is, and the mask's writer.

MONAI's ``Invertd`` resamples the probability map over the whole input grid, and MONAI has no transform that inverts
into a region only. :func:`to_input_grid` does that one job with MONAI's own parts: the largest liver component's box
on the network grid (:func:`liver_box`) is mapped to the input grid through the affines the preprocessing recorded
(:func:`input_grid`), and ``SpatialResample`` fills that box only. The mask equals the whole-grid one up to
interpolation round-off at a few boundary voxels (tests/test_postprocess.py; docs/workflows.md, "What makes inference
fast"). ``SaveImaged`` writes it with :class:`MaskWriter`: MONAI's ``NibabelWriter``, atomically, or a DICOM SEG.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import os

import numpy as np
import torch
from monai.data import ImageWriter, MetaTensor, NibabelWriter
from monai.transforms import KeepLargestConnectedComponent, SpatialResample
from monai.transforms.utils import get_largest_connected_component_mask
from monai.utils import TraceKeys

from scripts.lib import dicom
from scripts.lib.errors import reports_input_errors
from scripts.lib.fileio import CASE_NAME_KEY, atomic_path, case_label
from scripts.lib.seg import require_highdicom, seg_problem, write_seg

logger = logging.getLogger(__name__)

MARGIN_VOXELS = 2  # network-grid voxels added around the low-resolution box: trilinear interpolation reaches 1 voxel


def input_grid(pred) -> tuple[np.ndarray, tuple[int, ...]]:
    """The input's affine and spatial shape, from the preprocessing trace that ``pred`` carries.

    The first traced transform (``Orientationd`` in the bundle's configs) saw the image as it was read: its
    ``orig_size`` is the input's shape and its ``original_affine`` (or the reader's ``original_affine``) the input's
    affine.
    """
    trace = getattr(pred, "applied_operations", None)
    if not trace:
        raise ValueError(
            "the prediction carries no preprocessing trace (applied_operations), so the input's grid is "
            "unknown; use Invertd instead"
        )
    first = trace[0]
    affine = (first.get("extra_info") or {}).get("original_affine")
    if affine is None:
        affine = pred.meta.get("original_affine")
    if affine is None:
        raise ValueError("the prediction's metadata holds no original_affine, so the input's grid is unknown")
    shape = tuple(int(s) for s in first["orig_size"])
    return np.asarray(torch.as_tensor(affine).cpu(), dtype=np.float64), shape


def _interpolation(pred) -> dict:
    """The resampling settings (mode, padding mode, align corners) that ``Spacingd`` recorded in the trace, which
    ``Invertd`` would reuse; MONAI's defaults where the preprocessing did not resample."""
    settings = {"mode": "bilinear", "padding_mode": "border", "align_corners": False}
    for op in pred.applied_operations:
        if op.get(TraceKeys.CLASS_NAME) == "SpatialResample":
            info = op.get(TraceKeys.EXTRA_INFO) or {}
            settings.update({k: info[k] for k in settings if k in info})
    if settings["align_corners"] == TraceKeys.NONE:
        settings["align_corners"] = None
    return settings


def liver_channel(prob: torch.Tensor) -> torch.Tensor:
    """Of two class probabilities (background, liver), the liver's alone (background is 1 - liver); more classes
    are kept. Only this channel is then resampled to the input grid: the same mask, one resampling fewer
    (docs/benchmark.md, ``liver_channel_only``)."""
    return prob[1:] if prob.shape[0] == 2 else prob


def label_threshold(num_classes) -> float | None:
    """``AsDiscreted``'s threshold that turns a reference label into the model's classes: 0.5 for 2 classes (every
    non-zero label, liver and tumour, is liver), None for more (the labels stay as they are)."""
    return 0.5 if int(num_classes) == 2 else None


def foreground(x, threshold: float = 0.5) -> torch.Tensor:
    """Every non-background voxel of (C, ...) class scores, as a bool tensor in ``x``'s own memory layout: for one
    channel (the liver probability, or a label map) ``x[0] >= threshold``; for several, the voxels where a class
    scores above background (argmax > 0 without torch's argmax, which is slow over a short axis on a CPU; ties go
    to background, as argmax's do). The one foreground test: the mask's box here, the report row
    (``scripts.components.handlers``) and the coarse pass's box (``scripts.components.inferers``, on logits: the same test).
    """
    x = torch.as_tensor(x)
    if x.shape[0] == 1:
        return x[0] >= threshold
    return x[1:].amax(0) > x[0]


def liver_box(fg: torch.Tensor, net_affine: np.ndarray, in_affine: np.ndarray, in_shape, margin: int = MARGIN_VOXELS):
    """The box of the input grid (start, stop per axis) that holds the foreground ``fg`` of the network grid,
    widened by ``margin`` network voxels and clipped to the input; None when ``fg`` is empty."""
    idx = torch.nonzero(fg)
    if idx.numel() == 0:
        return None
    lo = idx.min(0).values.cpu().numpy() - margin
    hi = idx.max(0).values.cpu().numpy() + margin
    corners = np.array([[*c, 1.0] for c in itertools.product(*zip(lo, hi, strict=True))]).T  # 4 x 8, network voxels
    in_vox = (np.linalg.solve(in_affine, net_affine) @ corners)[:3]
    start = np.clip(np.floor(in_vox.min(1)).astype(int), 0, in_shape)
    stop = np.clip(np.ceil(in_vox.max(1)).astype(int) + 1, 0, in_shape)
    if np.any(stop <= start):
        return None
    return start, stop


OUTPUT_FORMATS = ("nifti", "seg")


@reports_input_errors
def check_output_format(output_format: str) -> None:
    """Before any case is read: ``output_format`` is ``nifti`` or ``seg``, and for ``seg`` highdicom is installed
    (it writes the SEG; ``requirements-deploy.txt``); if not, the run stops with one line saying which (the
    undecorated ``check_output_format.__wrapped__`` raises ValueError)."""
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"--output_format {output_format!r}: expected one of {', '.join(OUTPUT_FORMATS)}")
    if output_format == "seg":
        require_highdicom()


def output_name(meta: dict, saver=None) -> dict:
    """``SaveImaged``'s ``output_name_formatter``: a DICOM series' output is named after the series (the case name
    that inference gave it, :data:`scripts.lib.fileio.CASE_NAME_KEY`), a NIfTI file's after the file, as MONAI names it.
    """
    meta = meta or {}
    return {"subject": str(meta.get(CASE_NAME_KEY) or meta.get("filename_or_obj", "case")), "idx": None}


def mask_writer(output_format: str = "nifti", metadata_file: str | None = None):
    """``SaveImaged``'s writer: :class:`MaskWriter` writing ``output_format`` (the bundle's metadata file names the
    SEG's segments and version)."""
    return functools.partial(MaskWriter, output_format=output_format, metadata_file=metadata_file)


class MaskWriter(NibabelWriter):
    """MONAI's ``NibabelWriter`` writing each file atomically (:func:`scripts.lib.fileio.atomic_path`: a failed or
    interrupted write leaves no partial file), or with ``output_format="seg"`` a DICOM SEG for a mask read from a
    DICOM series (:func:`scripts.lib.seg.write_seg`, the Deploy app's writer too), named as the NIfTI with ``.dcm``
    and referencing the source series, found again from the case's folder (headers only). A case that cannot have
    one (NIfTI input, or a series without the UIDs a SEG references) is written as NIfTI, and one log line says why.
    """

    def __init__(self, output_format: str = "nifti", metadata_file: str | None = None, **kwargs):
        super().__init__(**kwargs)
        check_output_format.__wrapped__(output_format)  # a ValueError, as writers raise
        self.output_format, self.metadata_file = output_format, metadata_file
        self.source_meta: dict = {}

    def set_metadata(self, meta_dict, resample: bool = True, **options):
        self.source_meta = dict(meta_dict or {})
        return super().set_metadata(meta_dict, resample=resample, **options)

    def write(self, filename, verbose: bool = False, **obj_kwargs):
        if self.output_format == "seg":
            series, why = self._seg_source()
            if series is not None:
                return self._write_seg(series, filename, verbose)
            logger.warning("%s: written as NIfTI, not DICOM SEG: %s", case_label(self.source_meta), why)
        name = str(filename)
        ImageWriter.write(self, name, verbose=verbose)  # the "writing: <file>" log line, with the file's own name
        suffix = ".tmp.nii.gz" if name.endswith(".nii.gz") else ".tmp" + os.path.splitext(name)[1]
        with atomic_path(name, suffix=suffix) as tmp:  # nibabel picks the format from the suffix
            super().write(tmp, verbose=False, **obj_kwargs)

    def _seg_source(self):
        """The checked source series of this case, or ``(None, why there is none)``."""
        source = str(self.source_meta.get("filename_or_obj", ""))
        if not os.path.isdir(source):
            return None, "the input is not a DICOM series"
        series = dicom.check_series(source)
        problem = seg_problem(series)
        return (None, problem) if problem else (series, None)

    def _write_seg(self, series: dict, filename, verbose: bool) -> None:
        name = str(filename)
        path = (name[: -len(".nii.gz")] if name.endswith(".nii.gz") else os.path.splitext(name)[0]) + ".dcm"
        data = self.data_obj
        mask = data.detach().cpu().numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
        affine = np.asarray(torch.as_tensor(self.affine).cpu(), np.float64)
        if mask.shape != tuple(series["shape"]) or not np.allclose(affine, series["affine"], atol=1e-3):
            raise ValueError(f"{series['name']}: the mask is not on the series' grid, so no SEG can be written")
        if not self.metadata_file:
            raise ValueError("MaskWriter: a SEG needs the bundle's metadata file (metadata_file)")
        with open(self.metadata_file) as f:
            metadata = json.load(f)
        if verbose:
            logger.info("writing: %s", path)
        write_seg(np.ascontiguousarray(mask.transpose(2, 1, 0)), series, metadata, path)


def to_input_grid(pred, threshold: float = 0.5, margin: int = MARGIN_VOXELS):
    """(C, ...) class probabilities on the network grid -> a (1, ...) uint8 label map on the input's grid.

    ``pred`` is the MetaTensor the inferer returns for one case (C = 1: the liver probability; C > 1: one channel per
    class), carrying the affine of the network grid and the preprocessing trace. Labels: ``p >= threshold`` for one
    channel, argmax for several; only the largest connected foreground component is kept, as
    ``KeepLargestConnectedComponentd(independent=False)`` would. The interpolation is the one ``Spacingd`` recorded
    in the trace, as ``Invertd`` uses it.
    """
    in_affine, in_shape = input_grid(pred)
    net_affine = np.asarray(torch.as_tensor(pred.affine).cpu(), dtype=np.float64)
    prob = pred.as_tensor() if isinstance(pred, MetaTensor) else torch.as_tensor(pred)
    out = torch.zeros((1, *in_shape), dtype=torch.uint8)
    meta = {k: v for k, v in pred.meta.items() if k != "affine"}
    fg = get_largest_connected_component_mask(foreground(prob, threshold))  # an empty mask stays empty
    box = liver_box(torch.as_tensor(fg), net_affine, in_affine, in_shape, margin)
    if box is not None:
        start, stop = box
        shift = np.eye(4)
        shift[:3, 3] = start
        src = MetaTensor(prob, affine=torch.as_tensor(net_affine))
        resample = SpatialResample(**_interpolation(pred), dtype=torch.float32)
        inside = resample(
            src, dst_affine=torch.as_tensor(in_affine @ shift), spatial_size=tuple(int(s) for s in stop - start)
        )
        inside = torch.as_tensor(inside)  # labels: p >= threshold for one channel (the liver), argmax for several
        labels = (inside[0] >= threshold if inside.shape[0] == 1 else inside.argmax(0)).to(torch.uint8)[None]
        num_labels = max(int(prob.shape[0]), 2)
        labels = KeepLargestConnectedComponent(applied_labels=list(range(1, num_labels)), independent=False)(labels)
        region = tuple(slice(int(a), int(b)) for a, b in zip(start, stop, strict=True))
        out[(slice(None), *region)] = torch.as_tensor(labels).to(device="cpu", dtype=torch.uint8)
    result = MetaTensor(out, affine=torch.as_tensor(in_affine), meta=meta)
    result.applied_operations = []
    return result
