"""The typed run configuration: every default of a run, in one place.

A run config has six sections, each a frozen dataclass:

    model  ModelConfig   network shapes (saved with every checkpoint)
    init   InitConfig    initial weights (MAE encoder file) and the init seed
    data   DataConfig    dataset root folders (training AND evaluation), training mix, jitter
    train  TrainConfig   optimizer, schedule, checkpoints, logging
    track  TrackConfig   the tracking procedure (crop factors, clipping, precision, dtype)
    eval   EvalConfig    benchmark evaluation (batching, result format, bad frames, LaSOT protocol)

The user-facing ``configs/*.py`` files return an ``ml_collections.ConfigDict`` (made with
:func:`default_configdict` and edited); command-line ``--config.a.b=value`` overrides are
applied to it; then :func:`RunConfig.from_configdict` turns it into a ``RunConfig`` ONCE, at
the edge (``launch.py`` / the ``grm-jax`` command / the public ``run_*`` functions). Unknown
keys and values of the wrong type are refused there, naming the key. Code below the edge
receives the typed objects only.

Each value is stated once. Crop SIZES are the network's (``model.template_size`` /
``model.search_size``); crop FACTORS are the tracker's (``track.template_factor`` /
``track.search_factor``) and training crops use the same ones (:meth:`RunConfig.crop`);
per-benchmark division thresholds are in :mod:`grm_jax.datasets.registry`.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from typing import Any, Mapping

from grm_jax.datasets.registry import ROOT_KEYS, TRAIN, resolve
from grm_jax.errors import ConfigError
from grm_jax.model.config import ATTENTION_IMPLS, ModelConfig, _show

__all__ = ["check_threshold", "CropSpec", "DataConfig", "EvalConfig", "InitConfig", "Jitter", "RunConfig", "TrackConfig",
           "TrainConfig", "default_configdict", "parse_layer_ranges"]

PRECISIONS = ("highest", "high", "default")
DTYPES = ("float32", "bfloat16")
RESULT_FORMATS = ("int", "float")
BAD_FRAME_POLICIES = ("error", "skip")
LASOT_PROTOCOLS = ("grm", "official")  # what they mean: grm_jax.evaluate.metrics.LASOT_PROTOCOLS


@dataclasses.dataclass(frozen=True)
class InitConfig:
    """mae: path of an official ``mae_pretrain_vit_*.pth`` (None = random init, announced);
    seed: PRNG seed of the random initialisation."""

    mae: str | None = None
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class Jitter:
    """Training-crop jitter: centre shift in units of sqrt(w*h) (scaled by a uniform draw),
    and log-normal size jitter of std ``scale``. Zero for the template officially."""

    center: float = 0.0
    scale: float = 0.0


@dataclasses.dataclass(frozen=True)
class CropSpec:
    """One crop as the training pipeline makes it: side ``factor * sqrt(w*h)`` around the
    (jittered) box, resized to ``size`` x ``size`` pixels."""

    factor: float
    size: int
    center_jitter: float = 0.0
    scale_jitter: float = 0.0


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """roots: dataset download folders keyed by ``grm_jax.datasets.ROOT_KEYS`` (None = not set;
    ``sample`` = the generated sample data's cache folder, None = ~/.cache/grm_jax);
    datasets / ratios: the training mix (registry names, sampling weights);
    samples_per_epoch, max_gap: pairs per epoch and the largest template/search frame gap;
    template_jitter / search_jitter: training-crop jitter; num_workers: grain worker processes
    (0 = in the training process); num_threads: reader threads per process;
    packed_dir: folder of ArrayRecord packs (``python -m data_pipelines.pack``);
    reduced_decode: decode each training frame at 1/2, 1/4 or 1/8 of its size (libjpeg DCT
    scaling) when its crop still has at least the crop's output size in pixels; faster, but the
    crops' pixels differ from the official ones (benchmarks/RESULTS.md); False = exact."""

    roots: Mapping[str, str | None] = dataclasses.field(default_factory=lambda: dict.fromkeys(ROOT_KEYS))
    datasets: tuple[str, ...] = ("got10k_train_full",)
    ratios: tuple[float, ...] = (1.0,)
    samples_per_epoch: int = 60000
    max_gap: int = 200
    template_jitter: Jitter = Jitter(0.0, 0.0)
    search_jitter: Jitter = Jitter(3.0, 0.25)
    num_workers: int = 8
    num_threads: int = 2
    packed_dir: str | None = None
    reduced_decode: bool = False


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """batch_size: GLOBAL batch (official 320 = 40 per GPU x 8); epochs / lr_drop_epoch: step
    schedule (LR x0.1 at the drop); lr (head), backbone_lr_mult, divide_lr (division
    predictors); weight_decay; grad_clip (global norm); bf16: bfloat16 compute;
    warmup_steps: LR warmup (not in the official recipe, 0 = none; see grm_jax.train.optimizer);
    shard_params: FSDP-style parameter sharding; checkpoint_every_steps / keep_checkpoints /
    log_every_steps; max_steps: cut the schedule short; seed: data and dropout streams;
    eval_after: evaluate the final checkpoint on the sample validation sequences (the sample
    run's own settings: configs/grm_sample_cpu.py, grm_sample_accelerator.py)."""

    batch_size: int = 320
    epochs: int = 100
    lr_drop_epoch: int = 80
    lr: float = 4e-4
    backbone_lr_mult: float = 0.1
    divide_lr: float = 4e-4
    weight_decay: float = 1e-4
    grad_clip: float = 0.1
    warmup_steps: int = 0
    bf16: bool = False
    shard_params: bool = False
    checkpoint_every_steps: int = 1000
    keep_checkpoints: int = 3
    log_every_steps: int = 50
    max_steps: int | None = None
    seed: int = 0
    eval_after: bool = False


@dataclasses.dataclass(frozen=True)
class TrackConfig:
    """template_factor / search_factor: crop side = factor * sqrt(w*h) of the previous box
    (2 / 4 for ViT-B 256, 2 / 5 for GRM-L320); clip_margin: the final box keeps at least this
    many pixels inside the image; matmul_precision: 'highest' = true fp32 (parity), 'default'
    lets GPUs use TF32/bf16 passes; dtype: compute dtype of the network; attention: inference
    attention implementation (None = the fastest verified one for the backend);
    threshold: division threshold (None = the benchmark's official value, 0 = argmax)."""

    template_factor: float = 2.0
    search_factor: float = 4.0
    clip_margin: int = 10
    matmul_precision: str = "highest"
    dtype: str = "float32"
    attention: str | None = None
    threshold: float | None = None


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """batch_sequences: sequences advanced together in one device call; result_format: 'int'
    (the official integer files) or 'float'; on_bad_frame: 'error' stops at an unreadable
    frame, 'skip' carries the previous box over it and records it in the summary;
    lasot_protocol: how LaSOT scores are divided, 'grm' (by the valid frames, GRM's analysis) or
    'official' (by all frames, the LaSOT toolkit and upstream pytracking)."""

    batch_sequences: int = 8
    result_format: str = "int"
    on_bad_frame: str = "error"
    lasot_protocol: str = "grm"


_SECTIONS = {"model": ModelConfig, "init": InitConfig, "data": DataConfig, "train": TrainConfig,
             "track": TrackConfig, "eval": EvalConfig}


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """The whole run configuration (see module doc). ``name`` is the config's name (used for the
    default training workdir ``runs/<name>``)."""

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    init: InitConfig = InitConfig()
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = TrainConfig()
    track: TrackConfig = TrackConfig()
    eval: EvalConfig = EvalConfig()
    name: str = "run"
    # Dotted keys set on the command line (``track.search_factor``...): they win over a saved
    # model's own track settings (grm_jax.track_settings.PRECEDENCE). Not part of to_dict().
    overridden: frozenset = frozenset()
    # root key -> where its folder came from (command line, run config file, datasets.json,
    # GRM_DATA_ROOT; grm_jax.datasets.roots). Not part of to_dict().
    root_sources: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        _validate(self)

    def crop(self, part: str) -> CropSpec:
        """The training crop of ``part`` ('template' or 'search'): the network's size, the
        tracker's factor and the data section's jitter."""
        if part not in ("template", "search"):
            raise ValueError(f"part must be 'template' or 'search', got {part!r}")
        jitter = getattr(self.data, f"{part}_jitter")
        return CropSpec(factor=getattr(self.track, f"{part}_factor"), size=getattr(self.model, f"{part}_size"),
                        center_jitter=jitter.center, scale_jitter=jitter.scale)

    def replace(self, **sections) -> "RunConfig":
        """A copy with whole sections replaced (``run.replace(train=dataclasses.replace(run.train, lr=0))``)."""
        return dataclasses.replace(self, **sections)

    @classmethod
    def from_configdict(cls, config, name: str = "run", overridden=(), root_sources=None) -> "RunConfig":
        """Builds and validates the typed config from a ConfigDict (or nested dict).

        Raises ConfigError naming the first unknown key (with the closest valid keys) or the
        first value of the wrong type or out of range."""
        tree = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        unknown = sorted(set(tree) - set(_SECTIONS))
        if unknown:
            raise _unknown_key(unknown[0], list(_SECTIONS))
        sections = {key: _build(section_cls, tree.get(key, {}), key) for key, section_cls in _SECTIONS.items()}
        return cls(name=name, overridden=frozenset(overridden), root_sources=dict(root_sources or {}), **sections)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (JSON-serialisable), the inverse of :meth:`from_configdict`."""
        out = {key: _plain(getattr(self, key)) for key in _SECTIONS}
        out["model"] = self.model.to_dict()
        return out


def check_threshold(value, key: str = "track.threshold") -> float:
    """The one validation of a division threshold: a number in [0, 1) (0 = argmax; a search token
    joins E_A when P(E_S) < threshold, so 1 would put every token there). Returns it as float."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not 0.0 <= value < 1.0:
        raise ConfigError(f"{key}={_show(value)}: must be a number in [0, 1) (0 = argmax)",
                          hint="leave it unset for the benchmark's official value")
    return float(value)


def default_configdict():
    """The defaults as an (unlocked) ml_collections.ConfigDict: what ``configs/*.py`` start from."""
    import ml_collections  # noqa: PLC0415

    tree = RunConfig().to_dict()
    tree["model"]["divide_layers"] = "1-11"
    return ml_collections.ConfigDict(tree)


def parse_layer_ranges(spec, depth: int) -> tuple[int, ...]:
    """'1-11' / '4-11,0' / '' / 'none' / 'all' / [1, 2] -> sorted 0-based block indices."""
    if spec is None:
        return tuple(range(1, depth))
    if isinstance(spec, (list, tuple)):
        return tuple(sorted({int(i) for i in spec}))
    text = str(spec).strip().lower()
    if text in ("", "none"):
        return ()
    if text == "all":
        return tuple(range(depth))
    layers = set()
    try:
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            layers.update(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise ConfigError(f"model.divide_layers={spec!r} is not a list of block ranges",
                          hint="use e.g. '1-11', '4-11', '0-11' or ''") from None
    return tuple(sorted(layers))


# ------------------------------------------------------------------------------------------------
# Building sections from plain trees
# ------------------------------------------------------------------------------------------------

def _unknown_key(key: str, valid: list[str], prefix: str = "") -> ConfigError:
    close = difflib.get_close_matches(key, valid, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(prefix + c for c in close)}?" if close else \
        f"valid keys of {prefix.rstrip('.') or 'the config'}: {', '.join(valid)}"
    return ConfigError(f"unknown config key {prefix + key!r}", hint=hint)


def _build(section_cls, values, prefix: str):
    if dataclasses.is_dataclass(values):
        return values
    if not isinstance(values, Mapping):
        raise ConfigError(f"config.{prefix} must be a section (key: value pairs), got {values!r}")
    values = dict(values)
    if section_cls is ModelConfig:
        values["divide_layers"] = parse_layer_ranges(values.get("divide_layers"), int(values.get("depth", 12)))
    hints = typing.get_type_hints(section_cls)
    fields = [f.name for f in dataclasses.fields(section_cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise _unknown_key(key, fields, prefix + ".")
        kwargs[key] = _coerce(value, hints[key], f"{prefix}.{key}")
    try:
        return section_cls(**kwargs)
    except ValueError as err:  # ModelConfig's checks name the field: 'depth=0: expected ...'
        raise ConfigError(f"config.{prefix}.{err}") from None


def _coerce(value, hint, key: str):
    """Checks ``value`` against the annotation ``hint`` and converts lists to tuples, comma
    strings and single numbers to tuples and ints to floats; ConfigError names ``key`` otherwise."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, key)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key)
    if origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]  # one value for a one-element list, e.g. --config.data.ratios=1.0
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config.{key}={_show(value)}: expected a list")
        return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
    if origin in (Mapping, dict) or hint is Mapping:
        if not isinstance(value, Mapping):
            raise ConfigError(f"config.{key}={_show(value)}: expected a section")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config.{key}={_show(value)}: expected True or False")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config.{key}={_show(value)}: expected an integer")
        return value
    if hint is float:
        if isinstance(value, str):
            try:
                value = float(value)  # 'nan' / 'inf' from the command line; ranges checked later
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config.{key}={_show(value)}: expected a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"config.{key}={_show(value)}: expected a string")
        return value
    return value


def _plain(obj):
    if dataclasses.is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return [_plain(v) for v in obj]
    return obj


# ------------------------------------------------------------------------------------------------
# Cross-field checks
# ------------------------------------------------------------------------------------------------

def _require(ok: bool, key: str, value, why: str) -> None:
    if not ok:
        raise ConfigError(f"config.{key}={_show(value)}: {why}")


def _validate(run: RunConfig) -> None:
    d, t, k, e = run.data, run.train, run.track, run.eval
    unknown_roots = sorted(set(d.roots) - set(ROOT_KEYS))
    if unknown_roots:
        raise _unknown_key(unknown_roots[0], list(ROOT_KEYS), "data.roots.")
    for name in d.datasets:
        resolve(name, TRAIN, where="config.data.datasets")
    _require(len(d.ratios) == len(d.datasets), "data.ratios", list(d.ratios),
             f"needs one weight per dataset ({len(d.datasets)}: {', '.join(d.datasets)})")
    _require(all(math.isfinite(r) and r >= 0 for r in d.ratios) and sum(d.ratios) > 0, "data.ratios",
             list(d.ratios), "weights must be finite, >= 0 and not all 0")
    for key in ("samples_per_epoch", "max_gap"):
        _require(getattr(d, key) >= 1, f"data.{key}", getattr(d, key), "must be >= 1")
    _require(d.num_workers >= 0 and d.num_threads >= 1, "data.num_workers/num_threads",
             (d.num_workers, d.num_threads), "need workers >= 0 and threads >= 1")
    for key in ("batch_size", "epochs", "lr_drop_epoch", "checkpoint_every_steps", "keep_checkpoints", "log_every_steps"):
        _require(getattr(t, key) >= 1, f"train.{key}", getattr(t, key), "must be >= 1")
    _require(t.warmup_steps >= 0, "train.warmup_steps", t.warmup_steps, "must be >= 0 (0 = no warmup)")
    _require(t.max_steps is None or t.max_steps >= 1, "train.max_steps", t.max_steps, "must be >= 1 (or None)")
    for key in ("lr", "backbone_lr_mult", "divide_lr", "weight_decay", "grad_clip"):
        value = getattr(t, key)
        _require(math.isfinite(value) and value >= 0, f"train.{key}", value, "must be a finite number >= 0")
    for key in ("template_factor", "search_factor"):
        value = getattr(k, key)
        _require(math.isfinite(value) and value > 0, f"track.{key}", value, "must be a finite number > 0")
    _require(k.clip_margin >= 0, "track.clip_margin", k.clip_margin, "must be >= 0")
    _require(k.matmul_precision in PRECISIONS, "track.matmul_precision", k.matmul_precision,
             f"expected one of {', '.join(PRECISIONS)}")
    _require(k.dtype in DTYPES, "track.dtype", k.dtype, f"expected one of {', '.join(DTYPES)}")
    if k.threshold is not None:
        check_threshold(k.threshold)
    _require(k.attention is None or k.attention in ATTENTION_IMPLS, "track.attention", k.attention,
             f"expected None (the fastest verified one) or one of {', '.join(ATTENTION_IMPLS)}")
    _require(e.batch_sequences >= 1, "eval.batch_sequences", e.batch_sequences, "must be >= 1")
    _require(e.result_format in RESULT_FORMATS, "eval.result_format", e.result_format,
             f"expected one of {', '.join(RESULT_FORMATS)}")
    _require(e.on_bad_frame in BAD_FRAME_POLICIES, "eval.on_bad_frame", e.on_bad_frame,
             f"expected one of {', '.join(BAD_FRAME_POLICIES)}")
    _require(e.lasot_protocol in LASOT_PROTOCOLS, "eval.lasot_protocol", e.lasot_protocol,
             f"expected one of {', '.join(LASOT_PROTOCOLS)}")
