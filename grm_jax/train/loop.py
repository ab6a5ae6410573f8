"""GRM training: ``run_train(run, workdir, parts)`` (``grm-jax --mode=train`` / ``python launch.py``).

Three stages:

* setup (:func:`_setup`): joins the other processes of a multi-host job
  (:func:`grm_jax.distributed.initialize_distributed`); with no dataset root configured switches to
  the announced short run on generated sample data (:mod:`grm_jax.train.sample_run`); checks the
  configured folders; locks the workdir (one run per workdir, :mod:`grm_jax.train.workdir`) and
  writes ``model_config.json`` / ``config.json``; builds model, optimizer, mesh and the data
  iterator (``parts.make_iterator``, :mod:`grm_jax.train.parts`); resumes from the newest
  checkpoint that restores cleanly (:mod:`grm_jax.train.checkpointing`), else starts from the MAE
  weights of ``init.mae`` (``parts.read_mae``) or, announced, from a random initialisation.
* the step loop (:func:`_train_steps`): ``epochs * (samples_per_epoch // batch_size)`` steps
  (``train.max_steps`` cuts it short), LR x0.1 at ``lr_drop_epoch``; the first step is announced
  as the compilation; checkpoints every ``checkpoint_every_steps`` and at the end; progress and
  TensorBoard scalars every ``log_every_steps`` (:mod:`grm_jax.train.progress`). The loss of every
  step is checked: training stops at the first NaN or infinite loss (TrainingError naming the step),
  before any checkpoint of that step or later is written.
* after training (:func:`_after_training`): waits for the last checkpoint, says which step is saved
  where, and for the sample run prints the evaluation on the sample validation sequences.

Every process reads its own shard of the sample stream (``shard_index = jax.process_index()``), so
global batch ``j`` holds the same samples whatever the number of hosts. ``train.batch_size`` is
the GLOBAL batch; it must divide by the number of processes and devices. BatchNorm uses
global-batch statistics (see :mod:`grm_jax.train.step`).
"""
from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import time

import jax

from grm_jax import checkpoint as ckpt_lib
from grm_jax.datasets.loaders import dataset_root
from grm_jax.datasets.registry import TRAIN, resolve
from grm_jax.distributed import batch_mesh, initialize_distributed
from grm_jax.errors import MissingFileError, TrainingError, WorkdirError
from grm_jax.host_memory import keep_freed_memory
from grm_jax.io_utils import disk_full_error, ensure_writable_dir, is_disk_full
from grm_jax.run_config import RunConfig, TrainConfig
from grm_jax.train import checkpointing, sample_run
from grm_jax.train.parts import TrainParts
from grm_jax.train import step as step_lib
from grm_jax.train.memory import check_batch_fits
from grm_jax.train.prefetch import DevicePrefetcher
from grm_jax.train.progress import Progress, everywhere, say, to_host
from grm_jax.train.workdir import WorkdirLock, write_run_files

__all__ = ["run_train", "plan_schedule", "Schedule", "check_paths", "DEVICE_PREFETCH"]

DEVICE_PREFETCH = 2  # device batches kept ready ahead of the step (double buffering)


@dataclasses.dataclass(frozen=True)
class Schedule:
    """global_batch pairs per step; total_steps of this run; steps_per_epoch; drop_step: the
    first step with the x0.1 learning rate."""

    global_batch: int
    total_steps: int
    steps_per_epoch: int
    drop_step: int


