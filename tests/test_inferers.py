"""The coarse-to-fine inferer (scripts/inferers.py) against MONAI's plain sliding window over the whole image.

The network here is a real 1x1x1 convolution whose liver logit is 10 * (intensity - 0.5): every voxel's logits depend
on that voxel only, so inside the box the coarse-to-fine path must give exactly the plain path's mask, and the tests
can say where the coarse pass sees liver and where it cannot (a 1-voxel rod vanishes when averaged down to 4 mm).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.inferers import SlidingWindowInferer
from monai.transforms.utils import get_largest_connected_component_mask

from scripts.inferers import LiverBoxInferer, coarse_box, widened

SHAPE = (80, 72, 64)
ROI = (16, 16, 16)


def threshold_network() -> torch.nn.Module:
    net = torch.nn.Conv3d(1, 2, kernel_size=1)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([0.0, 10.0]).view(2, 1, 1, 1, 1))
        net.bias.copy_(torch.tensor([0.0, -5.0]))
    return net.eval()


class Counted(torch.nn.Module):
    """The network, counting the windows it is given."""

    def __init__(self, net):
        super().__init__()
        self.net, self.windows = net, 0

    def forward(self, x):
        self.windows += x.shape[0]
        return self.net(x)


def phantom(rod: bool = False, island: bool = True, liver: bool = True) -> torch.Tensor:
    """(1, 1, *SHAPE) intensities in [0, 1]: body 0.2, a liver block 0.8, optionally a small island and a 1-voxel rod
    that leaves the liver along the first axis."""
    x = torch.full((1, 1, *SHAPE), 0.2)
    if liver:
        x[..., 30:50, 20:40, 20:40] = 0.8
    if island:
        x[..., 4:7, 60:63, 4:7] = 0.8
    if rod:
        x[..., 50:76, 29, 29] = 0.8
    return x


def mask(logits: torch.Tensor) -> np.ndarray:
    fg = logits[0].argmax(0) > 0
    return np.asarray(get_largest_connected_component_mask(fg)) if fg.any() else np.asarray(fg)


@pytest.fixture()
def inferers():
    plain = SlidingWindowInferer(roi_size=ROI, sw_batch_size=4, overlap=0.25, mode="gaussian")
    return plain, LiverBoxInferer(plain, scale=2, margin=4)


def run(inferer, x):
    net = Counted(threshold_network())
    with torch.no_grad():
        out = inferer(x, net)
    return out, net.windows


def test_same_liver_as_the_plain_path_with_fewer_windows(inferers):
    plain, fast = inferers
    x = phantom()
    ref, n_plain = run(plain, x)
    out, n_fast = run(fast, x)
    assert out.shape == ref.shape and out.dtype == ref.dtype
    assert np.array_equal(mask(out), mask(ref)) and mask(out).sum() == 20 * 20 * 20
    # 16^3 windows 12 apart: the coarse pass (40x36x32: 3x3x3 windows) and the box around the liver (28^3: 2x2x2)
    # against 7x6x5 windows over the whole image
    assert n_plain == 7 * 6 * 5 and n_fast == 27 + 8
    # outside the box: background; the island is not in the box
    assert (out[0, 1] < out[0, 0])[4:7, 60:63, 4:7].all()
    assert (ref[0, 1] > ref[0, 0])[4:7, 60:63, 4:7].all()


def test_the_output_keeps_the_inputs_metadata_and_trace(inferers):
    _, fast = inferers
    affine = torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0]))
    x = MetaTensor(phantom(), affine=affine, meta={"filename_or_obj": "case.nii.gz"})
    x.push_applied_operation({"class": "Spacingd", "id": 1})
    out, _ = run(fast, x)
    assert isinstance(out, MetaTensor)
    assert torch.equal(out.affine, affine) and out.meta["filename_or_obj"] == "case.nii.gz"
    assert [op["class"] for op in out.applied_operations] == ["Spacingd"]


def test_no_liver_at_the_coarse_pass_falls_back_to_the_whole_image(inferers):
    plain, fast = inferers
    x = phantom(liver=False, island=False)
    ref, n_plain = run(plain, x)
    out, n_fast = run(fast, x)
    assert torch.equal(out, ref) and n_fast == 27 + n_plain


def test_a_liver_beyond_its_coarse_box_widens_the_box_on_that_side(inferers, caplog):
    plain, _ = inferers
    fast = LiverBoxInferer(plain, scale=2, margin=4, grow=12, grow_steps=2)
    x = phantom(rod=True)  # the rod is 1 voxel wide: averaged down, it is no longer liver
    ref, n_plain = run(plain, x)
    lo, hi = coarse_box(run(plain, torch.nn.functional.adaptive_avg_pool3d(x, [40, 36, 32]))[0][0], SHAPE, 4)
    assert hi[0] < 76  # the coarse box cuts the rod
    with caplog.at_level("INFO", logger="scripts.inferers"):
        out, n_fast = run(fast, x)
    assert mask(ref)[50:76, 29, 29].all()  # the plain path sees the rod as part of the liver
    assert np.array_equal(mask(out), mask(ref)) and n_fast < n_plain
    widenings = [r.getMessage() for r in caplog.records if "widening" in r.getMessage()]
    assert widenings == ["the liver reaches 1 face(s) of its box: widening them by 12 voxels"] * len(widenings)
    assert 1 <= len(widenings) <= 2 and hi[0] + 12 * len(widenings) >= 76


def test_a_liver_still_beyond_its_widest_box_falls_back_to_the_whole_image(inferers):
    plain, _ = inferers
    x = phantom(rod=True)
    ref, n_plain = run(plain, x)
    for grow, steps in ((1, 2), (30, 0)):  # too little widening, or none (the fallback at once)
        out, n_fast = run(LiverBoxInferer(plain, scale=2, margin=4, grow=grow, grow_steps=steps), x)
        assert torch.equal(out, ref) and n_fast > n_plain


def test_a_box_with_too_little_liver_falls_back_to_the_whole_image(inferers):
    """No liver, one small island: the coarse pass boxes the island. Below ``min_liver_ml`` that box is not trusted."""
    plain, _ = inferers
    x = phantom(liver=False)  # the island: 27 voxels, 0.2 mL at 2 mm
    ref, n_plain = run(plain, x)
    trusting, n_box = run(LiverBoxInferer(plain, scale=2, margin=4), x)
    assert n_box < n_plain and not torch.equal(trusting, ref)  # the box alone was used
    careful = LiverBoxInferer(plain, scale=2, margin=4, min_liver_ml=1.0, pixdim=(2.0, 2.0, 2.0))
    out, n_fast = run(careful, x)
    assert torch.equal(out, ref) and n_fast == n_box + n_plain
    # the liver of the other tests (8000 voxels, 64 mL) is kept from its box
    out, n_fast = run(LiverBoxInferer(plain, scale=2, margin=4, min_liver_ml=50.0, pixdim=(2.0, 2.0, 2.0)), phantom())
    assert n_fast == 27 + 8 and mask(out).sum() == 20 * 20 * 20


def test_an_image_that_fits_in_one_window_takes_the_plain_path(inferers):
    plain, fast = inferers
    x = phantom()[..., 30:46, 20:36, 20:36]  # 16^3: one window
    ref, n_plain = run(plain, x)
    out, n_fast = run(fast, x)
    assert n_plain == n_fast == 1 and torch.equal(out, ref)


def test_widening_moves_only_the_faces_reached_and_stops_at_the_image():
    assert widened([10, 20, 30], [40, 50, 60], [(0, 0), (2, 1)], 15, (80, 72, 64)) == ([0, 20, 30], [40, 50, 64])


def test_islands_on_the_box_faces_do_not_trigger_the_fallback(inferers):
    plain, fast = inferers
    x = phantom(island=False)
    x[..., 24:28, 22:26, 22:26] = 0.8  # an island 2 voxels from the liver, cut by the box's face at 26
    ref, n_plain = run(plain, x)
    out, n_fast = run(fast, x)
    assert coarse_box(run(plain, torch.nn.functional.adaptive_avg_pool3d(x, [40, 36, 32]))[0][0], SHAPE, 4)[0][0] == 26
    assert np.array_equal(mask(out), mask(ref)) and n_fast < n_plain


def test_every_image_of_a_batch_gets_its_own_box(inferers):
    plain, fast = inferers
    a, b = phantom(), phantom(liver=False, island=False)
    b[..., 5:25, 45:65, 30:50] = 0.8
    out, _ = run(fast, torch.cat([a, b]))
    for i, x in enumerate((a, b)):
        ref, _ = run(plain, x)
        assert np.array_equal(mask(out[i : i + 1]), mask(ref))


def test_bad_parameters_are_refused():
    plain = SlidingWindowInferer(roi_size=ROI)
    with pytest.raises(ValueError, match="scale >= 1"):
        LiverBoxInferer(plain, scale=0)
    with pytest.raises(ValueError, match="margin >= 0"):
        LiverBoxInferer(plain, margin=-1)
    with pytest.raises(ValueError, match="grow >= 1 and grow_steps >= 0"):
        LiverBoxInferer(plain, grow=0)
    with pytest.raises(ValueError, match="grow >= 1 and grow_steps >= 0"):
        LiverBoxInferer(plain, grow_steps=-1)
    with pytest.raises(ValueError, match="min_liver_ml >= 0, and pixdim with it"):
        LiverBoxInferer(plain, min_liver_ml=50.0)
