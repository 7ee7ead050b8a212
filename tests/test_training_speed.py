"""The pieces that make training faster on a CPU (issue 17): the bfloat16 forward pass where the CPU computes it
natively, thread loaders, and the per-epoch estimate of the time left."""

from __future__ import annotations

import logging

import pytest
import torch
from ignite.engine import Engine
from monai.inferers import SimpleInferer
from monai.networks.nets import UNet

from scripts.components.training import (
    CpuAutocastInferer,
    TimeLeft,
    _duration,
    cpu_autocast,
    cpu_has_bf16,
    training_loader_workers,
)


def test_cpu_has_bf16_reads_the_cpu_flags():
    with open("/proc/cpuinfo") as f:
        flags = f.read().split()
    assert cpu_has_bf16() is ("avx512_bf16" in flags or "amx_bf16" in flags)


@pytest.mark.parametrize("requested", [True, "true", "1", False, "false", "0"])
def test_cpu_autocast_only_when_asked_on_a_cpu_that_has_bf16(requested):
    asked = requested in (True, "true", "1")
    assert cpu_autocast("cpu", requested) is (asked and cpu_has_bf16())
    assert cpu_autocast(torch.device("cuda:1"), requested) is False  # CUDA: MONAI's own float16 amp


def test_training_loader_workers():
    assert training_loader_workers("cpu") == 0
    assert training_loader_workers("cuda:0") == 2
    assert training_loader_workers("cuda:0", "ram") == training_loader_workers("cuda:0", "disk") == 2
    assert training_loader_workers("cuda:0", "gpu") == 0  # CUDA tensors cannot pass through worker processes


def _unet():
    torch.manual_seed(0)
    return UNet(3, 1, 2, (8, 16, 32), (2, 2), num_res_units=1, norm="instance")


def test_cpu_autocast_inferer_is_simple_inferer_when_disabled():
    net, x = _unet(), torch.rand(2, 1, 32, 32, 32)
    out = CpuAutocastInferer(enabled="false")(x, net)
    assert out.dtype == torch.float32 and torch.equal(out, SimpleInferer()(x, net))


def test_cpu_autocast_inferer_runs_in_bfloat16_and_returns_float32_that_trains():
    net, x = _unet(), torch.rand(2, 1, 32, 32, 32)
    seen = []
    first_conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv3d))
    first_conv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    out = CpuAutocastInferer(enabled=True)(x, net)
    assert seen == [torch.bfloat16]  # the first convolution ran in bfloat16
    assert out.dtype == torch.float32
    reference = SimpleInferer()(x, net)
    assert not torch.equal(out, reference) and torch.allclose(out, reference, atol=0.1)  # bfloat16 precision
    out.float().mean().backward()  # gradients reach the float32 weights
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in net.parameters())


def test_time_left_logs_each_epoch_with_an_estimate(caplog):
    engine = Engine(lambda engine, batch: None)
    TimeLeft(name="time_left_test").attach(engine)
    with caplog.at_level(logging.INFO, logger="time_left_test"):
        engine.run([0, 1], max_epochs=3)
    lines = [r.getMessage() for r in caplog.records if r.name == "time_left_test"]
    assert [line.split(":")[0] for line in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert lines[-1].endswith("about 0 s left") and all("so far, about" in line for line in lines)


def test_duration_reads_as_a_person_would_say_it():
    assert [_duration(s) for s in (0.4, 42, 75.2, 3600, 3725)] == [
        "0 s",
        "42 s",
        "1 min 15 s",
        "1 h 00 min",
        "1 h 02 min",
    ]


def test_thread_loader_raises_what_a_transform_raised():
    """MONAI's ThreadDataLoader ends the epoch early when a transform raises in its thread; the bundle's raises."""
    from monai.data import Dataset
    from monai.transforms import Lambda

    from scripts.components.loaders import ThreadDataLoader

    def fails_on_3(x):
        if x == 3:
            raise ValueError("case 3 is broken")
        return x

    loader = ThreadDataLoader(Dataset(list(range(6)), transform=Lambda(fails_on_3)), batch_size=1, num_workers=0)
    seen = []
    with pytest.raises(RuntimeError, match="applying transform") as raised:  # MONAI's wrapping of the error
        for batch in loader:
            seen.append(int(batch[0]))
    assert "case 3 is broken" in str(raised.value.__cause__) and seen == [0, 1, 2]
    good = ThreadDataLoader(Dataset(list(range(5))), batch_size=2, num_workers=0)
    assert [b.tolist() for b in good] == [[0, 1], [2, 3], [4]]  # and otherwise every batch, in order
