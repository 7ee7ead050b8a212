"""A CT series derived from a real CT slice (pydicom's ``CT_small.dcm``: 128x128, 16 bit, a real scanner's header).

Tests transform this series as anonymisers, archives and PACS exports do (blank UIDs, bare data sets, other transfer
syntaxes, nested study folders) and compare what the bundle reads with :func:`expected_volume`. Nothing is committed:
the series is written into each test's temporary folder.

Slice ``k`` holds the real slice's pixels shifted by ``k`` columns and ``k`` rows (so that no two slices are equal and
a wrong slice order shows), at ``ImagePositionPatient`` z + ``k * SLICE_STEP`` mm; everything else is the real header.
"""

from __future__ import annotations

import os

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

SLICE_STEP = 5.0  # mm: the real slice's SliceThickness
N_SLICES = 12


def source_dataset() -> pydicom.Dataset:
    """The real CT slice, freshly read."""
    return pydicom.dcmread(get_testdata_file("CT_small.dcm"))


def write_real_series(folder, n_slices: int = N_SLICES, *, series_number=1, series_description="", prefix="CT"):
    """Write ``n_slices`` files ``<prefix><k+1:04d>.dcm`` of one series (new Study, Series and SOP Instance UIDs,
    Explicit VR Little Endian) into ``folder``; return the paths in slice order (ascending along the slice normal)."""
    os.makedirs(folder, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    paths = []
    for k in range(n_slices):
        ds = source_dataset()
        pixels = np.roll(ds.pixel_array, shift=(k, k), axis=(0, 1))
        ds.PixelData = np.ascontiguousarray(pixels).tobytes()
        sop = generate_uid()
        ds.SOPInstanceUID = sop
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.SeriesNumber = series_number
        ds.SeriesDescription = series_description
        ds.InstanceNumber = k + 1
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y, round(z + k * SLICE_STEP, 4)]
        ds.SliceLocation = round(z + k * SLICE_STEP, 4)
        path = os.path.join(os.fspath(folder), f"{prefix}{k + 1:04d}.dcm")
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def expected_volume(n_slices: int = N_SLICES) -> tuple[np.ndarray, np.ndarray]:
    """The HU volume indexed (i, j, k) and its RAS affine, as :func:`scripts.lib.dicom.read_series` must read the series
    of :func:`write_real_series` (computed here from the real slice, independently of the bundle's reader)."""
    ds = source_dataset()
    slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
    slices = [np.roll(ds.pixel_array, shift=(k, k), axis=(0, 1)) * slope + intercept for k in range(n_slices)]
    volume = np.stack([s.T for s in slices], axis=-1)  # (rows, columns) -> (i = column, j = row)
    row_spacing, col_spacing = (float(v) for v in ds.PixelSpacing)
    iop = np.asarray([float(v) for v in ds.ImageOrientationPatient])
    normal = np.cross(iop[:3], iop[3:])
    lps = np.eye(4)
    lps[:3, 0] = iop[:3] * col_spacing
    lps[:3, 1] = iop[3:] * row_spacing
    lps[:3, 2] = normal * SLICE_STEP
    lps[:3, 3] = [float(v) for v in ds.ImagePositionPatient]
    return volume, np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
