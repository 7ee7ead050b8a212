"""Weights files checked before they are used: read with PyTorch's restricted unpickler, and compared with the network.

:func:`load_weights` is ``torch.load(path, map_location="cpu", weights_only=True)``: the restricted unpickler
rebuilds tensors and plain containers only, and refuses any other Python object instead of running its code; there
is no fallback to a full unpickle. Errors name the file and say what is wrong (truncated, not a PyTorch file, foreign
objects). :func:`check_fits` compares the weights with the network they are meant for, and :func:`load_into` does
both and loads them. Inference checks its weights with these (``scripts.components.inputs.check_weights``), as do
the ONNX export, fine-tuning (``scripts.components.checkpoint.start_from``) and the benchmark.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import torch

from scripts.lib.errors import one_line

__all__ = ["check_fits", "load_into", "load_weights", "unwrap", "weights_of"]


def load_weights(path, map_location="cpu"):
    """``torch.load(path, weights_only=True)`` with errors that name the file; never a full unpickle.

    Raises FileNotFoundError for a missing file and ValueError for an empty, truncated or non-PyTorch file, or one
    holding Python objects other than tensors and plain containers (refused, not executed).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such weights file")
    if os.path.getsize(path) == 0:
        raise ValueError(f"{path}: the weights file is empty")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for damaged files
        text = str(exc)
        if "Weights only load failed" in text:
            names = sorted(set(re.findall(r"GLOBAL ([\w.]+)", text)))
            detail = re.search(r"WeightsUnpickler error:(.*?)(Check the documentation|$)", text, re.S)
            what = ", ".join(names) or (one_line(detail.group(1))[:200] if detail else "unknown content")
            raise ValueError(
                f"{path}: refused: the file holds Python objects that are not weights ({what}); unpickling them could "
                "run arbitrary code, so only weights files (torch.load weights_only=True) are accepted"
            ) from exc
        first = one_line(text).split(". ")[0][:300]
        raise ValueError(f"{path}: not a readable PyTorch weights file (truncated or corrupt?): {first}") from exc


def unwrap(network):
    """The network inside a ``DataParallel``/``DistributedDataParallel`` wrapper, or ``network`` itself."""
    return (
        network.module
        if isinstance(network, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel))
        else network
    )


def weights_of(state, key: str = "model"):
    """The state dict in ``state``: ``state[key]`` where a checkpoint nests it there (as MONAI's
    ``CheckpointLoader`` accepts it), else ``state`` itself."""
    return state[key] if isinstance(state, Mapping) and isinstance(state.get(key), Mapping) else state


def check_fits(path, state, network, key: str = "model") -> None:
    """Raise ValueError (naming ``path``) unless ``state`` holds weights for every parameter/buffer of ``network``.

    ``state`` is a state dict, or a dict holding one under ``key`` (as MONAI's ``CheckpointLoader`` accepts it).
    Names and shapes must match exactly, every value must be a tensor, and no floating-point value may be NaN/Inf.
    """
    path = os.fspath(path)
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: holds a {type(state).__name__}, not a dictionary of weights")
    weights = weights_of(state, key)
    expected = unwrap(network).state_dict()
    if key not in state and not set(expected) & set(weights) and {"network", "optimizer"} <= set(state):
        raise ValueError(
            f"{path}: a resumable training checkpoint (network, optimizer, ...), not a weights file: give the weights "
            "(models/model.pt), or continue training with --resume true"
        )
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    not_tensors = [k for k in weights if k in expected and not torch.is_tensor(weights[k])]
    reshaped = [
        f"{k}: file {tuple(weights[k].shape)}, network {tuple(v.shape)}"
        for k, v in expected.items()
        if k in weights and torch.is_tensor(weights[k]) and tuple(weights[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or not_tensors or reshaped:
        example = (
            reshaped
            + [f"missing {k}" for k in missing]
            + [f"unexpected {k}" for k in unexpected]
            + [f"{k} is not a tensor" for k in not_tensors]
        )[0]
        raise ValueError(
            f"{path}: these weights do not fit the bundle's network ({len(missing)} missing, {len(unexpected)} "
            f"unexpected, {len(reshaped)} of another shape, {len(not_tensors)} not tensors; e.g. {example}): trained "
            "for another network, or with other settings (num_classes, channels)?"
        )
    broken = [k for k, v in weights.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if broken:
        raise ValueError(
            f"{path}: {len(broken)} weight tensor(s) hold NaN/Inf values (e.g. {broken[0]}): a diverged training?"
        )


def load_into(network, path, key: str = "model"):
    """Load the weights file ``path`` into ``network`` and return it: :func:`load_weights`, :func:`check_fits`, then
    a strict ``load_state_dict``. ``key``: where a nested checkpoint holds the weights (see :func:`check_fits`)."""
    state = load_weights(path)
    check_fits(path, state, network, key=key)
    unwrap(network).load_state_dict(weights_of(state, key))
    return network
