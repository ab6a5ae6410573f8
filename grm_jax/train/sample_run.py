"""Training with no dataset configured: a short, announced run on generated sample data that
visibly learns, then a score table against a do-nothing baseline.

The training loop (:mod:`grm_jax.train.loop`) calls, in this order:

    uses_sample_data(run) -> bool
    sample_run_config(run, backend, num_devices, num_processes) -> (RunConfig, banner text)
    after_sample_training(run, workdir, model_dir) -> table text

What the sample run is: an ordinary run config, ``configs/grm_sample_cpu.py`` on a CPU and
``configs/grm_sample_accelerator.py`` on a GPU/TPU (:data:`SAMPLE_CONFIGS`), plus the values the
user set on the command line:

* data: ``SAMPLE_TRAIN_SEQUENCES`` generated training sequences and ``SAMPLE_VAL_SEQUENCES``
  validation sequences (``grm_jax.datasets.sample_generator``), written once into
  ``config.data.roots.sample`` or, unset, ``~/.cache/grm_jax/sample_run``;
* on a CPU a REDUCED GRM (same code and token division; smaller width, depth and crops) trained
  from random weights with a from-scratch learning rate for every parameter group; on a GPU/TPU
  ViT-B, for about the same time budget. ``--config.train.max_steps=N`` cuts the schedule;
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

from grm_jax.datasets.loaders import dataset_root
from grm_jax.datasets.registry import TRAIN, resolve
from grm_jax.datasets.sample_generator import ensure_sample_dataset
from grm_jax.run_config import RunConfig

__all__ = ["SAMPLE_CONFIGS", "SAMPLE_TRAIN_SEQUENCES", "SAMPLE_VAL_SEQUENCES",
           "after_sample_training", "sample_data_folder", "sample_run_config", "uses_sample_data"]

# Many short generated sequences: with 48 the reduced model learnt a centre prior and tracked no
# better than the first-frame box (AO 18 vs 17.9); with 500 it learns to find the template's
# object (see the README, "What you will see").
SAMPLE_TRAIN_SEQUENCES = 500
SAMPLE_VAL_SEQUENCES = 6
SAMPLE_BENCHMARK = "sample_val"
OURS, BASELINE = "GRM (this run)", "first-frame box"
SAMPLE_REPORT_DIR = "eval_sample"  # <workdir>/eval_sample: both trackers' result files and the report


# The sample run's config file per backend (configs/grm_sample_*.py: model, schedule, data, jitter).
SAMPLE_CONFIGS = {"cpu": "grm_sample_cpu", "accelerator": "grm_sample_accelerator"}


def uses_sample_data(run: RunConfig) -> bool:
    """True when no training dataset root (nor data.packed_dir) is configured for run.data.datasets."""
    if run.data.packed_dir is not None:
        return False
    return all(resolve(n, TRAIN).root == "sample" or dataset_root(n, run.data.roots) is None
               for n in run.data.datasets)


def sample_data_folder(run: RunConfig) -> str:
    """``data.roots['sample']``, else ``sample_run-<train>-<val>`` (the sequence counts) beside the
    default sample-data cache folder."""
    from grm_jax.datasets.sample import DEFAULT_SAMPLE_ROOT  # noqa: PLC0415

    name = f"sample_run-{SAMPLE_TRAIN_SEQUENCES}-{SAMPLE_VAL_SEQUENCES}"
    return dataset_root(SAMPLE_BENCHMARK, run.data.roots, default=os.path.join(os.path.dirname(DEFAULT_SAMPLE_ROOT), name))


def _global_batch(batch: int, num_devices: int, num_processes: int) -> int:
    """The smallest multiple of the device and process counts that is >= ``batch``."""
    unit = math.lcm(max(num_devices, 1), max(num_processes, 1))
    return max(unit, math.ceil(batch / unit) * unit)


def _with_user_values(base: RunConfig, run: RunConfig, skip: tuple[str, ...]) -> RunConfig:
    """``base`` with the values the user set on the command line (``run.overridden``, except
    ``skip``) and the user's dataset roots."""
    tree, user = base.to_dict(), run.to_dict()
    keys = [k for k in sorted(run.overridden) if not k.startswith(skip)]
    for key in keys:
        *path, leaf = key.split(".")
        src, dst = user, tree
        for part in path:
            src, dst = src[part], dst[part]
        dst[leaf] = src[leaf]
    tree["data"]["roots"] = {**user["data"]["roots"], **{k: v for k, v in tree["data"]["roots"].items() if v}}
    return RunConfig.from_configdict(tree, name=base.name, overridden=keys)


