"""Training step: gradients reach every division predictor; a step sharded over 8 CPU devices
(batch split along 'data', large weights FSDP-sharded) equals the single-device step."""
import jax
import numpy as np
import optax
import pytest

from grm_jax.model.grm import GRM
from grm_jax.run_config import TrainConfig
from grm_jax.train import optimizer as opt_lib
from grm_jax.distributed import batch_mesh
from grm_jax.train import state as state_lib
from grm_jax.train import step as step_lib
from models import MICRO
from train_utils import synthetic_batch

BATCH = 8


@pytest.fixture(scope="module")
def setup():
    model = GRM(MICRO)
    tx, lr_fn = opt_lib.make_optimizer(TrainConfig(), steps_per_epoch=100)
    mesh1 = batch_mesh(jax.devices()[:1])
    state = state_lib.create_state(model, tx, jax.random.PRNGKey(0), mesh1)
    host_state = jax.device_get(state)
    batch = synthetic_batch(MICRO, BATCH, seed=3)
    return model, tx, lr_fn, host_state, batch


def _flat(tree):
    return {jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


@pytest.mark.slow
def test_every_division_predictor_gets_gradient(setup):
    model, _, _, host_state, batch = setup
    rngs = step_lib.step_rngs(host_state.rng, 0)

    def loss(params):
        return step_lib._loss_and_aux(model, params, host_state.batch_stats, batch, rngs)[0]

    grads = _flat(jax.jit(jax.grad(loss))(host_state.params))
    predictor = {k: v for k, v in grads.items() if "divide_predict" in k}
    layers = {k.split("]")[1] for k in predictor}  # "['blocks_i'"
    assert layers == {f"['blocks_{i}'" for i in MICRO.divide_layers}
    assert len(predictor) == 6 * len(MICRO.divide_layers)  # fc0, fc1, fc2 kernels + biases
    for k, g in predictor.items():
        assert np.all(np.isfinite(g)), k
        assert np.abs(g).max() > 0, f"zero gradient for division predictor {k}"


def _run(model, tx, lr_fn, host_state, batch, devices, shard_params):
    mesh = batch_mesh(devices)
    shardings = state_lib.state_shardings(host_state, mesh, shard_params)
    state = jax.device_put(host_state, shardings)
    fn = step_lib.make_train_step(model, tx, lr_fn, mesh=mesh, state_sharding=shardings, donate=False)
    new, metrics = fn(state, step_lib.put_batch(batch, mesh))
    return jax.device_get(new), jax.device_get(metrics), new


def _bias_before_batchnorm(key):
    # conv1..conv4 of each head branch are followed by BatchNorm: their exact gradient is 0 (a constant
    # shift is removed by the normalisation), so AdamW's normalised first step turns rounding noise
    # into an arbitrary update in [-lr, lr]. They are checked against that bound only.
    return "box_head" in key and key.endswith("['bias']") and any(f"['conv{i}']" in key for i in range(1, 5))


@pytest.mark.slow
def test_sharded_step_equals_single_device(setup, monkeypatch):
    model, tx, lr_fn, host_state, batch = setup
    monkeypatch.setattr(state_lib, "SHARD_MIN_SIZE", 1024)  # shard the micro model's larger weights too
    ref, ref_m, _ = _run(model, tx, lr_fn, host_state, batch, jax.devices()[:1], False)
    out, out_m, dev_state = _run(model, tx, lr_fn, host_state, batch, jax.devices()[:8], True)

    specs = [s.sharding.spec for s in jax.tree_util.tree_leaves(dev_state.params)]
    assert any("batch" in tuple(s) for s in specs), "shard_params sharded nothing"
    assert jax.device_count() == 8

    # fp32 tolerances: different reduction orders only.
    for k in ref_m:
        np.testing.assert_allclose(out_m[k], ref_m[k], rtol=2e-5, atol=1e-6, err_msg=k)
    for k, v in _flat(ref.batch_stats).items():
        np.testing.assert_allclose(_flat(out.batch_stats)[k], v, rtol=1e-5, atol=1e-6, err_msg=k)
    lr = 4e-4
    p0, p_ref, p_out = _flat(host_state.params), _flat(ref.params), _flat(out.params)
    for k in p_ref:
        if _bias_before_batchnorm(k):
            assert np.abs(p_out[k] - p0[k]).max() <= 1.01 * lr, k
            continue
        # AdamW's first update is lr * g / (|g| + 1e-8): exact up to rounding unless |g| ~ 1e-8.
        np.testing.assert_allclose(p_out[k], p_ref[k], rtol=0, atol=0.05 * lr, err_msg=k)
        close = np.abs(p_out[k] - p_ref[k]) <= 1e-3 * lr
        assert close.mean() >= 0.99, (k, close.mean())
    assert int(out.step) == int(ref.step) == 1


@pytest.mark.slow
def test_sharded_gradients_equal_single_device(setup, monkeypatch):
    # Same step with SGD(lr=1): the parameter change IS the gradient, compared directly.
    model, _, lr_fn, host_state, batch = setup
    monkeypatch.setattr(state_lib, "SHARD_MIN_SIZE", 1024)
    sgd = optax.sgd(1.0)
    host_state = host_state.replace(opt_state=sgd.init(host_state.params))
    ref, _, _ = _run(model, sgd, lr_fn, host_state, batch, jax.devices()[:1], False)
    out, _, _ = _run(model, sgd, lr_fn, host_state, batch, jax.devices()[:8], True)
    p0, p_ref, p_out = _flat(host_state.params), _flat(ref.params), _flat(out.params)
    gmax = max(np.abs(p_ref[k] - p0[k]).max() for k in p0)
    for k in p0:
        g_ref, g_out = p0[k] - p_ref[k], p0[k] - p_out[k]
        # relative to the leaf's own gradient scale, floor at 1e-6 of the largest gradient
        tol = 1e-4 * np.abs(g_ref).max() + 1e-6 * gmax
        np.testing.assert_allclose(g_out, g_ref, rtol=0, atol=tol, err_msg=k)


def test_cpu_train_step_hands_only_matmuls_to_ynnpack(setup):
    """On CPU the step is compiled with step.CPU_TRAIN_COMPILER_OPTIONS: every YNNPACK library
    fusion of the executable holds a matmul (dot or convolution); elementwise and reduction fusions
    stay with XLA's loop emitter (the faster split for training, see benchmarks/RESULTS.md)."""
    import re

    model, tx, lr_fn, host_state, batch = setup
    mesh = batch_mesh(jax.devices()[:1])
    shardings = state_lib.state_shardings(host_state, mesh, False)
    fn = step_lib.make_train_step(model, tx, lr_fn, mesh=mesh, state_sharding=shardings, donate=False)
    text = fn.lower(jax.device_put(host_state, shardings), step_lib.put_batch(batch, mesh)).compile().as_text()
    library = re.findall(r"fusion\([^\n]*calls=(%[\w.\-]+)[^\n]*__ynn_fusion", text)
    bodies = {m.group(1): m.group(2) for m in re.finditer(r"\n(%[\w.\-]+) [^\n]*\{\n(.*?)\n\}", text, re.S)}
    assert library, "no YNNPACK fusion at all: the matmuls lost their library kernel"
    without_matmul = [c for c in library if " dot(" not in bodies[c] and "convolution(" not in bodies[c]]
    assert not without_matmul, without_matmul[:5]
