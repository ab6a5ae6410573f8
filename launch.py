"""grm-jax entry point, also installed as the ``grm-jax`` command; the work lives in grm_jax.

    python launch.py --config configs/grm_got.py                      # train (default mode)
    python launch.py --config configs/grm.py --mode=evaluate --checkpoint=DIR --dataset=lasot --workdir=OUT
    python launch.py --config configs/grm_got.py --mode=track --checkpoint=DIR --video=PATH \
        --init_box=x,y,w,h --workdir=OUT [--show_division]
    python launch.py --config configs/grm.py --mode=score --dataset=lasot --results=DIR --workdir=OUT

`python launch.py --help` lists the modes and options. Config values are overridden with
--config.section.key=value (unknown keys are refused, naming the closest valid key).

This is the one module that imports all three packages (docs/PACKAGES.md): ``data_pipelines``
and ``convert_weights`` import ``grm_jax``, never the reverse, so training gets the data pipeline
and the MAE reader from here, as :data:`TRAIN_PARTS`. They are imported on first use, so the
other modes never load grain.
"""
import sys

from grm_jax.cli import main as cli_main
from grm_jax.host_memory import keep_freed_memory
from grm_jax.train.parts import TrainParts


def make_train_iterator(run, local_batch: int, seed: int, shard_index: int, shard_count: int):
    """The grain pipeline's training batches (:func:`data_pipelines.pipeline.make_train_iterator`)."""
    from data_pipelines.pipeline import make_train_iterator as make  # noqa: PLC0415  (grain: training only)

    return make(run, local_batch, seed, shard_index, shard_count)


def read_mae(path: str, model_config, seed: int) -> dict:
    """Initial variables from an MAE weights file (:func:`convert_weights.mae.convert_mae_checkpoint`)."""
    from convert_weights.mae import convert_mae_checkpoint  # noqa: PLC0415

    return convert_mae_checkpoint(path, model_config, seed=seed)


TRAIN_PARTS = TrainParts(make_iterator=make_train_iterator, read_mae=read_mae)


def main(argv: list[str] | None = None) -> int:
    """``python launch.py`` and the ``grm-jax`` command: every mode, training included."""
    keep_freed_memory()  # before jax starts its threads (grm_jax.host_memory)
    return cli_main(argv, train_parts=TRAIN_PARTS)


if __name__ == "__main__":
    sys.exit(main())
