"""The trainer's handlers where MONAI has no component.

- ``ValidateEveryAndLast``: MONAI's ``ValidationHandler`` that also validates after the final epoch.
- ``TimeLeft``: logs the epochs done and an estimate of the training time left.
- ``write_provenance``: a JSON next to the weights that says what data trained them (phantom or not).
- ``CpuAutocastInferer``, ``cpu_autocast``, ``cpu_has_bf16``: bfloat16 mixed precision on a CPU that has it.
- ``training_loader_workers``: the loader worker processes of training.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import time

import torch
from ignite.engine import Events
from monai.handlers import ValidationHandler
from monai.inferers import SimpleInferer

from scripts import as_bool
from scripts.components.checkpoint import PROVENANCE_FILE
from scripts.components.hardware import is_cuda
from scripts.lib.fileio import write_text

logger = logging.getLogger(__name__)

__all__ = [
    "CpuAutocastInferer",
    "TimeLeft",
    "ValidateEveryAndLast",
    "cpu_autocast",
    "cpu_has_bf16",
    "training_loader_workers",
    "write_provenance",
]


class ValidateEveryAndLast(ValidationHandler):
    """MONAI's ``ValidationHandler`` (epoch level) that runs every ``interval`` epochs *and* after the last epoch.

    With ``interval`` 5, MONAI's handler never validates a 1-epoch run (no ``model.pt`` is written) nor the last 2
    epochs of a 402-epoch run; this one validates after epoch ``max_epochs`` whatever the interval (once, when the
    last epoch is also a multiple of it). ``max_epochs`` is read when the epoch ends, so a resumed run with another
    ``--epochs`` validates its own last epoch.
    """

    def __init__(self, validator=None, interval: int = 1, exec_at_start: bool = False):
        super().__init__(interval=interval, validator=validator, epoch_level=True, exec_at_start=exec_at_start)

    def attach(self, engine) -> None:

        def due(engine, epoch: int) -> bool:
            return epoch % self.interval == 0 or epoch == engine.state.max_epochs

        engine.add_event_handler(Events.EPOCH_COMPLETED(event_filter=due), self)
        if self.exec_at_start:
            engine.add_event_handler(Events.STARTED, self)


class TimeLeft:
    """Logs, after every training epoch, the epochs done, the time so far and an estimate of the time left.

    The estimate is the mean time of the epochs this run has trained (validations included) times the epochs still
    to come: ``epoch 12/96: 21 s so far, about 2 min 30 s left``. A resumed run counts from its own start. MONAI's
    ``StatsHandler`` logs the loss of every iteration but no time left; ignite's ``ProgressBar`` estimates only the
    current epoch.
    """

    def __init__(self, name: str = "TimeLeft"):
        self.logger = logging.getLogger(name)
        self.start = None
        self.first_epoch = 0

    def attach(self, engine) -> None:

        engine.add_event_handler(Events.STARTED, self.started)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def started(self, engine) -> None:
        self.start = time.perf_counter()
        self.first_epoch = engine.state.epoch

    def __call__(self, engine) -> None:
        epoch, total = engine.state.epoch, engine.state.max_epochs
        elapsed = time.perf_counter() - self.start
        left = elapsed / max(1, epoch - self.first_epoch) * (total - epoch)
        self.logger.info(f"epoch {epoch}/{total}: {_duration(elapsed)} so far, about {_duration(left)} left")


def _duration(seconds: float) -> str:
    """``75.2`` gives ``"1 min 15 s"``; under a minute ``"42 s"``; from an hour ``"1 h 05 min"``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def write_provenance(
    ckpt_dir: str, datalist_file: str, split: dict, generator: dict | None = None, initial_weights: dict | None = None
) -> str:
    """Record next to the weights which data trains them, so phantom-trained weights never pass for real ones.

    ``generator``: set when the training cases are generated on the fly (configs/synthetic.yaml), the generator's
    settings (module, profile, seed range, ...); the record then says the weights saw synthetic data only, and lists
    the validation cases, which are the only files the run reads. ``initial_weights``: the record of the weights
    the run started from (``--init_weights``, :func:`scripts.components.checkpoint.start_from`), kept as ``initial_weights``:
    the weights then also carry what trained those.
    """
    description = ""
    try:
        with open(datalist_file) as f:
            meta = json.load(f)
        description = f"{meta.get('name', '')}: {meta.get('description', '')}".strip(": ")
    except (OSError, ValueError):
        pass
    synthetic = generator is not None or "synthetic" in description.lower() or "phantom" in description.lower()
    if generator is not None:
        trained_on = "SYNTHETIC DATA ONLY, generated during training (not patient data; not a clinical liver model)"
    else:
        trained_on = "SYNTHETIC PHANTOM (not patient data; not a clinical liver model)" if synthetic else "user data"
    record = {
        "trained_on": trained_on,
        "datalist_file": os.path.abspath(datalist_file),
        "dataset_description": description,
        "num_training_cases": len(split.get("training", [])),
        "num_validation_cases": len(split.get("validation", [])),
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    if initial_weights is not None:
        record["initial_weights"] = dict(initial_weights)
    if generator is not None:
        record["generator"] = dict(generator)
        record["validation_cases"] = [case["image"] for case in split.get("validation", [])]
    path = os.path.join(ckpt_dir, PROVENANCE_FILE)
    write_text(path, json.dumps(record, indent=2) + "\n")
    if generator is not None:
        logger.warning("training on synthetic CT only: the weights in %s are not a clinical liver model", ckpt_dir)
    elif synthetic:
        logger.warning("training on the synthetic phantom: the weights in %s are a demo, not a liver model", ckpt_dir)
    return path


class CpuAutocastInferer(SimpleInferer):
    """MONAI's ``SimpleInferer`` under ``torch.autocast("cpu", dtype=torch.bfloat16)``, the output as float32: training's
    mixed precision on a CPU with native bfloat16, as MONAI's ``amp`` gives it on CUDA only (the loss in float32). With
    ``enabled`` false it is ``SimpleInferer``; train.yaml enables it through :func:`cpu_autocast`.
    """

    def __init__(self, enabled=True):
        super().__init__()
        self.enabled = as_bool(enabled)

    def __call__(self, inputs: torch.Tensor, network, *args, **kwargs):
        if not self.enabled:
            return super().__call__(inputs, network, *args, **kwargs)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = super().__call__(inputs, network, *args, **kwargs)
        return out.float()


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (the ``avx512_bf16`` or ``amx_bf16`` flag in /proc/cpuinfo; False
    where it cannot be read): AMD Zen 4, Intel Sapphire Rapids and later, where a training step under bfloat16 autocast
    is faster than in float32 (docs/benchmark.md, training); elsewhere torch emulates bfloat16, which only slows down.
    """
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_autocast(device, requested) -> bool:
    """Whether training on ``device`` runs the network under bfloat16 autocast (:class:`CpuAutocastInferer`): when
    ``requested`` (true, or "true" as a command-line override arrives), on a CPU device that computes bfloat16
    natively. On CUDA, MONAI's own ``amp`` (float16 with a gradient scaler) applies."""
    return as_bool(requested) and not is_cuda(device) and cpu_has_bf16()


def training_loader_workers(device, cache: str = "ram") -> int:
    """Loader worker processes in training: none on a CPU or with the cases cached on the GPU, else 2 with CUDA.

    On a CPU the ThreadDataLoader's own thread runs the random transforms: faster than worker processes, which start
    anew every epoch and compete with the network for the cores (docs/benchmark.md, training). With ``cache: gpu``
    (:func:`scripts.components.cache.choose`) that thread runs them on the GPU, and CUDA tensors cannot pass through
    worker processes. With CUDA and cases in RAM or on disk the 2 worker processes of the earlier configs stay (not
    re-measured here).
    """
    return 2 if is_cuda(device) and cache != "gpu" else 0
