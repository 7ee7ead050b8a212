"""Pictures of the liver CT segmentation bundle: case overlays, a worst-first grid, and training curves.

- ``overlay``: one case, three planes (axial, coronal, sagittal) through the liver's centre, the reference label as a
  semi-transparent fill and the prediction as a contour, titled with the case name and the liver Dice.
- ``grid``: one axial tile per case, worst Dice first; the picture to look at after an evaluation run.
- ``curves``: training loss and validation mean Dice from the TensorBoard event files of a training run.

Display convention (every picture): volumes are first brought to the closest canonical (RAS+) voxel order with
nibabel, then shown the radiological way: the patient's right on the image's left (axial, coronal), anterior up
(axial), superior up (coronal, sagittal), anterior on the left (sagittal). Pixels keep the physical aspect ratio of the
voxel spacing. So a file stored LPS and the same volume stored RAS give the same picture.

Colours (RGB, 0-255; the exact values a test or a reader can look for):

- ``LABEL_RGB`` (0, 255, 0) green: reference liver (label 1), a fill blended over the CT with ``FILL_ALPHA`` 0.4:
  ``pixel = round((1 - FILL_ALPHA) * grey + FILL_ALPHA * colour)`` per channel, ``grey`` the windowed CT value.
- ``LABEL_TUMOUR_RGB`` (255, 160, 0) orange: reference tumour (label 2), the same kind of fill.
- ``PRED_RGB`` (255, 0, 255) magenta: outline of the predicted liver (pred > 0, tumour included), opaque.
- ``PRED_TUMOUR_RGB`` (0, 255, 255) cyan: outline of the predicted tumour (pred == 2), opaque.

The CT grey is ``round(clip((HU - (level - width / 2)) / width, 0, 1) * 255)`` for the window (level, width).
Contours are drawn as the inner boundary of the predicted mask in the slice: pixels of the mask within
``contour_width`` pixels of a pixel outside it (the image border does not count as outside); ``overlay`` and ``grid``
pick the width so the outline is about 1.5 screen pixels wide. These values are exact in ``render_slice``'s array (one
pixel per voxel); in a PNG the slice is scaled to the panel, so they are exact inside uniform areas and blended at
their edges.

Every PNG is written atomically (temporary file in the same folder, then ``os.replace``) and carries its title in the
PNG ``Title`` text field and a JSON ``Description`` (case, Dice, centre voxel, panel boxes ``panels_px`` and legend
boxes ``legends_px`` in PNG pixels) for tests and scripts. Legends and titles lie whole inside the picture, whatever
the number of cases: the grid's legend takes as many rows as its width needs and its title wraps. Pictures are drawn
with matplotlib's Agg canvas directly: no display and no pyplot state are ever needed.

Command line: ``python -m scripts visualize overlay|grid|curves`` (:mod:`scripts.commands.visualize`).
"""

from __future__ import annotations

import csv
import glob
import json
import logging
import math
import os
import textwrap

import nibabel as nib
import numpy as np
from scipy import ndimage

from scripts.lib.fileio import NIFTI_SUFFIXES, atomic_path, case_name
from scripts.lib.metrics import dice

logger = logging.getLogger(__name__)

LABEL_RGB = (0, 255, 0)
LABEL_TUMOUR_RGB = (255, 160, 0)
PRED_RGB = (255, 0, 255)
PRED_TUMOUR_RGB = (0, 255, 255)
FILL_ALPHA = 0.4

DEFAULT_WINDOW = (50, 400)  # abdomen window: level 50 HU, width 400 HU
OVERLAY_FIGSIZE = (12.0, 4.8)  # inches; the PNG is OVERLAY_FIGSIZE * dpi pixels
GRID_TILE_INCHES = 3.0
GRID_DPI = 100
GRID_MARGIN_INCHES = 1.25  # title and legend
CURVES_FIGSIZE = (12.0, 4.5)
CURVES_DPI = 100

LOSS_TAG = "train_loss"
VAL_DICE_TAG = "val_mean_dice"

PLANES = ("axial", "coronal", "sagittal")
# For each plane, in canonical RAS voxel order: the axis cut, and (row axis, column axis) of the displayed slice.
_PLANE_AXES = {"axial": (2, (1, 0)), "coronal": (1, (2, 0)), "sagittal": (0, (2, 1))}
# Letters at the (left, right, top, bottom) edges of each plane.
_PLANE_LETTERS = {"axial": "RLAP", "coronal": "RLSI", "sagittal": "APSI"}
_AFFINE_ATOL = 1e-3


# ----------------------------------------------------------------------------------------------------------- helpers


def _describe(src) -> str:
    """A name for an input in messages: its path, or the file an in-memory nibabel image came from."""
    if isinstance(src, (str, os.PathLike)):
        return str(src)
    filename = getattr(src, "get_filename", lambda: None)()
    return str(filename) if filename else "<in-memory image>"


def load_canonical(src, role: str = "image"):
    """Load a NIfTI path (or take a nibabel image), reorient it to the closest canonical (RAS+) voxel order.

    Returns ``(data, affine, original_affine)``: a 3D array in the file's stored type (scaling applied), the canonical
    affine and the file's own affine. Raises FileNotFoundError/ValueError naming the file.
    """

    where = _describe(src)
    if isinstance(src, (str, os.PathLike)):
        if not os.path.isfile(src):
            raise FileNotFoundError(f"{where}: {role} file not found")
        try:
            img = nib.load(str(src))
        except Exception as e:  # nibabel raises several types for damaged files
            raise ValueError(f"{where}: not a readable NIfTI {role} ({e})") from e
    elif hasattr(src, "affine") and hasattr(src, "dataobj"):
        img = src
    else:
        raise ValueError(f"{where}: expected a NIfTI path or a nibabel image for the {role}, got {type(src).__name__}")
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise ValueError(f"{where}: the {role}'s affine is singular or not finite, so its orientation is unknown")
    shape = tuple(int(s) for s in img.shape)
    if len(shape) < 3 or any(s != 1 for s in shape[3:]):
        raise ValueError(f"{where}: expected a 3D {role}, found data of shape {shape}")
    try:
        canon = nib.as_closest_canonical(img)
        data = np.asanyarray(canon.dataobj)
    except Exception as e:
        raise ValueError(f"{where}: cannot read the {role} data ({e})") from e
    data = data.reshape(data.shape[:3])
    return data, np.asarray(canon.affine, dtype=np.float64), affine


