"""Sharing the bundle: TorchScript (MONAI's ckpt_export), ONNX (scripts.components.export), the ONNX Runtime and TensorRT inference
configs, and the distributable zip that ``monai.bundle.download``/``load`` accept from a local path.

The weights are a freshly initialised network (seeded) saved as a plain state dict, as training saves model.pt; nothing
is written into the repository's models/.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile

import nibabel as nib
import numpy as np
import onnx
import pytest
import torch
from conftest import BUNDLE_ROOT, CONFIGS
from monai.bundle import ConfigParser

from scripts.commands import export as export_cli
from scripts.components import export
from scripts.lib import phantom

TS_ATOL = 1e-5  # TorchScript runs the same kernels as eager PyTorch
ONNX_ATOL = (
    1e-4  # ONNX Runtime sums in another order; see scripts/components/export.py for why norms are exported axis-wise
)


def _parser(*files, **overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / f) for f in files])
    parser.read_meta(str(CONFIGS / "metadata.json"))
    parser.update({"bundle_root": str(BUNDLE_ROOT), **overrides})
    return parser


def _eager(weights) -> torch.nn.Module:
    net = _parser("inference.yaml").get_parsed_content("network_def")
    net.load_state_dict(torch.load(weights, weights_only=True))
    return net.eval()


def _ct_patch(size=96) -> torch.Tensor:
    """A phantom CT patch at the inference geometry (2 mm), scaled as preprocessing scales it: a realistic input."""
    hu = phantom.make_case(5, shape=(128, 128, 128), spacing=(2.0, 2.0, 2.0), orientation="RAS")[0]  # liver inside
    start = (128 - size) // 2
    hu = hu[start : start + size, start : start + size, start : start + size]
    low, high = _parser("inference.yaml")["hu_window"]
    return torch.from_numpy(np.clip((hu.astype(np.float32) - low) / (high - low), 0, 1))[None, None]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "model.pt"
    torch.manual_seed(0)
    torch.save(_parser("inference.yaml").get_parsed_content("network_def").state_dict(), out)
    return out


@pytest.fixture(scope="module")
def torchscript(weights):
    """The README's export command, run as users run it (a plain state dict: no --key_in_ckpt)."""
    out = weights.parent / "model.ts"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "monai.bundle",
            "ckpt_export",
            "network_def",
            "--filepath",
            str(out),
            "--ckpt_file",
            str(weights),
            "--meta_file",
            "configs/metadata.json",
            "--config_file",
            "configs/inference.yaml",
        ],
        cwd=BUNDLE_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    return out


@pytest.fixture(scope="module")
def onnx_file(weights):
    result = export.export_onnx(
        weights,
        weights.parent / "model.onnx",
        config_files=[CONFIGS / "inference.yaml"],
        meta_file=CONFIGS / "metadata.json",
    )
    return result


def test_ckpt_export_embeds_the_bundle_and_matches_eager_pytorch(torchscript, weights):
    extra = {"metadata.json": "", "inference.json": ""}
    module = torch.jit.load(str(torchscript), _extra_files=extra)
    assert json.loads(extra["metadata.json"]) == json.loads((CONFIGS / "metadata.json").read_text())
    assert json.loads(extra["inference.json"]) == ConfigParser.load_config_file(str(CONFIGS / "inference.yaml"))
    x = torch.cat([_ct_patch(), torch.rand(1, 1, 96, 96, 96, generator=torch.Generator().manual_seed(1))])
    with torch.no_grad():
        diff = float((module(x) - _eager(weights)(x)).abs().max())
    assert diff <= TS_ATOL, f"TorchScript vs eager: {diff:.3g}"


