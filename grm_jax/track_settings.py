"""How a saved model is tracked: one resolver per setting, and the one precedence rule.

A model directory (and a training workdir) records the track settings it was made with in
``track_config.json`` (:class:`ModelTrack`: crop factors, clip margin and, when the model has
its own, default division thresholds per benchmark). Track, evaluate, score, the VOT server and
export all resolve their settings here:

    PRECEDENCE: command line > the model's track_config.json > the run config file > built-in defaults

A run config file that names other crop factors or clip margin than the model's is overruled by
the model, with one printed line saying so; the same value given on the command line
(``--config.track.search_factor=4``, ``--threshold``) wins over the model, also with one line.

Resolvers (each validates exactly as the run config does, so a value the run config accepts is
never refused later): :func:`resolve_threshold`, :func:`resolve_dtype`, :func:`resolve_attention`,
:func:`resolve_precision`; :func:`resolve_for_model` applies them all for one model.
"""
from __future__ import annotations

import dataclasses
import math
import pathlib
from typing import Callable, Mapping

from grm_jax.datasets.registry import official_threshold, resolve
from grm_jax.errors import ConfigError
from grm_jax.model.config import ATTENTION_IMPLS, _show
from grm_jax.run_config import DTYPES, PRECISIONS, RunConfig, TrackConfig, check_threshold

__all__ = ["MODEL_KEYS", "PRECEDENCE", "ModelTrack", "Resolved", "effective_track", "resolve_attention",
           "resolve_dtype", "resolve_for_checkpoint", "resolve_for_model", "resolve_precision", "resolve_threshold", "with_override"]

PRECEDENCE = "command line > the model's track_config.json > the run config file > built-in defaults"
# The track settings a model carries (what it was trained or converted with).
MODEL_KEYS = ("template_factor", "search_factor", "clip_margin")


@dataclasses.dataclass(frozen=True)
class ModelTrack:
    """The track settings a model carries: ``template_factor`` / ``search_factor`` (crop side =
    factor * sqrt(w*h)), ``clip_margin`` (pixels) and ``thresholds`` (benchmark registry name ->
    the model's own default division threshold; empty = the registry's official values)."""

    template_factor: float = TrackConfig.template_factor
    search_factor: float = TrackConfig.search_factor
    clip_margin: int = TrackConfig.clip_margin
    thresholds: Mapping[str, float] = dataclasses.field(default_factory=dict)

    @classmethod
    def of(cls, track: TrackConfig, thresholds: Mapping[str, float] | None = None) -> "ModelTrack":
        """The model-carried part of a run config's ``track`` section."""
        return cls(**{k: getattr(track, k) for k in MODEL_KEYS}, thresholds=dict(thresholds or {}))

    def to_dict(self) -> dict:
        return {**{k: getattr(self, k) for k in MODEL_KEYS}, "thresholds": dict(self.thresholds)}

    @classmethod
    def from_dict(cls, d) -> "ModelTrack":
        """Checks every field's type and range; ConfigError naming the key otherwise."""
        if not isinstance(d, Mapping):
            raise ConfigError(f"expected a JSON object, got {type(d).__name__}")
        known = (*MODEL_KEYS, "thresholds")
        for key in d:
            if key not in known:
                raise ConfigError(f"unknown key {key!r}; known: {', '.join(known)}")
        missing = [k for k in known if k not in d]
        if missing:
            raise ConfigError(f"missing key(s) {missing}")
        for key in ("template_factor", "search_factor"):
            value = d[key]
            if not _is_number(value) or not 0 < value <= MAX_FACTOR:
                raise ConfigError(f"{key}={_show(value)}: expected a number in (0, {MAX_FACTOR}]")
        if isinstance(d["clip_margin"], bool) or not isinstance(d["clip_margin"], int) or d["clip_margin"] < 0:
            raise ConfigError(f"clip_margin={d['clip_margin']!r}: expected an integer >= 0")
        if not isinstance(d["thresholds"], Mapping):
            raise ConfigError(f"thresholds={d['thresholds']!r}: expected an object benchmark -> threshold")
        thresholds = {}
        for name, value in d["thresholds"].items():
            thresholds[resolve(name, "eval", where="thresholds").name] = check_threshold(value, f"thresholds.{name}")
        return cls(float(d["template_factor"]), float(d["search_factor"]), d["clip_margin"], thresholds)


# A crop factor beyond this is a corrupt file, not a tracking recipe (official: 2, 4, 5).
MAX_FACTOR = 16.0


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def with_override(run: RunConfig, key: str, value) -> RunConfig:
    """``run`` with ``track.<key> = value`` set as if on the command line (it then wins over the model)."""
    track = dataclasses.replace(run.track, **{key: value})
    return dataclasses.replace(run, track=track, overridden=run.overridden | {f"track.{key}"})


