"""Single-sequence GRM tracker: the official tracking procedure (docs/PARITY.md §7), one device call per frame.

    model, variables = grm_jax.load_model("out/grm_got")
    tracker = Tracker(model, variables, config.track, threshold=0.0)
    tracker.initialize(first_frame_rgb_uint8, (x, y, w, h))
    for frame in frames[1:]:
        box_xywh = tracker.track(frame)       # (4,) float64 (x1, y1, w, h) pixels

Per frame, host side: the search crop (``grm_jax.crop.sample_target``, bit-exact with the official
cv2 crop) around the previous state; device side (ONE jitted call): ImageNet normalization of the
uint8 template and search crops, the network with the division threshold, the Hann window, box
decoding from the windowed score map and ``(box * S) / resize_factor`` in float32; host side again:
map-back (float64) and clipping with a margin. The jitted function depends only on the network
architecture, so trackers of the same architecture share one compilation and no frame or image
size triggers a recompile (crops always have the network's input sizes; the threshold is traced).

The same building blocks (``prepare_template``, ``prepare_search``, ``postprocess``,
``step_function``) are used by :mod:`grm_jax.track.batched`, which advances many sequences in
one device call with exactly the same per-sample arithmetic.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from grm_jax.boxes import clip_box_with_margin, map_box_back
from grm_jax.crop import IMAGENET_MEAN, IMAGENET_STD, sample_target
from grm_jax.errors import ConfigError, DataError
from grm_jax.model.attention import inference_attention
from grm_jax.model.config import ModelConfig
from grm_jax.model.grm import GRM
from grm_jax.model.head import decode_boxes
from grm_jax.run_config import RunConfig, TrackConfig, check_threshold
from grm_jax.track_settings import resolve_attention, resolve_dtype, resolve_precision
from grm_jax.track.window import hann2d

__all__ = [
    "TrackParams",
    "Tracker",
    "as_track_config",
    "check_frame",
    "compute_dtype",
    "device_step",
    "inference_config",
    "postprocess",
    "prepare_search",
    "prepare_template",
    "resolve_tracking",
    "run_step",
    "step_function",
    "validate_box",
]



# ----------------------------------------------------------------------------------------------
# Parameters
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class TrackParams:
    """What the host-side steps need, derived in one line from a run config's ``track`` section
    and the model's crop sizes (:meth:`from_config`): crop factors and sizes, clip margin and the
    jax matmul precision of the device step (docs/PARITY.md §7)."""

    template_factor: float = TrackConfig.template_factor
    template_size: int = ModelConfig.template_size
    search_factor: float = TrackConfig.search_factor
    search_size: int = ModelConfig.search_size
    clip_margin: int = TrackConfig.clip_margin
    matmul_precision: str | None = TrackConfig.matmul_precision

    @classmethod
    def from_config(cls, track=None, model_config: ModelConfig | None = None) -> "TrackParams":
        """track: a ``TrackConfig`` or a mapping of its fields (None = defaults); sizes: the model's."""
        track, m = as_track_config(track), model_config or ModelConfig()
        return cls(track.template_factor, m.template_size, track.search_factor, m.search_size, track.clip_margin,
                   resolve_precision(track.matmul_precision))


def as_track_config(track) -> TrackConfig:
    """A ``TrackConfig`` from itself, None (defaults) or a mapping of its fields (checked by the
    run config's own validation; a crop SIZE is refused: sizes are the model's)."""
    if isinstance(track, TrackConfig):
        return track
    values = dict(track or {})
    for key in values:
        if key.endswith("_size"):
            raise ConfigError(f"unknown tracking setting track.{key}; crop sizes come from the model (model.{key})")
    return RunConfig.from_configdict({"track": values}).track


# ----------------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------------

# Largest |coordinate| or side of a box in pixels: beyond any camera image, and it bounds the
# crop (ceil(sqrt(w*h) * factor) squared pixels) that a box would make the tracker allocate.
MAX_BOX_PIXELS = 1 << 16
# An init box may be at most this many times as wide / high as the image.
MAX_BOX_TO_IMAGE = 2.0


