"""Sanity checks of a liver CT dataset (images in Hounsfield units, labels 0 background, 1 liver, 2 tumour).

Each case is checked from its NIfTI header first (dimensions, declared size, affine), and its voxel
data is then read once per file. Problems are reported as findings
``{"case", "severity": "error" | "warning", "problem"}``; a finding of a kind that needs explaining (and tends to
affect every case of a dataset alike) also holds the ``explanation`` shared by all findings of that kind, while its
``problem`` tells what was found in this case. :func:`assert_dataset_ok` turns them into a ``ValueError`` before
training starts, giving each explanation once followed by the cases it concerns.

Command line: ``python -m scripts check_dataset`` (:mod:`scripts.commands.check_dataset`).
"""

import csv
import io
import json
import os

import nibabel as nib
import numpy as np

from scripts import as_bool
from scripts.lib.ct_values import AIR_HU, BRIGHT_HU, EXPECTED_LABELS, hu_doubts, values_text
from scripts.lib.datalist import load_datalist
from scripts.lib.errors import one_line
from scripts.lib.fileio import case_name, write_text

__all__ = [
    "check_case",
    "check_dataset",
    "write_report",
    "format_table",
    "assert_dataset_ok",
    "summarize",
    "MAX_BYTES",
]

#: Largest voxel data (header shape x item size) that is read; larger files are an error.
MAX_BYTES = 4 * 1024**3
#: Spacing outside this range (mm) is unusual for abdominal CT and worth a look.
SPACING_RANGE_MM = (0.3, 8.0)
#: Fractions of label voxels lying in air above which a warning / an error is raised.
OUTSIDE_BODY_WARNING, OUTSIDE_BODY_ERROR = 0.01, 0.20
#: Voxels used at most for the HU percentiles (an even subsample of the volume).
PERCENTILE_SAMPLES = 2_000_000
TUMOUR_LABEL = 2

# Explanations shared by every finding of a kind (see the module docstring).
IDENTITY_AFFINE = "spacing and position were probably lost on conversion (1 mm voxels at the origin assumed)"
NORMALISED = "normalised data, not Hounsfield units (the training windows HU, so give it the original CT values)"
NO_BONE = "probably not Hounsfield units: an abdominal CT holds contrast-enhanced vessels or bone above 100 HU"
NO_AIR = (
    "probably not Hounsfield units: a CT field of view holds air (-1000 HU), so the rescale intercept is missing or "
    "the image is not CT, unless it is cropped tightly to the body"
)
LEFT_LIVER = (
    "suspicious orientation: in RAS world coordinates the liver lies on the patient's left, but livers lie on the "
    "patient's right. Most likely the voxel data is stored in LPS order (the DICOM/ITK convention) while the NIfTI "
    "affine declares RAS, so left-right (and anterior-posterior) are mirrored - a known problem of some Medical "
    "Segmentation Decathlon files. Check the case in a viewer and fix its affine; it is only a warning because a true "
    "left-sided liver (situs inversus) is possible"
)

ROW_FIELDS = [
    "name", "image", "label", "shape", "spacing", "orientation", "dtype",
    "hu_min", "hu_p1", "hu_p50", "hu_p99", "hu_max", "label_values", "liver_ml", "tumour_ml",
]  # fmt: skip


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def _fmt(values, digits=2):
    """``(0.7, 0.7, 5.0)`` -> ``"0.70x0.70x5.00"``; integers without decimals."""
    if values is None:
        return ""
    return "x".join(str(v) if isinstance(v, (int, np.integer)) else f"{v:.{digits}f}" for v in values)


def _spacing(affine):
    """Voxel sizes (mm): the lengths of the affine's first three columns."""
    return np.sqrt((np.asarray(affine, dtype=float)[:3, :3] ** 2).sum(axis=0))


