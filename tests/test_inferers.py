"""The coarse-to-fine inferer (scripts/components/inferers.py) against MONAI's plain sliding window over the whole image.

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

from scripts.components.inferers import LiverBoxInferer, coarse_box, filled, widened

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
    lo, hi, _ = coarse_box(run(plain, torch.nn.functional.adaptive_avg_pool3d(x, [40, 36, 32]))[0][0], SHAPE, 4)
    assert hi[0] < 76  # the coarse box cuts the rod
    with caplog.at_level("INFO", logger="scripts.components.inferers"):
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


def grating() -> torch.Tensor:
    """The liver block beside a grating: 12 planes of 0.9, one voxel thick and one voxel apart, across the first axis.
    Averaged down to 4 mm the grating is one block of 'liver' (0.55) larger than the liver; at 2 mm it is 12 separate
    planes of 64x20 voxels."""
    x = phantom(island=False)
    x[..., 54:78:2, 4:68, 44:64] = 0.9
    return x


def test_the_coarse_box_reports_its_components_volume_on_the_fine_grid(inferers):
    plain, _ = inferers
    coarse = torch.nn.functional.adaptive_avg_pool3d(phantom(), [40, 36, 32])
    lo, hi, volume = coarse_box(run(plain, coarse)[0][0], SHAPE, 4)
    assert (lo, hi, volume) == ([26, 16, 16], [54, 44, 44], 20 * 20 * 20)
    lo, hi, volume = coarse_box(
        run(plain, torch.nn.functional.adaptive_avg_pool3d(grating(), [40, 36, 32]))[0][0], SHAPE, 4
    )
    assert (lo, hi, volume) == ([50, 0, 40], [80, 72, 64], 24 * 64 * 20)  # the grating, not the liver


def test_the_coarse_box_holds_every_component_of_a_tenth_of_the_largest(inferers):
    """The grating is the largest 'liver' at 4 mm, the liver block a third of it: boxing the largest alone loses the
    liver, boxing both keeps it (the fine pass sees planes in the grating, and the block as the largest)."""
    plain, _ = inferers
    x = grating()
    coarse = run(plain, torch.nn.functional.adaptive_avg_pool3d(x, [40, 36, 32]))[0][0]
    assert coarse_box(coarse, SHAPE, 4, min_share=0.1) == ([26, 0, 16], [80, 72, 64], 24 * 64 * 20 + 20 * 20 * 20)
    assert coarse_box(coarse, SHAPE, 4, min_share=0.5) == coarse_box(coarse, SHAPE, 4)  # the block is under half
    ref, n_plain = run(plain, x)
    largest, _ = run(LiverBoxInferer(plain, scale=2, margin=4), x)
    assert mask(largest).sum() == 64 * 20  # one plane of the grating
    both, n_fast = run(LiverBoxInferer(plain, scale=2, margin=4, min_share=0.1), x)
    assert np.array_equal(mask(both), mask(ref)) and mask(both).sum() == 20 * 20 * 20 and n_fast < n_plain


@pytest.mark.parametrize(
    "guard",
    [
        {"min_confirmed": 0.5},  # the planes hold 1280 of the coarse block's 30720 voxels
        {"min_liver_ml": 50.0, "pixdim": (2.0, 2.0, 2.0)},  # one plane: 10.2 mL, all of them: 123 mL
    ],
)
def test_a_box_that_the_fine_pass_does_not_confirm_falls_back_to_the_whole_image(inferers, guard, caplog):
    """The coarse pass boxes the grating, and the fine pass finds there only 1-voxel planes: the liver is elsewhere."""
    plain, _ = inferers
    x = grating()
    ref, n_plain = run(plain, x)
    assert mask(ref).sum() == 20 * 20 * 20  # the plain path keeps the liver block
    trusting, n_box = run(LiverBoxInferer(plain, scale=2, margin=4), x)
    assert n_box < n_plain and mask(trusting).sum() == 64 * 20  # the box alone: one plane of the grating
    with caplog.at_level("INFO", logger="scripts.components.inferers"):
        out, n_fast = run(LiverBoxInferer(plain, scale=2, margin=4, **guard), x)
    assert torch.equal(out, ref) and n_fast == n_box + n_plain
    assert "the fine pass confirms 1280 of the coarse pass's 30720 liver voxels" in caplog.text


def test_an_image_that_fits_in_one_window_takes_the_plain_path(inferers):
    plain, fast = inferers
    x = phantom()[..., 30:46, 20:36, 20:36]  # 16^3: one window
    ref, n_plain = run(plain, x)
    out, n_fast = run(fast, x)
    assert n_plain == n_fast == 1 and torch.equal(out, ref)


def test_widening_moves_only_the_faces_reached_and_stops_at_the_image():
    assert widened([10, 20, 30], [40, 50, 60], [(0, 0), (2, 1)], 15, (80, 72, 64)) == ([0, 20, 30], [40, 50, 64])


def test_a_box_is_filled_to_what_its_windows_cover_and_stays_in_the_image():
    # 16^3 windows 12 apart: 10 voxels -> one window (16); 20 -> two (28); 41 -> four (52); the last axis stops at the
    # image's border (64), and a box longer than the image's side keeps the image's side
    assert filled([30, 0, 50], [40, 20, 61], (80, 72, 64), (16, 16, 16), 0.25) == ([27, 0, 48], [43, 28, 64])
    assert filled([10], [51], (80,), (16,), 0.25) == ([5], [57])
    assert filled([0], [10], (12,), (16,), 0.25) == ([0], [12])
    # overlap per axis, as MONAI takes it
    assert filled([30, 30], [40, 40], (80, 80), (16, 16), (0.25, 0.5)) == ([27, 27], [43, 43])


def test_the_windows_see_the_image_around_a_thin_liver_not_padding(inferers):
    """A liver thinner than a window: its box is filled to a whole window of image. Unfilled, MONAI pads the 14-voxel
    crop with zeros to a window, and a network with context would see a wall of zeros beside the liver."""
    plain, fast = inferers
    x = torch.full((1, 1, *SHAPE), 0.2)  # the image is >= 0.2 everywhere: a 0 in a window is padding
    x[..., 30:36, 20:40, 20:40] = 0.8  # 6 voxels thick: a 14-voxel box on the first axis (margin 4)
    seen = []

    class Recorded(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = threshold_network()

        def forward(self, w):
            seen.extend(float(v) for v in w.amin(dim=(1, 2, 3, 4)))
            return self.net(w)

    with torch.no_grad():
        out = fast(x, Recorded())
    ref, _ = run(plain, x)
    assert np.array_equal(mask(out), mask(ref)) and mask(out).sum() == 6 * 20 * 20
    assert len(seen) == 27 + 4 and min(seen) == pytest.approx(0.2)  # 3x3x3 coarse, 1x2x2 in the box


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
    with pytest.raises(ValueError, match="0 < min_share <= 1"):
        LiverBoxInferer(plain, min_share=0.0)
    with pytest.raises(ValueError, match="0 <= min_confirmed <= 1"):
        LiverBoxInferer(plain, min_confirmed=1.5)
