"""GRM training loop: ``run_train(config, workdir)`` (called by ``python launch.py --mode=train``).

What it does
  * multi-host: joins the other processes with ``jax.distributed.initialize`` when launched on a
    cluster (see ``initialize_distributed``); every process reads its own shard of the sample
    stream (``shard_index = jax.process_index()``), so global batch ``j`` holds the same samples
    whatever the number of hosts;
  * weights: MAE initialisation through ``convert_weights.mae`` when ``config.init.mae`` is set,
    else random initialisation (announced; the paper's numbers need MAE weights);
  * schedule: ``epochs * (samples_per_epoch // batch_size)`` steps (``train.max_steps`` cuts it),
    LR x0.1 at ``lr_drop_epoch``;
  * no dataset root configured at all: trains on the bundled sample dataset with a SHORT schedule
    (announced; ``SAMPLE_STEPS`` steps of ``SAMPLE_BATCH`` pairs unless ``train.max_steps`` is set),
    then evaluates the final checkpoint on the sample validation sequences and prints the AO (with
    ``train.max_steps`` set, e.g. the tiny config, only when ``train.eval_after`` is True);
  * checkpoints: orbax CheckpointManager (async) in ``workdir/checkpoints/<step>/`` with items
    ``variables`` ({'params', 'batch_stats'}, what ``grm_jax.checkpoint.load_model(workdir)``
    reads), ``train_state`` ({'opt_state', 'step', 'rng'}) and ``data_iter`` (grain iterator state,
    one file per process). Saved every ``checkpoint_every_steps`` and at the end, last
    ``keep_checkpoints`` kept. A re-run with the same workdir resumes from the latest one and
    continues the data stream and the random streams exactly;
  * logs: tqdm progress (step, pairs/s, ETA, loss) and TensorBoard scalars (tensorboardX) in
    ``workdir/tensorboard``: loss terms, IoU, LRs, grad norm, E_A fraction per dividing block,
    pairs/s. ``workdir/model_config.json`` and the run config (``config.json``, ``config.txt``)
    are written at the start.

Multi-host launch (one process per host, or per GPU):
  * set ``JAX_COORDINATOR_ADDRESS=host:port``, ``JAX_NUM_PROCESSES=N``, ``JAX_PROCESS_ID=i``
    (optionally ``JAX_LOCAL_DEVICE_IDS=0,1``) on every process; or
  * run under SLURM (``srun``, more than one task) or Open MPI (``mpirun``), detected from the
    environment; or set ``GRM_DISTRIBUTED=1`` to call ``jax.distributed.initialize()`` with JAX's own
    cluster auto-detection (GKE/TPU/...). ``GRM_DISTRIBUTED=0`` disables all of this.
  ``train.batch_size`` is the GLOBAL batch; it must divide by the number of processes and devices.
  BatchNorm uses global-batch statistics (see ``grm_jax.train.step``).

Environment: ``GRM_TRAIN_STEP_DELAY`` (seconds, testing aid) sleeps after every step.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import pathlib
import time
from typing import Any, Callable, Iterator

import numpy as np

__all__ = ["run_train", "initialize_distributed", "validate_config", "plan_schedule", "Schedule",
           "SAMPLE_STEPS", "SAMPLE_BATCH"]

# Short schedule on the bundled sample data (no dataset root configured): fits, with compilation and
# the final evaluation, in 10 minutes for ViT-B on a 2-core CPU.
SAMPLE_STEPS = 40
SAMPLE_BATCH = 2
SAMPLE_EVAL_DATASET = "got10k_val"
# config.data keys read by data_pipelines but absent from configs/base.py
_EXTRA_KEYS = {"data": {"stride", "num_threads"}}


def _say(*args) -> None:
    import jax  # noqa: PLC0415
    if jax.process_index() == 0:
        print(*args, flush=True)


def _opt(node, key, default=None):
    try:
        value = node[key]
    except (KeyError, AttributeError, TypeError):
        return default
    return default if value is None else value


# ------------------------------------------------------------------------------------------------
# Distributed start-up
# ------------------------------------------------------------------------------------------------

def _cluster_detected() -> bool:
    if int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_STEP_ID" in os.environ:
        return True
    return int(os.environ.get("OMPI_COMM_WORLD_SIZE", "1") or 1) > 1


def initialize_distributed() -> bool:
    """Calls ``jax.distributed.initialize`` when this process is one of several (see module doc).
    Must run before anything touches the JAX devices. Returns True when distributed."""
    import jax  # noqa: PLC0415

    if jax.distributed.is_initialized():
        return True
    mode = os.environ.get("GRM_DISTRIBUTED", "auto").strip().lower()
    if mode in ("0", "false", "off", "no"):
        return False
    kwargs: dict[str, Any] = {}
    addr = os.environ.get("JAX_COORDINATOR_ADDRESS")
    if addr:
        kwargs["coordinator_address"] = addr
        if os.environ.get("JAX_NUM_PROCESSES"):
            kwargs["num_processes"] = int(os.environ["JAX_NUM_PROCESSES"])
        if os.environ.get("JAX_PROCESS_ID"):
            kwargs["process_id"] = int(os.environ["JAX_PROCESS_ID"])
        if os.environ.get("JAX_LOCAL_DEVICE_IDS"):
            kwargs["local_device_ids"] = [int(i) for i in os.environ["JAX_LOCAL_DEVICE_IDS"].split(",")]
    elif not (mode in ("1", "true", "on", "yes") or _cluster_detected()):
        return False
    if os.environ.get("JAX_PLATFORMS", "").split(",")[0] == "cpu":
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**kwargs)
    return True


# ------------------------------------------------------------------------------------------------
# Config checks and schedule
# ------------------------------------------------------------------------------------------------

def _base_config():
    path = pathlib.Path(__file__).resolve().parents[2] / "configs" / "base.py"
    spec = importlib.util.spec_from_file_location("_grm_base_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_base_config()


def _check_keys(node, ref, prefix: str) -> None:
    import ml_collections  # noqa: PLC0415

    for key in node.keys():
        full = f"{prefix}{key}"
        if key not in ref:
            if key in _EXTRA_KEYS.get(prefix.rstrip("."), ()):
                continue
            raise ValueError(f"unknown config key {full!r}; known keys of "
                             f"{prefix.rstrip('.') or 'the config'}: {sorted(ref.keys())}")
        if isinstance(ref[key], ml_collections.ConfigDict):
            child = node[key]
            if not isinstance(child, (ml_collections.ConfigDict, dict)):
                raise ValueError(f"config key {full!r} must be a section, got {child!r}")
            if key != "thresholds":  # free-form per-benchmark table
                _check_keys(child, ref[key], full + ".")


def _dataset_root_keys(config) -> list[str]:
    from data_pipelines.sources import canonical_name, root_key  # noqa: PLC0415

    keys = []
    for name in config.data.datasets:
        cn = canonical_name(name)
        if cn != "sample":
            keys.append(root_key(cn))
    return keys


def uses_sample_data(config) -> bool:
    """True when no training dataset root (nor packed_dir) is configured."""
    if _opt(config.data, "packed_dir") is not None:
        return False
    keys = _dataset_root_keys(config)
    return not keys or all(_opt(config.data.roots, k) is None for k in keys)


def validate_config(config) -> None:
    """Clear errors for unknown keys, missing dataset roots / MAE file, inconsistent sizes."""
    _check_keys(config, _base_config(), "")
    for key in _dataset_root_keys(config):
        root = _opt(config.data.roots, key)
        if root is not None and not os.path.isdir(root):
            raise FileNotFoundError(f"config.data.roots.{key}={root!r}: no such directory")
    packed = _opt(config.data, "packed_dir")
    if packed is not None and not os.path.isdir(packed):
        raise FileNotFoundError(f"config.data.packed_dir={packed!r}: no such directory")
    mae = _opt(config.init, "mae")
    if mae is not None and not os.path.isfile(mae):
        raise FileNotFoundError(f"config.init.mae={mae!r}: no such file")
    for part in ("template", "search"):
        if int(config.data[part].size) != int(config.model[f"{part}_size"]):
            raise ValueError(f"config.data.{part}.size={config.data[part].size} differs from "
                             f"config.model.{part}_size={config.model[f'{part}_size']}")
    if len(config.data.ratios) != len(config.data.datasets):
        raise ValueError(f"config.data.ratios has {len(config.data.ratios)} entries for "
                         f"{len(config.data.datasets)} datasets")
    for key in ("batch_size", "epochs", "checkpoint_every_steps", "keep_checkpoints", "log_every_steps"):
        if int(config.train[key]) < 1:
            raise ValueError(f"config.train.{key} must be >= 1, got {config.train[key]}")


class Schedule:
    """Global batch, step counts and whether this is the short sample-data run."""

    def __init__(self, global_batch: int, total_steps: int, steps_per_epoch: int, sample: bool):
        self.global_batch = global_batch
        self.total_steps = total_steps
        self.steps_per_epoch = steps_per_epoch
        self.sample = sample

    def __repr__(self):
        return (f"Schedule(global_batch={self.global_batch}, total_steps={self.total_steps}, "
                f"steps_per_epoch={self.steps_per_epoch}, sample={self.sample})")


def plan_schedule(config, num_devices: int = 1, num_processes: int = 1) -> Schedule:
    t = config.train
    sample = uses_sample_data(config)
    max_steps = _opt(t, "max_steps")
    batch = int(t.batch_size)
    if sample and max_steps is None:
        batch = max(min(batch, int(t.get("sample_batch_size", SAMPLE_BATCH))), num_devices)
        batch = math.lcm(batch, num_devices, num_processes) if batch % num_devices else batch
    if batch % num_devices or batch % num_processes:
        raise ValueError(f"config.train.batch_size={batch} must be divisible by the number of devices "
                         f"({num_devices}) and processes ({num_processes})")
    steps_per_epoch = max(int(config.data.samples_per_epoch) // batch, 1)
    total = int(t.epochs) * steps_per_epoch
    if sample and max_steps is None:
        total = int(t.get("sample_steps", SAMPLE_STEPS))
    elif max_steps is not None:
        total = min(total, int(max_steps))
    return Schedule(batch, total, steps_per_epoch, sample)


# ------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------

def _data_config(config, sample: bool):
    data = config.data.copy_and_resolve_references()
    data.unlock()
    if sample:
        data.datasets = ["sample"]
        data.ratios = [1.0]
        data.num_workers = 0
    data.stride = int(config.model.patch_size)
    return data


def _make_iterator(config, sample: bool, local_batch: int, seed: int, shard_index: int, shard_count: int):
    from data_pipelines.pipeline import make_train_iterator  # noqa: PLC0415

    return make_train_iterator(_data_config(config, sample), batch_size=local_batch, seed=seed,
                               shard_index=shard_index, shard_count=shard_count)


def sample_dir(config) -> str:
    from data_pipelines.pipeline import DEFAULT_SAMPLE_DIR  # noqa: PLC0415

    return _opt(config.data, "sample_dir", DEFAULT_SAMPLE_DIR)


# ------------------------------------------------------------------------------------------------
# Checkpoints
# ------------------------------------------------------------------------------------------------

def _abstract_with_sharding(abstract, shardings):
    import jax  # noqa: PLC0415

    return jax.tree_util.tree_map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                                  abstract, shardings)


def _checkpoint_args(state, data_iter, save: bool):
    """Composite orbax args for the three checkpoint items; `state` holds arrays (save) or
    abstract arrays with shardings (restore). 'variables' is what load_model reads."""
    import grain  # noqa: PLC0415
    import orbax.checkpoint as ocp  # noqa: PLC0415

    tree = ocp.args.StandardSave if save else ocp.args.StandardRestore
    items = {
        "variables": tree({"params": state.params, "batch_stats": state.batch_stats}),
        "train_state": tree({"opt_state": state.opt_state, "step": state.step, "rng": state.rng}),
    }
    if data_iter is not None:
        items["data_iter"] = (grain.checkpoint.CheckpointSave if save else grain.checkpoint.CheckpointRestore)(data_iter)
    return ocp.args.Composite(**items)


def _save_args(state, data_iter):
    return _checkpoint_args(state, data_iter, save=True)


def _restore(mngr, step, abstract_state, shardings, data_iter):
    target = _abstract_with_sharding(abstract_state, shardings)
    out = mngr.restore(step, args=_checkpoint_args(target, data_iter, save=False))
    v, ts = out["variables"], out["train_state"]
    return abstract_state.replace(params=v["params"], batch_stats=v["batch_stats"], opt_state=ts["opt_state"],
                                  step=ts["step"], rng=ts["rng"])


def _write_run_files(workdir: pathlib.Path, config, model_config) -> None:
    from grm_jax import checkpoint as ckpt_lib  # noqa: PLC0415

    existing = workdir / ckpt_lib.CONFIG_FILE
    if existing.is_file() and (workdir / ckpt_lib.CHECKPOINTS_DIR).is_dir():
        old = ckpt_lib.read_model_config(workdir)
        if old != model_config:
            raise ValueError(f"{workdir} holds a run of another model ({existing}); use a new --workdir")
    ckpt_lib.write_model_config(workdir, model_config)
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=2, sort_keys=True) + "\n")
    (workdir / "config.txt").write_text(str(config))


# ------------------------------------------------------------------------------------------------
# The loop
# ------------------------------------------------------------------------------------------------

def _to_host(tree):
    """Host copy of a tree of replicated (possibly multi-process) arrays."""
    import jax  # noqa: PLC0415

    def get(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return np.asarray(x.addressable_data(0))
        return np.asarray(x)
    return jax.tree_util.tree_map(get, tree)


def _quiet_library_logs() -> None:
    """orbax logs every checkpoint step at INFO through absl; keep the console to the progress bar
    unless a verbosity was asked for (--verbosity / -v)."""
    from absl import flags  # noqa: PLC0415
    from absl import logging as absl_logging  # noqa: PLC0415

    if not flags.FLAGS.is_parsed():  # called outside launch.py: grain workers read absl flags
        flags.FLAGS.mark_as_parsed()

    if absl_logging.get_verbosity() <= absl_logging.INFO and not os.environ.get("GRM_VERBOSE"):
        absl_logging.set_verbosity(absl_logging.WARNING)


def _initial_variables(config, model_config):
    mae = _opt(config.init, "mae")
    if mae is None:
        _say("config.init.mae not set: RANDOM initialisation of the backbone (the paper starts from MAE "
             "ViT weights; pass --config.init.mae=/path/mae_pretrain_vit_base.pth for real training)")
        return None
    from convert_weights.mae import convert_mae_checkpoint  # noqa: PLC0415

    _say(f"initialising the backbone from MAE weights {mae}")
    return convert_mae_checkpoint(mae, model_config, seed=int(_opt(config.init, "seed", 0)))


def run_train(config, workdir: str | os.PathLike,
              make_iterator: Callable[[int, int, int, int], Iterator[dict]] | None = None) -> dict:
    """Trains GRM as configured; returns {'step', 'metrics' (last logged means), 'eval' (or None)}.

    make_iterator(local_batch, seed, shard_index, shard_count) -> checkpointable batch iterator
    (``get_state``/``set_state``); default: ``data_pipelines.pipeline.make_train_iterator``.
    """
    initialize_distributed()
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415
    import orbax.checkpoint as ocp  # noqa: PLC0415

    from grm_jax.configuration import model_config_from  # noqa: PLC0415
    from grm_jax.model.grm import GRM  # noqa: PLC0415
    from grm_jax.train import optimizer as opt_lib  # noqa: PLC0415
    from grm_jax.train import state as state_lib  # noqa: PLC0415
    from grm_jax.train import step as step_lib  # noqa: PLC0415

    t_start = time.time()
    _quiet_library_logs()
    validate_config(config)
    workdir = pathlib.Path(workdir).absolute()
    model_config = model_config_from(config)
    n_dev, n_proc, proc = jax.device_count(), jax.process_count(), jax.process_index()
    sched = plan_schedule(config, n_dev, n_proc)
    local_batch = sched.global_batch // n_proc
    seed = int(config.train.seed)

    if proc == 0:
        workdir.mkdir(parents=True, exist_ok=True)
        _write_run_files(workdir, config, model_config)
    if sched.sample:
        _say("=" * 78)
        _say(f"No dataset root configured (config.data.roots.*): training on the bundled SAMPLE dataset "
             f"({sample_dir(config)}).")
        _say(f"SHORT schedule: {sched.total_steps} steps x {sched.global_batch} pairs "
             f"(a smoke run, not the paper's recipe); then AO on the sample validation sequences.")
        _say("=" * 78)
    drop_step = int(config.train.lr_drop_epoch) * sched.steps_per_epoch
    _say(f"{n_proc} process(es), {n_dev} device(s) [{jax.devices()[0].platform}]; global batch "
         f"{sched.global_batch} ({local_batch} per process); {sched.total_steps} steps, "
         f"{sched.steps_per_epoch} per epoch; "
         + (f"LR x0.1 at step {drop_step}" if drop_step < sched.total_steps else "no LR drop within this run"))

    dtype = jnp.bfloat16 if bool(config.train.bf16) else jnp.float32
    model = GRM(model_config, dtype=dtype)
    tx, lr_fn = opt_lib.make_optimizer(opt_lib.optimizer_spec_from(config.train, sched.steps_per_epoch))
    mesh = state_lib.make_mesh()
    shard_params = bool(config.train.shard_params)
    abstract = state_lib.abstract_state(model, tx)
    shardings = state_lib.state_shardings(abstract, mesh, shard_params)

    if make_iterator is None:
        data_iter = _make_iterator(config, sched.sample, local_batch, seed, proc, n_proc)
    else:
        data_iter = make_iterator(local_batch, seed, proc, n_proc)

    options = ocp.CheckpointManagerOptions(max_to_keep=int(config.train.keep_checkpoints),
                                           enable_async_checkpointing=True, cleanup_tmp_directories=True,
                                           create=True)
    mngr = ocp.CheckpointManager(workdir / "checkpoints", options=options)
    latest = mngr.latest_step()
    if latest is not None:
        _say(f"resuming from {workdir / 'checkpoints' / str(latest)}")
        state = _restore(mngr, latest, abstract, shardings, data_iter)
    else:
        variables = _initial_variables(config, model_config)
        state = state_lib.create_state(model, tx, jax.random.PRNGKey(seed), mesh, shard_params, variables)
    sizes = opt_lib.group_sizes(state.params)
    _say("parameters: " + ", ".join(f"{g} {n / 1e6:.2f}M" for g, n in sizes.items()))

    donate = jax.default_backend() != "cpu"  # CPU arrays may be shared with async checkpoint writes
    train_step = step_lib.make_train_step(model, tx, lr_fn, mesh=mesh, state_sharding=shardings, donate=donate)
    delay = float(os.environ.get("GRM_TRAIN_STEP_DELAY", "0") or 0)

    writer = None
    bar = None
    start_step = int(_to_host(state.step))
    if proc == 0:
        from tensorboardX import SummaryWriter  # noqa: PLC0415
        from tqdm import tqdm  # noqa: PLC0415

        writer = SummaryWriter(str(workdir / "tensorboard"))
        bar = tqdm(total=sched.total_steps, initial=start_step, unit="step", dynamic_ncols=True,
                   desc="train", mininterval=1.0)
    step = start_step
    pending: list[dict] = []
    last_means: dict[str, float] = {}
    t_log, steps_log = time.time(), 0
    every_ckpt, every_log = int(config.train.checkpoint_every_steps), int(config.train.log_every_steps)
    if sched.sample and _opt(config.train, "max_steps") is None:
        every_log = min(every_log, max(sched.total_steps // 8, 1))
    try:
        while step < sched.total_steps:
            batch = next(data_iter)
            state, metrics = train_step(state, step_lib.put_batch(batch, mesh, sched.global_batch))
            step += 1
            steps_log += 1
            pending.append(metrics)
            if delay:
                time.sleep(delay)
            if bar is not None:
                bar.update(1)
            if step % every_log == 0 or step == sched.total_steps or step == start_step + 1:
                fetched = _to_host(pending)
                pending = []
                elapsed = max(time.time() - t_log, 1e-9)
                last_means = {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0]}
                last_means["pairs_per_sec"] = steps_log * sched.global_batch / elapsed
                t_log, steps_log = time.time(), 0
                if writer is not None:
                    for k, v in last_means.items():
                        writer.add_scalar(k if "/" in k else f"train/{k}", v, step)
                    writer.flush()
                if bar is not None:
                    bar.set_postfix(loss=f"{last_means['loss']:.4f}", iou=f"{last_means['iou']:.3f}",
                                    pairs_s=f"{last_means['pairs_per_sec']:.2f}", refresh=False)
            if step % every_ckpt == 0 or step == sched.total_steps:
                mngr.save(step, args=_save_args(state, data_iter))
        mngr.wait_until_finished()
    finally:
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()
        mngr.close()
        close = getattr(data_iter, "close", None)
        if callable(close):
            close()
    _say(f"training finished at step {step} in {time.time() - t_start:.0f} s; checkpoints in "
         f"{workdir / 'checkpoints'} (load with grm_jax.checkpoint.load_model('{workdir}'))")

    result = {"step": step, "metrics": last_means, "eval": None}
    short_sample_run = sched.sample and _opt(config.train, "max_steps") is None
    if (short_sample_run or bool(_opt(config.train, "eval_after", False))) and proc == 0:
        result["eval"] = evaluate_on_sample(config, workdir)
    _say(f"total wall time {time.time() - t_start:.0f} s")
    return result


def evaluate_on_sample(config, workdir: pathlib.Path) -> dict:
    """Tracks the sample validation sequences with the final checkpoint and prints the AO."""
    from grm_jax.evaluate import runner  # noqa: PLC0415

    ecfg = config.copy_and_resolve_references()
    ecfg.unlock()
    from data_pipelines.sources import ensure_sample_dataset  # noqa: PLC0415

    ecfg.data.roots.got10k = ensure_sample_dataset(sample_dir(config))
    out = workdir / "eval_sample"
    summary = runner.run_evaluate(ecfg, checkpoint=str(workdir), dataset=SAMPLE_EVAL_DATASET, workdir=str(out),
                                  tracker_name=workdir.name)
    ao = (summary.get("metrics") or {}).get("ao")
    print(f"sample validation ({summary.get('num_sequences')} sequences): AO = "
          f"{'n/a' if ao is None else f'{ao:.2f}'}  (results in {out})", flush=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary
