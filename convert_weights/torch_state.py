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

import dataclasses
import io
import math
import os
import zipfile
import zlib
from typing import Any, Callable, Optional

import numpy as np

from convert_weights.torch_pickle import BoundedReader, StorageRef, TensorRef, materialize, tensor_shape, unpickle
from grm_jax.errors import CheckpointError

__all__ = ["CheckpointError", "load_state_dict", "read_checkpoint"]

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = b"\x80"
# A checkpoint's pickle holds names and shapes only (about 150 bytes per tensor).
MAX_PICKLE_BYTES = 256 << 20
# Without a model to size them: at most 2**29 elements (2 GiB of float32; ViT-L has 0.3e9) are read.
DEFAULT_MAX_ELEMENTS = 1 << 29
# A compressed entry may inflate to at most this ratio (+ MAX_INFLATION_SLACK): weights barely
# compress (float32 noise: ~1.1x), so a 1000:1 entry of many megabytes is a decompression bomb.
# (torch.save itself never compresses.)
MAX_INFLATION, MAX_INFLATION_SLACK = 16, 1 << 20


def check_inflation(path: str, info: zipfile.ZipInfo) -> None:
    """CheckpointError when the zip entry ``info`` claims to inflate beyond MAX_INFLATION."""
    if info.file_size > MAX_INFLATION * info.compress_size + MAX_INFLATION_SLACK:
        raise CheckpointError(f"{path}: zip entry {info.filename} claims {info.file_size} bytes from "
                              f"{info.compress_size} compressed bytes (ratio over {MAX_INFLATION}); refusing a "
                              "decompression bomb", hint="re-save the weights uncompressed (torch.save does)")


def _zip_storage_reader(archive: zipfile.ZipFile, prefix: str, path: str):
    """read(ref) -> the storage's elements; checks the entry's size BEFORE inflating it."""
    def read(ref: StorageRef) -> np.ndarray:
        record = f"{prefix}data/{ref.key}"
        try:
            info = archive.getinfo(record)
        except KeyError as err:
            raise CheckpointError(f"{path}: storage record {record} missing (truncated file?)") from err
        nbytes = ref.numel * ref.type.dtype.itemsize
        if info.file_size != nbytes:
            raise CheckpointError(f"{path}: storage record {record} holds {info.file_size} bytes but is "
                                  f"declared as {ref.type.name} of {ref.numel} elements ({nbytes} bytes)")
        check_inflation(path, info)
        return np.frombuffer(archive.read(record), ref.type.dtype)
    return read


def check_zip_names(path: str, archive: zipfile.ZipFile) -> list[str]:
    """The archive's entry names; CheckpointError for a duplicate name or one that is not a plain
    relative path (absolute, backslash, '..' or empty component): such archives are ambiguous or
    hostile, whatever reads them."""
    names = archive.namelist()
    seen: set[str] = set()
    for name in names:
        parts = name.rstrip("/").split("/")
        if name.startswith("/") or "\\" in name or "\0" in name or any(p in ("", ".", "..") for p in parts):
            raise CheckpointError(f"{path}: zip entry {name!r} is not a plain relative path; refusing the archive")
        if name in seen:
            raise CheckpointError(f"{path}: zip entry {name!r} appears twice; refusing the ambiguous archive")
        seen.add(name)
    return names


