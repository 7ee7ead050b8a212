"""The config's image reader (scripts.components.inputs.NiftiReader): the same arrays and metadata as MONAI's default reader for
NIfTI, in C order, and DICOM series folders go to the DICOM series reader (scripts.lib.dicom)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import CONFIGS
from monai.bundle import ConfigParser
from monai.transforms import LoadImaged

from scripts.components import inputs
from scripts.lib import dicom, phantom
from scripts.lib.dicom import write as dicom_write


@pytest.mark.parametrize("shape", [(7, 5, 3), (9, 4, 17), (6, 5, 4, 3)])
def test_c_order_is_the_same_array_in_c_order(shape):
    a = np.asfortranarray(np.random.default_rng(0).integers(-1000, 1000, shape).astype(np.int16))
    out = inputs.c_order(a, slab=4)  # 3, 17: the last slab is partial
    assert out.flags.c_contiguous and out.dtype == a.dtype and np.array_equal(out, a)
    c = np.ascontiguousarray(a)
    assert inputs.c_order(c) is c  # already C order: no copy


def _config_loader():
    cfg = ConfigParser()
    cfg.read_config(str(CONFIGS / "inference.yaml"))
    cfg["input"] = str(CONFIGS)  # never read
    return cfg.get_parsed_content("preprocessing").transforms[0]


def _assert_same_image(ours, default):
    assert ours.is_contiguous() and ours.dtype == default.dtype == torch.float32
    assert torch.equal(ours, default) and torch.equal(ours.affine, default.affine)
    assert {k: str(v) for k, v in ours.meta.items()} == {k: str(v) for k, v in default.meta.items()}


def test_the_configs_loader_reads_nifti_as_monais_default_does(tmp_path):
    assert inputs.has_isal and _config_loader()._loader.readers[-1].fast_gzip  # the ISA-L path is the one tested
    image, _, affine = phantom.make_case(2, shape=(40, 36, 20), spacing=(9.0, 9.0, 10.0), orientation="LPS")
    path = phantom.save_nifti(image, affine, str(tmp_path / "ct.nii.gz"), "SYNTHETIC test phantom")
    _assert_same_image(_config_loader()({"image": path})["image"], LoadImaged("image")({"image": path})["image"])


@pytest.mark.parametrize("name", ["scaled.nii.gz", "scaled.nii"])
@pytest.mark.parametrize("fast_gzip", [True, False])
def test_the_reader_applies_the_headers_scaling_as_nibabel_does(tmp_path, name, fast_gzip):
    """Stored uint16 with scl_slope 0.5 and scl_inter -1024 (as some scanners write HU), gzip'ed or not."""
    stored = np.random.default_rng(1).integers(0, 4000, (23, 17, 9)).astype(np.uint16)
    img = nib.Nifti1Image(stored, np.diag([0.7, 0.8, 2.5, 1.0]))
    img.header.set_slope_inter(0.5, -1024.0)
    path = str(tmp_path / name)
    nib.save(img, path)
    ours = LoadImaged("image", reader=inputs.NiftiReader(fast_gzip=fast_gzip))({"image": path})["image"]
    _assert_same_image(ours, LoadImaged("image")({"image": path})["image"])
    np.testing.assert_array_equal(ours.numpy(), stored * 0.5 - 1024.0)


def test_the_configs_loader_reads_a_dicom_series_as_read_series_does(tmp_path):
    image, _, affine = phantom.make_case(2, shape=(40, 36, 20), spacing=(9.0, 9.0, 10.0), orientation="LPS")
    dicom_write.write_series(image, affine, str(tmp_path / "series"))
    volume, dicom_affine, _ = dicom.read_series(str(tmp_path / "series"))
    img = _config_loader()({"image": str(tmp_path / "series")})["image"]
    np.testing.assert_array_equal(img.numpy(), volume)
    np.testing.assert_allclose(img.affine.numpy(), dicom_affine, atol=1e-4)


def test_the_reader_refuses_what_is_not_nifti(tmp_path):
    with pytest.raises(ValueError, match="not a NIfTI file: .*series"):
        inputs.NiftiReader().read(str(tmp_path / "series"))


def test_one_reader_shared_by_loader_threads_reads_each_threads_own_file(tmp_path):
    """Loader threads (GPU preprocessing) share the config's reader. MONAI's reader records the last file it opened
    on itself; the ISA-L path must read the file of the image it was given, not that record."""
    import threading

    paths, arrays = [], []
    for i, shape in enumerate(((40, 30, 20), (36, 32, 24))):
        arrays.append(np.random.default_rng(i).integers(-1000, 1000, shape).astype(np.int16))
        paths.append(str(tmp_path / f"case{i}.nii.gz"))
        nib.save(nib.Nifti1Image(arrays[i], np.eye(4)), paths[i])
    reader = inputs.NiftiReader()
    assert reader.fast_gzip
    images = [reader.read(p) for p in paths]  # the reader's record now names the second file
    got = [reader.get_data(img)[0] for img in images]
    assert all(np.array_equal(g, a) for g, a in zip(got, arrays, strict=True))
    load = LoadImaged("image", reader=reader, image_only=True)
    for _ in range(10):
        out = [None, None]
        threads = [
            threading.Thread(target=lambda i=i: out.__setitem__(i, load({"image": paths[i]})["image"])) for i in (0, 1)
        ]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert all(np.array_equal(np.asarray(o), a) for o, a in zip(out, arrays, strict=True))
