"""Builds PyTorch checkpoint files for tests, with or without torch.

Without torch, ``write_zip`` / ``write_legacy`` emit the bytes torch itself writes
(``torch.save`` and ``torch.save(..., _use_new_zipfile_serialization=False)``): a protocol-2
pickle whose tensors are ``torch._utils._rebuild_tensor_v2`` calls on persistent storage records.
Objects in the saved tree:
  numpy array        -> a contiguous tensor on its own storage;
  Tensor(...)        -> a tensor record as written (any offset/size/stride, shared storages,
                        a storage whose declared element count lies);
  Payload(mod, name, args) -> ``mod.name(*args)`` called at load time by an unrestricted unpickler.
With torch installed, ``torch_save`` writes the same tree with torch itself.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import io
import os
import pickle
import zipfile

import numpy as np

try:  # torch is an optional extra; CI's venv does not have it
    import torch
except ImportError:  # pragma: no cover - depends on the environment
    torch = None

BUILDERS = ("hand", "torch") if torch is not None else ("hand",)

_STORAGE_NAMES = {
    np.dtype(np.float32): "FloatStorage", np.dtype(np.float64): "DoubleStorage",
    np.dtype(np.float16): "HalfStorage", np.dtype(np.int64): "LongStorage", np.dtype(np.int32): "IntStorage",
    np.dtype(np.int16): "ShortStorage", np.dtype(np.int8): "CharStorage", np.dtype(np.uint8): "ByteStorage",
    np.dtype(np.bool_): "BoolStorage",
}
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


@dataclasses.dataclass(eq=False)
class Storage:
    """Raw storage contents; ``storage_type`` defaults from the dtype (uint16 + 'BFloat16Storage'
    gives bfloat16); ``declared_numel`` overrides the element count written in the record."""
    data: np.ndarray
    storage_type: str | None = None
    declared_numel: int | None = None

    @property
    def type_name(self) -> str:
        return self.storage_type or _STORAGE_NAMES[self.data.dtype]

    @property
    def numel(self) -> int:
        return self.data.size if self.declared_numel is None else self.declared_numel


@dataclasses.dataclass(eq=False)
class Tensor:
    storage: Storage
    offset: int
    size: tuple
    stride: tuple


@dataclasses.dataclass(eq=False)
class Payload:
    module: str
    name: str
    args: tuple


@dataclasses.dataclass(frozen=True)
class _Global:
    module: str
    name: str

    def __call__(self):  # pickle's save_reduce insists on a callable
        raise NotImplementedError


def tensor_of(array: np.ndarray) -> Tensor:
    array = np.array(array, order="C")  # (np.ascontiguousarray would make a 0-d array 1-d)
    stride = tuple(s // array.itemsize for s in array.strides) if array.ndim else ()
    return Tensor(Storage(array.reshape(-1)), 0, tuple(array.shape), stride)


class _Writer(pickle._Pickler):
    """Pure-Python pickler that writes torch's globals without importing torch."""
    dispatch = dict(pickle._Pickler.dispatch)

    def __init__(self, file, legacy: bool):
        super().__init__(file, protocol=2)
        self.legacy, self.storages = legacy, {}

    def persistent_id(self, obj):
        if not isinstance(obj, Storage):
            return None
        key = self.storages.setdefault(id(obj), (str(len(self.storages)), obj))[0]
        record = ("storage", _Global("torch", obj.type_name), key, "cpu", obj.numel)
        return record + (None,) if self.legacy else record

    def _save_global(self, obj):
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())

    def _save_tensor(self, t):
        args = (t.storage, t.offset, tuple(t.size), tuple(t.stride), False, collections.OrderedDict())
        self.save_reduce(_Global("torch._utils", "_rebuild_tensor_v2"), args, obj=t)

    def _save_array(self, array):
        self._save_tensor(tensor_of(array))

    def _save_payload(self, p):
        self.save_reduce(_Global(p.module, p.name), tuple(p.args), obj=p)

    dispatch[_Global] = _save_global
    dispatch[Tensor] = _save_tensor
    dispatch[np.ndarray] = _save_array
    dispatch[Payload] = _save_payload


def _pickle(obj, legacy: bool) -> tuple[bytes, list[tuple[str, Storage]]]:
    buf = io.BytesIO()
    writer = _Writer(buf, legacy)
    writer.dump(obj)
    return buf.getvalue(), list(writer.storages.values())


def write_zip(path, obj, record_name: str = "archive") -> str:
    """torch.save's zip layout: <name>/data.pkl, <name>/byteorder, <name>/data/<key>, <name>/version."""
    data, storages = _pickle(obj, legacy=False)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{record_name}/data.pkl", data)
        z.writestr(f"{record_name}/byteorder", "little")
        for key, storage in storages:
            z.writestr(f"{record_name}/data/{key}", storage.data.tobytes())
        z.writestr(f"{record_name}/version", "3\n")
    return os.fspath(path)


def write_legacy(path, obj) -> str:
    """torch < 1.6 layout: magic, protocol 1001, sys_info, main pickle, storage keys, storages."""
    data, storages = _pickle(obj, legacy=True)
    sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
    with open(path, "wb") as f:
        for head in (LEGACY_MAGIC, 1001, sys_info):
            pickle.dump(head, f, protocol=2)
        f.write(data)
        pickle.dump([key for key, _ in storages], f, protocol=2)
        for _, storage in storages:
            f.write(np.int64(storage.data.size).tobytes())  # the true count (declared_numel lies in the record)
            f.write(storage.data.tobytes())
    return os.fspath(path)


class _TorchPayload:
    """What an attacker pickles with torch: an object whose __reduce__ names a function."""

    def __init__(self, payload: Payload):
        self.payload = payload

    def __reduce__(self):
        module = __import__(self.payload.module, fromlist=[self.payload.name])
        return getattr(module, self.payload.name), tuple(self.payload.args)


def _to_torch(obj):
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.array(obj))
    if isinstance(obj, Payload):
        return _TorchPayload(obj)
    if isinstance(obj, dict):
        return type(obj)((k, _to_torch(v)) for k, v in obj.items())
    if isinstance(obj, list):
        return [_to_torch(v) for v in obj]
    if isinstance(obj, argparse.Namespace):
        return argparse.Namespace(**_to_torch(vars(obj)))
    return obj


def torch_save(path, obj, legacy: bool) -> str:
    """The same tree written by torch itself (numpy arrays -> tensors)."""
    torch.save(_to_torch(obj), path, _use_new_zipfile_serialization=not legacy)
    return os.fspath(path)


def write(builder: str, fmt: str, path, obj) -> str:
    """builder 'hand' | 'torch', fmt 'zip' | 'legacy'."""
    if builder == "torch":
        return torch_save(path, obj, legacy=fmt == "legacy")
    return write_zip(path, obj) if fmt == "zip" else write_legacy(path, obj)
