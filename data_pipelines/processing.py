"""Training-pair processing: joint augmentation, jitter, crops, per-image augmentation,
CenterNet heatmap labels. Mirrors OSTrack's ``STARKProcessing`` + pytracking transforms.

Per pair, in this order (all randomness from one ``numpy.random.Generator``):

1. joint transform on the full frames: grayscale (p=0.05, same roll for template and search,
   ``cv2.COLOR_RGB2GRAY`` stacked to 3 channels), horizontal flip (p=0.5, same roll; box
   x1' = (W - 1) - (x1 + w), pytracking's corner convention);
2. for template then search: jitter the box (size *= exp(N(0,1) * scale_jitter), centre +=
   (U(0,1) - 0.5) * sqrt(w' h') * center_jitter), reject when ceil(sqrt(w' h') * factor) < 1,
   crop with :func:`grm_jax.crop.sample_target` around the jittered box, map the true box into the
   crop (normalized x1y1wh), then brightness x U[0.8, 1.2] (/255, clamp [0, 1]), a second flip
   (p=0.5, normalized box x1' = 1 - x1 - w, att mask flipped too), normalize with mean/std;
   reject when the att mask is all padding, or all padding after nearest down-sampling to
   size // 16 (``F.interpolate`` nearest = every 16th pixel);
3. heatmap: CenterNet Gaussian of the search box on the (S/stride)^2 grid.

Outputs are NHWC float32 (no batch axis here).

Frames: decoded at full size before the processing (the official pixels), or, with
``reduced_decode`` (``data.reduced_decode``, off by default; changes pixels), decoded when a
crop needs them at the coarsest 1/k size that still down-samples the crop
(data_pipelines/frames.py).
"""
from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from data_pipelines.frames import PairFrame, decode_reduction
from grm_jax.crop import IMAGENET_MEAN, IMAGENET_STD, sample_target, transform_image_to_crop
from grm_jax.run_config import CropSpec  # one crop of a pair: factor, size, jitter (RunConfig.crop)
from data_pipelines.sampler import PairSampler, PairSpec
from grm_jax.datasets.source import CorruptImageError

__all__ = [
    "CropSpec", "PairProcessor", "apply_jitter", "jitter_noise", "jittered_size", "jittered_center_crop",
    "gaussian_radius", "heatmap_centers", "draw_gaussian", "generate_heatmap", "make_training_sample",
]

MIN_OVERLAP = 0.7
BACKBONE_STRIDE = 16  # the official validity check down-samples att masks by 16, whatever the model

def _note_skip(msg: str) -> None:
    """One warning per unreadable image (the count travels in each sample's ``skipped_images``)."""
    warnings.warn(f"skipping unreadable training image: {msg}", RuntimeWarning, stacklevel=3)


# -------------------------------------------------------------------------------------------
# Jitter and crops
# -------------------------------------------------------------------------------------------

