"""Datalists: build them from common dataset layouts, assign cross-validation folds, split them.

One datalist format is used everywhere in this bundle: a JSON object shaped like the Medical
Segmentation Decathlon ``dataset.json``::

    {"training": [{"image": "./imagesTr/a.nii.gz", "label": "./labelsTr/a.nii.gz", "fold": 0}, ...],
     "test": ["./imagesTs/b.nii.gz", ...]}

``fold`` is optional; ``test`` entries are strings or ``{"image": ...}`` objects. Relative paths
are relative to a base directory, by default the folder holding the JSON file.

MONAI has both jobs (``monai.data.load_decathlon_datalist``, ``partition_dataset``/``CrossValidation``); this
module keeps its own code for them, because:

- reading (:func:`load_datalist`, and :func:`labelled` from :mod:`scripts.lib.cases`): MONAI's reader names neither
  the file nor the entry in its errors (a JSON error arrives bare, a non-dict entry as a TypeError), fails with an
  IndexError on an empty ``test`` list, and checks no entry, fold or duplicate, which tests/test_datalist.py requires,
  each error naming the file;
- folds (:func:`assign_folds`): ``partition_dataset`` shuffles positions, so a case's fold depends on the order of
  the list (tests/test_datalist.py requires it to depend on the set of cases only); and its numpy shuffle would give
  other folds than this bundle's earlier versions for the same seed, while a run resumed with ``--resume true``
  recomputes its split, which must be the split it started with, or validation cases would enter training.

Command line: ``python -m scripts datalist`` (:mod:`scripts.commands.datalist`).
"""

import collections
import json
import os
import random
import re

from scripts.lib.cases import absolute, base_folder, checked_entries, labelled, read_json, require_files
from scripts.lib.fileio import NIFTI_SUFFIXES, write_text

__all__ = [
    "from_msd",
    "from_lits",
    "from_folders",
    "assign_folds",
    "write_datalist",
    "load_datalist",
    "split",
    "labelled",
    "require_files",
]

_LITS_VOLUME = re.compile(r"^volume-(\d+)\.nii(\.gz)?$")
_LITS_SEGMENTATION = re.compile(r"^segmentation-(\d+)\.nii(\.gz)?$")


# ----------------------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------------------
def _nifti_files(folder):
    """Names of the NIfTI files directly in ``folder`` (hidden files such as macOS ``._x`` skipped)."""
    if not os.path.isdir(folder):
        raise ValueError(f"{folder}: not a directory")
    names = sorted(
        n
        for n in os.listdir(folder)
        if not n.startswith(".") and n.endswith(NIFTI_SUFFIXES) and os.path.isfile(os.path.join(folder, n))
    )
    if not names:
        raise ValueError(f"{folder}: no .nii or .nii.gz files found")
    return names


# ----------------------------------------------------------------------------------------------
# builders
# ----------------------------------------------------------------------------------------------
def from_msd(dataset_dir):
    """Labelled cases of a Medical Segmentation Decathlon task folder (or its ``dataset.json``).

    Returns a list of ``{"image", "label"}`` dicts with absolute paths, in the order of the file.
    Raises ``ValueError`` when ``dataset.json`` is missing or malformed or a listed file is missing.
    """
    dataset_dir = os.path.abspath(os.path.expanduser(str(dataset_dir)))
    json_file = dataset_dir if os.path.isfile(dataset_dir) else os.path.join(dataset_dir, "dataset.json")
    data = load_datalist(json_file, base_dir=os.path.dirname(json_file))
    items = [{"image": it["image"], "label": it["label"]} for it in data["training"]]
    require_files(items, json_file)
    return items


def from_lits(folder):
    """Labelled cases of a LiTS folder: ``volume-N.nii[.gz]`` paired with ``segmentation-N.nii[.gz]``.

    Sub-folders are searched too (the LiTS release is split into "Training Batch 1/2").
    Cases are sorted by N numerically. Raises ``ValueError`` naming any unpaired or duplicated file.
    """
    folder = os.path.abspath(os.path.expanduser(str(folder)))
    if not os.path.isdir(folder):
        raise ValueError(f"{folder}: not a directory")
    volumes, segmentations = {}, {}
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            for pattern, found in ((_LITS_VOLUME, volumes), (_LITS_SEGMENTATION, segmentations)):
                match = pattern.match(name)
                if match:
                    number = int(match.group(1))
                    path = os.path.join(root, name)
                    if number in found:
                        raise ValueError(f"{path}: duplicate case number {number} (also {found[number]})")
                    found[number] = path
    if not volumes and not segmentations:
        raise ValueError(f"{folder}: no volume-N.nii[.gz] / segmentation-N.nii[.gz] files found")
    for number in sorted(set(volumes) ^ set(segmentations)):
        if number in volumes:
            raise ValueError(f"{volumes[number]}: no matching segmentation-{number}.nii[.gz] in {folder}")
        raise ValueError(f"{segmentations[number]}: no matching volume-{number}.nii[.gz] in {folder}")
    return [{"image": volumes[n], "label": segmentations[n]} for n in sorted(volumes)]


