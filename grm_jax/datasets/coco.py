"""COCO 2017 layout (an image dataset, training only).

    <root>/annotations/instances_train2017.json    object annotations (bbox = x,y,w,h pixels)
    <root>/train2017/<file_name>                   images

Each object annotation whose ``iscrowd`` is 0 is one single-frame "sequence", in the order of the
json's annotation list (the official reader's list: the annotation ids of its COCO index, crowds
left out). The pair sampler uses its image as template and search.

``visible`` (and ``valid``) is True when the box is wider and taller than MIN_SIZE = 50 px, as in
the official reader's ``get_sequence_info``. The official sampler never looks at it for an image
dataset (``enough_visible_frames or not is_video_dataset``), and neither does ours
(``data_pipelines.sampler``): EVERY non-crowd object is trained on, small ones included. The json
is parsed once; only compact arrays are kept, so the reader is cheap to send to worker processes.
"""
from __future__ import annotations

import json
import os

import numpy as np

from grm_jax.datasets.source import FileSource, SequenceInfo, make_info
from grm_jax.errors import DataError, MissingFileError

__all__ = ["CocoSource", "MIN_SIZE"]

MIN_SIZE = 50.0


def _read_annotation_file(ann_file: str):
    """(file names, annotation ids, image index per annotation, boxes) of the non-crowd objects."""
    try:
        with open(ann_file, "r", encoding="utf-8") as f:
            data = json.load(f)
        images = {int(im["id"]): str(im["file_name"]) for im in data["images"]}
        anns = data["annotations"]
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"COCO: malformed annotation file {ann_file}: {e!r}") from None
    files: list[str] = []
    file_index: dict[str, int] = {}
    ann_ids, img_idx, boxes = [], [], []
    for a in anns:
        try:
            if int(a.get("iscrowd", 0)) != 0:
                continue
            fn = images[int(a["image_id"])]
            box = [float(v) for v in a["bbox"]]
            if len(box) != 4:
                raise ValueError("bbox must have 4 numbers")
        except (KeyError, ValueError, TypeError, AttributeError) as e:
            ident = a.get("id") if isinstance(a, dict) else a
            raise DataError(f"COCO: malformed annotation {ident!r} in {ann_file}: {e!r}") from None
        if fn not in file_index:
            file_index[fn] = len(files)
            files.append(fn)
        ann_ids.append(int(a["id"]))
        img_idx.append(file_index[fn])
        boxes.append(box)
    if not ann_ids:
        raise DataError(f"COCO: no non-crowd annotations in {ann_file}")
    return files, ann_ids, img_idx, boxes


class CocoSource(FileSource):
    is_video = False

    def __init__(self, root, split: str = "train", version: str = "2017", name: str = "coco_train"):
        super().__init__(root, name)
        ann_file = os.path.join(self.root, "annotations", f"instances_{split}{version}.json")
        self.image_dir = os.path.join(self.root, f"{split}{version}")
        if not os.path.isfile(ann_file):
            raise MissingFileError(f"COCO: missing annotation file {ann_file}")
        if not os.path.isdir(self.image_dir):
            raise MissingFileError(f"COCO: missing image folder {self.image_dir}")
        files, ann_ids, img_idx, boxes = _read_annotation_file(ann_file)
        self._files = files
        self._ann_ids = np.asarray(ann_ids, dtype=np.int64)
        self._img_idx = np.asarray(img_idx, dtype=np.int64)
        self._boxes = np.asarray(boxes, dtype=np.float32)

    @property
    def num_sequences(self) -> int:
        return int(self._ann_ids.shape[0])

    def sequence_name(self, i: int) -> str:
        return str(int(self._ann_ids[i]))

    def _sequence_names(self):
        return [str(int(a)) for a in self._ann_ids]

    def _read_sequence_info(self, i: int) -> SequenceInfo:
        return make_info(self._boxes[i:i + 1], None, min_size=MIN_SIZE)

    def frame_path(self, i: int, f: int) -> str:
        if f != 0:
            raise IndexError(f"COCO: image dataset has a single frame per annotation, got frame {f}")
        return os.path.join(self.image_dir, self._files[int(self._img_idx[i])])