def plan_schedule(train: TrainConfig, samples_per_epoch: int, num_devices: int = 1,
                  num_processes: int = 1) -> Schedule:
    """The step schedule of ``train``; ConfigError when the global batch does not divide over the
    devices and processes."""
    from grm_jax.errors import ConfigError  # noqa: PLC0415

    batch = train.batch_size
    if batch % num_devices or batch % num_processes:
        raise ConfigError(f"config.train.batch_size={batch} must be divisible by the number of devices "
                          f"({num_devices}) and processes ({num_processes})",
                          hint=f"use a multiple of {math.lcm(num_devices, num_processes)}")
    steps_per_epoch = max(samples_per_epoch // batch, 1)
    total = train.epochs * steps_per_epoch
    if train.max_steps is not None:
        total = min(total, train.max_steps)
    return Schedule(batch, total, steps_per_epoch, train.lr_drop_epoch * steps_per_epoch)


def check_paths(run: RunConfig) -> None:
    """The folders and files the run reads exist (MissingFileError naming the config key); the
    sample data folder is generated when missing."""
    for name in run.data.datasets:
        key, root = resolve(name, TRAIN).root, dataset_root(name, run.data.roots)
        if root is not None and key != "sample" and not os.path.isdir(root):
            raise MissingFileError(f"config.data.roots.{key}={root!r}: no such directory")
    if run.data.packed_dir is not None and not os.path.isdir(run.data.packed_dir):
        raise MissingFileError(f"config.data.packed_dir={run.data.packed_dir!r}: no such directory")
    if run.init.mae is not None and not os.path.isfile(run.init.mae):
        raise MissingFileError(f"config.init.mae={run.init.mae!r}: no such file",
                               hint="the official mae_pretrain_vit_base.pth / _large.pth")


def run_train(run: RunConfig, workdir: str | os.PathLike, parts: TrainParts) -> dict:
    """Trains GRM as ``run`` says, into ``workdir`` (see module doc), reading batches and MAE
    weights with ``parts`` (``launch.TRAIN_PARTS`` is the real one). Returns {'step': last step
    trained, 'checkpoint': newest saved step folder (None if none), 'metrics': last logged means,
    'eval': the sample-run evaluation text or None}."""
    if not isinstance(parts, TrainParts):
        raise TypeError(f"run_train needs a grm_jax.train.parts.TrainParts (launch.TRAIN_PARTS), got {parts!r}")
    keep_freed_memory()  # XLA's step buffers reuse the heap (grm_jax.host_memory); launch.main did it already
    initialize_distributed()
    t_start = time.time()
    run, sample = _effective_run(run)
    workdir = pathlib.Path(workdir).absolute()
    lock = _claim_workdir(workdir, run)
    try:
        with checkpointing.disk_full_reported(workdir):
            session = _setup(run, workdir, parts)
            try:
                step, means = _train_steps(session)
            finally:
                session.close()
        return _after_training(session, step, means, sample, t_start)
    finally:
        if lock is not None:
            lock.release()


# ------------------------------------------------------------------------------------------------
# Setup
# ------------------------------------------------------------------------------------------------

def _effective_run(run: RunConfig) -> tuple[RunConfig, bool]:
    """The run actually trained (the sample run when no dataset is configured) and whether it is
    the sample run; the configured paths are checked."""
    sample = sample_run.uses_sample_data(run)
    if sample:
        run, banner = sample_run.sample_run_config(run, jax.default_backend(), jax.device_count(),
                                                   jax.process_count())
        say(banner)
    else:
        shown: dict[str, str | None] = {}  # root key -> folder, once per key
        for name in run.data.datasets:
            shown.setdefault(resolve(name, TRAIN).root, dataset_root(name, run.data.roots))
        say("dataset roots: " + ", ".join(f"{k}={root} (from {run.root_sources.get(k, 'run config')})"
                                          for k, root in shown.items()) + "  (grm-jax --mode=datasets lists every root)")
    check_paths(run)
    return run, sample


def _claim_workdir(workdir: pathlib.Path, run: RunConfig) -> WorkdirLock | None:
    """Process 0 creates and locks the workdir and writes the run files; every process raises
    when that failed (so no process waits forever for process 0)."""
    lock, error = None, None
    if jax.process_index() == 0:
        try:
            ensure_writable_dir(workdir)
            lock = WorkdirLock.acquire(workdir, say)
            write_run_files(workdir, run, run.model)
        except Exception as err:  # noqa: BLE001  (re-raised below, after telling the other processes)
            error = err
            if lock is not None:
                lock.release()
    if not everywhere(error is None):
        raise error if error is not None else WorkdirError(
            f"{workdir}: process 0 could not take the workdir (see its output)")
    return lock


@dataclasses.dataclass
class _Session:
    """Everything the step loop uses."""

    run: RunConfig
    workdir: pathlib.Path
    schedule: Schedule
    mesh: object
    state: object
    train_step: object
    data_iter: object
    manager: object
    start_step: int

    def close(self) -> None:
        _close(self.manager, self.data_iter)


def _close(manager, data_iter) -> None:
    manager.close()  # waits for the saves in flight
    close = getattr(data_iter, "close", None)
    if callable(close):
        close()


def _setup(run: RunConfig, workdir: pathlib.Path, parts: TrainParts) -> _Session:
    import jax.numpy as jnp  # noqa: PLC0415

    from grm_jax.model.grm import GRM  # noqa: PLC0415
    from grm_jax.train import optimizer as opt_lib  # noqa: PLC0415
    from grm_jax.train import state as state_lib  # noqa: PLC0415

    n_dev, n_proc = jax.device_count(), jax.process_count()
    sched = plan_schedule(run.train, run.data.samples_per_epoch, n_dev, n_proc)
    check_batch_fits(run, n_dev, n_proc, jax.local_devices()[0])  # before any batch is built
    local_batch = sched.global_batch // n_proc
    say(f"{n_proc} process(es), {n_dev} device(s) [{jax.devices()[0].platform}]; global batch "
        f"{sched.global_batch} ({local_batch} per process); {sched.total_steps} steps, "
        f"{sched.steps_per_epoch} per epoch; "
        + (f"LR warmup over {run.train.warmup_steps} steps; " if run.train.warmup_steps else "")
        + (f"LR x0.1 at step {sched.drop_step}" if sched.drop_step < sched.total_steps
           else "no LR drop within this run"))
    model = GRM(run.model, dtype=jnp.bfloat16 if run.train.bf16 else jnp.float32)
    tx, lr_fn = opt_lib.make_optimizer(run.train, sched.steps_per_epoch)
    mesh = batch_mesh(jax.devices())  # every device of every process
    abstract = state_lib.abstract_state(model, tx)
    shardings = state_lib.state_shardings(abstract, mesh, run.train.shard_params)
    data_iter = parts.make_iterator(run, local_batch, run.train.seed, jax.process_index(), n_proc)
    manager = checkpointing.open_manager(workdir, run.train.keep_checkpoints)
    try:
        target = jax.tree_util.tree_map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                                        abstract, shardings)
        state = checkpointing.restore_latest(manager, workdir, target, data_iter, say)
        if state is None:
            state = state_lib.create_state(model, tx, jax.random.PRNGKey(run.train.seed), mesh,
                                           run.train.shard_params, _initial_variables(run, parts))
    except BaseException:
        _close(manager, data_iter)
        raise
    sizes = opt_lib.group_sizes(state.params)
    say("parameters: " + ", ".join(f"{g} {n / 1e6:.2f}M" for g, n in sizes.items()))
    donate = jax.default_backend() != "cpu"  # CPU arrays may be shared with async checkpoint writes
    train_step = step_lib.make_train_step(model, tx, lr_fn, mesh=mesh, state_sharding=shardings, donate=donate)
    # batches are read and placed on the devices in a background thread, DEVICE_PREFETCH steps ahead;
    # checkpoints record the position after the last batch a step consumed (grm_jax.train.prefetch)
    device_iter = DevicePrefetcher(data_iter, lambda b: step_lib.put_batch(b, mesh, sched.global_batch),
                                   DEVICE_PREFETCH)
    return _Session(run, workdir, sched, mesh, state, train_step, device_iter, manager, int(to_host(state.step)))


