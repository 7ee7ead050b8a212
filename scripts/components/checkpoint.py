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
With ``remove_stale=True`` (the resumable checkpoint) a new ``checkpoint_epoch=N.pt``, once in place, also replaces
every other ``checkpoint_epoch=*.pt`` in the folder: those an earlier run or the run before a resume left, which
ignite's ``n_saved=1`` does not know of.

Resuming. The best-weights saver's record of the best score is part of the resumable state
(:meth:`AtomicCheckpointSaver.state_dict`), so that after ``--resume true`` a worse validation does not replace
``model.pt``. :class:`ResumeLoader` is MONAI's ``CheckpointLoader`` for the newest checkpoint that also refuses to
restart a finished run and stretches a cosine LR schedule to a changed ``--epochs``.

Starting. :func:`resumable` checks the checkpoint that ``--resume true`` continues from, and :func:`start_from` loads
the weights that ``--init_weights`` gives a new training run (fine-tuning), checked by :mod:`scripts.lib.weights`.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import math
import os
import re
from collections.abc import Mapping

import torch
from ignite import distributed as idist
from ignite.handlers import DiskSaver
from monai.handlers import CheckpointLoader, CheckpointSaver

from scripts import as_bool
from scripts.lib.errors import InputError, reports_input_errors
from scripts.lib.fileio import atomic_path, sha256
from scripts.lib.weights import check_fits, load_weights, unwrap, weights_of

logger = logging.getLogger(__name__)

__all__ = [
    "save_atomic",
    "AtomicDiskSaver",
    "AtomicCheckpointSaver",
    "ResumeLoader",
    "resumable",
    "class_layers",
    "start_from",
    "stretch_schedule",
]

#: The resumable checkpoints MONAI's interval saver writes (``checkpoint_epoch=N.pt``).
RESUMABLE_GLOB = "checkpoint_epoch=*.pt"
#: Entries of the training state that checkpoints of bundle versions before 0.2.0 lack; a resume goes on without them.
OPTIONAL_STATE = ("best_saver",)


#: The record of where a checkpoint's weights came from, written beside it (``write_provenance``).
PROVENANCE_FILE = "model_provenance.json"


def latest_checkpoint_epoch(ckpt_dir: str) -> tuple[int, str]:
    """``(N, path)`` of the newest ``checkpoint_epoch=N.pt`` in ``ckpt_dir`` (the largest N); raise if there is none."""
    found = []
    for path in glob.glob(os.path.join(ckpt_dir, RESUMABLE_GLOB)):
        match = re.search(r"checkpoint_epoch=(\d+)\.pt$", path)
        if match:
            found.append((int(match.group(1)), path))
    if not found:
        raise FileNotFoundError(f"{ckpt_dir}: no checkpoint_epoch=N.pt to resume from (train without --resume first)")
    return max(found)


def latest_checkpoint(ckpt_dir: str) -> str:
    """Return the newest ``checkpoint_epoch=N.pt`` in ``ckpt_dir`` (the largest N); raise if there is none."""
    return latest_checkpoint_epoch(ckpt_dir)[1]


# ----------------------------------------------------------------------------------------------------------------------
# writing


