"""The ``grm-jax`` command (also ``python launch.py``): parse the command line, build the typed
run config once, and hand it to the mode's ``run_*`` function.

Training also needs the data pipeline and the MAE reader, which live outside ``grm_jax``: the
caller passes them as ``main(argv, train_parts)`` (:class:`grm_jax.train.parts.TrainParts`).
``launch.py``, the program behind both ``python launch.py`` and the ``grm-jax`` command, does.

User errors (:class:`grm_jax.errors.GrmError`, and missing files or bad values reported by
libraries) print one line plus a hint and exit with status 2; ``--verbose`` shows the
traceback and the libraries' INFO logs.
"""
from __future__ import annotations

import argparse
import logging
import os
import pathlib
import signal
import sys
import threading

from grm_jax.errors import (TERMINATED_EXIT, GrmError, Terminated, raise_on_sigterm,
                            report_error)

__all__ = ["main", "build_parser"]

USAGE = "grm-jax --config CONFIG [--mode MODE] [options] [--config.SECTION.KEY=VALUE ...]"

DESCRIPTION = """\
GRM transformer tracker (JAX/Flax): train, evaluate on benchmarks, track a video, score results.
`python launch.py ...` and `grm-jax ...` are the same command.

modes:
  train      train a model (default); no dataset configured = short run on generated sample data
  evaluate   run a model on a benchmark; resumable per sequence; writes results, metrics, plots
  track      track one video (file or folder of frames) from an initial box
  score      score result folders of any trackers (several = one comparison plot and table)
  datasets   show each dataset root folder and where it was set (command line, config file,
             ~/.config/grm_jax/datasets.json, GRM_DATA_ROOT)
"""

EPILOG = """\
most used options, one example each:
  --config      grm-jax --config grm_got                                 (bundled name or a file path)
  --mode        grm-jax --config grm --mode=evaluate --checkpoint=models/grm --dataset=lasot --workdir=out/lasot
  --workdir     grm-jax --config grm_got --workdir runs/grm_got           (checkpoints, TensorBoard, results)
  --checkpoint  grm-jax --config grm_got --mode=track --checkpoint=models/grm_got --video=clip.mp4 \\
                    --init_box=100,80,40,60 --workdir=out/demo
  --config.*    grm-jax --config grm_got --config.data.roots.got10k=/data/GOT10k --config.train.batch_size=64

bundled configs: grm_got, grm, grm_l320, grm_tiny_cpu, grm_sample_cpu, grm_sample_accelerator (their
docstrings hold their commands).
Any config value can be overridden with --config.SECTION.KEY=VALUE (lists as a,b,c); unknown keys are
refused with the closest valid key. Documentation: README.md.
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (``--config.*`` overrides are collected separately)."""
    p = argparse.ArgumentParser(prog="grm-jax", usage=USAGE, description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="run config: a bundled name (grm_got, grm, grm_l320, "
                   "grm_tiny_cpu) or a path to a file with get_config()")
    p.add_argument("--mode", default="train", choices=("train", "evaluate", "track", "score", "datasets"))
    p.add_argument("--workdir", help="output folder (train default: runs/<config name>)")
    p.add_argument("--checkpoint", help="evaluate/track: model directory (converted weights or a training workdir)")
    p.add_argument("--dataset", help="evaluate/score: benchmark name, e.g. lasot, got10k_test, folder:/path")
    p.add_argument("--threshold", type=float, help="division threshold, same as --config.track.threshold (default: "
                   "the model's own for the benchmark, else the benchmark's official value)")
    p.add_argument("--sequences", type=_comma_list, help="evaluate / score: only these sequence names (a,b,c)")
    p.add_argument("--overwrite", action="store_true",
                   help="evaluate: discard results in --workdir made with other settings")
    p.add_argument("--on_bad_frame", choices=("error", "skip"),
                   help="evaluate: stop at an unreadable frame (error) or carry the previous box (skip)")
    p.add_argument("--video", help="track: a video file or a folder of frames (sorted by name)")
    p.add_argument("--init_box", help="track: x,y,w,h of the target in the first frame (pixels)")
    p.add_argument("--show_division", action="store_true", help="track: overlay the token division")
    p.add_argument("--overlay_layers", type=_comma_list,
                   help="track: 0-based blocks whose division is drawn (default: all dividing blocks)")
    p.add_argument("--results", help="score: a results folder, or name=dir,name=dir,... to compare trackers")
    p.add_argument("--tracker_name", help="name used in tables and plots")
    p.add_argument("--attributes_dir", help="evaluate / score on LaSOT: folder of the toolkit's attribute files "
                   "<seq>.txt (default: looked up in the LaSOT root, see README)")
    p.add_argument("--verbose", action="store_true", help="tracebacks for errors and INFO logs of libraries")
    return p


