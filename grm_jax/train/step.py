"""One GRM training step (forward in training mode, loss, gradients, AdamW update), jitted over a
device mesh; plus the batch placement helper.

Batch (global, dict of arrays with the batch first):
  template   (B, T, T, 3) float32 normalized RGB
  search     (B, S, S, 3) float32
  search_box (B, 4) float32 normalized x1, y1, w, h in the search crop
  heatmap    (B, S/16, S/16) float32 Gaussian labels
Other keys of a pipeline batch are dropped before the device transfer (``STEP_KEYS``).

RNG: step ``s`` draws its Gumbel noise and drop-path masks from ``fold_in(state.rng, s)``, so a
resumed run repeats exactly the randomness of an uninterrupted one. Random bits are generated
with the partitionable threefry (jax default), so they do not depend on the device layout.

BatchNorm in the head uses the statistics of the GLOBAL batch (as SyncBatchNorm; the official
DDP run normalised over each GPU's 40 samples), so the result does not depend on the device count.
"""
from __future__ import annotations

from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from grm_jax.model.grm import GRM
from grm_jax.train import loss as loss_lib
from grm_jax.distributed import batch_sharding, replicated_sharding
from grm_jax.train.state import TrainState

__all__ = ["STEP_KEYS", "make_train_step", "put_batch", "step_rngs"]

STEP_KEYS = ("template", "search", "search_box", "heatmap")

# XLA:CPU compiles the train step with only the matmuls handed to the YNNPACK library; the
# elementwise and reduction fusions (LayerNorm, GELU, softmax, AdamW, their gradients) stay with
# XLA's own loop emitter, which fuses them into fewer passes. Same arithmetic up to float rounding
# order; ViT-B batch 2: 5-7 % less wall and CPU time per step (benchmarks/train_ab.py --change
# ynn_dot, benchmarks/RESULTS.md). Inference keeps XLA's default, which is faster for the forward.
CPU_TRAIN_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_DOT"}


def step_rngs(base_rng: jax.Array, step) -> dict:
    """{'gumbel', 'dropout'} keys of optimizer step ``step``."""
    gumbel, dropout = jax.random.split(jax.random.fold_in(base_rng, step))
    return {"gumbel": gumbel, "dropout": dropout}


def _loss_and_aux(model: GRM, params, batch_stats, batch, rngs):
    out, new_vars = model.apply({"params": params, "batch_stats": batch_stats}, batch["template"],
                                batch["search"], threshold=0.0, train=True, rngs=rngs, mutable=["batch_stats"])
    total, terms = loss_lib.compute_losses(out["boxes"], out["score_map"], batch["search_box"], batch["heatmap"])
    ea = [jnp.mean(d.astype(jnp.float32)) for d in out["decisions"]]
    return total, (terms, new_vars["batch_stats"], ea)


def make_train_step(model: GRM, tx: optax.GradientTransformation, lr_fn: Callable[[jax.Array], Mapping],
                    mesh=None, state_sharding=None, donate: bool = True):
    """Returns ``step(state, batch) -> (new_state, metrics)``.

    With ``mesh`` the function is jitted with explicit shardings: batch split along 'batch',
    state as ``state_sharding`` (default replicated), metrics replicated. ``batch`` must then be
    a dict of global arrays (see ``put_batch``) or host arrays of the full batch (single process).
    """
    divide_layers = model.config.divide_layers

    def train_step(state: TrainState, batch):
        batch = {k: batch[k] for k in STEP_KEYS}
        rngs = step_rngs(state.rng, state.step)
        grad_fn = jax.value_and_grad(lambda p: _loss_and_aux(model, p, state.batch_stats, batch, rngs),
                                     has_aux=True)
        (total, (terms, batch_stats, ea)), grads = grad_fn(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": total, "focal": terms["focal"], "giou": terms["giou"], "l1": terms["l1"],
                   "iou": terms["iou"], "grad_norm": optax.tree.norm(grads)}
        metrics.update({f"lr/{g}": v for g, v in lr_fn(state.step).items()})
        metrics.update({f"ea_fraction/block_{i}": v for i, v in zip(divide_layers, ea)})
        new_state = state.replace(params=params, batch_stats=batch_stats, opt_state=opt_state,
                                  step=state.step + 1)
        return new_state, metrics

    donate_argnums = (0,) if donate else ()
    platform = mesh.devices.flat[0].platform if mesh is not None else jax.default_backend()
    options = dict(CPU_TRAIN_COMPILER_OPTIONS) if platform == "cpu" and CPU_TRAIN_COMPILER_OPTIONS else None
    if mesh is None:
        return jax.jit(train_step, donate_argnums=donate_argnums, compiler_options=options)
    data = batch_sharding(mesh)
    repl = replicated_sharding(mesh)
    state_in = state_sharding if state_sharding is not None else repl
    return jax.jit(train_step, in_shardings=(state_in, data), out_shardings=(state_in, repl),
                   donate_argnums=donate_argnums, compiler_options=options)


def put_batch(batch: Mapping[str, np.ndarray], mesh, global_batch_size: int | None = None) -> dict:
    """This process's part of the batch (host arrays) -> global arrays split along 'batch'.

    In a single process the local batch is the global batch. With several processes each one
    passes its own rows (global_batch / process_count, in process order).
    """
    sharding = batch_sharding(mesh)
    out = {}
    for k in STEP_KEYS:
        x = np.asarray(batch[k], np.float32)
        if jax.process_count() == 1:
            out[k] = jax.device_put(x, sharding)
        else:
            gshape = (global_batch_size or x.shape[0] * jax.process_count(),) + x.shape[1:]
            out[k] = jax.make_array_from_process_local_data(sharding, x, gshape)
    return out