def save_atomic(obj, path, save=torch.save) -> str:
    """``save(obj, file)`` to ``path`` atomically (``scripts.lib.fileio.atomic_path``: temporary file, fsync, rename);
    returns ``path``. After a crash or power loss ``path`` is either the previous file or the complete new one."""

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
    ``stale_glob``: after a successful write, every other file in ``dirname`` that matches it is removed too.
    """

    def __init__(self, dirname, filename: str | None = None, save_on_rank: int = 0, stale_glob: str | None = None):
        super().__init__(dirname=dirname, atomic=True, create_dir=True, require_empty=False, save_on_rank=save_on_rank)
        self.filename = filename
        self.stale_glob = stale_glob
        self.pending_removals: list[str] = []

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        if self.filename is not None:
            filename = self.filename
        super().__call__(checkpoint, filename, metadata)
        # the new file is complete and in place: only now may the files it replaces go

        if idist.get_rank() == self.save_on_rank:
            stale = [p.name for p in self.dirname.glob(self.stale_glob)] if self.stale_glob else []
            for old in sorted(set(self.pending_removals + stale)):
                if old != filename:
                    with contextlib.suppress(FileNotFoundError):
                        (self.dirname / old).unlink()
                        logger.info("removed %s: replaced by %s", self.dirname / old, filename)
        self.pending_removals = []

    def _save_func(self, checkpoint: Mapping, path, func) -> None:
        save_atomic(checkpoint, path, save=func)

    def remove(self, filename: str) -> None:
        self.pending_removals.append(self.filename if self.filename is not None else filename)


class AtomicCheckpointSaver(CheckpointSaver):
    """MONAI's ``CheckpointSaver`` (same arguments, same file names) with atomic writes (:class:`AtomicDiskSaver`).

    A crash while a checkpoint is written never leaves the previous ``model.pt`` or ``checkpoint_epoch=N.pt``
    missing or truncated. Files are written by rank 0 only, so under torchrun every rank may hold the saver.

    ``remove_stale``: each new interval checkpoint (``checkpoint_epoch=N.pt``) replaces every other file of that
    pattern in ``save_dir``, once it is complete: one resumable checkpoint, also after a resume or a restart.
    :meth:`state_dict` / :meth:`load_state_dict` carry the key metric's record (the best score and its file) through
    a resumable checkpoint.
    """

    def __init__(self, *args, remove_stale: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self._engine = None  # the engine attach() attached to
        for saver in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if saver is not None:
                stale = RESUMABLE_GLOB if remove_stale and saver is self._interval_checkpoint else None
                filename = getattr(saver.save_handler, "filename", None)
                saver.save_handler = AtomicDiskSaver(self.save_dir, filename, stale_glob=stale)

    def attach(self, engine) -> None:
        """MONAI's attach; the engine (the evaluator) is kept, as its best-metric record travels with the saver's."""
        super().attach(engine)
        self._engine = engine

    def state_dict(self) -> dict:
        """The key metric's record: ``{"_saved": [(best score, file name)]}`` (empty before the first validation),
        with the evaluator's ``best_metric`` and ``best_metric_epoch`` once the saver is attached to one."""
        state = (
            {"_saved": []} if self._key_metric_checkpoint is None else dict(self._key_metric_checkpoint.state_dict())
        )
        engine_state = getattr(self._engine, "state", None)
        for key in ("best_metric", "best_metric_epoch"):
            if hasattr(engine_state, key):
                state[key] = getattr(engine_state, key)
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore the key metric's record (and the evaluator's best metric, so that its log agrees). A recorded file
        that no longer exists is forgotten, with a warning, so that the next validation writes it again."""
        saved = []
        fixed = getattr(getattr(self._key_metric_checkpoint, "save_handler", None), "filename", None)
        for score, name in state_dict.get("_saved", []):
            path = os.path.join(self.save_dir, fixed or name)  # ignite records its own name for a fixed-name file
            if os.path.isfile(path):
                saved.append((score, name))
                logger.info("best score so far: %.4f (%s)", score, path)
            else:
                logger.warning(
                    "%s: the best weights recorded in the checkpoint are gone; the next validation "
                    "writes them again",
                    path,
                )
        super().load_state_dict({"_saved": saved})
        engine_state = getattr(self._engine, "state", None)
        if saved and engine_state is not None and "best_metric_epoch" in state_dict:
            engine_state.best_metric = state_dict["best_metric"]
            engine_state.best_metric_epoch = state_dict["best_metric_epoch"]


# ----------------------------------------------------------------------------------------------------------------------
# starting and resuming


def class_layers(weights: Mapping, network, num_classes: int) -> tuple[list, int | None]:
    """The tensors of ``network`` that differ from ``weights`` only where the network has ``num_classes`` channels:
    its output layers, when the file was trained for another number of classes. Returns their names and the file's
    class count, or ``([], None)`` when no tensor differs that way or the differences name more than one count.

    Fine-tuning keeps these at the network's own initialisation and loads every other tensor, as nnU-Net's
    pretrained-weights loading skips its segmentation layers. For this bundle's U-Net they are the 4 tensors of the
    last up-sampling block."""
    names, counts = [], set()
    for k, v in unwrap(network).state_dict().items():
        w = weights.get(k)
        if not torch.is_tensor(w) or w.ndim != v.ndim or tuple(w.shape) == tuple(v.shape):
            continue
        diff = [(a, b) for a, b in zip(w.shape, v.shape, strict=True) if a != b]
        if all(b == num_classes for _, b in diff):
            names.append(k)
            counts.update(a for a, _ in diff)
    return (names, counts.pop()) if len(counts) == 1 else ([], None)


@reports_input_errors
def start_from(network, path, resume=False, num_classes=None) -> dict | None:
    """``--init_weights FILE`` (fine-tuning): load the weights file ``path`` into ``network`` before training starts,
    and return what the provenance records of it. None when ``path`` is None or empty (random initial weights).

    The file is checked as inference checks its weights (:func:`scripts.lib.weights.load_into`: weights only, every
    name and shape of the network, no NaN/Inf); a bad one stops the run with one line naming it. Where the file was
    trained for another number of classes than the network's ``num_classes`` (the 2-class shipped model for a liver
    and tumour run), the output layers start from random weights and everything else from the file
    (:func:`class_layers`); the record
    says which. The record holds the file's absolute path and sha256 and, where the ``model_provenance.json`` beside
    it describes this file (its ``weights_sha256`` matches, or the file is the ``model.pt`` of a training run's
    folder), the data that trained it. ``resume`` true: the run continues from its checkpoint, whose network already
    started from ``path``, so the file is read for the record but not loaded into the network again.
    """

    if path is None or not str(path).strip():
        return None
    path = os.path.abspath(os.fspath(path))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such weights file (--init_weights)")
    record = {"path": path, "sha256": sha256(path)}
    beside = os.path.join(os.path.dirname(path), PROVENANCE_FILE)
    try:
        with open(beside, encoding="utf-8") as f:
            origin = json.load(f)
    except (OSError, ValueError):
        origin = {}
    if "weights_sha256" in origin:  # a shipped model's record names its weights
        describes = origin["weights_sha256"] == record["sha256"]
    else:  # a training run's record describes the model.pt beside it
        describes = os.path.basename(path) == "model.pt"
    if describes and origin.get("trained_on"):
        record["trained_on"] = origin["trained_on"]
    weights = weights_of(load_weights(path))
    keep, file_classes = [], None
    if num_classes is not None and isinstance(weights, Mapping):
        keep, file_classes = class_layers(weights, network, int(num_classes))
    if keep:
        record["output_layers_reinitialised"] = {
            "file_classes": file_classes,
            "classes": int(num_classes),
            "tensors": keep,
        }
    if as_bool(resume):
        logger.info("--resume true: the network continues from its checkpoint (the run started from %s)", path)
        return record
    if keep:
        own = unwrap(network).state_dict()
        weights = {**weights, **{k: own[k] for k in keep}}
        logger.info(
            "%s holds weights for %d classes and the network has %d: its %d output tensors (%s) keep their random "
            "initialisation",
            path,
            file_classes,
            int(num_classes),
            len(keep),
            ", ".join(keep),
        )
    check_fits(path, weights, network)
    unwrap(network).load_state_dict(weights)
    logger.info("training starts from the weights in %s (sha256 %s...)", path, record["sha256"][:12])
    return record


def stretch_schedule(lr_scheduler, epochs: int) -> None:
    """Fit a restored cosine LR schedule to the run's ``epochs`` (the total the user asked for now).

    A resumed ``CosineAnnealingLR`` keeps the ``T_max`` of the run that saved it: with a larger ``--epochs`` the
    extra epochs would run at the final learning rate (0) or climb back up. This sets ``T_max = epochs`` and puts
    the learning rate where the cosine over ``epochs`` has it after the epochs already done (closed form), so the
    run goes on as if it had been planned for ``epochs`` from the start; PyTorch's recursive update then follows
    that curve. Logs what it changed. Schedules without ``T_max`` are left as restored (with a warning).
    """
    if lr_scheduler is None or getattr(lr_scheduler, "T_max", epochs) == epochs:
        return
    if not isinstance(lr_scheduler, torch.optim.lr_scheduler.CosineAnnealingLR):
        logger.warning(
            "the LR schedule %s was restored as saved: it is not stretched to %d epochs",
            type(lr_scheduler).__name__,
            epochs,
        )
        return
    done, old = lr_scheduler.last_epoch, lr_scheduler.T_max
    lr_scheduler.T_max = epochs
    new_lrs = []
    for group, base in zip(lr_scheduler.optimizer.param_groups, lr_scheduler.base_lrs, strict=True):
        eta_min = lr_scheduler.eta_min
        group["lr"] = eta_min + (base - eta_min) * (1 + math.cos(math.pi * done / epochs)) / 2
        new_lrs.append(group["lr"])
    before = list(lr_scheduler.get_last_lr())
    lr_scheduler._last_lr = new_lrs
    logger.info(
        "LR schedule stretched from %d to %d epochs: after epoch %d the learning rate is %.3g (was %.3g)",
        old,
        epochs,
        done,
        new_lrs[0],
        before[0],
    )


class ResumeLoader(CheckpointLoader):
    """``--resume true``: MONAI's ``CheckpointLoader`` for the newest checkpoint under ``ckpt_dir`` (:func:`resumable`).

    Called with the trainer (``loader(trainer)``) it restores everything ``load_dict`` names, then:
    - refuses (one-line error) a checkpoint whose run already reached the trainer's ``max_epochs`` (ignite would
      silently start over from epoch 0) or went past it, saying which ``--epochs`` continues it;
    - stretches a cosine LR schedule to the trainer's ``max_epochs`` (:func:`stretch_schedule`).
    """

    @reports_input_errors  # no checkpoint, or one that is unreadable or does not fit: one line
    def __init__(self, ckpt_dir, load_dict: Mapping, map_location=None):

        load_path = resumable(ckpt_dir, load_dict)
        stored = load_weights(load_path)
        absent = [k for k in OPTIONAL_STATE if k in load_dict and k not in stored]
        if absent:
            logger.warning(
                "%s holds no %s (a checkpoint of bundle version < 0.2.0): the first validation after the "
                "resume counts as the best so far",
                load_path,
                ", ".join(absent),
            )
        super().__init__(
            load_path=load_path,
            load_dict={k: v for k, v in load_dict.items() if k not in absent},
            map_location=map_location,
        )

    def __call__(self, engine) -> None:

        epochs = engine.state.max_epochs
        try:
            super().__call__(engine)
        except ValueError as exc:  # MONAI's: the checkpoint's epoch is past max_epochs
            raise InputError(f"{self.load_path}: {exc}") from exc
        if epochs is not None and engine.state.epoch >= epochs:
            raise InputError(
                f"{self.load_path}: this run already trained {engine.state.epoch} of {epochs} epochs; to train longer "
                f"give the new total, e.g. --epochs {engine.state.epoch * 2} (the LR schedule is stretched to it)"
            )
        stretch_schedule(self.load_dict.get("lr_scheduler"), engine.state.max_epochs)


def resumable(ckpt_dir, training_state: Mapping) -> str:
    """The newest ``checkpoint_epoch=N.pt`` in ``ckpt_dir``, checked to hold everything ``training_state`` names.

    Raises FileNotFoundError when there is none, ValueError when it is unreadable, lacks an entry of
    ``training_state`` (other than those of ``OPTIONAL_STATE``) or holds weights that do not fit
    ``training_state["network"]``.
    """

    path = latest_checkpoint(os.fspath(ckpt_dir))
    state = load_weights(path)
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: holds a {type(state).__name__}, not a training checkpoint")
    lacking = [k for k in training_state if k not in state and k not in OPTIONAL_STATE]
    if lacking:
        raise ValueError(f"{path}: not a resumable checkpoint of this bundle: it lacks {', '.join(lacking)}")
    if "network" in training_state:
        check_fits(path, state, training_state["network"], key="network")
    trainer = state.get("trainer") or {}
    done = trainer.get("epoch") or (trainer.get("iteration", 0) // max(1, trainer.get("epoch_length") or 1))
    logger.info("resuming from %s (after epoch %s)", path, done)
    return path
