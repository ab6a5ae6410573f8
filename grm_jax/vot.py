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
import re
import sys
import threading

import numpy as np

from grm_jax.errors import USER_ERRORS, ConfigError, DataError, report_error
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
    parser.add_argument("--verbose", action="store_true",
                        help="print the traceback of an error (env GRM_VOT_DEBUG=1 does the same)")
    args = parser.parse_args(argv)
    args.verbose = args.verbose or environ.get("GRM_VOT_DEBUG", "") not in ("", "0")
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
    """Answers TraX requests on ``server`` until the client quits; returns the frames tracked.
    Every frame must have the size of the initialization frame (DataError naming the frame, as
    in track mode: a box for another image size would lie outside it)."""
    from trax import Rectangle, TraxStatus  # noqa: PLC0415

    from grm_jax.track.frames import check_same_size  # noqa: PLC0415

    tracked, first_hw = 0, None
    while True:
        request = server.wait()
        if request.type == TraxStatus.QUIT:
            return tracked
        if request.type == TraxStatus.INITIALIZE:
            if len(request.objects) != 1:
                raise DataError(f"VOT: one object expected, got {len(request.objects)}")
            region = request.objects[0][0]
            frame = _frame(request.image)
            tracker.initialize(frame, region_to_box(region))
            first_hw, tracked = frame.shape[:2], 0
            server.status([(region, {})])
        elif request.type == TraxStatus.FRAME:
            if first_hw is None:
                raise DataError("VOT: a frame arrived before the tracker was initialized")
            frame = check_same_size(_frame(request.image), first_hw, f"VOT frame {tracked + 1}")
            x, y, w, h = tracker.track(frame).tolist()
            server.status([(Rectangle.create(x, y, w, h), {})])
            tracked += 1


# What the guard in front of libtrax lets through (see _guard_stdin): one TraX message per line.
_MAX_MESSAGE = 256 << 20  # bytes: a 4K RGB frame sent in memory is ~33 MB of base64
_MESSAGE = re.compile(rb'@@TRAX:(initialize|frame|quit)((?: +"(?:[^"\\]|\\.)*")*) *\r?\n?')
_ARGUMENT = re.compile(rb'"((?:[^"\\]|\\.)*)"')
_REGION = re.compile(rb"-?[0-9.eE+-]+(?:,-?[0-9.eE+-]+)+|m[0-9,]+")  # rectangle / polygon numbers, or a mask


def message_problem(line: bytes) -> str | None:
    """Why ``line`` is not a TraX client message this server lets through to libtrax (None when
    it is). libtrax (vot-trax 4.0.2) crashes or allocates without bound on some malformed
    messages ('@@TRAX:initialize nonsense' grew to 18 GB, '@@TRAX:initialize' alone segfaults),
    so only well-formed lines reach it: a known command, quoted arguments only, an initialize
    line holding one region (vot-trax sends the region line, then the images in a frame line;
    :func:`_guard_stdin` passes the two on together only)."""
    if len(line) > _MAX_MESSAGE:
        return f"a message longer than {_MAX_MESSAGE >> 20} MB"
    match = _MESSAGE.fullmatch(line)
    if match is None:
        return f"not a TraX message: {line[:60]!r}"
    command, args = match.group(1), _ARGUMENT.findall(match.group(2))
    if command == b"initialize" and (len(args) != 1 or not _REGION.fullmatch(args[0])):
        return f"malformed TraX initialize message (one object's region expected): {line[:60]!r}"
    if command == b"frame" and not args:
        return f"malformed TraX frame message (no image): {line[:60]!r}"
    return None


def _guard_stdin() -> dict:
    """Puts a checking pump between the client (the real stdin) and libtrax (which reads fd 0):
    each line passes only when :func:`message_problem` finds nothing; otherwise the pump records
    the problem in the returned dict ('problem') and closes libtrax's input, so its wait fails
    and the server exits naming the problem."""
    state = {"problem": None}
    client = os.dup(0)
    read_end, write_end = os.pipe()
    os.dup2(read_end, 0)
    os.close(read_end)

    def pump():
        with os.fdopen(client, "rb") as src, os.fdopen(write_end, "wb") as dst:
            while True:
                line = src.readline(_MAX_MESSAGE + 1)
                if not line:
                    return
                state["problem"] = message_problem(line)
                if state["problem"] is None and line.startswith(b"@@TRAX:initialize"):
                    images = src.readline(_MAX_MESSAGE + 1)
                    state["problem"] = (message_problem(images) if images.startswith(b"@@TRAX:frame")
                                        else "a TraX initialize message without its images")
                    line += images
                if state["problem"] is not None:
                    return
                dst.write(line)
                dst.flush()

    threading.Thread(target=pump, name="trax-guard", daemon=True).start()
    return state


def _run_server(tracker) -> None:
    """Serves one TraX session. An error ends the session with a TraX quit message that carries
    the error's line (the client sees it) and is then raised; vot-trax's own ``with`` handler,
    which prints a traceback first, is not used."""
    from trax import Image, Region, Server  # noqa: PLC0415

    guard = _guard_stdin()
    server = Server([Region.RECTANGLE], [Image.PATH, Image.MEMORY], tracker_name=TRACKER_NAME)
    try:
        serve(tracker, server)
    except BaseException as err:
        if guard["problem"] is not None:
            err = DataError(f"TraX: {guard['problem']}")
        reason = err.user_message().splitlines()[0] if hasattr(err, "user_message") else f"{type(err).__name__}: {err}"
        try:
            server.quit(reason=reason)
        except Exception:  # noqa: BLE001  (the client is gone: nothing to tell it)
            pass
        if isinstance(err, DataError) and guard["problem"] is not None:
            raise err from None
        raise
    server.quit()


def main(argv=None) -> int:
    """Console entry point (``grm-jax-vot`` / ``python -m grm_jax.vot``): 0 ok, 2 bad input or a
    broken TraX session (one line on stderr; --verbose or GRM_VOT_DEBUG=1 add the traceback)."""
    try:
        from trax import TraxException  # noqa: PLC0415
    except ImportError:
        print("grm-jax-vot: error: the TraX server needs the vot-trax package (pip install vot-trax)",
              file=sys.stderr)
        return 2
    verbose = "--verbose" in (sys.argv[1:] if argv is None else argv) or os.environ.get("GRM_VOT_DEBUG", "") not in (
        "", "0")
    try:
        args = parse_args(argv)
        _run_server(build_tracker(args))
    except (*USER_ERRORS, TraxException) as err:
        if isinstance(err, TraxException):
            err = DataError(f"TraX: {err} (the client sent something that is not a valid TraX message, or left)")
        return report_error(err, verbose, prefix="grm-jax-vot: error",
                            verbose_hint="run with --verbose or GRM_VOT_DEBUG=1 for the traceback")
    except Exception as err:  # noqa: BLE001  (not a GrmError: a bug, printed with its traceback)
        return report_error(err, True, prefix="grm-jax-vot: error")
    return 0


if __name__ == "__main__":
    sys.exit(main())
