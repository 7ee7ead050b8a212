"""The config's image readers: NIfTI files go to MONAI's NibabelReader (the same arrays and metadata as MONAI's default
reader), DICOM series folders to the DICOM series reader (scripts.lib.dicom)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import torch
from conftest import CONFIGS
from monai.bundle import ConfigParser
from monai.transforms import LoadImaged

from scripts.lib import dicom, phantom
from scripts.lib.dicom import write as dicom_write


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
    image, _, affine = phantom.make_case(2, shape=(40, 36, 20), spacing=(9.0, 9.0, 10.0), orientation="LPS")
    path = phantom.save_nifti(image, affine, str(tmp_path / "ct.nii.gz"), "SYNTHETIC test phantom")
    _assert_same_image(_config_loader()({"image": path})["image"], LoadImaged("image")({"image": path})["image"])


def test_the_configs_loader_reads_a_dicom_series_as_read_series_does(tmp_path):
    image, _, affine = phantom.make_case(2, shape=(40, 36, 20), spacing=(9.0, 9.0, 10.0), orientation="LPS")
    dicom_write.write_series(image, affine, str(tmp_path / "series"))
    volume, dicom_affine, _ = dicom.read_series(str(tmp_path / "series"))
    img = _config_loader()({"image": str(tmp_path / "series")})["image"]
    np.testing.assert_array_equal(img.numpy(), volume)
    np.testing.assert_allclose(img.affine.numpy(), dicom_affine, atol=1e-4)


def test_one_reader_shared_by_loader_threads_reads_each_threads_own_file(tmp_path):
    """Loader threads (GPU preprocessing) share the config's NIfTI reader, which records the last file it opened on
    itself: each thread must still get the voxels of the file it was given."""
    import threading

    paths, arrays = [], []
    for i, shape in enumerate(((40, 30, 20), (36, 32, 24))):
        arrays.append(np.random.default_rng(i).integers(-1000, 1000, shape).astype(np.int16))
        paths.append(str(tmp_path / f"case{i}.nii.gz"))
        nib.save(nib.Nifti1Image(arrays[i], np.eye(4)), paths[i])
    reader = _config_loader()._loader.readers[-1]
    assert type(reader).__name__ == "NibabelReader"
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