def sample_run_config(run: RunConfig, backend: str, num_devices: int,
                      num_processes: int) -> tuple[RunConfig, str]:
    """The run config of the sample run and the banner announcing it (see module doc): the
    bundled config ``SAMPLE_CONFIGS[backend]`` plus the values set on the command line (an MAE
    file is not used with the reduced CPU model). The global batch is rounded up to a multiple of
    the devices and processes. Generates the sample data (once; a few seconds) into
    :func:`sample_data_folder`."""
    from grm_jax.configuration import load_run_config  # noqa: PLC0415

    name = SAMPLE_CONFIGS["cpu" if backend == "cpu" else "accelerator"]
    base = load_run_config(name)
    new = _with_user_values(base, run, skip=("init.mae",) if backend == "cpu" else ())
    folder = ensure_sample_dataset(sample_data_folder(run), num_train=SAMPLE_TRAIN_SEQUENCES,
                                   num_val=SAMPLE_VAL_SEQUENCES)
    batch = _global_batch(new.train.batch_size, num_devices, num_processes)
    per_epoch = max(base.data.samples_per_epoch // base.train.batch_size, 1)
    new = new.replace(train=dataclasses.replace(new.train, batch_size=batch),
                      data=dataclasses.replace(new.data, roots={**new.data.roots, "sample": folder},
                                               samples_per_epoch=per_epoch * batch,
                                               num_workers=min(new.data.num_workers, os.cpu_count() or 1)))
    mae_ignored = backend == "cpu" and run.init.mae is not None
    return new, _banner(run, new, name, backend, folder, per_epoch * new.train.lr_drop_epoch, mae_ignored)


def _describe(m) -> str:
    return (f"dim {m.embed_dim}, depth {m.depth}, {m.num_heads} heads, patch {m.patch_size}, "
            f"template {m.template_size} / search {m.search_size} px")


def _banner(old: RunConfig, new: RunConfig, name: str, backend: str, folder: str, drop_step: int,
            mae_ignored: bool) -> str:
    t = new.train
    reduced = new.model != old.model
    init = f"MAE weights {new.init.mae}" if new.init.mae else "random weights"
    drop = f", x0.1 from step {drop_step}" if drop_step < t.max_steps else ""
    warmup = f" (warmup {t.warmup_steps} steps)" if t.warmup_steps else ""
    lines = [
        "=" * 78,
        "No training dataset configured (config.data.roots.*, ~/.config/grm_jax/datasets.json, GRM_DATA_ROOT;",
        "grm-jax --mode=datasets shows them): a SHORT DEMONSTRATION RUN on generated sample data,",
        f"  config:   configs/{name}.py (plus your --config.* values) instead of {old.name}",
        f"  data:     {SAMPLE_TRAIN_SEQUENCES} generated training / {SAMPLE_VAL_SEQUENCES} validation sequences in "
        f"{folder}",
        (f"  model:    REDUCED GRM for the {backend.upper()}: {_describe(new.model)}" if reduced else
         f"  model:    the configured GRM: {_describe(new.model)}"),
    ]
    if reduced:
        lines.append(f"            (configured: {_describe(old.model)}; same code, division in blocks "
                     f"{','.join(map(str, new.model.divide_layers))})")
    if mae_ignored:
        lines.append("            config.init.mae is ignored: the MAE weights do not fit the reduced model")
    lines += [
        f"  schedule: {t.max_steps} steps x {t.batch_size} pairs from {init}, LR {t.lr:g}{warmup}{drop}, search-crop "
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
