"""Where preprocessed training cases are kept: in GPU memory (``cache: gpu``), in RAM (``cache: ram``) or in a private
folder on disk (``cache: disk``); ``cache: auto`` (the default) picks the first of these that the cases fit in.

Training and validation read every case once per epoch. The deterministic part of the preprocessing (load, reorient,
resample to ``pixdim``, window, crop) is the slow part, so it is done once and kept:

- ``gpu``: MONAI ``CacheDataset`` on the training device: :func:`dataset` moves each case there after the
  deterministic part, so the random crops and augmentations run on the GPU and no case crosses the PCIe bus again
  (MONAI's fast-training guide does the same). The configs' transforms stay device-free: which device holds the cache
  is known only once the dataset's size is (:func:`choose`).
- ``ram``: MONAI ``CacheDataset`` keeps ``cache_rate`` of the cases in the memory of every training process.
- ``disk``: MONAI ``PersistentDataset`` writes each case once to ``<cache_dir>/<transform hash>/`` and reads it back
  in later epochs. The folder is private to the user (mode 0700), since cached files are loaded with ``torch.load``.
  Its name is a hash of the deterministic transforms' settings, so changing, say, ``pixdim`` or ``hu_window`` starts
  a new folder instead of reading stale cases; each file's name hashes the case's paths, sizes and modification
  times, so a replaced image is preprocessed again.

What each choice costs for a dataset, computed from the NIfTI headers: ``python -m scripts cache``
(:mod:`scripts.commands.cache`).
"""

from __future__ import annotations

import enum
import functools
import hashlib
import json
import logging
import math
import os
import stat
import threading
import types

import nibabel as nib
import numpy as np
import psutil
import torch
from monai import __version__ as monai_version
from monai.data import CacheDataset, PersistentDataset
from monai.transforms import Compose, Lambda, RandomizableTrait, ToDeviced, Transform

from scripts.components.hardware import is_cuda
from scripts.lib.errors import reports_input_errors

logger = logging.getLogger(__name__)

APP_NAME = "liver_ct_segmentation"
CACHE_CHOICES = ("auto", "gpu", "ram", "disk")
#: ``cache: auto``: the share of the training GPU's free memory the cached cases may take. The rest is for the
#: network's training step and sliding-window validation (a choice: the default 96^3 x 4 patches U-Net step was not
#: measured on a GPU here).
GPU_SHARE = 0.5
#: ``cache: auto``: the share of the host's available RAM the cached cases may take; the rest is for the batches in
#: flight, the loaders and the network on a CPU (a choice).
RAM_SHARE = 0.7
#: Attributes that transforms and image readers set while they run (the last files read); not settings.
RUNTIME_ATTRIBUTES = frozenset({"filenames"})
#: Bytes per voxel of a cached case: the image and the label, both float32 after ``EnsureTyped`` in train.yaml.
BYTES_PER_VOXEL = 4 + 4


