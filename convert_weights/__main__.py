"""Command line: convert official PyTorch weights into grm-jax model directories.

    python -m convert_weights grm GRM_ep0100.pth.tar out/grm_got [--num-heads 12]
    python -m convert_weights mae mae_pretrain_vit_base.pth out/mae_init --config configs/grm_got.py

Both write `<DST>/model_config.json` + `<DST>/variables/` (orbax), loadable with
`grm_jax.load_model(DST)`. `.npz` state dicts are accepted in place of .pth files.
"""
from __future__ import annotations

import argparse
import sys

from convert_weights.grm import convert_grm_checkpoint
from convert_weights.mae import convert_mae_checkpoint
from convert_weights.torch_state import CheckpointError


def _model_config_from_run_config(path: str, overrides: list[str]):
    from grm_jax.configuration import load_config, model_config_from  # noqa: PLC0415

    return model_config_from(load_config(path, overrides))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m convert_weights", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="kind", required=True)
    g = sub.add_parser("grm", help="official trained GRM checkpoint ({'net': state_dict})")
    g.add_argument("src")
    g.add_argument("dst")
    g.add_argument("--num-heads", type=int, default=None,
                   help="attention heads (default by dim: 768->12, 1024->16, 384->6, 192->3)")
    m = sub.add_parser("mae", help="MAE encoder ({'model': state_dict}) -> initial training weights")
    m.add_argument("src")
    m.add_argument("dst")
    m.add_argument("--config", required=True, help="run config whose `model` section gives the architecture")
    m.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. --set model.search_size=320")
    m.add_argument("--seed", type=int, default=0, help="seed of the division predictor / head init")
    args = parser.parse_args(argv)

    from grm_jax.checkpoint import save_model  # noqa: PLC0415  (keeps --help fast)

    try:
        if args.kind == "grm":
            config, variables = convert_grm_checkpoint(args.src, num_heads=args.num_heads)
        else:
            config = _model_config_from_run_config(args.config, args.set)
            variables = convert_mae_checkpoint(args.src, config, seed=args.seed)
    except (CheckpointError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = save_model(args.dst, config, variables)
    print(f"wrote {out} ({config.embed_dim}-d, depth {config.depth}, {config.num_heads} heads, "
          f"template {config.template_size}, search {config.search_size})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