def _initial_variables(run: RunConfig, parts: TrainParts):
    if run.init.mae is None:
        say("config.init.mae not set: RANDOM initialisation of the backbone (the paper starts from MAE "
            "ViT weights; pass --config.init.mae=/path/mae_pretrain_vit_base.pth for real training)")
        return None
    say(f"initialising the backbone from MAE weights {run.init.mae}")
    return parts.read_mae(run.init.mae, run.model, run.init.seed)


# ------------------------------------------------------------------------------------------------
# The step loop
# ------------------------------------------------------------------------------------------------

def _train_steps(s: _Session) -> tuple[int, dict]:
    """Runs steps ``start_step + 1 .. total_steps``; returns (last step, last logged means).

    The loss of step k is checked while step k + 1 runs (one step in flight keeps the devices
    busy), and before step k is saved."""
    sched, train = s.schedule, s.run.train
    step, pending, means, unchecked = s.start_step, [], {}, None
    if step >= sched.total_steps:
        return step, means
    progress = Progress(s.workdir, step, sched.total_steps, sched.global_batch)
    try:
        while step < sched.total_steps:
            batch = next(s.data_iter)  # already on the devices (DevicePrefetcher)
            first = step == s.start_step
            if first:
                say("compiling the train step (first step) ...")
                t0 = time.time()
            s.state, metrics = s.train_step(s.state, batch)
            step += 1
            if unchecked is not None:
                _check_finite(s, *unchecked)
            unchecked = (step, metrics)
            pending.append(metrics)
            progress.step_done()
            if first:
                _check_finite(s, step, metrics)
                say(f"first step done in {time.time() - t0:.1f} s (compilation included)")
                progress.restart_clock()
            if step % train.log_every_steps == 0 or step == sched.total_steps:
                means = progress.log(step, to_host(pending))
                pending = []
            if step % train.checkpoint_every_steps == 0 or step == sched.total_steps:
                _check_finite(s, step, metrics)
                checkpointing.save_state(s.manager, step, s.state, s.data_iter)
    finally:
        progress.close()
    return step, means


