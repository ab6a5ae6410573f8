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

Resource bounds (a small file must not claim a large amount of memory or time):
* the unpickler is pickle's pure-Python one, whose memo is a dict (a memo index of 2**28 costs
  one entry, not a 4 GB table) and which never recurses; reads are capped to the bytes present;
* :func:`materialize` walks each container once (a "billion laughs" DAG of 40 levels costs 40
  steps), refuses nesting deeper than ``MAX_DEPTH`` and cycles, builds ONE array per distinct
  tensor layout (a tensor referenced 5,000 times is read once), checks the total element count of
  the tensors and of the storages they use against a limit BEFORE reading anything, and drops
  each storage as soon as its last tensor is built.
"""
from __future__ import annotations

import collections
import dataclasses
import io
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


class BoundedReader(io.RawIOBase):
    """Read-only view of ``file`` from its current position that never reads past ``limit`` bytes
    further: a length field claiming gigabytes makes a short read (then a clear error), never a
    gigabyte buffer."""

    def __init__(self, file, limit: int):
        super().__init__()
        self._file, self._left = file, max(0, int(limit))

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        size = self._left if size is None or size < 0 else min(size, self._left)
        data = self._file.read(size)
        self._left -= len(data)
        return data

    def readline(self, size: int = -1) -> bytes:
        size = self._left if size is None or size < 0 else min(size, self._left)
        data = self._file.readline(size)
        self._left -= len(data)
        return data


class RestrictedUnpickler(pickle._Unpickler):  # pure Python: dict memo, no recursion
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
        if (not isinstance(key, str) or "/" in key or key in ("", ".", "..") or type(numel) is not int
                or not 0 <= numel < MAX_INDEX):
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


# Limits on what a tensor record may say (far beyond any real model, far below an overflow).
MAX_NDIM = 32
MAX_INDEX = 1 << 48
# Deepest container nesting read from a checkpoint (a state dict is 1-3 levels deep).
MAX_DEPTH = 100


def _tensor_layout(ref: TensorRef, numel: int, where: str) -> tuple[int, tuple, tuple]:
    """Checks a tensor against its storage of ``numel`` elements; returns (offset, size, stride)."""
    offset, size, stride = ref.offset, ref.size, ref.stride
    if (type(offset) is not int or not isinstance(size, tuple) or not isinstance(stride, tuple)
            or len(size) != len(stride) or len(size) > MAX_NDIM
            or not all(type(v) is int for v in size + stride)):
        raise CheckpointError(f"{where}: malformed tensor record (offset {_short(offset)}, size {_short(size)}, "
                              f"stride {_short(stride)})")
    if offset < 0 or min(size + stride, default=0) < 0:
        raise CheckpointError(f"{where}: negative offset, size or stride (offset {offset}, size {size}, "
                              f"stride {stride})")
    if max((offset,) + size + stride) >= MAX_INDEX:
        raise CheckpointError(f"{where}: offset, size or stride out of range (offset {offset}, size {size}, "
                              f"stride {stride}; the limit is 2**48)")
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


def _short(value, limit: int = 80) -> str:
    text = repr(value) if not isinstance(value, (tuple, list)) or len(value) <= 8 else \
        f"<{type(value).__name__} of {len(value)} items>"
    return text if len(text) <= limit else text[:limit] + "..."


def tensor_to_array(ref: TensorRef, storage: np.ndarray, storage_type: StorageType, where: str) -> np.ndarray:
    """A checked copy of the tensor ``ref`` out of the 1-D ``storage`` (raw element dtype)."""
    offset, size, stride = _tensor_layout(ref, storage.size, where)
    if math.prod(size) == 0:
        out = np.zeros(size, storage.dtype)
    else:
        item = storage.dtype.itemsize
        strides = tuple(0 if n == 1 else s * item for n, s in zip(size, stride))  # unused when n == 1
        view = np.lib.stride_tricks.as_strided(storage[offset:], shape=size, strides=strides, writeable=False)
        out = np.array(view)
    if storage_type.name == "BFloat16Storage":
        out = (out.astype(np.uint32) << 16).view(np.float32)
    return out


@dataclasses.dataclass
class _Walk:
    """What :func:`_collect` found: each distinct tensor layout once, the storages they use."""
    layouts: dict = dataclasses.field(default_factory=dict)   # layout key -> (TensorRef, where)
    uses: collections.Counter = dataclasses.field(default_factory=collections.Counter)  # storage key -> layouts
    storages: dict = dataclasses.field(default_factory=dict)  # storage key -> StorageRef
    seen: set = dataclasses.field(default_factory=set)        # ids of containers walked
    active: set = dataclasses.field(default_factory=set)      # ids of containers on the current path


def _where(source: str, path: tuple) -> str:
    return f"{source}: tensor {'/'.join(map(str, path)) or '<root>'!r}"


def _layout_key(ref: TensorRef, where: str) -> tuple:
    if not isinstance(ref.storage, StorageRef):
        raise CheckpointError(f"{where}: its storage is {type(ref.storage).__name__}, not a storage record")
    offset, size, stride = _tensor_layout(ref, ref.storage.numel, where)
    return ref.storage.key, offset, size, stride


def tensor_shape(ref: Any, where: str) -> tuple[int, ...]:
    """The checked size of the tensor ``ref`` (CheckpointError naming ``where`` if malformed)."""
    if not isinstance(ref, TensorRef):
        raise CheckpointError(f"{where}: not a tensor record")
    return _layout_key(ref, where)[2]


def _collect(obj: Any, source: str, path: tuple, walk: _Walk) -> None:
    """Finds every tensor under ``obj`` (containers walked once each), checking its layout."""
    if isinstance(obj, TensorRef):
        where = _where(source, path)
        key = _layout_key(obj, where)
        if key not in walk.layouts:
            walk.layouts[key] = (obj, where)
            walk.uses[key[0]] += 1
            walk.storages[key[0]] = obj.storage
        return
    if not isinstance(obj, (dict, list, tuple)) or id(obj) in walk.seen:
        return
    if id(obj) in walk.active:
        raise CheckpointError(f"{source}: entry {'/'.join(map(str, path))!r} contains itself (a cyclic pickle)")
    if len(path) >= MAX_DEPTH:
        raise CheckpointError(f"{source}: containers nested more than {MAX_DEPTH} levels deep "
                              f"(at {'/'.join(map(str, path[:5]))}/...); not a state dict")
    walk.active.add(id(obj))
    items = obj.items() if isinstance(obj, dict) else enumerate(obj)
    for k, v in items:
        _collect(v, source, path + (k,), walk)
    walk.active.discard(id(obj))
    walk.seen.add(id(obj))


def _check_totals(walk: _Walk, source: str, max_elements: int | None, reason: str) -> None:
    """Refuses, before anything is read, distinct tensors (or the storages they use) holding more
    than ``max_elements`` elements in total (None: no limit)."""
    tensors = sum(math.prod(key[2]) for key in walk.layouts)
    storages = sum(ref.numel for ref in walk.storages.values())
    if max_elements is not None and max(tensors, storages) > max_elements:
        raise CheckpointError(f"{source}: its {len(walk.layouts)} distinct tensors hold {tensors} elements "
                              f"({storages} in their storages), more than the {max_elements} {reason}", hint="the file is not a plain checkpoint of this model (or is built "
                                                     "to exhaust memory)")


def materialize(obj: Any, read_storage: Callable[[StorageRef], np.ndarray], source: str,
                max_elements: int | None = None, reason: str = "allowed") -> Any:
    """Replaces every TensorRef inside dicts / lists / tuples of ``obj`` by a checked numpy array.

    read_storage(ref) -> the storage's elements as a 1-D array of ``ref.type.dtype`` (already
    checked to hold exactly ``ref.numel`` elements); it is called once per storage. Tensors with
    the same layout on the same storage become the same array; a container reached twice is built
    once. Errors name the tensor's key path. ``max_elements``: see :func:`_check_totals`; ``reason``
    says where that limit comes from (in the error message).
    """
    walk = _Walk()
    _collect(obj, source, (), walk)
    _check_totals(walk, source, max_elements, reason)
    storages: dict[str, np.ndarray] = {}
    arrays: dict[tuple, np.ndarray] = {}

    def array(ref: TensorRef, where: str) -> np.ndarray:
        key = _layout_key(ref, where)
        if key not in arrays:
            if key[0] not in storages:
                storages[key[0]] = read_storage(ref.storage)
            arrays[key] = tensor_to_array(ref, storages[key[0]], ref.storage.type, where)
            walk.uses[key[0]] -= 1
            if walk.uses[key[0]] == 0:  # its last tensor is built: free it now
                del storages[key[0]]
        return arrays[key]

    built: dict[int, Any] = {}

    def build(node: Any, path: tuple) -> Any:
        if isinstance(node, TensorRef):
            return array(node, _where(source, path))
        if not isinstance(node, (dict, list, tuple)):
            return node
        if id(node) not in built:
            if isinstance(node, dict):
                items = [(k, build(v, path + (k,))) for k, v in node.items()]
                out = collections.OrderedDict(items) if isinstance(node, collections.OrderedDict) else dict(items)
            else:
                out = type(node)(build(v, path + (i,)) for i, v in enumerate(node))
            built[id(node)] = out
        return built[id(node)]

    return build(obj, ())