def _as_labels(data: np.ndarray) -> np.ndarray:
    """Integer label map from stored label data (floats are rounded, e.g. a saved probability or float label)."""
    if np.issubdtype(data.dtype, np.integer) or data.dtype == bool:
        return data
    return np.rint(np.nan_to_num(data)).astype(np.int16)


def _check_same_grid(
    image_src, image_shape, image_affine, other_src, other_shape, other_affine, role: str, ref_role: str = "image"
) -> None:
    """Raise ValueError naming both files unless ``other`` has the reference's shape and affine (both canonical)."""
    if tuple(other_shape) != tuple(image_shape) or not np.allclose(other_affine, image_affine, atol=_AFFINE_ATOL):
        raise ValueError(
            f"{_describe(other_src)}: the {role} is not on the grid of the {ref_role} {_describe(image_src)} "
            f"(shape {tuple(other_shape)} vs {tuple(image_shape)}, or a different affine)"
        )


def liver_centre(label=None, pred=None, shape=None) -> tuple:
    """Voxel (i, j, k) of the liver's centre: centroid of label > 0, else of pred > 0, else the volume centre.

    Arrays in any voxel order (the result is in that order); ``shape`` is needed only when both are None.
    """
    for arr in (label, pred):
        if arr is None:
            continue
        mask = np.asarray(arr) > 0
        n = int(np.count_nonzero(mask))
        if n == 0:
            continue
        centre = []
        for axis in range(mask.ndim):
            others = tuple(a for a in range(mask.ndim) if a != axis)
            profile = np.count_nonzero(mask, axis=others) if others else mask.astype(np.int64)
            centre.append(int(round(float(np.dot(np.arange(mask.shape[axis]), profile)) / n)))
        return tuple(centre)
    if shape is None:
        shape = (label if label is not None else pred).shape
    return tuple(int(s) // 2 for s in shape)


def display_slice(volume: np.ndarray, plane: str, index: int) -> np.ndarray:
    """Cut a canonical (RAS+) volume and orient the slice for radiological display (row 0 at the top).

    axial (cut k): row r <-> j = ny-1-r (anterior up), column c <-> i = nx-1-c (patient's right on the left);
    coronal (cut j): row <-> k = nz-1-r (superior up), column <-> i = nx-1-c;
    sagittal (cut i): row <-> k = nz-1-r, column <-> j = ny-1-c (anterior on the left).
    """
    if plane not in _PLANE_AXES:
        raise ValueError(f"unknown plane {plane!r}; expected one of {PLANES}")
    cut, (row_axis, col_axis) = _PLANE_AXES[plane]
    key = [slice(None)] * 3
    key[cut] = int(index)
    sl = volume[tuple(key)]  # a view: no copy of the volume
    # After the cut the remaining axes keep their order; put the row axis first, then flip both to display order.
    remaining = [a for a in range(3) if a != cut]
    sl = np.transpose(sl, (remaining.index(row_axis), remaining.index(col_axis)))
    return sl[::-1, ::-1]


def plane_spacing(spacing, plane: str) -> tuple:
    """(row, column) pixel size in mm of a displayed slice, from the canonical voxel spacing (sx, sy, sz)."""
    _, (row_axis, col_axis) = _PLANE_AXES[plane]
    return float(spacing[row_axis]), float(spacing[col_axis])


def window_grey(hu: np.ndarray, window=DEFAULT_WINDOW) -> np.ndarray:
    """CT values to grey 0-255 (uint8) in a (level, width) window."""
    level, width = (float(v) for v in window)
    if not width > 0:
        raise ValueError(f"window width must be > 0, got {width}")
    lo = level - width / 2.0
    g = np.clip((np.asarray(hu, dtype=np.float32) - lo) / width, 0.0, 1.0)
    return np.rint(g * 255.0).astype(np.uint8)


def _boundary(mask: np.ndarray, width) -> np.ndarray:
    """Pixels of ``mask`` within ``width`` = (rows, columns) (or one int for both) of a pixel outside it.

    The neighbourhood is the ellipse with those half-axes, so a width of 1 means the 4 direct neighbours.
    """

    wr, wc = (width, width) if np.isscalar(width) else width
    wr, wc = max(1, int(wr)), max(1, int(wc))
    if not mask.any():
        return mask
    r, c = np.ogrid[-wr : wr + 1, -wc : wc + 1]
    footprint = (r / wr) ** 2 + (c / wc) ** 2 <= 1.0
    inner = ndimage.binary_erosion(mask, structure=footprint, border_value=1)
    return mask & ~inner


def render_slice(
    image, label=None, pred=None, *, plane="axial", index=None, window=DEFAULT_WINDOW, contour_width=1
) -> np.ndarray:
    """Render one displayed slice as an RGB uint8 array (rows x columns x 3), one pixel per voxel.

    ``image``, ``label``, ``pred``: 3D arrays in canonical RAS+ voxel order on one grid (``label``/``pred`` may be
    None). ``index``: the slice along the plane's cut axis (default: through ``liver_centre``). Pixel layout as in
    ``display_slice``. The CT is grey in ``window``; label 1 is blended with ``LABEL_RGB``, label 2 with
    ``LABEL_TUMOUR_RGB`` (weight ``FILL_ALPHA``); the inner boundary of pred > 0 is ``PRED_RGB`` and of pred == 2 is
    ``PRED_TUMOUR_RGB``, both opaque and drawn over the fill. ``contour_width``: the boundary's width in pixels, one
    int or (rows, columns) for anisotropic pixels; 1 = pred pixels with one of their 4 neighbours outside.
    """
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"render_slice: expected a 3D image, got shape {image.shape}")
    for name, arr in (("label", label), ("pred", pred)):
        if arr is not None and np.shape(arr) != image.shape:
            raise ValueError(f"render_slice: {name} shape {np.shape(arr)} differs from image shape {image.shape}")
    if index is None:
        centre = liver_centre(label, pred, image.shape)
        index = centre[_PLANE_AXES[plane][0]]
    grey = window_grey(display_slice(image, plane, index), window).astype(np.float32)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    if label is not None:
        lab = display_slice(np.asarray(label), plane, index)
        for mask, colour in ((lab == 1) | (lab > 2), LABEL_RGB), (lab == 2, LABEL_TUMOUR_RGB):
            rgb[mask] = (1.0 - FILL_ALPHA) * rgb[mask] + FILL_ALPHA * np.asarray(colour, dtype=np.float32)
    rgb = np.rint(rgb).astype(np.uint8)
    if pred is not None:
        p = display_slice(np.asarray(pred), plane, index)
        rgb[_boundary(p > 0, contour_width)] = PRED_RGB
        rgb[_boundary(p == 2, contour_width)] = PRED_TUMOUR_RGB
    return rgb


