"""Architecture description of a GRM network (what a checkpoint must carry to be rebuilt).

`ModelConfig` is a frozen dataclass so it can be a static field of a Flax module and be
saved next to the weights as JSON. Everything about *tracking* (crop factors, thresholds)
lives in the run config instead; the network only knows its own shapes.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping

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
        if self.divide_layers is None:
            object.__setattr__(self, "divide_layers", tuple(range(1, self.depth)))
        object.__setattr__(self, "divide_layers", tuple(int(i) for i in self.divide_layers))
        object.__setattr__(self, "predictor_hidden", tuple(int(i) for i in self.predictor_hidden))
        self.validate()

    def validate(self) -> None:
        """Raises ValueError naming the first inconsistent field."""
        for name in ("embed_dim", "depth", "num_heads", "patch_size", "template_size", "search_size",
                     "head_channels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive integer")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"num_heads={self.num_heads} does not divide embed_dim={self.embed_dim}")
        for name in ("template_size", "search_size"):
            if getattr(self, name) % self.patch_size:
                raise ValueError(f"{name}={getattr(self, name)} is not a multiple of patch_size={self.patch_size}")
        if self.head_channels % 8:
            raise ValueError(f"head_channels={self.head_channels} must be divisible by 8")
        if self.relation not in RELATION_CATEGORIES:
            raise ValueError(f"relation={self.relation!r}; expected one of {sorted(RELATION_CATEGORIES)}")
        if self.template_agg not in TEMPLATE_AGGREGATIONS:
            raise ValueError(f"template_agg={self.template_agg!r}; expected one of {TEMPLATE_AGGREGATIONS}")
        if self.attention not in ATTENTION_IMPLS:
            raise ValueError(f"attention={self.attention!r}; expected one of {ATTENTION_IMPLS}")
        bad = [i for i in self.divide_layers if not 0 <= i < self.depth]
        if bad:
            raise ValueError(f"divide_layers {bad} outside 0..{self.depth - 1}")

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
    def from_dict(cls, d: Mapping[str, Any]) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown model config keys {unknown}; known: {sorted(known)}")
        d = dict(d)
        for key in ("divide_layers", "predictor_hidden"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
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
