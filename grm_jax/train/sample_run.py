"""Training with no dataset configured: a short, announced run on generated sample data that
visibly learns, then a score table against a do-nothing baseline.

The training loop (:mod:`grm_jax.train.loop`) calls, in this order:

    uses_sample_data(run) -> bool
    sample_run_config(run, backend, num_devices, num_processes) -> (RunConfig, banner text)
    after_sample_training(run, workdir, model_dir) -> table text

What the sample run is (:data:`CPU_RECIPE` / :data:`ACCELERATOR_RECIPE`):

* data: ``SAMPLE_TRAIN_SEQUENCES`` generated training sequences and ``SAMPLE_VAL_SEQUENCES``
  validation sequences (``data_pipelines.sources.sample``), written once into
  ``config.data.roots.sample`` or, unset, ``~/.cache/grm_jax/sample_run``;
* on a CPU a REDUCED GRM (same code and token division; smaller width, depth and crops) trained
  from random weights with a from-scratch learning rate for every parameter group; on a GPU/TPU
  the configured architecture, for about the same time budget. ``train.max_steps``, when set,
  cuts the schedule (tests use a few steps);
* after training, the final model and the first-frame-box baseline (a tracker that repeats the
  initial box) are scored on the validation sequences with the GOT-10k toolkit convention (AO /
  SR0.5, first frame excluded, fully covered frames excluded), one report with both trackers.

Measured on a 2-core CPU (README, "What you will see"): the CPU recipe, data generation,
compilation and evaluation included, finishes within 10 minutes.
"""
from __future__ import annotations

import dataclasses
import math
import os
import pathlib

import numpy as np

from grm_jax.datasets.registry import TRAIN, resolve
from grm_jax.run_config import RunConfig

__all__ = ["ACCELERATOR_RECIPE", "CPU_RECIPE", "SAMPLE_TRAIN_SEQUENCES", "SAMPLE_VAL_SEQUENCES", "SampleRecipe",
           "after_sample_training", "sample_data_folder", "sample_run_config", "uses_sample_data"]

# Many short generated sequences: with 48 the reduced model learnt a centre prior and tracked no
# better than the first-frame box (AO 18 vs 17.9); with 500 it learns to find the template's
# object (see the README, "What you will see").
SAMPLE_TRAIN_SEQUENCES = 500
SAMPLE_VAL_SEQUENCES = 6
SAMPLE_BENCHMARK = "sample_val"
OURS, BASELINE = "GRM (this run)", "first-frame box"
SAMPLE_REPORT_DIR = "eval_sample"  # <workdir>/eval_sample: both trackers' result files and the report
_EPOCHS, _DROP_EPOCH = 10, 8  # the schedule is cut into 10 epochs; LR x0.1 after 80 % of the steps


@dataclasses.dataclass(frozen=True)
class SampleRecipe:
    """steps x batch pairs at learning rate ``lr`` for every parameter group (random init);
    ``model``: ModelConfig fields that replace the configured ones (None = the configured model);
    ``center_jitter``: search-crop centre jitter (the official 3 puts the target anywhere in the
    crop; 1 keeps it so near the centre that the model learns to answer "the centre"; 2 makes
    it search while still learning within minutes)."""

    steps: int
    batch: int
    lr: float
    model: dict | None = None
    weight_decay: float = 1e-4
    center_jitter: float = 2.0


# Measured on the 2-core CPU (README, "What you will see"): about 52 pairs/s whatever the batch, so
# a small batch gives the most updates; about 8.5 minutes in all.
CPU_RECIPE = SampleRecipe(
    steps=2800, batch=8, lr=7e-4,
    model=dict(embed_dim=128, depth=4, num_heads=4, head_channels=64, patch_size=16, template_size=64,
               search_size=128, predictor_hidden=(64, 32), drop_path_rate=0.0))
# Not measured on an accelerator yet: sized from the ViT-B step cost for a few minutes of training.
ACCELERATOR_RECIPE = SampleRecipe(steps=1000, batch=32, lr=2e-4)


def uses_sample_data(run: RunConfig) -> bool:
    """True when no training dataset root (nor data.packed_dir) is configured for run.data.datasets."""
    if run.data.packed_dir is not None:
        return False
    roots = [resolve(n, TRAIN).root for n in run.data.datasets]
    return all(r == "sample" or run.data.roots.get(r) is None for r in roots)


