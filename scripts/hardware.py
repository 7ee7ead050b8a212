"""What a run takes from the machine: its device, its loader workers and how many windows go to the network at once.

Each value the configs derive from the machine is one function here, so the configs stay declarations
(``device: $@scripts.hardware.local_device()``) and train.yaml and inference.yaml compute it the same way.
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
    """Sliding windows per network call: 4 on a GPU; 2 on a CPU, where on 2 cores a window took 0.17 s in batches of
    2 and 0.22 s in batches of 4 (docs/benchmark.md, ``cpu_batch_of_2``)."""
    return 4 if is_cuda(device) else 2


def inference_loader_workers() -> int:
    """Loader workers that read the next cases while the network runs: one per 4 cores, at most 4.

    None on a 2-core CPU, where the loader's own thread reads ahead (a worker process there cost more than it saved:
    folder of 5 CTs 31.8 s with no worker, 34.4 s with one, docs/benchmark.md); 4 on a 16-core server.
    """
    return min(4, (os.cpu_count() or 2) // 4)