def _atomic_savefig(fig, output_png, dpi: float, metadata: dict) -> str:
    """Save a figure as PNG atomically (``scripts.lib.fileio``); never leaves a partial file."""

    output_png = os.fspath(output_png)
    with atomic_path(output_png) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, metadata=metadata)
    return output_png


def _new_figure(figsize, dpi):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _contour_width_for(ax, fig, n_rows: int, n_cols: int, row_mm: float, col_mm: float) -> tuple:
    """Contour width (rows, columns) in voxels so that the outline is about 1.5 screen pixels wide once shown."""
    pos = ax.get_position(original=True)
    w_px, h_px = pos.width * fig.bbox.width, pos.height * fig.bbox.height
    px_per_mm = min(w_px / (n_cols * col_mm), h_px / (n_rows * row_mm))
    return tuple(max(1, int(math.ceil(1.5 / max(px_per_mm * mm, 1e-6)))) for mm in (row_mm, col_mm))


def _show_slice(ax, rgb: np.ndarray, row_mm: float, col_mm: float, letters: str | None = None) -> None:
    h, w = rgb.shape[:2]
    ax.imshow(rgb, extent=(0, w * col_mm, h * row_mm, 0), aspect="equal", interpolation="antialiased")
    ax.set_xticks([])
    ax.set_yticks([])
    if letters:
        style = dict(color="white", fontsize=9, fontweight="bold", transform=ax.transAxes)
        left, right, top, bottom = letters
        ax.text(0.02, 0.5, left, ha="left", va="center", **style)
        ax.text(0.98, 0.5, right, ha="right", va="center", **style)
        ax.text(0.5, 0.98, top, ha="center", va="top", **style)
        ax.text(0.5, 0.02, bottom, ha="center", va="bottom", **style)


def _legend_handles(has_label: bool, has_label_tumour: bool, has_pred: bool, has_pred_tumour: bool) -> list:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = []
    if has_label:
        handles.append(Patch(facecolor=np.array(LABEL_RGB) / 255, alpha=0.6, label="label: liver (fill)"))
    if has_label_tumour:
        handles.append(Patch(facecolor=np.array(LABEL_TUMOUR_RGB) / 255, alpha=0.6, label="label: tumour (fill)"))
    if has_pred:
        handles.append(Line2D([], [], color=np.array(PRED_RGB) / 255, lw=2, label="prediction: liver (outline)"))
    if has_pred_tumour:
        handles.append(
            Line2D([], [], color=np.array(PRED_TUMOUR_RGB) / 255, lw=2, label="prediction: tumour (outline)")
        )
    return handles


def _png_box(fig, artist) -> list:
    """Pixel box [left, top, right, bottom] of a drawn artist in the saved PNG (origin at the top-left)."""
    bb = artist.get_window_extent()
    height = fig.bbox.height
    return [round(bb.x0, 2), round(height - bb.y1, 2), round(bb.x1, 2), round(height - bb.y0, 2)]


def _panel_boxes(fig, axes: dict) -> dict:
    """Pixel boxes [left, top, right, bottom] of each axes in the saved PNG (origin at the top-left); draws ``fig``."""
    fig.canvas.draw()
    return {name: _png_box(fig, ax) for name, ax in axes.items()}


def _legend_boxes(fig) -> list:
    """Pixel boxes of every legend of a drawn ``fig`` (figure legends first, then the axes' ones), as ``_png_box``."""
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    return [_png_box(fig, legend) for legend in legends]


def _bottom_legend(fig, handles: list, *, above_inches: float = 0.05, fontsize: float = 8):
    """A figure legend centred ``above_inches`` over the bottom edge, in as few rows as the figure's width allows.

    The entries go in 1, 2, ... rows of ``ceil(entries / rows)`` columns: the first layout whose width fits within
    98% of the figure's is kept (one column at the least). Returns ``(legend, height in inches)``.
    """
    renderer = fig.canvas.get_renderer()
    for rows in range(1, len(handles) + 1):
        ncol = int(math.ceil(len(handles) / rows))
        anchor = (0.5, above_inches / fig.get_figheight())
        legend = fig.legend(
            handles=handles,
            loc="lower center",
            bbox_to_anchor=anchor,
            ncol=ncol,
            fontsize=fontsize,
            frameon=False,
            borderaxespad=0.0,
        )
        box = legend.get_window_extent(renderer)
        if box.width <= 0.98 * fig.bbox.width or ncol == 1:
            return legend, box.height / fig.dpi
        legend.remove()
    raise ValueError("a legend needs at least one entry")


