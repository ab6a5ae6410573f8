"""Saving and resuming training state in a workdir (layout and names: :mod:`grm_jax.checkpoint`).

Every saved step ``<workdir>/checkpoints/<step>/`` holds three orbax items:
``variables`` ({'params', 'batch_stats'}, what ``grm_jax.load_model(workdir)`` reads),
``train_state`` ({'opt_state', 'step', 'rng'}) and ``data_iter`` (the grain iterator position,
one JSON file per process). Saves are asynchronous; the newest ``keep`` steps are kept.

Resuming restores the newest step that restores cleanly. A step that fails (a truncated or
corrupt file, a missing item) is reported in one line naming the step, the item and the reason,
moved aside to ``<workdir>/corrupt_checkpoints/<step>`` (so that it is neither loaded later nor
in the way of the step being saved again), and the next older step is tried. With several
processes a step is used only when it restores on every one of them.
"""
from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import shutil
from typing import Callable

import jax
import orbax.checkpoint as ocp

from grm_jax import checkpoint as ckpt_lib
from grm_jax.errors import CheckpointError
from grm_jax.io_utils import disk_full_error, is_disk_full
from grm_jax.train.progress import everywhere
from grm_jax.train.state import TrainState

__all__ = ["disk_full_reported", "open_manager", "save_state", "restore_latest"]

_ONE_LINE = 240  # characters of a library error kept in a message


def open_manager(workdir: str | os.PathLike, keep: int) -> ocp.CheckpointManager:
    """The CheckpointManager of ``<workdir>/checkpoints`` (created if needed), keeping ``keep`` steps."""
    options = ocp.CheckpointManagerOptions(max_to_keep=int(keep), enable_async_checkpointing=True,
                                           cleanup_tmp_directories=True, create=True)
    return ocp.CheckpointManager(ckpt_lib.checkpoints_dir(workdir), options=options)


def _items(state: TrainState, data_iter, save: bool) -> dict:
    """orbax args per item; ``state`` holds arrays (save) or abstract arrays with shardings (restore)."""
    import grain  # noqa: PLC0415

    tree = ocp.args.StandardSave if save else ocp.args.StandardRestore
    items = {
        ckpt_lib.ITEM_VARIABLES: tree({"params": state.params, "batch_stats": state.batch_stats}),
        ckpt_lib.ITEM_TRAIN_STATE: tree({"opt_state": state.opt_state, "step": state.step, "rng": state.rng}),
    }
    if data_iter is not None:
        grain_args = grain.checkpoint.CheckpointSave if save else grain.checkpoint.CheckpointRestore
        items[ckpt_lib.ITEM_DATA_ITER] = grain_args(data_iter)
    return items


def save_state(manager: ocp.CheckpointManager, step: int, state: TrainState, data_iter) -> None:
    """Starts the (asynchronous) save of ``state`` and the iterator position as step ``step``."""
    manager.save(step, args=ocp.args.Composite(**_items(state, data_iter, save=True)))


def one_line(err: BaseException) -> str:
    """A library error (orbax, TensorStore, grain) as one short line: its type and the start of
    its first line, without the TensorStore spec dump."""
    text = str(err).split(" [tensorstore_spec=")[0].strip().splitlines()
    first = text[0] if text else ""
    if len(first) > _ONE_LINE:
        first = first[:_ONE_LINE] + " ..."
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def _restore_step(manager, step: int, target: TrainState, data_iter) -> TrainState:
    """Restores one step item by item (the iterator last, as it is changed in place);
    CheckpointError names the step and the item that failed."""
    out = {}
    for item, args in _items(target, data_iter, save=False).items():
        try:
            out[item] = manager.restore(step, args=ocp.args.Composite(**{item: args}))[item]
        except Exception as err:  # noqa: BLE001  (any reading error means: this step is unusable)
            raise CheckpointError(f"checkpoint step {step}, item {item!r}: {one_line(err)}") from err
    v, ts = out[ckpt_lib.ITEM_VARIABLES], out[ckpt_lib.ITEM_TRAIN_STATE]
    return target.replace(params=v["params"], batch_stats=v["batch_stats"], opt_state=ts["opt_state"],
                          step=ts["step"], rng=ts["rng"])


def _move_aside(manager, workdir: pathlib.Path, steps: list[int], say: Callable[[str], None]) -> None:
    if jax.process_index() == 0:
        dest_root = workdir / ckpt_lib.CORRUPT_CHECKPOINTS_DIR
        dest_root.mkdir(parents=True, exist_ok=True)
        for step in steps:
            dest = dest_root / str(step)
            suffix = 1
            while dest.exists():
                dest, suffix = dest_root / f"{step}.{suffix}", suffix + 1
            os.replace(ckpt_lib.step_dir(workdir, step), dest)
            say(f"moved the unusable checkpoint step {step} to {dest}")
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils  # noqa: PLC0415

        multihost_utils.sync_global_devices("grm_jax: unusable checkpoints moved aside")
    manager.reload()


def restore_latest(manager: ocp.CheckpointManager, workdir: str | os.PathLike, target: TrainState, data_iter,
                   say: Callable[[str], None]) -> TrainState | None:
    """The state of the newest step that restores cleanly (see module doc); None when the workdir
    has no checkpoint. ``target``: abstract state whose leaves carry the wanted shardings.
    CheckpointError when there are checkpoints but none restores."""
    workdir = pathlib.Path(workdir)
    steps = sorted(manager.all_steps(), reverse=True)
    skipped: list[int] = []
    for step in steps:
        try:
            state, error = _restore_step(manager, step, target, data_iter), None
        except CheckpointError as err:
            state, error = None, err
        if everywhere(error is None):
            if skipped:
                _move_aside(manager, workdir, skipped, say)
            say(f"resuming from {ckpt_lib.step_dir(workdir, step)}")
            return state
        say(f"skipping {error if error is not None else f'checkpoint step {step}: unreadable on another process'}")
        skipped.append(step)
    if steps:
        raise CheckpointError(f"none of the checkpoints in {ckpt_lib.checkpoints_dir(workdir)} can be restored "
                              f"(steps {', '.join(map(str, steps))}; reasons above)",
                              hint=f"move {ckpt_lib.checkpoints_dir(workdir)} away to start this run over")
    return None


class _DropDiskFullLogs(logging.Filter):
    """Drops the ERROR records (with tracebacks) that orbax's save threads log for a full disk:
    the same failure is re-raised in the main thread and reported in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage() + str(record.exc_info[1] if record.exc_info else "")
        return not ("No space left on device" in text or "Disk quota exceeded" in text)


@contextlib.contextmanager
def disk_full_reported(workdir: str | os.PathLike):
    """Turns a full disk during a checkpoint (or log) write into one WorkdirError naming the
    checkpoints folder, after removing the unfinished ``*.orbax-checkpoint-tmp*`` step folders
    (the complete steps stay and a rerun resumes from the newest)."""
    folder = ckpt_lib.checkpoints_dir(workdir)
    quiet = _DropDiskFullLogs()
    logging.getLogger("absl").addFilter(quiet)
    try:
        yield
    except Exception as err:
        if not is_disk_full(err):
            raise
        unfinished = sorted(p for p in folder.glob("*.orbax-checkpoint-tmp*")) if folder.is_dir() else []
        for path in unfinished:
            shutil.rmtree(path, ignore_errors=True)
        what = f"checkpoint {', '.join(p.name.split('.')[0] for p in unfinished)}" if unfinished else "a checkpoint"
        raise disk_full_error(folder, what) from err
    finally:
        logging.getLogger("absl").removeFilter(quiet)
