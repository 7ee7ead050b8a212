"""Training on the fly: synthetic CT cases generated inside the data pipeline (configs/synthetic.yaml).

MONAI has datasets that cache and replace cases (``SmartCacheDataset``) but no synthetic-CT generator: its readers
load files. This module is the missing piece, so that a training run draws every case from ``scripts/lib/phantom/``
instead of reading a folder, and no case is seen in two epochs of a run:

- :class:`SyntheticCased`: a transform that turns ``{"seed": s}`` into the item ``LoadImaged`` would give for the
  same phantom case written to NIfTI (a channel-first float32 image in HU, its label map, the affine in the meta
  data), so the rest of train.yaml's preprocessing runs on it unchanged. It is deterministic (a pure function of the
  seed), so MONAI's caching datasets cache its output.
- :func:`seed_items`: the data list of a seed range, what the dataset iterates over instead of file paths.
- :func:`train_seeds`: the seed range of a run, after the seeds of its earlier epochs when it resumes
  (:func:`seed_range` for the config: one line for a resume without a checkpoint).
- :func:`split`: the training seeds and, for validation, every labelled case of a folder, refused when the two share
  a seed; recorded like ``scripts.lib.datalist.split``'s record.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import LoadImaged, MapTransform
from monai.utils import SpaceKeys

from scripts import as_bool
from scripts.components.checkpoint import latest_checkpoint_epoch
from scripts.lib import phantom
from scripts.lib.cases import labelled, require_files
from scripts.lib.errors import reports_input_errors
from scripts.lib.fileio import write_text


class SyntheticCased(MapTransform):
    """``{"seed": s}`` -> ``{"seed", "image", "label"}``: phantom case ``s`` as ``LoadImaged`` would load it.

    ``image``: MetaTensor (1, X, Y, Z) float32 HU; ``label``: MetaTensor (1, X, Y, Z) float32 (0, 1 liver, 2 tumour),
    as ``LoadImaged(ensure_channel_first=True)`` reads the same case saved with ``phantom.save_nifti``: same arrays,
    same affine (RAS+ mm, float64) and the meta keys the following transforms use (``affine``, ``original_affine``,
    ``spatial_shape``, ``space``, ``original_channel_dim``, ``filename_or_obj``, here ``phantom:<profile>:<seed>``).

    Not ``Randomizable``: the output is a pure function of the seed, so a caching dataset stores it and a seed names
    one case for ever.

    Args:
        keys: the output keys of the image and the label (``("image", "label")``).
        seed_key: the item key that holds the seed.
        spacing: mm of the generated grid along the stored axes; ``None``: the phantom draws it per case.
        profile: the phantom's profile, one of ``phantom.PROFILES``.
    """

    def __init__(self, keys=("image", "label"), seed_key: str = "seed", spacing=None, profile: str = "standard"):
        super().__init__(keys)
        if len(self.keys) != 2:
            raise ValueError(f"keys: give the image key and the label key, got {keys!r}")
        self.seed_key = seed_key
        self.spacing = None if spacing is None else tuple(float(s) for s in spacing)
        self.profile = str(profile)

    def __call__(self, data):

        item = dict(data)
        seed = item[self.seed_key]
        image, label, affine = phantom.make_case(seed, spacing=self.spacing, profile=self.profile)
        affine = np.asarray(affine, dtype=np.float64)
        for key, array in zip(self.keys, (image, label), strict=True):
            meta = {
                "affine": torch.as_tensor(affine),
                "original_affine": affine.copy(),
                "spatial_shape": np.asarray(array.shape),
                "space": SpaceKeys.RAS,
                "original_channel_dim": float("nan"),  # no channel on "disk": LoadImaged's value
                "filename_or_obj": f"phantom:{self.profile}:{seed}",
            }
            item[key] = MetaTensor(torch.from_numpy(array.astype(np.float32))[None], meta=meta)
        return item


def seed_items(start: int, count: int) -> list[dict]:
    """The data list of seeds ``start .. start + count - 1``: ``[{"seed": start}, ...]``."""
    start = phantom.check_seed(start, "first training seed")
    count = phantom.check_seed(count, "number of training seeds")
    return [{"seed": s} for s in range(start, start + count)]


def seeds_needed(pool_size: int, replace_rate: float, epochs: int) -> int:
    """Distinct seeds a ``SmartCacheDataset`` run consumes: the first pool, then ``ceil(pool * rate)`` new cases
    after each of the ``epochs`` epochs (MONAI's replacement count). Fewer seeds and cases come back."""
    return int(pool_size) + int(epochs) * math.ceil(int(pool_size) * float(replace_rate))


def train_seeds(first_seed: int, pool_size: int, replace_rate: float, epochs: int, resume=False, ckpt_dir=None):
    """The seed range of this run, ``{"first": f, "count": c}``: :func:`seeds_needed` seeds from ``first_seed``, or,
    with ``resume`` (true, or "true" as a command-line override arrives), fresh seeds after every seed the first
    ``done`` epochs drew (the newest ``checkpoint_epoch=done.pt`` in ``ckpt_dir``), enough for a new pool and the
    remaining ``epochs - done`` epochs. A resumed run thus never draws a case its earlier epochs saw: its pool starts
    anew, as after a restart MONAI's ``SmartCacheDataset`` would otherwise refill it from the first seed.

    Raises FileNotFoundError when resuming without a checkpoint (:func:`seed_range` makes it the same one-line error
    as the resume itself).
    """

    first_seed = phantom.check_seed(first_seed, "first training seed")
    done = latest_checkpoint_epoch(os.fspath(ckpt_dir))[0] if as_bool(resume) else 0
    drawn = seeds_needed(pool_size, replace_rate, done) if done else 0
    return {"first": first_seed + drawn, "count": seeds_needed(pool_size, replace_rate, max(0, int(epochs) - done))}


#: synthetic.yaml's ``train_seeds``: :func:`train_seeds`, a resume without a checkpoint stopping the run with one line.
seed_range = reports_input_errors(train_seeds)


def validation_seeds(datalist_file) -> list[int] | None:
    """The phantom seeds of the cases a ``python -m scripts phantom --output_dir`` dataset.json lists (case ``i`` has
    seed ``seed * 1000 + i``, training cases first); ``None`` for a datalist the phantom did not write."""
    with open(datalist_file, encoding="utf-8") as f:
        data = json.load(f)
    block = data.get("phantom") if isinstance(data, dict) else None
    if not isinstance(block, dict) or "seed" not in block:
        return None
    total = int(data.get("numTraining", 0)) + int(data.get("numTest", 0))
    return [int(block["seed"]) * 1000 + i for i in range(total)]


def check_disjoint(start: int, count: int, datalist_file) -> list[int] | None:
    """Raise ``ValueError`` (one line) when training seeds ``start .. start + count - 1`` include the seed of a
    validation case of ``datalist_file``; return the validation seeds (``None``: not phantom cases)."""
    seeds = validation_seeds(datalist_file)
    shared = [s for s in seeds or [] if start <= s < start + count]
    if shared:
        raise ValueError(
            f"{datalist_file}: training seeds {start}..{start + count - 1} include validation seed(s) "
            f"{shared[0]}..{shared[-1]}; choose a --train_seed_start outside {min(seeds)}..{max(seeds)}"
        )
    return seeds


@reports_input_errors
def split(datalist_file, train_seed_start: int, num_train_seeds: int, base_dir=None, record_file=None) -> dict:
    """``{"training": seed_items(...), "validation": every labelled case of datalist_file}``.

    Validation uses all the folder's labelled cases (``scripts.lib.cases.labelled``, files required), training none
    of them. Stops the run with one line naming the datalist when the seed ranges overlap (:func:`check_disjoint`),
    when a case file is missing or when there is no labelled case. ``record_file``: the split actually used, as JSON, with
    the training seeds as a range rather than a list.
    """

    datalist_file = os.path.abspath(os.path.expanduser(str(datalist_file)))
    training = seed_items(train_seed_start, num_train_seeds)
    if not training:
        raise ValueError("number of training seeds is 0")
    validation_seeds_ = check_disjoint(train_seed_start, num_train_seeds, datalist_file)
    validation = [{"image": c["image"], "label": c["label"]} for c in labelled(datalist_file, base_dir=base_dir)]
    if not validation:
        raise ValueError(f"{datalist_file}: no labelled case for validation")
    require_files(validation, datalist_file)
    if record_file:
        record = {
            "datalist_file": datalist_file,
            "training_seeds": {"first": int(train_seed_start), "count": int(num_train_seeds)},
            "validation_seeds": validation_seeds_,
            "num_training": len(training),
            "num_validation": len(validation),
            "validation": validation,
        }
        write_text(record_file, json.dumps(record, indent=2) + "\n")
    return {"training": training, "validation": validation}


def replace_loader(transforms, generator) -> list:
    """``transforms`` (train.yaml's deterministic list) with its ``LoadImaged`` replaced by ``generator``: the same
    preprocessing for generated cases as for files, without a copy of the list in the config."""

    transforms = list(transforms)
    loaders = [i for i, t in enumerate(transforms) if isinstance(t, LoadImaged)]
    if len(loaders) != 1:
        raise ValueError(f"expected one LoadImaged among the deterministic transforms, found {len(loaders)}")
    transforms[loaders[0]] = generator
    return transforms