def _fitted_title(fig, title: str, fontsize: float):
    """``fig.suptitle(title)``, broken into lines at spaces where it is wider than 98% of the figure.

    Returns ``(text, extra inches)``: the text artist and how much taller it is than one line.
    """

    renderer = fig.canvas.get_renderer()
    text = fig.suptitle(title, fontsize=fontsize)
    one_line = text.get_window_extent(renderer).height
    width = len(title)
    while text.get_window_extent(renderer).width > 0.98 * fig.bbox.width and width > 10:
        width = int(width * 0.9)
        text.set_text(textwrap.fill(title, width))
    return text, (text.get_window_extent(renderer).height - one_line) / fig.dpi


# ----------------------------------------------------------------------------------------------------------- overlay


def _load_case(image, label, pred) -> tuple:
    """The image, label and prediction in canonical voxel order: ``(img, affine, file affine, lab, prd)``, ``lab`` and
    ``prd`` None where not given; FileNotFoundError/ValueError naming the file that is missing, unreadable or on
    another grid than the image."""
    img, affine, orig_affine = load_canonical(image, "image")
    lab = prd = None
    if label is not None:
        lab, lab_affine, _ = load_canonical(label, "label")
        _check_same_grid(image, img.shape, affine, label, lab.shape, lab_affine, "label")
        lab = _as_labels(lab)
    if pred is not None:
        prd, prd_affine, _ = load_canonical(pred, "prediction")
        _check_same_grid(image, img.shape, affine, pred, prd.shape, prd_affine, "prediction")
        prd = _as_labels(prd)
    return img, affine, orig_affine, lab, prd


def _file_voxel(orig_affine, affine, centre) -> tuple[list[int], dict]:
    """The canonical voxel ``centre`` in the file's own voxel indices (to find the same spot in another viewer), and
    which of the file's voxel axes each canonical axis is (a permutation, possibly with flips)."""
    file_ijk = np.linalg.solve(orig_affine, affine @ np.array([*centre, 1.0]))[:3]
    file_ijk = [int(round(v)) for v in file_ijk]
    file_axis_of = {int(c): f for f, (c, _) in enumerate(nib.io_orientation(orig_affine))}
    return file_ijk, file_axis_of


def _overlay_panels(fig, img, lab, prd, *, spacing, centre, window, file_ijk, file_axis_of) -> dict:
    """Draw the axial, coronal and sagittal slices through ``centre`` side by side, each panel as wide as its slice
    is in mm and titled with the cut's index in the file's own voxel order; return ``{plane: axes}``."""
    widths = []
    for plane in PLANES:
        _, (row_axis, col_axis) = _PLANE_AXES[plane]
        widths.append(img.shape[col_axis] * spacing[col_axis])
    gs = fig.add_gridspec(1, 3, width_ratios=widths, left=0.01, right=0.99, bottom=0.12, top=0.86, wspace=0.04)
    axes = {}
    for n, plane in enumerate(PLANES):
        ax = fig.add_subplot(gs[0, n])
        ax.set_facecolor("black")
        cut, (row_axis, col_axis) = _PLANE_AXES[plane]
        row_mm, col_mm = plane_spacing(spacing, plane)
        cw = _contour_width_for(ax, fig, img.shape[row_axis], img.shape[col_axis], row_mm, col_mm)
        rgb = render_slice(img, lab, prd, plane=plane, index=centre[cut], window=window, contour_width=cw)
        _show_slice(ax, rgb, row_mm, col_mm, _PLANE_LETTERS[plane])
        f = file_axis_of[cut]
        ax.set_title(f"{plane}: {'ijk'[f]} = {file_ijk[f]} (of 0..{img.shape[cut] - 1})", fontsize=9)
        axes[plane] = ax
    return axes


def _overlay_footer(fig, lab, prd, window, file_ijk) -> None:
    """The legend of what is drawn (label fill, prediction outline, tumour where present), bottom left, and the
    window and centre voxel, bottom right."""
    handles = _legend_handles(
        lab is not None,
        lab is not None and bool(np.any(lab == 2)),
        prd is not None,
        prd is not None and bool(np.any(prd == 2)),
    )
    if handles:
        fig.legend(
            handles=handles, loc="lower left", bbox_to_anchor=(0.0, 0.035), ncol=len(handles), fontsize=8, frameon=False
        )
    fig.text(
        0.99,
        0.01,
        f"window L{window[0]:g}/W{window[1]:g} HU · centre (i, j, k) = {tuple(file_ijk)}, the file's own voxel "
        "indices from 0 · radiological view",
        ha="right",
        va="bottom",
        fontsize=7,
        color="0.3",
    )


