"""What the training loop shows and records, and the process-aware helpers it uses.

A progress bar (or, when the console is not a terminal, one line per log interval) and
TensorBoard scalars in ``<workdir>/tensorboard``.

Only process 0 writes anything. Logged values are means over the steps since the previous log:
loss terms, IoU, LRs, gradient norm, E_A fraction per dividing block, and pairs/s.
"""
from __future__ import annotations

import pathlib
import sys
import time
from typing import Mapping, Sequence

import jax
import numpy as np

from grm_jax import checkpoint as ckpt_lib

__all__ = ["Progress", "everywhere", "say", "to_host"]


def say(*args) -> None:
    """print on process 0 only (flushed)."""
    if jax.process_index() == 0:
        print(*args, flush=True)


def everywhere(ok: bool) -> bool:
    """True when ``ok`` is True on every process (a collective: all processes must call it)."""
    if jax.process_count() == 1:
        return bool(ok)
    from jax.experimental import multihost_utils  # noqa: PLC0415

    return bool(np.all(multihost_utils.process_allgather(np.int32(ok))))


def to_host(tree):
    """Host numpy copy of a tree of replicated (possibly multi-process) arrays."""
    def get(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return np.asarray(x.addressable_data(0))
        return np.asarray(x)
    return jax.tree_util.tree_map(get, tree)


class Progress:
    """Progress of steps ``start .. total`` of ``global_batch`` pairs each (see module doc)."""

    def __init__(self, workdir: pathlib.Path, start: int, total: int, global_batch: int):
        self.enabled = jax.process_index() == 0
        self.total, self.global_batch = total, global_batch
        self.writer = self.bar = None
        self._t, self._steps = time.time(), 0
        if not self.enabled:
            return
        from tensorboardX import SummaryWriter  # noqa: PLC0415

        self.writer = SummaryWriter(str(workdir / ckpt_lib.TENSORBOARD_DIR))
        if sys.stderr.isatty():
            from tqdm import tqdm  # noqa: PLC0415

            self.bar = tqdm(total=total, initial=start, unit="step", dynamic_ncols=True, desc="train",
                            mininterval=1.0)

    def restart_clock(self) -> None:
        """pairs/s counts from now (e.g. after the compilation step)."""
        self._t, self._steps = time.time(), 0

    def step_done(self) -> None:
        self._steps += 1
        if self.bar is not None:
            self.bar.update(1)

    def log(self, step: int, metrics: Sequence[Mapping]) -> dict[str, float]:
        """Means of the per-step ``metrics`` (host values) plus pairs/s since the last log."""
        elapsed = max(time.time() - self._t, 1e-9)
        means = {k: float(np.mean([m[k] for m in metrics])) for k in metrics[0]}
        if self._steps:  # none when logging right after the compilation step
            means["pairs_per_sec"] = self._steps * self.global_batch / elapsed
        self._t, self._steps = time.time(), 0
        if not self.enabled:
            return means
        for k, v in means.items():
            self.writer.add_scalar(k if "/" in k else f"train/{k}", v, step)
        self.writer.flush()
        speed = f"{means['pairs_per_sec']:.2f}" if "pairs_per_sec" in means else "-"
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{means['loss']:.4f}", iou=f"{means['iou']:.3f}", pairs_s=speed,
                                 refresh=False)
        else:
            print(f"step {step}/{self.total}  loss {means['loss']:.4f}  iou {means['iou']:.3f}  {speed} pairs/s",
                  flush=True)
        return means

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()
