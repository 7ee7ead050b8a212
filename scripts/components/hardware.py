"""What a run takes from the machine: its device, its loader workers and how many windows go to the network at once.

Each value the configs derive from the machine is one function here, so the configs stay declarations
(``device: $@scripts.components.hardware.local_device()``) and train.yaml and inference.yaml compute it the same way.
"""

from __future__ import annotations

import os

import torch

from scripts import as_bool


def local_device() -> torch.device:
    """``cuda:LOCAL_RANK`` where CUDA is present (torchrun sets LOCAL_RANK; 0 otherwise), else the CPU."""
    if torch.cuda.is_available():
        return torch.device(f"cuda:{os.environ.get('LOCAL_RANK', '0')}")
    return torch.device("cpu")


def is_cuda(device) -> bool:
    """Whether ``device`` (a torch.device or a string such as "cpu", "cuda:0") is a CUDA device."""
    return torch.device(device).type == "cuda"


def windows_per_call(device) -> int:
    """Sliding windows per network call: 4 on a GPU; 2 on a CPU, where a window took less time in batches of 2 than
    in batches of 4 (docs/benchmark.md, ``cpu_batch_of_2``)."""
    return 4 if is_cuda(device) else 2


def inference_loader_workers() -> int:
    """Loader workers that read the next cases while the network runs: one per 4 cores, at most 4.

    None on a 2-core CPU, where the loader's own thread reads ahead (a worker process there cost more than it saved,
    docs/benchmark.md, notes); 4 on a 16-core server.
    """
    return min(4, (os.cpu_count() or 2) // 4)


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (the ``avx512_bf16`` or ``amx_bf16`` flag in /proc/cpuinfo).

    Where it does (AMD Zen 4, Intel Sapphire Rapids and later), a training step under bfloat16 autocast is faster than
    in float32 (docs/benchmark.md, training); where it does not, torch emulates bfloat16 and autocast would only slow
    training down. False where /proc/cpuinfo cannot be read.
    """
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_autocast(device, requested) -> bool:
    """Whether training on ``device`` runs the network under bfloat16 autocast (``scripts.components.inferers
    .CpuAutocastInferer``): when ``requested`` (true, or "true" as a command-line override arrives), on a CPU device,
    on a CPU that computes bfloat16 natively. On CUDA, MONAI's own ``amp`` (float16 with a gradient scaler) applies."""

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
