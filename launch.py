"""grm-jax entry point: parses flags and dispatches; the work lives in grm_jax.

    python launch.py --config configs/grm_got.py                      # train (default mode)
    python launch.py --config configs/grm.py --mode=evaluate --checkpoint=DIR --dataset=lasot --workdir=OUT
    python launch.py --config configs/grm_got.py --mode=track --checkpoint=DIR --video=PATH \
        --init_box=x,y,w,h --workdir=OUT [--show_division]
    python launch.py --config configs/grm.py --mode=score --dataset=lasot --results=DIR --workdir=OUT

Config values are overridden with --config.section.key=value (unknown keys are errors).
"""
from absl import app, flags
from ml_collections import config_flags

config_flags.DEFINE_config_file("config", None, "Run config file (configs/*.py).", lock_config=True)
flags.DEFINE_enum("mode", "train", ["train", "evaluate", "track", "score"], "What to run.")
flags.DEFINE_string("workdir", None, "Output directory (default: runs/<config name> for train).")
flags.DEFINE_string("checkpoint", None, "Model directory (converted or trained) for evaluate/track.")
flags.DEFINE_string("dataset", None, "Benchmark name for evaluate/score (e.g. lasot, got10k_test).")
flags.DEFINE_float("threshold", None, "Division threshold; default: the benchmark's official value.")
flags.DEFINE_list("sequences", None, "Evaluate only these sequence names.")
flags.DEFINE_string("video", None, "track: a video file or a folder of frames (sorted by name).")
flags.DEFINE_string("init_box", None, "track: x,y,w,h of the target in the first frame.")
flags.DEFINE_bool("show_division", False, "track: overlay the token division (paper Fig. 3).")
flags.DEFINE_list("division_layers", None, "track: 0-based block indices to overlay (default: all).")
flags.DEFINE_string("results", None, "score: folder of <seq>.txt result files of any tracker.")
flags.DEFINE_string("tracker_name", None, "Name used in tables and plots.")
flags.mark_flags_as_required(["config"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = flags.FLAGS.config
    f = flags.FLAGS
    if f.mode == "train":
        from grm_jax.train.loop import run_train  # noqa: PLC0415

        run_train(config, f.workdir or _default_workdir())
        return
    from grm_jax.evaluate import runner  # noqa: PLC0415

    if f.mode == "evaluate":
        runner.run_evaluate(config, checkpoint=_required("checkpoint"), dataset=_required("dataset"),
                            workdir=_required("workdir"), threshold=f.threshold, sequences=f.sequences,
                            tracker_name=f.tracker_name)
    elif f.mode == "track":
        runner.run_track(config, checkpoint=_required("checkpoint"), video=_required("video"),
                         init_box=_required("init_box"), workdir=_required("workdir"),
                         threshold=f.threshold, show_division=f.show_division,
                         division_layers=f.division_layers)
    else:
        runner.run_score(config, dataset=_required("dataset"), results=_required("results"),
                         workdir=_required("workdir"), tracker_name=f.tracker_name)


def _required(name):
    value = getattr(flags.FLAGS, name)
    if value is None:
        raise app.UsageError(f"--{name} is required for --mode={flags.FLAGS.mode}")
    return value


def _default_workdir():
    import pathlib  # noqa: PLC0415

    return str(pathlib.Path("runs") / pathlib.Path(flags.FLAGS["config"].config_filename).stem)


if __name__ == "__main__":
    app.run(main)
