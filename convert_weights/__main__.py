"""Command line: convert official PyTorch weights into grm-jax model directories.

    python -m convert_weights grm GRM_ep0100.pth.tar out/grm_got [--num-heads 12]
    python -m convert_weights mae mae_pretrain_vit_base.pth out/mae_init --config configs/grm_got.py

Both write `<DST>/model_config.json`, `<DST>/track_config.json` (the crop factors the model is
tracked with), `<DST>/variables/` (orbax) and `<DST>/weights.sha256`,
loadable with `grm_jax.load_model(DST)`. Inputs: torch zip files, legacy (pre-1.6) torch files
and `.npz` state dicts, all read without torch and without executing anything from the file.
"""
from __future__ import annotations

import argparse
import sys

EPILOG = """\
subcommands, one example each:
  grm   python -m convert_weights grm GRM_ep0100.pth.tar models/grm_got
        python -m convert_weights grm GRM-L320_ep0300.pth.tar models/grm_l320 --config grm_l320
  mae   python -m convert_weights mae mae_pretrain_vit_base.pth models/mae_init --config configs/grm_got.py

most used flags, one example each:
  --num-heads  python -m convert_weights grm some.pth.tar models/x --num-heads 6
  --config     python -m convert_weights mae mae_pretrain_vit_large.pth models/mae_l --config configs/grm_l320.py
  --set        python -m convert_weights mae mae_pretrain_vit_base.pth models/m --config configs/grm_got.py --set model.search_size=320
  --verbose    python -m convert_weights grm broken.pth.tar models/x --verbose   (traceback on errors)

Bad input (unreadable or unsafe file, wrong architecture, NaN/Inf weights, a file claiming more
tensor data than its model needs) prints one line naming the file, key or value (plus a hint) and
exits with status 2. DST is written beside itself and swapped in atomically: an existing model
directory there is replaced whole, or kept if the run fails or is killed.
`python -m convert_weights grm -h` lists every option of a subcommand.
"""


def _run_config(path: str, overrides: list[str]):
    from grm_jax.configuration import load_run_config  # noqa: PLC0415

    return load_run_config(path, overrides)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m convert_weights", description=__doc__, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--verbose", action="store_true", help="show the traceback of errors")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="show the traceback of errors")
    sub = parser.add_subparsers(dest="kind", required=True, metavar="{grm,mae}")
    g = sub.add_parser("grm", parents=[common], help="official trained GRM checkpoint ({'net': state_dict})")
    g.add_argument("src", help="GRM_ep0100.pth.tar (or a .npz state dict)")
    g.add_argument("dst", help="model directory to write")
    g.add_argument("--num-heads", type=int, default=None,
                   help="attention heads (default by dim: 768->12, 1024->16, 384->6, 192->3)")
    g.add_argument("--config", help="run config whose 'track' section (crop factors, clip margin) is recorded "
                   "with the model (default: the bundled config of the same architecture, e.g. grm_l320)")
    m = sub.add_parser("mae", parents=[common], help="MAE encoder ({'model': state_dict}) -> initial training weights")
    m.add_argument("src", help="mae_pretrain_vit_base.pth (or a .npz state dict)")
    m.add_argument("dst", help="model directory to write")
    m.add_argument("--config", required=True, help="run config whose `model` section gives the architecture")
    m.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. --set model.search_size=320")
    m.add_argument("--seed", type=int, default=0, help="seed of the division predictor / head init")
    return parser


def _grm_track(args, config):
    """(track section to record with a converted GRM, where it came from)."""
    from grm_jax.configuration import bundled_config_for, load_run_config  # noqa: PLC0415
    from grm_jax.run_config import TrackConfig  # noqa: PLC0415

    name = args.config or bundled_config_for(config)
    if name is None:
        return TrackConfig(), "the built-in defaults (no bundled config has this architecture; pass --config)"
    return load_run_config(name).track, f"--config {name}" if args.config else f"{name} (same architecture)"


def _convert(args):
    """Runs the conversion; returns the written directory, the model config and a line saying
    which track settings were recorded."""
    from convert_weights.grm import convert_grm_checkpoint  # noqa: PLC0415  (keeps --help fast)
    from convert_weights.mae import convert_mae_checkpoint  # noqa: PLC0415
    from grm_jax.checkpoint import save_model  # noqa: PLC0415
    from grm_jax.errors import ConfigError  # noqa: PLC0415

    if args.kind == "grm":
        if args.num_heads is not None and args.num_heads < 1:
            raise ConfigError(f"--num-heads must be a positive integer, got {args.num_heads}")
        config, variables = convert_grm_checkpoint(args.src, num_heads=args.num_heads)
        track, origin = _grm_track(args, config)
    else:
        run = _run_config(args.config, args.set)
        config, track, origin = run.model, run.track, f"--config {args.config}"
        variables = convert_mae_checkpoint(args.src, config, seed=args.seed)
    note = (f"track settings from {origin}: template factor {track.template_factor:g}, "
            f"search factor {track.search_factor:g}, clip margin {track.clip_margin}")
    return save_model(args.dst, config, variables, track), config, note


def main(argv=None) -> int:
    """Entry point; returns the exit status (0 ok, 2 bad input)."""
    args = build_parser().parse_args(argv)
    from grm_jax.errors import report_error  # noqa: PLC0415

    try:
        out, config, note = _convert(args)
    except Exception as err:  # noqa: BLE001  (GrmError: one line; anything else: a bug, with its traceback)
        return report_error(err, args.verbose)
    print(f"wrote {out} ({config.embed_dim}-d, depth {config.depth}, {config.num_heads} heads, "
          f"template {config.template_size}, search {config.search_size}); {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
