"""Read PyTorch state dicts into numpy without importing torch (and without running code).

Supported inputs:
- PyTorch zip checkpoints (`torch.save` since 1.6; `.pth`, `.pth.tar`): parsed with a
  restricted unpickler that rebuilds tensors from the archive's storage records and
  replaces any other class (optimizer state, settings objects) by an inert stub.
- `.npz` files holding the same state dict (`np.savez(path, **state_dict)`).
- Legacy (pre-zip) torch files, only when torch is installed (`pip install .[convert]`).
"""
from __future__ import annotations

import collections
import os
import pickle
import zipfile
from typing import Any

import numpy as np


class CheckpointError(ValueError):
    """A weight file that cannot be read or does not form the expected model."""


_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
    "BFloat16Storage": "bfloat16",
}


class _Stub:
    """Stands in for any class we do not need; accepts construction and state."""

    def __init__(self, *args, **kwargs):
        self.args = args

    def __setstate__(self, state):
        self.state = state


def _stub_class(module: str, name: str):
    return type(name, (_Stub,), {"__module__": f"stub.{module}"})


def _rebuild_tensor(storage, offset, size, stride, *unused):
    array, dtype = storage
    if not size:
        return array[offset:offset + 1].reshape(()).copy()
    itemsize = array.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(array[offset:], shape=tuple(size),
                                           strides=tuple(s * itemsize for s in stride))
    return np.array(view)


def _rebuild_parameter(data, *unused):
    return data


class _StateUnpickler(pickle.Unpickler):
    def __init__(self, file, archive: zipfile.ZipFile, prefix: str, path: str):
        super().__init__(file)
        self._archive, self._prefix, self._path = archive, prefix, path
        self._storages: dict[str, np.ndarray] = {}

    def find_class(self, module, name):
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch" and name in _STORAGE_DTYPES:
            return name
        return _stub_class(module, name)

    def persistent_load(self, pid):
        kind, storage_type, key, _location, _numel = pid
        if kind != "storage":
            raise CheckpointError(f"{self._path}: unsupported persistent record {kind!r}")
        if key not in self._storages:
            record = f"{self._prefix}/data/{key}"
            try:
                raw = self._archive.read(record)
            except KeyError as err:
                raise CheckpointError(f"{self._path}: storage record {record} missing (truncated file?)") from err
            dtype = _STORAGE_DTYPES.get(storage_type if isinstance(storage_type, str) else "", None)
            if dtype is None:
                raise CheckpointError(f"{self._path}: unsupported storage type {storage_type!r}")
            if dtype == "bfloat16":
                raw16 = np.frombuffer(raw, np.uint16).astype(np.uint32) << 16
                self._storages[key] = raw16.view(np.float32)
            else:
                self._storages[key] = np.frombuffer(raw, dtype)
        return self._storages[key], storage_type


def _load_torch_zip(path: str) -> Any:
    try:
        archive = zipfile.ZipFile(path)
        names = archive.namelist()
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({err})") from err
    pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
    if not pkl:
        raise CheckpointError(f"{path}: zip archive without data.pkl; not a PyTorch checkpoint")
    prefix = pkl[0][: -len("/data.pkl")] if "/" in pkl[0] else ""
    byteorder = f"{prefix}/byteorder"
    if byteorder in names and archive.read(byteorder).decode().strip() != "little":
        raise CheckpointError(f"{path}: big-endian checkpoints are not supported")
    try:
        with archive.open(pkl[0]) as f:
            return _StateUnpickler(f, archive, prefix, path).load()
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, EOFError, pickle.UnpicklingError, ValueError, OSError) as err:
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({err})") from err


def _load_with_torch(path: str) -> Any:
    try:
        import torch  # noqa: PLC0415  (optional dependency)
    except ImportError as err:
        raise CheckpointError(
            f"{path}: not a zip-format PyTorch checkpoint nor .npz; reading legacy torch files "
            "needs torch (pip install '.[convert]')") from err
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises many kinds
        raise CheckpointError(f"{path}: torch could not read it ({err})") from err
    return _tensors_to_numpy(obj)


def _tensors_to_numpy(obj):
    if hasattr(obj, "detach") and hasattr(obj, "numpy"):
        return obj.detach().cpu().float().numpy() if str(obj.dtype) == "torch.bfloat16" else obj.detach().cpu().numpy()
    if isinstance(obj, dict):
        return type(obj)((k, _tensors_to_numpy(v)) for k, v in obj.items()) if isinstance(obj, collections.OrderedDict) \
            else {k: _tensors_to_numpy(v) for k, v in obj.items()}
    return obj


def load_state_dict(path: str | os.PathLike, container_key: str | None = None) -> dict[str, np.ndarray]:
    """Returns {key: numpy array} from a .pth/.pth.tar/.npz file.

    container_key: the top-level entry holding the state dict ('net' for official GRM
    checkpoints, 'model' for MAE). When the file already is a flat state dict (e.g. .npz)
    it is returned as is.
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
    obj = _load_torch_zip(path) if zipfile.is_zipfile(path) else _load_with_torch(path)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict at the top level, found {type(obj).__name__}")
    if container_key is not None and container_key in obj:
        obj = obj[container_key]
    elif container_key is not None and not any(isinstance(v, np.ndarray) for v in obj.values()):
        raise CheckpointError(f"{path}: no {container_key!r} entry; top-level keys: {sorted(map(str, obj))[:20]}")
    state = {k: v for k, v in obj.items() if isinstance(v, np.ndarray)}
    if not state:
        raise CheckpointError(f"{path}: no tensors found")
    return state
