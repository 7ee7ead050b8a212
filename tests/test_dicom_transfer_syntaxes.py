"""Transfer syntaxes: the real series of ``tests/real_dicom.py`` transcoded file by file into each transfer syntax that
PACS exports use, then read with :func:`scripts.lib.dicom.read_series` and compared with the uncompressed original
(:func:`real_dicom.expected_volume`): voxel-exact where the syntax is lossless, within a stated tolerance where it is
lossy, or refused by :func:`scripts.lib.dicom.check_series` with one line naming the syntax and the package that would
read it. docs/dicom.md (Transfer syntaxes) tabulates the outcome.

Encoders: pydicom itself (RLE), its pyjpegls (JPEG-LS) and pylibjpeg-openjpeg (JPEG 2000) plugins, and imagecodecs
(libjpeg-turbo for JPEG baseline, extended and lossless; libjxl for JPEG XL), a test-only dependency. Decoders: the
pydicom plugins of requirements.txt (python-gdcm for the JPEG family), so encoder and decoder are different libraries
except for RLE (pydicom both ways) and where pydicom's order picks the same codec.
"""

from __future__ import annotations

import os

import imagecodecs
import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.pixels import get_decoder
from pydicom.uid import (
    JPEG2000,
    MPEG2MPML,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from real_dicom import expected_volume, write_real_series
from test_dicom import _cli

from scripts.lib import dicom
from scripts.lib.dicom import write as dicom_write

JPEG_XL_LOSSLESS = UID("1.2.840.10008.1.2.4.110")  # not in pydicom 3.0's UID dictionary

# Lossy settings and what they allow. Errors are in the stored values of the transcoded file; HU = stored * slope.
JPEG_QUALITY = 95  # libjpeg quality: quantisation tables at 10 % of the standard ones, the usual "visually lossless"
JPEG_MAX_ERROR = 8  # stored levels: a quality-95 DCT error reaches a few levels at sharp edges (bone / air)
JPEG_RMS_ERROR = 1.5  # stored levels, over the whole series
JPEG_LS_NEAR = 3  # JPEG-LS NEAR: the codec guarantees |error| <= NEAR in every pixel
J2K_PSNR = 90.0  # dB over the 16-bit range: RMS error 65535 / 10**4.5 = 2.1 stored levels (HU here)
# openjpeg truncates the code stream where its wavelet-domain estimate reaches the PSNR, so the real PSNR lands within
# a fraction of a dB of it, either side: the test allows 1 dB below. A PSNR bounds the mean error, not the worst pixel.
J2K_PSNR_SLACK = 1.0
J2K_MAX_ERROR = 16  # stored levels (HU)
LOSSLESS_JPEG_PREDICTOR = 7  # process 14 with a selection value other than 1: (Ra + Rb) / 2


def _bits(ds, stored: int, signed: bool) -> None:
    ds.BitsAllocated = 8 if stored <= 8 else 16
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = stored, stored - 1, int(signed)


def _lossy(ds, method: str, ratio: float) -> None:
    """What a lossy transcoder must record (PS3.3 C.7.6.1.1.5)."""
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionMethod = method
    ds.LossyImageCompressionRatio = f"{ratio:.2f}"


def _requantise(ds, bits: int) -> np.ndarray:
    """Map the slice's stored values onto ``bits`` unsigned bits as a transcoder to a narrower JPEG process does:
    offset by the minimum, scaled only when the range does not fit; RescaleSlope/Intercept keep the HU values."""
    arr = ds.pixel_array.astype(np.int64)
    lo, hi = int(arr.min()), int(arr.max())
    top = 2**bits - 1
    scale = max(1.0, (hi - lo) / top)
    slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
    ds.RescaleSlope = dicom_write._ds(slope * scale)
    ds.RescaleIntercept = dicom_write._ds(intercept + lo * slope)
    return np.clip(np.rint((arr - lo) / scale), 0, top).astype(np.uint8 if bits <= 8 else np.uint16)


def _jpeg(ds, uid, stored: np.ndarray, **kwargs) -> None:
    ds.PixelData = encapsulate([imagecodecs.jpeg8_encode(stored, **kwargs)])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = uid


def _transcode(path: str, case: str) -> None:
    """Rewrite one file of the real series (Explicit VR Little Endian, 16-bit signed) in the transfer syntax of
    ``case``; the encoded pixels are what that file held, requantised first for the 8- and 12-bit JPEG processes."""
    ds = pydicom.dcmread(path)
    raw = ds.pixel_array
    uid = CASES[case][0]
    if case in ("implicit", "explicit", "deflated"):
        ds.file_meta.TransferSyntaxUID = uid
    elif case == "rle":
        ds.compress(RLELossless, raw, generate_instance_uid=False)
    elif case == "jpegls-near-lossless":
        ds.compress(uid, raw, generate_instance_uid=False, jls_error=JPEG_LS_NEAR)
        _lossy(ds, "ISO_14495_1", raw.nbytes / len(ds.PixelData))
    elif case in ("jpegls-lossless", "jpeg2000-lossless"):
        ds.compress(uid, raw, generate_instance_uid=False)
    elif case == "jpeg2000-lossy":
        ds.compress(uid, raw, generate_instance_uid=False, j2k_psnr=[J2K_PSNR])
        _lossy(ds, "ISO_15444_1", raw.nbytes / len(ds.PixelData))
    elif case in ("jpeg-lossless-p14", "jpeg-lossless-sv1"):  # 16-bit precision: the stored bit pattern as it is
        predictor = 1 if case == "jpeg-lossless-sv1" else LOSSLESS_JPEG_PREDICTOR
        _jpeg(ds, uid, raw.view(np.uint16), lossless=True, predictor=predictor, bitspersample=16)
    elif case == "jpeg-baseline-8bit":
        stored = _requantise(ds, 8)
        _bits(ds, 8, signed=False)
        _jpeg(ds, uid, stored, level=JPEG_QUALITY)
        _lossy(ds, "ISO_10918_1", 2 * raw.size / len(ds.PixelData))
    elif case == "jpeg-extended-12bit":
        stored = _requantise(ds, 12)
        _bits(ds, 12, signed=False)
        _jpeg(ds, uid, stored, level=JPEG_QUALITY, bitspersample=12)
        _lossy(ds, "ISO_10918_1", 2 * raw.size / len(ds.PixelData))
    else:
        raise AssertionError(case)
    ds.save_as(path, enforce_file_format=True)


# case: (transfer syntax, "exact" | "lossy")
CASES = {
    "implicit": (ImplicitVRLittleEndian, "exact"),
    "explicit": (ExplicitVRLittleEndian, "exact"),
    "deflated": (DeflatedExplicitVRLittleEndian, "exact"),
    "rle": (RLELossless, "exact"),
    "jpeg-baseline-8bit": (JPEGBaseline8Bit, "lossy"),
    "jpeg-extended-12bit": (JPEGExtended12Bit, "lossy"),
    "jpeg-lossless-p14": (JPEGLossless, "exact"),
    "jpeg-lossless-sv1": (JPEGLosslessSV1, "exact"),
    "jpegls-lossless": (JPEGLSLossless, "exact"),
    "jpegls-near-lossless": (JPEGLSNearLossless, "lossy"),
    "jpeg2000-lossless": (JPEG2000Lossless, "exact"),
    "jpeg2000-lossy": (JPEG2000, "lossy"),
}


def _series(folder, case: str) -> list[str]:
    paths = write_real_series(folder)
    for path in paths:
        _transcode(path, case)
    for path in paths:  # the test reads what it claims to: every file really is in the syntax under test
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert ds.file_meta.TransferSyntaxUID == CASES[case][0]
    return paths


def _stored_reference(case: str, paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The HU values handed to the encoder (the requantised ones for the 8/12-bit processes) and the HU size of one
    stored level, per voxel, from the transcoded headers; indexed (i, j, k) like the volume."""
    expected, _ = expected_volume()
    if case not in ("jpeg-baseline-8bit", "jpeg-extended-12bit"):
        return expected, np.ones_like(expected)
    handed, level = np.empty_like(expected), np.empty_like(expected)
    for k, path in enumerate(paths):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)  # intercept: the slice's minimum
        handed[:, :, k] = np.rint((expected[:, :, k] - intercept) / slope) * slope + intercept
        level[:, :, k] = slope
    return handed, level


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_transfer_syntax_reads_exactly_within_tolerance_or_is_refused(tmp_path, case):
    uid, kind = CASES[case]
    paths = _series(tmp_path / case, case)
    expected, affine = expected_volume()

    problem = dicom.transfer_syntax_problem(pydicom.dcmread(paths[0], stop_before_pixels=True))
    if case == "jpeg-extended-12bit" and "pylibjpeg" not in get_decoder(uid).available_plugins:
        # pydicom's gdcm and pillow plugins decode 8-bit JPEG Extended only: 12-bit needs pylibjpeg-libjpeg (GPL-3)
        assert problem is not None and "pylibjpeg-libjpeg" in problem and uid in problem and uid.name in problem
        with pytest.raises(ValueError) as err:
            dicom.read_series(tmp_path / case)
        message = str(err.value)
        assert "\n" not in message and problem in message and paths[0] in message
        decoded = imagecodecs.jpeg8_decode(
            pydicom.encaps.generate_frames(pydicom.dcmread(paths[0]).PixelData).__next__()
        )
        assert decoded.shape == (128, 128) and decoded.max() > 255  # a real 12-bit stream, not a broken file
        return
    assert problem is None

    volume, ras, info = dicom.read_series(tmp_path / case)
    np.testing.assert_allclose(ras, affine, atol=1e-9)
    assert volume.shape == expected.shape and info["n_files"] == len(paths)
    if kind == "exact":
        assert volume.dtype == np.int16
        np.testing.assert_array_equal(volume, expected)
        return

    handed, level = _stored_reference(case, paths)
    error = (volume.astype(np.float64) - handed) / level  # in stored levels of the file
    if case == "jpegls-near-lossless":
        assert np.abs(error).max() <= JPEG_LS_NEAR
    elif case == "jpeg2000-lossy":
        assert np.sqrt(np.mean(error**2)) <= 65535 / 10 ** ((J2K_PSNR - J2K_PSNR_SLACK) / 20)
        assert np.abs(error).max() <= J2K_MAX_ERROR
    else:
        assert np.abs(error).max() <= JPEG_MAX_ERROR and np.sqrt(np.mean(error**2)) <= JPEG_RMS_ERROR
    assert np.abs(error).max() > 0  # lossy indeed: the lossless path would hide a mislabelled file
    # against the original: the codec's error plus, for the 8-bit process, half a level of requantisation
    bound = np.abs(error).max() + (0.5 if case == "jpeg-baseline-8bit" else 0.0)
    assert np.all(np.abs(volume - expected) <= bound * level + 1e-3)


def test_convert_command_writes_the_same_voxels_from_a_compressed_series(tmp_path):
    _series(tmp_path / "dicom" / "ct", "jpeg-lossless-sv1")
    done = _cli("convert", "-i", tmp_path / "dicom", "-o", tmp_path / "nii")
    assert done.returncode == 0, done.stderr
    (name,) = os.listdir(tmp_path / "nii")
    image = nib.load(tmp_path / "nii" / name)
    expected, affine = expected_volume()
    np.testing.assert_array_equal(np.asanyarray(image.dataobj), expected)
    np.testing.assert_allclose(image.affine, affine, atol=1e-4)


def _jpeg_xl_series(folder) -> list[str]:
    """The real series losslessly in JPEG XL (libjxl through imagecodecs). pydicom 3.0 cannot write that UID, so each
    file is written as MPEG2 (a UID of the same length) and the UID is replaced in the file meta."""
    paths = write_real_series(folder)
    placeholder, jxl = (MPEG2MPML + "\0").encode(), (JPEG_XL_LOSSLESS + "\0").encode()
    assert len(placeholder) == len(jxl)
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.PixelData = encapsulate([imagecodecs.jpegxl_encode(ds.pixel_array.view(np.uint16), lossless=True)])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = MPEG2MPML
        ds.save_as(path, enforce_file_format=True)
        data = open(path, "rb").read()
        assert data.count(placeholder) == 1
        with open(path, "wb") as f:
            f.write(data.replace(placeholder, jxl))
        assert pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID == JPEG_XL_LOSSLESS
    return paths


def test_a_series_no_plugin_decodes_is_refused_before_any_voxel_is_read(tmp_path):
    paths = _jpeg_xl_series(tmp_path / "dicom" / "ct")
    with pytest.raises(ValueError) as err:
        dicom.check_series(tmp_path / "dicom" / "ct")
    message = str(err.value)
    assert "\n" not in message and paths[0] in message
    assert f"JPEG XL Lossless ({JPEG_XL_LOSSLESS})" in message and "no decoder" in message

    refused = _cli("convert", "-i", tmp_path / "dicom", "-o", tmp_path / "nii")
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "JPEG XL Lossless" in lines[0]
    assert not (tmp_path / "nii").exists() or os.listdir(tmp_path / "nii") == []
