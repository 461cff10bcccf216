"""HDF5 checkpoints with a sha256 manifest: the only way zoo weights are stored or loaded.

File layout (format version 1)::

    /                      attrs: format_version (int), name (str), config (JSON str),
                                  card (JSON str); integrity lives in the manifest.
    /params/<key>          one dataset per ``state_dict`` entry (dots kept in the name,
                           e.g. ``params/rnn.weight_hh``); float32, or float16 where the
                           card's ``storage_dtype`` says so.

``MANIFEST.json`` in the same folder maps each file name to its ``sha256``, ``size`` and
entry ``name``. Every load reads the file's bytes once, checks them against the manifest and
opens the HDF5 structure from those same bytes in memory (so nothing can change between the
check and the read), then checks the structure: a flipped byte, a truncated file, a missing
tensor, or a dataset whose data live outside the file (HDF5 external storage, virtual datasets,
external or soft links, which the sha256 would not cover) raises :class:`CheckpointError` naming
the file and the reason, before any weight reaches a model. Nothing is unpickled.

Writes are atomic: data go to a temporary file in the target folder, which is flushed,
fsync'ed and renamed over the target (``os.replace``), so a crash or a kill mid-write leaves
the previous file intact.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np
import torch

FORMAT_VERSION = 1
MANIFEST = "MANIFEST.json"


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, tampered with, truncated, incomplete or of the wrong shape."""

    def __init__(self, path: os.PathLike | str, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"checkpoint {self.path}: {reason}")

    def __reduce__(self):  # picklable (it crosses process boundaries in `zoo figures --jobs`)
        return type(self), (self.path, self.reason)


def checkpoint_dir() -> Path:
    """The folder of shipped checkpoints: ``$ZOO_CHECKPOINT_DIR``, else ``zoo/checkpoints`` (package data,
    so the shipped weights travel with an installed wheel as well as with a clone)."""
    env = os.environ.get("ZOO_CHECKPOINT_DIR")
    return Path(env) if env else Path(__file__).resolve().parent / "checkpoints"


def file_name(entry_name: str) -> str:
    """``"sentiment-imdb/gru"`` -> ``"sentiment-imdb__gru.h5"`` (one flat folder, no nesting)."""
    return entry_name.replace("/", "__") + ".h5"


