"""Architecture description of a GRM network (what a checkpoint must carry to be rebuilt).

`ModelConfig` is a frozen dataclass so it can be a static field of a Flax module and be
saved next to the weights as JSON. Everything about *tracking* (crop factors, thresholds)
lives in the run config instead; the network only knows its own shapes.
"""
from __future__ import annotations

import dataclasses
import json
import math
import numbers
from typing import Any, Mapping

from grm_jax.errors import ConfigError

# Relation-modeling forms of the paper's Table 4. Each maps to the categories a *search*
# token may be assigned to in a dividing block (columns of the policy: 0=E_T, 1=E_S, 2=E_A).
#   two_stream : every search token in E_S  -> no template/search interaction
#   one_stream : every search token in E_A  -> full attention (OSTrack)
#   ts         : search tokens divided into E_T / E_S (a search token may join the template side)
#   tsa        : three-way division E_T / E_S / E_A
#   grm        : division into E_S / E_A (the paper's method)
RELATION_CATEGORIES = {
    "two_stream": (1,),
    "one_stream": (2,),
    "ts": (0, 1),
    "tsa": (0, 1, 2),
    "grm": (1, 2),
}
TEMPLATE_AGGREGATIONS = ("max", "mean")
ATTENTION_IMPLS = ("masked", "separate", "fused", "fused_cudnn")
DEFAULT_HEADS = {192: 3, 384: 6, 768: 12, 1024: 16}
# Bounds checked before a network is built (a corrupt or hostile model_config.json must not make
# the loader allocate for hours): generous for any ViT a tracker uses (ViT-g: 1408 x 40).
MAX_DEPTH, MAX_WIDTH, MAX_TOKENS, MAX_PARAMETERS = 64, 8192, 16384, 4e9
_INT_RANGES = {"embed_dim": (1, MAX_WIDTH), "depth": (1, MAX_DEPTH), "num_heads": (1, MAX_WIDTH),
               "patch_size": (1, 64), "template_size": (1, 4096), "search_size": (1, 4096),
               "head_channels": (8, MAX_WIDTH)}
# name -> (low, high, closed_low): closed_low=True means [low, high), else (low, high]
_FLOAT_RANGES = {"mlp_ratio": (0.0, 16.0, False), "drop_path_rate": (0.0, 1.0, True),
                 "layernorm_eps": (0.0, 0.1, False), "batchnorm_eps": (0.0, 0.1, False)}