def effective_track(run: RunConfig, model: ModelTrack | None, where: str = "the model",
                    say: Callable[[str], None] = print) -> TrackConfig:
    """``run.track`` with the model's crop factors and clip margin where the precedence rule says
    so (see module doc); says one line for each value that differs between the two."""
    if model is None:
        return run.track
    changes = {}
    for key in MODEL_KEYS:
        mine, theirs = getattr(run.track, key), getattr(model, key)
        if mine == theirs:
            continue
        if f"track.{key}" in run.overridden:
            say(f"note: track.{key}={mine} from the command line overrides {where}'s {theirs} ({PRECEDENCE})")
        else:
            changes[key] = theirs
            say(f"note: track.{key}={theirs} from {where} wins over the run config's {mine} "
                f"({PRECEDENCE}); set --config.track.{key}={mine} to use it")
    return dataclasses.replace(run.track, **changes)


def resolve_threshold(run: RunConfig, model: ModelTrack | None = None, benchmark: str | None = None) -> float:
    """The division threshold: a command-line value, else the model's for ``benchmark``, else the
    run config file's ``track.threshold``, else the benchmark's official value (0 = argmax
    without a benchmark). Always in [0, 1)."""
    value = run.track.threshold
    if value is None or "track.threshold" not in run.overridden:
        own = (model.thresholds if model is not None else {}).get(resolve(benchmark, "eval").name) \
            if benchmark is not None else None
        if own is not None:
            value = own
        elif value is None:
            value = official_threshold(benchmark) if benchmark is not None else 0.0
    return check_threshold(value)


def resolve_dtype(value, default: str = "float32") -> str:
    """'float32' | 'bfloat16' (None = ``default``); ConfigError naming track.dtype otherwise."""
    if value is None or isinstance(value, str):
        name = default if value is None else value
    else:  # a numpy / jax dtype or scalar type
        import numpy as np  # noqa: PLC0415

        try:
            name = np.dtype(value).name
        except TypeError:
            name = repr(value)
    if name not in DTYPES:
        raise ConfigError(f"track.dtype={_show(value)}: expected one of {', '.join(DTYPES)}")
    return name


def resolve_attention(value: str | None, backend: str | None = None) -> str:
    """The inference attention implementation (None = the fastest verified one for ``backend``,
    default jax's default backend)."""
    if value is None:
        from grm_jax.model.attention import inference_attention  # noqa: PLC0415  (imports jax)

        return inference_attention(backend)
    if value not in ATTENTION_IMPLS:
        raise ConfigError(f"track.attention={_show(value)}: expected one of {', '.join(ATTENTION_IMPLS)}")
    return value


def resolve_precision(value: str | None) -> str | None:
    """jax matmul precision ('highest' | 'high' | 'default'; None = jax's default)."""
    if value is not None and value not in PRECISIONS:
        raise ConfigError(f"track.matmul_precision={_show(value)}: expected one of {', '.join(PRECISIONS)}")
    return value


@dataclasses.dataclass(frozen=True)
class Resolved:
    """Every tracking setting of one run with one model: the effective ``track`` section, the
    division ``threshold``, compute ``dtype`` and ``attention`` implementation."""

    track: TrackConfig
    threshold: float
    dtype: str
    attention: str


def resolve_for_model(run: RunConfig, model: ModelTrack | None, benchmark: str | None = None,
                      backend: str | None = None, where: str = "the model",
                      say: Callable[[str], None] = print) -> Resolved:
    """All settings for tracking ``model`` (its :class:`ModelTrack`, None for none) under ``run``."""
    track = effective_track(run, model, where, say)
    return Resolved(track, resolve_threshold(run, model, benchmark), resolve_dtype(track.dtype),
                    resolve_attention(track.attention, backend))


def resolve_for_checkpoint(run: RunConfig, checkpoint, benchmark: str | None = None, threshold: float | None = None,
                           backend: str | None = None, say: Callable[[str], None] = print) -> Resolved:
    """:func:`resolve_for_model` for the model directory or training workdir ``checkpoint`` (its
    ``track_config.json``; None or a folder without one: the run config alone). ``threshold``
    (e.g. ``--threshold``) counts as given on the command line."""
    from grm_jax.checkpoint import TRACK_FILE, read_model_track  # noqa: PLC0415  (checkpoint imports this module)

    if threshold is not None:
        run = with_override(run, "threshold", threshold)
    model = read_model_track(checkpoint) if checkpoint is not None else None
    where = str(pathlib.Path(str(checkpoint)) / TRACK_FILE)
    return resolve_for_model(run, model, benchmark, backend, where, say)