def _comma_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """Separates ``--config.a.b=v`` / ``--config.a.b v`` from the other arguments."""
    rest, overrides, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--config."):
            if "=" not in arg:
                if i + 1 >= len(argv):
                    raise GrmError(f"{arg} needs a value", hint=f"write {arg}=VALUE")
                arg, i = f"{arg}={argv[i + 1]}", i + 1
            overrides.append(arg[len("--config."):])
        else:
            rest.append(arg)
        i += 1
    return rest, overrides


def quiet_logs(verbose: bool) -> None:
    """Hides the INFO chatter of jax/orbax/absl (e.g. 'Unable to initialize backend tpu')."""
    level = logging.INFO if verbose else logging.WARNING
    logging.getLogger().setLevel(level)
    for name in ("jax", "jax._src.xla_bridge", "absl", "orbax"):
        logging.getLogger(name).setLevel(level)
    try:
        from absl import flags  # noqa: PLC0415
        from absl import logging as absl_logging  # noqa: PLC0415

        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()  # grain workers read absl flags
        absl_logging.set_verbosity(absl_logging.INFO if verbose else absl_logging.WARNING)
    except ImportError:  # pragma: no cover
        pass
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def run(args: argparse.Namespace, overrides: list[str], train_parts=None):
    """Builds the typed config and runs the mode. Returns what the mode's function returns.
    ``train_parts`` (:class:`grm_jax.train.parts.TrainParts`) is needed by --mode=train only."""
    from grm_jax.configuration import load_run_config  # noqa: PLC0415

    if args.threshold is not None:
        overrides = [*overrides, f"track.threshold={args.threshold!r}"]
    if args.on_bad_frame is not None:
        overrides = [*overrides, f"eval.on_bad_frame={args.on_bad_frame!r}"]
    run_config = load_run_config(args.config, overrides)
    if args.mode == "datasets":
        return print_roots(run_config)
    if args.mode == "train":
        from grm_jax.train.loop import run_train  # noqa: PLC0415

        if train_parts is None:
            raise GrmError("--mode=train needs the data pipeline and the MAE reader, which this entry "
                           "point was not given", hint="train with `python launch.py ...` or `grm-jax ...`")
        return run_train(run_config, args.workdir or str(pathlib.Path("runs") / run_config.name), train_parts)
    from grm_jax.evaluate import runner  # noqa: PLC0415

    if args.mode == "evaluate":
        return runner.run_evaluate(run_config, checkpoint=_required(args, "checkpoint"),
                                   dataset=_required(args, "dataset"), workdir=_required(args, "workdir"),
                                   sequences=args.sequences,
                                   tracker_name=args.tracker_name, overwrite=args.overwrite,
                                   attributes_dir=args.attributes_dir)
    if args.mode == "track":
        return runner.run_track(run_config, checkpoint=_required(args, "checkpoint"), video=_required(args, "video"),
                                init_box=_required(args, "init_box"), workdir=_required(args, "workdir"),
                                show_division=args.show_division,
                                overlay_layers=args.overlay_layers)
    return runner.run_score(run_config, dataset=_required(args, "dataset"), results=_required(args, "results"),
                            workdir=_required(args, "workdir"), tracker_name=args.tracker_name,
                            attributes_dir=args.attributes_dir, sequences=args.sequences)


def print_roots(run_config) -> dict:
    """``--mode=datasets``: every dataset root, where it came from and whether it exists."""
    from grm_jax.datasets.roots import describe_roots, local_file  # noqa: PLC0415

    print(f"dataset roots of {run_config.name} (command line > run config file > {local_file()} > "
          f"$GRM_DATA_ROOT/<root>):")
    print("\n".join(describe_roots(run_config.data.roots, run_config.root_sources)))
    return dict(run_config.data.roots)


def _required(args: argparse.Namespace, name: str):
    value = getattr(args, name)
    if value is None:
        raise GrmError(f"--{name} is required for --mode={args.mode}", hint="see grm-jax --help")
    return value


def main(argv: list[str] | None = None, train_parts=None) -> int:
    """The command (``launch.main`` calls it with the real ``train_parts``); returns the exit
    status (0 ok, 2 user error). Without ``train_parts`` every mode but train works."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        rest, overrides = split_overrides(argv)
    except GrmError as err:
        parser.error(str(err))
    args = parser.parse_args(rest)
    quiet_logs(args.verbose)
    previous = raise_on_sigterm() if threading.current_thread() is threading.main_thread() else None
    try:
        run(args, overrides, train_parts)
    except Terminated:
        print(f"error: stopped by SIGTERM during --mode={args.mode}; the finished parts (result files, "
              "checkpoints) are kept and the same command resumes", file=sys.stderr)
        return TERMINATED_EXIT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001  (GrmError: one line; anything else: a bug, with its traceback)
        return report_error(err, args.verbose)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0