def jitter_noise(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The draws of one jitter: (randn(2), rand(2)) as float32."""
    noise_s = rng.standard_normal(2).astype(np.float32)
    noise_c = rng.random(2).astype(np.float32)
    return noise_s, noise_c


def jittered_size(box_xywh: np.ndarray, noise_s: np.ndarray, scale_jitter: float) -> np.ndarray:
    """(w, h) * exp(noise_s * scale_jitter), float32."""
    return np.asarray(box_xywh, dtype=np.float32)[2:4] * np.exp(noise_s * np.float32(scale_jitter))


def apply_jitter(box_xywh: np.ndarray, noise, center_jitter: float, scale_jitter: float) -> np.ndarray:
    """Official ``_get_jittered_box`` in float32 with the draws ``noise`` (:func:`jitter_noise`):
    size * exp(randn(2) * sj); centre + max_off * (rand(2) - .5)."""
    box = np.asarray(box_xywh, dtype=np.float32)
    noise_s, noise_c = noise
    size = jittered_size(box, noise_s, scale_jitter)
    max_offset = np.sqrt(np.prod(size)) * np.float32(center_jitter)
    center = box[0:2] + np.float32(0.5) * box[2:4] + max_offset * (noise_c - np.float32(0.5))
    return np.concatenate([center - np.float32(0.5) * size, size]).astype(np.float32)


def jittered_center_crop(frames, box_extract, box_gt, factor: float, output_sz: int):
    """Official ``jittered_center_crop`` (normalized boxes): per frame, crop around ``box_extract``
    and map ``box_gt`` into the crop. Returns (crops list (S,S,3) uint8, boxes (n,4) float32
    normalized x1y1wh, att masks list (S,S) bool)."""
    crops, boxes, masks = [], [], []
    for im, be, bg in zip(frames, box_extract, box_gt):
        crop, rf, att = sample_target(im, be, factor, output_sz)
        box = transform_image_to_crop(np.asarray(bg, np.float32), np.asarray(be, np.float32), rf,
                                      np.asarray([output_sz, output_sz], np.float32), normalize=True)
        crops.append(crop)
        boxes.append(np.asarray(box, np.float32))
        masks.append(att)
    return crops, np.stack(boxes), masks


# -------------------------------------------------------------------------------------------
# Heatmap labels (CenterNet, "buggy" radius)
# -------------------------------------------------------------------------------------------

def gaussian_radius(wh: np.ndarray, min_overlap: float = MIN_OVERLAP) -> np.ndarray:
    """(..., 2) box sizes (w, h) in grid units -> (...) float32 radius (min of three roots)."""
    wh = np.asarray(wh, dtype=np.float32)
    width, height = wh[..., 0], wh[..., 1]
    m = np.float32(min_overlap)
    one = np.float32(1)
    with np.errstate(invalid="ignore"):
        b1 = height + width
        c1 = width * height * (one - m) / (one + m)
        r1 = (b1 + np.sqrt(b1 ** 2 - np.float32(4) * c1)) / np.float32(2)
        b2 = np.float32(2) * (height + width)
        c2 = (one - m) * width * height
        r2 = (b2 + np.sqrt(b2 ** 2 - np.float32(4 * 4) * c2)) / np.float32(2)
        a3 = np.float32(4) * m
        b3 = np.float32(-2) * m * (height + width)
        c3 = (m - one) * width * height
        r3 = (b3 + np.sqrt(b3 ** 2 - np.float32(4) * a3 * c3)) / np.float32(2)
    return np.minimum(r1, np.minimum(r2, r3)).astype(np.float32)


def heatmap_centers(boxes_x1y1wh_norm: np.ndarray, feat_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (B, 4) normalized -> (centers_int (B, 2) float32 rounded half-to-even, wh (B, 2)) in grid units."""
    bbox = np.asarray(boxes_x1y1wh_norm, dtype=np.float32) * np.float32(feat_size)
    wh = bbox[:, 2:]
    centers = np.round(bbox[:, :2] + wh / np.float32(2))
    return centers.astype(np.float32), wh


def _gaussian2d(radius: int, sigma: float) -> np.ndarray:
    y, x = np.ogrid[-radius:radius + 1, -radius:radius + 1]
    g = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    g[g < np.finfo(g.dtype).eps * g.max()] = 0
    return g.astype(np.float32)


def draw_gaussian(fmap: np.ndarray, center, radius: int) -> np.ndarray:
    """Max-merge a (2r+1)^2 Gaussian (sigma = (2r+1)/6) at integer ``center`` (x, y) into ``fmap`` (H, W),
    with the official slicing (cut at the border; a centre off the grid draws nothing)."""
    diameter = 2 * radius + 1
    gaussian = _gaussian2d(radius, sigma=diameter / 6)
    x, y = int(center[0]), int(center[1])
    height, width = fmap.shape[:2]
    left, right = min(x, radius), min(width - x, radius + 1)
    top, bottom = min(y, radius), min(height - y, radius + 1)
    masked_fmap = fmap[y - top:y + bottom, x - left:x + right]
    masked_gaussian = gaussian[radius - top:radius + bottom, radius - left:radius + right]
    if min(masked_gaussian.shape) > 0 and min(masked_fmap.shape) > 0:
        fmap[y - top:y + bottom, x - left:x + right] = np.maximum(masked_fmap, masked_gaussian)
    return fmap


def generate_heatmap(boxes_x1y1wh_norm: np.ndarray, patch_size: int = 256, stride: int = 16) -> np.ndarray:
    """Official ``generate_heatmap`` for one frame of a batch: (B, 4) normalized x1y1wh -> (B, f, f) float32."""
    boxes = np.asarray(boxes_x1y1wh_norm, dtype=np.float32).reshape(-1, 4)
    f = patch_size // stride
    out = np.zeros((boxes.shape[0], f, f), dtype=np.float32)
    centers, wh = heatmap_centers(boxes, f)
    radius = np.maximum(gaussian_radius(wh), np.float32(0))
    with np.errstate(invalid="ignore"):
        radius_int = np.where(np.isfinite(radius), radius, 0).astype(np.int32)  # torch .int(): truncation
    for i in range(boxes.shape[0]):
        if not np.all(np.isfinite(centers[i])):
            continue
        draw_gaussian(out[i], centers[i], int(radius_int[i]))
    return out


# -------------------------------------------------------------------------------------------
# Augmentations
# -------------------------------------------------------------------------------------------

def _flip_box_pixels(box: np.ndarray, width: int) -> np.ndarray:
    """pytracking RandomHorizontalFlip on an xywh box: corners x -> (W - 1) - x."""
    b = np.asarray(box, dtype=np.float32).copy()
    x1, x2 = b[0], b[0] + b[2]
    nx1, nx2 = np.float32(width - 1) - x1, np.float32(width - 1) - x2
    b[0] = min(nx1, nx2)
    b[2] = max(nx1, nx2) - b[0]
    return b


def _flip_box_norm(box: np.ndarray) -> np.ndarray:
    """RandomHorizontalFlip_Norm on a normalized xywh box: corners x -> 1 - x."""
    b = np.asarray(box, dtype=np.float32).copy()
    x1, x2 = b[0], b[0] + b[2]
    nx1, nx2 = np.float32(1) - x1, np.float32(1) - x2
    b[0] = min(nx1, nx2)
    b[2] = max(nx1, nx2) - b[0]
    return b


def _to_reduced(box: np.ndarray, k: int, reduced_width: int, width: int, flipped: bool) -> np.ndarray:
    """Full-frame xywh box -> pixels of the frame decoded at 1/k (pixel j covers full [k j, k j + k)).
    A flipped reduced frame starts ``k * reduced_width - width`` full pixels left of the flipped full
    frame when k does not divide the width."""
    b = np.asarray(box, np.float32).copy()
    if flipped:
        b[0] += np.float32(k * reduced_width - width)
    return b / np.float32(k)


class PairProcessor:
    """Turns (template frame, box, search frame, box) into network inputs; see module doc.
    ``reduced_decode``: decode each frame at the coarsest size its crop allows
    (``data.reduced_decode``, data_pipelines/frames.py; changes pixels, off by default)."""

    def __init__(self, template: CropSpec, search: CropSpec, stride: int = 16, grayscale_prob: float = 0.05,
                 flip_prob: float = 0.5, norm_flip_prob: float = 0.5, brightness_jitter: float = 0.2,
                 mean=IMAGENET_MEAN, std=IMAGENET_STD, reduced_decode: bool = False):
        self.template = template
        self.search = search
        self.stride = int(stride)
        self.grayscale_prob = float(grayscale_prob)
        self.flip_prob = float(flip_prob)
        self.norm_flip_prob = float(norm_flip_prob)
        self.brightness_jitter = float(brightness_jitter)
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        self.reduced_decode = bool(reduced_decode)

    def _per_image(self, crop: np.ndarray, box: np.ndarray, att: np.ndarray, rng: np.random.Generator):
        """Brightness, second flip, normalisation of one uint8 crop. The flip is taken on the uint8
        crop and the float32 steps run in place: the same values as (clip(crop * b / 255, 0, 1)
        flipped - mean) / std computed step by step (tests/test_processing.py)."""
        bf = rng.uniform(max(0.0, 1.0 - self.brightness_jitter), 1.0 + self.brightness_jitter)
        if rng.random() < self.norm_flip_prob:
            crop = crop[:, ::-1, :]
            att = att[:, ::-1]
            box = _flip_box_norm(box)
        img = crop.astype(np.float32, order="C")
        img *= np.float32(bf / 255.0)
        np.clip(img, 0.0, 1.0, out=img)
        img -= self.mean
        img /= self.std
        return img, box.astype(np.float32), np.ascontiguousarray(att)

    def _crop(self, frame: PairFrame, box: np.ndarray, spec: CropSpec, gray: bool, flip: bool,
              rng: np.random.Generator):
        """Joint grey/flip, jitter and crop of one frame -> (uint8 crop, normalized box, att) or None."""
        noise = jitter_noise(rng)
        reduce = 1
        if self.reduced_decode:
            reduce = decode_reduction(jittered_size(box, noise[0], spec.scale_jitter), spec.factor, spec.size)
        image, k, full_hw = frame.get(reduce, gray)
        if flip:
            box = _flip_box_pixels(box, full_hw[1])
            # a reversed VIEW: only the crop's pixels are copied later (grm_jax.crop.sample_target mirrors
            # them with cv2.flip), the same values as from a flipped copy of the whole frame
            image = image[:, ::-1, :]
        jit = apply_jitter(box, noise, spec.center_jitter, spec.scale_jitter)
        w, h = float(jit[2]), float(jit[3])
        if not (math.isfinite(w) and math.isfinite(h)) or w * h < 0:
            return None
        if math.ceil(math.sqrt(w * h) * spec.factor) < 1:
            return None
        if k > 1:  # frame decoded at 1/k: boxes in its pixels (exact, k is a power of two)
            jit, box = _to_reduced(jit, k, image.shape[1], full_hw[1], flip), _to_reduced(box, k, image.shape[1],
                                                                                          full_hw[1], flip)
        try:
            crops, cboxes, atts = jittered_center_crop([image], [jit], [box], spec.factor, spec.size)
        except ValueError:
            return None
        return crops[0], cboxes[0], atts[0]

    def __call__(self, template_image, template_box, search_image, search_box,
                 rng: np.random.Generator) -> dict[str, Any] | None:
        """Returns the sample dict, or None when the pair is rejected (official ``valid`` False).
        Images: (H, W, 3) uint8 RGB arrays or :class:`PairFrame` (the same object when template
        and search are one frame)."""
        t_frame = template_image if isinstance(template_image, PairFrame) else PairFrame(template_image)
        s_frame = (t_frame if search_image is template_image else
                   search_image if isinstance(search_image, PairFrame) else PairFrame(search_image))
        frames = {"template": t_frame, "search": s_frame}
        boxes = {"template": np.asarray(template_box, np.float32), "search": np.asarray(search_box, np.float32)}
        gray = rng.random() < self.grayscale_prob
        flip = rng.random() < self.flip_prob
        out: dict[str, Any] = {}
        for key, spec in (("template", self.template), ("search", self.search)):
            cropped = self._crop(frames[key], boxes[key], spec, gray, flip, rng)
            if cropped is None:
                return None
            img, box, att = self._per_image(*cropped, rng)
            if att.all():
                return None
            feat = spec.size // BACKBONE_STRIDE
            idx = (np.arange(feat) * spec.size) // feat  # torch nearest: floor(i * in / out)
            if att[np.ix_(idx, idx)].all():
                return None
            out[key] = img
            out[f"{key}_box"] = box
            out[f"{key}_att"] = att
        out["heatmap"] = generate_heatmap(out["search_box"][None], self.search.size, self.stride)[0]
        return out


def _pair_frames(source, spec: PairSpec, lazy: bool):
    """The template and search frames of ``spec`` (one object when they are the same frame):
    decoded now (exact mode) or PairFrames decoded when cropped (``lazy``, reduced decoding)."""
    same = spec.search_frame == spec.template_frame
    if lazy:
        t = PairFrame.from_source(source, spec.sequence, spec.template_frame)
        return t, (t if same else PairFrame.from_source(source, spec.sequence, spec.search_frame))
    t_img = source.load_frame(spec.sequence, spec.template_frame)
    return t_img, (t_img if same else source.load_frame(spec.sequence, spec.search_frame))


def make_training_sample(sampler: PairSampler, processor: PairProcessor, rng: np.random.Generator,
                         max_tries: int = 1000) -> dict[str, Any]:
    """Official ``TrackingSampler.__getitem__`` loop: draw pairs until one is valid.

    Unreadable images are skipped with a warning naming the file (and counted, see
    ``skipped_images``); the returned dict carries ``skipped_images`` for this sample.
    """
    skipped = 0
    for _ in range(max_tries):
        spec: PairSpec = sampler.sample(rng)
        src = sampler.sources[spec.dataset]
        try:
            t_img, s_img = _pair_frames(src, spec, processor.reduced_decode)
            sample = processor(t_img, spec.template_box, s_img, spec.search_box, rng)
        except CorruptImageError as e:
            skipped += 1
            _note_skip(str(e))
            continue
        if sample is None:
            continue
        sample["dataset"] = np.int32(spec.dataset)
        sample["skipped_images"] = np.int32(skipped)
        return sample
    raise RuntimeError(f"no valid training pair after {max_tries} draws ({skipped} unreadable images skipped)")
