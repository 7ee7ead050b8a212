"""Model Zoo conformance: the required files, metadata valid against the 2024-07-25 schema (offline, from
``../shared/schema``), metadata that states the network's input and output truthfully, ``verify_net_in_out``, and
clean workflow property checks for training and inference (with the GPU inference variant merged in)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import re

import pytest
import torch
from conftest import BUNDLE_ROOT, CONFIGS
from monai.bundle import ConfigParser, ConfigWorkflow, verify_metadata, verify_net_in_out

# CI clones the repository next to shared/, as the working copies are laid out: the schema is ../shared/schema.
SCHEMA = BUNDLE_ROOT.parent / "shared" / "schema" / "meta_schema_20240725.json"
SCHEMA_MD5 = "06954cad2cc5d3784e72077ac76f0fc8"
REQUIRED = ["configs/metadata.json", "configs/inference.yaml", "configs/train.yaml", "configs/evaluate.yaml",
            "configs/logging.conf", "LICENSE", "docs/README.md", "docs/data_license.txt"]


def _meta() -> dict:
    return json.loads((CONFIGS / "metadata.json").read_text())


def _schema() -> str:
    if not SCHEMA.is_file():  # never skip: a missing schema means the check did not run
        pytest.fail(f"{SCHEMA}: Model Zoo metadata schema not found; the repository must sit next to shared/")
    digest = hashlib.md5(SCHEMA.read_bytes()).hexdigest()
    assert digest == SCHEMA_MD5, f"{SCHEMA}: md5 {digest}, expected {SCHEMA_MD5}"
    return str(SCHEMA)


def test_the_files_the_model_zoo_requires_are_there():
    missing = [f for f in REQUIRED if not (BUNDLE_ROOT / f).is_file()]
    assert missing == []
    assert "Apache License" in (BUNDLE_ROOT / "LICENSE").read_text()
    data_license = (BUNDLE_ROOT / "docs" / "data_license.txt").read_text()
    assert "Medical Segmentation Decathlon" in data_license and "CC BY-SA 4.0" in data_license


def test_metadata_is_valid_against_the_2024_schema_offline(tmp_path):
    schema = _schema()
    assert _meta()["schema"].endswith("/" + SCHEMA.name)
    verify_metadata(meta_file=str(CONFIGS / "metadata.json"), filepath=schema, hash_val=SCHEMA_MD5)
    broken = _meta()
    del broken["network_data_format"]["inputs"]["image"]["num_channels"]  # the check can fail
    (tmp_path / "metadata.json").write_text(json.dumps(broken))
    with pytest.raises(ValueError, match="num_channels"):
        verify_metadata(meta_file=str(tmp_path / "metadata.json"), filepath=schema, hash_val=SCHEMA_MD5)


def test_version_changelog_and_package_versions():
    meta = _meta()
    assert re.fullmatch(r"\d+\.\d+\.\d+", meta["version"])
    assert meta["version"] in meta["changelog"]
    for name, version in {"monai": meta["monai_version"], "torch": meta["pytorch_version"],
                          "numpy": meta["numpy_version"], **meta["required_packages_version"]}.items():
        assert re.fullmatch(r"\d+(\.\d+)+", version), (name, version)
        importlib.metadata.version(name)  # every named package is a real, installed distribution


def test_network_data_format_states_what_the_configs_do():
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "inference.yaml"))
    fmt = _meta()["network_data_format"]
    image, pred = fmt["inputs"]["image"], fmt["outputs"]["pred"]
    net = parser["network_def"]
    assert image["num_channels"] == net["in_channels"] == 1
    assert image["spatial_shape"] == pred["spatial_shape"] == parser["patch_size"]
    scale = next(t for t in parser["preprocessing"]["transforms"]
                 if isinstance(t, dict) and t.get("_target_") == "ScaleIntensityRanged")
    assert image["value_range"] == [scale["b_min"], scale["b_max"]]
    low, high = parser["hu_window"]
    assert f"[{low}, {high}]" in _meta()["image_classes"]
    assert image["modality"] == "CT" and image["dtype"] == pred["dtype"] == "float32"
    assert pred["num_channels"] == parser["num_classes"] == len(pred["channel_def"])
    assert pred["channel_def"] == {"0": "background", "1": "liver"}


def test_verify_net_in_out_passes_and_catches_a_wrong_output():
    kwargs = {"net_id": "network_def", "meta_file": str(CONFIGS / "metadata.json"),
              "config_file": str(CONFIGS / "inference.yaml")}
    verify_net_in_out(**kwargs)
    with pytest.raises(ValueError, match="channel"):
        verify_net_in_out(**kwargs, **{"_meta_#network_data_format#outputs#pred#num_channels": 3})


@pytest.mark.parametrize("files", [["train.yaml"], ["inference.yaml"], ["inference.yaml", "inference_trt.yaml"]])
def test_workflow_properties_are_clean(files, phantom_dir, tmp_path):
    weights = tmp_path / "model.pt"
    overrides = {"bundle_root": str(BUNDLE_ROOT), "dataset_dir": str(phantom_dir)}
    if files[0] == "train.yaml":
        overrides.update(output_dir=str(tmp_path / "runs"), ckpt_dir=str(tmp_path / "models"), cache_rate=0.0)
    else:
        parser = ConfigParser()
        parser.read_config(str(CONFIGS / "inference.yaml"))
        torch.save(parser.get_parsed_content("network_def").state_dict(), weights)
        overrides.update(ckpt_path=str(weights), output_dir=str(tmp_path / "out"), num_workers=0)
    workflow = ConfigWorkflow(config_file=[str(CONFIGS / f) for f in files], meta_file=str(CONFIGS / "metadata.json"),
                              logging_file=str(CONFIGS / "logging.conf"),
                              workflow_type="train" if files[0] == "train.yaml" else "infer", **overrides)
    workflow.initialize()
    assert workflow.check_properties() == []