def overlay(image, output_png, *, label=None, pred=None, title=None, window=DEFAULT_WINDOW, dpi=100) -> str:
    """Draw one case: axial, coronal and sagittal slices through the liver's centre; return ``output_png``.

    Args:
        image: CT NIfTI path or nibabel image.
        output_png: where the PNG goes (written atomically; its folder is created if needed).
        label: reference label (0 background, 1 liver, 2 tumour) on the image's grid, drawn as a fill; optional.
        pred: predicted label on the image's grid, drawn as an outline; optional.
        title: figure title; default: the case name (image file name) and, with label and pred, the liver Dice
            (label > 0 vs pred > 0, in 3D) to 3 decimals.
        window: CT display window (level, width) in HU; default abdomen (50, 400).
        dpi: the PNG is ``OVERLAY_FIGSIZE`` inches times ``dpi`` pixels.

    Raises FileNotFoundError/ValueError naming the file: missing/unreadable input, or a label/pred whose grid
    (shape and affine, after reorientation) differs from the image's.
    """
    if not dpi > 0:
        raise ValueError(f"dpi must be > 0, got {dpi}")
    window_grey(np.zeros(1), window)  # validates the window before any loading
    img, affine, orig_affine, lab, prd = _load_case(image, label, pred)
    spacing = nib.affines.voxel_sizes(affine)
    centre = liver_centre(lab, prd, img.shape)
    name = case_name(_describe(image)) if _describe(image) != "<in-memory image>" else "image"
    liver_dice = dice(lab > 0, prd > 0) if lab is not None and prd is not None else None
    if title is None:
        title = name if liver_dice is None else f"{name}   liver Dice {liver_dice:.3f}"
    file_ijk, file_axis_of = _file_voxel(orig_affine, affine, centre)

    fig = _new_figure(OVERLAY_FIGSIZE, dpi)
    axes = _overlay_panels(
        fig, img, lab, prd, spacing=spacing, centre=centre, window=window, file_ijk=file_ijk, file_axis_of=file_axis_of
    )
    fig.suptitle(title, fontsize=12)
    _overlay_footer(fig, lab, prd, window, file_ijk)
    info = {
        "case": name,
        "liver_dice": liver_dice,
        "centre_canonical_ijk": list(centre),
        "centre_file_ijk": file_ijk,
        "canonical_shape": list(img.shape),
        "spacing_mm": [float(s) for s in spacing],
        "window": [float(window[0]), float(window[1])],
        "panels_px": _panel_boxes(fig, axes),
        "legends_px": _legend_boxes(fig),
    }
    return _atomic_savefig(fig, output_png, dpi, {"Title": title, "Description": json.dumps(info)})


# -------------------------------------------------------------------------------------------------------------- grid


def order_worst_first(cases: list[dict]) -> list[dict]:
    """Cases sorted by ``dice``, lowest first; an undefined Dice (None or NaN) counts as worst; ties by name."""

    def key(case):
        d = case.get("dice")
        undefined = d is None or not np.isfinite(float(d))
        return (0 if undefined else 1, 0.0 if undefined else float(d), str(case.get("name", "")))

    return sorted(cases, key=key)


def _case_dice(case: dict) -> float:
    """A case's liver Dice: its ``dice`` if given, else computed from its label and prediction (NaN without both)."""
    if case.get("dice") is not None:
        return float(case["dice"])
    if case.get("label") is None or case.get("pred") is None:
        return float("nan")
    lab, lab_affine, _ = load_canonical(case["label"], "label")
    prd, prd_affine, _ = load_canonical(case["pred"], "prediction")
    _check_same_grid(case["label"], lab.shape, lab_affine, case["pred"], prd.shape, prd_affine, "prediction", "label")
    return dice(_as_labels(lab) > 0, _as_labels(prd) > 0)


def grid_figsize(n: int) -> tuple:
    """Figure size (inches) of a grid of ``n`` tiles: ceil(sqrt(n)) columns, as many rows as needed."""
    ncols = int(math.ceil(math.sqrt(n)))
    nrows = int(math.ceil(n / ncols))
    return (GRID_TILE_INCHES * ncols, GRID_TILE_INCHES * nrows + GRID_MARGIN_INCHES)