def validate_box(box_xywh, what: str = "init box", image_hw=None) -> np.ndarray:
    """(x, y, w, h) pixels -> (4,) float64, checked before anything is cropped or allocated.

    DataError naming the value when: not 4 numbers; non-finite; w or h <= 0; any |value| larger
    than MAX_BOX_PIXELS. With ``image_hw`` = (H, W) of the frame the box is in, also when the box
    lies entirely outside the image or is more than MAX_BOX_TO_IMAGE times as wide or high.
    """
    try:
        arr = np.asarray(box_xywh, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise DataError(f"{what}: expected 4 numbers x,y,w,h, got {box_xywh!r}") from None
    if arr.shape != (4,):
        raise DataError(f"{what}: expected 4 numbers x,y,w,h, got {arr.size} ({box_xywh!r})")
    names = ("x", "y", "w", "h")
    for name, v in zip(names, arr):
        if not math.isfinite(v):
            raise DataError(f"{what} {arr.tolist()}: {name} = {v} is not a finite number")
    for name, v in zip(names[2:], arr[2:]):
        if v <= 0:
            raise DataError(f"{what} {arr.tolist()}: {name} = {v} must be > 0 (empty or negative box size)")
    for name, v in zip(names, arr):
        if abs(v) > MAX_BOX_PIXELS:
            raise DataError(f"{what} {arr.tolist()}: {name} = {v:g} is beyond {MAX_BOX_PIXELS} pixels")
    if image_hw is not None:
        _check_box_in_image(arr, int(image_hw[0]), int(image_hw[1]), what)
    return arr


def _check_box_in_image(box: np.ndarray, H: int, W: int, what: str) -> None:
    x, y, w, h = box.tolist()
    if x >= W or y >= H or x + w <= 0 or y + h <= 0:
        raise DataError(f"{what} {box.tolist()} lies entirely outside the {W}x{H} image",
                        hint="boxes are x,y,w,h in pixels of the first frame, (0, 0) = top-left corner")
    if w > MAX_BOX_TO_IMAGE * W or h > MAX_BOX_TO_IMAGE * H:
        raise DataError(f"{what} {box.tolist()}: {w:g}x{h:g} is more than {MAX_BOX_TO_IMAGE:g} times the "
                        f"{W}x{H} image")


def check_frame(frame, what: str = "frame") -> np.ndarray:
    """Frame must be an (H, W, 3) uint8 RGB array; returns it as a numpy array (DataError otherwise)."""
    im = np.asarray(frame)
    if im.ndim != 3 or im.shape[2] != 3:
        raise DataError(f"{what}: expected an (H, W, 3) RGB image, got shape {im.shape}")
    if im.dtype != np.uint8:
        raise DataError(f"{what}: expected dtype uint8, got {im.dtype}")
    if im.shape[0] < 1 or im.shape[1] < 1:
        raise DataError(f"{what}: empty image {im.shape}")
    return im


# ----------------------------------------------------------------------------------------------
# Host-side steps (shared with the batched tracker)
# ----------------------------------------------------------------------------------------------

def prepare_template(frame: np.ndarray, box_xywh: np.ndarray, params: TrackParams):
    """Template crop (factor, size from params) -> (crop uint8 (T,T,3), resize_factor float)."""
    crop, rf, _ = sample_target(frame, box_xywh, params.template_factor, params.template_size,
                                "track.template_factor")
    return crop, rf


def prepare_search(frame: np.ndarray, state_xywh: np.ndarray, params: TrackParams):
    """Search crop around the previous state -> (crop uint8 (S,S,3), resize_factor float)."""
    crop, rf, _ = sample_target(frame, state_xywh, params.search_factor, params.search_size,
                                "track.search_factor")
    return crop, rf


def postprocess(box_px_f32, prev_state_xywh, resize_factor, image_hw, params: TrackParams) -> np.ndarray:
    """Map-back and clipping (docs/PARITY.md §7) on host in float64: crop-relative (cx,cy,w,h) pixels -> clipped (x1,y1,w,h).

    box_px_f32: (..., 4) float32 ``(box * S) / resize_factor`` from the device step.
    prev_state_xywh: (..., 4) float64; resize_factor: scalar or (...,); image_hw: (H, W) or
    arrays (...,) of H and W.
    """
    pred = np.asarray(box_px_f32, dtype=np.float32).astype(np.float64)
    mapped = map_box_back(pred, np.asarray(prev_state_xywh, np.float64),
                          np.asarray(resize_factor, np.float64), params.search_size)
    H, W = image_hw
    return clip_box_with_margin(mapped, np.asarray(H, np.float64), np.asarray(W, np.float64),
                                margin=params.clip_margin)


# ----------------------------------------------------------------------------------------------
# Device step
# ----------------------------------------------------------------------------------------------

def _normalize(images_u8: jax.Array) -> jax.Array:
    """uint8 NHWC -> float32 ((x / 255) - mean) / std, the official Preprocessor's order."""
    x = images_u8.astype(jnp.float32) / jnp.float32(255.0)
    mean = jnp.asarray(IMAGENET_MEAN, jnp.float32)
    std = jnp.asarray(IMAGENET_STD, jnp.float32)
    return (x - mean) / std


def inference_config(model_config: ModelConfig, attention: str | None = None) -> ModelConfig:
    """The checkpoint's architecture with the attention implementation used for tracking:
    ``attention`` or, when None, ``inference_attention()`` of the default backend (the fastest
    verified one; all give the same decisions and score maps within 1e-5)."""
    return model_config.replace(attention=attention or inference_attention())


def step_function(model_config: ModelConfig, dtype: Any = jnp.float32, attention: str | None = None):
    """Jitted ``step(variables, template_u8 (B,T,T,3), search_u8 (B,S,S,3), resize_factor (B,) f32,
    threshold ()) -> (box_px (B,4) f32 (cx,cy,w,h) crop pixels, decisions (B,L,Nx) bool, 1 = E_A)``.

    dtype: compute dtype of the network (float32 or bfloat16; parameters stay float32).
    attention: implementation (None = ``inference_attention()``, see :func:`inference_config`).
    One function per (architecture, dtype, attention), cached, so every tracker of that architecture
    shares the compiled executables (one per batch size and input sharding)."""
    config, dtype = inference_config(model_config, attention), jnp.dtype(dtype)
    if config.attention == "fused_cudnn" and (dtype != jnp.bfloat16 or jax.default_backend() != "gpu"):
        raise ConfigError(f"track.attention='fused_cudnn' needs an NVIDIA GPU and track.dtype='bfloat16' "
                          f"(backend {jax.default_backend()!r}, dtype {dtype.name!r})")
    return _cached_step(config, dtype)


def device_step(model_config: ModelConfig, dtype: Any = jnp.float32, attention: str | None = None,
                score_map: bool = False):
    """The un-jitted body of :func:`step_function` (used by ``grm_jax.export``). With ``score_map``
    it also returns the network's score map (B, Hs, Ws, 1) float32 (sigmoid, before the window)."""
    return _step_body(inference_config(model_config, attention), jnp.dtype(dtype), score_map)


@functools.lru_cache(maxsize=None)
def _cached_step(model_config: ModelConfig, dtype):
    return jax.jit(_step_body(model_config, dtype, False))


def _step_body(model_config: ModelConfig, dtype, score_map: bool):
    model = GRM(model_config) if dtype == jnp.float32 else GRM(model_config, dtype=dtype)
    window = jnp.asarray(hann2d(model_config.search_grid))[None, :, :, None]
    s = float(model_config.search_size)
    n_x = model_config.num_search_tokens

    def step(variables, template_u8, search_u8, resize_factor, threshold):
        out = model.apply(variables, _normalize(template_u8), _normalize(search_u8), threshold)
        response = window * out["score_map"]
        box = decode_boxes(response, out["size_map"], out["offset_map"])
        box_px = (box * jnp.float32(s)) / resize_factor.astype(jnp.float32)[:, None]
        if out["decisions"]:
            decisions = jnp.stack(out["decisions"], axis=1) > 0.5
        else:
            decisions = jnp.zeros((search_u8.shape[0], 0, n_x), bool)
        if score_map:
            return box_px, decisions, out["score_map"].astype(jnp.float32)
        return box_px, decisions

    return step


def compute_dtype(model, dtype=None) -> jnp.dtype:
    """The tracker's compute dtype: ``dtype`` ('float32' | 'bfloat16' or a jnp dtype), else the model's."""
    default = jnp.dtype(getattr(model, "dtype", jnp.float32)).name
    return jnp.dtype(resolve_dtype(dtype, default))


def resolve_tracking(model: GRM, track_config=None, threshold: float = 0.0, dtype=None, attention: str | None = None,
                     backend: str | None = None) -> tuple[TrackParams, jnp.dtype, float, str]:
    """The settings both trackers take, each checked by its one resolver (grm_jax.track_settings):
    (params, compute dtype, threshold in [0, 1), attention implementation (None = the fastest
    verified one for ``backend``, default: jax's default backend))."""
    return (TrackParams.from_config(track_config, model.config), compute_dtype(model, dtype),
            check_threshold(threshold, "threshold"), resolve_attention(attention, backend))


def run_step(model_config: ModelConfig, dtype, precision, variables, template_u8, search_u8, resize_factor,
             threshold, attention: str | None = None):
    """Dispatches the cached jitted step under the requested matmul precision (asynchronously: the
    results are device arrays). resize_factor: (B,) numbers, or a float32 device array already
    placed like ``search_u8`` (the batched tracker shards it)."""
    fn = step_function(model_config, dtype, attention)
    rf = resize_factor if isinstance(resize_factor, jax.Array) else np.asarray(resize_factor, np.float32).reshape(-1)
    thr = np.float32(threshold)
    if precision is None:
        return fn(variables, template_u8, search_u8, rf, thr)
    with jax.default_matmul_precision(precision):
        return fn(variables, template_u8, search_u8, rf, thr)


# ----------------------------------------------------------------------------------------------
# Tracker
# ----------------------------------------------------------------------------------------------

class Tracker:
    """The official GRM tracker for one sequence.

    Args:
      model: a ``grm_jax.GRM`` (its config decides the template/search crop sizes).
      variables: {'params', 'batch_stats'}.
      track_config: the run config's ``track`` (TrackConfig), a mapping of its fields, a
        TrackParams, or None for the defaults (see ``TrackParams.from_config``).
      threshold: token-division threshold (0 = argmax; benchmark defaults in
        ``grm_jax.datasets.official_threshold``).
      dtype: compute dtype, 'float32' or 'bfloat16' (None = the model's; run config ``track.dtype``).
      attention: attention implementation (None = ``inference_attention()`` for the backend; the
        checkpoint's ``ModelConfig.attention`` is not used for tracking).

    After each ``track`` call: ``state`` (x1,y1,w,h float64), ``last_search_crop`` (S,S,3) uint8,
    ``last_resize_factor``, ``last_search_box`` (the box the crop was centred on) and
    ``last_decisions`` ((L, Nx) bool, 1 = E_A, one row per dividing block ``divide_layers``).
    """

    def __init__(self, model: GRM, variables, track_config=None, threshold: float = 0.0, dtype=None,
                 attention: str | None = None):
        self.model_config: ModelConfig = model.config
        self.params, self.dtype, self.threshold, self.attention = resolve_tracking(
            model, track_config, threshold, dtype, attention)
        self.variables = jax.device_put({k: variables[k] for k in ("params", "batch_stats")})
        self.state: np.ndarray | None = None
        self.template_crop: np.ndarray | None = None
        self.template_resize_factor: float | None = None
        self._template_dev = None
        self._decisions_dev = None
        self.last_search_crop: np.ndarray | None = None
        self.last_resize_factor: float | None = None
        self.last_search_box: np.ndarray | None = None
        self.last_box_px: np.ndarray | None = None
        self.frame_index = 0
        self._warm = False  # the step has been called once (see initialize)

    @property
    def divide_layers(self) -> tuple[int, ...]:
        """0-based block indices of the rows of ``last_decisions``."""
        return tuple(self.model_config.divide_layers)

    def initialize(self, frame, box_xywh) -> None:
        """Crops the template (factor 2, size 128) around ``box_xywh`` = (x, y, w, h) in ``frame``.

        The first initialize of a tracker also calls the step once on a blank search crop and waits
        for it, so that tracing, compilation (or a compilation-cache load) and first-call costs
        land here and never in the time of a :meth:`track` call."""
        frame = check_frame(frame, "first frame")
        box = validate_box(box_xywh, "init box", image_hw=frame.shape[:2])
        crop, rf = prepare_template(frame, box, self.params)
        self.template_crop, self.template_resize_factor = crop, rf
        self._template_dev = jax.device_put(crop[None])
        if not self._warm:
            blank = np.zeros((1, self.params.search_size, self.params.search_size, 3), np.uint8)
            jax.block_until_ready(run_step(self.model_config, self.dtype, self.params.matmul_precision,
                                           self.variables, self._template_dev, blank, [1.0], self.threshold,
                                           self.attention))
            self._warm = True
        self.state = box.copy()
        self.frame_index = 0
        self._decisions_dev = None

    def track(self, frame, state=None) -> np.ndarray:
        """Tracks one frame -> (4,) float64 (x1, y1, w, h); updates ``state``.

        state: optional previous state to crop around instead of the tracker's own (teacher forcing).
        """
        if self._template_dev is None:
            raise RuntimeError("Tracker.track called before initialize")
        frame = check_frame(frame, f"frame {self.frame_index + 1}")
        prev = self.state if state is None else validate_box(state, "state")
        crop, rf = prepare_search(frame, prev, self.params)
        box_px, decisions = run_step(self.model_config, self.dtype, self.params.matmul_precision, self.variables,
                                     self._template_dev, crop[None], [rf], self.threshold, self.attention)
        box_px = np.asarray(box_px)[0]
        new_state = postprocess(box_px, prev, rf, frame.shape[:2], self.params)
        self.last_search_crop, self.last_resize_factor, self.last_search_box = crop, rf, prev
        self.last_box_px = box_px
        self._decisions_dev = decisions
        self.state = new_state
        self.frame_index += 1
        return new_state.copy()

    @property
    def last_decisions(self) -> np.ndarray | None:
        """(L, Nx) bool of the last tracked frame (True = E_A, False = E_S); None before tracking."""
        if self._decisions_dev is None:
            return None
        return np.asarray(self._decisions_dev)[0]
