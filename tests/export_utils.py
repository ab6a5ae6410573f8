"""Shared by test_export.py and test_onnx.py: the tiny fixture model as a model directory, real
tracker crops of the track_tiny video, and the live device step's outputs on them."""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from conftest import FIXTURES
from convert_weights import convert_grm_checkpoint
from grm_jax import load_model, save_model
from grm_jax.track.tracker import Tracker, device_step, run_step

THRESHOLDS = (0.0, 0.4)


def make_model_dir(directory):
    config, variables = convert_grm_checkpoint(str(FIXTURES / "grm_tiny" / "state_dict.npz"))
    return save_model(directory, config, variables)


@functools.lru_cache(maxsize=None)
def _load(model_dir: str):
    return load_model(model_dir)


def tracker_crops(model_dir, count: int):
    """(template (count,T,T,3) u8, search (count,S,S,3) u8, resize_factor (count,) f32): the crops
    our Tracker feeds its device step on frames 1..count of the track_tiny video."""
    model, variables = _load(str(model_dir))
    video = np.load(FIXTURES / "track_tiny" / "frames.npz")
    tracker = Tracker(model, variables, None, threshold=0.0)
    tracker.initialize(video["frames"][0], video["gt_visible_xywh"][0])
    searches, factors = [], []
    for frame in video["frames"][1:count + 1]:
        tracker.track(frame)
        searches.append(tracker.last_search_crop)
        factors.append(tracker.last_resize_factor)
    template = np.repeat(tracker.template_crop[None], count, axis=0)
    return template, np.stack(searches), np.asarray(factors, np.float32)


def live_outputs(model_dir, template, search, resize_factor, threshold):
    """(box_px, decisions, score_map) of the tracker's live fp32 device step, as numpy arrays."""
    model, variables = _load(str(model_dir))
    box_px, decisions = run_step(model.config, jnp.float32, "highest", variables, template, search,
                                 resize_factor, threshold)
    with jax.default_matmul_precision("highest"):
        _, _, score_map = jax.jit(device_step(model.config, score_map=True))(
            variables, template, search, np.asarray(resize_factor, np.float32), np.float32(threshold))
    return np.asarray(box_px), np.asarray(decisions), np.asarray(score_map)


def division_margins(model_dir, template, search, threshold):
    """(B, L, Nx) distance of each token's P(E_S) from its decision boundary (0.5 for the argmax
    at threshold 0, else the threshold), from the live fp32 network: a decision can only flip
    between two implementations that differ by more than this."""
    from grm_jax.track.tracker import _normalize

    model, variables = _load(str(model_dir))
    with jax.default_matmul_precision("highest"):
        out = jax.jit(model.apply)(variables, _normalize(jnp.asarray(template)), _normalize(jnp.asarray(search)),
                                   jnp.float32(threshold))
    p_es = np.stack([np.exp(np.asarray(lp, np.float64))[..., 0] for lp in out["log_probs"]], axis=1)
    return np.abs(p_es - (threshold if threshold > 0 else 0.5))