def _read_header(path, role, case, findings, max_bytes):
    """Open ``path`` (header only) and check what the header alone can tell.

    Returns ``(image, info)`` where ``image`` is the lazily-loaded nibabel image, or ``None`` when its
    voxel data must not be read, and ``info`` holds the geometry (``affine_ok`` false when the affine
    is unusable for world coordinates).
    """
    info = {"shape": None, "spacing": None, "orientation": None, "affine": None, "affine_ok": False, "dtype": None}
    if not os.path.isfile(path):
        findings.append(_finding(case, "error", f"{role} file not found: {path}"))
        return None, info
    try:
        img = nib.load(path)
        shape = tuple(int(s) for s in img.shape)
        dtype = np.dtype(img.get_data_dtype())
        affine = np.asarray(img.affine, dtype=float)
    except Exception as exc:  # any failure to parse the header means an unusable file
        findings.append(
            _finding(
                case,
                "error",
                f"cannot read the {role} header of {path} (not NIfTI, truncated or corrupt): {_one_line(exc)}",
            )
        )
        return None, info
    info.update(shape=shape, dtype=str(dtype), affine=affine)

    # Geometry from the affine. A singular or non-finite affine gives no world coordinates at all;
    # an identity affine usually means the geometry was lost on conversion (1 mm voxels, origin 0).
    if not np.all(np.isfinite(affine)):
        findings.append(_finding(case, "error", f"{role} affine has NaN/Inf entries: {path}"))
    elif abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        findings.append(
            _finding(case, "error", f"{role} affine is singular (no usable voxel-to-world mapping): {path}")
        )
    else:
        info["affine_ok"] = True
        info["spacing"] = tuple(float(s) for s in _spacing(affine))
        info["orientation"] = "".join(str(c) for c in nib.aff2axcodes(affine))
        if np.allclose(affine, np.eye(4)):
            findings.append(_finding(case, "warning", f"{role} affine is the identity: {path}", IDENTITY_AFFINE))

    if len(shape) != 3:
        findings.append(
            _finding(case, "error", f"{role} is {len(shape)}D with shape {shape}; a 3D volume is expected: {path}")
        )
        return None, info
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if nbytes > max_bytes:
        findings.append(
            _finding(
                case, "error",
                f"{role} header declares {_fmt(shape)} voxels of {dtype} = {nbytes / 1024**3:.1f} GiB, "
                f"over the {max_bytes / 1024**3:.1f} GiB limit; voxel data not read: {path}",
            )
        )  # fmt: skip
        return None, info
    return img, info


def _read_data(img, path, role, case, findings):
    """Read the voxel data once; a read failure (e.g. a truncated .nii.gz) becomes an error finding."""
    try:
        return np.asanyarray(img.dataobj)
    except Exception as exc:
        findings.append(
            _finding(
                case,
                "error",
                f"cannot read the {role} voxel data of {path} (truncated or corrupt file?): {_one_line(exc)}",
            )
        )
        return None


def _one_line(exc):
    """``"Type: message"`` of an exception on a single line (some nibabel messages span several)."""
    return f"{type(exc).__name__}: {one_line(exc)}"


def _finding(case, severity, problem, explanation=None):
    """A finding dict; ``explanation`` (shared by every finding of its kind) only when given."""
    finding = {"case": case, "severity": severity, "problem": problem}
    if explanation:
        finding["explanation"] = explanation
    return finding


def _full_text(finding):
    """``"<severity>: <problem>"``, followed by `` - <explanation>`` when the finding has one."""
    text = f"{finding['severity']}: {finding['problem']}"
    return f"{text} - {finding['explanation']}" if finding.get("explanation") else text


def _mean_index(mask):
    """Mean voxel index (i, j, k) of a boolean mask, via per-axis marginal counts (no index arrays)."""
    total = int(np.count_nonzero(mask))
    if total == 0:
        return None
    mean = []
    for axis in range(mask.ndim):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        counts = mask.sum(axis=others, dtype=np.int64)
        mean.append(float((counts * np.arange(mask.shape[axis])).sum()) / total)
    return np.array(mean)


def _to_world(affine, index):
    return (affine @ np.append(index, 1.0))[:3]


