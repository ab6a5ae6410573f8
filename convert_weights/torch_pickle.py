"""The restricted unpickler shared by both PyTorch file formats (zip and legacy), torch-free.

Nothing from a checkpoint is ever executed. ``find_class`` resolves a fixed allow-list:

* the tensor rebuild functions (``torch._utils._rebuild_tensor[_v2]``,
  ``_rebuild_parameter[_with_state]``) and ``collections.OrderedDict``: our own inert versions;
* the typed storage classes (``torch.FloatStorage`` ...): markers giving the element dtype;
* a few bookkeeping classes that official training checkpoints carry next to the weights
  (``INERT_GLOBALS``: settings, statistics, ``torch.device``, numpy scalars): inert stubs that only
  record their arguments.

Any other global is refused with a CheckpointError naming the file and the global. Tensors come
out of the pickle as :class:`TensorRef` placeholders; :func:`materialize` turns them into numpy
arrays only after checking size, stride and offset against the storage they point into.
"""
from __future__ import annotations

import collections
import dataclasses
import math
import pickle
from typing import Any, Callable

import numpy as np

from grm_jax.errors import CheckpointError

# Storage class name -> numpy dtype of one element. bfloat16 is read as uint16 and widened to
# float32 after the strided copy (numpy has no bfloat16).
STORAGE_DTYPES: dict[str, np.dtype] = {
    name: np.dtype(dtype) for name, dtype in {
        "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
        "BFloat16Storage": np.uint16, "LongStorage": np.int64, "IntStorage": np.int32,
        "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
        "BoolStorage": np.bool_,
    }.items()}

# Bookkeeping objects of official (OSTrack-style) training checkpoints; they become inert stubs.
INERT_GLOBALS = frozenset({
    ("torch", "device"), ("argparse", "Namespace"), ("easydict", "EasyDict"),
    ("lib.train.admin.settings", "Settings"), ("lib.train.admin.local", "EnvironmentSettings"),
    ("lib.train.admin.stats", "AverageMeter"), ("lib.train.admin.stats", "StatValue"),
    ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),
})

REFUSAL_HINT = ("a checkpoint may hold only tensors, state dicts and plain values; if you trust this "
                "file, load it with torch and re-save only its state dict, e.g. "
                "torch.save({'net': state_dict}, 'clean.pth')")


@dataclasses.dataclass(frozen=True)
class StorageType:
    """Marker for an allow-listed storage class (``torch.<name>``)."""
    name: str

    @property
    def dtype(self) -> np.dtype:
        return STORAGE_DTYPES[self.name]


@dataclasses.dataclass(frozen=True)
class StorageRef:
    """A storage record: ``key`` names its bytes (zip member ``data/<key>`` or legacy section)."""
    key: str
    type: StorageType
    numel: int


@dataclasses.dataclass(frozen=True)
class TensorRef:
    """A tensor as pickled: unchecked offset/size/stride (in elements) into ``storage``."""
    storage: Any
    offset: Any
    size: Any
    stride: Any


class _Stub:
    """Stands in for an allow-listed bookkeeping class; accepts construction and state."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state):
        self.state = state


_STUBS: dict[tuple[str, str], type] = {}


def _stub_class(module: str, name: str) -> type:
    if (module, name) not in _STUBS:
        _STUBS[module, name] = type(name, (_Stub,), {"__module__": f"inert.{module}"})
    return _STUBS[module, name]


def _rebuild_tensor(storage, offset, size, stride, *_unused):
    return TensorRef(storage, offset, size, stride)


def _rebuild_parameter(data, *_unused):
    return data


_FUNCTIONS: dict[tuple[str, str], Callable] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles one pickle of a checkpoint; storages become :class:`StorageRef` (``self.storages``).

    ``legacy``: persistent ids carry a sixth element (storage view metadata, must be None).
    """

    def __init__(self, file, source: str, legacy: bool = False):
        super().__init__(file)
        self._source, self._legacy = source, legacy
        self.storages: dict[str, StorageRef] = {}

    def find_class(self, module, name):
        if (module, name) in _FUNCTIONS:
            return _FUNCTIONS[module, name]
        if module == "torch" and name in STORAGE_DTYPES:
            return StorageType(name)
        if (module, name) in INERT_GLOBALS:
            return _stub_class(module, name)
        raise CheckpointError(f"{self._source}: refusing to load: global '{module}.{name}' is not "
                              "allowed in a checkpoint", hint=REFUSAL_HINT)

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or not pid:
            raise CheckpointError(f"{self._source}: malformed persistent record {pid!r}")
        kind = pid[0].decode("ascii", "replace") if isinstance(pid[0], bytes) else pid[0]
        if kind != "storage":
            raise CheckpointError(f"{self._source}: refusing to load: persistent record {kind!r} "
                                  "(only tensor storages are allowed)", hint=REFUSAL_HINT)
        if len(pid) != (6 if self._legacy else 5):
            raise CheckpointError(f"{self._source}: malformed storage record {pid!r}")
        _, storage_type, key, _location, numel = pid[:5]
        if self._legacy and pid[5] is not None:
            raise CheckpointError(f"{self._source}: storage views (files of torch < 0.4) are not supported")
        if not isinstance(storage_type, StorageType):
            raise CheckpointError(f"{self._source}: unsupported storage type {storage_type!r}")
        if not isinstance(key, str) or type(numel) is not int or numel < 0:
            raise CheckpointError(f"{self._source}: malformed storage record {pid!r}")
        ref = StorageRef(key, storage_type, numel)
        known = self.storages.setdefault(key, ref)
        if known != ref:
            raise CheckpointError(f"{self._source}: storage {key!r} is declared twice, as "
                                  f"{known.type.name}[{known.numel}] and {ref.type.name}[{ref.numel}]")
        return ref