def from_folders(images_dir, labels_dir):
    """Labelled cases from an image folder and a label folder, paired by identical file name.

    Only ``.nii``/``.nii.gz`` files are considered (hidden files skipped). Raises ``ValueError``
    naming an image without a label or a label without an image.
    """
    images_dir = os.path.abspath(os.path.expanduser(str(images_dir)))
    labels_dir = os.path.abspath(os.path.expanduser(str(labels_dir)))
    images, labels = _nifti_files(images_dir), _nifti_files(labels_dir)
    label_set, image_set = set(labels), set(images)
    for name in images:
        if name not in label_set:
            raise ValueError(f"{os.path.join(images_dir, name)}: no label with the same file name in {labels_dir}")
    for name in labels:
        if name not in image_set:
            raise ValueError(f"{os.path.join(labels_dir, name)}: no image with the same file name in {images_dir}")
    return [{"image": os.path.join(images_dir, n), "label": os.path.join(labels_dir, n)} for n in images]


# ----------------------------------------------------------------------------------------------
# folds
# ----------------------------------------------------------------------------------------------
def assign_folds(items, num_folds=5, seed=0):
    """Return copies of ``items`` (in their input order) with a ``"fold"`` key in ``0..num_folds-1``.

    The assignment depends only on the set of image paths, ``num_folds`` and ``seed``: items are
    sorted by image path, shuffled with a seeded ``random.Random`` and dealt round-robin, so fold
    sizes differ by at most one and reordering the input changes nothing (why not MONAI's ``partition_dataset``:
    see the module docstring).
    """
    if isinstance(num_folds, bool) or not isinstance(num_folds, int) or num_folds < 2:
        raise ValueError(f"num_folds must be an integer >= 2, got {num_folds!r}")
    images = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or "image" not in item:
            raise ValueError(f"item {index} has no 'image': {item!r}")
        images.append(str(item["image"]))
    duplicates = sorted(p for p, n in collections.Counter(images).items() if n > 1)
    if duplicates:
        raise ValueError(f"{duplicates[0]}: listed more than once")
    order = sorted(images)
    random.Random(seed).shuffle(order)
    fold_of = {path: position % num_folds for position, path in enumerate(order)}
    return [dict(item, fold=fold_of[str(item["image"])]) for item in items]


# ----------------------------------------------------------------------------------------------
# reading and writing datalists
# ----------------------------------------------------------------------------------------------
def _portable(path, folder):
    """``path`` relative to ``folder`` (``./x`` style) when it lies inside it, else absolute."""
    path = os.path.abspath(str(path))
    rel = os.path.relpath(path, folder)
    if rel == os.pardir or rel.startswith(os.pardir + os.sep) or os.path.isabs(rel):
        return path
    return "./" + rel.replace(os.sep, "/")


def write_datalist(items, path, test=None):
    """Write a datalist JSON (``training`` = ``items``, ``test`` = ``test`` or ``[]``) atomically.

    Files inside the datalist's folder are written as ``./relative`` paths (so the dataset folder
    can move), others as absolute paths. Every item needs ``image`` and ``label``; ``fold`` and
    other keys are kept. ``test`` entries are image paths or ``{"image": ...}`` dicts.
    Returns the absolute path written.
    """
    path = os.path.abspath(os.path.expanduser(str(path)))
    folder = os.path.dirname(path)
    training = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or "image" not in item or "label" not in item:
            raise ValueError(f"{path}: training item {index} needs 'image' and 'label': {item!r}")
        entry = dict(item)
        entry["image"] = _portable(item["image"], folder)
        entry["label"] = _portable(item["label"], folder)
        training.append(entry)
    tests = []
    for index, entry in enumerate(test or []):
        if isinstance(entry, dict):
            if "image" not in entry:
                raise ValueError(f"{path}: test item {index} needs 'image': {entry!r}")
            tests.append(dict(entry, image=_portable(entry["image"], folder)))
        else:
            tests.append(_portable(entry, folder))
    data = {"numTraining": len(training), "numTest": len(tests), "training": training, "test": tests}
    return write_text(path, json.dumps(data, indent=2) + "\n")


