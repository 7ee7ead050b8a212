"""Joining a ``torchrun`` job: the one step of multi-GPU training and evaluation that MONAI has no component for.

``configs/multi_gpu.yaml`` (merged before ``multi_gpu_train.yaml`` or ``multi_gpu_evaluate.yaml``) defines::

    process_group: "$@scripts.components.distributed.init_process_group(@device, @dist_timeout_s)"
    rank: "$torch.distributed.get_rank(@process_group)"

so the process group exists before anything that asks for the rank (seeding, samplers, DDP, the writers that only
rank 0 runs), whatever order the config resolves them in.
"""

from __future__ import annotations

import datetime
import logging
import os

import ignite.distributed as idist
import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)

#: Variables torchrun sets for every process it starts.
TORCHRUN_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def init_process_group(device, timeout_s: float = 600):
    """Join the job torchrun started; return the default process group. Safe to call again.

    The backend is NCCL on a CUDA device (which becomes this process's current device) and gloo otherwise.
    ``timeout_s`` bounds every collective: a rank that waits longer for the others (one died, or hangs) raises
    instead of waiting forever, so a failure anywhere ends the whole job.
    """

    if dist.is_available() and dist.is_initialized():
        return dist.group.WORLD
    missing = [v for v in TORCHRUN_VARIABLES if v not in os.environ]
    if missing:
        raise RuntimeError(
            f"the multi_gpu configs must be started by torchrun (missing {', '.join(missing)}): "
            "torchrun --nproc_per_node=N -m monai.bundle run ... (see README, 'Several GPUs')"
        )
    if not dist.is_available():
        raise RuntimeError("this PyTorch build has no torch.distributed support")
    if float(timeout_s) <= 0:
        raise ValueError(f"dist_timeout_s: {timeout_s} must be a positive number of seconds")
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL and ignite's collectives use the current device
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=float(timeout_s)))
    # ignite learns the job's layout lazily, with collectives (a new group, an all-reduce), on its first
    # idist.get_rank(); a handler that only rank 0 builds (a checkpoint saver) would then wait for the other ranks
    # forever. Every rank does it here, together.

    idist.sync()
    logger.info(
        "rank %d of %d: pid %d, local rank %s, %s backend, device %s",
        dist.get_rank(),
        dist.get_world_size(),
        os.getpid(),
        os.environ["LOCAL_RANK"],
        backend,
        device,
    )
    return dist.group.WORLD


def device_ids(device) -> list | None:
    """``DistributedDataParallel``'s ``device_ids``: this process's GPU, or None on a CPU (gloo)."""

    device = torch.device(device)
    return [device] if device.type == "cuda" else None


def on_rank0(value, rank):
    """``value`` on rank 0 and None on the other ranks: a path that only rank 0 writes to."""
    return value if int(rank) == 0 else None


def quiet_other_ranks(rank) -> None:
    """Ranks other than 0 log only warnings and errors: one copy of the progress, every rank's failure."""
    if int(rank) != 0:
        logging.getLogger().setLevel(logging.WARNING)