def default_cache_root() -> str:
    """The user's cache folder for this bundle: ``$XDG_CACHE_HOME/liver_ct_segmentation`` (``~/.cache/...``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, APP_NAME)


def _describe(obj, seen: frozenset = frozenset()):
    """A JSON-able description of ``obj``'s settings: class names and attribute values, recursively.

    Memory addresses never enter it, nor the state a transform keeps while it runs (thread-local tracing flags,
    the files a reader last read), so the same settings give the same description in every process, before and
    after the transforms are used.
    """
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else repr(obj)
    if isinstance(obj, enum.Enum):
        return f"{type(obj).__name__}.{obj.name}"
    if isinstance(obj, type):
        return f"{obj.__module__}.{obj.__qualname__}"
    if isinstance(obj, (np.dtype, np.generic)):
        return repr(obj)

    if isinstance(obj, torch.dtype):
        return str(obj)
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        return _describe(np.asarray(obj.tolist() if isinstance(obj, torch.Tensor) else obj).tolist(), seen)
    if id(obj) in seen:
        return "<cycle>"
    seen = seen | {id(obj)}
    if isinstance(obj, (list, tuple)):
        return [_describe(v, seen) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted(json.dumps(_describe(v, seen), sort_keys=True) for v in obj)
    if isinstance(obj, dict):
        return {str(k): _describe(v, seen) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, functools.partial):
        return {
            "partial": _describe(obj.func, seen),
            "args": _describe(obj.args, seen),
            "kwargs": _describe(obj.keywords, seen),
        }
    if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType, types.MethodType)):
        return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', repr(type(obj)))}"
    name = f"{type(obj).__module__}.{type(obj).__qualname__}"
    if hasattr(obj, "__dict__"):
        settings = {
            k: v for k, v in vars(obj).items() if k not in RUNTIME_ATTRIBUTES and not isinstance(v, threading.local)
        }
        return {"class": name, "settings": _describe(settings, seen)}
    return name


def deterministic_transforms(transform) -> list:
    """The leading transforms of ``transform`` whose result a persistent cache may store.

    The same rule as MONAI's ``PersistentDataset``: stop at the first random transform or the first callable that
    is not a MONAI ``Transform``.
    """

    flat = transform.flatten().transforms if isinstance(transform, Compose) else list(transform or [])
    kept = []
    for t in flat:
        if isinstance(t, RandomizableTrait) or not isinstance(t, Transform):
            break
        kept.append(t)
    return kept


def transform_hash(transform, length: int = 16) -> str:
    """A hex hash of the settings of ``transform``'s deterministic part (see :func:`deterministic_transforms`)."""

    description = {"monai": monai_version, "transforms": _describe(deterministic_transforms(transform))}
    text = json.dumps(description, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def item_hash(item) -> bytes:
    """The cache key of one datalist entry: its values and, for each value that is a file, its size and mtime.

    Used as ``PersistentDataset(hash_func=...)``: a file replaced under the same name gets a new cache entry.
    """

    def key(value):
        if isinstance(value, str) and os.path.isfile(value):
            st = os.stat(value)
            return [os.path.abspath(value), st.st_size, st.st_mtime_ns]
        if isinstance(value, dict):
            return {str(k): key(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
        if isinstance(value, (list, tuple)):
            return [key(v) for v in value]
        return value if isinstance(value, (bool, int, float, str, type(None))) else repr(value)

    text = json.dumps(key(item), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest().encode("utf-8")


def private_dir(path: str) -> str:
    """Create ``path`` (mode 0700) if needed and check that only the current user can read or change it.

    Raises ``PermissionError`` naming the folder when it belongs to another user or is open to group/others:
    cached cases are loaded with ``torch.load``, so nobody else may be able to place files there.
    """
    path = os.path.abspath(os.path.expanduser(str(path)))
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.stat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(f"{path}: the cache path exists and is not a folder")
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise PermissionError(f"{path}: the cache folder belongs to another user (uid {st.st_uid}); choose --cache_dir")
    if st.st_mode & 0o077:
        raise PermissionError(
            f"{path}: the cache folder is open to other users (mode {stat.S_IMODE(st.st_mode):o}); "
            f"run `chmod 700 {path}` or choose another --cache_dir"
        )
    return path


def cache_folder(transform, cache_dir: str | None = None) -> str:
    """The private folder for cases preprocessed by ``transform``: ``<cache_dir>/<transform_hash>``."""
    root = os.path.abspath(os.path.expanduser(str(cache_dir or default_cache_root())))
    if not os.path.exists(root):
        os.makedirs(root, mode=0o700, exist_ok=True)  # a root we create is private too
    return private_dir(os.path.join(root, transform_hash(transform)))


def compact(item):
    """``item`` with every tensor that views a larger buffer copied to its own: a cropped volume saved as a view
    would store the whole uncropped buffer on disk (``torch.save`` writes storages, not views)."""

    def own(v):
        if isinstance(v, torch.Tensor) and v.untyped_storage().nbytes() > v.numel() * v.element_size():
            return v.clone(memory_format=torch.contiguous_format)
        return v

    return {k: own(v) for k, v in item.items()} if isinstance(item, dict) else own(item)


def insert_after_deterministic(transform, step):
    """``transform`` as a ``Compose`` with ``step`` inserted after its deterministic part (where MONAI's cached
    datasets store a case), keeping the ``Compose`` options."""

    flat = transform.flatten().transforms if isinstance(transform, Compose) else list(transform)
    n = len(deterministic_transforms(transform))
    options = {
        k: getattr(transform, k)
        for k in ("map_items", "unpack_items", "log_stats", "lazy", "overrides")
        if hasattr(transform, k)
    }
    return Compose(list(flat[:n]) + [step] + list(flat[n:]), **options)


def with_compact_cache(transform):
    """``transform`` with :func:`compact` inserted after its deterministic part, where ``PersistentDataset`` saves."""

    return insert_after_deterministic(transform, Lambda(func=compact))


def on_device(transform, device):
    """``transform`` with MONAI's ``ToDeviced`` (the keys its deterministic part handles) inserted after that part,
    where ``CacheDataset`` stores: the cached cases live on ``device`` and the random transforms run there."""

    keys = [k for t in deterministic_transforms(transform) for k in getattr(t, "keys", ())]
    return insert_after_deterministic(transform, ToDeviced(keys=list(dict.fromkeys(keys)), device=device))


def placed(transform, cache: str, device):
    """``transform`` for a dataset that caches where ``cache`` says: :func:`on_device` for ``gpu``, else unchanged.
    (configs/synthetic.yaml gives its generated pool, a ``SmartCacheDataset``, the same placement as :func:`dataset`.)
    """
    return on_device(transform, device) if cache == "gpu" else transform


def dataset(
    data,
    transform,
    cache: str = "ram",
    cache_rate: float = 1.0,
    cache_dir: str | None = None,
    num_workers: int = 0,
    device=None,
):
    """The training or validation dataset with the chosen cache.

    Args:
        data: datalist entries (``{"image": path, "label": path}``).
        transform: the full preprocessing; only its deterministic leading part is cached.
        cache: ``"gpu"`` or ``"ram"`` (``CacheDataset``: the transform's device decides where the cases live) or
            ``"disk"`` (``PersistentDataset`` in :func:`cache_folder`); :func:`choose` resolves ``"auto"``.
        cache_rate: fraction of the cases kept in RAM (``ram`` only).
        cache_dir: the disk cache root (``disk`` only); ``None``: :func:`default_cache_root`.
        num_workers: threads that fill the RAM cache.
        device: the training device; ``gpu`` caches the cases there (:func:`on_device`).
    """

    if cache in ("gpu", "ram"):
        return CacheDataset(
            data=data, transform=placed(transform, cache, device), cache_rate=cache_rate, num_workers=num_workers
        )
    if cache == "disk":
        folder = cache_folder(transform, cache_dir)
        logger.info("disk cache: %s (%d case(s) listed)", folder, len(data))
        return PersistentDataset(
            data=data, transform=with_compact_cache(transform), cache_dir=folder, hash_func=item_hash
        )
    raise ValueError(f"cache: {cache!r} is not one of {', '.join(CACHE_CHOICES[1:])} (choose() resolves auto)")


# ----------------------------------------------------------------------------------------------
# how much each choice needs, from the NIfTI headers
# ----------------------------------------------------------------------------------------------
def resampled_shape(shape, spacing, pixdim) -> tuple:
    """The grid size of a volume of ``shape`` voxels at ``spacing`` mm after resampling to ``pixdim`` mm."""
    return tuple(max(1, int(round(n * s / p))) for n, s, p in zip(shape, spacing, pixdim, strict=True))


def estimate(items, pixdim=(2.0, 2.0, 2.0), progress: bool = True) -> list[dict]:
    """Per case: original shape and spacing, shape at ``pixdim`` and the bytes its cached copy takes at most.

    An upper bound: the foreground crop of the preprocessing removes the air around the body (often a third).
    ``progress``: print one line per case.
    """

    rows = []
    for n, item in enumerate(items, 1):
        path = item["image"]
        try:
            img = nib.load(path)
            shape = tuple(int(s) for s in img.shape[:3])
            spacing = tuple(float(s) for s in img.header.get_zooms()[:3])
        except Exception as exc:  # nibabel raises several types for damaged headers
            raise ValueError(f"{path}: not a readable NIfTI file ({exc})") from exc
        at = resampled_shape(shape, spacing, pixdim)
        row = {
            "image": path,
            "shape": shape,
            "spacing": spacing,
            "resampled": at,
            "bytes": int(np.prod(at)) * BYTES_PER_VOXEL,
        }
        rows.append(row)
        if progress:
            print(
                f"{n}/{len(items)} {os.path.basename(path)}: {'x'.join(map(str, shape))} at "
                f"{'x'.join(f'{s:.2f}' for s in spacing)} mm -> {'x'.join(map(str, at))} -> "
                f"{row['bytes'] / 1e6:.0f} MB",
                flush=True,
            )
    return rows


def free_gpu_bytes(device) -> int:
    """Free memory of the CUDA ``device`` now (``torch.cuda.mem_get_info``)."""

    return int(torch.cuda.mem_get_info(torch.device(device))[0])


def available_ram_bytes() -> int:
    """RAM the host can give without swapping (``psutil``'s ``available``)."""

    return int(psutil.virtual_memory().available)


@reports_input_errors
def choose(
    cache: str = "auto",
    device="cpu",
    data=(),
    pixdim=(2.0, 2.0, 2.0),
    cache_rate: float = 1.0,
    gpu_free: int | None = None,
    ram_free: int | None = None,
    processes: int | None = None,
) -> str:
    """Where this run keeps its preprocessed cases: ``"gpu"``, ``"ram"`` or ``"disk"``, logged with the figures behind it.

    ``cache`` ``ram`` and ``disk`` are kept as asked; ``gpu`` needs a CUDA ``device``. ``auto`` takes the GPU when
    ``device`` is CUDA and the cases fit in :data:`GPU_SHARE` of its free memory, else RAM when they fit in
    :data:`RAM_SHARE` of the available RAM, else disk. What the cases need is :func:`estimate`'s upper bound from the
    NIfTI headers times ``cache_rate``; entries that are not files (generated cases, :mod:`scripts.components.synthetic`, whose
    pool is ``pool_size`` cases) are not counted. Every training process on a machine caches every case, so RAM is
    shared by ``processes`` copies, each GPU holds one.

    Args:
        cache: ``auto``, ``gpu``, ``ram`` or ``disk`` (as the command line gives it).
        device: the training device.
        data: the datalist entries that will be cached (training and validation).
        pixdim: the training voxel size, mm.
        cache_rate: the share of the cases kept in memory.
        gpu_free, ram_free: free bytes to plan with; ``None`` measures them (:func:`free_gpu_bytes`,
            :func:`available_ram_bytes`).
        processes: training processes on this machine; ``None``: torchrun's ``LOCAL_WORLD_SIZE``, else 1.

    Stops the run with one line (:class:`scripts.lib.errors.InputError`) for another ``cache`` value, and for
    ``gpu`` without a CUDA device.
    """

    cache = str(cache).lower()
    if cache not in CACHE_CHOICES:
        raise ValueError(f"cache: {cache!r} is not one of {', '.join(CACHE_CHOICES)}")
    cuda = is_cuda(device)
    if cache == "gpu" and not cuda:
        raise ValueError(f"cache: gpu needs a CUDA device; this run trains on {device}")
    if cache != "auto":
        logger.info("cache: %s (as asked)", cache)
        return cache
    files = [item for item in data if isinstance(item.get("image"), str)]
    need = sum(row["bytes"] for row in estimate(files, pixdim, progress=False)) * float(cache_rate)
    if processes is None:
        processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    budgets = []  # (where, bytes one process may take)
    if cuda:
        budgets.append(("gpu", GPU_SHARE * (free_gpu_bytes(device) if gpu_free is None else gpu_free)))
    ram = RAM_SHARE * (available_ram_bytes() if ram_free is None else ram_free)
    budgets.append(("ram", ram / max(1, processes)))
    choice = next((where for where, budget in budgets if need <= budget), "disk")
    room = ", ".join(f"{where} {budget / 1e9:.1f} GB" for where, budget in budgets)
    logger.info(
        "cache: auto -> %s: %d case(s) need at most %.2f GB (cache_rate %g); room for one process's cache (%d on "
        "this machine): %s",
        choice,
        len(files),
        need / 1e9,
        float(cache_rate),
        processes,
        room,
    )
    return choice
