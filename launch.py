"""grm-jax entry point (same as the installed ``grm-jax`` command); the work lives in grm_jax.

    python launch.py --config configs/grm_got.py                      # train (default mode)
    python launch.py --config configs/grm.py --mode=evaluate --checkpoint=DIR --dataset=lasot --workdir=OUT
    python launch.py --config configs/grm_got.py --mode=track --checkpoint=DIR --video=PATH \
        --init_box=x,y,w,h --workdir=OUT [--show_division]
    python launch.py --config configs/grm.py --mode=score --dataset=lasot --results=DIR --workdir=OUT

`python launch.py --help` lists the modes and options. Config values are overridden with
--config.section.key=value (unknown keys are refused, naming the closest valid key).
"""
import sys

from grm_jax.cli import main

if __name__ == "__main__":
    sys.exit(main())
