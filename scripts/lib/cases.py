"""Labelled cases of a datalist: the reader that inference, evaluation and training share.

A datalist is a JSON object shaped like the Medical Segmentation Decathlon ``dataset.json``
(:mod:`scripts.lib.datalist` builds, writes and splits them); this module only reads one list of ``{"image",
"label"}`` entries from it (:func:`labelled`) and checks that the files exist (:func:`require_files`). It imports
nothing of the bundle, so evaluation (``scripts.components.evaluation.labelled_cases``) reads its cases without the
datalist builders.
"""

import collections
import json
import os

__all__ = ["labelled", "require_files", "absolute", "read_json", "checked_entries", "base_folder"]


def absolute(path, base_dir):
    """Absolute, normalised form of ``path``; relative paths are taken relative to ``base_dir``."""
    path = os.path.expanduser(str(path))
    return os.path.normpath(os.path.join(base_dir, path))


def require_files(items, source):
    """Raise ``ValueError`` naming the first missing image/label file of ``items``."""
    missing = [
        item[key] for item in items for key in ("image", "label") if key in item and not os.path.isfile(item[key])
    ]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ValueError(f"{source}: file not found: {missing[0]}{more}")


def read_json(datalist_file):
    """The JSON object of a datalist file; ValueError naming the file when it is missing or not JSON."""
    if not os.path.isfile(datalist_file):
        raise ValueError(f"{datalist_file}: datalist file not found")
    try:
        with open(datalist_file, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{datalist_file}: cannot read datalist JSON: {exc}") from exc


def checked_entries(data, key, datalist_file, base):
    """The ``key`` list of ``data`` checked entry by entry, with absolute paths (see :func:`labelled`)."""
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise ValueError(f"{datalist_file}: no '{key}' list")  # noqa: B907 (the key as the file spells it)
    items = []
    for index, item in enumerate(data[key]):
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("image"), str)
            or not isinstance(item.get("label"), str)
        ):
            raise ValueError(f"{datalist_file}: {key} entry {index} needs string 'image' and 'label': {item!r}")
        if "fold" in item and (isinstance(item["fold"], bool) or not isinstance(item["fold"], int) or item["fold"] < 0):
            raise ValueError(f"{datalist_file}: {key} entry {index} has an invalid fold {item['fold']!r}")
        items.append(dict(item, image=absolute(item["image"], base), label=absolute(item["label"], base)))
    if key == "training":  # folds are assigned per image (an evaluation list may pair one image with two labels)
        duplicates = sorted(p for p, n in collections.Counter(item["image"] for item in items).items() if n > 1)
        if duplicates:
            raise ValueError(f"{datalist_file}: image listed more than once in 'training': {duplicates[0]}")
    return items


def base_folder(datalist_file, base_dir):
    """The folder that relative paths of ``datalist_file`` are relative to: ``base_dir``, else the file's folder."""
    return os.path.abspath(os.path.expanduser(str(base_dir))) if base_dir else os.path.dirname(datalist_file)


def labelled(datalist_file, key="training", base_dir=None):
    """The ``key`` list of labelled cases of a datalist, ``[{"image", "label", ...}]`` with absolute paths.

    The one reader of labelled lists: training (``scripts.lib.datalist.load_datalist``, ``split``) and evaluation
    (``scripts.components.evaluation.labelled_cases``, any key, e.g. ``validation`` of a split record). Entries keep their
    extra keys (such as ``fold``). Raises ``ValueError`` naming the file for a missing file, invalid JSON, no ``key``
    list, an entry without string ``image``/``label``, a bad ``fold`` or (in ``training``) an image listed twice.
    Files need not exist here.
    """
    datalist_file = os.path.abspath(os.path.expanduser(str(datalist_file)))
    return checked_entries(read_json(datalist_file), key, datalist_file, base_folder(datalist_file, base_dir))