def unpickle(file, source: str, legacy: bool = False) -> tuple[Any, dict[str, StorageRef]]:
    """(object, {storage key: StorageRef}) from the next pickle in ``file``.

    Any failure (corrupt bytes, a refused global, bad arguments) is a CheckpointError.
    """
    unpickler = RestrictedUnpickler(file, source, legacy)
    try:
        return unpickler.load(), unpickler.storages
    except CheckpointError:
        raise
    except Exception as err:  # whatever the pickle machinery raises on corrupt bytes
        raise CheckpointError(f"{source}: corrupt or truncated checkpoint "
                              f"({type(err).__name__}: {err})") from err


def _tensor_layout(ref: TensorRef, numel: int, where: str) -> tuple[int, tuple, tuple]:
    """Checks a tensor against its storage of ``numel`` elements; returns (offset, size, stride)."""
    offset, size, stride = ref.offset, ref.size, ref.stride
    if (type(offset) is not int or not isinstance(size, tuple) or not isinstance(stride, tuple)
            or len(size) != len(stride) or not all(type(v) is int for v in size + stride)):
        raise CheckpointError(f"{where}: malformed tensor record (offset {offset!r}, size {size!r}, "
                              f"stride {stride!r})")
    if offset < 0 or min(size + stride, default=0) < 0:
        raise CheckpointError(f"{where}: negative offset, size or stride (offset {offset}, size {size}, "
                              f"stride {stride})")
    count = math.prod(size)
    if count == 0:
        if offset > numel:
            raise CheckpointError(f"{where}: offset {offset} lies outside its storage of {numel} elements")
        return offset, size, stride
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= numel or count > numel:
        raise CheckpointError(f"{where}: tensor of size {size}, stride {stride}, offset {offset} needs "
                              f"{max(last + 1, count)} elements but its storage holds {numel}")
    return offset, size, stride


def tensor_to_array(ref: TensorRef, storage: np.ndarray, storage_type: StorageType, where: str) -> np.ndarray:
    """A checked copy of the tensor ``ref`` out of the 1-D ``storage`` (raw element dtype)."""
    offset, size, stride = _tensor_layout(ref, storage.size, where)
    if math.prod(size) == 0:
        out = np.zeros(size, storage.dtype)
    else:
        item = storage.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(storage[offset:], shape=size,
                                               strides=tuple(s * item for s in stride), writeable=False)
        out = np.array(view)
    if storage_type.name == "BFloat16Storage":
        out = (out.astype(np.uint32) << 16).view(np.float32)
    return out


def materialize(obj: Any, read_storage: Callable[[StorageRef], np.ndarray], source: str,
                path: tuple = ()) -> Any:
    """Replaces every TensorRef inside dicts / lists / tuples of ``obj`` by a checked numpy array.

    read_storage(ref) -> the storage's elements as a 1-D array of ``ref.type.dtype`` (already
    checked to hold exactly ``ref.numel`` elements). Errors name the tensor's key path.
    """
    if isinstance(obj, TensorRef):
        where = f"{source}: tensor {'/'.join(map(str, path)) or '<root>'!r}"
        if not isinstance(obj.storage, StorageRef):
            raise CheckpointError(f"{where}: its storage is {type(obj.storage).__name__}, not a storage record")
        return tensor_to_array(obj, read_storage(obj.storage), obj.storage.type, where)
    if isinstance(obj, dict):
        items = [(k, materialize(v, read_storage, source, path + (k,))) for k, v in obj.items()]
        return collections.OrderedDict(items) if isinstance(obj, collections.OrderedDict) else dict(items)
    if isinstance(obj, (list, tuple)):
        return type(obj)(materialize(v, read_storage, source, path + (i,)) for i, v in enumerate(obj))
    return obj
