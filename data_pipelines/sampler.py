"""Template/search pair sampler: pytracking's ``TrackingSampler`` in "causal" mode (docs/PARITY.md §8).

One draw (1 template frame, 1 search frame):

1. pick a dataset with probability proportional to its ratio;
2. pick a sequence uniformly; for video datasets keep it only when it has more than
   2 * (1 + 1) = 4 visible frames and at least 20 frames, otherwise pick again (official
   ``sample_seq_from_dataset``). Image datasets accept every sequence, whatever its visibility
   flag (the official ``enough_visible_frames or not is_video_dataset``): every non-crowd COCO
   object is sampled, those of 50 px and below included; a pair whose crop cannot be made (a
   zero-size box) is refused later by the processing and drawn again, as officially;
3. video: template = a visible frame in [0, N - 1) ("base frame"); search = a visible frame in
   [template + 1, template + max_gap + gap_increase) (Python ``range``, clipped to N, the
   official ``_sample_visible_ids``), so on the first try the search frame lies 1 to
   max_gap - 1 = 199 frames after the template; if there is none, gap_increase += 5 and both
   frames are drawn again. Image datasets use frame 0 for both.

All randomness comes from the ``numpy.random.Generator`` passed in; the pipeline seeds one per
sample index (``np.random.default_rng([seed, index])``), so sample ``k`` depends on ``(seed, k)``
only, whatever the worker layout or the order of access.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from grm_jax.datasets.source import SequenceInfo, Source

__all__ = ["PairSpec", "PairSampler", "sample_visible_id"]

NUM_TEMPLATE_FRAMES = 1
NUM_SEARCH_FRAMES = 1
GAP_INCREASE_STEP = 5


@dataclasses.dataclass(frozen=True)
class PairSpec:
    """Which frames make a training pair."""

    dataset: int          # index into the sampler's sources
    sequence: int         # sequence index inside that source
    template_frame: int
    search_frame: int
    template_box: np.ndarray  # (4,) float32 xywh pixels
    search_box: np.ndarray    # (4,) float32 xywh pixels


def sample_visible_id(visible: np.ndarray, rng: np.random.Generator, min_id: int | None = None,
                      max_id: int | None = None) -> int | None:
    """A uniformly chosen visible index in [min_id, max_id) (clipped to [0, len)); None if none."""
    n = int(visible.shape[0])
    lo = 0 if (min_id is None or min_id < 0) else int(min_id)
    hi = n if (max_id is None or max_id > n) else int(max_id)
    if hi <= lo:
        return None
    ids = np.flatnonzero(visible[lo:hi])
    if ids.size == 0:
        return None
    return lo + int(ids[rng.integers(ids.size)])


class PairSampler:
    """Draws :class:`PairSpec` from several sources (see module doc)."""

    def __init__(self, sources: Sequence[Source], ratios: Sequence[float] | None = None, max_gap: int = 200,
                 max_sequence_tries: int = 10000):
        if not sources:
            raise ValueError("PairSampler: no sources")
        self.sources = list(sources)
        if ratios is None:
            ratios = [1.0] * len(self.sources)
        ratios = np.asarray(ratios, dtype=np.float64)
        if ratios.shape != (len(self.sources),) or np.any(ratios < 0) or ratios.sum() <= 0:
            raise ValueError(f"PairSampler: ratios {ratios.tolist()} must be {len(self.sources)} non-negative "
                             f"numbers with a positive sum")
        self.probs = ratios / ratios.sum()
        self.max_gap = int(max_gap)
        self.max_sequence_tries = int(max_sequence_tries)
        for s in self.sources:
            if s.num_sequences < 1:
                raise ValueError(f"PairSampler: source {s.name} has no sequences")

    def choose_dataset(self, rng: np.random.Generator) -> int:
        return int(rng.choice(len(self.sources), p=self.probs))

    def choose_sequence(self, d: int, rng: np.random.Generator) -> tuple[int, SequenceInfo]:
        src = self.sources[d]
        for _ in range(self.max_sequence_tries):
            i = int(rng.integers(src.num_sequences))
            info = src.sequence_info(i)
            vis = info.visible
            # image datasets: any sequence (official: ``enough_visible_frames or not is_video_dataset``)
            if not src.is_video or (int(vis.sum()) > 2 * (NUM_SEARCH_FRAMES + NUM_TEMPLATE_FRAMES)
                                    and vis.shape[0] >= 20):
                return i, info
        raise RuntimeError(f"PairSampler: no usable sequence found in {src.name} after {self.max_sequence_tries} "
                           f"tries (video: > 4 visible frames and >= 20 frames)")

    def choose_frames(self, info: SequenceInfo, is_video: bool, rng: np.random.Generator) -> tuple[int, int]:
        if not is_video:
            return 0, 0
        vis = info.visible
        n = vis.shape[0]
        gap_increase = 0
        while True:
            base = sample_visible_id(vis, rng, min_id=NUM_TEMPLATE_FRAMES - 1, max_id=n - NUM_SEARCH_FRAMES)
            if base is None:  # cannot happen for sequences accepted by choose_sequence
                raise RuntimeError("PairSampler: sequence without a visible base frame")
            search = sample_visible_id(vis, rng, min_id=base + 1, max_id=base + self.max_gap + gap_increase)
            gap_increase += GAP_INCREASE_STEP
            if search is not None:
                return base, search

    def sample(self, rng: np.random.Generator) -> PairSpec:
        d = self.choose_dataset(rng)
        i, info = self.choose_sequence(d, rng)
        t, s = self.choose_frames(info, self.sources[d].is_video, rng)
        return PairSpec(dataset=d, sequence=i, template_frame=t, search_frame=s,
                        template_box=info.boxes[t].copy(), search_box=info.boxes[s].copy())
