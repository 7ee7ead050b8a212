"""Share the bundle: ONNX export of the network, ONNX Runtime as a network, and the distributable zip.

TorchScript needs nothing here: MONAI's own command writes ``models/model.ts`` with the metadata and the inference
config inside (README: Export)::

    python -m monai.bundle ckpt_export network_def --filepath models/model.ts --ckpt_file models/model.pt \\
        --meta_file configs/metadata.json --config_file configs/inference.yaml

ONNX: MONAI's ``onnx_export`` fixes every tensor dimension to the metadata's patch, but sliding-window inference
sends the network fewer windows in its last batch, so :func:`export_onnx` marks the batch and spatial axes dynamic,
names the tensors as the metadata does (``image`` -> ``pred``), checks ONNX Runtime against PyTorch before the file
appears, and records the bundle's name and version in the ONNX metadata. It also exports instance normalisation as
one mean per axis (:class:`AxisWiseInstanceNorm`): ONNX Runtime's InstanceNormalization sums a whole 96^3 channel in
float32 at once, and the network's output then drifts from PyTorch's; axis by axis, each sum is short and the two
agree within the export's tolerance (``atol`` of :func:`export_onnx`). :class:`OnnxNetwork` runs that file in ONNX
Runtime behind a ``torch.nn.Module`` face, for ``configs/inference_onnx.yaml``.

The zip: :func:`package` writes ``configs/``, ``models/``, ``docs/``, ``LICENSE`` and ``scripts/`` (the configs
import it) under one top folder named after the bundle, the layout ``monai.bundle.download`` extracts and
``monai.bundle.load`` reads. Tests, caches, training checkpoints, TensorRT engines and development notes stay out.

Command line: ``python -m scripts export onnx|package`` (:mod:`scripts.commands.export`).
"""

from __future__ import annotations

import copy
import fnmatch
import json
import os
import zipfile

import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.networks.utils import convert_to_onnx

from scripts.lib.errors import reports_input_errors
from scripts.lib.fileio import atomic_path
from scripts.lib.weights import load_into

__all__ = ["export_onnx", "AxisWiseInstanceNorm", "axis_wise_norms", "OnnxNetwork", "package_files", "package"]

BUNDLE_NAME = "liver_ct_segmentation"
ONNX_ATOL = 1e-4  # ONNX Runtime's kernels sum in another order than PyTorch's: float32 noise, far below a class flip
PACKAGE_DIRS = ("configs", "models", "docs", "scripts")
PACKAGE_FILES = ("LICENSE",)
REQUIRED_FILES = ("configs/metadata.json", "configs/inference.yaml", "configs/train.yaml", "LICENSE", "docs/README.md")
WEIGHTS_FILE = "models/model.pt"
# Left out of the zip: caches, temporary and hidden files, resumable training state (large, and only for resuming),
# TensorRT engines (built for one GPU model and TensorRT version) and the team's development notes.
EXCLUDED = (
    "*/__pycache__/*",
    "*.pyc",
    ".*",
    "*/.*",
    "*.tmp",
    "models/checkpoint_*.pt",
    "*.plan",
    "docs/CONVENTIONS_FOR_HELPERS.md",
)
ZIP_DATE = (2020, 1, 1, 0, 0, 0)  # every entry gets this time stamp, so the same files give the same zip


# ----------------------------------------------------------------------------------------------------------------------
# ONNX


def _load_network(config_files, meta_file, ckpt_file, net_id="network_def", key_in_ckpt="", overrides=None):
    """The bundle's network on the CPU with the weights of ``ckpt_file``, and the parser it came from."""

    ckpt_file = os.fspath(ckpt_file)
    if not os.path.isfile(ckpt_file):
        raise FileNotFoundError(f"{ckpt_file}: weights file not found (train first, or give --ckpt_file)")
    parser = ConfigParser()
    parser.read_config([os.fspath(f) for f in config_files])
    parser.read_meta(os.fspath(meta_file))
    parser.update(dict(overrides or {}))
    return load_into(parser.get_parsed_content(net_id), ckpt_file, key=key_in_ckpt).eval(), parser


