"""Checkpoints that a crash cannot damage, and weights files that are checked before they are used.

Writing. MONAI's ``CheckpointSaver`` writes through ignite's ``DiskSaver`` with ``atomic=False``, and ignite's
``Checkpoint`` deletes the file it replaces *before* writing the new one: for a fixed name such as ``model.pt`` it
deletes the previous best, then writes the new best in place. A crash, a full disk or a kill in between leaves
``model.pt`` missing or truncated, and the resumable ``checkpoint_epoch=N.pt`` likewise (the old one is deleted
before the new one is complete). :class:`AtomicCheckpointSaver` is that ``CheckpointSaver`` with every save handler
replaced by :class:`AtomicDiskSaver`: each file is written to a temporary name in the same folder, flushed to disk,
and renamed over the target (``os.replace``, atomic on POSIX and Windows), and files it replaces are deleted only
after the new file is in place. A reader therefore sees the old complete file or the new complete file, never a part.
Temporary files are named ``.<name>.<random>.tmp``: hidden, and never matched by ``checkpoint_epoch=*.pt``.

Reading. :func:`load_weights` is ``torch.load(path, map_location="cpu", weights_only=True)``: the restricted
unpickler rebuilds tensors and plain containers only, and refuses any other Python object instead of running its
code; there is no fallback to a full unpickle. Errors name the file and say what is wrong (truncated, not a
PyTorch file, foreign objects). :func:`check_fits` compares the weights with the network they are meant for, and
:func:`resumable` does both for the checkpoint that ``--resume true`` continues from.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Mapping

import torch
from ignite.handlers import DiskSaver
from monai.handlers import CheckpointSaver

from scripts.errors import one_line

logger = logging.getLogger(__name__)

__all__ = ["save_atomic", "AtomicDiskSaver", "AtomicCheckpointSaver", "load_weights", "check_fits", "resumable"]


# ----------------------------------------------------------------------------------------------------------------------
# writing


def save_atomic(obj, path, save=torch.save) -> str:
    """``save(obj, file)`` to ``path`` atomically (``scripts.fileio.atomic_path``: temporary file, fsync, rename);
    returns ``path``. After a crash or power loss ``path`` is either the previous file or the complete new one."""
    from scripts.fileio import atomic_path

    path = os.fspath(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            save(obj, f)
    return path


class AtomicDiskSaver(DiskSaver):
    """An ignite save handler that writes atomically and deletes replaced files only after a successful write.

    ``filename``: a fixed file name (as MONAI's ``key_metric_filename``) used instead of the one ignite proposes.
    ignite calls :meth:`remove` for the file a new checkpoint replaces *before* it writes the new one; the removal
    is deferred until the next write has succeeded. If that write fails, the old file stays on disk.
    """

    def __init__(self, dirname, filename: str | None = None, save_on_rank: int = 0):
        super().__init__(dirname=dirname, atomic=True, create_dir=True, require_empty=False, save_on_rank=save_on_rank)
        self.filename = filename
        self.pending_removals: list[str] = []

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        if self.filename is not None:
            filename = self.filename
        super().__call__(checkpoint, filename, metadata)
        # the new file is complete and in place: only now may the files it replaces go
        from ignite import distributed as idist

        if idist.get_rank() == self.save_on_rank:
            for old in self.pending_removals:
                if old != filename:
                    with contextlib.suppress(FileNotFoundError):
                        (self.dirname / old).unlink()
        self.pending_removals = []

    def _save_func(self, checkpoint: Mapping, path, func) -> None:
        save_atomic(checkpoint, path, save=func)

    def remove(self, filename: str) -> None:
        self.pending_removals.append(self.filename if self.filename is not None else filename)


class AtomicCheckpointSaver(CheckpointSaver):
    """MONAI's ``CheckpointSaver`` (same arguments, same file names) with atomic writes (:class:`AtomicDiskSaver`).

    A crash while a checkpoint is written never leaves the previous ``model.pt`` or ``checkpoint_epoch=N.pt``
    missing or truncated.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for saver in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if saver is not None:
                saver.save_handler = AtomicDiskSaver(self.save_dir, getattr(saver.save_handler, "filename", None))


# ----------------------------------------------------------------------------------------------------------------------
# reading


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


def _unwrap(network):
    return network.module if isinstance(network, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)) else network


def check_fits(path, state, network, key: str = "model") -> None:
    """Raise ValueError (naming ``path``) unless ``state`` holds weights for every parameter/buffer of ``network``.

    ``state`` is a state dict, or a dict holding one under ``key`` (as MONAI's ``CheckpointLoader`` accepts it).
    Names and shapes must match exactly, every value must be a tensor, and no floating-point value may be NaN/Inf.
    """
    path = os.fspath(path)
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: holds a {type(state).__name__}, not a dictionary of weights")
    weights = state[key] if isinstance(state.get(key), Mapping) else state
    expected = _unwrap(network).state_dict()
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
        example = (reshaped + [f"missing {k}" for k in missing] + [f"unexpected {k}" for k in unexpected]
                   + [f"{k} is not a tensor" for k in not_tensors])[0]
        raise ValueError(
            f"{path}: these weights do not fit the bundle's network ({len(missing)} missing, {len(unexpected)} "
            f"unexpected, {len(reshaped)} of another shape, {len(not_tensors)} not tensors; e.g. {example}): trained "
            "for another network, or with other settings (num_classes, channels)?"
        )
    broken = [k for k, v in weights.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if broken:
        raise ValueError(f"{path}: {len(broken)} weight tensor(s) hold NaN/Inf values (e.g. {broken[0]}): a diverged training?")


def resumable(ckpt_dir, training_state: Mapping) -> str:
    """The newest ``checkpoint_epoch=N.pt`` in ``ckpt_dir``, checked to hold everything ``training_state`` names.

    Raises FileNotFoundError when there is none, ValueError when it is unreadable, lacks an entry of
    ``training_state`` or holds weights that do not fit ``training_state["network"]``.
    """
    from scripts.handlers import latest_checkpoint

    path = latest_checkpoint(os.fspath(ckpt_dir))
    state = load_weights(path)
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: holds a {type(state).__name__}, not a training checkpoint")
    lacking = [k for k in training_state if k not in state]
    if lacking:
        raise ValueError(f"{path}: not a resumable checkpoint of this bundle: it lacks {', '.join(lacking)}")
    if "network" in training_state:
        check_fits(path, state, training_state["network"], key="network")
    trainer = state.get("trainer") or {}
    done = trainer.get("epoch") or (trainer.get("iteration", 0) // max(1, trainer.get("epoch_length") or 1))
    logger.info("resuming from %s (after epoch %s)", path, done)
    return path
