"""VOT toolkit integration: a TraX tracker server around :class:`grm_jax.track.tracker.Tracker`.

    python -m grm_jax.vot --model models/grm_got [--threshold 0] [--dtype float32] [--config grm_got]
    grm-jax-vot ...                                    (the same program, installed console script)

Every option can also come from the environment, which is how the VOT toolkit passes settings
(``env_GRM_MODEL = ...`` in ``trackers.ini``): ``GRM_MODEL``, ``GRM_THRESHOLD``, ``GRM_DTYPE``,
``GRM_CONFIG``; a flag wins over the variable.

Protocol: TraX (package ``vot-trax``, import name ``trax``), one object, ``rectangle`` regions,
``path`` or ``memory`` RGB images of the ``color`` channel. The server runs the same Tracker as
``--mode=track`` and ``--mode=evaluate``: the init region is the Tracker's init box (x, y, w, h
pixels, (0, 0) = top-left corner of the image) and each frame's reply is ``Tracker.track``'s box
(float64 state kept in the tracker; TraX transmits it as float32). stdout is the TraX channel:
everything this program prints goes to stderr.

The network is compiled (one warm-up frame) before the TraX handshake, so the first real frame
is not slowed down; on a CPU with ViT-B this takes longer than the toolkit's default 30 s
``timeout``: set ``timeout = 300`` in ``trackers.ini``.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from grm_jax.errors import ConfigError, DataError, report_error
from grm_jax.run_config import DTYPES

__all__ = ["ENV_VARS", "build_tracker", "main", "parse_args", "region_to_box", "serve"]

# flag -> environment variable that supplies it when the flag is absent
ENV_VARS = {"model": "GRM_MODEL", "threshold": "GRM_THRESHOLD", "dtype": "GRM_DTYPE", "config": "GRM_CONFIG"}
TRACKER_NAME = "grm-jax"


def parse_args(argv=None, environ=None) -> argparse.Namespace:
    """Flags, then ``GRM_*`` environment variables (see module doc). ConfigError without a model."""
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(prog="grm-jax-vot", description="TraX tracker server (VOT toolkit) "
                                     "running the grm-jax Tracker")
    parser.add_argument("--model", help="model directory or training workdir (env GRM_MODEL)")
    parser.add_argument("--threshold", type=float,
                        help="division threshold, 0 = argmax (env GRM_THRESHOLD; default: the config's "
                             "track.threshold, else 0)")
    parser.add_argument("--dtype", choices=DTYPES,
                        help="compute dtype (env GRM_DTYPE; default: the config's track.dtype)")
    parser.add_argument("--config", help="run config (bundled name or file) whose 'track' section gives the "
                                         "precision and attention (env GRM_CONFIG); crop factors and clip margin "
                                         "are the model's own (track_config.json), see README 'Run configs'")
    args = parser.parse_args(argv)
    for name, var in ENV_VARS.items():
        if getattr(args, name) is None and environ.get(var):
            value = environ[var]
            if name == "threshold":
                try:
                    value = float(value)
                except ValueError:
                    raise ConfigError(f"{var}={value!r}: not a number") from None
            if name == "dtype" and value not in DTYPES:
                raise ConfigError(f"{var}={value!r}: expected one of {', '.join(DTYPES)}")
            setattr(args, name, value)
    if not args.model:
        raise ConfigError("no model: pass --model DIR or set GRM_MODEL=DIR",
                          hint="a directory written by python -m convert_weights or by training")
    return args


def build_tracker(args: argparse.Namespace):
    """The Tracker for ``args`` (model, threshold, dtype, config), compiled by one warm-up frame.
    Settings follow grm_jax.track_settings.PRECEDENCE: a flag (or GRM_* variable) wins, then the
    model's own track settings, then the --config file."""
    from grm_jax.checkpoint import load_model  # noqa: PLC0415
    from grm_jax.run_config import RunConfig  # noqa: PLC0415
    from grm_jax.track.tracker import Tracker  # noqa: PLC0415
    from grm_jax.track_settings import resolve_for_checkpoint, with_override  # noqa: PLC0415

    run = RunConfig()
    if args.config:
        from grm_jax.configuration import load_run_config  # noqa: PLC0415
        run = load_run_config(args.config)
    if args.dtype:
        run = with_override(run, "dtype", args.dtype)
    settings = resolve_for_checkpoint(run, args.model, None, args.threshold,
                                      say=lambda line: print(line, file=sys.stderr))
    model, variables = load_model(args.model)
    tracker = Tracker(model, variables, settings.track, settings.threshold, dtype=settings.dtype,
                      attention=settings.attention)
    blank = np.zeros((64, 64, 3), np.uint8)
    tracker.initialize(blank, (16.0, 16.0, 32.0, 32.0))
    tracker.track(blank)
    return tracker


def region_to_box(region) -> np.ndarray:
    """TraX region -> (4,) float64 (x, y, w, h); a polygon gives its axis-aligned bounding box."""
    from trax import Region  # noqa: PLC0415

    if region.type == Region.RECTANGLE:
        return np.asarray(region.bounds(), np.float64)
    if region.type == Region.POLYGON:
        pts = np.asarray([region.get(i) for i in range(region.size())], np.float64)
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        return np.concatenate([lo, hi - lo])
    raise DataError(f"VOT: unsupported initialization region {region} (rectangle or polygon expected)")


def _frame(images) -> np.ndarray:
    """The ``color`` image of a TraX request -> (H, W, 3) uint8 RGB."""
    from trax import Image  # noqa: PLC0415

    from grm_jax.track.frames import read_image  # noqa: PLC0415

    image = images.get("color")
    if image is None:
        raise DataError(f"VOT: the request has no 'color' image (channels: {sorted(images)})")
    if image.type() == Image.PATH:
        return read_image(image.path())
    if image.type() == Image.MEMORY:
        array = image.array()
        return np.repeat(array, 3, axis=2) if array.shape[2] == 1 else array
    raise DataError(f"VOT: unsupported image type {image.type()!r}")


def serve(tracker, server) -> int:
    """Answers TraX requests on ``server`` until the client quits; returns the frames tracked."""
    from trax import Rectangle, TraxStatus  # noqa: PLC0415

    tracked = 0
    while True:
        request = server.wait()
        if request.type == TraxStatus.QUIT:
            return tracked
        if request.type == TraxStatus.INITIALIZE:
            if len(request.objects) != 1:
                raise DataError(f"VOT: one object expected, got {len(request.objects)}")
            region = request.objects[0][0]
            tracker.initialize(_frame(request.image), region_to_box(region))
            server.status([(region, {})])
        elif request.type == TraxStatus.FRAME:
            x, y, w, h = tracker.track(_frame(request.image)).tolist()
            server.status([(Rectangle.create(x, y, w, h), {})])
            tracked += 1


def main(argv=None) -> int:
    """Console entry point (``grm-jax-vot`` / ``python -m grm_jax.vot``): 0 ok, 2 bad input."""
    try:
        args = parse_args(argv)
        tracker = build_tracker(args)
        from trax import Image, Region, Server  # noqa: PLC0415

        with Server([Region.RECTANGLE], [Image.PATH, Image.MEMORY], tracker_name=TRACKER_NAME) as server:
            serve(tracker, server)
    except Exception as err:  # noqa: BLE001  (GrmError: one line; anything else: a bug, with its traceback)
        return report_error(err, bool(os.environ.get("GRM_VOT_DEBUG")), prefix="grm-jax-vot: error")
    return 0


if __name__ == "__main__":
    sys.exit(main())