def _open_zip(path: str, what: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        raise CheckpointError(f"{path}: truncated or corrupt {what} ({err})",
                              hint="download or copy the file again") from err


def _read_zip(path: str, select, limit) -> Any:
    with _open_zip(path, "zip checkpoint") as archive:
        names = check_zip_names(path, archive)
        pkl = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
        if len(pkl) != 1:
            raise CheckpointError(f"{path}: zip archive with {len(pkl)} data.pkl records; not a PyTorch checkpoint")
        prefix = pkl[0][: -len("data.pkl")]
        try:
            if f"{prefix}byteorder" in names and archive.read(f"{prefix}byteorder").strip() != b"little":
                raise CheckpointError(f"{path}: big-endian checkpoints are not supported")
            size = archive.getinfo(pkl[0]).file_size
            check_inflation(path, archive.getinfo(pkl[0]))
            if size > MAX_PICKLE_BYTES:
                raise CheckpointError(f"{path}: {pkl[0]} claims {size} bytes, more than the "
                                      f"{MAX_PICKLE_BYTES} a checkpoint's pickle may hold")
            obj, _ = unpickle(io.BytesIO(archive.read(pkl[0])), path)
            chosen = select(obj)
            return materialize(chosen, _zip_storage_reader(archive, prefix, path), path, *limit(chosen))
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


def _read_legacy(path: str, select, limit) -> Any:
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        magic, _ = unpickle(BoundedReader(f, size), path)
        if magic != LEGACY_MAGIC:
            raise CheckpointError(f"{path}: not a PyTorch checkpoint (a pickle without torch's magic number)")
        version, _ = unpickle(BoundedReader(f, size - f.tell()), path)
        if version != LEGACY_PROTOCOL:
            raise CheckpointError(f"{path}: unsupported legacy torch protocol version {version!r}")
        sys_info, _ = unpickle(BoundedReader(f, size - f.tell()), path)
        if not isinstance(sys_info, dict) or sys_info.get("little_endian") is not True:
            raise CheckpointError(f"{path}: big-endian (or malformed) legacy checkpoint is not supported")
        obj, refs = unpickle(BoundedReader(f, min(size - f.tell(), MAX_PICKLE_BYTES)), path, legacy=True)
        keys, _ = unpickle(BoundedReader(f, min(size - f.tell(), MAX_PICKLE_BYTES)), path)
        offsets = _legacy_storage_offsets(f, path, keys, refs)

        def read(ref: StorageRef) -> np.ndarray:
            f.seek(offsets[ref.key])
            return np.frombuffer(f.read(ref.numel * ref.type.dtype.itemsize), ref.type.dtype)

        chosen = select(obj)
        return materialize(chosen, read, path, *limit(chosen))


def read_checkpoint(path: str, select=lambda obj: obj, limit=lambda chosen: (DEFAULT_MAX_ELEMENTS, DEFAULT_LIMIT)) -> Any:
    """Unpickles a torch zip or legacy checkpoint with the restricted unpickler.

    select(obj) -> the part whose tensors become numpy arrays (e.g. the state dict inside);
    other tensors are never read. limit(selected) -> (the most elements its tensors and the
    storages they use may hold, checked before any is read; where that limit comes from). Returns select(obj) with its tensors
    materialized.
    """
    with open(path, "rb") as f:
        head = f.read(4)
    try:
        if head == _ZIP_MAGIC:
            return _read_zip(path, select, limit)
        if head[:1] == _PICKLE_PROTO:
            return _read_legacy(path, select, limit)
    except RecursionError:  # e.g. the repr of a key nested 100,000 levels deep
        raise CheckpointError(f"{path}: objects nested too deeply to be a checkpoint") from None
    raise CheckpointError(f"{path}: not a PyTorch checkpoint (neither a torch zip archive nor a legacy "
                          "torch file)")


def _short_key(key) -> str:
    text = repr(key)
    return text if len(text) <= 60 else text[:60] + "..."


def _select_state(path: str, container_key: str | None):
    """select(obj) -> {key: TensorRef}: the top-level tensors of the state dict inside ``obj``."""
    def select(obj):
        if not isinstance(obj, dict):
            raise CheckpointError(f"{path}: expected a dict at the top level, found {type(obj).__name__}")
        if container_key is not None and container_key in obj:
            obj = obj[container_key]
        elif container_key is not None and not any(isinstance(v, TensorRef) for v in obj.values()):
            raise CheckpointError(f"{path}: no {container_key!r} entry; top-level keys: "
                                  f"{sorted(k[:60] if isinstance(k, str) else _short_key(k) for k in obj)[:20]}")
        if not isinstance(obj, dict):
            raise CheckpointError(f"{path}: entry {container_key!r} is a {type(obj).__name__}, not a state dict")
        for key in obj:
            if not isinstance(key, str):
                raise CheckpointError(f"{path}: state dict key {_short_key(key)} is a {type(key).__name__}, "
                                      "not a string; not a PyTorch state dict")
        return {k: v for k, v in obj.items() if isinstance(v, TensorRef)}
    return select


# plan(shapes) -> (keys to read or None for all, most elements they may hold or None for the default).
Plan = Callable[[dict[str, tuple[int, ...]]], tuple[Optional[set], Optional[int]]]


MODEL_LIMIT = "that the model they describe needs"
DEFAULT_LIMIT = "that a checkpoint read without a model may hold (2**29)"


def _apply_plan(path: str, shapes: dict[str, tuple], plan: Plan | None) -> tuple[set, int, str]:
    """(keys to read, most elements they may hold, where that limit comes from)."""
    keys, limit = plan(shapes) if plan is not None else (None, None)
    keys = set(shapes) if keys is None else set(keys) & set(shapes)
    return (keys, DEFAULT_MAX_ELEMENTS, DEFAULT_LIMIT) if limit is None else (keys, limit, MODEL_LIMIT)


def _torch_state(path: str, container_key: str | None, plan: Plan | None) -> dict:
    chosen: dict = {}

    def select(obj):
        refs = _select_state(path, container_key)(obj)
        shapes = {k: tensor_shape(ref, f"{path}: tensor {k!r}") for k, ref in refs.items()}
        keys, *chosen["limit"] = _apply_plan(path, shapes, plan)
        return {k: v for k, v in refs.items() if k in keys}
    return read_checkpoint(path, select, lambda _: chosen["limit"])


_NPY_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def _npz_state(path: str, plan: Plan | None) -> dict[str, np.ndarray]:
    """Reads ``np.savez`` state dicts member by member: headers (shapes) first, then only the
    planned members, each checked to be no larger than its header says before it is inflated."""
    with open(path, "rb") as f:
        if f.read(4) != _ZIP_MAGIC:
            raise CheckpointError(f"{path}: not a .npz archive (no zip signature); the file is damaged or "
                                  "of another format")
    with _open_zip(path, ".npz state dict") as archive:
        try:
            headers = {}
            for name in check_zip_names(path, archive):
                if not name.endswith(".npy"):
                    raise CheckpointError(f"{path}: member {name!r} is not a .npy array")
                with archive.open(name) as fh:
                    version = np.lib.format.read_magic(fh)
                    read_header = _NPY_HEADERS.get(version)
                    if read_header is None:
                        raise CheckpointError(f"{path}: member {name!r} has .npy format version {version}")
                    shape, _, dtype = read_header(fh)
                    headers[name[:-4]] = (shape, dtype, fh.tell(), archive.getinfo(name).file_size)
            keys, limit, reason = _apply_plan(path, {k: h[0] for k, h in headers.items()}, plan)
            total = sum(math.prod(headers[k][0]) for k in keys)
            if total > limit:
                raise CheckpointError(f"{path}: its arrays hold {total} elements, more than the {limit} {reason}")
            state = {}
            for key in sorted(keys):
                shape, dtype, offset, size = headers[key]
                if dtype.hasobject or size != offset + math.prod(shape) * dtype.itemsize:
                    raise CheckpointError(f"{path}: member {key}.npy holds {size - offset} data bytes, not the "
                                          f"{math.prod(shape) * dtype.itemsize} of its {dtype} header {shape}")
                check_inflation(path, archive.getinfo(f"{key}.npy"))
                with archive.open(f"{key}.npy") as fh:
                    state[key] = np.lib.format.read_array(fh, allow_pickle=False)
            return state
        except (zipfile.BadZipFile, ValueError, OSError, EOFError, zlib.error) as err:
            if isinstance(err, CheckpointError):
                raise
            raise CheckpointError(f"{path}: damaged .npz state dict ({type(err).__name__}: {err})",
                                  hint="download or copy the file again") from err


def load_state_dict(path: str | os.PathLike, container_key: str | None = None,
                    plan: Plan | None = None) -> dict[str, np.ndarray]:
    """Returns {key: numpy array} from a .pth/.pth.tar/.npz file.

    container_key: the top-level entry holding the state dict ('net' for official GRM
    checkpoints, 'model' for MAE). When the file already is a flat state dict (e.g. .npz)
    it is returned as is. plan({key: shape}) -> (keys to read, most elements they may hold),
    called before any tensor is read (see convert_weights.grm / .mae); None reads every tensor up
    to DEFAULT_MAX_ELEMENTS. Raises CheckpointError naming the file for anything else.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file (or not a regular file)")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"{path}: empty file")
    if path.endswith(".npz"):
        state = _npz_state(path, plan)
    else:
        state = _torch_state(path, container_key, plan)
    if not state:
        raise CheckpointError(f"{path}: no tensors found")
    return state
