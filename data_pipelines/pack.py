"""Pack a training dataset into ArrayRecord shards with a tensorflow-datasets builder (no TensorFlow).

    python -m data_pipelines.pack --dataset got10k_train_full --root /data/got10k --out /data/packed/got10k

``--dataset`` takes a training-set name of the registry (``grm_jax.datasets.registry``:
got10k_train_full, got10k_vot_train, got10k_train_all, lasot_train, trackingnet_train,
coco_train, sample_train; ``--root`` of sample_train is its cache folder, generated if needed).
The output folder holds a tfds dataset (``GrmTrackingFrames``,
``file_format='array_record'``, ``disable_shuffling=True``: records keep the frame order, one per
stored frame, with the ORIGINAL encoded JPEG bytes), plus ``sequences.npz`` (boxes / valid /
visible / record index per frame) and ``grm_pack.json`` (layout: :mod:`grm_jax.datasets.packed`).
Either write to ``<config.data.packed_dir>/<dataset name>`` (e.g. ``packed/got10k_vot_train``,
``packed/lasot_train``), or point ``config.data.roots.<root>`` at the output folder:
:func:`grm_jax.datasets.training_source` detects it and returns a
:class:`~grm_jax.datasets.packed.PackedSource`, which gives the same pairs as the folder reader
for the same seed.

``--frames visible`` stores only the frames the sampler can pick (visible ones); the others are
kept in the index (their boxes and flags) but have no record. Shared files (COCO images used by
several annotations) are stored once.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Iterator

import numpy as np

from grm_jax.datasets import CorruptImageError, Source, names, training_source
from grm_jax.datasets.packed import PACK_FORMAT, PACK_INDEX, PACK_META, PackedSource
from grm_jax.errors import GrmError
from grm_jax.io_utils import atomic_write_bytes

__all__ = ["pack_source", "PackedSource", "main", "BUILDER_NAME"]

BUILDER_NAME = "grm_tracking_frames"
BUILDER_VERSION = "1.0.0"
_log = logging.getLogger(__name__)


def _plan(source: Source, frames: str, root: str | None):
    """Per-frame index arrays and the ordered list of records to write (frame path per record)."""
    names, offsets, boxes, valid, visible, frame_record = [], [0], [], [], [], []
    records: list[tuple[int, int, str]] = []  # (seq, frame, key) of the first frame using the file
    key_to_record: dict[str, int] = {}
    for i in range(source.num_sequences):
        info = source.sequence_info(i)
        names.append(source.sequence_name(i))
        offsets.append(offsets[-1] + info.num_frames)
        boxes.append(info.boxes)
        valid.append(info.valid)
        visible.append(info.visible)
        for f in range(info.num_frames):
            if frames == "visible" and not info.visible[f]:
                frame_record.append(-1)
                continue
            path = source.frame_path(i, f)
            key = os.path.relpath(path, root) if root else path
            rec = key_to_record.get(key)
            if rec is None:
                rec = len(records)
                key_to_record[key] = rec
                records.append((i, f, key))
            frame_record.append(rec)
    index = {
        "names": np.asarray(names, dtype=np.str_),
        "seq_offset": np.asarray(offsets, dtype=np.int64),
        "boxes": np.concatenate(boxes).astype(np.float32),
        "valid": np.concatenate(valid).astype(bool),
        "visible": np.concatenate(visible).astype(bool),
        "frame_record": np.asarray(frame_record, dtype=np.int64),
    }
    return index, records


def _import_tfds():
    try:
        import tensorflow_datasets as tfds  # noqa: PLC0415
    except ImportError:
        raise GrmError("packing needs tensorflow-datasets, which is an optional extra",
                       hint='pip install -e ".[pack]"') from None
    return tfds


def _make_builder_class():
    tfds = _import_tfds()

    class GrmTrackingFrames(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        """Frames of a tracking dataset: encoded image bytes in frame order."""

        name = BUILDER_NAME
        VERSION = tfds.core.Version(BUILDER_VERSION)
        # No checksum file next to the code (nothing is downloaded). Also avoids tfds' package
        # resource lookup, which needs the optional `importlib_resources` backport.
        code_path = None

        def __init__(self, *, examples, description: str, **kwargs):
            self._examples = examples
            self._description = description
            super().__init__(**kwargs)

        def _info(self):
            features = tfds.features.FeaturesDict({
                "image": tfds.features.Tensor(shape=(), dtype=np.object_),  # encoded bytes as stored
                "key": tfds.features.Text(),
                "sequence": tfds.features.Scalar(dtype=np.int64),
                "frame": tfds.features.Scalar(dtype=np.int64),
            })
            return tfds.core.DatasetInfo(builder=self, description=self._description, features=features,
                                         disable_shuffling=True)

        def _split_generators(self, dl_manager):
            del dl_manager
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            yield from self._examples

    return GrmTrackingFrames


def pack_source(source: Source, out_dir: str | os.PathLike, frames: str = "all", root: str | None = None,
                num_shards: int | None = None) -> PackedSource:
    """Write ``source`` to ``out_dir`` (see module doc) and return the packed reader.

    Unreadable files are warned about and left without a record (reading them later raises
    CorruptImageError, which the training loop skips, as with the folder reader).
    """
    if frames not in ("all", "visible"):
        raise ValueError(f"frames must be 'all' or 'visible', got {frames!r}")
    out_dir = os.path.abspath(os.fspath(out_dir))
    if os.path.exists(os.path.join(out_dir, PACK_META)):
        raise FileExistsError(f"{out_dir} already holds a packed dataset ({PACK_META}); remove it first")
    os.makedirs(out_dir, exist_ok=True)
    index, records = _plan(source, frames, root)
    unreadable: set[int] = set()

    def examples() -> Iterator[tuple[int, dict]]:
        for r, (i, f, key) in enumerate(records):
            try:
                data = source.frame_bytes(i, f)
            except CorruptImageError as e:
                _log.warning("pack: %s", e)
                print(f"warning: {e}", file=sys.stderr)
                unreadable.add(r)
                data = b""
            yield r, {"image": data, "key": key, "sequence": i, "frame": f}

    tfds = _import_tfds()
    builder_cls = _make_builder_class()
    download_config = None
    if num_shards is not None:
        download_config = tfds.download.DownloadConfig(num_shards=int(num_shards))
    builder = builder_cls(examples=examples(), description=f"{source.name} frames packed by grm-jax",
                          data_dir=out_dir, file_format="array_record")
    builder.download_and_prepare(download_config=download_config)
    try:  # tfds leaves empty download folders behind
        os.removedirs(os.path.join(out_dir, "downloads", "extracted"))
    except OSError:
        pass
    if unreadable:
        fr = index["frame_record"]
        fr[np.isin(fr, np.fromiter(unreadable, dtype=np.int64))] = -1
    builder_dir = os.path.relpath(builder.data_dir, out_dir)
    np.savez(os.path.join(out_dir, PACK_INDEX), **index)
    meta = {"format": PACK_FORMAT, "name": source.name, "is_video": bool(source.is_video),
            "builder_dir": builder_dir, "num_sequences": int(source.num_sequences),
            "num_frames": int(index["frame_record"].shape[0]), "num_records": len(records),
            "frames": frames, "unreadable_records": len(unreadable)}
    atomic_write_bytes(os.path.join(out_dir, PACK_META), json.dumps(meta, indent=1).encode())
    return PackedSource(out_dir)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m data_pipelines.pack", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", required=True, help="training set: " + ", ".join(names("train")))
    p.add_argument("--root", required=True,
                   help="dataset root folder (sample_train: cache folder, created if needed)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--frames", default="all", choices=["all", "visible"],
                   help="store every frame, or only the visible (sampleable) ones")
    p.add_argument("--num_shards", type=int, default=None, help="ArrayRecord shards (default: tfds decides)")
    args = p.parse_args(argv)
    src = training_source(args.dataset, args.root)
    if isinstance(src, PackedSource):
        raise SystemExit(f"{args.root} is already a packed dataset")
    packed = pack_source(src, args.out, frames=args.frames, root=getattr(src, "root", None),
                         num_shards=args.num_shards)
    print(f"packed {packed.name}: {packed.num_sequences} sequences into {args.out}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except GrmError as err:  # bad names, roots and files: one message, no traceback
        print(f"error: {err.user_message()}", file=sys.stderr)
        sys.exit(2)
