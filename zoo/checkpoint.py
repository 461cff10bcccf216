"""HDF5 checkpoints with a sha256 manifest: the only way zoo weights are stored or loaded.

File layout (format version 1)::

    /                      attrs: format_version (int), name (str), config (JSON str),
                                  card (JSON str); integrity lives in the manifest.
    /params/<key>          one dataset per ``state_dict`` entry (dots kept in the name,
                           e.g. ``params/rnn.weight_hh``); float32, or float16 where the
                           card's ``storage_dtype`` says so.

``MANIFEST.json`` in the same folder maps each file name to its ``sha256``, ``size`` and
entry ``name``. Every load checks the manifest first, then the file's structure, so a
flipped byte, a truncated file or a missing tensor raises :class:`CheckpointError` naming the
file and the reason, before any weight reaches a model. Nothing is unpickled.

Writes are atomic: data go to a temporary file in the target folder, which is flushed,
fsync'ed and renamed over the target (``os.replace``), so a crash or a kill mid-write leaves
the previous file intact.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
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
        return json.loads(path.read_text())["files"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise CheckpointError(path, f"manifest is not valid JSON with a 'files' table ({err})") from err


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
    with open(path.parent / f".{MANIFEST}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        files = read_manifest(path.parent)
        files[path.name] = record
        _write_manifest(path.parent, files)
    return record


def verify(path: os.PathLike | str) -> dict[str, Any]:
    """Check ``path`` against its folder's manifest; return the manifest record or raise."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(path, "file does not exist")
    record = read_manifest(path.parent).get(path.name)
    if record is None:
        raise CheckpointError(path, f"not listed in {path.parent / MANIFEST}")
    size = path.stat().st_size
    if size != record["size"]:
        raise CheckpointError(path, f"size {size} bytes, manifest says {record['size']} (truncated or replaced)")
    digest = sha256_file(path)
    if digest != record["sha256"]:
        raise CheckpointError(path, f"sha256 {digest[:12]}... does not match the manifest's {record['sha256'][:12]}... (tampered or corrupt)")
    return record


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
    and size must match its folder's manifest before it is even opened.
    """
    path = Path(path)
    if check_manifest:
        verify(path)
    try:
        with h5py.File(path, "r") as f:
            version = int(f.attrs["format_version"])
            if version != FORMAT_VERSION:
                raise CheckpointError(path, f"format version {version}, this zoo reads {FORMAT_VERSION}")
            name = str(f.attrs["name"])
            config = json.loads(f.attrs["config"])
            card = json.loads(f.attrs["card"])
            arrays: dict[str, np.ndarray] = {}

            def collect(key: str, obj: Any) -> None:
                if isinstance(obj, h5py.Dataset):
                    arrays[key] = obj[()]

            f["params"].visititems(collect)
    except CheckpointError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as err:
        raise CheckpointError(path, f"unreadable HDF5 checkpoint ({type(err).__name__}: {err})") from None
    return name, config, card, arrays


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