def _check_finite(s: _Session, step: int, metrics: dict) -> None:
    """TrainingError when the loss (or gradient norm) of ``step`` is NaN or infinite."""
    values = to_host({"loss": metrics["loss"], "grad_norm": metrics["grad_norm"]})
    loss, grad_norm = float(values["loss"]), float(values["grad_norm"])
    if math.isfinite(loss) and math.isfinite(grad_norm):
        return
    s.manager.wait_until_finished()
    saved = s.manager.latest_step()
    kept = (f"the last good checkpoint is {ckpt_lib.step_dir(s.workdir, saved)}" if saved is not None
            else "no checkpoint was saved")
    raise TrainingError(f"training stopped: the loss is {loss} (gradient norm {grad_norm}) at step {step}; {kept}",
                        hint="lower --config.train.lr or check the training data; a rerun resumes from the "
                             "last good checkpoint")


# ------------------------------------------------------------------------------------------------
# After training
# ------------------------------------------------------------------------------------------------

def _after_training(s: _Session, step: int, means: dict, sample: bool, t_start: float) -> dict:
    saved = ckpt_lib.checkpoint_steps(s.workdir)
    newest = ckpt_lib.step_dir(s.workdir, saved[-1]) if saved else None
    if s.start_step >= s.schedule.total_steps:
        say(f"nothing to train: {s.workdir} is at step {s.start_step} and this run has "
            f"{s.schedule.total_steps} steps (raise train.max_steps or train.epochs to go on)")
    else:
        say(f"training finished at step {step} in {time.time() - t_start:.0f} s; saved: {newest} "
            f"(load with grm_jax.load_model('{s.workdir}'))")
    result = {"step": step, "checkpoint": None if newest is None else str(newest), "metrics": means, "eval": None}
    if sample and s.run.train.eval_after and newest is not None and jax.process_index() == 0:
        result["eval"] = sample_run.after_sample_training(s.run, str(s.workdir), str(s.workdir))
        print(result["eval"], flush=True)
    say(_where_outputs_went(s.workdir, newest))
    say(f"total wall time {time.time() - t_start:.0f} s")
    return result


def _where_outputs_went(workdir: pathlib.Path, newest) -> str:
    """The closing lines naming every output of the run and how to use it."""
    rows = [f"outputs in {workdir}:",
            f"  checkpoint   {newest}  (track / evaluate with --checkpoint={workdir})",
            f"  TensorBoard  {workdir / ckpt_lib.TENSORBOARD_DIR}  (tensorboard --logdir {workdir})",
            f"  run config   {workdir / ckpt_lib.RUN_CONFIG_FILE}"]
    report = workdir / sample_run.SAMPLE_REPORT_DIR
    if report.is_dir():
        rows.append(f"  evaluation   {report / 'results.md'}, plots {report}/*.png, result files {report}/*/")
    return "\n".join(rows)