def test_onnx_runtime_agrees_with_pytorch_on_ct_and_on_other_shapes(onnx_file, weights):
    import onnxruntime as ort

    assert onnx_file["max_abs_diff"] <= ONNX_ATOL
    session = ort.InferenceSession(onnx_file["path"], providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"] and [o.name for o in session.get_outputs()] == ["pred"]
    net = _eager(weights)
    odd_batch = torch.rand(3, 1, 64, 64, 64, generator=torch.Generator().manual_seed(2))  # dynamic batch and size
    for x in (_ct_patch(), odd_batch):
        with torch.no_grad():
            expected = net(x).numpy()
        got = session.run(None, {"image": x.numpy()})[0]
        assert got.shape == expected.shape
        diff = float(np.abs(got - expected).max())
        assert diff <= ONNX_ATOL, f"ONNX Runtime vs PyTorch on {tuple(x.shape)}: {diff:.3g}"
    props = {p.key: p.value for p in onnx.load(onnx_file["path"]).metadata_props}
    assert props["bundle"] == export.BUNDLE_NAME and json.loads(props["metadata"])["version"] == props["version"]


def test_onnx_export_refuses_weights_of_another_network(tmp_path, capsys):
    other = _parser("inference.yaml", num_classes=3).get_parsed_content("network_def")
    torch.save(other.state_dict(), tmp_path / "three.pt")
    with pytest.raises(
        ValueError, match="these weights do not fit the bundle's network"
    ):  # scripts.components.checkpoint
        export.export_onnx(
            tmp_path / "three.pt",
            tmp_path / "x.onnx",
            config_files=[CONFIGS / "inference.yaml"],
            meta_file=CONFIGS / "metadata.json",
        )
    assert (
        export_cli.main(["onnx", "--ckpt_file", str(tmp_path / "missing.pt"), "--output", str(tmp_path / "y.onnx")])
        == 1
    )
    assert (
        capsys.readouterr().err.strip() == f"error: {tmp_path / 'missing.pt'}: weights file not found "
        "(train first, or give --ckpt_file)"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["three.pt"]  # no partial output


@pytest.mark.slow
def test_onnx_inference_config_gives_the_pytorch_mask(onnx_file, weights, tmp_path):
    """The bundle's inference with inference_onnx.yaml merged over it writes the mask PyTorch writes."""
    from monai.bundle import ConfigWorkflow

    image, _, affine = phantom.make_case(11)
    case = phantom.save_nifti(image, affine, str(tmp_path / "case.nii.gz"))
    masks = {}
    for name, extra, weights_key in (("torch", [], "ckpt_path"), ("onnx", ["inference_onnx.yaml"], "onnx_path")):
        path = weights if name == "torch" else onnx_file["path"]
        workflow = ConfigWorkflow(
            config_file=[str(CONFIGS / f) for f in ["inference.yaml", "demo.yaml", *extra]],
            meta_file=str(CONFIGS / "metadata.json"),
            workflow_type="infer",
            bundle_root=str(BUNDLE_ROOT),
            input=case,
            output_dir=str(tmp_path / name),
            num_workers=0,
            **{weights_key: str(path)},
        )
        workflow.initialize()
        if name == "onnx":
            assert isinstance(workflow.parser.get_parsed_content("network"), export.OnnxNetwork)
        workflow.run()
        workflow.finalize()
        masks[name] = np.asarray(nib.load(tmp_path / name / "case_seg.nii.gz").dataobj)
    assert 0 < masks["torch"].sum() < masks["torch"].size
    # Network outputs agree to 1e-4 (above): only voxels with a liver probability that close to 0.5 could flip.
    assert np.mean(masks["torch"] != masks["onnx"]) <= 1e-4


def test_trt_config_merges_over_inference_and_falls_back_to_pytorch_without_a_gpu():
    base = _parser("inference.yaml")
    trt = _parser("inference.yaml", "inference_trt.yaml")
    changed = {k for k in set(base.get()) | set(trt.get()) if base.get().get(k) != trt.get().get(k)}  # raw configs
    assert changed == {"trt_precision", "trt_args", "network"}
    sw = base.get_parsed_content("sw_batch_size")
    assert trt.get_parsed_content("trt_args") == {"precision": "fp16", "dynamic_batchsize": [1, sw, sw]}
    fp32 = _parser("inference.yaml", "inference_trt.yaml", trt_precision="fp32")
    assert fp32.get_parsed_content("trt_args")["precision"] == "fp32"
    net = trt.get_parsed_content("network")  # no CUDA here: trt_compile leaves the PyTorch network as it is
    assert type(net).__name__ == "UNet" and not hasattr(net, "_trt_compiler")


def test_onnx_config_changes_only_the_network_and_its_weights():
    base = _parser("inference.yaml")
    onnx = _parser("inference.yaml", "inference_onnx.yaml")
    changed = {k for k in set(base.get()) | set(onnx.get()) if base.get().get(k) != onnx.get().get(k)}
    assert changed == {"onnx_path", "ort_threads", "network", "initialize"}
    assert onnx.get_parsed_content("onnx_path").endswith("/models/model.onnx")


# ----------------------------------------------------------------------------------------------------------------------
# the zip


@pytest.fixture(scope="module")
def bundle_copy(tmp_path_factory, weights, torchscript):
    """The repository's bundle files with weights, plus the litter a working copy collects."""
    root = tmp_path_factory.mktemp("bundle_copy")
    for folder in ("configs", "scripts", "docs", "tests", "tools"):
        shutil.copytree(BUNDLE_ROOT / folder, root / folder)
    shutil.copy(BUNDLE_ROOT / "LICENSE", root / "LICENSE")
    (root / "models").mkdir()
    shutil.copy(weights, root / "models" / "model.pt")
    shutil.copy(torchscript, root / "models" / "model.ts")
    (root / "models" / "checkpoint_epoch=3.pt").write_bytes(b"resumable state")
    (root / "models" / "model.pt.plan").write_bytes(b"a TensorRT engine")
    (root / "scripts" / "__pycache__").mkdir(exist_ok=True)
    (root / "scripts" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"")
    (root / "configs" / ".inference.yaml.swp").write_bytes(b"")
    return root


def test_package_holds_the_bundle_and_nothing_else(bundle_copy, tmp_path):
    path = export.package(tmp_path / "dist" / "bundle.zip", bundle_copy)
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    assert all(n.startswith(export.BUNDLE_NAME + "/") for n in names)
    files = {n.split("/", 1)[1] for n in names}
    assert {
        "configs/metadata.json",
        "configs/inference.yaml",
        "configs/train.yaml",
        "configs/inference_trt.yaml",
        "models/model.pt",
        "models/model.ts",
        "docs/README.md",
        "docs/data_license.txt",
        "LICENSE",
        "scripts/__init__.py",
        "scripts/deploy_app/__main__.py",
    } <= files
    litter = [
        f
        for f in files
        if f.startswith(("tests/", "tools/"))  # developer tools (the benchmark) stay in the repository
        or "__pycache__" in f
        or "checkpoint_epoch" in f
        or f.endswith((".plan", ".pyc"))
        or "/." in "/" + f
        or f == "docs/CONVENTIONS_FOR_HELPERS.md"
    ]
    assert litter == []
    configs_text = "".join(p.read_text() for p in (bundle_copy / "configs").glob("*.yaml"))
    package_init = (bundle_copy / "scripts" / "__init__.py").read_text()
    for dotted in set(re.findall(r"scripts((?:\.\w+)+)", configs_text)):  # what the configs use must ship
        parts = dotted.strip(".").split(".")  # a module of the package, then at most one name in it
        modules = {
            n
            for n in range(1, len(parts) + 1)
            if {f"scripts/{'/'.join(parts[:n])}{end}" for end in (".py", "/__init__.py")} & files
        }
        assert any(len(parts) - n <= 1 for n in modules) or f"def {parts[0]}(" in package_init, dotted
    again = export.package(tmp_path / "again.zip", bundle_copy)
    assert again != path and open(again, "rb").read() == open(path, "rb").read()  # same files, same bytes


def test_package_refuses_a_bundle_without_weights_unless_asked(bundle_copy, tmp_path, capsys):
    bare = tmp_path / "bare"
    shutil.copytree(bundle_copy, bare, ignore=shutil.ignore_patterns("model.pt"))
    assert export_cli.main(["package", "--bundle_root", str(bare), "--output", str(tmp_path / "b.zip")]) == 1
    assert "models/model.pt: required bundle file not found" in capsys.readouterr().err
    assert not (tmp_path / "b.zip").exists()
    export.package(tmp_path / "b.zip", bare, weights=False)
    with zipfile.ZipFile(tmp_path / "b.zip") as archive:
        assert f"{export.BUNDLE_NAME}/models/model.pt" not in archive.namelist()


@pytest.mark.slow
def test_monai_bundle_download_and_load_accept_the_zip_and_it_runs(bundle_copy, weights, tmp_path):
    import monai.bundle
    from monai.bundle import ConfigWorkflow

    zip_path = export.package(tmp_path / "liver.zip", bundle_copy)
    url = f"file://{zip_path}"
    hub = tmp_path / "hub"
    monai.bundle.download(name=export.BUNDLE_NAME, bundle_dir=str(hub), url=url, progress=False)
    unpacked = hub / export.BUNDLE_NAME
    assert (unpacked / "configs" / "inference.yaml").is_file()
    assert (unpacked / "scripts" / "components" / "inputs.py").is_file()

    module, meta, extra = monai.bundle.load(
        name=export.BUNDLE_NAME,
        bundle_dir=str(hub),
        load_ts_module=True,
        device="cpu",
        config_files=("inference.json",),
    )
    assert meta["version"] == json.loads((CONFIGS / "metadata.json").read_text())["version"]
    assert "inference.json" in extra
    net = monai.bundle.load(
        name=export.BUNDLE_NAME,
        bundle_dir=str(hub),
        device="cpu",
        model=_parser("inference.yaml").get_parsed_content("network_def"),
    )
    expected = torch.load(weights, weights_only=True)
    assert all(torch.equal(v, expected[k]) for k, v in net.state_dict().items())

    # load alone, straight from the zip: the URL comes from an args file, as for any download source
    (tmp_path / "args.json").write_text(json.dumps({"url": url}))
    state = monai.bundle.load(
        name=export.BUNDLE_NAME, bundle_dir=str(tmp_path / "hub2"), device="cpu", args_file=str(tmp_path / "args.json")
    )
    assert set(state) == set(expected)

    # the unpacked bundle runs on its own configs and weights
    image, _, affine = phantom.make_case(12)
    case = phantom.save_nifti(image, affine, str(tmp_path / "case.nii.gz"))
    workflow = ConfigWorkflow(
        config_file=[str(unpacked / "configs" / f) for f in ("inference.yaml", "demo.yaml")],
        meta_file=str(unpacked / "configs" / "metadata.json"),
        workflow_type="infer",
        bundle_root=str(unpacked),
        input=case,
        output_dir=str(tmp_path / "out"),
        num_workers=0,
    )
    workflow.initialize()
    assert workflow.parser.get_parsed_content("ckpt_path") == f"{unpacked}/models/model.pt"
    workflow.run()
    workflow.finalize()
    mask = nib.load(tmp_path / "out" / "case_seg.nii.gz")
    assert mask.shape == image.shape and np.allclose(mask.affine, affine, atol=1e-4)