class AxisWiseInstanceNorm(torch.nn.Module):
    """Instance normalisation computed one spatial axis at a time: the same function as ``torch.nn.InstanceNorm3d``
    (statistics of each instance and channel, biased variance), with short float32 sums once exported to ONNX."""

    def __init__(self, norm: torch.nn.Module):
        super().__init__()
        self.eps = float(norm.eps)
        self.weight = norm.weight if norm.affine else None
        self.bias = norm.bias if norm.affine else None

    @staticmethod
    def _mean(x: torch.Tensor) -> torch.Tensor:
        for dim in range(x.ndim - 1, 1, -1):  # equal-sized groups: the mean of means is the mean
            x = x.mean(dim=dim, keepdim=True)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - self._mean(x)
        y = centred / torch.sqrt(self._mean(centred * centred) + self.eps)
        if self.weight is not None:
            shape = (1, -1) + (1,) * (x.ndim - 2)
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def axis_wise_norms(net: torch.nn.Module) -> torch.nn.Module:
    """Replace, in place, every instance norm that uses its input's statistics with :class:`AxisWiseInstanceNorm`."""
    for name, child in net.named_children():
        if isinstance(child, torch.nn.modules.instancenorm._InstanceNorm) and not child.track_running_stats:
            setattr(net, name, AxisWiseInstanceNorm(child))
        else:
            axis_wise_norms(child)
    return net


def _ort_session(path, threads=0, providers=None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(os.fspath(path), options, providers=list(providers or ["CPUExecutionProvider"]))


def export_onnx(
    ckpt_file,
    output,
    config_files=("configs/inference.yaml",),
    meta_file="configs/metadata.json",
    net_id="network_def",
    key_in_ckpt="",
    overrides=None,
    opset_version=None,
    dynamo=False,
    atol=ONNX_ATOL,
) -> dict:
    """Export the bundle's network with the weights of ``ckpt_file`` to ONNX at ``output``; return the check.

    The input ``image`` and output ``pred`` have dynamic batch and spatial axes. Before the file is moved into place,
    ONNX Runtime (CPU) runs it on two random patches (``patch_size`` of the config) and its output is compared with
    PyTorch's: a difference above ``atol`` raises ValueError and no file is written. ``dynamo=True`` uses PyTorch's
    newer exporter (slower to export, same graph for this network). Returns ``{"path", "max_abs_diff", "shape"}``.

    The graph comes from MONAI's ``convert_to_onnx``. MONAI's ``onnx_export`` is not used, even with
    ``converter_kwargs``: it writes the file in place before any check, its ONNX saver drops the bundle metadata
    (tests/test_export.py reads it), and its ``verify`` compares ONNX Runtime with the very module it exported on the
    one example patch, while this check compares the file with the network as trained (plain instance norms, see
    the module docstring) on another batch size. The weights go through ``scripts.lib.weights.load_into``.
    """
    import onnx

    net, parser = _load_network(config_files, meta_file, ckpt_file, net_id, key_in_ckpt, overrides)
    meta = parser.get("_meta_", {})
    channels = int(meta["network_data_format"]["inputs"]["image"]["num_channels"])
    patch = [int(s) for s in parser.get_parsed_content("patch_size")]
    axes = {0: "batch", 2: "x", 3: "y", 4: "z"}
    output = os.path.abspath(os.fspath(output))
    with atomic_path(output) as tmp:
        generator = torch.Generator().manual_seed(0)
        example = torch.rand(1, channels, *patch, generator=generator)
        kwargs = {} if dynamo else {"dynamo": False}
        exported = axis_wise_norms(copy.deepcopy(net)).eval()
        model = convert_to_onnx(
            exported,
            [example],
            input_names=["image"],
            output_names=["pred"],
            filename=tmp,
            dynamic_axes={"image": axes, "pred": axes},
            opset_version=opset_version,
            use_trace=True,
            **kwargs,
        )
        onnx.helper.set_model_props(
            model, {"bundle": BUNDLE_NAME, "version": str(meta.get("version", "")), "metadata": json.dumps(meta)}
        )
        onnx.save(model, tmp)
        check = torch.rand(2, channels, *patch, generator=generator)
        with torch.no_grad():
            expected = net(check).numpy()
        got = _ort_session(tmp).run(None, {"image": check.numpy()})[0]
        if got.shape != expected.shape:
            raise ValueError(f"{output}: ONNX output shape {got.shape} differs from PyTorch's {expected.shape}")
        diff = float(np.max(np.abs(got - expected)))
        if not diff <= atol:
            raise ValueError(f"{output}: ONNX Runtime and PyTorch differ by {diff:.3g} (> {atol:g}); file not written")
    return {"path": output, "max_abs_diff": diff, "shape": list(expected.shape)}


class OnnxNetwork(torch.nn.Module):
    """An ONNX file run by ONNX Runtime, called like the PyTorch network it was exported from.

    ``forward`` takes a float tensor on any device and returns the output on that device. The weights live in the
    ONNX file, so there is nothing to load into this module and nothing to train.

    Args:
        path: the ``.onnx`` file from :func:`export_onnx`.
        threads: ONNX Runtime's intra-op threads; 0 lets it pick (one per physical core).
        providers: ONNX Runtime execution providers, default ``["CPUExecutionProvider"]``.
    """

    @reports_input_errors  # a missing or unreadable file stops the run with one line
    def __init__(self, path, threads: int = 0, providers=None):
        super().__init__()
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: ONNX file not found (python -m scripts export onnx ...)")
        self.path = path
        try:
            self.session = _ort_session(path, threads, providers)
        except Exception as exc:  # ONNX Runtime raises its own types for files it cannot read
            raise ValueError(f"{path}: not a readable ONNX model ({' '.join(str(exc).split())})") from exc
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        array = x.detach().to("cpu", torch.float32).numpy()
        out = self.session.run(None, {self.input_name: array})[0]
        return torch.from_numpy(out).to(x.device)


# ----------------------------------------------------------------------------------------------------------------------
# the distributable zip


def _excluded(rel: str) -> bool:
    return any(fnmatch.fnmatch(rel, pattern) for pattern in EXCLUDED)


def package_files(bundle_root=".", weights=True) -> list[str]:
    """The bundle-relative paths that go into the zip, sorted; raises when a required file is missing.

    Also parses every config, and checks that the metadata's changelog has an entry for its version, so a broken
    bundle is never packaged.
    """

    root = os.path.abspath(os.fspath(bundle_root))
    required = list(REQUIRED_FILES) + ([WEIGHTS_FILE] if weights else [])
    for rel in required:
        if not os.path.isfile(os.path.join(root, rel)):
            hint = " (train first, or package with --without_weights)" if rel == WEIGHTS_FILE else ""
            raise FileNotFoundError(f"{os.path.join(root, rel)}: required bundle file not found{hint}")
    files = [f for f in PACKAGE_FILES if os.path.isfile(os.path.join(root, f))]
    for top in PACKAGE_DIRS:
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, top)):
            dirnames.sort()
            for name in sorted(filenames):
                rel = os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/")
                if not _excluded(rel):
                    files.append(rel)
    for rel in files:
        if rel.startswith("configs/") and rel.endswith((".json", ".yaml", ".yml")):
            try:
                ConfigParser.load_config_file(os.path.join(root, rel))
            except Exception as exc:  # YAML and JSON parsers raise their own types
                raise ValueError(f"{os.path.join(root, rel)}: does not parse: {exc}") from exc
    meta_path = os.path.join(root, "configs/metadata.json")
    with open(meta_path, encoding="utf-8") as f:
        meta = json.load(f)
    if str(meta.get("version")) not in meta.get("changelog", {}):
        raise ValueError(f"{meta_path}: the changelog has no entry for version {meta.get('version')!r}")
    return sorted(files)


