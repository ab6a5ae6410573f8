"""What evaluation reads: one :class:`Sequence` record per benchmark sequence."""
from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["Sequence", "first_box_only"]


@dataclasses.dataclass(frozen=True)
class Sequence:
    """One benchmark sequence.

    name: sequence name (result files are ``<name>.txt``).
    frames: list of N image paths (str), in temporal order.
    ground_truth: (N, 4) float64 (x1, y1, w, h) pixels; NaN rows where the benchmark publishes
      no box (GOT-10k test and TrackingNet publish the first frame only).
    dataset: the registry name of the benchmark (e.g. 'lasot'); decides metric conventions.
    visible: optional (N,) bool target visibility used by the success/precision analysis
      (LaSOT, AVisT: neither fully occluded nor out of view).
    cover: optional (N,) int64 GOT-10k cover label (0 = target fully occluded or absent).
    absence: optional (N,) bool GOT-10k absence label.
    object_class: optional class name (LaSOT folder, benchmark tables).
    """

    name: str
    frames: list
    ground_truth: np.ndarray
    dataset: str
    visible: np.ndarray | None = None
    cover: np.ndarray | None = None
    absence: np.ndarray | None = None
    object_class: str | None = None

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def init_box(self) -> np.ndarray:
        """(4,) float64 first-frame box (x1, y1, w, h)."""
        return self.ground_truth[0]


def first_box_only(first: np.ndarray, num_frames: int) -> np.ndarray:
    """(num_frames, 4) float64 ground truth holding ``first[0]`` in row 0 and NaN elsewhere."""
    gt = np.full((num_frames, 4), np.nan, dtype=np.float64)
    gt[0] = first[0]
    return gt