def _grid_findings(case, img_info, lab_info):
    """Errors for a label grid that differs from the image grid (shape, spacing, origin, direction)."""
    out = []
    if img_info["shape"] is None or lab_info["shape"] is None:
        return out
    if img_info["shape"] != lab_info["shape"]:
        out.append(
            _finding(
                case,
                "error",
                f"image/label shape mismatch: image {_fmt(img_info['shape'])}, label {_fmt(lab_info['shape'])}",
            )
        )
    if not (img_info["affine_ok"] and lab_info["affine_ok"]):
        return out
    a, b = img_info["affine"], lab_info["affine"]
    sa, sb = _spacing(a), _spacing(b)
    if not np.allclose(sa, sb, rtol=1e-4, atol=1e-4):
        out.append(
            _finding(case, "error", f"image/label spacing mismatch: image {_fmt(sa, 4)} mm, label {_fmt(sb, 4)} mm")
        )
    # Origins may differ by float32 rounding only; allow 1% of the smallest voxel (at least 1 um).
    tolerance = max(1e-3, 0.01 * float(min(sa.min(), sb.min())))
    shift = float(np.linalg.norm(a[:3, 3] - b[:3, 3]))
    if shift > tolerance:
        out.append(
            _finding(
                case,
                "error",
                f"image/label origin mismatch by {shift:.3f} mm: image {_fmt(a[:3, 3], 3)}, label {_fmt(b[:3, 3], 3)}",
            )
        )
    if np.abs(a[:3, :3] / sa - b[:3, :3] / sb).max() > 1e-3:
        out.append(
            _finding(
                case, "error",
                f"image/label direction mismatch: image axes {img_info['orientation']}, label axes {lab_info['orientation']} "
                "(direction cosines differ)",
            )
        )  # fmt: skip
    return out