def sha256_file(path: os.PathLike | str, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def file_lock(lock: os.PathLike | str) -> Iterator[None]:
    """An exclusive ``flock`` on the file ``lock`` (created, with its folder, if needed) for the
    block, released on exit, even on a crash: processes sharing a manifest, a results cache or a
    data cache take turns."""
    lock = Path(lock)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


@contextlib.contextmanager
def atomic_path(target: os.PathLike | str) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success fsync and rename it over ``target``.

    On any exception the temporary file is removed and ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file ordinary permissions
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
        with contextlib.suppress(OSError):  # make the rename itself durable
            dir_fd = os.open(target.parent, os.O_RDONLY)
            os.fsync(dir_fd)
            os.close(dir_fd)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(target: os.PathLike | str, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


# ----------------------------------------------------------------------------- manifest


def read_manifest(folder: os.PathLike | str | None = None) -> dict[str, dict[str, Any]]:
    """``{file_name: {"sha256", "size", "name"}}``; empty when the folder has no manifest."""
    path = Path(folder or checkpoint_dir()) / MANIFEST
    if not path.exists():
        return {}
    try:
        files = json.loads(path.read_text())["files"]
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise CheckpointError(path, f"manifest is not valid JSON with a 'files' table ({err})") from err
    if not isinstance(files, dict):
        raise CheckpointError(path, "manifest's 'files' is not a table of file name -> record")
    for file, record in files.items():
        if not (isinstance(record, dict) and isinstance(record.get("sha256"), str) and len(record["sha256"]) == 64
                and isinstance(record.get("size"), int) and isinstance(record.get("name"), str)):
            raise CheckpointError(path, f"manifest record for {file!r} must be {{'name': str, 'sha256': 64 hex digits, "
                                        f"'size': int}}, got {record!r}"[:300])
    return files


def _write_manifest(folder: Path, files: dict[str, dict[str, Any]]) -> None:
    doc = {"format_version": FORMAT_VERSION, "files": dict(sorted(files.items()))}
    write_text_atomic(folder / MANIFEST, json.dumps(doc, indent=2) + "\n")


def record_in_manifest(path: os.PathLike | str, entry_name: str) -> dict[str, Any]:
    """Add or update ``path``'s sha256 and size in its folder's manifest; return the record.

    The read-modify-write holds an exclusive ``flock`` on ``.MANIFEST.lock``, so training runs
    that finish at the same time do not lose each other's records.
    """
    path = Path(path)
    record = {"name": entry_name, "sha256": sha256_file(path), "size": path.stat().st_size}
    with file_lock(path.parent / f".{MANIFEST}.lock"):
        files = read_manifest(path.parent)
        files[path.name] = record
        _write_manifest(path.parent, files)
    return record


def verified_bytes(path: os.PathLike | str) -> tuple[bytes, dict[str, Any]]:
    """Read ``path`` once and check its bytes against its folder's manifest: ``(bytes, record)``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "file does not exist")
    record = read_manifest(path.parent).get(path.name)
    if record is None:
        raise CheckpointError(path, f"not listed in {path.parent / MANIFEST}")
    data = path.read_bytes()
    if len(data) != record["size"]:
        raise CheckpointError(path, f"size {len(data)} bytes, manifest says {record['size']} (truncated or replaced)")
    digest = hashlib.sha256(data).hexdigest()
    if digest != record["sha256"]:
        raise CheckpointError(path, f"sha256 {digest[:12]}... does not match the manifest's {record['sha256'][:12]}... "
                                    "(tampered or corrupt)")
    return data, record


def verify(path: os.PathLike | str) -> dict[str, Any]:
    """Check ``path`` against its folder's manifest; return the manifest record or raise."""
    return verified_bytes(path)[1]


# ----------------------------------------------------------------------------- read / write


def save(
    path: os.PathLike | str,
    *,
    name: str,
    state_dict: dict[str, torch.Tensor],
    config: dict[str, Any],
    card: dict[str, Any],
    storage_dtype: str = "float32",
    update_manifest: bool = True,
) -> Path:
    """Write one entry's weights, builder config and card to ``path`` atomically.

    ``storage_dtype`` ("float32" or "float16") applies to floating-point tensors only;
    integer buffers keep their dtype. The card records the storage dtype.
    """
    path = Path(path)
    if storage_dtype not in ("float32", "float16"):
        raise ValueError(f"storage_dtype must be 'float32' or 'float16', not {storage_dtype!r}")
    card = {**card, "storage_dtype": storage_dtype}
    with atomic_path(path) as tmp:
        # libver="latest" allows attributes larger than 64 KiB (configs that carry a vocabulary).
        with h5py.File(tmp, "w", libver="latest") as f:
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["name"] = name
            f.attrs["config"] = json.dumps(config)
            f.attrs["card"] = json.dumps(card)
            group = f.create_group("params")
            for key, tensor in state_dict.items():
                array = tensor.detach().cpu().numpy()
                if array.dtype.kind == "f":
                    array = array.astype(storage_dtype)
                group.create_dataset(key, data=array)
    if update_manifest:
        record_in_manifest(path, name)
    return path


def load(path: os.PathLike | str, *, check_manifest: bool = True) -> tuple[str, dict, dict, dict[str, np.ndarray]]:
    """Read a checkpoint: ``(name, config, card, arrays)``. Raises :class:`CheckpointError`.

    With ``check_manifest`` (the default, and always for shipped entries) the file's sha256
    and size must match its folder's manifest, and the HDF5 file is opened from the verified
    bytes in memory, never from the path again.
    """
    path = Path(path)
    data = verified_bytes(path)[0] if check_manifest else path.read_bytes()
    try:
        with h5py.File(io.BytesIO(data), "r") as f:
            version = int(f.attrs["format_version"])
            if version != FORMAT_VERSION:
                raise CheckpointError(path, f"format version {version}, this zoo reads {FORMAT_VERSION}")
            name = str(f.attrs["name"])
            config = json.loads(f.attrs["config"])
            card = json.loads(f.attrs["card"])
            if not isinstance(config, dict) or not isinstance(card, dict):
                raise CheckpointError(path, "attributes 'config' and 'card' must be JSON objects")
            arrays = _read_params(f, path)
    except CheckpointError:
        raise
    except (OSError, KeyError, ValueError, TypeError, AttributeError) as err:
        raise CheckpointError(path, f"unreadable HDF5 checkpoint ({type(err).__name__}: {err})") from None
    return name, config, card, arrays


def _read_params(f: h5py.File, path: Path) -> dict[str, np.ndarray]:
    """Every dataset under ``/params``, refusing anything whose bytes could live outside the file."""
    group = f.get("params", getlink=True)
    if not isinstance(group, h5py.HardLink) or not isinstance(f["params"], h5py.Group):
        raise CheckpointError(path, "'/params' must be a group of datasets in the file itself")
    arrays: dict[str, np.ndarray] = {}

    def walk(node: h5py.Group, prefix: str) -> None:
        for key in node:
            link = node.get(key, getlink=True)
            where = f"params/{prefix}{key}"
            if not isinstance(link, h5py.HardLink):
                raise CheckpointError(path, f"{where} is a {type(link).__name__}; only data stored in the file are accepted")
            obj = node[key]
            if isinstance(obj, h5py.Group):
                walk(obj, f"{prefix}{key}/")
                continue
            if obj.is_virtual or obj.external:
                kind = "a virtual dataset" if obj.is_virtual else "stored in an external file"
                raise CheckpointError(path, f"{where} is {kind}, outside the sha256 check; refused")
            if obj.dtype.kind not in "fiub":
                raise CheckpointError(path, f"{where} has dtype {obj.dtype}; only numeric tensors are accepted")
            arrays[f"{prefix}{key}"] = obj[()]

    walk(f["params"], "")
    return arrays


def refuse_shipped(path: os.PathLike | str) -> None:
    """Raise ``ValueError`` if ``path`` lies in the shipped set (``checkpoint_dir()``, or the package's
    own ``zoo/checkpoints`` when ``ZOO_CHECKPOINT_DIR`` points elsewhere)."""
    folder = Path(path).resolve().parent
    if folder in (checkpoint_dir().resolve(), (Path(__file__).parent / "checkpoints").resolve()):
        raise ValueError(f"{path} is a shipped checkpoint; rewrite the training run's file, then `zoo export --replace`")


def replace_card(path: os.PathLike | str, card: dict[str, Any]) -> Path:
    """Rewrite the card of the verified run checkpoint ``path`` (weights and config unchanged,
    stored bytes for bytes in their dtype), atomically, and update the manifest beside it.

    Shipped checkpoints are refused: rewrite the run's file and export it with ``--replace``. As with
    :func:`save`, a crash between the file's rename and the manifest's update leaves a file that
    fails verification (never a half-written one); rerun to repair it."""
    path = Path(path)
    refuse_shipped(path)
    name, config, old, arrays = load(path)
    if card.get("name", name) != name:
        raise ValueError(f"{path} holds {name}; the new card is for {card.get('name')!r}")
    storage = old.get("storage_dtype", "float32")
    state = {k: torch.from_numpy(np.asarray(v)) for k, v in arrays.items()}
    if any(v.is_floating_point() and str(v.dtype).removeprefix("torch.") != storage for v in state.values()):
        raise CheckpointError(path, f"holds float tensors that are not {storage}; refusing to convert them")
    return save(path, name=name, state_dict=state, config=config, card=card, storage_dtype=storage)


def export(source: os.PathLike | str, folder: os.PathLike | str | None = None, *, replace: bool = False) -> Path:
    """Promote a verified run checkpoint ``source`` into ``folder`` (default: the shipped set).

    ``source`` must match its own folder's manifest (``zoo train`` writes one into the run folder).
    An existing file for the same entry is replaced only with ``replace=True``; the copy is atomic
    and the target manifest is updated under its lock. Returns the new path.
    """
    source = Path(source)
    name, _, _, _ = load(source)
    folder = Path(folder) if folder is not None else checkpoint_dir()
    target = folder / file_name(name)
    if target.resolve() == source.resolve():
        raise ValueError(f"{source} is already in {folder}")
    if target.exists() and not replace:
        raise FileExistsError(f"{target} exists (entry {name}); pass --replace to overwrite the shipped weights")
    data = verified_bytes(source)[0]
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    record_in_manifest(target, name)
    return target


def state_dict_into(model: torch.nn.Module, arrays: dict[str, np.ndarray], path: os.PathLike | str) -> None:
    """Copy ``arrays`` into ``model`` all-or-nothing: every key present, every shape equal."""
    own = model.state_dict()
    missing = sorted(set(own) - set(arrays))
    extra = sorted(set(arrays) - set(own))
    if missing:
        raise CheckpointError(path, f"missing tensors: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    if extra:
        raise CheckpointError(path, f"unexpected tensors: {', '.join(extra[:5])}")
    converted = {}
    for key, target in own.items():
        array = arrays[key]
        if tuple(array.shape) != tuple(target.shape):
            raise CheckpointError(path, f"tensor {key} has shape {tuple(array.shape)}, model expects {tuple(target.shape)}")
        if not np.all(np.isfinite(array)) and array.dtype.kind == "f":
            raise CheckpointError(path, f"tensor {key} holds NaN or inf")
        converted[key] = torch.from_numpy(np.ascontiguousarray(array)).to(target.dtype)
    model.load_state_dict(converted, strict=True)
