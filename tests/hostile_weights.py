"""Hostile weights files for tests, built by hand (no torch): raw pickle opcodes in torch's zip
layout, zip archives with lying headers, and the .npz damage cases.

Every builder returns the path it wrote. ``grm_state()`` is the tiny fixture's state dict.
"""
from __future__ import annotations

import collections
import struct
import zipfile

import numpy as np

from conftest import FIXTURES
from torch_files import Storage, Tensor, write_zip

GRM_NPZ = FIXTURES / "grm_tiny" / "state_dict.npz"
PROTO, STOP = b"\x80\x02", b"."


def grm_state() -> collections.OrderedDict:
    return collections.OrderedDict(np.load(GRM_NPZ))


# Raw pickle pieces (protocol 2) ------------------------------------------------------------------
def p_str(text: str) -> bytes:
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def p_int(value: int) -> bytes:
    if -(2 ** 31) <= value < 2 ** 31:
        return b"J" + struct.pack("<i", value)
    data = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(data)]) + data


def p_tuple(items) -> bytes:
    return b"(" + b"".join(items) + b"t"


def p_tensor(key: str, numel: int, size: tuple, stride: tuple, offset: int = 0, stype: str = "FloatStorage") -> bytes:
    """torch._utils._rebuild_tensor_v2(storage record, offset, size, stride, False, OrderedDict())."""
    record = p_tuple([p_str("storage"), f"ctorch\n{stype}\n".encode(), p_str(key), p_str("cpu"), p_int(numel)]) + b"Q"
    args = p_tuple([record, p_int(offset), p_tuple(map(p_int, size)), p_tuple(map(p_int, stride)), b"\x89",
                    b"ccollections\nOrderedDict\n)R"])
    return b"ctorch._utils\n_rebuild_tensor_v2\n" + args + b"R"


def p_dict(pairs) -> bytes:
    return b"}(" + b"".join(k + v for k, v in pairs) + b"u"


def raw_zip(path, pickle_bytes: bytes, storages: dict[str, bytes] | None = None,
            compression: int = zipfile.ZIP_STORED, extra: dict[str, bytes] | None = None) -> str:
    """torch's zip layout around a hand-written data.pkl (``extra``: more entries, any names)."""
    with zipfile.ZipFile(path, "w", compression) as z:
        z.writestr("archive/data.pkl", pickle_bytes)
        z.writestr("archive/byteorder", "little")
        for key, data in (storages or {}).items():
            z.writestr(f"archive/data/{key}", data)
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return str(path)


def claim_uncompressed_size(path, member: str, size: int) -> None:
    """Rewrites the uncompressed size of ``member`` in both zip headers (a lying archive)."""
    data = bytearray(open(path, "rb").read())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(member)
    struct.pack_into("<I", data, info.header_offset + 22, size)           # local file header
    name = member.encode()
    pos = 0
    while True:  # the central directory record of ``member``
        pos = data.index(b"PK\x01\x02", pos)
        if data[pos + 46:pos + 46 + len(name)] == name:
            break
        pos += 4
    struct.pack_into("<I", data, pos + 24, size)
    open(path, "wb").write(bytes(data))


# The battery ---------------------------------------------------------------------------------------
def memo_bomb(path, refs: int = 5000, numel: int = 1 << 20) -> str:
    """The issue's file: one 4 MB tensor that the pickle memo references ``refs`` times, each under
    its own key of the GRM state dict (a converter copying per reference needs refs * 4 MB)."""
    shared = Tensor(Storage(np.ones(numel, np.float32)), 0, (numel,), (1,))
    state = grm_state()
    state.update({f"backbone.blocks.0.extra{i}": shared for i in range(refs)})
    return write_zip(path, {"net": state})


def billion_laughs(path, levels: int = 40) -> str:
    """{'net': {'laughs': L40, 'a': tensor}}, L_i = [L_{i-1}, L_{i-1}]: 2**40 leaves in 40 lists."""
    body = p_tensor("0", 4, (4,), (1,)) + b"q\x000"  # memo 0, popped
    for level in range(1, levels + 1):  # memo level = [memo level-1, memo level-1]
        body += b"](h" + bytes([level - 1]) + b"h" + bytes([level - 1]) + b"eq" + bytes([level])
        body += b"0" if level < levels else b""
    pkl = PROTO + b"}(" + p_str("net") + b"}(" + p_str("laughs") + body + p_str("a") + b"h\x00" + b"uu" + STOP
    return raw_zip(path, pkl, {"0": np.ones(4, np.float32).tobytes()})


def memo_index_bomb(path) -> str:
    """A 2**28 memo index (LONG_BINPUT) in a file of a few hundred bytes (the C unpickler sizes its
    memo table to 2 * 2**28 pointers: 4.3 GB)."""
    return raw_zip(path, PROTO + b"}" + b"r" + struct.pack("<I", 1 << 28) + STOP)


def deep_key(path, depth: int = 100_000) -> str:
    """A state-dict key that is a tuple nested ``depth`` levels deep (its repr recurses)."""
    key = b")" + b"\x85" * depth  # () then TUPLE1 depth times
    return raw_zip(path, PROTO + p_dict([(p_str("net"), b"}(" + key + p_int(1) + b"u")]) + STOP)


def deep_value(path, depth: int = 100_000) -> str:
    """{'net': [[[...]]]} nested ``depth`` levels deep."""
    return raw_zip(path, PROTO + p_dict([(p_str("net"), b"]" * depth + b"a" * (depth - 1))]) + STOP)


def deflated(path, obj, member_numel: dict[str, int]) -> str:
    """write_zip(obj) re-packed with deflate; then storage entry ``data/<key>`` claims
    member_numel[key] float32 elements (its headers lie; a few bytes of deflate data stay)."""
    write_zip(path, obj)
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    for key, numel in member_numel.items():
        claim_uncompressed_size(path, f"archive/data/{key}", numel * 4)
    return str(path)


def deflate_bomb(path, numel: int = 1_000_000_000) -> str:
    """The GRM state dict with backbone.pos_embed_x (right shape) on a storage that claims
    ``numel`` float32 elements (4 GB) inflated from a few bytes."""
    state = grm_state()
    index = list(state).index("backbone.pos_embed_x")  # write_zip numbers storages in order
    shape = state["backbone.pos_embed_x"].shape
    state["backbone.pos_embed_x"] = Tensor(Storage(np.zeros(16, np.float32), declared_numel=numel), 0, shape,
                                           (0, shape[2], 1))
    return deflated(path, {"net": state}, {str(index): numel})
