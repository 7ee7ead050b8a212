"""What a run takes from the machine: its device, its loader workers and how many windows go to the network at once.
One function per value, so the configs stay declarations and train.yaml and inference.yaml compute it the same way.
"""

from __future__ import annotations

import os

import torch


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
    """Loader workers that read the next cases while the network runs: one per 4 cores, at most 4; none on a 2-core
    CPU, where the loader's own thread reads ahead (a worker process there cost more than it saved, docs/benchmark.md,
    notes)."""
    return min(4, (os.cpu_count() or 2) // 4)