def _show(value, limit: int = 60) -> str:
    """repr(value), shortened for a one-line message."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Shapes and switches of a GRM network.

    Attributes:
      embed_dim, depth, num_heads, mlp_ratio: ViT backbone size.
      patch_size: patch (and head stride) in pixels.
      template_size, search_size: input crop sizes in pixels (square).
      head_channels: C of the centre head (branch channels C, C/2, C/4, C/8).
      relation: one of RELATION_CATEGORIES (Table 4 of the paper).
      divide_layers: 0-based indices of the blocks that apply `relation`; the other blocks
        run plain full attention. Official GRM: blocks 1..depth-1 (Table 5 "2-12").
      template_agg: how the target representation is pooled from template tokens.
      predictor_hidden: hidden sizes of the division predictor MLP (fixed 384, 192).
      drop_path_rate: stochastic depth at the last block (linear from 0), training only.
      attention: 'masked' (one dense masked softmax, the official formula; training always uses
        it), 'separate' (one attention per query category with key masks, the paper's 33 fps
        variant), 'fused' (one ``jax.nn.dot_product_attention`` with a boolean category mask) or
        'fused_cudnn' (the same with cuDNN's kernel: NVIDIA GPUs, bfloat16). All but 'masked' are
        inference-only; trackers pick ``attention.inference_attention(backend)``.
      layernorm_eps, batchnorm_eps: normalisation epsilons (1e-6 / 1e-5 officially).
    """

    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    patch_size: int = 16
    template_size: int = 128
    search_size: int = 256
    head_channels: int = 256
    relation: str = "grm"
    divide_layers: tuple[int, ...] | None = None
    template_agg: str = "max"
    predictor_hidden: tuple[int, int] = (384, 192)
    drop_path_rate: float = 0.1
    attention: str = "masked"
    layernorm_eps: float = 1e-6
    batchnorm_eps: float = 1e-5

    def __post_init__(self):
        if self.divide_layers is None and _is_int(self.depth) and 1 <= self.depth <= MAX_DEPTH:
            object.__setattr__(self, "divide_layers", tuple(range(1, self.depth)))
        for name in ("divide_layers", "predictor_hidden"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        self.validate()
        for name in ("divide_layers", "predictor_hidden"):
            object.__setattr__(self, name, tuple(int(i) for i in getattr(self, name)))

    def validate(self) -> None:
        """Checks the type and range of every field before anything is allocated; raises
        ConfigError (a ValueError) naming the first bad field and its value."""
        for name, (lo, hi) in _INT_RANGES.items():
            value = getattr(self, name)
            if not _is_int(value) or not lo <= value <= hi:
                raise ConfigError(f"{name}={_show(value)}: expected an integer in [{lo}, {hi}]")
        for name, (lo, hi, closed) in _FLOAT_RANGES.items():
            value = getattr(self, name)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not ok or not (lo < value <= hi if not closed else lo <= value < hi):
                bounds = f"[{lo}, {hi})" if closed else f"({lo}, {hi}]"
                raise ConfigError(f"{name}={_show(value)}: expected a number in {bounds}")
        for name, valid in (("relation", tuple(RELATION_CATEGORIES)), ("template_agg", TEMPLATE_AGGREGATIONS),
                            ("attention", ATTENTION_IMPLS)):
            if getattr(self, name) not in valid:
                raise ConfigError(f"{name}={getattr(self, name)!r}: expected one of {', '.join(valid)}")
        for name, count in (("divide_layers", None), ("predictor_hidden", 2)):
            value = getattr(self, name)
            if (not isinstance(value, tuple) or not all(_is_int(i) for i in value)
                    or (count is not None and len(value) != count)):
                raise ConfigError(f"{name}={_show(value)}: expected {count or 'a list of'} integers")
        self._check_consistency()

    def _check_consistency(self) -> None:
        if self.embed_dim % self.num_heads:
            raise ConfigError(f"num_heads={self.num_heads} does not divide embed_dim={self.embed_dim}")
        for name in ("template_size", "search_size"):
            if getattr(self, name) % self.patch_size:
                raise ConfigError(f"{name}={getattr(self, name)} is not a multiple of patch_size={self.patch_size}")
        if self.head_channels % 8:
            raise ConfigError(f"head_channels={self.head_channels} must be divisible by 8")
        bad = [i for i in self.divide_layers if not 0 <= i < self.depth]
        if bad:
            raise ConfigError(f"divide_layers={list(self.divide_layers)}: {bad} outside 0..{self.depth - 1}")
        if not all(1 <= h <= MAX_WIDTH for h in self.predictor_hidden):
            raise ConfigError(f"predictor_hidden={list(self.predictor_hidden)}: sizes must be in [1, {MAX_WIDTH}]")
        if self.num_search_tokens + self.num_template_tokens > MAX_TOKENS:
            raise ConfigError(f"search_size={self.search_size}, template_size={self.template_size} with "
                              f"patch_size={self.patch_size}: more than {MAX_TOKENS} tokens")
        params = self.depth * (4 + 2 * self.mlp_ratio) * self.embed_dim ** 2
        if params > MAX_PARAMETERS:
            raise ConfigError(f"embed_dim={self.embed_dim}, depth={self.depth}, mlp_ratio={self.mlp_ratio}: "
                              f"about {params:.2g} parameters, more than the limit {MAX_PARAMETERS:.0e}")

    # Derived sizes -------------------------------------------------------------------
    @property
    def template_grid(self) -> int:
        return self.template_size // self.patch_size

    @property
    def search_grid(self) -> int:
        return self.search_size // self.patch_size

    @property
    def num_template_tokens(self) -> int:
        return self.template_grid ** 2

    @property
    def num_search_tokens(self) -> int:
        return self.search_grid ** 2

    @property
    def search_categories(self) -> tuple[int, ...]:
        return RELATION_CATEGORIES[self.relation]

    @property
    def predicts_division(self) -> bool:
        """True when dividing blocks own a learned predictor (more than one category)."""
        return len(self.search_categories) > 1

    # Serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["divide_layers"] = list(self.divide_layers)
        d["predictor_hidden"] = list(self.predictor_hidden)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], complete: bool = False) -> "ModelConfig":
        """The config of a dict of fields (ConfigError naming an unknown, missing or bad field).
        complete: every field must be present (a saved model_config.json)."""
        if not isinstance(d, Mapping):
            raise ConfigError(f"expected a JSON object of model fields, got {type(d).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ConfigError(f"unknown model config keys {unknown}; known: {', '.join(known)}")
        missing = [k for k in known if k not in d]
        if complete and missing:
            raise ConfigError(f"missing model config keys {missing}")
        return cls(**d)

    def replace(self, **changes) -> "ModelConfig":
        if "depth" in changes and "divide_layers" not in changes:
            changes["divide_layers"] = None
        return ModelConfig.from_dict({**self.to_dict(), **changes})


def vit_base(**overrides) -> ModelConfig:
    """ViT-B/16 GRM (GRM-GOT and GRM): dim 768, depth 12, heads 12, search 256."""
    return ModelConfig(embed_dim=768, depth=12, num_heads=12, **overrides)


def vit_large(**overrides) -> ModelConfig:
    """ViT-L/16 GRM-L320: dim 1024, depth 24, heads 16, search 320."""
    overrides.setdefault("search_size", 320)
    return ModelConfig(embed_dim=1024, depth=24, num_heads=16, **overrides)