def load_datalist(datalist_file, base_dir=None):
    """Read and validate a datalist; return ``{"training": [...], "test": [...]}`` with absolute paths.

    Training entries as :func:`labelled` returns them; test entries become ``{"image": path}`` dicts. Files are not
    required to exist here (see :func:`split`). Raises ``ValueError`` naming the file (see :func:`labelled`; also
    for a ``test`` entry that is neither a path nor ``{"image": path}``).
    """
    datalist_file = os.path.abspath(os.path.expanduser(str(datalist_file)))
    base = base_folder(datalist_file, base_dir)
    data = read_json(datalist_file)
    training = checked_entries(data, "training", datalist_file, base)
    test = []
    raw_test = data.get("test", [])
    if not isinstance(raw_test, list):
        raise ValueError(f"{datalist_file}: 'test' is not a list")
    for index, entry in enumerate(raw_test):
        if isinstance(entry, str):
            test.append({"image": absolute(entry, base)})
        elif isinstance(entry, dict) and isinstance(entry.get("image"), str):
            test.append(dict(entry, image=absolute(entry["image"], base)))
        else:
            raise ValueError(f"{datalist_file}: test entry {index} is neither a path nor {{'image': path}}: {entry!r}")
    return {"training": training, "test": test}


# ----------------------------------------------------------------------------------------------
# split
# ----------------------------------------------------------------------------------------------
def split(datalist_file, fold=0, num_folds=5, seed=0, base_dir=None, record_file=None):
    """Training/validation split of a datalist for one cross-validation fold.

    If the training entries carry ``fold`` those folds are used (the number of folds is then the
    largest fold + 1 and ``num_folds``/``seed`` do not change the split); otherwise folds come from
    ``assign_folds(items, num_folds, seed)``. Validation = entries of fold ``fold``, training = the
    rest. ``fold=-1`` trains on every case and returns an empty validation list.

    Returns ``{"training": [{"image", "label"}...], "validation": [...]}`` with absolute paths.
    Raises ``ValueError`` naming the datalist for a missing/malformed file, fewer than 2 labelled
    cases, a fold out of range or empty, or a missing image/label file (named too).

    ``record_file``: if given, the split actually used is written there atomically (JSON with
    ``datalist_file``, ``base_dir``, ``seed``, ``num_folds``, ``fold``, ``folds_from`` and the
    case lists), its folder created, so that a run can be reproduced.
    """
    data = load_datalist(datalist_file, base_dir=base_dir)
    datalist_file = os.path.abspath(os.path.expanduser(str(datalist_file)))
    items = data["training"]
    if len(items) < 2:
        raise ValueError(f"{datalist_file}: {len(items)} labelled case(s) in 'training'; at least 2 are needed")
    with_fold = [item for item in items if "fold" in item]
    if with_fold and len(with_fold) != len(items):
        raise ValueError(
            f"{datalist_file}: {len(with_fold)} of {len(items)} training entries have a 'fold'; "
            "give every entry a fold or none"
        )
    if with_fold:
        folds_from = "datalist"
        effective_folds = max(item["fold"] for item in items) + 1
    else:
        folds_from = "assigned"
        effective_folds = num_folds
        items = assign_folds(items, num_folds=num_folds, seed=seed)
    if isinstance(fold, bool) or not isinstance(fold, int) or not -1 <= fold < effective_folds:
        raise ValueError(
            f"{datalist_file}: fold {fold!r} is out of range; use 0..{effective_folds - 1} or -1 (no validation)"
        )
    require_files(items, datalist_file)
    strip = lambda item: {"image": item["image"], "label": item["label"]}  # noqa: E731
    validation = [strip(item) for item in items if item["fold"] == fold]
    training = [strip(item) for item in items if item["fold"] != fold]
    if fold >= 0 and not validation:
        raise ValueError(f"{datalist_file}: fold {fold} has no cases")
    if not training:
        raise ValueError(f"{datalist_file}: fold {fold} leaves no training cases")
    result = {"training": training, "validation": validation}
    if record_file:
        record = {
            "datalist_file": datalist_file,
            "base_dir": (
                os.path.abspath(os.path.expanduser(str(base_dir))) if base_dir else os.path.dirname(datalist_file)
            ),
            "seed": seed,
            "num_folds": effective_folds,
            "fold": fold,
            "folds_from": folds_from,
            "num_training": len(training),
            "num_validation": len(validation),
            "training": training,
            "validation": validation,
        }
        write_text(record_file, json.dumps(record, indent=2) + "\n")
    return result
