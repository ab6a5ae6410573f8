"""Read PyTorch state dicts into numpy without torch and without running code from the file.

Supported inputs (the format is recognised from the first bytes, never from the name):
- PyTorch zip checkpoints (``torch.save`` since 1.6; ``.pth``, ``.pth.tar``);
- legacy checkpoints (``_use_new_zipfile_serialization=False``, torch < 1.6): magic-number,
  protocol-version and sys-info pickles, the main pickle, the pickled list of storage keys, then
  per storage an int64 element count and the raw little-endian bytes;
- ``.npz`` files holding the same state dict (``np.savez(path, **state_dict)``), read with
  ``allow_pickle=False``.
Both torch formats go through the restricted unpickler of :mod:`convert_weights.torch_pickle`:
a global outside its allow-list is refused (CheckpointError naming the file and the global), and
every tensor is checked against its storage before any array is built.
"""
from __future__ import annotations

import os
import zipfile
import zlib
from typing import Any

import numpy as np

from convert_weights.torch_pickle import StorageRef, TensorRef, materialize, unpickle
from grm_jax.errors import CheckpointError

__all__ = ["CheckpointError", "load_state_dict", "read_checkpoint"]

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = b"\x80"


def _zip_storage_reader(archive: zipfile.ZipFile, prefix: str, path: str):
    cache: dict[str, np.ndarray] = {}

    def read(ref: StorageRef) -> np.ndarray:
        if ref.key not in cache:
            record = f"{prefix}data/{ref.key}"
            try:
                info = archive.getinfo(record)
            except KeyError as err:
                raise CheckpointError(f"{path}: storage record {record} missing (truncated file?)") from err
            nbytes = ref.numel * ref.type.dtype.itemsize
            if info.file_size != nbytes:
                raise CheckpointError(f"{path}: storage record {record} holds {info.file_size} bytes but is "
                                      f"declared as {ref.type.name} of {ref.numel} elements ({nbytes} bytes)")
            cache[ref.key] = np.frombuffer(archive.read(record), ref.type.dtype)
        return cache[ref.key]
    return read


def _read_zip(path: str, select) -> Any:
    try:
        archive = zipfile.ZipFile(path)
        names = archive.namelist()
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        raise CheckpointError(f"{path}: truncated or corrupt zip checkpoint ({err})",
                              hint="download or copy the file again") from err
    with archive:
        pkl = sorted(n for n in names if n == "data.pkl" or n.endswith("/data.pkl"))
        if not pkl:
            raise CheckpointError(f"{path}: zip archive without data.pkl; not a PyTorch checkpoint")
        prefix = pkl[0][: -len("data.pkl")]
        try:
            if f"{prefix}byteorder" in names and archive.read(f"{prefix}byteorder").strip() != b"little":
                raise CheckpointError(f"{path}: big-endian checkpoints are not supported")
            with archive.open(pkl[0]) as f:
                obj, _ = unpickle(f, path)
            return materialize(select(obj), _zip_storage_reader(archive, prefix, path), path)
        except (zipfile.BadZipFile, EOFError, OSError, zlib.error, NotImplementedError) as err:
            raise CheckpointError(f"{path}: truncated or corrupt zip checkpoint ({err})") from err


def _legacy_storage_offsets(f, path: str, keys, refs: dict[str, StorageRef]) -> dict[str, int]:
    """Walks the storage section: {key: file offset of its bytes}, checking every element count."""
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys) or sorted(keys) != sorted(refs):
        raise CheckpointError(f"{path}: the storage key list does not match the storages the tensors use")
    size, offsets = os.fstat(f.fileno()).st_size, {}
    for key in keys:
        ref = refs[key]
        header = f.read(8)
        if len(header) < 8:
            raise CheckpointError(f"{path}: truncated legacy checkpoint (storage {key!r} missing)")
        numel = int.from_bytes(header, "little", signed=True)
        if numel != ref.numel:
            raise CheckpointError(f"{path}: storage {key!r} holds {numel} elements but is declared as "
                                  f"{ref.type.name} of {ref.numel}")
        offsets[key] = f.tell()
        end = offsets[key] + numel * ref.type.dtype.itemsize
        if end > size:
            raise CheckpointError(f"{path}: truncated legacy checkpoint (storage {key!r} ends at byte "
                                  f"{end}, file has {size})")
        f.seek(end)
    return offsets


def _read_legacy(path: str, select) -> Any:
    with open(path, "rb") as f:
        magic, _ = unpickle(f, path)
        if magic != LEGACY_MAGIC:
            raise CheckpointError(f"{path}: not a PyTorch checkpoint (a pickle without torch's magic number)")
        version, _ = unpickle(f, path)
        if version != LEGACY_PROTOCOL:
            raise CheckpointError(f"{path}: unsupported legacy torch protocol version {version!r}")
        sys_info, _ = unpickle(f, path)
        if not isinstance(sys_info, dict) or sys_info.get("little_endian") is not True:
            raise CheckpointError(f"{path}: big-endian (or malformed) legacy checkpoint is not supported")
        obj, refs = unpickle(f, path, legacy=True)
        keys, _ = unpickle(f, path)
        offsets = _legacy_storage_offsets(f, path, keys, refs)

        def read(ref: StorageRef) -> np.ndarray:
            f.seek(offsets[ref.key])
            return np.frombuffer(f.read(ref.numel * ref.type.dtype.itemsize), ref.type.dtype)

        return materialize(select(obj), read, path)


def read_checkpoint(path: str, select=lambda obj: obj) -> Any:
    """Unpickles a torch zip or legacy checkpoint with the restricted unpickler.

    select(obj) -> the part whose tensors become numpy arrays (e.g. the state dict inside);
    other tensors are never read. Returns select(obj) with its tensors materialized.
    """
    with open(path, "rb") as f:
        head = f.read(4)
    if head == _ZIP_MAGIC:
        return _read_zip(path, select)
    if head[:1] == _PICKLE_PROTO:
        return _read_legacy(path, select)
    raise CheckpointError(f"{path}: not a PyTorch checkpoint (neither a torch zip archive nor a legacy "
                          "torch file)")


def _select_state(path: str, container_key: str | None):
    def select(obj):
        if not isinstance(obj, dict):
            raise CheckpointError(f"{path}: expected a dict at the top level, found {type(obj).__name__}")
        if container_key is not None and container_key in obj:
            return obj[container_key]
        if container_key is not None and not any(isinstance(v, TensorRef) for v in obj.values()):
            raise CheckpointError(f"{path}: no {container_key!r} entry; top-level keys: "
                                  f"{sorted(map(str, obj))[:20]}")
        return obj
    return select


def load_state_dict(path: str | os.PathLike, container_key: str | None = None) -> dict[str, np.ndarray]:
    """Returns {key: numpy array} from a .pth/.pth.tar/.npz file.

    container_key: the top-level entry holding the state dict ('net' for official GRM
    checkpoints, 'model' for MAE). When the file already is a flat state dict (e.g. .npz)
    it is returned as is. Raises CheckpointError naming the file for anything else.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"{path}: empty file")
    if path.endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
            raise CheckpointError(f"{path}: not a readable .npz state dict ({err})") from err
    obj = read_checkpoint(path, _select_state(path, container_key))
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: entry {container_key!r} is a {type(obj).__name__}, not a state dict")
    state = {k: v for k, v in obj.items() if isinstance(v, np.ndarray)}
    if not state:
        raise CheckpointError(f"{path}: no tensors found")
    return state
