"""``python -m scripts dicom``: convert the CT series under a DICOM folder to gzip NIfTI, or print their table.

    python -m scripts dicom convert -i DICOM_ROOT -o OUT_DIR [--allow_irregular] [--debug]
    python -m scripts dicom check -i DICOM_DIR [--allow_irregular] [--debug]

The work is done by :mod:`scripts.lib.dicom`; this module is the command line and the ``check`` table.
"""

from __future__ import annotations

import argparse
import logging
import warnings

from scripts.commands import PROG, fail
from scripts.lib.dicom import check_series, find_series, series_name, skip_reason
from scripts.lib.dicom.write import convert
from scripts.lib.errors import one_line


def _check_command(root: str, allow_irregular: bool) -> int:
    """Print one table row per series under ``root``; raise ValueError naming the first series that failed."""
    found = find_series(root)
    if not found:
        raise ValueError(f"{root}: no DICOM series found")
    print(
        f"{'number':>6}  {'modality':8}  {'files':>5}  {'shape':14}  {'spacing (mm)':20}  {'status':10}  "
        f"description | folder | UID",
        flush=True,
    )
    failures = []
    for s in found:
        shape = spacing = "-"
        reason = skip_reason(s)
        if reason:
            status = "skipped"
            detail = reason
        else:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    info = check_series(s["files"], allow_irregular=allow_irregular)
                shape = "x".join(str(v) for v in info["shape"])
                spacing = "x".join(f"{v:.4g}" for v in info["spacing"])
                status = "irregular" if info["irregular"] else "ok"
                detail = "; ".join(info["problems"])
            except ValueError as exc:
                status, detail = "error", str(exc).replace(series_name(s) + ": ", "")
                failures.append(one_line(exc))
        number = "" if s["series_number"] is None else s["series_number"]
        line = (
            f"{number!s:>6}  {s['modality']:8}  {s['n_files']:>5}  {shape:14}  {spacing:20}  {status:10}  "
            f"{s['series_description']!r} | {s['folder']} | {s['uid'] or '(no SeriesInstanceUID)'}"
        )
        print(line + (f"  [{one_line(detail)}]" if detail and status != "ok" else ""), flush=True)
    if failures:
        more = f" (+{len(failures) - 1} more series with errors)" if len(failures) > 1 else ""
        raise ValueError(failures[0] + more)
    return 0


def main(argv=None) -> int:
    """Command line entry: ``convert`` or ``check``; returns the exit status."""
    parser = argparse.ArgumentParser(prog=f"{PROG} dicom", description="DICOM CT series tools.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_convert = sub.add_parser("convert", help="convert every CT series under a folder to gzip NIfTI")
    p_convert.add_argument("-i", "--input", required=True, help="DICOM root folder (searched recursively)")
    p_convert.add_argument("-o", "--output", required=True, help="output folder for <PatientID>_<Series>.nii.gz")
    p_check = sub.add_parser("check", help="print the series table with geometry checks")
    p_check.add_argument("-i", "--input", required=True, help="DICOM folder (searched recursively)")
    for p in (p_convert, p_check):
        p.add_argument(
            "--allow_irregular",
            action="store_true",
            help="warn instead of failing on irregular slice spacing (e.g. a missing slice)",
        )
        p.add_argument("--debug", action="store_true", help="show the traceback on errors")
    args = parser.parse_args(argv)
    warnings.formatwarning = lambda message, category, *rest, **kw: f"warning: {one_line(message)}\n"
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")  # e.g. a series without UIDs
    try:
        if args.command == "convert":
            convert(args.input, args.output, allow_irregular=args.allow_irregular)
        else:
            _check_command(args.input, args.allow_irregular)
    except Exception as exc:  # one line for the user; the traceback with --debug
        return fail(exc, args.debug)
    return 0