def sample_data_folder(run: RunConfig) -> str:
    """``data.roots['sample']``, else ``sample_run-<train>-<val>`` (the sequence counts) beside the
    default sample-data cache folder."""
    from grm_jax.datasets.sample import DEFAULT_SAMPLE_ROOT  # noqa: PLC0415

    name = f"sample_run-{SAMPLE_TRAIN_SEQUENCES}-{SAMPLE_VAL_SEQUENCES}"
    return run.data.roots.get("sample") or os.path.join(os.path.dirname(DEFAULT_SAMPLE_ROOT), name)


def _global_batch(batch: int, num_devices: int, num_processes: int) -> int:
    """The smallest multiple of the device and process counts that is >= ``batch``."""
    unit = math.lcm(max(num_devices, 1), max(num_processes, 1))
    return max(unit, math.ceil(batch / unit) * unit)


def sample_run_config(run: RunConfig, backend: str, num_devices: int,
                      num_processes: int) -> tuple[RunConfig, str]:
    """The run config of the sample run and the banner announcing it (see module doc).

    backend: ``jax.default_backend()`` ('cpu', 'gpu', 'tpu'): 'cpu' gets the reduced model.
    Generates the sample data (once; a few seconds) into :func:`sample_data_folder`."""
    from data_pipelines.sources.sample import ensure_sample_dataset  # noqa: PLC0415

    recipe = CPU_RECIPE if backend == "cpu" else ACCELERATOR_RECIPE
    model = run.model if recipe.model is None else run.model.replace(**recipe.model)
    batch = _global_batch(recipe.batch, num_devices, num_processes)
    steps = recipe.steps if run.train.max_steps is None else min(recipe.steps, run.train.max_steps)
    per_epoch = max(recipe.steps // _EPOCHS, 1)
    keep_mae = run.init.mae is not None and recipe.model is None
    t = run.train
    lrs = (dict(lr=t.lr, backbone_lr_mult=t.backbone_lr_mult, divide_lr=t.divide_lr) if keep_mae else
           dict(lr=recipe.lr, backbone_lr_mult=1.0, divide_lr=recipe.lr))
    train = dataclasses.replace(
        t, batch_size=batch, epochs=_EPOCHS, lr_drop_epoch=_DROP_EPOCH, max_steps=steps,
        weight_decay=recipe.weight_decay, checkpoint_every_steps=max(steps // 4, 1), keep_checkpoints=1,
        log_every_steps=max(min(t.log_every_steps, steps // 20), 1), eval_after=True, **lrs)
    folder = ensure_sample_dataset(sample_data_folder(run), num_train=SAMPLE_TRAIN_SEQUENCES,
                                   num_val=SAMPLE_VAL_SEQUENCES)
    data = dataclasses.replace(
        run.data, roots={**run.data.roots, "sample": folder}, datasets=("sample_train",), ratios=(1.0,),
        samples_per_epoch=per_epoch * batch,
        search_jitter=dataclasses.replace(run.data.search_jitter, center=recipe.center_jitter),
        num_workers=0 if backend == "cpu" else min(run.data.num_workers, os.cpu_count() or 1))
    new = run.replace(model=model, train=train, data=data,
                      init=run.init if keep_mae else dataclasses.replace(run.init, mae=None),
                      eval=dataclasses.replace(run.eval, batch_sequences=SAMPLE_VAL_SEQUENCES))
    return new, _banner(run, new, backend, folder, per_epoch * _DROP_EPOCH)


def _describe(m) -> str:
    return (f"dim {m.embed_dim}, depth {m.depth}, {m.num_heads} heads, patch {m.patch_size}, "
            f"template {m.template_size} / search {m.search_size} px")


def _banner(old: RunConfig, new: RunConfig, backend: str, folder: str, drop_step: int) -> str:
    t = new.train
    reduced = new.model != old.model
    init = f"MAE weights {new.init.mae}" if new.init.mae else "random weights"
    drop = f", x0.1 from step {drop_step}" if drop_step < t.max_steps else ""
    lines = [
        "=" * 78,
        "No training dataset configured (config.data.roots.*): a SHORT DEMONSTRATION RUN on generated sample data.",
        f"  data:     {SAMPLE_TRAIN_SEQUENCES} generated training / {SAMPLE_VAL_SEQUENCES} validation sequences in "
        f"{folder}",
        (f"  model:    REDUCED GRM for the {backend.upper()}: {_describe(new.model)}" if reduced else
         f"  model:    the configured GRM: {_describe(new.model)}"),
    ]
    if reduced:
        lines.append(f"            (configured: {_describe(old.model)}; same code, division in blocks "
                     f"{','.join(map(str, new.model.divide_layers))})")
        if old.init.mae:
            lines.append("            config.init.mae is ignored: the MAE weights do not fit the reduced model")
    lines += [
        f"  schedule: {t.max_steps} steps x {t.batch_size} pairs from {init}, LR {t.lr:g}{drop}, search-crop "
        f"centre jitter {new.data.search_jitter.center:g}",
        f"            (the paper's recipe: {old.train.epochs} epochs x {old.data.samples_per_epoch} pairs, "
        f"jitter {old.data.search_jitter.center:g})",
        f"  then:     the trained tracker and the first-frame-box baseline are scored on the "
        f"{SAMPLE_VAL_SEQUENCES} validation sequences",
        "With a dataset, the same command trains the configured model with the paper's recipe, e.g.",
        f"  python launch.py --config configs/{old.name}.py --config.data.roots.got10k=/data/GOT10k "
        "--config.init.mae=/weights/mae_pretrain_vit_base.pth",
    ]
    if reduced:
        lines.append("With a GPU or TPU (pip install -e \".[cuda]\" or \".[tpu]\"), this sample run trains the "
                     "configured model itself.")
    lines.append("=" * 78)
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# After training: our tracker and the first-frame-box baseline on the validation sequences
# ------------------------------------------------------------------------------------------------

def _write_first_frame_baseline(seqs, folder: pathlib.Path) -> pathlib.Path:
    """Result files of the tracker that repeats the initial box in every frame."""
    from grm_jax.evaluate import results as res  # noqa: PLC0415

    for s in seqs:
        gt = np.asarray(s.ground_truth, np.float64)
        res.write_results(folder, s.name, np.repeat(gt[:1], len(gt), axis=0), fmt="float")
    return folder


def after_sample_training(run: RunConfig, workdir: str, model_dir: str) -> str:
    """Tracks the sample validation sequences with the model in ``model_dir`` (the training workdir
    or a model directory) and scores it next to the first-frame-box baseline, with the GOT-10k
    toolkit convention on the same sequences. Writes ``<workdir>/eval_sample/`` (``grm/`` result
    files, ``first_frame_box/``, and ``results.md``, ``metrics.json`` and the success / precision
    plots of both trackers) and returns the short table (AO, SR0.5) with the report's path."""
    from grm_jax import datasets as ds  # noqa: PLC0415
    from grm_jax.evaluate import compare, runner  # noqa: PLC0415

    out = pathlib.Path(workdir) / SAMPLE_REPORT_DIR
    ours_dir = out / "grm"
    runner.run_evaluate(run, checkpoint=model_dir, dataset=SAMPLE_BENCHMARK, workdir=ours_dir, tracker_name=OURS,
                        overwrite=True)
    seqs = ds.load_benchmark(SAMPLE_BENCHMARK, ds.dataset_root(SAMPLE_BENCHMARK, run.data.roots))
    base_dir = _write_first_frame_baseline(seqs, out / "first_frame_box")
    report = compare.compare_trackers(seqs, {OURS: ours_dir, BASELINE: base_dir}, out)
    return format_table(report["trackers"], len(seqs), out)


def format_table(trackers, num_sequences: int, out_dir) -> str:
    """The closing table: AO and SR0.5 (percent) per tracker, the AO ratio, and the report's path."""
    rows = [f"{'tracker':<18} {'AO':>6} {'SR0.5':>6}"]
    rows += [f"{m['tracker']:<18} {m['ao']:6.1f} {m['sr50']:6.1f}" for m in trackers]
    by_name = {m["tracker"]: m for m in trackers}
    base = by_name.get(BASELINE, {}).get("ao")
    ours = by_name.get(OURS, {}).get("ao")
    ratio = f"; AO {ours / base:.1f}x the baseline's" if base and ours is not None and base > 0 else ""
    out = pathlib.Path(out_dir)
    return "\n".join([f"Sample validation ({num_sequences} sequences, GOT-10k toolkit AO / SR0.5 in %{ratio}):",
                      *rows, f"report and plots: {out / 'results.md'}, {out / 'success_plot.png'}"])