def grid(cases, output_png, *, max_cases=16, window=DEFAULT_WINDOW) -> str:
    """One axial tile per case through its liver centre (label fill, prediction outline), worst Dice first.

    ``cases``: dicts ``{"name", "image", "label", "pred", "dice" (optional)}``; paths or nibabel images. A missing
    Dice is computed (label > 0 vs pred > 0); only the ``max_cases`` worst cases are drawn. Returns ``output_png``.
    The legend below the tiles takes as many rows as the figure's width needs; the PNG's ``Description`` holds the
    ``order``, ``dice``, ``num_cases``, ``panels_px`` (one box per tile, in that order) and ``legends_px``.
    """
    cases = list(cases)
    if not cases:
        raise ValueError(f"{output_png}: no cases to draw")
    if int(max_cases) < 1:
        raise ValueError(f"max_cases must be >= 1, got {max_cases}")
    window_grey(np.zeros(1), window)
    scored = []
    for n, case in enumerate(cases, 1):
        if "image" not in case:
            raise ValueError(f"case {case.get('name', n)}: no 'image' in the case entry")
        name = case.get("name") or case_name(_describe(case["image"]))
        if case.get("dice") is None:
            logger.info("grid: Dice of %s (%d/%d)", name, n, len(cases))
        scored.append({**case, "name": name, "dice": _case_dice(case)})
    ordered = order_worst_first(scored)
    shown = ordered[: int(max_cases)]

    # Each case is read once and only its axial slice through the liver's centre is kept, so that the legend (which
    # lists the classes found) can be laid out before any tile is placed.
    n = len(shown)
    slices = []
    for t, case in enumerate(shown):
        logger.info("grid: %d/%d %s (Dice %.3f)", t + 1, n, case["name"], case["dice"])
        slices.append(_axial_slice(case))
    ncols = int(math.ceil(math.sqrt(n)))
    nrows = int(math.ceil(n / ncols))
    width, height = grid_figsize(n)  # the PNG is grid_figsize(n) * GRID_DPI pixels
    fig = _new_figure((width, height), GRID_DPI)
    title = f"{len(cases)} case{'s' * (len(cases) != 1)}, worst liver Dice first"
    title += f" (the {n} worst shown)" if n < len(cases) else ""
    _, extra = _fitted_title(fig, title, 12)
    handles = _legend_handles(
        any(tile["label"] is not None for tile in slices),
        any(tile["label_tumour"] for tile in slices),
        any(tile["pred"] is not None for tile in slices),
        any(tile["pred_tumour"] for tile in slices),
    )
    legend_inches = _bottom_legend(fig, handles)[1] + 0.15 if handles else 0.05
    top = 1.0 - (0.9 + extra) / height  # room for the title above the first row's two-line tile titles
    bottom = legend_inches / height  # room for the legend, in as many rows as the figure's width needs
    gs = fig.add_gridspec(nrows, ncols, left=0.01, right=0.99, bottom=bottom, top=top, wspace=0.04, hspace=0.18)
    axes = {}
    for t, (case, tile) in enumerate(zip(shown, slices, strict=True)):
        ax = fig.add_subplot(gs[t // ncols, t % ncols])
        ax.set_facecolor("black")
        (nx, ny, _), (row_mm, col_mm) = tile["image"].shape, plane_spacing(tile["spacing"], "axial")
        cw = _contour_width_for(ax, fig, ny, nx, row_mm, col_mm)
        rgb = render_slice(
            tile["image"], tile["label"], tile["pred"], plane="axial", index=0, window=window, contour_width=cw
        )
        _show_slice(ax, rgb, row_mm, col_mm, "RLAP")
        d = case["dice"]
        ax.set_title(f"{case['name']}\nDice {d:.3f}" if np.isfinite(d) else f"{case['name']}\nDice n/a", fontsize=9)
        axes[t] = ax
    info = {"order": [c["name"] for c in shown], "dice": [c["dice"] for c in shown], "num_cases": len(cases)}
    info["panels_px"] = list(_panel_boxes(fig, axes).values())
    info["legends_px"] = _legend_boxes(fig)
    return _atomic_savefig(fig, output_png, GRID_DPI, {"Title": title, "Description": json.dumps(info)})


def _axial_slice(case: dict) -> dict:
    """The axial slice of a grid case through its liver's centre, as one-slice volumes (canonical voxel order).

    Returns ``{"image", "label", "pred", "spacing", "label_tumour", "pred_tumour"}``: ``label``/``pred`` are None
    when the case has none; the ``*_tumour`` flags tell whether the whole label/prediction holds label 2.
    """

    img, affine, _ = load_canonical(case["image"], "image")
    out = {"label": None, "pred": None, "label_tumour": False, "pred_tumour": False}
    for key, role in (("label", "label"), ("pred", "prediction")):
        if case.get(key) is not None:
            data, data_affine, _ = load_canonical(case[key], role)
            _check_same_grid(case["image"], img.shape, affine, case[key], data.shape, data_affine, role)
            out[key] = _as_labels(data)
            out[f"{key}_tumour"] = bool(np.any(out[key] == 2))
    k = liver_centre(out["label"], out["pred"], img.shape)[2]
    # Copies: a view would keep the whole volume in memory.
    for key, data in (("image", img), ("label", out["label"]), ("pred", out["pred"])):
        out[key] = None if data is None else np.array(data[:, :, k : k + 1])
    out["spacing"] = nib.affines.voxel_sizes(affine)
    return out


# ------------------------------------------------------------------------------------------------------------ curves


def _event_files(log_dir) -> list[str]:
    log_dir = os.fspath(log_dir)
    if not os.path.isdir(log_dir):
        raise ValueError(f"{log_dir}: log folder not found")
    files = sorted(glob.glob(os.path.join(glob.escape(log_dir), "**", "events.out.tfevents.*"), recursive=True))
    files = [f for f in files if os.path.isfile(f)]
    if not files:
        raise ValueError(f"{log_dir}: no TensorBoard event files (events.out.tfevents.*) below this folder")
    return files


def read_scalars(log_dir) -> dict:
    """All scalar series below ``log_dir``: ``{tag: [(step, value, wall_time), ...]}`` sorted by step.

    Every event file below ``log_dir`` is read; where several files hold the same tag and step (a resumed or repeated
    run), the value written last (by wall time) wins. Raises ValueError naming ``log_dir`` if it holds no event file.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    series: dict = {}
    for path in _event_files(log_dir):
        acc = EventAccumulator(path, size_guidance={"scalars": 0, "tensors": 0, "images": 1, "histograms": 1})
        try:
            acc.Reload()
        except Exception as e:  # a truncated file of a run still writing: use what could be read
            logger.warning("%s: could not read every event (%s)", path, e)
        tags = acc.Tags()
        for tag in tags.get("scalars", []):
            for ev in acc.Scalars(tag):
                series.setdefault(tag, []).append((int(ev.step), float(ev.value), float(ev.wall_time)))
        for tag in tags.get("tensors", []):  # scalars written in the newer tensor form
            for ev in acc.Tensors(tag):
                value = tensor_util.make_ndarray(ev.tensor_proto)
                if value.size == 1 and np.issubdtype(value.dtype, np.number):
                    series.setdefault(tag, []).append((int(ev.step), float(value.reshape(())), float(ev.wall_time)))
    out = {}
    for tag, events in series.items():
        latest = {}
        for step, value, wall in sorted(events, key=lambda e: e[2]):
            latest[step] = (step, value, wall)
        out[tag] = [latest[s] for s in sorted(latest)]
    return out


def infer_iterations_per_epoch(loss_events, val_events):
    """Iterations per epoch from when validations were logged, or None when it cannot be told.

    ``loss_events``: (iteration, value, wall_time) per training iteration; ``val_events``: (epoch, value, wall_time).
    A validation after epoch e is logged after the epoch's last iteration e * n and before the next one, so the last
    iteration logged before it, divided by e, is n; every validation must agree.
    """
    if not loss_events or not val_events:
        return None
    steps = np.array([e[0] for e in loss_events])
    walls = np.array([e[2] for e in loss_events])
    candidates = set()
    for epoch, _, wall in val_events:
        before = steps[walls <= wall]
        if epoch < 1 or before.size == 0:
            return None
        last = int(before.max())
        if last % epoch:
            return None
        candidates.add(last // epoch)
    if len(candidates) != 1:
        return None
    n = candidates.pop()
    return n if n >= 1 else None


def _moving_average(values: np.ndarray, k: int) -> np.ndarray:
    return np.convolve(values, np.ones(k) / k, mode="valid")


def _no_data(ax, text: str) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=10, color="0.35", wrap=True)


def _loss_panel(ax, loss: list, ipe, n_files: int, info: dict) -> None:
    """Draw ``train_loss`` per iteration (light) and its per-epoch mean when ``ipe`` (iterations per epoch) is known,
    else a moving average; a note when there is no loss. Adds ``loss_epoch_means`` and ``last_loss`` to ``info``."""
    from matplotlib.ticker import MaxNLocator

    ax.set_title("training loss", fontsize=11)
    ax.set_xlabel("iteration")
    if not loss:
        _no_data(ax, f"no {LOSS_TAG!r} scalars\nin {n_files} event file(s) below this folder")
        return
    it = np.array([e[0] for e in loss], dtype=float)
    lv = np.array([e[1] for e in loss], dtype=float)
    ax.plot(it, lv, color="tab:blue", alpha=0.3, lw=0.8, label=f"{LOSS_TAG} per iteration")
    if ipe:
        epochs = np.ceil(it / ipe).astype(int)
        ep = np.unique(epochs)
        sums, counts = np.bincount(epochs, weights=lv), np.bincount(epochs)
        means = sums[ep] / counts[ep]
        ax.plot(ep * ipe, means, "o-", color="tab:blue", lw=1.8, ms=3, label="mean per epoch")
        sec = ax.secondary_xaxis("top", functions=(lambda x: x / ipe, lambda e: e * ipe))
        sec.set_xlabel(f"epoch ({ipe} iterations each)", fontsize=8)
        sec.xaxis.set_major_locator(MaxNLocator(integer=True))
        info["loss_epoch_means"] = [[int(e), float(m)] for e, m in zip(ep, means, strict=True)]
    else:
        k = min(200, len(lv) // 20)
        if k >= 2:
            ax.plot(
                it[k - 1 :], _moving_average(lv, k), color="tab:blue", lw=1.8, label=f"moving average ({k} iterations)"
            )
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    info["last_loss"] = float(lv[-1])


def _dice_panel(ax, val: list, n_files: int, info: dict) -> None:
    """Draw ``val_mean_dice`` per epoch with the best epoch starred; a note when there is none. Adds
    ``best_val_mean_dice`` and ``best_epoch`` to ``info``."""
    from matplotlib.ticker import MaxNLocator

    ax.set_title("validation mean Dice", fontsize=11)
    ax.set_xlabel("epoch")
    if not val:
        _no_data(ax, f"no {VAL_DICE_TAG!r} scalars\nin {n_files} event file(s) below this folder")
        return
    ep = np.array([e[0] for e in val])
    dv = np.array([e[1] for e in val], dtype=float)
    ax.plot(ep, dv, "o-", color="tab:green", lw=1.5, ms=4, label=VAL_DICE_TAG)
    finite = np.isfinite(dv)
    if finite.any():
        best = int(np.nanargmax(np.where(finite, dv, -np.inf)))
        ax.plot(
            [ep[best]],
            [dv[best]],
            marker="*",
            ms=16,
            color="tab:red",
            ls="none",
            label=f"best {dv[best]:.3f} (epoch {ep[best]})",
        )
        info["best_val_mean_dice"] = float(dv[best])
        info["best_epoch"] = int(ep[best])
    lo = float(np.nanmin(dv)) if finite.any() else 0.0
    ax.set_ylim(min(0.0, lo), 1.0 if np.nanmax(np.where(finite, dv, 0)) <= 1.0 else None)
    ax.set_ylabel("Dice")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")


def curves(log_dir, output_png) -> str:
    """Training loss and validation mean Dice from the TensorBoard event files below ``log_dir``; returns the PNG path.

    Left: ``train_loss`` per iteration (light) and its per-epoch mean when the iterations per epoch can be told from
    the validation times (else a moving average). Right: ``val_mean_dice`` per epoch with the best one marked. A
    missing tag leaves a note in its panel; no event files at all raises ValueError naming ``log_dir``.
    """
    scalars = read_scalars(log_dir)
    loss = scalars.get(LOSS_TAG, [])
    val = scalars.get(VAL_DICE_TAG, [])
    n_files = len(_event_files(log_dir))
    ipe = infer_iterations_per_epoch(loss, val)

    fig = _new_figure(CURVES_FIGSIZE, CURVES_DPI)
    ax_loss, ax_dice = fig.subplots(1, 2, gridspec_kw=dict(left=0.07, right=0.98, bottom=0.13, top=0.8, wspace=0.2))
    info: dict = {
        "log_dir": os.fspath(log_dir),
        "event_files": n_files,
        "iterations_per_epoch": ipe,
        "missing_tags": [t for t, ev in ((LOSS_TAG, loss), (VAL_DICE_TAG, val)) if not ev],
    }
    _loss_panel(ax_loss, loss, ipe, n_files, info)
    _dice_panel(ax_dice, val, n_files, info)
    title = f"training curves: {os.path.abspath(os.fspath(log_dir))}"
    fig.suptitle(title, fontsize=11)
    fig.canvas.draw()
    info["legends_px"] = _legend_boxes(fig)
    return _atomic_savefig(fig, output_png, CURVES_DPI, {"Title": title, "Description": json.dumps(info)})


# --------------------------------------------------------------------------------------------------------------- CLI


def _nifti_files(folder: str, recursive: bool = False) -> list[str]:
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder}: folder not found")
    pattern = os.path.join(glob.escape(folder), "**", "*") if recursive else os.path.join(glob.escape(folder), "*")
    return sorted(
        f for f in glob.glob(pattern, recursive=recursive) if os.path.isfile(f) and f.endswith(NIFTI_SUFFIXES)
    )


def _name_candidates(name: str) -> list[str]:
    """The case names a prediction file name may stand for: itself, then without a trailing ``_suffix``."""
    out = [name]
    if "_" in name:
        out.append(name.rsplit("_", 1)[0])
    return out


def pair_cases(images_dir: str, labels_dir: str, preds_dir: str) -> list[dict]:
    """Cases with a prediction: ``[{"name", "image", "label", "pred"}]``, paired by case name.

    ``images_dir/NAME.nii.gz`` goes with ``labels_dir/NAME.nii.gz`` and a prediction ``NAME.nii.gz`` or
    ``NAME_<suffix>.nii.gz`` (e.g. ``NAME_seg.nii.gz``) anywhere below ``preds_dir``. Images without a prediction are
    skipped; a prediction without an image or label, or two predictions for one case, raise an error.
    """
    images = {case_name(p): p for p in _nifti_files(images_dir)}
    labels = {case_name(p): p for p in _nifti_files(labels_dir)}
    preds = _nifti_files(preds_dir, recursive=True)
    if not images:
        raise FileNotFoundError(f"{images_dir}: no NIfTI images (.nii.gz/.nii) in this folder")
    if not preds:
        raise FileNotFoundError(f"{preds_dir}: no NIfTI predictions (.nii.gz/.nii) below this folder")
    cases: dict = {}
    for p in preds:
        name = next((c for c in _name_candidates(case_name(p)) if c in images), None)
        if name is None:
            raise ValueError(f"{p}: no image in {images_dir} matches this prediction's name")
        if name in cases:
            raise ValueError(f"{p}: a second prediction for case {name} (the first: {cases[name]['pred']})")
        if name not in labels:
            raise FileNotFoundError(f"{os.path.join(labels_dir, name + '.nii.gz')}: label for case {name} not found")
        cases[name] = {"name": name, "image": images[name], "label": labels[name], "pred": p}
    skipped = len(images) - len(cases)
    if skipped:
        logger.info("grid: %d image(s) without a prediction skipped", skipped)
    return [cases[k] for k in sorted(cases)]


_NAME_COLUMNS = ("case", "name", "filename", "image")
_DICE_COLUMNS = ("dice", "liver_dice", "liver", "mean_dice", "val_mean_dice", "mean")


def read_metrics(csv_path: str, dice_column: str | None = None) -> dict:
    """``{case name: Dice}`` from a per-case CSV (e.g. the evaluation's ``metrics.csv``, or MONAI ``*_raw.csv``).

    The name column is the first of ``case``, ``name``, ``filename``, ``image`` (paths and ``.nii.gz`` are reduced to
    the case name); the Dice column is ``dice_column`` or the first of ``dice``, ``liver_dice``, ``liver``,
    ``mean_dice``, ``val_mean_dice``, ``mean``. Empty or non-numeric cells give NaN.
    """
    if not os.path.isfile(csv_path):
        raise FileNotFoundError(f"{csv_path}: metrics file not found")
    with open(csv_path, newline="") as f:
        text = f.read()
    delimiter = "\t" if text.split("\n", 1)[0].count("\t") > text.split("\n", 1)[0].count(",") else ","
    rows = list(csv.DictReader(text.splitlines(), delimiter=delimiter))
    columns = [c.strip() for c in (rows[0].keys() if rows else [])]
    name_col = next((c for c in _NAME_COLUMNS if c in columns), None)
    if dice_column is not None and dice_column not in columns:
        raise ValueError(f"{csv_path}: no column {dice_column!r} (columns: {', '.join(columns)})")
    dice_col = dice_column or next((c for c in _DICE_COLUMNS if c in columns), None)
    if name_col is None or dice_col is None:
        raise ValueError(
            f"{csv_path}: need a case name column ({'/'.join(_NAME_COLUMNS)}) and a Dice column "
            f"({'/'.join(_DICE_COLUMNS)}); found {', '.join(columns) or 'no columns'}"
        )
    out = {}
    for row in rows:
        row = {(k or "").strip(): v for k, v in row.items()}
        name = case_name((row.get(name_col) or "").strip())
        try:
            out[name] = float(row.get(dice_col))
        except (TypeError, ValueError):
            out[name] = float("nan")
    logger.info("grid: Dice from %s column %r (%d cases)", csv_path, dice_col, len(out))
    return out


def metrics_for_case(metrics: dict, name: str):
    """The Dice of case ``name`` in ``read_metrics`` output: under ``name``, else under ``name_<suffix>``; or None."""
    if name in metrics:
        return metrics[name]
    for key, value in metrics.items():
        if "_" in key and key.rsplit("_", 1)[0] == name:
            return value
    return None


def phantom_grid(cases, output_png, *, window=DEFAULT_WINDOW, dpi=100) -> str:
    """Draw generated phantom cases: one row per case, a coronal and an axial slice through the liver with the
    liver outline, each row titled by the case's ``title``.

    ``cases``: dicts with ``image``, ``label`` (stored voxel order) and ``affine`` (voxel -> RAS+ mm), and ``title``.
    """

    cases = list(cases)
    if not cases:
        raise ValueError("phantom_grid: no cases to draw")
    fig = _new_figure((7.0, 3.4 * len(cases)), dpi)
    for row, case in enumerate(cases):
        affine = np.asarray(case["affine"], dtype=float)
        image, canonical, _ = load_canonical(nib.Nifti1Image(np.asarray(case["image"]), affine))
        label, _, _ = load_canonical(nib.Nifti1Image(np.asarray(case["label"]), affine), "label")
        spacing = np.sqrt((canonical[:3, :3] ** 2).sum(axis=0))
        for col, plane in enumerate(("coronal", "axial")):
            ax = fig.add_subplot(len(cases), 2, 2 * row + col + 1)
            row_mm, col_mm = plane_spacing(spacing, plane)
            rgb = render_slice(image, pred=label, plane=plane, index=None, window=window)  # no liver: the centre
            _show_slice(ax, rgb, row_mm, col_mm)
            ax.set_title(f"{case['title']} ({plane})", fontsize=5.5)
    fig.tight_layout()
    return _atomic_savefig(fig, output_png, dpi, {"Title": "synthetic phantom cases (not patient data)"})