def package(output, bundle_root=".", weights=True) -> str:
    """Write the bundle as a zip at ``output`` (through a temporary file) and return its path.

    Every file sits under ``liver_ct_segmentation/``, so
    ``monai.bundle.download(name="liver_ct_segmentation", url="file:///.../the.zip", bundle_dir=DIR)`` unpacks it to
    ``DIR/liver_ct_segmentation`` and ``monai.bundle.load(name="liver_ct_segmentation", bundle_dir=DIR, ...)`` reads
    its weights. ``weights=False`` packages a bundle without ``models/model.pt`` (users train their own).
    """
    root = os.path.abspath(os.fspath(bundle_root))
    files = package_files(root, weights=weights)
    output = os.path.abspath(os.fspath(output))
    if any(output.startswith(os.path.join(root, d) + os.sep) for d in PACKAGE_DIRS):
        raise ValueError(f"{output}: the zip must not be written inside a folder it packages")
    with atomic_path(output) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for rel in files:
                info = zipfile.ZipInfo(f"{BUNDLE_NAME}/{rel}", date_time=ZIP_DATE)
                # float weights barely compress: store them, deflate the text
                info.compress_type = zipfile.ZIP_STORED if rel.startswith("models/") else zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                with open(os.path.join(root, rel), "rb") as f:
                    archive.writestr(info, f.read())
    size = os.path.getsize(output) / 2**20
    print(f"wrote {output}: {len(files)} files, {size:.1f} MiB" + ("" if weights else " (no weights)"), flush=True)
    return output
