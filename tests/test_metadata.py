"""Model Zoo conformance: the required files, metadata valid against the 2024-07-25 schema (offline, from
``../shared/schema``), package versions that agree with requirements.txt, metadata that states the network's input and
output truthfully, ``verify_net_in_out``, clean workflow property checks for training and inference (with the GPU
inference variant merged in), and a model card with the template's sections."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import re

import pytest
import torch
from conftest import BUNDLE_ROOT, CONFIGS
from monai.bundle import ConfigParser, ConfigWorkflow, verify_metadata, verify_net_in_out
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

# CI clones the repository next to shared/, as the working copies are laid out: the schema is ../shared/schema.
SCHEMA = BUNDLE_ROOT.parent / "shared" / "schema" / "meta_schema_20240725.json"
SCHEMA_MD5 = "06954cad2cc5d3784e72077ac76f0fc8"
REQUIRED = [
    "configs/metadata.json",
    "configs/inference.yaml",
    "configs/train.yaml",
    "configs/evaluate.yaml",
    "configs/logging.conf",
    "LICENSE",
    "docs/README.md",
    "docs/data_license.txt",
]


# The MONAI Model Zoo's model card template (docs/readme_template.md there, and the sections its bundles' cards share).
MODEL_CARD_HEADINGS = [
    "Authors",
    "Tags",
    "Model Overview",
    "Data",
    "Preprocessing",
    "Training configuration",
    "Input",
    "Output",
    "Performance",
    "System Configuration",
    "MONAI Bundle Commands",
    "Execute training",
    "Execute multi-GPU training",
    "Execute evaluation",
    "Execute inference",
    "Export to TorchScript",
    "Limitations",
    "Citation",
    "References",
    "License",
]


def requirements(requirements_file: str) -> dict[str, Requirement]:
    """The requirements of a requirements file by normalised name (``-r`` lines and comments skipped); each must
    give its minimum version (``>=``, or ``==`` for a pin)."""
    found = {}
    for line in (BUNDLE_ROOT / requirements_file).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        req = Requirement(line)
        assert [s.operator for s in req.specifier] in ([">="], ["=="]), f"{requirements_file}: {line}: one minimum"
        found[canonicalize_name(req.name)] = req
    return found


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
    for name, version in {
        "monai": meta["monai_version"],
        "torch": meta["pytorch_version"],
        "numpy": meta["numpy_version"],
        **meta["required_packages_version"],
    }.items():
        assert re.fullmatch(r"(>=)?\d+(\.\d+)+", version), (name, version)
        importlib.metadata.version(name)  # every named package is a real, installed distribution


def test_metadata_versions_are_the_minimums_requirements_txt_asks_for():
    """The Model Zoo's CI installs ``required_packages_version`` (``name==v``, or ``name>=v`` where the value starts
    with the operator; it does not read requirements.txt), and MONAI warns when the installed MONAI is older than
    ``monai_version``: both must say what requirements.txt says."""
    meta, reqs = _meta(), requirements("requirements.txt")
    assert SpecifierSet(f">={meta['monai_version']}") == reqs.pop("monai").specifier
    assert Version(meta["pytorch_version"]) in reqs.pop("torch").specifier  # the version the bundle was made with
    listed = {canonicalize_name(name): SpecifierSet(v) for name, v in meta["required_packages_version"].items()}
    assert listed == {name: req.specifier for name, req in reqs.items()}


def test_the_model_card_has_the_model_zoo_template_sections():
    card = (BUNDLE_ROOT / "docs" / "README.md").read_text()
    card_without_code = re.sub(r"^```.*?^```", "", card, flags=re.M | re.S)
    headings = [h.strip("*_ ").lower() for h in re.findall(r"^#{1,6} +(.+?) *$", card_without_code, re.M)]
    assert [h for h in MODEL_CARD_HEADINGS if h.lower() not in headings] == []
    limitations = card_without_code.split("## Limitations", 1)[1].split("\n## ", 1)[0]
    assert "trained on synthetic CT only" in limitations and "Not a medical device" in limitations


def test_network_data_format_states_what_the_configs_do():
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "inference.yaml"))
    fmt = _meta()["network_data_format"]
    image, pred = fmt["inputs"]["image"], fmt["outputs"]["pred"]
    net = parser["network_def"]
    assert image["num_channels"] == net["in_channels"] == 1
    assert image["spatial_shape"] == pred["spatial_shape"] == parser["patch_size"]
    scale = next(
        t
        for t in parser["preprocessing"]["transforms"]
        if isinstance(t, dict) and t.get("_target_") == "ScaleIntensityRanged"
    )
    assert image["value_range"] == [scale["b_min"], scale["b_max"]]
    low, high = parser["hu_window"]
    assert f"[{low}, {high}]" in _meta()["image_classes"]
    assert image["modality"] == "CT" and image["dtype"] == pred["dtype"] == "float32"
    assert pred["num_channels"] == parser["num_classes"] == len(pred["channel_def"])
    assert pred["channel_def"] == {"0": "background", "1": "liver"}


def test_verify_net_in_out_passes_and_catches_a_wrong_output():
    kwargs = {
        "net_id": "network_def",
        "meta_file": str(CONFIGS / "metadata.json"),
        "config_file": str(CONFIGS / "inference.yaml"),
    }
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
    workflow = ConfigWorkflow(
        config_file=[str(CONFIGS / f) for f in files],
        meta_file=str(CONFIGS / "metadata.json"),
        logging_file=str(CONFIGS / "logging.conf"),
        workflow_type="train" if files[0] == "train.yaml" else "infer",
        **overrides,
    )
    workflow.initialize()
    assert workflow.check_properties() == []