def _intensity_checks(case, data, path, row, findings):
    """HU statistics into ``row``; NaN/Inf and non-CT intensity findings."""
    values = data
    if np.issubdtype(data.dtype, np.floating):
        finite = np.isfinite(data)
        bad = data.size - int(np.count_nonzero(finite))
        if bad:
            findings.append(_finding(case, "error", f"image has {bad} NaN/Inf voxel(s): {path}"))
            values = data[finite]
    if values.size == 0:
        return
    flat = values.ravel(order="K")
    step = max(1, flat.size // PERCENTILE_SAMPLES)
    p1, p50, p99 = np.percentile(flat[::step], [1, 50, 99])
    lo, hi = float(flat.min()), float(flat.max())
    row.update(hu_min=lo, hu_p1=float(p1), hu_p50=float(p50), hu_p99=float(p99), hu_max=hi)
    # The training transforms window Hounsfield units, so intensities on another scale train nonsense.
    doubts = hu_doubts(lo, hi)
    if "normalised" in doubts:
        # Values within [0, 1]: an already-normalised image (or a mask), certainly not HU.
        problem = f"image intensities lie within [0, 1] ({lo:g}..{hi:g}): {path}"
        findings.append(_finding(case, "error", problem, NORMALISED))
        return
    if "no_bright" in doubts:
        # An abdominal CT always holds contrast-enhanced vessels or bone above 100 HU. A warning,
        # not an error: a crop around a non-enhanced liver could in principle stay below it.
        problem = f"image maximum is {hi:g} (< {BRIGHT_HU:g}), so no bone or contrast: {path}"
        findings.append(_finding(case, "warning", problem, NO_BONE))
    if "no_air" in doubts:
        # A CT field of view contains air (-1000 HU). Without any, the image is most likely stored
        # without its rescale intercept (raw 0..4095 values), is not CT, or is cropped tightly to the
        # body; only the last is harmless, hence a warning.
        findings.append(_finding(case, "warning", f"image minimum is {lo:g} (> {AIR_HU:g}), so no air: {path}", NO_AIR))


def _label_checks(case, label, lab_info, expected_labels, row, findings, path):
    """Label values, volumes, empty-label finding. Returns the foreground mask (label > 0)."""
    expected = np.asarray(sorted(expected_labels))
    known = np.isin(label, expected)
    present = [v for v in expected.tolist() if np.any(label == v)]
    if not np.all(known):
        odd, counts = np.unique(label[~known], return_counts=True)
        shown = values_text(odd.tolist(), counts.tolist())
        findings.append(
            _finding(case, "error", f"unexpected label values {shown}; expected {list(expected.tolist())}: {path}")
        )
        present = sorted(present + [v for v in odd.tolist() if v == v])  # NaN dropped from the list
    row["label_values"] = [int(v) if float(v).is_integer() else float(v) for v in present]
    foreground = np.asarray(label > 0)
    count = int(np.count_nonzero(foreground))
    if count == 0:
        findings.append(_finding(case, "error", f"label is empty (no liver voxel): {path}"))
    if lab_info["affine_ok"]:
        voxel_ml = abs(float(np.linalg.det(lab_info["affine"][:3, :3]))) / 1000.0
        row["liver_ml"] = count * voxel_ml
        row["tumour_ml"] = int(np.count_nonzero(label == TUMOUR_LABEL)) * voxel_ml
    return foreground


def _body_checks(case, image, img_info, foreground, lab_info, findings):
    """Label voxels in air (outside the body) and the left/right position of the liver."""
    count = int(np.count_nonzero(foreground))
    if count == 0:
        return
    if image.shape == foreground.shape:
        in_air = int(np.count_nonzero(foreground & (image < AIR_HU)))
        fraction = in_air / count
        if fraction > OUTSIDE_BODY_WARNING:
            severity = "error" if fraction > OUTSIDE_BODY_ERROR else "warning"
            findings.append(
                _finding(
                    case, severity,
                    f"{100 * fraction:.1f}% of the label voxels ({in_air} of {count}) lie in air (< {AIR_HU:g} HU), "
                    "i.e. outside the body: misaligned or mismatched label?",
                )
            )  # fmt: skip
    if not (img_info["affine_ok"] and lab_info["affine_ok"]):
        return
    body = _mean_index(image > AIR_HU)
    if body is None:
        return
    # nibabel affines map voxels to RAS+ world coordinates: +x points to the patient's RIGHT.
    # The liver lies on the patient's right, so its centroid must have a larger x than the body's.
    body_x = _to_world(img_info["affine"], body)[0]
    liver_x = _to_world(lab_info["affine"], _mean_index(foreground))[0]
    if liver_x < body_x:
        left_mm, axes = body_x - liver_x, img_info["orientation"]
        problem = f"liver {left_mm:.0f} mm to the patient's LEFT of the body centre (axes {axes})"
        findings.append(_finding(case, "warning", problem, LEFT_LIVER))


# ----------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------
def check_case(image_path, label_path=None, *, expected_labels=EXPECTED_LABELS, max_bytes=MAX_BYTES):
    """Check one case. Returns ``(row, findings)``.

    ``row``: name, image, label, shape, spacing (mm), orientation (axis codes, e.g. ``"RAS"``),
    dtype, hu_min/hu_p1/hu_p50/hu_p99/hu_max, label_values, liver_ml (label > 0) and tumour_ml
    (label == 2); fields that could not be computed are ``None``.
    ``findings``: list of ``{"case", "severity", "problem"}`` (see the module docstring).
    Headers are read first; each file's voxel data is read at most once, and not at all when the
    header declares more than ``max_bytes``.
    """
    image_path = os.path.abspath(os.path.expanduser(str(image_path)))
    label_path = os.path.abspath(os.path.expanduser(str(label_path))) if label_path else None
    case = case_name(image_path)
    row = dict.fromkeys(ROW_FIELDS)
    row.update(name=case, image=image_path, label=label_path)
    findings = []

    img, img_info = _read_header(image_path, "image", case, findings, max_bytes)
    row.update(
        shape=img_info["shape"],
        spacing=img_info["spacing"],
        orientation=img_info["orientation"],
        dtype=img_info["dtype"],
    )
    if img_info["spacing"] is not None:
        low, high = SPACING_RANGE_MM
        if min(img_info["spacing"]) < low or max(img_info["spacing"]) > high:
            findings.append(
                _finding(
                    case,
                    "warning",
                    f"extreme spacing {_fmt(img_info['spacing'])} mm (expected {low:g} to {high:g} mm per axis)",
                )
            )
    lab, lab_info = (None, None)
    if label_path:
        lab, lab_info = _read_header(label_path, "label", case, findings, max_bytes)
        findings.extend(_grid_findings(case, img_info, lab_info))

    image = _read_data(img, image_path, "image", case, findings) if img is not None else None
    if image is not None:
        _intensity_checks(case, image, image_path, row, findings)
    label = _read_data(lab, label_path, "label", case, findings) if lab is not None else None
    if label is not None:
        foreground = _label_checks(case, label, lab_info, expected_labels, row, findings, label_path)
        if image is not None:
            _body_checks(case, image, img_info, foreground, lab_info, findings)
    return row, findings


def _status(findings):
    errors = sum(f["severity"] == "error" for f in findings)
    warnings = sum(f["severity"] == "warning" for f in findings)
    parts = [f"{errors} error{'s' * (errors != 1)}"] * bool(errors) + [
        f"{warnings} warning{'s' * (warnings != 1)}"
    ] * bool(warnings)
    return ", ".join(parts) or "ok"


def check_dataset(items, *, expected_labels=EXPECTED_LABELS, max_bytes=MAX_BYTES):
    """Run :func:`check_case` over ``items`` (dicts with ``image`` and optional ``label``, or image paths).

    Prints one progress line per case. Returns ``(rows, findings)`` over all cases.
    """
    rows, findings = [], []
    total = len(items)
    for number, item in enumerate(items, start=1):
        if isinstance(item, dict):
            image_path, label_path = item.get("image"), item.get("label")
        else:
            image_path, label_path = item, None
        row, case_findings = check_case(image_path, label_path, expected_labels=expected_labels, max_bytes=max_bytes)
        rows.append(row)
        findings.extend(case_findings)
        print(f"[{number}/{total}] {row['name']}: {_status(case_findings)}", flush=True)
    return rows, findings


def _csv_value(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}" if abs(value) < 1e6 else f"{value:.1f}"
    if isinstance(value, (list, tuple)):
        return _fmt(value, 4) if value and isinstance(value[0], float) else "x".join(map(str, value))
    return str(value)


def write_report(rows, findings, output_dir):
    """Write ``dataset_check.csv`` (one row per case, with ``errors``, ``warnings`` and ``problems``
    columns) and ``dataset_check.json`` (cases, findings, totals) into ``output_dir``, atomically.

    Returns ``(csv_path, json_path)``.
    """
    output_dir = os.path.abspath(os.path.expanduser(str(output_dir)))
    by_case = {}
    for f in findings:
        by_case.setdefault(f["case"], []).append(f)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(ROW_FIELDS + ["errors", "warnings", "problems"])
    for row in rows:
        own = by_case.get(row["name"], [])
        writer.writerow(
            [
                " ".join(map(str, row.get(key) or [])) if key == "label_values" else _csv_value(row.get(key))
                for key in ROW_FIELDS
            ]
            + [
                sum(f["severity"] == "error" for f in own),
                sum(f["severity"] == "warning" for f in own),
                " | ".join(_full_text(f) for f in own),
            ]
        )
    csv_path = write_text(os.path.join(output_dir, "dataset_check.csv"), buffer.getvalue())
    report = {
        "num_cases": len(rows),
        "num_errors": sum(f["severity"] == "error" for f in findings),
        "num_warnings": sum(f["severity"] == "warning" for f in findings),
        "cases": [{key: row.get(key) for key in ROW_FIELDS} for row in rows],
        "findings": list(findings),
    }
    json_path = write_text(os.path.join(output_dir, "dataset_check.json"), json.dumps(report, indent=2) + "\n")
    return csv_path, json_path


def format_table(rows, findings):
    """A compact fixed-width text table: one line per case with its geometry, HU range, volumes, status."""
    by_case = {}
    for f in findings:
        by_case.setdefault(f["case"], []).append(f)
    width = max([len("case")] + [len(str(r["name"])) for r in rows])
    header = (
        f"{'case':<{width}}  {'shape':<13} {'spacing mm':<16} {'axes':<4} {'HU min..max':<13} {'labels':<8} "
        f"{'liver mL':>9} {'tumour mL':>9}  status"
    )
    lines = [header]
    for r in rows:
        hu = f"{r['hu_min']:.0f}..{r['hu_max']:.0f}" if r["hu_min"] is not None else "-"
        labels = ",".join(str(v) for v in r["label_values"]) if r["label_values"] is not None else "-"
        liver = f"{r['liver_ml']:.1f}" if r["liver_ml"] is not None else "-"
        tumour = f"{r['tumour_ml']:.1f}" if r["tumour_ml"] is not None else "-"
        lines.append(
            f"{r['name']:<{width}}  {_fmt(r['shape']) or '-':<13} {_fmt(r['spacing']) or '-':<16} {r['orientation'] or '-':<4} "
            f"{hu:<13} {labels:<8} {liver:>9} {tumour:>9}  {_status(by_case.get(r['name'], []))}"
        )
    return "\n".join(lines)


def summarize(findings):
    """The findings on one line, for people: each explanation once, followed by the cases it concerns.

    Findings of an explained kind (those with an ``explanation``) become ``<severity> in <n> case(s), <explanation>.
    Cases: <case> (<problem>), ...``; the others are listed per case, ``<case> (<severity>: <problem>; ...)``. The
    parts, joined by ``"; "``, follow the order in which they first occur in ``findings``.
    """
    groups = {}
    for f in findings:
        key = ("kind", f["severity"], f["explanation"]) if f.get("explanation") else ("case", f["case"])
        groups.setdefault(key, []).append(f)
    parts = []
    for key, group in groups.items():
        if key[0] == "case":
            parts.append(f"{key[1]} ({'; '.join(_full_text(f) for f in group)})")
            continue
        count = len({f["case"] for f in group})
        listed = ", ".join(f"{f['case']} ({f['problem']})" for f in group)
        parts.append(f"{key[1]} in {count} case{'s' * (count != 1)}, {key[2]}. Cases: {listed}")
    return "; ".join(parts)


def assert_dataset_ok(
    datalist_file,
    base_dir=None,
    *,
    allow_warnings=False,
    report_dir=None,
    expected_labels=EXPECTED_LABELS,
    max_bytes=MAX_BYTES,
):
    """Check every labelled case of a datalist before training; return ``True`` when it is fit.

    Writes the report into ``report_dir`` when given and prints a compact table. Raises
    ``ValueError`` ("<datalist>: ...", one line naming each bad case and its problems, each explanation
    given once: :func:`summarize`) when there is any error, or any warning unless ``allow_warnings``.
    """
    data = load_datalist(datalist_file, base_dir=base_dir)
    datalist_file = os.path.abspath(os.path.expanduser(str(datalist_file)))
    items = data["training"]
    if not items:
        raise ValueError(f"{datalist_file}: no labelled cases in 'training'")
    rows, findings = check_dataset(items, expected_labels=expected_labels, max_bytes=max_bytes)
    report = ""
    if report_dir:
        _, json_path = write_report(rows, findings, report_dir)
        report = f" Full report: {json_path}."
    print(format_table(rows, findings), flush=True)
    errors = [f for f in findings if f["severity"] == "error"]
    warnings = [f for f in findings if f["severity"] == "warning"]
    allow_warnings = as_bool(allow_warnings)  # a command-line override arrives as a string
    if errors or (warnings and not allow_warnings):
        shown = errors + (warnings if not allow_warnings else [])
        cases = {f["case"] for f in shown}
        advice = "Fix the data" + (
            "" if errors else ", or allow warnings (--allow_warnings / allow_warnings=True) after review"
        )
        raise ValueError(
            f"{datalist_file}: dataset check found {len(errors)} error(s) and {len(warnings)} warning(s) in "
            f"{len(cases)} of {len(rows)} case(s): {summarize(shown)}. {advice}.{report}"
        )
    if warnings:
        print(f"dataset check: {len(warnings)} warning(s) allowed; see the table above", flush=True)
    return True
