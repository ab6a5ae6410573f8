"""Training state and its placement on a device mesh.

``TrainState`` is a pytree: params, batch_stats (BatchNorm running statistics), opt_state, step
(number of optimizer steps taken) and rng (base key; step ``s`` uses ``fold_in(rng, s)``).

Placement: one ``Mesh`` over all devices (all processes), made by the one mesh helper
``grm_jax.distributed.batch_mesh`` (axis ``'batch'``). Batches are split along ``'batch'``; the state is replicated, or, with ``shard_params`` (FSDP style, for
ViT-L), every large array (params and the matching AdamW moments) is split along its largest
dimension that the device count divides; XLA inserts the all-gathers / reduce-scatters.
"""
from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from grm_jax.distributed import BATCH_AXIS, replicated_sharding
from grm_jax.model.grm import GRM, init_variables

__all__ = ["TrainState", "leaf_sharding",
           "state_shardings", "create_state", "abstract_state", "SHARD_MIN_SIZE"]

SHARD_MIN_SIZE = 1 << 16  # arrays with fewer elements stay replicated under shard_params


@flax.struct.dataclass
class TrainState:
    params: Any
    batch_stats: Any
    opt_state: Any
    step: jax.Array
    rng: jax.Array

    @property
    def variables(self) -> dict:
        return {"params": self.params, "batch_stats": self.batch_stats}


def leaf_sharding(shape, mesh: Mesh, shard_params: bool) -> NamedSharding:
    """Replicated, or (shard_params) split along the largest dim divisible by the mesh size."""
    n = mesh.shape[BATCH_AXIS]
    if not shard_params or n == 1 or int(np.prod(shape, dtype=np.int64)) < SHARD_MIN_SIZE:
        return replicated_sharding(mesh)
    dims = sorted(range(len(shape)), key=lambda i: (-shape[i], i))
    for i in dims:
        if shape[i] % n == 0:
            spec = [None] * len(shape)
            spec[i] = BATCH_AXIS
            return NamedSharding(mesh, P(*spec))
    return replicated_sharding(mesh)


def state_shardings(state_shape: TrainState, mesh: Mesh, shard_params: bool = False) -> TrainState:
    """Sharding tree matching ``state_shape`` (arrays or ShapeDtypeStructs). The rule depends on the
    shape only, so AdamW moments get the placement of their parameter."""
    return jax.tree_util.tree_map(lambda x: leaf_sharding(tuple(x.shape), mesh, shard_params), state_shape)


def _new_state(model: GRM, tx: optax.GradientTransformation, rng: jax.Array, variables=None) -> TrainState:
    init_rng, train_rng = jax.random.split(rng)
    if variables is None:
        variables = init_variables(model, init_rng)
    params = variables["params"]
    batch_stats = variables.get("batch_stats", {})
    return TrainState(params=params, batch_stats=batch_stats, opt_state=tx.init(params),
                      step=jnp.zeros((), jnp.int32), rng=train_rng)


def abstract_state(model: GRM, tx: optax.GradientTransformation) -> TrainState:
    """ShapeDtypeStruct tree of the state (no allocation), e.g. an orbax restore target."""
    return jax.eval_shape(lambda: _new_state(model, tx, jax.random.PRNGKey(0)))


def create_state(model: GRM, tx: optax.GradientTransformation, rng: jax.Array, mesh: Mesh,
                 shard_params: bool = False, variables: dict | None = None) -> TrainState:
    """Initial state placed on ``mesh``. ``variables``: start weights (e.g. converted MAE), else
    random init from ``rng``. Deterministic in ``rng`` whatever the mesh."""
    shardings = state_shardings(abstract_state(model, tx), mesh, shard_params)
    if variables is not None:
        variables = {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}
        variables = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float32), variables)
        shardings_v = {"params": shardings.params, "batch_stats": shardings.batch_stats}
        variables = _put_global(variables, shardings_v)
        fn = jax.jit(lambda r, v: _new_state(model, tx, r, v), out_shardings=shardings)
        return fn(rng, variables)
    fn = jax.jit(lambda r: _new_state(model, tx, r), out_shardings=shardings)
    return fn(rng)


def _put_global(tree, shardings):
    """Host numpy arrays (identical on every process) -> global arrays with ``shardings``."""
    def put(x, s):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, s, lambda idx: x[idx])
    return jax.tree_util.tree_map(put, tree, shardings)
